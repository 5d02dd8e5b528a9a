//! Slowloris: thousands of clients dribble a ClientHello one byte a second.
//! Every one of them is closed by `client_hello_timeout` (the deadline is for
//! the whole hello, not per byte), while a concurrent stream of real clients
//! keeps being served. Figures: their success rate and latency against an
//! unloaded baseline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    Backend, Behaviour, RELAXED_POLICY_LIMITS, percentile_ms, raise_fd_limit, report, runtime,
};
use crate::support::edge::EdgeBuilder;
use crate::support::hello::rustls_hello;
use crate::support::{STEP_TIMEOUT, TURN_NAME};

/// Slow clients wanted; fewer when the fd limit is lower (each costs one fd
/// here and two in the edge).
const SLOW_CLIENTS: usize = 2000;
/// Fds kept free for everything else the suite runs in parallel.
const FD_MARGIN: u64 = 1024;
/// Below this many slow clients the test would prove little: it fails.
const MIN_SLOW_CLIENTS: usize = 500;
/// The edge's `client_hello_timeout` in this test.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// A slow client sends one byte this often.
const DRIP_INTERVAL: Duration = Duration::from_secs(1);
/// Real clients measured before the attack.
const BASELINE_CLIENTS: usize = 300;
/// Upper bound on real clients during the attack (the attack ends first).
const MAX_LOADED_CLIENTS: usize = 100_000;
/// A slow client closed later than this after its connect counts as not
/// closed by the timeout.
const CLOSE_BOUND: Duration = Duration::from_secs(12);

/// One real client: hello out, hello echoed back through the edge.
fn real_client(addr: SocketAddr, hello: &[u8]) -> Result<Duration, String> {
    let started = Instant::now();
    let mut sock = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    sock.write_all(hello).map_err(|e| format!("write: {e}"))?;
    let mut echoed = vec![0; hello.len()];
    sock.read_exact(&mut echoed)
        .map_err(|e| format!("read: {e}"))?;
    if echoed != hello {
        return Err("echo differs".into());
    }
    Ok(started.elapsed())
}

/// One slow client: a byte of `hello` every [`DRIP_INTERVAL`] until the edge
/// closes the connection. Returns how long after `started` (just before
/// its connect) the edge closed it (`None`: still open at [`CLOSE_BOUND`])
/// and the bytes sent.
async fn slow_client(
    stream: tokio::net::TcpStream,
    started: tokio::time::Instant,
    hello: Arc<Vec<u8>>,
) -> (Option<Duration>, usize) {
    let (mut rd, mut wr) = stream.into_split();
    let mut sent = 0;
    let mut drip = tokio::time::interval(DRIP_INTERVAL);
    let mut byte = [0u8; 1];
    let closed = async {
        loop {
            tokio::select! {
                read = rd.read(&mut byte) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // nothing is expected before the close
                },
                _ = drip.tick() => {
                    if sent < hello.len() && wr.write_all(&hello[sent..=sent]).await.is_ok() {
                        sent += 1;
                    }
                }
            }
        }
    };
    match tokio::time::timeout_at(started + CLOSE_BOUND, closed).await {
        Ok(()) => (Some(started.elapsed()), sent),
        Err(_) => (None, sent),
    }
}

/// Real clients one after another until `stop`, or `max` of them.
fn real_stream(
    addr: SocketAddr,
    hello: &[u8],
    stop: &AtomicBool,
    max: usize,
) -> (Vec<Duration>, Vec<String>) {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::SeqCst) && ok.len() + failed.len() < max {
        match real_client(addr, hello) {
            Ok(latency) => ok.push(latency),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

#[test]
fn byte_a_second_hellos_are_all_cut_off_while_real_clients_are_served() {
    let fd_limit = raise_fd_limit();
    let slow = SLOW_CLIENTS.min(usize::try_from(fd_limit.saturating_sub(FD_MARGIN) / 2).unwrap());
    assert!(
        slow >= MIN_SLOW_CLIENTS,
        "RLIMIT_NOFILE {fd_limit} leaves room for only {slow} slow clients"
    );
    let rt = runtime();
    let echo = rt.block_on(Backend::start(Behaviour::Echo));
    let edge = EdgeBuilder::hearth()
        .limit("client_hello_timeout", "2s")
        .policy_yaml("limits", RELAXED_POLICY_LIMITS)
        .backend("turn", echo.addr)
        .start();
    let hello = rustls_hello(TURN_NAME);

    // Baseline: the same real clients with no attack.
    let never = AtomicBool::new(false);
    let (mut baseline, failed) = real_stream(edge.addr, &hello, &never, BASELINE_CLIENTS);
    assert!(failed.is_empty(), "unloaded clients failed: {failed:?}");

    // The attack: open every slow connection, then drip; real clients run
    // until the last slow one is closed.
    let addr = edge.addr;
    let streams = rt.block_on(async {
        let mut streams = Vec::with_capacity(slow);
        for _ in 0..slow {
            let started = tokio::time::Instant::now();
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .expect("slow client connects");
            streams.push((stream, started));
        }
        streams
    });
    let shared_hello = Arc::new(hello.clone());
    let attack: Vec<_> = streams
        .into_iter()
        .map(|(stream, started)| rt.spawn(slow_client(stream, started, shared_hello.clone())))
        .collect();
    let stop = AtomicBool::new(false);
    let (slow_ends, (mut loaded, failed)) = std::thread::scope(|scope| {
        let real = scope.spawn(|| real_stream(addr, &hello, &stop, MAX_LOADED_CLIENTS));
        let ends: Vec<_> = rt.block_on(async {
            let mut ends = Vec::with_capacity(attack.len());
            for task in attack {
                ends.push(task.await.expect("slow client task"));
            }
            ends
        });
        stop.store(true, Ordering::SeqCst);
        (ends, real.join().expect("real clients"))
    });

    let closed: Vec<Duration> = slow_ends.iter().filter_map(|(closed, _)| *closed).collect();
    let sent: usize = slow_ends.iter().map(|(_, sent)| sent).sum();
    let early = closed.iter().filter(|d| **d < HELLO_TIMEOUT).count();
    let timeouts = edge
        .logs()
        .wait_for_n(
            &["ClientHello read failed", "reason=timeout"],
            slow,
            STEP_TIMEOUT,
        )
        .map_or(edge.logs().count("reason=timeout"), |lines| lines.len());
    let (mut close_times, loaded_n) = (closed.clone(), loaded.len());
    report(
        "slowloris",
        &format!(
            "slow clients: {slow} (RLIMIT_NOFILE {fd_limit}), one byte per {DRIP_INTERVAL:?}, {sent} bytes sent in all\n\
             closed by the edge: {} of {slow}, after {:.0}..{:.0} ms (p50 {:.0} ms), client_hello_timeout {HELLO_TIMEOUT:?}\n\
             edge log 'ClientHello read failed' reason=timeout: {timeouts}\n\
             real clients unloaded: {} ok, p50 {:.2} ms, p99 {:.2} ms\n\
             real clients during the attack: {loaded_n} ok, {} failed ({:.2}% success), p50 {:.2} ms, p99 {:.2} ms\n",
            closed.len(),
            percentile_ms(&mut close_times, 0.0),
            percentile_ms(&mut close_times, 100.0),
            percentile_ms(&mut close_times, 50.0),
            baseline.len(),
            percentile_ms(&mut baseline, 50.0),
            percentile_ms(&mut baseline, 99.0),
            failed.len(),
            100.0 * loaded_n as f64 / (loaded_n + failed.len()).max(1) as f64,
            percentile_ms(&mut loaded, 50.0),
            percentile_ms(&mut loaded, 99.0),
        ),
    );

    assert_eq!(
        closed.len(),
        slow,
        "slow clients left open past {CLOSE_BOUND:?}"
    );
    assert_eq!(early, 0, "slow clients closed before the hello timeout");
    assert!(
        timeouts >= slow,
        "{timeouts} hello timeouts logged for {slow} slow clients"
    );
    assert!(
        failed.is_empty(),
        "real clients failed during the attack: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(loaded_n > 0, "no real client ran during the attack");
    assert!(
        edge.peer.logs.count("panicked") == 0,
        "{}",
        edge.logs().dump()
    );
}
