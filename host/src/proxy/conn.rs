//! One connection, top to bottom: read the ClientHello, answer it here if
//! it is an ACME TLS-ALPN-01 validation of a name the edge manages, else ask
//! the policy, then pass through, terminate or reject; one
//! `connection closed` line at the end. Every failure is a [`ConnError`] reported in [`report`], and
//! turned into what the client sees by `ConnError::alert` (`error.rs`).
//!
//! Neighbours: `proxy/listener.rs` spawns [`handle`]; the three routes are
//! `proxy/passthrough.rs`, `proxy/terminate.rs` and `proxy/reject.rs`; the
//! shadow policy is handed the hello in `proxy/shadow.rs`.

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

use super::copy::{RelayEnd, Relayed};
use super::{Shared, passthrough, proxy_protocol, reject, terminate};
use crate::config::{Backend, OnError, RouteSet};
use crate::error::ConnError;
use crate::http::{self, ConnInfo, Counting, Counts};
use crate::metrics::{Outcome, track_active};
use crate::tls::acme::ACME_TLS_ALPN;

/// Bytes read from the socket at a time while waiting for the hello: a
/// typical hello fits in one read, a post-quantum one in two.
const HELLO_READ_CHUNK: usize = 4096;

/// What is known about the connection, for the closing log line.
struct Record {
    source: SocketAddr,
    sni: Option<String>,
    backend: Option<String>,
    up: u64,
    down: u64,
}

/// What the policy (or `on_error`) chose, resolved against the config.
enum Action<'a> {
    Relay(Target<'a>),
    /// Terminate, then serve HTTP into this route set (`http.rs`).
    Http(&'a RouteSet),
    Reject(Rejection),
}

/// How `serve` left the connection.
enum Served<'a> {
    /// Finished.
    Done(Outcome),
    /// Hand the socket to the HTTP mode, with the bytes already read.
    Http(&'a RouteSet, Vec<u8>),
}

/// Where a relayed connection goes.
struct Target<'a> {
    mode: Mode,
    backend: &'a Backend,
    proxy_v2: bool,
}

#[derive(Clone, Copy)]
enum Mode {
    Passthrough,
    Terminate,
}

/// Handles one accepted connection until it is closed, or until `closing`
/// turns true (the shutdown drain ran out). Never panics on peer input;
/// holds `permit` (the concurrency limit) until the connection is closed:
/// by the time `connection closed` is logged, its slot is free.
pub async fn handle(
    shared: Arc<Shared>,
    mut client: TcpStream,
    source: SocketAddr,
    local: SocketAddr,
    permit: OwnedSemaphorePermit,
    mut closing: watch::Receiver<bool>,
) {
    let active = track_active(&shared.metrics);
    let start = Instant::now();
    let mut record = Record {
        source,
        sni: None,
        backend: None,
        up: 0,
        down: 0,
    };
    let served = tokio::select! {
        served = serve(&shared, &mut client, local, &mut record) => Some(served),
        _ = closing.wait_for(|c| *c) => None,
    };
    let outcome = match served {
        Some(Ok(Served::Done(outcome))) => outcome,
        Some(Ok(Served::Http(set, replay))) => {
            let set = set.name.clone();
            let http = tokio::select! {
                result = serve_http(&shared, client, replay, &set, &mut record) => Some(result),
                _ = closing.wait_for(|c| *c) => None,
            };
            match http {
                Some(Ok(outcome)) => outcome,
                Some(Err(error)) => {
                    // rustls has answered the client already.
                    report(&shared, &record, &error);
                    Outcome::Error
                }
                None => {
                    info!(source = %source, sni = %record.sni.as_deref().unwrap_or("-"), "closed at the end of the shutdown drain");
                    Outcome::Error
                }
            }
        }
        Some(Err(error)) => {
            report(&shared, &record, &error);
            reject::send(&mut client, error.alert()).await;
            Outcome::Error
        }
        None => {
            info!(source = %source, sni = %record.sni.as_deref().unwrap_or("-"), "closed at the end of the shutdown drain");
            Outcome::Error
        }
    };
    drop((permit, active));
    shared.metrics.closed(outcome, record.up, record.down);
    info!(
        source = %source,
        sni = %record.sni.as_deref().unwrap_or("-"),
        decision = %outcome.as_str(),
        backend = %record.backend.as_deref().unwrap_or("-"),
        bytes_up = record.up,
        bytes_down = record.down,
        duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        "connection closed"
    );
}

/// Handles one connection of a `plain_listen` listener: plain HTTP into
/// route set `set`, no TLS and no policy, until the client closes or
/// `closing` turns true. One `connection closed` line.
pub async fn handle_plain(
    shared: Arc<Shared>,
    client: TcpStream,
    source: SocketAddr,
    set: Arc<str>,
    permit: OwnedSemaphorePermit,
    mut closing: watch::Receiver<bool>,
) {
    let active = track_active(&shared.metrics);
    let start = Instant::now();
    let counts = Arc::new(Counts::default());
    let conn = ConnInfo::new(source, "http", set.to_string(), None);
    let io = Counting::new(client, counts.clone());
    tokio::select! {
        result = http::serve(shared.http.clone(), io, false, conn) => {
            if let Err(error) = result {
                debug!(source = %source, error = %error, "http connection ended with an error");
            }
        }
        _ = closing.wait_for(|c| *c) => {
            info!(source = %source, "closed at the end of the shutdown drain");
        }
    }
    drop((permit, active));
    info!(
        source = %source,
        sni = %"-",
        decision = %"plain_http",
        backend = %set,
        bytes_up = counts.up.load(std::sync::atomic::Ordering::Relaxed),
        bytes_down = counts.down.load(std::sync::atomic::Ordering::Relaxed),
        duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        "connection closed"
    );
}

/// Hello → decision → route.
async fn serve<'a>(
    shared: &'a Shared,
    client: &mut TcpStream,
    local: SocketAddr,
    record: &mut Record,
) -> Result<Served<'a>, ConnError> {
    let limits = &shared.config.limits;
    let (hello, replay) = read_hello(
        client,
        limits.client_hello_max_bytes,
        limits.client_hello_timeout,
    )
    .await?;
    record.sni = hello.server_name.clone();
    shared.metrics.hello_size(u64::from(hello.hello_bytes));
    if let Some(tls) = acme_validation(shared, &hello) {
        return answer_acme(shared, client, replay, tls)
            .await
            .map(Served::Done);
    }
    // The parsed hello lives only until the decision: a long-lived
    // connection keeps only what it relays.
    let action = {
        let hello = policy_hello(hello, record.source, local);
        debug!(
            source = %record.source,
            sni = %record.sni.as_deref().unwrap_or("-"),
            alpn = %hello.alpn.join(","),
            hello_bytes = hello.hello_bytes,
            key_shares = %hex_list(&hello.key_share_groups),
            ja4 = %hello.ja4,
            "ClientHello parsed"
        );
        decide(shared, &hello, record)?
    };
    match action {
        Action::Reject(rejection) => {
            shared.metrics.decision("reject", "");
            Ok(Served::Done(
                refuse(shared, client, record, rejection).await,
            ))
        }
        Action::Relay(target) => {
            let action = match target.mode {
                Mode::Passthrough => "passthrough",
                Mode::Terminate => "terminate",
            };
            shared.metrics.decision(action, &target.backend.name);
            relay(shared, client, local, replay, record, target)
                .await
                .map(Served::Done)
        }
        Action::Http(set) => {
            shared.metrics.decision("terminate", &set.name);
            Ok(Served::Http(set, replay))
        }
    }
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

/// Completes the validation handshake with the challenge certificate; the
/// CA closes the connection once it has seen the certificate.
async fn answer_acme(
    shared: &Shared,
    client: &mut TcpStream,
    replay: Vec<u8>,
    tls: Arc<rustls::ServerConfig>,
) -> Result<Outcome, ConnError> {
    let timeout = shared.config.limits.client_hello_timeout;
    let accept =
        tokio_rustls::TlsAcceptor::from(tls).accept(terminate::Replay::new(replay, client));
    let mut stream = tokio::time::timeout(timeout, accept)
        .await
        .map_err(|_| ConnError::HandshakeTimeout(timeout))?
        .map_err(ConnError::Handshake)?;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
    Ok(Outcome::Acme)
}

/// Turns the client away as the policy asked.
async fn refuse(
    shared: &Shared,
    client: &mut TcpStream,
    record: &Record,
    rejection: Rejection,
) -> Outcome {
    info!(
        source = %record.source,
        sni = %record.sni.as_deref().unwrap_or("-"),
        reason = %rejection.reason,
        alert = %reject::alert_name(rejection.alert),
        "connection rejected"
    );
    shared.metrics.reject(&rejection.reason);
    reject::send(client, rejection.alert).await;
    Outcome::Reject
}

/// Dials the backend, then passes through or terminates, and relays until
/// the connection ends.
async fn relay(
    shared: &Shared,
    client: &mut TcpStream,
    local: SocketAddr,
    replay: Vec<u8>,
    record: &mut Record,
    target: Target<'_>,
) -> Result<Outcome, ConnError> {
    let limits = &shared.config.limits;
    let backend = target.backend;
    record.backend = Some(backend.name.clone());
    let tls = match target.mode {
        Mode::Terminate => Some(
            shared
                .tls
                .get(&backend.name)
                .cloned()
                .ok_or_else(|| ConnError::NoTlsConfig(backend.name.clone()))?,
        ),
        Mode::Passthrough => None,
    };
    let pool = shared
        .upstreams
        .get(&backend.name)
        .ok_or_else(|| ConnError::NoTlsConfig(backend.name.clone()))?;
    let dial_start = Instant::now();
    // Held for the connection's life: least-connections counts it.
    let (upstream, _lease) = pool.connect(limits.backend_dial_timeout).await?;
    shared
        .metrics
        .dial_latency(&backend.name, dial_start.elapsed());
    let header = target
        .proxy_v2
        .then(|| proxy_protocol::header_v2(record.source, local));

    let relayed = match tls {
        None => {
            passthrough::run(&mut *client, upstream, replay, header, limits.idle_timeout).await?
        }
        Some(tls) => {
            // The handshake gets as long as the hello had.
            let handshake_timeout = limits.client_hello_timeout;
            let idle = limits.idle_timeout;
            terminate::run(
                &mut *client,
                replay,
                tls,
                upstream,
                header,
                handshake_timeout,
                idle,
            )
            .await?
        }
    };
    finish_relay(shared, record, relayed);
    Ok(match target.mode {
        Mode::Passthrough => Outcome::Passthrough,
        Mode::Terminate => Outcome::Terminate,
    })
}

/// Terminates TLS for route set `set` and serves HTTP on the connection
/// until the client closes it (`http.rs`).
async fn serve_http(
    shared: &Shared,
    client: TcpStream,
    replay: Vec<u8>,
    set: &str,
    record: &mut Record,
) -> Result<Outcome, ConnError> {
    record.backend = Some(set.to_owned());
    let tls = shared
        .tls
        .get(set)
        .cloned()
        .ok_or_else(|| ConnError::NoTlsConfig(set.to_owned()))?;
    let counts = Arc::new(Counts::default());
    let client = Counting::new(client, counts.clone());
    let handshake_timeout = shared.config.limits.client_hello_timeout;
    let stream = terminate::handshake(client, replay, tls, handshake_timeout).await?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let conn = ConnInfo::new(record.source, "https", set.to_owned(), record.sni.clone());
    if let Err(error) = http::serve(shared.http.clone(), stream, h2, conn).await {
        debug!(source = %record.source, error = %error, "http connection ended with an error");
    }
    record.up = counts.up.load(std::sync::atomic::Ordering::Relaxed);
    record.down = counts.down.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Outcome::Terminate)
}

/// Reads until a whole ClientHello has arrived, within `timeout` for all of
/// it. Returns the hello and every byte read, for replay.
async fn read_hello(
    client: &mut TcpStream,
    max_bytes: usize,
    timeout: Duration,
) -> Result<(ClientHello, Vec<u8>), ConnError> {
    let mut reader = Reader::new(max_bytes);
    let mut chunk = vec![0u8; HELLO_READ_CHUNK];
    let read = async {
        loop {
            let n = client.read(&mut chunk).await.map_err(ConnError::HelloIo)?;
            if n == 0 {
                return Err(ConnError::Hello(reader.finish()));
            }
            if let Some(hello) = reader.push(&chunk[..n])? {
                return Ok(hello);
            }
        }
    };
    let hello = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ConnError::HelloTimeout(timeout))??;
    Ok((hello, reader.into_bytes()))
}

/// The hello as the policy sees it.
fn policy_hello(hello: ClientHello, source: SocketAddr, local: SocketAddr) -> policy::ClientHello {
    policy::ClientHello {
        server_name: hello.server_name,
        alpn: hello.alpn,
        source_addr: source.ip().to_canonical().to_string(),
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

/// Asks the policy; on failure applies `policy.on_error`.
fn decide<'a>(
    shared: &'a Shared,
    hello: &policy::ClientHello,
    record: &Record,
) -> Result<Action<'a>, ConnError> {
    let config = &shared.config;
    // Lines the policy logs (`host.log`) carry the connection they are about.
    let started = Instant::now();
    let decision =
        info_span!("decide", source = %record.source).in_scope(|| shared.policy.decide(hello));
    shared.metrics.decision_latency(started.elapsed());
    if let Some(shadow) = &shared.shadow {
        shadow.compare(hello, &decision, &shared.metrics);
    }
    let error = match decision.and_then(|d| resolve(config, d)) {
        Ok(action) => return Ok(action),
        Err(error) => error,
    };
    shared.metrics.policy_error(error.kind());
    warn!(
        source = %record.source,
        sni = %record.sni.as_deref().unwrap_or("-"),
        kind = %error.kind(),
        error = %error,
        on_error = %config.policy.on_error,
        "policy failed"
    );
    match &config.policy.on_error {
        OnError::Reject => Err(ConnError::Policy(error)),
        OnError::Backend(name) => {
            let route = Route {
                backend: name.clone(),
                proxy_protocol: ProxyProtocol::BackendDefault,
            };
            resolve(config, Decision::Passthrough(route)).map_err(ConnError::Policy)
        }
    }
}

/// Checks the decision's backend exists and settles its PROXY choice.
fn resolve(config: &crate::config::Config, decision: Decision) -> Result<Action<'_>, PolicyError> {
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

/// Records the relay's byte counts and how it ended.
fn finish_relay(shared: &Shared, record: &mut Record, relayed: Relayed) {
    record.up = relayed.up;
    record.down = relayed.down;
    if let Some(backend) = &record.backend {
        shared.metrics.relayed(backend, relayed.up, relayed.down);
    }
    match relayed.end {
        RelayEnd::Closed => {}
        RelayEnd::Idle => {
            shared
                .metrics
                .idle_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            debug!(source = %record.source, "idle timeout");
        }
        RelayEnd::Error(error) => {
            debug!(source = %record.source, error = %error, "relay ended with an error")
        }
    }
}

/// Logs and counts a failed connection.
fn report(shared: &Shared, record: &Record, error: &ConnError) {
    let metrics = &shared.metrics;
    let sni = record.sni.as_deref().unwrap_or("-");
    let backend = record.backend.as_deref().unwrap_or("-");
    let source = record.source;
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
        // Logged and counted where `on_error` was applied.
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
        ConnError::NoTlsConfig(_) => {
            error!(source = %source, sni = %sni, backend = %backend, error = %error, "internal error")
        }
    }
}

/// `0x11ec,0x001d` for a log field.
fn hex_list(values: &[u16]) -> String {
    let hex: Vec<String> = values.iter().map(|v| format!("{v:#06x}")).collect();
    hex.join(",")
}
