//! In-crate integration tests of the data path: a real [`Edge`] on
//! 127.0.0.1:0 with tokio echo backends, raw TCP clients and a rustls client.
//! The policy is a plain function here; the wasm runtime and real peers are
//! covered by the end-to-end suite (`host/tests/e2e`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearth_edge_policy::{
    Alert, ClientHello, Decision, PolicyError, ProxyProtocol, Rejection, Route,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Decide, Edge, proxy_protocol, reject};
use crate::config::Config;
use crate::metrics::Snapshot;
use crate::tls::CertStore;
use crate::tls::local_ca::LocalCa;
use crate::tls::local_ca::tests::temp_dir;

/// Bounds every wait on the network in these tests.
const STEP: Duration = Duration::from_secs(10);
/// How often metrics are polled while waiting for a connection to finish.
const POLL: Duration = Duration::from_millis(5);
/// Polls before giving up on a counter (`POLL` × this ≈ `STEP`).
const MAX_POLLS: usize = 2000;

// === fixtures ===

struct Running {
    addr: SocketAddr,
    edge_metrics: Arc<crate::metrics::Metrics>,
}

impl Running {
    fn metrics(&self) -> Snapshot {
        self.edge_metrics.snapshot()
    }

    /// Waits until `done` holds for the metrics (connections finish on
    /// their own task, after the client saw the end).
    async fn wait_for(&self, what: &str, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
        for _ in 0..MAX_POLLS {
            let snapshot = self.metrics();
            if done(&snapshot) {
                return snapshot;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.metrics());
    }
}

/// Starts an edge with `backends` (YAML lines under `backends:`) and `extra`
/// top-level YAML.
async fn start(backends: &str, extra: &str, policy: impl Decide, certs: Arc<CertStore>) -> Running {
    start_yaml(
        &format!(
            "listen: \"127.0.0.1:0\"\npolicy: {{ path: unused.wasm }}\nbackends:\n{backends}{extra}"
        ),
        policy,
        certs,
    )
    .await
}

/// A config from test YAML; the policy path is never read.
fn test_config(yaml: &str) -> Config {
    Config::from_yaml(
        yaml,
        "test.yaml",
        Path::new("."),
        Some(Path::new("unused.wasm")),
    )
    .unwrap()
}

async fn start_yaml(yaml: &str, policy: impl Decide, certs: Arc<CertStore>) -> Running {
    let config = test_config(yaml);
    let edge = Edge::bind(Arc::new(config), Arc::new(policy), certs).unwrap();
    let addr = edge.local_addrs()[0];
    let edge_metrics = edge.metrics();
    tokio::spawn(edge.run(std::future::pending()));
    Running { addr, edge_metrics }
}

/// An echo backend: copies everything back, closes after the client's EOF.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A backend that reads to EOF, then answers with how many bytes it got:
/// only works if half-close reaches it and its answer still flows back.
async fn counting_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if stream.read_to_end(&mut all).await.is_ok() {
                    let _ = stream
                        .write_all(format!("got {}", all.len()).as_bytes())
                        .await;
                }
            });
        }
    });
    addr
}

/// A port with nothing listening.
async fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn route(backend: &str, proxy_protocol: ProxyProtocol) -> Route {
    Route {
        backend: backend.to_owned(),
        proxy_protocol,
    }
}

/// The routing used by most tests: `pass.test` → passthrough to `echo`,
/// `tls.test` and `lk.hearth.test` → terminate to `echo`, anything else rejected.
fn by_name(hello: &ClientHello) -> Result<Decision, PolicyError> {
    Ok(match hello.server_name.as_deref() {
        Some("pass.test") => Decision::Passthrough(route("echo", ProxyProtocol::BackendDefault)),
        Some("proxied.test") => Decision::Passthrough(route("echo", ProxyProtocol::V2)),
        Some("tls.test" | "lk.hearth.test") => {
            Decision::Terminate(route("echo", ProxyProtocol::BackendDefault))
        }
        Some("ghost.test") => Decision::Passthrough(route("ghost", ProxyProtocol::BackendDefault)),
        Some("trap.test") => return Err(PolicyError::Trap("unreachable".to_owned())),
        _ => Decision::Reject(Rejection {
            reason: "unknown-sni".to_owned(),
            alert: Alert::UnrecognizedName,
        }),
    })
}

/// A real ClientHello (rustls's) for `name`, as the bytes of its record.
fn hello_bytes(name: &str) -> Vec<u8> {
    hello_bytes_with_alpn(name, &[])
}

/// A TLS client trusting only `ca`, offering `alpn`.
fn connector_trusting(ca: &LocalCa, alpn: &[&str]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap()
}

async fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(STEP, stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}

async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    // A reset after the alert still leaves what was read.
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut buf))
        .await
        .unwrap();
    buf
}

// === passthrough ===

#[tokio::test]
async fn passthrough_replays_the_hello_unchanged_then_relays_both_ways() {
    let echo = echo_backend().await;
    let edge = start(
        &format!("  echo: {{ addr: \"{echo}\" }}\n"),
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let hello = hello_bytes("pass.test");
    let mut client = connect(edge.addr).await;
    // The hello in two writes, split inside the record header.
    client.write_all(&hello[..3]).await.unwrap();
    client.flush().await.unwrap();
    client.write_all(&hello[3..]).await.unwrap();
    assert_eq!(read_exactly(&mut client, hello.len()).await, hello);
    client.write_all(b"after the hello").await.unwrap();
    assert_eq!(read_exactly(&mut client, 15).await, b"after the hello");
    client.shutdown().await.unwrap();
    assert!(read_to_end(&mut client).await.is_empty());

    let m = edge
        .wait_for("the close", |m| m.closed["passthrough"] == 1)
        .await;
    assert_eq!(m.bytes_up, (hello.len() + 15) as u64);
    assert_eq!(m.bytes_down, (hello.len() + 15) as u64);
    assert_eq!((m.accepted, m.active), (1, 0));
}

#[tokio::test]
async fn half_close_reaches_the_backend_and_its_answer_still_comes_back() {
    let backend = counting_backend().await;
    let edge = start(
        &format!("  echo: {{ addr: \"{backend}\" }}\n"),
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let hello = hello_bytes("pass.test");
    let mut client = connect(edge.addr).await;
    client.write_all(&hello).await.unwrap();
    client.write_all(b"12345").await.unwrap();
    client.shutdown().await.unwrap();
    let answer = read_to_end(&mut client).await;
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        format!("got {}", hello.len() + 5)
    );
}

#[tokio::test]
async fn proxy_v2_header_precedes_the_hello_when_the_decision_asks() {
    let echo = echo_backend().await;
    let edge = start(
        &format!("  echo: {{ addr: \"{echo}\" }}\n"),
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let hello = hello_bytes("proxied.test");
    let mut client = connect(edge.addr).await;
    client.write_all(&hello).await.unwrap();
    let expected_header = proxy_protocol::header_v2(client.local_addr().unwrap(), edge.addr);
    let got = read_exactly(&mut client, expected_header.len() + hello.len()).await;
    assert_eq!(&got[..expected_header.len()], expected_header.as_slice());
    assert_eq!(&got[expected_header.len()..], hello.as_slice());
}

#[tokio::test]
async fn proxy_v2_follows_the_backend_default() {
    let echo = echo_backend().await;
    let backends = format!("  echo: {{ addr: \"{echo}\", proxy_protocol: v2 }}\n");
    let edge = start(&backends, "", by_name, Arc::new(CertStore::new())).await;
    let hello = hello_bytes("pass.test");
    let mut client = connect(edge.addr).await;
    client.write_all(&hello).await.unwrap();
    let got = read_exactly(&mut client, 16).await;
    assert_eq!(&got[..12], b"\r\n\r\n\0\r\nQUIT\n");
}

// === terminate ===

#[tokio::test]
async fn terminate_serves_the_certificate_for_the_sni_and_relays_plaintext() {
    let echo = echo_backend().await;
    let dir = temp_dir("terminate");
    let ca = LocalCa::load_or_create(&dir).unwrap();
    let store = Arc::new(CertStore::new());
    // Served through the wildcard entry.
    store.replace([(
        "*.hearth.test".to_owned(),
        ca.issue(&["*.hearth.test".to_owned()]).unwrap(),
    )]);
    let backends = format!("  echo: {{ addr: \"{echo}\", alpn: [h2, http/1.1] }}\n");
    let edge = start(&backends, "", by_name, store).await;

    let connector = connector_trusting(&ca, &["http/1.1"]);
    let tcp = connect(edge.addr).await;
    let name = ServerName::try_from("lk.hearth.test").unwrap();
    let mut tls = tokio::time::timeout(STEP, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut echoed = [0u8; 18];
    tokio::time::timeout(STEP, tls.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"GET / HTTP/1.1\r\n\r\n");
    tls.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut rest))
        .await
        .unwrap();

    let m = edge
        .wait_for("the close", |m| m.closed["terminate"] == 1)
        .await;
    assert_eq!(
        (m.bytes_up, m.bytes_down),
        (18, 18),
        "plaintext bytes are counted"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn terminate_without_a_certificate_fails_the_handshake_and_counts_it() {
    let echo = echo_backend().await;
    let edge = start(
        &format!("  echo: {{ addr: \"{echo}\" }}\n"),
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let mut client = connect(edge.addr).await;
    client.write_all(&hello_bytes("tls.test")).await.unwrap();
    let answer = read_to_end(&mut client).await;
    // rustls answers with a fatal alert record.
    assert_eq!(answer.first(), Some(&21), "{answer:?}");
    let m = edge
        .wait_for("the failure", |m| m.closed["error"] == 1)
        .await;
    assert_eq!(m.tls_handshake_failures, 1);
}

// === reject and errors ===

#[tokio::test]
async fn reject_sends_the_policys_alert_and_counts_the_reason() {
    let edge = start(
        "  echo: { addr: \"127.0.0.1:9\" }\n",
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let mut client = connect(edge.addr).await;
    client.write_all(&hello_bytes("nobody.test")).await.unwrap();
    assert_eq!(read_to_end(&mut client).await, reject::alert_record(112));
    let m = edge
        .wait_for("the reject", |m| m.closed["reject"] == 1)
        .await;
    assert_eq!(m.rejects["unknown-sni"], 1);
    assert_eq!(m.dial_failures, 0);
}

#[tokio::test]
async fn policy_failure_fails_closed_with_internal_error() {
    let edge = start(
        "  echo: { addr: \"127.0.0.1:9\" }\n",
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let mut client = connect(edge.addr).await;
    client.write_all(&hello_bytes("trap.test")).await.unwrap();
    assert_eq!(read_to_end(&mut client).await, reject::alert_record(80));
    let m = edge.wait_for("the error", |m| m.closed["error"] == 1).await;
    assert_eq!(m.policy_errors["trap"], 1);
}

#[tokio::test]
async fn policy_failure_fails_open_to_the_on_error_backend() {
    let echo = echo_backend().await;
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\npolicy: {{ path: unused.wasm, on_error: fallback }}\nbackends:\n  fallback: {{ addr: \"{echo}\" }}\n"
    );
    let edge = start_yaml(&yaml, by_name, Arc::new(CertStore::new())).await;
    let hello = hello_bytes("trap.test");
    let mut client = connect(edge.addr).await;
    client.write_all(&hello).await.unwrap();
    assert_eq!(
        read_exactly(&mut client, hello.len()).await,
        hello,
        "passed through to the fallback"
    );
    drop(client);
    let m = edge
        .wait_for("the close", |m| m.closed["passthrough"] == 1)
        .await;
    assert_eq!(m.policy_errors["trap"], 1);
}

#[tokio::test]
async fn unknown_backend_is_a_policy_error() {
    let edge = start(
        "  echo: { addr: \"127.0.0.1:9\" }\n",
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let mut client = connect(edge.addr).await;
    client.write_all(&hello_bytes("ghost.test")).await.unwrap();
    assert_eq!(read_to_end(&mut client).await, reject::alert_record(80));
    let m = edge.wait_for("the error", |m| m.closed["error"] == 1).await;
    assert_eq!(m.policy_errors["unknown_backend"], 1);
}

#[tokio::test]
async fn plain_http_is_closed_without_a_reply_and_counted() {
    let edge = start(
        "  echo: { addr: \"127.0.0.1:9\" }\n",
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let mut client = connect(edge.addr).await;
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_end(&mut client).await.is_empty());
    let m = edge.wait_for("the error", |m| m.closed["error"] == 1).await;
    assert_eq!(m.hello_errors["not_tls_http"], 1);
}

#[tokio::test]
async fn truncated_hello_is_counted() {
    let edge = start(
        "  echo: { addr: \"127.0.0.1:9\" }\n",
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let hello = hello_bytes("pass.test");
    let mut client = connect(edge.addr).await;
    client.write_all(&hello[..hello.len() / 2]).await.unwrap();
    client.shutdown().await.unwrap();
    assert!(read_to_end(&mut client).await.is_empty());
    let m = edge.wait_for("the error", |m| m.closed["error"] == 1).await;
    assert_eq!(m.hello_errors["truncated"], 1);
}

#[tokio::test]
async fn oversized_hello_is_refused() {
    let extra = "limits: { client_hello_max_bytes: 512 }\n";
    let edge = start(
        "  echo: { addr: \"127.0.0.1:9\" }\n",
        extra,
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    // A handshake record announcing a 4 KiB ClientHello.
    let mut client = connect(edge.addr).await;
    let mut record = vec![22, 3, 1, 0x10, 0x04, 1, 0, 0x10, 0];
    record.resize(9 + 600, 0);
    client.write_all(&record).await.unwrap();
    assert!(read_to_end(&mut client).await.is_empty());
    let m = edge.wait_for("the error", |m| m.closed["error"] == 1).await;
    assert_eq!(m.hello_errors["too_large"], 1);
}

#[tokio::test(start_paused = true)]
async fn slow_hello_times_out_as_a_whole() {
    // Paused time reaches only the test's runtime: serve on it.
    let extra = "limits: { client_hello_timeout: 2s }\nworkers: 1\n";
    let edge = start(
        "  echo: { addr: \"127.0.0.1:9\" }\n",
        extra,
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let hello = hello_bytes("pass.test");
    let mut client = connect(edge.addr).await;
    let started = tokio::time::Instant::now();
    // A byte per second: every read is quick, the whole is too slow.
    let mut sent = 0;
    let mut closed = false;
    for byte in hello.iter().take(10) {
        if client.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(closed || sent == 10);
    assert!(read_to_end(&mut client).await.is_empty());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(11),
        "{elapsed:?}"
    );
    let m = edge.wait_for("the error", |m| m.closed["error"] == 1).await;
    assert_eq!(m.hello_errors["timeout"], 1);
}

#[tokio::test]
async fn dead_backend_closes_the_client_at_once() {
    let dead = dead_port().await;
    let edge = start(
        &format!("  echo: {{ addr: \"{dead}\" }}\n"),
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let mut client = connect(edge.addr).await;
    client.write_all(&hello_bytes("pass.test")).await.unwrap();
    assert!(read_to_end(&mut client).await.is_empty());
    let m = edge.wait_for("the error", |m| m.closed["error"] == 1).await;
    assert_eq!(m.dial_failures, 1);
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_others_continue() {
    let echo = echo_backend().await;
    let extra = "limits: { max_concurrent_conns: 1 }\n";
    let edge = start(
        &format!("  echo: {{ addr: \"{echo}\" }}\n"),
        extra,
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let hello = hello_bytes("pass.test");
    let mut first = connect(edge.addr).await;
    first.write_all(&hello).await.unwrap();
    assert_eq!(read_exactly(&mut first, hello.len()).await, hello);

    let mut second = connect(edge.addr).await;
    let _ = second.write_all(&hello).await;
    assert!(read_to_end(&mut second).await.is_empty());
    assert_eq!(edge.metrics().limit_rejected, 1);

    first.write_all(b"still here").await.unwrap();
    assert_eq!(read_exactly(&mut first, 10).await, b"still here");
    drop(first);
    edge.wait_for("the slot to free", |m| m.active == 0).await;
    let mut third = connect(edge.addr).await;
    third.write_all(&hello).await.unwrap();
    assert_eq!(read_exactly(&mut third, hello.len()).await, hello);
}

#[tokio::test]
async fn ipv4_and_ipv6_listeners_serve_side_by_side() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let echo = echo_backend().await;
    // The policy sees the source address as text: pass IPv6 clients, reject IPv4.
    let by_source = |hello: &ClientHello| -> Result<Decision, PolicyError> {
        Ok(match hello.source_addr.as_str() {
            "::1" => Decision::Passthrough(route("echo", ProxyProtocol::BackendDefault)),
            "127.0.0.1" => Decision::Reject(Rejection {
                reason: "ipv4".to_owned(),
                alert: Alert::AccessDenied,
            }),
            other => panic!("unexpected source address {other}"),
        })
    };
    let yaml = format!(
        "listen: [\"127.0.0.1:0\", \"[::1]:0\"]\npolicy: {{ path: unused.wasm }}\nbackends:\n  echo: {{ addr: \"{echo}\" }}\n"
    );
    let config = test_config(&yaml);
    let edge = Edge::bind(
        Arc::new(config),
        Arc::new(by_source),
        Arc::new(CertStore::new()),
    )
    .unwrap();
    let addrs = edge.local_addrs();
    let metrics = edge.metrics();
    tokio::spawn(edge.run(std::future::pending()));
    let hello = hello_bytes("pass.test");

    let mut v6 = connect(addrs[1]).await;
    v6.write_all(&hello).await.unwrap();
    assert_eq!(read_exactly(&mut v6, hello.len()).await, hello);
    let mut v4 = connect(addrs[0]).await;
    v4.write_all(&hello).await.unwrap();
    assert_eq!(read_to_end(&mut v4).await, reject::alert_record(49));
    assert_eq!(metrics.snapshot().rejects["ipv4"], 1);
}

/// Rough figures, not a pass/fail test: `cargo test --release -p
/// hearth-wasm-edge --lib measure -- --ignored --nocapture`. Compares
/// connection setup and bulk throughput through the edge (passthrough) with
/// the same echo backend reached directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_passthrough_against_direct() {
    const CONNECTIONS: usize = 2000;
    const BULK_BYTES: usize = 256 << 20;
    const CHUNK: usize = 64 << 10;
    let echo = echo_backend().await;
    let edge = start(
        &format!("  echo: {{ addr: \"{echo}\" }}\n"),
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let hello = hello_bytes("pass.test");

    for (label, addr) in [("direct", echo), ("edge", edge.addr)] {
        let started = std::time::Instant::now();
        for _ in 0..CONNECTIONS {
            let mut c = connect(addr).await;
            c.write_all(&hello).await.unwrap();
            read_exactly(&mut c, hello.len()).await;
        }
        let per_conn = started.elapsed() / CONNECTIONS as u32;

        let mut c = connect(addr).await;
        c.write_all(&hello).await.unwrap();
        read_exactly(&mut c, hello.len()).await;
        let (mut r, mut w) = c.into_split();
        let started = std::time::Instant::now();
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; CHUNK];
            for _ in 0..BULK_BYTES / CHUNK {
                w.write_all(&chunk).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        let mut total = 0;
        let mut buf = vec![0u8; CHUNK];
        while total < BULK_BYTES {
            let n = tokio::time::timeout(STEP, r.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            total += n;
        }
        writer.await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{label}: {per_conn:?} per connection (hello + echo), {:.0} MiB/s echo throughput",
            (BULK_BYTES >> 20) as f64 / secs
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections_each_get_their_own_bytes_back() {
    /// Enough to overlap hello reads, dials and relays on two workers while
    /// staying far below the default descriptor limit (4 per connection).
    const CONNECTIONS: usize = 200;
    let echo = echo_backend().await;
    let edge = start(
        &format!("  echo: {{ addr: \"{echo}\" }}\n"),
        "",
        by_name,
        Arc::new(CertStore::new()),
    )
    .await;
    let hello = Arc::new(hello_bytes("pass.test"));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CONNECTIONS {
        let hello = hello.clone();
        let addr = edge.addr;
        tasks.spawn(async move {
            let mut client = connect(addr).await;
            let mut message = hello.to_vec();
            message.extend_from_slice(format!("connection {i}").as_bytes());
            client.write_all(&message).await.unwrap();
            client.shutdown().await.unwrap();
            assert_eq!(read_to_end(&mut client).await, message, "connection {i}");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let m = edge
        .wait_for("every close", |m| {
            m.closed["passthrough"] == CONNECTIONS as u64
        })
        .await;
    assert_eq!(
        (m.accepted, m.active, m.closed["error"]),
        (CONNECTIONS as u64, 0, 0)
    );
}

// === ACME TLS-ALPN-01 ===

/// Answers TLS-ALPN-01 for one name with a fixed config.
#[derive(Debug)]
struct OneName {
    name: &'static str,
    tls: Arc<rustls::ServerConfig>,
}

impl crate::tls::Challenges for OneName {
    fn tls_alpn_01(&self, server_name: &str) -> Option<Arc<rustls::ServerConfig>> {
        (server_name == self.name).then(|| self.tls.clone())
    }
    fn http_01(&self, _: &str) -> Option<String> {
        None
    }
}

/// A real ClientHello (rustls's) for `name` offering `alpn`, as the bytes
/// of its record.
fn hello_bytes_with_alpn(name: &str, alpn: &[&str]) -> Vec<u8> {
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let mut conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(name.to_owned()).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

#[tokio::test]
async fn acme_validations_of_managed_names_are_answered_before_the_policy() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let echo = echo_backend().await;
    let dir = temp_dir("acme-alpn");
    let ca = LocalCa::load_or_create(&dir).unwrap();
    // The validation certificate for the managed name, served only with
    // ALPN acme-tls/1.
    let challenge_store = Arc::new(CertStore::new());
    challenge_store.insert(
        "managed.test",
        ca.issue(&["managed.test".to_owned()]).unwrap(),
    );
    let mut challenge_tls = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(crate::tls::Resolver::new(challenge_store)));
    challenge_tls.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let challenges = Arc::new(OneName {
        name: "managed.test",
        tls: Arc::new(challenge_tls),
    });
    // The policy would reject managed.test; it must not even be asked.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let policy = move |hello: &ClientHello| {
        counted.fetch_add(1, Ordering::SeqCst);
        by_name(hello)
    };
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\npolicy: {{ path: unused.wasm }}\nbackends:\n  echo: {{ addr: \"{echo}\" }}\n"
    );
    let config = test_config(&yaml);
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let edge = Edge::bind_full(
        Arc::new(config),
        Arc::new(policy),
        None,
        Arc::default(),
        Arc::new(CertStore::new()),
        Some(challenges),
        metrics.clone(),
    )
    .unwrap();
    let addr = edge.local_addrs()[0];
    tokio::spawn(edge.run(std::future::pending()));
    let edge = Running {
        addr,
        edge_metrics: metrics,
    };

    // 1. A validation of the managed name: the edge completes the handshake
    //    with ALPN acme-tls/1 and the validation certificate.
    let connector = connector_trusting(&ca, &["acme-tls/1"]);
    let tcp = connect(edge.addr).await;
    let tls = tokio::time::timeout(
        STEP,
        connector.connect(ServerName::try_from("managed.test").unwrap(), tcp),
    )
    .await
    .unwrap()
    .expect("the validation handshake completes");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"acme-tls/1"[..]));
    drop(tls);
    edge.wait_for("the validation", |m| m.closed["acme"] == 1)
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the policy was not asked");

    // 2. acme-tls/1 for a name the edge does not manage goes to the policy,
    //    which passes it through (the backend runs its own ACME).
    let hello = hello_bytes_with_alpn("pass.test", &["acme-tls/1"]);
    let mut stream = connect(edge.addr).await;
    stream.write_all(&hello).await.unwrap();
    assert_eq!(read_exactly(&mut stream, hello.len()).await, hello);
    drop(stream);
    edge.wait_for("the passthrough", |m| m.closed["passthrough"] == 1)
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // 3. The managed name with other ALPN besides acme-tls/1 is an ordinary
    //    connection: the policy decides (here: reject).
    let hello = hello_bytes_with_alpn("managed.test", &["h2", "acme-tls/1"]);
    let mut stream = connect(edge.addr).await;
    stream.write_all(&hello).await.unwrap();
    let _ = read_to_end(&mut stream).await;
    let m = edge
        .wait_for("the rejection", |m| m.closed["reject"] == 1)
        .await;
    assert_eq!(m.closed["acme"], 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
