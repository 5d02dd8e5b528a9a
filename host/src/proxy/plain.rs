//! One connection of a `plain_listen` listener: plain HTTP into one route
//! set, no TLS and no ClientHello policy (a policy's `on-request` still
//! applies, `http/policy.rs`), until the client closes. Like a TLS
//! connection (`proxy/conn.rs`) it ends with one `connection closed` line
//! and one metrics record (`connections_closed_total{outcome="plain_http"}`
//! and the byte counters).
//!
//! Spawned by `proxy/listener.rs`; requests are served by `http.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tracing::{debug, info};

use super::Shared;
use crate::http::{self, ConnInfo};
use crate::io::{Counting, Counts};
use crate::metrics::{Outcome, track_active};

/// Serves `client` (from `source`) into route set `set` until it closes or
/// `closing` turns true; holds `permit` until then.
pub async fn run(
    shared: Arc<Shared>,
    client: TcpStream,
    source: SocketAddr,
    set: Arc<str>,
    permit: OwnedSemaphorePermit,
    closing: watch::Receiver<bool>,
) {
    let active = track_active(&shared.metrics);
    let start = Instant::now();
    let counts = Arc::new(Counts::default());
    let conn = ConnInfo::new(source, "http", set.to_string(), None);
    let io = Counting::new(client, counts.clone());
    let outcome = tokio::select! {
        result = http::serve(shared.http.clone(), io, false, conn) => {
            if let Err(error) = result {
                debug!(source = %source, error = %error, "http connection ended with an error");
            }
            Outcome::PlainHttp
        }
        () = super::drain_end(closing) => {
            info!(source = %source, "closed at the end of the shutdown drain");
            Outcome::Error
        }
    };
    drop((permit, active));
    let (up, down) = counts.load();
    shared.metrics.closed(outcome, up, down);
    info!(
        source = %source,
        sni = %"-",
        decision = %outcome.as_str(),
        backend = %set,
        bytes_up = up,
        bytes_down = down,
        duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        "connection closed"
    );
}
