//! The HTTP mode: after the edge terminates TLS for a route set
//! (`http_routes`), or on a `plain_listen` listener, the connection is
//! served by hyper (HTTP/1.1, or HTTP/2 when ALPN chose `h2`) and each
//! request is routed by host and path to a backend, with streaming bodies,
//! forwarding headers, WebSocket upgrades and optional `forward_auth`.
//!
//! - `http/handler.rs`: one request, top to bottom (start reading here).
//! - `http/routes.rs`: first-match routing and prefix strip.
//! - `http/headers.rs`: hop-by-hop and forwarding headers.
//! - `http/policy.rs`: the policy's `on-request`, for an `http-policy`.
//! - `http/forward_auth.rs`: the authorization subrequest.
//! - `http/hosted.rs`: a route answered by a handler component.
//! - `http/client.rs`: connections to backends, per pool member.
//! - `http/h1.rs`: HTTP/1.1 toward backends.
//! - `http/body.rs`: the body type of both directions.
//! - `http/error.rs`: failures and the answers they become.
//!
//! The connection reaches [`serve`] from `proxy/conn.rs` (after the TLS
//! handshake) or `proxy/plain.rs` (plain listeners); backends' pools are
//! `upstream.rs`, the policy seam `decide.rs`, byte counts `io.rs`.

mod body;
mod client;
mod error;
mod forward_auth;
mod h1;
mod handler;
mod headers;
mod hosted;
mod policy;
mod routes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

pub use error::HttpError;
pub use hosted::Handlers;

use crate::config::Config;
use crate::decide::Decide;
use crate::metrics::Metrics;
use crate::upstream::Upstreams;
use client::Upstream;

/// Everything the HTTP mode's requests read: the config, each backend's
/// HTTP side, and the policy when it answers `on-request`.
pub struct Http {
    config: Arc<Config>,
    upstreams: HashMap<String, Arc<Upstream>>,
    /// Set only for a policy of the `http-policy` world: plain policies
    /// cost requests nothing.
    policy: Option<Arc<dyn Decide>>,
    /// The handler components routes may name, loaded with this config.
    handlers: Arc<Handlers>,
    metrics: Arc<Metrics>,
}

/// The connection a request arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client (TCP peer).
    pub source: SocketAddr,
    /// `https` or `http`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// The route set's name.
    pub routes: String,
    /// The TLS connection's SNI; `None` on plain listeners.
    pub sni: Option<String>,
    /// The client address as the forwarding headers write it.
    pub source_text: headers::SourceText,
}

impl ConnInfo {
    /// A connection from `source` into route set `routes`.
    pub fn new(
        source: SocketAddr,
        proto: &'static str,
        routes: String,
        sni: Option<String>,
    ) -> ConnInfo {
        ConnInfo {
            source,
            proto,
            routes,
            sni,
            source_text: headers::SourceText::new(source.ip()),
        }
    }
}

// === impl Http ===

impl Http {
    /// The HTTP side of every backend of `config`, over `pools`; `policy`
    /// is asked about each request if it handles requests; `handlers`
    /// answer the routes that name them.
    pub fn new(
        config: Arc<Config>,
        pools: &Upstreams,
        policy: &Arc<dyn Decide>,
        handlers: Arc<Handlers>,
        metrics: Arc<Metrics>,
    ) -> Http {
        let upstreams = config
            .backends
            .keys()
            .filter_map(|name| {
                let pool = pools.get(name)?.clone();
                Some((name.clone(), Upstream::new(pool, config.workers)))
            })
            .collect();
        Http {
            config,
            upstreams,
            policy: policy.handles_requests().then(|| policy.clone()),
            handlers,
            metrics,
        }
    }
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("upstreams", &self.upstreams)
            .field("policy", &self.policy.as_ref().map(|p| p.name().to_owned()))
            .finish_non_exhaustive()
    }
}

/// Serves HTTP on `io` until the client closes: HTTP/2 when `h2` (ALPN
/// chose it), else HTTP/1.1 with upgrades.
pub async fn serve<I>(http: Arc<Http>, io: I, h2: bool, conn: ConnInfo) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let header_timeout = http.config.limits.http_header_timeout;
    let service = service_fn(move |request| handler::handle(http.clone(), conn.clone(), request));
    let io = TokioIo::new(io);
    if h2 {
        http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, service)
            .await
    } else {
        http1::Builder::new()
            .timer(TokioTimer::new())
            // A slow request head (slowloris) is cut here; hyper closes the
            // connection (with a 408 when nothing is in flight).
            .header_read_timeout(header_timeout)
            .serve_connection(io, service)
            .with_upgrades()
            .await
    }
}
