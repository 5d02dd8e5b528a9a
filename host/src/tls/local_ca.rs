//! A self-signed local certificate authority for development and the
//! embedded profile. The CA key and certificate persist in a data directory
//! (`ca.key` mode 0600, `ca.crt`) and are reused on restart, so a client that
//! trusts `ca.crt` once keeps trusting the edge; the leaf certificate is
//! issued afresh at every start for the configured names.
//!
//! The certificates go into the store in `tls/store.rs`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA certificate file in the data directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA private key file in the data directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// Only the owner may read the CA key.
const KEY_FILE_MODE: u32 = 0o600;
/// The data directory holds a private key: owner only.
const DIR_MODE: u32 = 0o700;
/// The CA's common name, also what users see in trust stores.
const CA_COMMON_NAME: &str = "hearth-wasm-edge local CA";
/// Leaf validity starts this many days back, for clocks slightly behind.
const LEAF_BACKDATE_DAYS: i64 = 1;
/// Leaf validity in days: under the 398-day cap some clients apply even to
/// private CAs; a new leaf is issued at every start anyway.
const LEAF_VALIDITY_DAYS: i64 = 397;
/// Seconds per day.
const SECS_PER_DAY: u64 = 86_400;

/// The CA, loaded or created.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    cert_path: PathBuf,
}

/// The local CA could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalCaError {
    /// A file in the data directory could not be read or written.
    #[error("local CA {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored file is corrupt, or certificate generation failed.
    #[error("local CA {}: {message}", path.display())]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The CA's fixed parameters: the same every time, so a CA re-read from disk
/// signs leaves whose issuer name and key identifier match `ca.crt`.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl LocalCa {
    /// Loads the CA from `dir`, creating it (and `dir`) on first use.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, LocalCaError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LocalCaError::Io { path, source }
        };
        let invalid = |path: &Path, e: rcgen::Error| LocalCaError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        std::fs::create_dir_all(dir).map_err(io(dir))?;

        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => KeyPair::from_pem(&pem).map_err(|e| invalid(&key_path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
                    .map_err(io(dir))?;
                let key = KeyPair::generate().map_err(|e| invalid(&key_path, e))?;
                write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
                // A new key makes any old certificate useless.
                let _ = std::fs::remove_file(&cert_path);
                key
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        let ca_der = match std::fs::read(&cert_path) {
            Ok(pem) => {
                use rustls_pki_types::pem::PemObject;
                CertificateDer::from_pem_slice(&pem).map_err(|e| LocalCaError::Invalid {
                    path: cert_path.clone(),
                    message: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let cert = ca_params()
                    .self_signed(&key)
                    .map_err(|e| invalid(&cert_path, e))?;
                std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
                cert.der().clone()
            }
            Err(e) => return Err(io(&cert_path)(e)),
        };
        Ok(LocalCa {
            issuer: Issuer::new(ca_params(), key),
            ca_der,
            cert_path,
        })
    }

    /// Issues a leaf for `names` (fresh key), chained to the CA.
    pub fn issue(&self, names: &[String]) -> Result<Arc<CertifiedKey>, LocalCaError> {
        let invalid = |e: rcgen::Error| LocalCaError::Invalid {
            path: self.cert_path.clone(),
            message: e.to_string(),
        };
        let mut params = CertificateParams::new(names.to_vec()).map_err(invalid)?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.use_authority_key_identifier_extension = true;
        let today = unix_days_now();
        let (y, m, d) = civil_from_days(today - LEAF_BACKDATE_DAYS);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = civil_from_days(today + LEAF_VALIDITY_DAYS);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(invalid)?;
        let leaf = params.signed_by(&key, &self.issuer).map_err(invalid)?;
        let chain = vec![leaf.der().clone(), self.ca_der.clone()];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let certified =
            CertifiedKey::from_der(chain, private, &super::provider()).map_err(|e| {
                LocalCaError::Invalid {
                    path: self.cert_path.clone(),
                    message: e.to_string(),
                }
            })?;
        Ok(Arc::new(certified))
    }

    /// The CA certificate users add to their trust store.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }
}

/// Days since 1970-01-01, UTC.
fn unix_days_now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / SECS_PER_DAY).unwrap_or(0)
}

/// (year, month, day) of the given day since 1970-01-01: the
/// civil-from-days algorithm of H. Hinnant's `date` library.
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

/// Creates `path` with owner-only permissions from the start.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A throwaway self-signed certificate for `names`, for tests.
    pub(crate) fn self_signed(names: &[&str]) -> Arc<CertifiedKey> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Arc::new(
            CertifiedKey::from_der(vec![cert.der().clone()], private, &crate::tls::provider())
                .unwrap(),
        )
    }

    /// A fresh directory under the system temp dir, unique per test.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hearth-edge-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn civil_dates_from_unix_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn ca_is_created_once_and_reused() {
        let dir = temp_dir("ca-reuse");
        let first = LocalCa::load_or_create(&dir).unwrap();
        let mode = std::fs::metadata(dir.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let ca_pem = std::fs::read(dir.join(CA_CERT_FILE)).unwrap();
        let second = LocalCa::load_or_create(&dir).unwrap();
        assert_eq!(first.cert_der(), second.cert_der());
        assert_eq!(std::fs::read(dir.join(CA_CERT_FILE)).unwrap(), ca_pem);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leaves_from_a_reloaded_ca_verify_against_the_stored_ca_cert() {
        use rustls::client::danger::ServerCertVerifier;
        let dir = temp_dir("ca-verify");
        let stored = LocalCa::load_or_create(&dir).unwrap().cert_der().clone();
        let reloaded = LocalCa::load_or_create(&dir).unwrap();
        let leaf = reloaded
            .issue(&[
                "hearth.localhost".to_owned(),
                "lk.hearth.localhost".to_owned(),
            ])
            .unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(stored).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::tls::provider(),
        )
        .build()
        .unwrap();
        let name = rustls_pki_types::ServerName::try_from("lk.hearth.localhost").unwrap();
        let now = rustls_pki_types::UnixTime::now();
        verifier
            .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &name, &[], now)
            .unwrap();
        let other = rustls_pki_types::ServerName::try_from("other.localhost").unwrap();
        assert!(
            verifier
                .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &other, &[], now)
                .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
