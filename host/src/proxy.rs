//! The data path: accept → read ClientHello → policy → passthrough /
//! terminate / HTTP / reject.
//!
//! - `proxy/listener.rs`: sockets, the accept loop, the connection limit.
//! - `proxy/workers.rs`: the worker threads the accept loops run on.
//! - `proxy/conn.rs`: one TLS connection, top to bottom (start reading here).
//! - `proxy/relay.rs`: passthrough and terminate relays to a backend.
//! - `proxy/stun.rs`: TURN on a website's name: a terminated connection
//!   whose first bytes are STUN goes to the route set's `stun_backend`.
//! - `proxy/reject.rs`: TLS alerts for refused connections.
//! - `proxy/accept_proxy.rs`: the client's address from a balancer's
//!   PROXY header (`accept_proxy`), before anything else reads the socket.
//! - `proxy/proxy_protocol.rs`: PROXY headers on the wire, both ways.
//! - `proxy/shadow.rs`: the shadow policy, compared off the critical path.
//! - `proxy/plain.rs`: `plain_listen` connections (plain HTTP).
//! - `proxy/redirect.rs`: `http_listen` (ACME HTTP-01, 301 to https).
//!
//! Below this module and shared with the HTTP mode (`http.rs`): the policy
//! seam (`decide.rs`), byte plumbing (`io.rs`), pools (`upstream.rs`), the
//! TLS handshake (`tls/handshake.rs`) and the worker identity (`worker.rs`).
//!
//! [`Edge`] ties them together: the state connections read is one
//! [`Shared`] generation, which [`Reloader::swap`] replaces whole; each
//! connection keeps the generation it was accepted under to its end.
//! [`Edge::run`] drains on shutdown. Errors are in `error.rs`, counters in
//! `metrics.rs`, certificates in `tls.rs`.

mod accept_proxy;
mod capture;
mod conn;
mod listener;
mod plain;
pub mod proxy_protocol;
mod redirect;
pub mod reject;
mod relay;
mod shadow;
mod stun;
mod workers;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::task::{Poll, Waker};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use listener::Serve;
pub use listener::bind as bind_listener;

use crate::config::Config;
pub use crate::decide::Decide;
use crate::http::{Handlers, Http};
use crate::metrics::Metrics;
use crate::sync::{read, write};
use crate::tls::{self, CertSource, Challenges};
use crate::upstream::Upstreams;

/// State every connection reads: one generation of config and policies.
pub(crate) struct Shared {
    config: Arc<Config>,
    policy: Arc<dyn Decide>,
    /// Run after `policy` for comparison only.
    shadow: Option<shadow::Shadow>,
    /// `log.capture`: sampled hellos written as test cases.
    capture: Option<capture::Capture>,
    /// TLS server config per backend name (they differ in ALPN).
    tls: HashMap<String, Arc<ServerConfig>>,
    metrics: Arc<Metrics>,
    /// Every backend's pool (`upstream.rs`).
    upstreams: Arc<Upstreams>,
    /// The HTTP mode's state (`http.rs`).
    http: Arc<Http>,
    /// What stays from start across reloads.
    fixed: Fixed,
}

/// What a reload does not change: the ACME validations the edge answers
/// (ACME runs from start to stop), and the TLS port `http_listen`
/// redirects to (the listeners stay bound).
#[derive(Clone, Default)]
pub(crate) struct Fixed {
    challenges: Option<Arc<dyn Challenges>>,
    https_port: u16,
}

/// The current generation; accepts take a snapshot, reloads replace it.
type Live = RwLock<Arc<Shared>>;

/// Replaces the config and policies new connections use. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    fixed: Fixed,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open when the drain timeout ran out, then closed.
    pub closed: usize,
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
    /// Per worker thread, its sockets (one per address).
    per_worker: Vec<Vec<(std::net::TcpListener, Serve)>>,
    /// Every bound address and what it serves.
    bound: Vec<(SocketAddr, Serve)>,
    live: Arc<Live>,
    fixed: Fixed,
    metrics: Arc<Metrics>,
    /// Connections allowed at once: `max_concurrent_conns` at bind time.
    permits: usize,
}

/// After the drain timeout, connections still open get this long to notice
/// they are being closed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl Edge {
    /// Binds every `listen` address of `config`. Must be called inside a
    /// tokio runtime.
    pub fn bind(
        config: Arc<Config>,
        policy: Arc<dyn Decide>,
        certs: Arc<dyn CertSource>,
    ) -> Result<Edge, StartError> {
        let metrics = Arc::new(Metrics::default());
        Edge::bind_full(config, policy, None, Arc::default(), certs, None, metrics)
    }

    /// [`Edge::bind`] with a shadow policy compared against `policy`, the
    /// handler components routes name, the ACME validations to answer
    /// (`challenges`) and the counters to use.
    pub fn bind_full(
        config: Arc<Config>,
        policy: Arc<dyn Decide>,
        shadow: Option<Arc<dyn Decide>>,
        handlers: Arc<Handlers>,
        certs: Arc<dyn CertSource>,
        challenges: Option<Arc<dyn Challenges>>,
        metrics: Arc<Metrics>,
    ) -> Result<Edge, StartError> {
        let workers = config.workers.max(1);
        let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
        let mut bound = Vec::new();
        let plain = config
            .plain_listen
            .iter()
            .map(|p| (p.addr, Serve::PlainHttp(p.routes.as_str().into())));
        let redirect = config.http_listen.map(|a| (a, Serve::Redirect));
        let all = config.listen.iter().map(|&a| (a, Serve::Tls));
        for (addr, serve) in all.chain(plain).chain(redirect) {
            let group = listener::bind_group(addr, workers)
                .map_err(|source| StartError::Bind { addr, source })?;
            let local = group[0]
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            for (socket, sockets) in group.into_iter().zip(per_worker.iter_mut()) {
                sockets.push((socket, serve.clone()));
            }
            bound.push((local, serve));
        }
        let fixed = Fixed {
            challenges,
            https_port: bound.first().map_or(0, |(addr, _)| addr.port()),
        };
        let shared = Shared::new(
            config.clone(),
            policy,
            shadow,
            handlers,
            certs,
            metrics.clone(),
            fixed.clone(),
        )?;
        Ok(Edge {
            per_worker,
            bound,
            live: Arc::new(RwLock::new(Arc::new(shared))),
            fixed,
            metrics,
            permits: config
                .limits
                .max_concurrent_conns
                .min(Semaphore::MAX_PERMITS)
                .min(u32::MAX as usize),
        })
    }

    /// A handle that swaps in new configs and policies while this runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            live: self.live.clone(),
            metrics: self.metrics.clone(),
            fixed: self.fixed.clone(),
        }
    }

    /// The bound TLS addresses (with real ports when the config said `:0`).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound
            .iter()
            .filter(|(_, serve)| matches!(serve, Serve::Tls))
            .map(|(addr, _)| *addr)
            .collect()
    }

    /// The bound plain-HTTP addresses (`plain_listen`).
    pub fn plain_addrs(&self) -> Vec<SocketAddr> {
        self.bound
            .iter()
            .filter(|(_, serve)| matches!(serve, Serve::PlainHttp(_)))
            .map(|(addr, _)| *addr)
            .collect()
    }

    /// The bound address of `http_listen`, when set.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(_, serve)| matches!(serve, Serve::Redirect))
            .map(|(addr, _)| *addr)
    }

    /// The counters, live.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Accepts connections until `shutdown` completes, then stops accepting
    /// (the listening sockets are closed) and drains: established
    /// connections go on for up to `drain_timeout` of the current config,
    /// and those still open then are closed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Drained {
        self.run_until(shutdown, std::future::pending()).await
    }

    /// [`Edge::run`], with a drain that also ends early when `cut_drain`
    /// completes (it is first polled once the drain starts: e.g. a second
    /// SIGTERM).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()>,
        cut_drain: impl Future<Output = ()>,
    ) -> Drained {
        let limiter = Arc::new(Semaphore::new(self.permits));
        let (stop, stopped) = watch::channel(false);
        let (close, closing) = watch::channel(false);
        let accept = workers::Accept {
            live: self.live.clone(),
            limiter: limiter.clone(),
            stopped,
            closing,
        };
        let mut workers = workers::start(std::mem::take(&mut self.per_worker), &accept);
        drop(accept);
        shutdown.await;
        let _ = stop.send(true);
        workers.accepting_stopped().await;
        let drained = self.drain(&limiter, close, cut_drain).await;
        workers.finish().await;
        drained
    }

    /// After accepting stopped: waits for open connections within the
    /// drain timeout (or until `cut_drain`), then tells the rest to close.
    async fn drain(
        &self,
        limiter: &Semaphore,
        close: watch::Sender<bool>,
        cut_drain: impl Future<Output = ()>,
    ) -> Drained {
        let drain_timeout = current(&self.live).config.limits.drain_timeout;
        let all = u32::try_from(self.permits).unwrap_or(u32::MAX);
        // Poll `cut_drain` once before announcing the drain, so whatever it
        // waits for is set up by the time anyone reads the announcement.
        tokio::pin!(cut_drain);
        let cut_already = tokio::select! {
            biased;
            () = &mut cut_drain => true,
            () = std::future::ready(()) => false,
        };
        let open = self.permits - limiter.available_permits();
        if open > 0 {
            info!(connections = open, timeout = ?drain_timeout, "draining");
        }
        let why = tokio::select! {
            () = std::future::ready(()), if cut_already => "drain cut short",
            drained = tokio::time::timeout(drain_timeout, limiter.acquire_many(all)) => {
                if drained.is_ok() {
                    return Drained { closed: 0 };
                }
                "drain timeout reached"
            }
            () = &mut cut_drain, if !cut_already => "drain cut short",
        };
        let open = self.permits - limiter.available_permits();
        warn!(
            connections = open,
            "{why}; closing the remaining connections"
        );
        let _ = close.send(true);
        let _ = tokio::time::timeout(CLOSE_GRACE, limiter.acquire_many(all)).await;
        Drained { closed: open }
    }
}

/// Completes once `closing` turns true (the shutdown drain ran out) or its
/// sender is gone: what a connection's task races its work against.
///
/// The task is polled a dozen times in a short connection's life, and a
/// waiting `watch` future polled again re-registers its waker under the
/// channel's lock; this one registers once per waker and otherwise only
/// reads the value.
pub(crate) async fn drain_end(closing: watch::Receiver<bool>) {
    let peek = closing.clone();
    let mut closing = closing;
    let wait = closing.wait_for(|c| *c);
    tokio::pin!(wait);
    let mut registered: Option<Waker> = None;
    std::future::poll_fn(|cx| {
        if *peek.borrow() || peek.has_changed().is_err() {
            return Poll::Ready(());
        }
        if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        match wait.as_mut().poll(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => {
                registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await;
}

// === impl Shared ===

impl Shared {
    fn new(
        config: Arc<Config>,
        policy: Arc<dyn Decide>,
        shadow: Option<Arc<dyn Decide>>,
        handlers: Arc<Handlers>,
        certs: Arc<dyn CertSource>,
        metrics: Arc<Metrics>,
        fixed: Fixed,
    ) -> Result<Shared, StartError> {
        let tls = tls::server_configs(&config, certs)?;
        let upstreams = Arc::new(Upstreams::new(&config));
        upstreams.spawn_maintenance();
        let http = Arc::new(Http::new(
            config.clone(),
            &upstreams,
            &policy,
            handlers,
            metrics.clone(),
        ));
        let capture = config.log.capture.as_ref().map(capture::Capture::start);
        Ok(Shared {
            config,
            policy,
            shadow: shadow.map(shadow::Shadow::new),
            capture,
            tls,
            metrics,
            upstreams,
            http,
            fixed,
        })
    }
}

/// The generation new connections get.
fn current(live: &Live) -> Arc<Shared> {
    read(live).clone()
}

// === impl Reloader ===

impl Reloader {
    /// Makes `config`, `policy`, `shadow` and `handlers` the ones new
    /// connections use (requests in flight finish on theirs);
    /// established connections keep theirs. Everything is built before the
    /// swap, so a failure leaves the running generation in place.
    /// `listen` and `limits.max_concurrent_conns` keep their values from
    /// start.
    pub fn swap(
        &self,
        config: Arc<Config>,
        policy: Arc<dyn Decide>,
        shadow: Option<Arc<dyn Decide>>,
        handlers: Arc<Handlers>,
        certs: Arc<dyn CertSource>,
    ) -> Result<(), StartError> {
        let next = Arc::new(Shared::new(
            config,
            policy,
            shadow,
            handlers,
            certs,
            self.metrics.clone(),
            self.fixed.clone(),
        )?);
        *write(&self.live) = next;
        Ok(())
    }

    /// The config new connections use.
    pub fn config(&self) -> Arc<Config> {
        current(&self.live).config.clone()
    }
}

#[cfg(test)]
mod tests;
