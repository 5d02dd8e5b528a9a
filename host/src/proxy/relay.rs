//! Relays: the two routes that move a connection's bytes to a backend.
//! The backend is dialled through its pool (`upstream.rs`, trying the next
//! member when one refuses), then
//! - passthrough: the backend terminates TLS; the optional PROXY v2 header
//!   and the ClientHello bytes exactly as read go first, in one write (in
//!   the SYN itself with the backend's `fast_open` and a cookie);
//! - terminate: TLS ends here (`tls/handshake.rs`); the optional PROXY v2
//!   header goes first, then plaintext.
//!
//! Both then copy both ways until the connection ends (`io/copy.rs`).
//! Called by `proxy/conn.rs` once the policy chose the route; [`dial`]
//! and [`finish`] also serve the TURN relay of `proxy/stun.rs`.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use super::{Shared, proxy_protocol};
use crate::config::Backend;
use crate::error::ConnError;
use crate::io::{RelayEnd, Relayed, relay};
use crate::metrics::Outcome;
use crate::tls::handshake::{self, Negotiated};
use crate::upstream::Lease;

/// Where a relayed connection goes.
pub struct Target<'a> {
    /// Passthrough or terminate.
    pub mode: Mode,
    /// The backend, as configured.
    pub backend: &'a Backend,
    /// Whether a PROXY v2 header goes first.
    pub proxy_v2: bool,
}

/// Whether TLS ends at the backend or here.
#[derive(Clone, Copy)]
pub enum Mode {
    /// The backend terminates TLS.
    Passthrough,
    /// The edge terminates TLS.
    Terminate,
}

// === impl Mode ===

impl Mode {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Passthrough => "passthrough",
            Mode::Terminate => "terminate",
        }
    }

    /// How a finished relay of this mode is counted.
    pub fn outcome(self) -> Outcome {
        match self {
            Mode::Passthrough => Outcome::Passthrough,
            Mode::Terminate => Outcome::Terminate,
        }
    }
}

/// Dials `target`'s backend, then passes through or terminates, and
/// relays until the connection ends; `proxy` is the (client, local)
/// address pair a PROXY v2 header carries. `up` includes the replayed
/// hello when passing through.
pub async fn run(
    shared: &Shared,
    client: &mut TcpStream,
    hello: Vec<u8>,
    target: &Target<'_>,
    proxy: Option<(SocketAddr, SocketAddr)>,
    negotiated: &mut Option<Negotiated>,
) -> Result<Relayed, ConnError> {
    let limits = &shared.config.limits;
    let name = &target.backend.name;
    let tls = match target.mode {
        Mode::Terminate => Some(
            shared
                .tls
                .get(name)
                .cloned()
                .ok_or_else(|| ConnError::NoTlsConfig(name.clone()))?,
        ),
        Mode::Passthrough => None,
    };
    let header = proxy.map(|(source, local)| proxy_protocol::header_v2(source, local));

    let relayed = match tls {
        None => {
            let replayed = hello.len() as u64;
            let first = match header {
                Some(mut header) => {
                    header.extend_from_slice(&hello);
                    header
                }
                None => hello,
            };
            let (mut backend, _lease, sent) = dial(shared, name, &first).await?;
            backend
                .write_all(&first[sent..])
                .await
                .map_err(ConnError::BackendIo)?;
            // The hello's memory is freed before the relay starts.
            drop(first);
            let mut relayed = relay(client, backend, limits.idle_timeout).await;
            relayed.up += replayed;
            relayed
        }
        // Boxed: the TLS stream's state would otherwise size every
        // connection's task, passthrough ones included.
        Some(tls) => {
            let (mut backend, _lease, _) = dial(shared, name, &[]).await?;
            Box::pin(async {
                // The handshake gets as long as the hello had.
                let (stream, tls) = handshake::accept(
                    client,
                    hello,
                    tls,
                    limits.client_hello_timeout,
                    &shared.metrics,
                )
                .await?;
                *negotiated = Some(tls);
                if let Some(header) = header {
                    backend
                        .write_all(&header)
                        .await
                        .map_err(ConnError::BackendIo)?;
                }
                Ok::<_, ConnError>(relay(stream, backend, limits.idle_timeout).await)
            })
            .await?
        }
    };
    finish(shared, name, &relayed);
    Ok(relayed)
}

/// Connects to backend `name` through its pool, timing the dial. The
/// lease is held for the connection's life: least-connections counts it.
/// `first` is what the caller writes first; the count returned of it went
/// in the SYN already (the backend's `fast_open`), the rest is the
/// caller's to write.
pub async fn dial(
    shared: &Shared,
    name: &str,
    first: &[u8],
) -> Result<(TcpStream, Lease, usize), ConnError> {
    let pool = shared
        .upstreams
        .get(name)
        .ok_or_else(|| ConnError::NoPool(name.to_owned()))?;
    let dial_start = Instant::now();
    let dialled = pool
        .connect(shared.config.limits.backend_dial_timeout, first)
        .await?;
    shared.metrics.dial_latency(name, dial_start.elapsed());
    Ok(dialled)
}

/// Counts the relay's bytes and how it ended.
pub fn finish(shared: &Shared, backend: &str, relayed: &Relayed) {
    shared.metrics.relayed(backend, relayed.up, relayed.down);
    match &relayed.end {
        RelayEnd::Closed => {}
        RelayEnd::Idle => {
            shared
                .metrics
                .idle_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            debug!(backend = %backend, "idle timeout");
        }
        RelayEnd::Error(error) => {
            debug!(backend = %backend, error = %error, "relay ended with an error")
        }
    }
}
