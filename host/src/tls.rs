//! TLS termination: certificates and rustls server configs.
//!
//! - `tls/store.rs`: [`CertStore`] (certificates by name, exact and `*.`
//!   wildcard, swapped atomically), the [`CertSource`] seam and the rustls
//!   resolver over it.
//! - `pem.rs` (below `config` and `tls`): PEM certificate + key files.
//! - `tls/local_ca.rs`: the self-signed local CA of the embedded profile.
//! - `tls/expiry.rs`: a certificate's `notAfter`, for the expiry metric.
//! - `tls/reload.rs`: watches the certificate files and swaps changed ones in.
//! - `tls/acme.rs`: ACME certificates for `tls.names`, and the answers to
//!   the CA's validations.
//! - `tls/export.rs`: ACME certificates written to files, and `on_renew`.
//! - `tls/handshake.rs`: the handshake with a client, for every mode.

pub mod acme;
pub mod expiry;
pub mod export;
pub mod handshake;
pub mod local_ca;
pub mod reload;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;

pub use acme::Challenges;
pub use store::{CertSource, CertStore, Layered, Resolver};

use crate::config::Config;

pub use crate::pem::provider;

/// One rustls server config per backend and per HTTP route set: they differ
/// only in the ALPN they offer, and share the certificate source.
pub fn server_configs(
    config: &Config,
    source: Arc<dyn CertSource>,
) -> Result<HashMap<String, Arc<ServerConfig>>, rustls::Error> {
    let resolver = Arc::new(Resolver::new(source));
    let mut configs = HashMap::new();
    // Backends, and the HTTP mode's route sets (`http_routes`).
    let targets = config
        .backends
        .values()
        .map(|b| (&b.name, &b.alpn))
        .chain(config.http_routes.values().map(|s| (&s.name, &s.alpn)));
    for (name, alpn) in targets {
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        configs.insert(name.clone(), Arc::new(server));
    }
    Ok(configs)
}
