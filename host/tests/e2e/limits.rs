//! Limits: an oversized ClientHello and a silent client are cut off as
//! configured; a dead backend closes the client promptly and leaks no file
//! descriptors; the connection limit admits exactly N, refuses the N+1th at
//! once and counts every refusal.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::edge::EdgeBuilder;
use crate::support::hello::{MAX_FRAGMENT, hello_message, into_records, rustls_hello};
use crate::support::process::{dead_addr, log_field};
use crate::support::recorder::{Mode, Recorder};
use crate::support::{STEP_TIMEOUT, TURN_NAME, poll_until};

/// The configured ClientHello deadline in these tests.
const HELLO_TIMEOUT: Duration = Duration::from_millis(300);
/// The configured ClientHello size limit.
const HELLO_MAX_BYTES: usize = 16 * 1024;

/// How the edge ended a connection, from the client's side.
#[derive(Debug, PartialEq)]
enum Ended {
    /// EOF or reset, after this many bytes from the edge.
    Closed(usize),
    /// Still open when the read timed out.
    StillOpen,
}

/// Reads until the edge closes the connection or `timeout` passes.
fn wait_closed(sock: &mut TcpStream, timeout: Duration) -> Ended {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut got = 0;
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return Ended::Closed(got),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ended::StillOpen;
            }
            Err(_) => return Ended::Closed(got), // reset: closed with unread data
        }
    }
}

#[test]
fn oversized_hello_is_cut_off_and_a_big_one_within_the_limit_passes() {
    let backend = Recorder::start(Mode::Record);
    let edge = EdgeBuilder::hearth()
        .limit("client_hello_max_bytes", "16KiB")
        .backend("turn", backend.addr)
        .start();

    // 16 KiB + 1 of handshake message (two records): over the limit.
    let over = into_records(
        &hello_message(Some(TURN_NAME), HELLO_MAX_BYTES + 1),
        MAX_FRAGMENT,
    );
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    let _ = sock.write_all(&over); // the edge may reset before taking it all
    assert!(
        matches!(wait_closed(&mut sock, STEP_TIMEOUT), Ended::Closed(_)),
        "oversized hello not cut off"
    );
    edge.expect_log(&["ClientHello read failed"], STEP_TIMEOUT);
    assert_eq!(backend.accepts(), 0);

    // Control: a 15 KiB hello split over two records routes and arrives whole.
    let within = into_records(&hello_message(Some(TURN_NAME), 15 * 1024), 8 * 1024);
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.write_all(&within).unwrap();
    assert_eq!(
        backend.wait_received(0, within.len(), STEP_TIMEOUT),
        Some(within)
    );
}

#[test]
fn silent_client_is_closed_after_the_client_hello_timeout() {
    let edge = EdgeBuilder::hearth()
        .limit("client_hello_timeout", "300ms")
        .start();
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    let started = Instant::now();
    assert_eq!(
        wait_closed(&mut sock, STEP_TIMEOUT),
        Ended::Closed(0),
        "silent client not closed"
    );
    let waited = started.elapsed();
    assert!(
        waited >= HELLO_TIMEOUT - Duration::from_millis(50),
        "closed too early: {waited:?}"
    );
    assert!(waited < HELLO_TIMEOUT * 10, "closed too late: {waited:?}");
    edge.expect_log(&["ClientHello read failed"], STEP_TIMEOUT);

    // A partial hello that stalls is cut off the same way.
    let hello = rustls_hello(TURN_NAME);
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.write_all(&hello[..hello.len() / 2]).unwrap();
    assert!(matches!(
        wait_closed(&mut sock, STEP_TIMEOUT),
        Ended::Closed(_)
    ));
    assert!(
        edge.logs()
            .wait_for_n(&["ClientHello read failed"], 2, STEP_TIMEOUT)
            .is_some()
    );
}

#[test]
fn dead_backend_closes_clients_promptly_without_leaking_fds() {
    const CONNECTIONS: usize = 200;
    const WORKERS: usize = 4;
    /// Loopback dials are refused at once; this bounds "promptly".
    const PROMPT: Duration = Duration::from_secs(2);
    let edge = EdgeBuilder::hearth().backend("turn", dead_addr()).start();
    let hello = rustls_hello(TURN_NAME);
    let one = |addr: SocketAddr| {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.write_all(&hello).unwrap();
        let started = Instant::now();
        let ended = wait_closed(&mut sock, STEP_TIMEOUT);
        assert!(
            matches!(ended, Ended::Closed(_)),
            "client left open with a dead backend"
        );
        assert!(
            started.elapsed() < PROMPT,
            "closed after {:?}",
            started.elapsed()
        );
    };

    // Warm up (lazily created runtime resources), then take the baseline.
    one(edge.addr);
    edge.expect_log(&["backend dial failed"], STEP_TIMEOUT);
    let baseline = edge.peer.fd_count();

    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| (0..CONNECTIONS / WORKERS).for_each(|_| one(edge.addr)));
        }
    });
    let failed = edge
        .logs()
        .wait_for_n(&["backend dial failed"], CONNECTIONS + 1, STEP_TIMEOUT);
    assert!(
        failed.is_some(),
        "expected {} 'backend dial failed' lines",
        CONNECTIONS + 1
    );
    let settled = poll_until(STEP_TIMEOUT, || {
        (edge.peer.fd_count() <= baseline).then_some(())
    });
    assert!(
        settled.is_some(),
        "fd count {} did not return to {baseline}",
        edge.peer.fd_count()
    );
}

#[test]
fn connection_limit_admits_exactly_n_and_counts_every_refusal() {
    /// The configured `max_concurrent_conns`.
    const LIMIT: usize = 20;
    /// Excess connections tried at once while the edge is full.
    const BURST: usize = 5;
    /// A refused connection is closed this soon (it is never read from).
    const AT_ONCE: Duration = Duration::from_secs(1);
    /// The counter of connections refused at the limit.
    const LIMIT_METRIC: &str = "hearth_edge_connections_limit_rejected_total";
    let backend = Recorder::start(Mode::Echo);
    let edge = EdgeBuilder::hearth()
        .limit("max_concurrent_conns", &LIMIT.to_string())
        .backend("turn", backend.addr)
        .policy_yaml("limits", crate::hostile::RELAXED_POLICY_LIMITS)
        .admin()
        .start();
    let hello = rustls_hello(TURN_NAME);
    let open = || {
        let mut sock = TcpStream::connect(edge.addr).unwrap();
        sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        sock.write_all(&hello).unwrap();
        sock
    };
    // Reads back `sent` from the echo backend.
    let echo_ok = |sock: &mut TcpStream, sent: &[u8]| {
        let mut echoed = vec![0; sent.len()];
        sock.read_exact(&mut echoed).is_ok() && echoed == sent
    };
    // An excess connection: closed at once, without a byte and without a dial.
    let refused = || {
        let mut sock = TcpStream::connect(edge.addr).unwrap();
        let started = Instant::now();
        let ended = wait_closed(&mut sock, STEP_TIMEOUT);
        assert_eq!(
            ended,
            Ended::Closed(0),
            "connection over the limit not refused"
        );
        assert!(
            started.elapsed() < AT_ONCE,
            "refused only after {:?}",
            started.elapsed()
        );
    };

    let mut held: Vec<TcpStream> = (0..LIMIT).map(|_| open()).collect();
    for sock in &mut held {
        assert!(
            echo_ok(sock, &hello),
            "connections up to the limit are admitted"
        );
    }
    assert_eq!(backend.accepts(), LIMIT);

    for _ in 0..BURST {
        refused();
    }
    assert_eq!(
        edge.metric(LIMIT_METRIC),
        Some(BURST as f64),
        "every refusal is counted"
    );
    let line = edge.expect_log(&["connection limit reached"], STEP_TIMEOUT);
    let limit = LIMIT.to_string();
    assert_eq!(log_field(&line, "limit"), Some(limit.as_str()), "{line}");
    assert_eq!(
        backend.accepts(),
        LIMIT,
        "a refused connection must not dial"
    );

    // The admitted ones are unaffected, and a freed slot is reused by
    // exactly one new connection.
    held[0].write_all(b"still here").unwrap();
    assert!(
        echo_ok(&mut held[0], b"still here"),
        "established connections keep working"
    );
    drop(held.remove(0));
    edge.logs()
        .wait_for_n(&["connection closed", TURN_NAME], 1, STEP_TIMEOUT)
        .expect("the dropped connection is closed");
    let mut reused = open();
    assert!(
        echo_ok(&mut reused, &hello),
        "a slot freed by a close is reused"
    );
    refused();
    assert_eq!(edge.metric(LIMIT_METRIC), Some((BURST + 1) as f64));
}

#[test]
fn idle_passthrough_connection_is_closed_after_idle_timeout() {
    const IDLE: Duration = Duration::from_millis(500);
    let backend = Recorder::start(Mode::Echo);
    let edge = EdgeBuilder::hearth()
        .limit("idle_timeout", "500ms")
        .backend("turn", backend.addr)
        .start();
    let hello = rustls_hello(TURN_NAME);
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.write_all(&hello).unwrap();
    let mut echoed = vec![0; hello.len()];
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    sock.read_exact(&mut echoed).unwrap();
    let started = Instant::now();
    assert_eq!(
        wait_closed(&mut sock, STEP_TIMEOUT),
        Ended::Closed(0),
        "idle connection not closed"
    );
    assert!(
        started.elapsed() >= IDLE - Duration::from_millis(50),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn dead_terminate_backend_fails_the_request_promptly() {
    const PROMPT: Duration = Duration::from_secs(3);
    let edge = EdgeBuilder::hearth()
        .backend("pocketbase", dead_addr())
        .start();
    let started = Instant::now();
    let out = crate::support::tls::curl(edge.addr, crate::support::APEX_NAME, "/");
    assert!(
        !out.status.success(),
        "curl succeeded against a dead backend:\n{}",
        out.stdout
    );
    assert!(
        started.elapsed() < PROMPT,
        "failed only after {:?}",
        started.elapsed()
    );
    let line = edge.expect_log(&["backend dial failed"], STEP_TIMEOUT);
    assert!(line.contains("pocketbase"), "{line}");
}
