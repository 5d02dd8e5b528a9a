//! The admin listener (`admin_listen`): a small HTTP/1.1 server for
//! `GET /healthz`, `GET /readyz` and `GET /metrics`, one request per
//! connection. It runs beside the data path (`proxy.rs`) and through the
//! shutdown drain, so `/readyz` answers 503 while connections drain.
//!
//! The metrics text is `metrics/prometheus.rs`; readiness is [`Health`],
//! set by `cli/serve.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use crate::metrics::{Metrics, prometheus};
use crate::tls::CertStore;

/// Whether the edge should get traffic.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
}

/// What the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    /// Readiness.
    pub health: Arc<Health>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// Certificates (files and local CA, then ACME), for their expiry.
    pub certs: Vec<Arc<CertStore>>,
    /// Unix time the process started.
    pub start_time: u64,
}

/// Largest request head read; admin requests are a line and a few headers.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A request must arrive, and its answer leave, within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 16;
/// The Prometheus text format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

// === impl Health ===

impl Health {
    /// Marks the edge ready: listeners bound, policy loaded.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Marks the edge draining: no longer ready, for good.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::SeqCst) {
            Err("draining")
        } else if !self.ready.load(Ordering::SeqCst) {
            Err("starting")
        } else {
            Ok(())
        }
    }
}

/// Serves admin requests on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(error) =
                        tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &state)).await
                    {
                        debug!(error = %error, "admin request timed out");
                    }
                });
            }
            Err(error) => {
                warn!(error = %error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head and writes the answer.
async fn answer(mut stream: TcpStream, state: &AdminState) {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST_BYTES {
            let _ = respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"too large\n",
            )
            .await;
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        )
        .await;
        return;
    }
    let (status, content_type, body): (&str, &str, Vec<u8>) = match path {
        "/healthz" => ("200 OK", "text/plain", b"ok\n".to_vec()),
        "/readyz" => match state.health.readiness() {
            Ok(()) => ("200 OK", "text/plain", b"ready\n".to_vec()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("{why}\n").into_bytes(),
            ),
        },
        "/metrics" => {
            let mut certificates: Vec<(String, i64)> =
                state.certs.iter().flat_map(|c| c.expiries()).collect();
            certificates.sort();
            let text = prometheus::render(
                &state.metrics,
                &prometheus::Context {
                    certificates: &certificates,
                    start_time: state.start_time,
                },
            );
            ("200 OK", METRICS_CONTENT_TYPE, text.into_bytes())
        }
        _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    let _ = respond_with(&mut stream, status, content_type, &body, !head_only).await;
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    respond_with(stream, status, content_type, body, true).await
}

/// Writes a whole response; `send_body` is false for `HEAD`, which gets the
/// same headers without the body.
async fn respond_with(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    send_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if send_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}
