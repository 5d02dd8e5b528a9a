//! Certificate + private key pairs and CA roots from PEM files
//! (`tls.certificates`, `outbound` roots). A leaf below both `config` and
//! `tls`: read and checked while the config is validated
//! (`config/validate.rs`), so a bad file is a config error with a line
//! number, never a failed handshake later; re-read on change by
//! `tls/reload.rs`. The store they go into is `tls/store.rs`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider used everywhere: aws-lc-rs with its default (safe)
/// cipher suites, and the key exchange groups in this order: the hybrid
/// post-quantum X25519MLKEM768, then X25519, P-256, P-384. Also
/// `tls::provider`.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{self, kx_group};
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ];
    Arc::new(provider)
}

/// A parsed certificate chain with its key and the names it serves.
#[derive(Clone)]
pub struct LoadedCertificate {
    /// Names served (from `names`, else the certificate's DNS SANs).
    pub names: Vec<String>,
    /// The chain and signing key, ready for rustls.
    pub key: Arc<CertifiedKey>,
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
    /// Whether `names` came from the config rather than the certificate.
    pub names_configured: bool,
}

/// A certificate or key file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The certificate file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    CertRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no usable PEM certificate.
    #[error("{}: no PEM certificate found", path.display())]
    CertParse {
        /// The file.
        path: PathBuf,
    },
    /// The key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    KeyRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file holds no usable PEM private key.
    #[error("{}: no PEM private key found", path.display())]
    KeyParse {
        /// The file.
        path: PathBuf,
    },
    /// The key is of an unsupported type or does not match the certificate.
    #[error("{}: {message}", path.display())]
    KeyMismatch {
        /// The key file.
        path: PathBuf,
        /// From rustls.
        message: String,
    },
    /// The certificate names no DNS host and `names` is absent.
    #[error("{}: the certificate has no DNS names; list them in `names`", path.display())]
    NoNames {
        /// The certificate file.
        path: PathBuf,
    },
}

impl FileError {
    /// The config field the error belongs to: `cert`, `key` or `names`.
    pub fn field(&self) -> &'static str {
        match self {
            FileError::CertRead { .. }
            | FileError::CertParse { .. }
            | FileError::NoNames { .. } => "cert",
            FileError::KeyRead { .. }
            | FileError::KeyParse { .. }
            | FileError::KeyMismatch { .. } => "key",
        }
    }
}

impl fmt::Debug for LoadedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // Names and file only: never key material.
        f.debug_struct("LoadedCertificate")
            .field("names", &self.names)
            .field("cert_path", &self.cert_path)
            .finish()
    }
}

fn key_error_message(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not match the certificate".to_owned()
        }
        other => format!("unusable private key: {other}"),
    }
}

/// Roots in a PEM file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("{}: no PEM certificate found", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
    },
}

/// Reads every certificate of a PEM file (trust roots).
pub fn load_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, RootsError> {
    let pem = std::fs::read(path).map_err(|source| RootsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|_| RootsError::Parse {
            path: path.to_owned(),
        })?;
    if roots.is_empty() {
        return Err(RootsError::Parse {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// Reads `cert` (a PEM chain, leaf first) and `key`, checks they match, and
/// takes the names from `names` or the leaf's DNS SANs.
pub fn load(
    cert: &Path,
    key: &Path,
    names: Option<Vec<String>>,
) -> Result<LoadedCertificate, FileError> {
    let cert_pem = std::fs::read(cert).map_err(|source| FileError::CertRead {
        path: cert.to_owned(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| FileError::CertParse {
            path: cert.to_owned(),
        })?;
    if chain.is_empty() {
        return Err(FileError::CertParse {
            path: cert.to_owned(),
        });
    }
    let key_pem = std::fs::read(key).map_err(|source| FileError::KeyRead {
        path: key.to_owned(),
        source,
    })?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| FileError::KeyParse {
        path: key.to_owned(),
    })?;
    let names_configured = names.is_some();
    let names = match names {
        Some(names) => names,
        None => {
            let leaf =
                webpki::EndEntityCert::try_from(&chain[0]).map_err(|_| FileError::CertParse {
                    path: cert.to_owned(),
                })?;
            leaf.valid_dns_names()
                .map(str::to_ascii_lowercase)
                .collect()
        }
    };
    if names.is_empty() {
        return Err(FileError::NoNames {
            path: cert.to_owned(),
        });
    }
    let certified = CertifiedKey::from_der(chain, private_key, &provider()).map_err(|e| {
        FileError::KeyMismatch {
            path: key.to_owned(),
            message: key_error_message(&e),
        }
    })?;
    Ok(LoadedCertificate {
        names,
        key: Arc::new(certified),
        cert_path: cert.to_owned(),
        key_path: key.to_owned(),
        names_configured,
    })
}

/// Reads `loaded`'s files again, with the same `names` setting.
pub fn reload(loaded: &LoadedCertificate) -> Result<LoadedCertificate, FileError> {
    let names = loaded.names_configured.then(|| loaded.names.clone());
    load(&loaded.cert_path, &loaded.key_path, names)
}
