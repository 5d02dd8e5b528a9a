//! One TLS connection, top to bottom, as one value: [`Conn::run`] reads
//! the ClientHello, answers it here if it is an ACME TLS-ALPN-01
//! validation of a name the edge manages, else asks the policy
//! (`decide.rs`), then routes: a relay (passthrough or terminate,
//! `proxy/relay.rs`), the HTTP mode (`http.rs`, or a TURN relay when a
//! route set's first bytes are STUN, `proxy/stun.rs`) or a rejection
//! (`proxy/reject.rs`). It ends with one `connection closed` line and one
//! metrics record. Every failure is a [`ConnError`], reported in
//! [`Conn::report`] and turned into what the client sees by
//! `ConnError::alert` (`error.rs`).
//!
//! Neighbours: `proxy/listener.rs` accepts and spawns [`Conn::run`];
//! `proxy/plain.rs` is the plain-HTTP listener's connection; the shadow
//! policy is handed the hello in `proxy/shadow.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_edge_hello::{ClientHello, Reader};
use hearth_edge_policy::{self as policy, Decision, PolicyError, ProxyProtocol, Rejection, Route};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, info_span, warn};

use super::relay::{self, Mode, Target};
use super::stun::{self, Sniffed};
use super::{Shared, reject};
use crate::config::{Config, RouteSet};
use crate::decide::{self, Fallback, Subject};
use crate::error::ConnError;
use crate::http::{self, ConnInfo};
use crate::io::{Counting, Counts, Replay};
use crate::metrics::{Outcome, track_active};
use crate::tls::acme::ACME_TLS_ALPN;
use crate::tls::handshake::{self, Negotiated};

/// Bytes read from the socket at a time while waiting for the hello: a
/// typical hello fits in one read, a post-quantum one in two.
const HELLO_READ_CHUNK: usize = 4096;

/// One accepted TLS connection and what is known about it, for its closing
/// line.
pub struct Conn {
    shared: Arc<Shared>,
    source: SocketAddr,
    local: SocketAddr,
    start: Instant,
    sni: Option<String>,
    /// The backend or route set chosen.
    backend: Option<String>,
    /// What the policy decided, once it has: the `connection closed` line
    /// keeps it apart from how the connection ended (a dial can fail after
    /// a passthrough decision).
    decided: Option<Outcome>,
    up: u64,
    down: u64,
    /// The HTTP mode's byte counts, read at close.
    http_counts: Option<Arc<Counts>>,
    /// What the TLS handshake negotiated, when the edge terminated.
    tls: Option<Negotiated>,
}

/// What the policy (or `on_error`) chose, resolved against the config.
enum Action<'a> {
    Relay(Target<'a>),
    /// Terminate, then serve HTTP into this route set (`http.rs`).
    Http(&'a RouteSet),
    Reject(Rejection),
}

// === impl Conn ===

impl Conn {
    /// A connection from `source` accepted on `local`, under generation
    /// `shared`.
    pub fn new(shared: Arc<Shared>, source: SocketAddr, local: SocketAddr) -> Conn {
        Conn {
            shared,
            source,
            local,
            start: Instant::now(),
            sni: None,
            backend: None,
            decided: None,
            up: 0,
            down: 0,
            http_counts: None,
            tls: None,
        }
    }

    /// Handles the connection until it is closed, or until `closing` turns
    /// true (the shutdown drain ran out). Never panics on peer input;
    /// holds `permit` (the concurrency limit) until the connection is
    /// closed: by the time `connection closed` is logged, its slot is free.
    pub async fn run(
        mut self,
        client: TcpStream,
        permit: OwnedSemaphorePermit,
        closing: watch::Receiver<bool>,
    ) {
        let shared = self.shared.clone();
        let active = track_active(&shared.metrics);
        let served = tokio::select! {
            biased;
            outcome = self.serve(client) => Some(outcome),
            () = super::drain_end(closing) => None,
        };
        let outcome = served.unwrap_or_else(|| {
            info!(source = %self.source, sni = %self.sni(), "closed at the end of the shutdown drain");
            Outcome::Error
        });
        drop((permit, active));
        self.close(outcome);
    }

    /// Hello → decision → route; failures are reported and answered here.
    async fn serve(&mut self, mut client: TcpStream) -> Outcome {
        let error = match self.route(&mut client).await {
            Ok(Routed::Done(outcome)) => return outcome,
            // Boxed, like the other TLS-terminating paths: see `serve_conn`.
            Ok(Routed::Http(set, replay)) => {
                match Box::pin(self.serve_http(client, replay, set)).await {
                    Ok(outcome) => return outcome,
                    Err(error) => {
                        // rustls has answered the client already.
                        self.report(&error);
                        return Outcome::Error;
                    }
                }
            }
            Err(error) => error,
        };
        self.report(&error);
        reject::send(&mut client, error.alert()).await;
        Outcome::Error
    }

    /// Reads the hello, answers an ACME validation, asks the policy and
    /// carries out its decision, except the HTTP mode, which needs the
    /// socket itself.
    async fn route(&mut self, client: &mut TcpStream) -> Result<Routed, ConnError> {
        let shared = self.shared.clone();
        let limits = &shared.config.limits;
        let (hello, replay) = read_hello(
            client,
            limits.client_hello_max_bytes,
            limits.client_hello_timeout,
        )
        .await?;
        self.sni = hello.server_name.clone();
        shared.metrics.hello_size(u64::from(hello.hello_bytes));
        if let Some(tls) = acme_validation(&shared, &hello) {
            // The CA closes the connection once it has seen the certificate.
            let (mut stream, _) = Box::pin(handshake::accept(
                client,
                replay,
                tls,
                limits.client_hello_timeout,
                &shared.metrics,
            ))
            .await?;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return Ok(Routed::Done(Outcome::Acme));
        }
        // The parsed hello lives only until the decision: a long-lived
        // connection keeps only what it relays.
        let action = self.decide(&shared, hello)?;
        match action {
            Action::Reject(rejection) => {
                self.decided = Some(Outcome::Reject);
                shared.metrics.decision("reject", "");
                Ok(Routed::Done(self.refuse(client, rejection).await))
            }
            Action::Relay(target) => {
                shared
                    .metrics
                    .decision(target.mode.as_str(), &target.backend.name);
                self.backend = Some(target.backend.name.clone());
                self.decided = Some(target.mode.outcome());
                let header = target.proxy_v2.then_some((self.source, self.local));
                let relayed =
                    relay::run(&shared, client, replay, &target, header, &mut self.tls).await?;
                self.up = relayed.up;
                self.down = relayed.down;
                Ok(Routed::Done(target.mode.outcome()))
            }
            Action::Http(set) => {
                self.decided = Some(Outcome::Terminate);
                shared.metrics.decision("terminate", &set.name);
                Ok(Routed::Http(set.name.clone(), replay))
            }
        }
    }

    /// Asks the policy about `hello`; on failure `policy.on_error` answers.
    fn decide<'a>(&self, shared: &'a Shared, hello: ClientHello) -> Result<Action<'a>, ConnError> {
        let config = &shared.config;
        let hello = policy_hello(hello, self.source, self.local);
        debug!(
            source = %self.source,
            sni = %self.sni(),
            alpn = %hello.alpn.join(","),
            hello_bytes = hello.hello_bytes,
            key_shares = %hex_list(&hello.key_share_groups),
            ja4 = %hello.ja4,
            "ClientHello parsed"
        );
        let subject = Subject::Hello {
            source: self.source,
            sni: self.sni.as_deref(),
        };
        let decided = decide::ask(
            &shared.metrics,
            &config.policy.on_error,
            info_span!("decide", source = %self.source),
            subject,
            || shared.policy.decide(&hello),
            |decision| {
                if let Some(shadow) = &shared.shadow {
                    shadow.compare(&hello, &decision, &shared.metrics);
                }
                if let (Some(capture), Ok(decision)) = (&shared.capture, &decision) {
                    capture.offer(&hello, decision);
                }
                decision.and_then(|d| resolve(config, d))
            },
        );
        match decided {
            Ok(action) => Ok(action),
            Err(Fallback::Reject(error)) => Err(ConnError::Policy(error)),
            Err(Fallback::Backend(name)) => {
                let route = Route {
                    backend: name.to_owned(),
                    proxy_protocol: ProxyProtocol::BackendDefault,
                };
                resolve(config, Decision::Passthrough(route)).map_err(ConnError::Policy)
            }
        }
    }

    /// Turns the client away as the policy asked.
    async fn refuse(&self, client: &mut TcpStream, rejection: Rejection) -> Outcome {
        info!(
            source = %self.source,
            sni = %self.sni(),
            reason = %rejection.reason,
            alert = %policy::describe::alert_name(rejection.alert),
            "connection rejected"
        );
        self.shared.metrics.reject(&rejection.reason);
        reject::send(client, rejection.alert).await;
        Outcome::Reject
    }

    /// Terminates TLS for route set `set` and serves HTTP on the
    /// connection until the client closes it (`http.rs`).
    async fn serve_http(
        &mut self,
        client: TcpStream,
        replay: Vec<u8>,
        set: String,
    ) -> Result<Outcome, ConnError> {
        let shared = self.shared.clone();
        let tls = shared
            .tls
            .get(&set)
            .cloned()
            .ok_or_else(|| ConnError::NoTlsConfig(set.clone()))?;
        self.backend = Some(set.clone());
        let counts = Arc::new(Counts::default());
        self.http_counts = Some(counts.clone());
        let client = Counting::new(client, counts);
        let timeout = shared.config.limits.client_hello_timeout;
        let (stream, negotiated) =
            handshake::accept(client, replay, tls, timeout, &shared.metrics).await?;
        self.tls = Some(negotiated);
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let mut stream = stream;
        let mut first = Vec::new();
        // HTTP/2 is never STUN; an HTTP/1.1 or ALPN-less connection into a
        // set with a `stun_backend` may be either: its first bytes say.
        let stun = shared.config.http_routes.get(&set).and_then(|s| {
            let name = s.stun_backend.as_ref()?;
            shared.config.backends.get(name)
        });
        if let Some(backend) = stun.filter(|_| !h2) {
            let timeout = shared.config.limits.http_header_timeout;
            match stun::sniff(&mut stream, timeout).await {
                Sniffed::Stun(first) => {
                    self.backend = Some(backend.name.clone());
                    let header = backend
                        .proxy_protocol_v2
                        .then_some((self.source, self.local));
                    let start = Instant::now();
                    let relayed = stun::relay(&shared, stream, first, backend, header).await?;
                    shared
                        .metrics
                        .turn_relay(&set, relayed.up, relayed.down, start.elapsed());
                    return Ok(Outcome::Turn);
                }
                Sniffed::Http(read) => first = read,
                Sniffed::Silent => return Ok(Outcome::Terminate),
            }
        }
        let stream = Replay::new(first, stream);
        let conn = ConnInfo::new(self.source, "https", set, self.sni.clone());
        if let Err(error) = http::serve(shared.http.clone(), stream, h2, conn).await {
            debug!(source = %self.source, error = %error, "http connection ended with an error");
        }
        Ok(Outcome::Terminate)
    }

    /// The one closing record: counters and the `connection closed` line.
    fn close(mut self, outcome: Outcome) {
        if let Some(counts) = self.http_counts.take() {
            (self.up, self.down) = counts.load();
        }
        self.shared.metrics.closed(outcome, self.up, self.down);
        // `decision`: what was done with the connection (the policy's
        // decision when it failed after one, `-` before one); `outcome`:
        // whether it ended well.
        let (decision, ended) = match outcome {
            Outcome::Error => (self.decided.map_or("-", Outcome::as_str), "error"),
            done => (done.as_str(), "ok"),
        };
        info!(
            source = %self.source,
            sni = %self.sni(),
            decision = %decision,
            outcome = %ended,
            backend = %self.backend.as_deref().unwrap_or("-"),
            tls_group = %self.tls.map_or("-", |t| t.group),
            tls_handshake = %self.tls.map_or("-", |t| t.kind),
            bytes_up = self.up,
            bytes_down = self.down,
            duration_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
            "connection closed"
        );
    }

    /// Logs and counts a failed connection.
    fn report(&self, error: &ConnError) {
        let metrics = &self.shared.metrics;
        let sni = self.sni();
        let backend = self.backend.as_deref().unwrap_or("-");
        let source = self.source;
        match error {
            ConnError::Hello(e) => {
                metrics.hello_error(e.kind());
                warn!(source = %source, reason = %e.kind(), error = %error, "ClientHello read failed");
            }
            ConnError::HelloTimeout(_) | ConnError::HelloIo(_) => {
                let reason = if matches!(error, ConnError::HelloTimeout(_)) {
                    "timeout"
                } else {
                    "io"
                };
                metrics.hello_error(reason);
                warn!(source = %source, reason = %reason, error = %error, "ClientHello read failed");
            }
            // Logged and counted where `on_error` was applied (`decide.rs`).
            ConnError::Policy(_) => {}
            ConnError::Dial { .. } | ConnError::DialTimeout { .. } => {
                metrics.dial_failure(backend);
                warn!(source = %source, sni = %sni, backend = %backend, error = %error, "backend dial failed");
            }
            ConnError::BackendIo(_) => {
                warn!(source = %source, sni = %sni, backend = %backend, error = %error, "backend write failed")
            }
            ConnError::Handshake(_) | ConnError::HandshakeTimeout(_) => {
                metrics
                    .tls_handshake_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!(source = %source, sni = %sni, error = %error, "TLS handshake failed");
            }
            ConnError::NoTlsConfig(_) | ConnError::NoPool(_) => {
                error!(source = %source, sni = %sni, backend = %backend, error = %error, "internal error")
            }
        }
    }

    fn sni(&self) -> &str {
        self.sni.as_deref().unwrap_or("-")
    }
}

/// How [`Conn::route`] left the connection.
enum Routed {
    /// Finished.
    Done(Outcome),
    /// Hand the socket to the HTTP mode of this route set, with the bytes
    /// already read.
    Http(String, Vec<u8>),
}

/// Reads until a whole ClientHello has arrived, within `timeout` for all of
/// it. Returns the hello and every byte read, for replay.
async fn read_hello(
    client: &mut TcpStream,
    max_bytes: usize,
    timeout: Duration,
) -> Result<(ClientHello, Vec<u8>), ConnError> {
    let mut reader = Reader::new(max_bytes);
    // Read into spare capacity: a zeroed chunk cost a `memset` per connection.
    let mut chunk = Vec::with_capacity(HELLO_READ_CHUNK);
    let read = async {
        loop {
            chunk.clear();
            let n = client
                .read_buf(&mut chunk)
                .await
                .map_err(ConnError::HelloIo)?;
            if n == 0 {
                return Err(ConnError::Hello(reader.finish()));
            }
            if let Some(hello) = reader.push(&chunk)? {
                return Ok(hello);
            }
        }
    };
    let hello = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ConnError::HelloTimeout(timeout))??;
    Ok((hello, reader.into_bytes()))
}

/// The challenge TLS config when `hello` is a TLS-ALPN-01 validation
/// (ALPN exactly `acme-tls/1`, RFC 8737 §3) for a name the edge manages.
/// Other names, the ones a backend gets certificates for itself, go to the
/// policy like any connection.
fn acme_validation(shared: &Shared, hello: &ClientHello) -> Option<Arc<rustls::ServerConfig>> {
    let challenges = shared.fixed.challenges.as_ref()?;
    if hello.alpn.len() != 1 || hello.alpn[0] != ACME_TLS_ALPN {
        return None;
    }
    challenges.tls_alpn_01(hello.server_name.as_deref()?)
}

/// The hello as the policy sees it.
fn policy_hello(hello: ClientHello, source: SocketAddr, local: SocketAddr) -> policy::ClientHello {
    policy::ClientHello {
        server_name: hello.server_name,
        alpn: hello.alpn,
        source_addr: decide::source_addr(source.ip()),
        source_port: source.port(),
        local_port: local.port(),
        legacy_version: hello.legacy_version,
        supported_versions: hello.supported_versions,
        cipher_suites: hello.cipher_suites,
        extensions: hello.extensions,
        supported_groups: hello.supported_groups,
        signature_algorithms: hello.signature_algorithms,
        key_share_groups: hello.key_share_groups,
        ja4: hello.ja4,
        has_ech: hello.has_ech,
        hello_bytes: hello.hello_bytes,
    }
}

/// Checks the decision's backend exists and settles its PROXY choice.
fn resolve(config: &Config, decision: Decision) -> Result<Action<'_>, PolicyError> {
    let (mode, route) = match decision {
        Decision::Reject(rejection) => return Ok(Action::Reject(rejection)),
        Decision::Passthrough(route) => (Mode::Passthrough, route),
        Decision::Terminate(route) => match config.http_routes.get(&route.backend) {
            Some(set) => return Ok(Action::Http(set)),
            None => (Mode::Terminate, route),
        },
    };
    let backend = config
        .backends
        .get(&route.backend)
        .ok_or(PolicyError::UnknownBackend(route.backend))?;
    let proxy_v2 = match route.proxy_protocol {
        ProxyProtocol::BackendDefault => backend.proxy_protocol_v2,
        ProxyProtocol::Off => false,
        ProxyProtocol::V2 => true,
    };
    Ok(Action::Relay(Target {
        mode,
        backend,
        proxy_v2,
    }))
}

/// `0x11ec,0x001d` for a log field.
fn hex_list(values: &[u16]) -> String {
    let hex: Vec<String> = values.iter().map(|v| format!("{v:#06x}")).collect();
    hex.join(",")
}
