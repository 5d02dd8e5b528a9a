//! Operating the edge: the admin endpoints scraped with curl (and the
//! metrics checked by Prometheus's own `promtool`), reload on SIGHUP under
//! steady load with zero lost connections, a refused bad reload, the shadow
//! policy, and the drain on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::edge::{EdgeBuilder, metric_value};
use crate::support::hello::rustls_hello;
use crate::support::process::{require_binary, run_tool};
use crate::support::recorder::{Mode, Recorder};
use crate::support::{LK_NAME, STEP_TIMEOUT, TURN_NAME, cert_path, poll_until};

/// Client threads of the steady load during a reload.
const LOAD_THREADS: usize = 4;
/// Upper bound on the connections one load thread makes.
const LOAD_MAX_PER_THREAD: usize = 2_000;
/// Upper bound on how long the load runs.
const LOAD_MAX_TIME: Duration = Duration::from_secs(60);
/// Connections that must complete before, and again after, the reload.
const LOAD_MIN_EACH_SIDE: usize = 100;

/// Opens a passthrough connection for `sni`, sends a real ClientHello and
/// `payload`, and reads both back from the echo backend.
fn echo_through(edge: SocketAddr, sni: &str, payload: &[u8]) -> Result<TcpStream, String> {
    let mut sock = TcpStream::connect(edge).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let mut sent = rustls_hello(sni);
    sent.extend_from_slice(payload);
    sock.write_all(&sent).map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0; sent.len()];
    sock.read_exact(&mut back)
        .map_err(|e| format!("read echo: {e}"))?;
    if back != sent {
        return Err("echo differs".into());
    }
    Ok(sock)
}

/// Writes `payload` on an open connection and reads it back.
fn echo_again(sock: &mut (impl Read + Write), payload: &[u8]) -> Result<(), String> {
    sock.write_all(payload).map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0; payload.len()];
    sock.read_exact(&mut back)
        .map_err(|e| format!("read echo: {e}"))?;
    (back == payload)
        .then_some(())
        .ok_or_else(|| "echo differs".into())
}

/// The edge refused the connection as the Hearth policy does for an
/// unknown name: a fatal alert, then close, and no bytes relayed.
fn is_rejected(edge: SocketAddr, sni: &str) -> bool {
    let mut sock = TcpStream::connect(edge).unwrap();
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    sock.write_all(&rustls_hello(sni)).unwrap();
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    // Record type 21 (alert): the edge's own rejection, not an echo.
    answer.first() == Some(&21)
}

/// `hearth-wasm-edge probe --admin <admin> <path>` succeeded.
fn probe(edge: &crate::support::edge::Edge, path: &str) -> bool {
    let mut command = Command::new(crate::support::edge::EDGE_BIN);
    command.arg("probe").arg("--admin");
    command.arg(edge.admin_addr.unwrap().to_string()).arg(path);
    run_tool(command, b"", STEP_TIMEOUT).status.success()
}

/// The Hearth policy with `turn` (passthrough) and `livekit` (terminated)
/// on `backend`, and the admin listener.
fn hearth_edge(backend: SocketAddr) -> EdgeBuilder {
    EdgeBuilder::hearth()
        .backend("turn", backend)
        .backend("livekit", backend)
        .admin()
}

#[test]
fn admin_endpoints_answer_and_metrics_pass_promtool() {
    let promtool = require_binary("promtool", "prometheus");
    let backend = Recorder::start(Mode::Echo);
    let edge = hearth_edge(backend.addr).start();

    assert_eq!(edge.admin_get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(edge.admin_get("/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(edge.admin_get("/nope").0, 404);
    assert!(probe(&edge, "/readyz"), "probe exits 0 when ready");
    assert!(!probe(&edge, "/nope"), "probe exits 1 on anything but 200");

    // One passthrough with a known payload, one rejection, one dead backend.
    let payload = b"twelve bytes";
    drop(echo_through(edge.addr, TURN_NAME, payload).unwrap());
    assert!(is_rejected(edge.addr, "unknown.example"));
    let mut dead = TcpStream::connect(edge.addr).unwrap();
    dead.write_all(&rustls_hello("hearth.test")).unwrap();
    let _ = dead.read_to_end(&mut Vec::new());
    edge.expect_log(&["backend dial failed"], STEP_TIMEOUT);
    poll_until(STEP_TIMEOUT, || {
        (edge.metric("hearth_edge_connections_active") == Some(0.0)).then_some(())
    })
    .expect("connections_active back to 0");

    let (status, text) = edge.admin_get("/metrics");
    assert_eq!(status, 200);
    let lint = run_tool(
        {
            let mut c = Command::new(&promtool);
            c.args(["check", "metrics"]);
            c
        },
        text.as_bytes(),
        STEP_TIMEOUT,
    );
    assert!(
        lint.status.success(),
        "promtool check metrics:\n{}{}\n--- metrics:\n{text}",
        lint.stdout,
        lint.stderr
    );

    let value =
        |name: &str| metric_value(&text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    let hello_len = rustls_hello(TURN_NAME).len() as f64;
    assert_eq!(value("hearth_edge_connections_accepted_total"), 3.0);
    assert_eq!(
        value("hearth_edge_connections_closed_total{outcome=\"passthrough\"}"),
        1.0
    );
    assert_eq!(
        value("hearth_edge_connections_closed_total{outcome=\"reject\"}"),
        1.0
    );
    assert_eq!(
        value("hearth_edge_connections_closed_total{outcome=\"error\"}"),
        1.0
    );
    assert_eq!(
        value("hearth_edge_decisions_total{action=\"passthrough\",backend=\"turn\"}"),
        1.0
    );
    assert_eq!(
        value("hearth_edge_decisions_total{action=\"terminate\",backend=\"pocketbase\"}"),
        1.0
    );
    assert_eq!(
        value("hearth_edge_decisions_total{action=\"reject\",backend=\"\"}"),
        1.0
    );
    assert_eq!(
        value("hearth_edge_rejects_total{reason=\"unknown-sni\"}"),
        1.0
    );
    assert_eq!(
        value("hearth_edge_relayed_bytes_total{backend=\"turn\",direction=\"up\"}"),
        hello_len + payload.len() as f64
    );
    assert_eq!(
        value("hearth_edge_backend_dial_failures_total{backend=\"pocketbase\"}"),
        1.0
    );
    assert_eq!(
        value("hearth_edge_backend_dial_duration_seconds_count{backend=\"turn\"}"),
        1.0
    );
    assert_eq!(
        value("hearth_edge_policy_decision_duration_seconds_count"),
        3.0
    );
    assert_eq!(value("hearth_edge_client_hello_size_bytes_count"), 3.0);
    assert_eq!(value("hearth_edge_policy_errors_total{kind=\"trap\"}"), 0.0);
    assert_eq!(value("hearth_edge_reloads_total{result=\"success\"}"), 0.0);
    assert_eq!(value("hearth_edge_config_last_reload_successful"), 1.0);
    assert!(text.contains("hearth_edge_build_info{version=\""), "{text}");

    // The certificate's expiry, as openssl reads it.
    let enddate = run_tool(
        {
            let mut c = Command::new("openssl");
            c.args(["x509", "-noout", "-enddate", "-in"]);
            c.arg(cert_path("edge.crt"));
            c
        },
        b"",
        STEP_TIMEOUT,
    );
    let when = enddate
        .stdout
        .trim()
        .trim_start_matches("notAfter=")
        .to_owned();
    let epoch = run_tool(
        {
            let mut c = Command::new("date");
            c.args(["-u", "-d", &when, "+%s"]);
            c
        },
        b"",
        STEP_TIMEOUT,
    );
    let expected: f64 = epoch.stdout.trim().parse().expect("date +%s");
    assert_eq!(
        value("hearth_edge_certificate_expiry_timestamp_seconds{name=\"hearth.test\"}"),
        expected
    );
}

#[test]
fn reload_under_load_loses_nothing_and_new_connections_follow_the_new_config() {
    let before = Recorder::start(Mode::Echo);
    let after = Recorder::start(Mode::Echo);
    let builder = hearth_edge(before.addr);
    let edge = builder.clone().start();
    let alias = "cdn.hearth.test";
    assert!(is_rejected(edge.addr, alias), "no alias before the reload");

    // Long-lived streams opened before the reload: one passed through, one
    // terminated by the edge (its TLS session must survive the swap).
    let mut long = echo_through(edge.addr, TURN_NAME, b"opened before").unwrap();
    let mut long_tls = crate::support::tls::connect(edge.addr, LK_NAME, &["http/1.1"])
        .expect("TLS through the edge");
    echo_again(&mut long_tls, b"terminated before").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..LOAD_THREADS)
        .map(|t| {
            let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
            let addr = edge.addr;
            std::thread::spawn(move || {
                for i in 0..LOAD_MAX_PER_THREAD {
                    if stop.load(Ordering::SeqCst) || started.elapsed() > LOAD_MAX_TIME {
                        break;
                    }
                    let payload = format!("load {t}/{i}");
                    match echo_through(addr, TURN_NAME, payload.as_bytes()) {
                        Ok(_) => {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => failures.lock().unwrap().push(format!("{t}/{i}: {e}")),
                    }
                }
            })
        })
        .collect();

    let wait_done = |n: usize| {
        poll_until(LOAD_MAX_TIME, || {
            (done.load(Ordering::SeqCst) >= n).then_some(())
        })
        .unwrap_or_else(|| panic!("load stalled below {n}: {:?}", failures.lock().unwrap()))
    };
    wait_done(LOAD_MIN_EACH_SIDE);

    // New config: TURN moves to another backend and gains an alias.
    let next = builder
        .clone()
        .backend("turn", after.addr)
        .policy_config("turn_aliases", alias);
    edge.rewrite_config(&next);
    let at_reload = done.load(Ordering::SeqCst);
    edge.signal("HUP");
    edge.expect_log(&["reloaded"], STEP_TIMEOUT * 3);
    wait_done(at_reload + LOAD_MIN_EACH_SIDE);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} connections failed across the reload: {:?}\n{}",
        failures.len(),
        done.load(Ordering::SeqCst) + failures.len(),
        &failures[..failures.len().min(5)],
        edge.logs().dump()
    );
    assert!(
        after.accepts() > 0,
        "connections after the reload went to the new backend"
    );

    // The streams from before the reload still work, on the old backend.
    echo_again(&mut long, b"still here after the reload").unwrap();
    echo_again(&mut long_tls, b"terminated, still here").unwrap();
    assert!(
        String::from_utf8_lossy(&before.received(0)).contains("still here after the reload"),
        "the long-lived stream stays on the backend it was routed to"
    );
    // New connections follow the new config and the new policy config.
    let before_accepts = before.accepts();
    echo_through(edge.addr, alias, b"via the alias").unwrap();
    echo_through(edge.addr, TURN_NAME, b"after").unwrap();
    assert_eq!(
        before.accepts(),
        before_accepts,
        "nothing new goes to the old backend"
    );
    assert_eq!(
        edge.metric("hearth_edge_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    println!(
        "reload under load: {} connections, 0 failed, {:?}",
        done.load(Ordering::SeqCst),
        started.elapsed()
    );
}

#[test]
fn a_changed_config_file_is_reloaded_without_a_signal_when_watched() {
    let before = Recorder::start(Mode::Echo);
    let after = Recorder::start(Mode::Echo);
    let builder = hearth_edge(before.addr).yaml("reload: { watch_interval: 100ms }\n");
    let edge = builder.clone().start();
    echo_through(edge.addr, TURN_NAME, b"before").unwrap();
    assert_eq!(edge.logs().count("reloaded"), 0, "nothing changed yet");

    edge.rewrite_config(&builder.backend("turn", after.addr));
    edge.expect_log(&["watched files changed"], STEP_TIMEOUT);
    edge.expect_log(&["reloaded"], STEP_TIMEOUT);
    echo_through(edge.addr, TURN_NAME, b"after").unwrap();
    assert_eq!((before.accepts(), after.accepts()), (1, 1));
    // One change, one reload.
    assert_eq!(
        edge.metric("hearth_edge_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
}

#[test]
fn a_bad_reload_is_refused_and_the_running_config_keeps_serving() {
    let backend = Recorder::start(Mode::Echo);
    let builder = hearth_edge(backend.addr);
    let edge = builder.clone().start();
    let good = std::fs::read_to_string(&edge.config_path).unwrap();

    // An invalid config: named file, line and field in the log.
    edge.write_config(&good.replace("policy:", "polcy:"));
    edge.signal("HUP");
    let line = edge.expect_log(&["reload failed"], STEP_TIMEOUT);
    assert!(line.contains("edge.yaml:"), "{line}");
    echo_through(edge.addr, TURN_NAME, b"still served").unwrap();

    // A policy that is not a component: refused at load, before any swap.
    let junk = edge.config_path.with_file_name("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    edge.rewrite_config(&builder.clone().policy(junk));
    edge.signal("HUP");
    edge.logs()
        .wait_for_n(&["reload failed"], 2, STEP_TIMEOUT)
        .unwrap_or_else(|| panic!("second refusal not logged:\n{}", edge.logs().dump()));
    echo_through(edge.addr, TURN_NAME, b"still served").unwrap();

    // A policy config that the policy's `init` refuses.
    edge.rewrite_config(&builder.clone().policy_config("no_such_key", "x"));
    edge.signal("HUP");
    let lines = edge
        .logs()
        .wait_for_n(&["reload failed"], 3, STEP_TIMEOUT)
        .unwrap_or_else(|| panic!("third refusal not logged:\n{}", edge.logs().dump()));
    assert!(lines[2].contains("no_such_key"), "{}", lines[2]);
    echo_through(edge.addr, TURN_NAME, b"still served").unwrap();

    assert_eq!(
        edge.metric("hearth_edge_reloads_total{result=\"failure\"}"),
        Some(3.0)
    );
    assert_eq!(
        edge.metric("hearth_edge_reloads_total{result=\"success\"}"),
        Some(0.0)
    );
    assert_eq!(
        edge.metric("hearth_edge_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(edge.logs().count("reloaded"), 0);
}

#[test]
fn shadow_disagreements_are_counted_and_logged_without_changing_outcomes() {
    let backend = Recorder::start(Mode::Echo);
    let policy = crate::support::hearth_policy();
    // The shadow knows the domain under another name: it rejects what the
    // live policy passes through, and passes through what it rejects.
    let edge = hearth_edge(backend.addr)
        .yaml(&format!(
            "shadow:\n  path: \"{}\"\n  config: {{ domain: other.test, turn_aliases: cdn.hearth.test }}\n",
            policy.display()
        ))
        .start();

    echo_through(edge.addr, TURN_NAME, b"live decides").unwrap();
    assert!(
        is_rejected(edge.addr, "cdn.hearth.test"),
        "the shadow never routes"
    );

    let line = edge.expect_log(&["shadow policy disagrees", TURN_NAME], STEP_TIMEOUT);
    assert!(line.contains("live=passthrough turn"), "{line}");
    assert!(line.contains("shadow=reject unknown-sni"), "{line}");
    let line = edge.expect_log(
        &["shadow policy disagrees", "cdn.hearth.test"],
        STEP_TIMEOUT,
    );
    assert!(line.contains("live=reject unknown-sni"), "{line}");
    assert!(line.contains("shadow=passthrough turn"), "{line}");
    assert_eq!(
        edge.metric("hearth_edge_shadow_disagreements_total"),
        Some(2.0)
    );
    assert_eq!(edge.metric("hearth_edge_shadow_decisions_total"), Some(2.0));
    assert_eq!(
        edge.metric("hearth_edge_decisions_total{action=\"reject\",backend=\"\"}"),
        Some(1.0)
    );
}

/// An edge with `drain_timeout` and one passthrough stream open through it
/// to an echo backend (returned too, to keep it running).
fn edge_with_open_stream(drain_timeout: &str) -> (crate::support::edge::Edge, TcpStream, Recorder) {
    let backend = Recorder::start(Mode::Echo);
    let edge = hearth_edge(backend.addr)
        .limit("drain_timeout", drain_timeout)
        .start();
    let open = echo_through(edge.addr, TURN_NAME, b"opened").unwrap();
    (edge, open, backend)
}

#[test]
fn sigterm_drains_established_connections_then_exits_zero() {
    let (mut edge, mut open, _backend) = edge_with_open_stream("20s");

    edge.signal("TERM");
    // Not ready, no longer accepting, the established stream still works.
    poll_until(STEP_TIMEOUT, || {
        (edge.admin_get("/readyz") == (503, "draining\n".to_owned())).then_some(())
    })
    .expect("/readyz turns 503 while draining");
    assert_eq!(edge.admin_get("/healthz").0, 200);
    assert!(!probe(&edge, "/readyz"), "probe fails while draining");
    poll_until(STEP_TIMEOUT, || {
        TcpStream::connect(edge.addr).is_err().then_some(())
    })
    .expect("the listener is closed during the drain");
    echo_again(&mut open, b"during the drain").unwrap();
    assert!(
        edge.peer.exited().is_none(),
        "waits for the open connection"
    );

    drop(open);
    let status = poll_until(STEP_TIMEOUT, || edge.peer.exited()).expect("exits after the drain");
    assert!(status.success(), "{status}\n{}", edge.logs().dump());
    edge.expect_log(&["edge stopped", "closed_at_drain_timeout=0"], STEP_TIMEOUT);
}

#[test]
fn the_drain_timeout_closes_what_is_left_and_exits_zero() {
    let (mut edge, mut open, _backend) = edge_with_open_stream("300ms");

    edge.signal("INT");
    let status = poll_until(STEP_TIMEOUT, || edge.peer.exited()).expect("exits after the drain");
    assert!(status.success(), "{status}\n{}", edge.logs().dump());
    edge.expect_log(&["edge stopped", "closed_at_drain_timeout=1"], STEP_TIMEOUT);
    // The client sees its connection closed.
    let mut rest = Vec::new();
    let read = open.read_to_end(&mut rest);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "connection closed: {read:?} {rest:?}"
    );
}

#[test]
fn a_second_sigterm_cuts_the_drain_short() {
    let (mut edge, mut open, _backend) = edge_with_open_stream("60s");

    edge.signal("TERM");
    edge.expect_log(&["draining", "connections=1"], STEP_TIMEOUT);
    echo_again(&mut open, b"still draining").unwrap();
    edge.signal("TERM");
    let status = poll_until(STEP_TIMEOUT, || edge.peer.exited()).expect("exits long before 60 s");
    assert!(status.success(), "{status}\n{}", edge.logs().dump());
    edge.expect_log(&["drain cut short"], STEP_TIMEOUT);
    edge.expect_log(&["edge stopped", "closed_at_drain_timeout=1"], STEP_TIMEOUT);
}

#[test]
fn json_logs_at_trace_level_carry_no_key_material() {
    let backend = Recorder::start(Mode::Echo);
    let edge = EdgeBuilder::hearth()
        .backend("turn", backend.addr)
        .backend("livekit", backend.addr)
        .log_level("trace")
        .json_logs()
        .start();
    // A terminated connection (the edge's key signs the handshake) and a
    // passed-through one.
    let mut tls = crate::support::tls::connect(edge.addr, LK_NAME, &["http/1.1"])
        .expect("TLS through the edge");
    tls.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    tls.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    drop(tls);
    drop(echo_through(edge.addr, TURN_NAME, b"pong").unwrap());
    edge.logs()
        .wait_for_n(&["connection closed"], 2, STEP_TIMEOUT)
        .unwrap_or_else(|| panic!("two close lines:\n{}", edge.logs().dump()));

    let key_pem = std::fs::read_to_string(cert_path("edge.key")).unwrap();
    let key_lines: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect();
    assert!(!key_lines.is_empty());
    let lines = edge.logs().lines();
    assert!(lines.len() > 5, "trace logs something: {lines:?}");
    for line in &lines {
        let object: serde_yaml::Value =
            serde_yaml::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            object["level"].is_string() && object["timestamp"].is_string(),
            "{line}"
        );
        assert!(!line.contains("PRIVATE KEY"), "{line}");
        for k in &key_lines {
            assert!(!line.contains(k), "key material in a log line: {line}");
        }
    }
}

#[test]
fn rust_log_overrides_the_configured_level() {
    // Configured `info`; RUST_LOG keeps warnings only.
    let edge = EdgeBuilder::hearth().env("RUST_LOG", "warn").start();
    for n in 1..=2 {
        let mut sock = TcpStream::connect(edge.addr).unwrap();
        sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        sock.write_all(&rustls_hello(TURN_NAME)).unwrap();
        let _ = sock.read_to_end(&mut Vec::new());
        edge.logs()
            .wait_for_n(&["backend dial failed"], n, STEP_TIMEOUT)
            .unwrap_or_else(|| panic!("warning {n} missing:\n{}", edge.logs().dump()));
    }
    // The first connection's info line would have come before the second
    // warning.
    assert_eq!(
        edge.logs().count("connection closed"),
        0,
        "{}",
        edge.logs().dump()
    );
    assert_eq!(edge.logs().count("edge started"), 0);
}
