//! ACME certificates for `tls.names`, driven by rustls-acme: one order and
//! one certificate per name, renewed by rustls-acme when two thirds of its
//! lifetime have passed (retried with backoff on failure).
//!
//! The edge answers the CA's validations itself, whatever the policy would
//! do with the name: TLS-ALPN-01 on the TLS listener (`proxy/conn.rs` asks
//! [`Challenges::tls_alpn_01`] before the policy), HTTP-01 on `http_listen`
//! (`proxy/http.rs` asks [`Challenges::http_01`]).
//!
//! Certificates are served from [`Acme::certificates`], filled by the cache
//! (`tls/acme/cache.rs`) whenever rustls-acme loads a cached certificate or
//! stores a new one; the same moment writes `tls.export` files
//! (`tls/export.rs`) and runs their `on_renew`.

mod cache;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_acme::{AcmeConfig, AcmeState, ResolvesServerCertAcme, UseChallenge};
use tracing::{info, warn};

use super::CertStore;
use crate::config::{AcmeSettings, Challenge, ExportSettings};
use crate::metrics::Metrics;
use crate::sync::lock;

pub use cache::{CacheDir, Deployer};

/// The ALPN protocol of TLS-ALPN-01 validations (RFC 8737).
pub const ACME_TLS_ALPN: &str = "acme-tls/1";

/// Answers the CA's validation requests.
pub trait Challenges: Send + Sync + fmt::Debug {
    /// The TLS config that answers a TLS-ALPN-01 validation for
    /// `server_name`, or `None` when the edge does not manage the name.
    fn tls_alpn_01(&self, server_name: &str) -> Option<Arc<ServerConfig>>;
    /// The key authorization for an HTTP-01 `token`, when one is pending.
    fn http_01(&self, token: &str) -> Option<String>;
}

/// The ACME manager: per-name state, run in background tasks once the
/// listeners that answer the validations are bound ([`Acme::run`]).
pub struct Acme {
    names: HashMap<String, Managed>,
    store: Arc<CertStore>,
    /// State machines not yet running.
    pending: Mutex<Vec<(String, AcmeState<io::Error, io::Error>)>>,
    metrics: Arc<Metrics>,
}

/// One managed name.
struct Managed {
    resolver: Arc<ResolvesServerCertAcme>,
    /// rustls config with ALPN `acme-tls/1` and the challenge resolver.
    challenge_tls: Arc<ServerConfig>,
}

/// ACME could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The cache directory is unusable.
    #[error("acme cache {path}: {source}")]
    Cache {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A configured root was refused by rustls.
    #[error("acme ca_root: {0}")]
    Root(rustls::Error),
}

// === impl Acme ===

impl Acme {
    /// Prepares the cache and one ACME state machine per name; nothing is
    /// ordered until [`Acme::run`].
    pub fn new(
        settings: &AcmeSettings,
        exports: &[ExportSettings],
        metrics: Arc<Metrics>,
    ) -> Result<Acme, AcmeError> {
        let cache = CacheDir::open(&settings.cache_dir, &settings.directory).map_err(|source| {
            AcmeError::Cache {
                path: settings.cache_dir.display().to_string(),
                source,
            }
        })?;
        let client = client_config(settings)?;
        let store = Arc::new(CertStore::new());
        let mut names = HashMap::new();
        let mut pending = Vec::new();
        for name in &settings.names {
            let deployer = Deployer {
                name: name.clone(),
                store: store.clone(),
                exports: exports
                    .iter()
                    .filter(|e| &e.name == name)
                    .cloned()
                    .collect(),
                metrics: metrics.clone(),
            };
            let challenge = match settings.challenge {
                Challenge::TlsAlpn01 => UseChallenge::TlsAlpn01,
                Challenge::Http01 => UseChallenge::Http01,
            };
            let base = match &client {
                Some(client) => AcmeConfig::new_with_client_config([name], client.clone()),
                None => AcmeConfig::new_with_provider([name], super::provider()),
            };
            let state = base
                .directory(&settings.directory)
                .contact(&settings.contact)
                .challenge_type(challenge)
                .cache(cache.for_name(deployer))
                .state();
            let managed = Managed {
                resolver: state.resolver(),
                challenge_tls: state.challenge_rustls_config_with_provider(super::provider()),
            };
            names.insert(name.to_ascii_lowercase(), managed);
            pending.push((name.clone(), state));
        }
        info!(
            names = ?settings.names,
            directory = %settings.directory,
            challenge = ?settings.challenge,
            "acme started"
        );
        Ok(Acme {
            names,
            store,
            pending: Mutex::new(pending),
            metrics,
        })
    }

    /// Starts one background task per name: cached certificates are
    /// deployed, missing or due ones ordered. Call it once the listeners
    /// are bound; must be called inside a tokio runtime.
    pub fn run(&self) {
        let pending = std::mem::take(&mut *lock(&self.pending));
        for (name, state) in pending {
            tokio::spawn(drive(name, state, self.metrics.clone()));
        }
    }

    /// The certificates obtained so far, by name.
    pub fn certificates(&self) -> Arc<CertStore> {
        self.store.clone()
    }
}

impl fmt::Debug for Acme {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut names: Vec<&String> = self.names.keys().collect();
        names.sort();
        f.debug_struct("Acme").field("names", &names).finish()
    }
}

impl Challenges for Acme {
    fn tls_alpn_01(&self, server_name: &str) -> Option<Arc<ServerConfig>> {
        let name = server_name.strip_suffix('.').unwrap_or(server_name);
        self.names
            .get(&name.to_ascii_lowercase())
            .map(|m| m.challenge_tls.clone())
    }

    fn http_01(&self, token: &str) -> Option<String> {
        self.names
            .values()
            .find_map(|m| m.resolver.get_http_01_key_auth(token))
    }
}

/// The TLS client config for talking to the directory when `ca_root` is
/// set; `None` leaves rustls-acme's Web PKI roots.
fn client_config(settings: &AcmeSettings) -> Result<Option<Arc<ClientConfig>>, AcmeError> {
    if settings.ca_roots.is_empty() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for root in &settings.ca_roots {
        roots.add(root.clone()).map_err(AcmeError::Root)?;
    }
    let config = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(AcmeError::Root)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// Runs one name's ACME state machine for the life of the process, logging
/// each event.
async fn drive(name: String, mut state: AcmeState<io::Error, io::Error>, metrics: Arc<Metrics>) {
    while let Some(event) = state.next().await {
        match event {
            Ok(ok) => info!(name = %name, event = ?ok, "acme"),
            Err(error) => {
                metrics.acme_errors.fetch_add(1, Ordering::Relaxed);
                warn!(name = %name, error = %error, "acme failed; retrying with backoff");
            }
        }
    }
}
