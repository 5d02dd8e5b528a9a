//! The ACME cache on disk (`tls.acme.cache_dir`), and the hook that puts a
//! certificate to use ([`Deployer`]) whenever rustls-acme loads one from the
//! cache or stores a new one.
//!
//! Layout: `<cache_dir>/<directory-hash>/account.key` (PKCS#8, shared by
//! every name) and `<name>.pem` (the key, then the chain, as rustls-acme
//! writes it). The hash keeps accounts of different CAs (staging,
//! production, a test CA) apart. Files are written atomically, mode 0600.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rustls::sign::CertifiedKey;
use rustls_acme::{AccountCache, CertCache};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

use crate::config::ExportSettings;
use crate::metrics::Metrics;
use crate::tls::CertStore;
use crate::tls::export;

/// Mode of every file in the cache: keys are inside.
const CACHE_FILE_MODE: u32 = 0o600;
/// Hex digits of the directory URL's SHA-256 used as the subdirectory name.
const DIRECTORY_HASH_HEX: usize = 16;
/// The shared account key's file name.
const ACCOUNT_FILE: &str = "account.key";

/// The cache directory of one ACME CA.
#[derive(Debug, Clone)]
pub struct CacheDir {
    dir: PathBuf,
}

/// The cache as rustls-acme sees it for one name.
pub struct NameCache {
    dir: PathBuf,
    deployer: Deployer,
}

/// Puts one name's certificate to use: into the store, into its
/// `tls.export` files, then `on_renew`.
pub struct Deployer {
    /// The name.
    pub name: String,
    /// Where certificates are served from.
    pub store: Arc<CertStore>,
    /// The `tls.export` entries of this name.
    pub exports: Vec<ExportSettings>,
    /// Failure counters.
    pub metrics: Arc<Metrics>,
}

/// A certificate as rustls-acme keeps it, split up.
struct Parsed {
    key: Arc<CertifiedKey>,
    key_pem: String,
    chain_pem: String,
    not_after: i64,
}

// === impl CacheDir ===

impl CacheDir {
    /// Creates `<cache_dir>/<hash of directory>/` and the account key if
    /// missing, so every name's order uses one account.
    pub fn open(cache_dir: &Path, directory: &str) -> io::Result<CacheDir> {
        let hash = Sha256::digest(directory.as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let dir = cache_dir.join(&hex[..DIRECTORY_HASH_HEX]);
        std::fs::create_dir_all(&dir)?;
        let account = dir.join(ACCOUNT_FILE);
        if !account.exists() {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| io::Error::other(format!("generating the account key: {e}")))?;
            export::write_atomic(&account, &key.serialize_der(), CACHE_FILE_MODE)?;
            info!(path = %account.display(), "acme account key created");
        }
        Ok(CacheDir { dir })
    }

    /// The cache of one name, deploying through `deployer`.
    pub fn for_name(&self, deployer: Deployer) -> NameCache {
        NameCache {
            dir: self.dir.clone(),
            deployer,
        }
    }
}

// === impl NameCache ===

impl NameCache {
    fn cert_path(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.deployer.name))
    }
}

#[async_trait]
impl CertCache for NameCache {
    type EC = io::Error;

    async fn load_cert(&self, _: &[String], _: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.cert_path();
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match self.deployer.deploy(&pem, false) {
            Ok(()) => Ok(Some(pem)),
            Err(error) => {
                // An unusable cache entry is replaced by a new order.
                warn!(name = %self.deployer.name, path = %path.display(), error = %error,
                    "cached certificate unusable; ordering a new one");
                Ok(None)
            }
        }
    }

    async fn store_cert(&self, _: &[String], _: &str, cert: &[u8]) -> io::Result<()> {
        export::write_atomic(&self.cert_path(), cert, CACHE_FILE_MODE)?;
        self.deployer
            .deploy(cert, true)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

#[async_trait]
impl AccountCache for NameCache {
    type EA = io::Error;

    async fn load_account(&self, _: &[String], _: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.dir.join(ACCOUNT_FILE)) {
            Ok(key) => Ok(Some(key)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn store_account(&self, _: &[String], _: &str, account: &[u8]) -> io::Result<()> {
        export::write_atomic(&self.dir.join(ACCOUNT_FILE), account, CACHE_FILE_MODE)
    }
}

// === impl Deployer ===

impl Deployer {
    /// Serves `pem` (key, then chain) for the name and exports it. `fresh`
    /// is true for a newly issued certificate, false for a cached one.
    pub fn deploy(&self, pem: &[u8], fresh: bool) -> Result<(), String> {
        let parsed = parse(pem)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if parsed.not_after <= now {
            warn!(name = %self.name, "cached certificate has expired; renewing");
        }
        self.store.insert(&self.name, parsed.key.clone());
        info!(
            name = %self.name,
            source = %if fresh { "issued" } else { "cache" },
            expires_unix = parsed.not_after,
            "certificate deployed"
        );
        for export in &self.exports {
            self.export(export, &parsed);
        }
        Ok(())
    }

    fn export(&self, export: &ExportSettings, parsed: &Parsed) {
        match export::write(
            export,
            parsed.chain_pem.as_bytes(),
            parsed.key_pem.as_bytes(),
        ) {
            Ok(false) => {}
            Ok(true) => {
                info!(name = %self.name, cert = %export.cert.display(),
                    key = %export.key.display(), "certificate exported");
                if let Some(action) = &export.on_renew {
                    tokio::spawn(export::run_on_renew(
                        self.name.clone(),
                        action.clone(),
                        self.metrics.clone(),
                    ));
                }
            }
            Err(error) => {
                self.metrics
                    .export_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!(name = %self.name, cert = %export.cert.display(), error = %error,
                    "certificate export failed");
            }
        }
    }
}

/// Splits rustls-acme's PEM (a private key, then the chain leaf first) and
/// checks that the key matches the leaf.
fn parse(pem: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not PEM text".to_owned())?;
    let mut key_pem = String::new();
    let mut chain_pem = String::new();
    for (label, block) in pem_blocks(text) {
        let out = if label.ends_with("PRIVATE KEY") {
            &mut key_pem
        } else if label == "CERTIFICATE" {
            &mut chain_pem
        } else {
            continue;
        };
        out.push_str(block);
        if !block.ends_with('\n') {
            out.push('\n');
        }
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| "no private key".to_owned())?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| "unreadable certificate".to_owned())?;
    let leaf = chain.first().ok_or_else(|| "no certificate".to_owned())?;
    let not_after = crate::tls::expiry::not_after(leaf)
        .ok_or_else(|| "leaf certificate: no validity".to_owned())?;
    let key = CertifiedKey::from_der(chain, key, &crate::tls::provider())
        .map_err(|e| format!("key and certificate: {e}"))?;
    Ok(Parsed {
        key: Arc::new(key),
        key_pem,
        chain_pem,
        not_after,
    })
}

/// `(label, whole block with its BEGIN/END lines and a final newline)` for
/// each PEM block of `text`, in order.
fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(label_end) = after.find(DASHES) else {
            break;
        };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let mut stop = start + end + end_marker.len();
        if rest[stop..].starts_with("\r\n") {
            stop += 2;
        } else if rest[stop..].starts_with('\n') {
            stop += 1;
        }
        let block_start = offset + start;
        let block_end = offset + stop;
        blocks.push((label, &text[block_start..block_end]));
        offset = block_end;
        rest = &text[offset..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key + chain in rustls-acme's layout, from rcgen.
    fn acme_pem(name: &str, not_after: (i32, u8, u8)) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        format!("{}\n{}", key.serialize_pem(), cert.pem())
    }

    #[test]
    fn parse_splits_key_and_chain_and_reads_the_expiry() {
        let pem = acme_pem("a.example", (2040, 1, 2));
        let parsed = parse(pem.as_bytes()).unwrap();
        assert!(parsed.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(
            parsed
                .key_pem
                .trim_end()
                .ends_with("-----END PRIVATE KEY-----")
        );
        assert!(parsed.chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!parsed.chain_pem.contains("PRIVATE"));
        assert_eq!(parsed.key.cert.len(), 1);
        // 2040-01-02T00:00:00Z
        assert_eq!(parsed.not_after, 2_209_075_200);
    }

    #[test]
    fn parse_refuses_a_key_that_does_not_match() {
        let one = acme_pem("a.example", (2040, 1, 2));
        let two = acme_pem("a.example", (2040, 1, 2));
        let key_of_one = &one[..one.find("-----BEGIN CERTIFICATE").unwrap()];
        let cert_of_two = &two[two.find("-----BEGIN CERTIFICATE").unwrap()..];
        let mixed = format!("{key_of_one}{cert_of_two}");
        assert!(parse(mixed.as_bytes()).is_err());
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn pem_blocks_keep_order_and_text() {
        let text =
            "x\n-----BEGIN A-----\nAA\n-----END A-----\n-----BEGIN B-----\nBB\n-----END B-----";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], ("A", "-----BEGIN A-----\nAA\n-----END A-----\n"));
        assert_eq!(blocks[1], ("B", "-----BEGIN B-----\nBB\n-----END B-----"));
    }
}
