//! The data path: accept → read ClientHello → policy → passthrough /
//! terminate / reject.
//!
//! - `proxy/listener.rs`: sockets, the accept loop, the connection limit.
//! - `proxy/conn.rs`: one connection, top to bottom (start reading here).
//! - `proxy/passthrough.rs`, `proxy/terminate.rs`, `proxy/reject.rs`: the
//!   three routes.
//! - `proxy/proxy_protocol.rs`: PROXY v2 headers.
//! - `proxy/copy.rs`: the two-way relay with half-close and idle timeout.
//!
//! [`Edge`] ties them together; errors are in `error.rs`, counters in
//! `metrics.rs`, certificates in `tls.rs`.

mod conn;
mod copy;
mod listener;
mod passthrough;
pub mod proxy_protocol;
pub mod reject;
mod terminate;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hearth_edge_policy::{ClientHello, Decision, Policy, PolicyError};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use copy::RELAY_BUFFER_BYTES;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::tls::{self, CertSource};

/// Something that decides what happens to a connection: the wasm policy, or
/// a plain function in tests.
pub trait Decide: Send + Sync + 'static {
    /// The decision for one ClientHello.
    fn decide(&self, hello: &ClientHello) -> Result<Decision, PolicyError>;
}

impl Decide for Policy {
    fn decide(&self, hello: &ClientHello) -> Result<Decision, PolicyError> {
        Policy::decide(self, hello)
    }
}

impl<F> Decide for F
where
    F: Fn(&ClientHello) -> Result<Decision, PolicyError> + Send + Sync + 'static,
{
    fn decide(&self, hello: &ClientHello) -> Result<Decision, PolicyError> {
        self(hello)
    }
}

/// State every connection reads.
pub(crate) struct Shared {
    config: Arc<Config>,
    policy: Arc<dyn Decide>,
    /// TLS server config per backend name (they differ in ALPN).
    tls: HashMap<String, Arc<ServerConfig>>,
    metrics: Arc<Metrics>,
}

/// The edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS setup was refused by rustls.
    #[error("tls setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// Bound listeners, ready to run.
pub struct Edge {
    listeners: Vec<(TcpListener, SocketAddr)>,
    shared: Arc<Shared>,
}

impl Edge {
    /// Binds every `listen` address of `config`. Must be called inside a
    /// tokio runtime.
    pub fn bind(
        config: Arc<Config>,
        policy: Arc<dyn Decide>,
        certs: Arc<dyn CertSource>,
    ) -> Result<Edge, StartError> {
        let tls = tls::server_configs(&config, certs)?;
        let mut listeners = Vec::new();
        for &addr in &config.listen {
            let listener =
                listener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            listeners.push((listener, local));
        }
        let shared = Arc::new(Shared {
            config,
            policy,
            tls,
            metrics: Arc::new(Metrics::default()),
        });
        Ok(Edge { listeners, shared })
    }

    /// The bound addresses (with real ports when the config said `:0`).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, addr)| *addr).collect()
    }

    /// The counters, live.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Accepts connections until `shutdown` completes, then stops accepting
    /// and returns. Connections in flight are not waited for.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let permits = self
            .shared
            .config
            .limits
            .max_concurrent_conns
            .min(Semaphore::MAX_PERMITS);
        let limiter = Arc::new(Semaphore::new(permits));
        let (stop, stopped) = watch::channel(false);
        let mut loops = tokio::task::JoinSet::new();
        for (listener, _) in self.listeners {
            loops.spawn(listener::accept_loop(
                listener,
                self.shared.clone(),
                limiter.clone(),
                stopped.clone(),
            ));
        }
        shutdown.await;
        let _ = stop.send(true);
        while loops.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests;
