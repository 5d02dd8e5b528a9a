//! Backends failing, 10,000 connections through one edge: refused dials,
//! black-holed dials (a listener whose accept queue is full drops SYNs, so
//! the dial runs into `backend_dial_timeout`), backends that reset the
//! connection mid-stream, and slow readers on either side (a client that
//! does not read what a flooding backend sends; a backend that does not read
//! what the client uploads). Every client is closed promptly (figures:
//! time to close), the relay's buffers stay bounded under backpressure
//! (figures: peak RSS per held connection), and the edge's file descriptors
//! and memory return to their baseline afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    Backend, Behaviour, End, RELAXED_POLICY_LIMITS, SMALL_SOCKET_BUFFER, Seen, client, drive,
    percentile_ms, raise_fd_limit, report, runtime,
};
use crate::support::edge::{Edge, EdgeBuilder};
use crate::support::hello::rustls_hello;
use crate::support::process::dead_addr;
use crate::support::{STEP_TIMEOUT, poll_until, repo_root};

/// Connections per failure mode (10,000 in all).
const REFUSED: usize = 4000;
const BLACK_HOLED: usize = 2000;
const RESET: usize = 3000;
const SLOW_READERS: usize = 1000;
/// The mix runs in this many rounds.
const ROUNDS: usize = 2;
/// Slow readers held at once: one round's.
const SLOW_ROUND: usize = SLOW_READERS / ROUNDS;
/// The edge's `backend_dial_timeout` and `idle_timeout` here.
const DIAL_TIMEOUT: Duration = Duration::from_millis(300);
const IDLE_TIMEOUT: Duration = Duration::from_millis(500);
/// "Promptly": a client is closed within this much after the edge knows
/// (the refusal, the dial timeout, the reset, the idle timeout).
const PROMPT: Duration = Duration::from_secs(3);
/// Bytes the resetting backend writes before its RST.
const RESET_AFTER: usize = 1000;
/// Bytes a slow-reader client uploads toward a backend that never reads:
/// more than the relay buffers (16 KiB, or 256 KiB once bulk) and the
/// stalled sockets hold.
const UPLOAD: usize = 1024 * 1024;
/// What an edge may hold per slow-reader connection: one relay buffer per
/// direction (`RELAY_BUFFER_BYTES`, 16 KiB) plus the connection's own state.
const HELD_PER_CONN_BOUND_KIB: u64 = 2 * 16 + 8;
/// On top of that, the whole process may hold 64 bulk relay buffers of
/// 256 KiB (`io/copy.rs`: a direction that filled its buffer reads into a
/// bigger one) whatever the number of connections.
const BULK_BUFFERS_KIB: u64 = 64 * 256;
/// RSS growth allowed from the first round to the second (allocator
/// noise, up to ~1 MiB seen): 5,000 connections leaking 800 bytes each
/// would exceed it.
const RSS_ROUND_GROWTH_BOUND_KIB: u64 = 4 * 1024;

/// A listener whose accept queue is full: further SYNs are dropped, so a
/// dial hangs until its own timeout. Returns the listener and the one
/// connection that fills its queue; both must stay alive.
fn black_hole() -> (Socket, std::net::TcpStream) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap();
    // Control: the next dial really hangs.
    let probe = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
    assert!(probe.is_err(), "the black hole accepted a dial");
    (socket, filler)
}

fn edge_for(routes: &[(&str, SocketAddr)]) -> Edge {
    let mut builder = EdgeBuilder::with_policy(&repo_root().join("policies/sni-table.wasm"))
        .policy_yaml("limits", RELAXED_POLICY_LIMITS)
        .limit(
            "backend_dial_timeout",
            &format!("{}ms", DIAL_TIMEOUT.as_millis()),
        )
        .limit("idle_timeout", &format!("{}ms", IDLE_TIMEOUT.as_millis()));
    for (n, (name, addr)) in routes.iter().enumerate() {
        builder = builder
            .policy_config(
                &format!("route.{n}"),
                &format!("{name}.test -> passthrough {name}"),
            )
            .backend(name, *addr);
    }
    builder.start()
}

/// A client that never reads until `hold` passed, then drains to the close.
async fn slow_reading_client(addr: SocketAddr, hello: Vec<u8>, hold: Duration) -> Seen {
    let started = tokio::time::Instant::now();
    let mut seen = Seen::unconnected();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(SMALL_SOCKET_BUFFER)
        .expect("SO_RCVBUF");
    let Ok(mut stream) = socket.connect(addr).await else {
        return seen;
    };
    let _ = stream.write_all(&hello).await;
    tokio::time::sleep(hold).await;
    let mut buf = vec![0u8; 64 * 1024];
    let drain = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return End::Eof,
                Ok(n) => seen.received += n,
                Err(_) => return End::Reset,
            }
        }
    };
    seen.end = tokio::time::timeout(STEP_TIMEOUT, drain)
        .await
        .unwrap_or(End::StillOpen);
    seen.elapsed = started.elapsed();
    seen
}

/// A client that uploads [`UPLOAD`] bytes toward a backend that never reads,
/// until the edge closes on it.
async fn uploading_client(addr: SocketAddr, hello: Vec<u8>) -> Seen {
    let started = tokio::time::Instant::now();
    let mut seen = Seen::unconnected();
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return seen;
    };
    let (mut rd, mut wr) = stream.into_split();
    let upload = async move {
        let _ = wr.write_all(&hello).await;
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..UPLOAD / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        wr
    };
    let mut one = [0u8; 1];
    let closed = async {
        match rd.read(&mut one).await {
            Ok(0) => End::Eof,
            Ok(_) => End::Enough, // the backend never writes: unexpected
            Err(_) => End::Reset,
        }
    };
    seen.end = tokio::select! {
        end = closed => end,
        _ = tokio::time::sleep(STEP_TIMEOUT) => End::StillOpen,
        _ = async { let _writer = upload.await; std::future::pending::<()>().await } => End::StillOpen,
    };
    seen.elapsed = started.elapsed();
    seen
}

/// The figures of one failure mode, and its clients that were not closed
/// as expected.
struct Mode {
    name: &'static str,
    seen: Vec<Seen>,
    /// The least time the edge needs before closing (dial or idle timeout).
    floor: Duration,
}

impl Mode {
    fn new(name: &'static str, floor: Duration) -> Mode {
        Mode {
            name,
            seen: Vec::new(),
            floor,
        }
    }

    fn line(&mut self) -> String {
        let mut times: Vec<Duration> = self.seen.iter().map(|s| s.elapsed).collect();
        let bytes: usize = self.seen.iter().map(|s| s.received).sum();
        format!(
            "{:<12} {:>5} connections, closed after p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} bytes to clients\n",
            self.name,
            self.seen.len(),
            percentile_ms(&mut times, 50.0),
            percentile_ms(&mut times, 99.0),
            percentile_ms(&mut times, 100.0),
            bytes
        )
    }

    fn not_closed_promptly(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|s| !matches!(s.end, End::Eof | End::Reset) || s.elapsed > self.floor + PROMPT)
            .take(5)
            .map(|s| format!("{}: {:?} after {:?}", self.name, s.end, s.elapsed))
            .collect()
    }
}

#[test]
fn failing_backends_close_their_clients_promptly_and_leak_nothing() {
    raise_fd_limit();
    let rt = runtime();
    let (_hole, _filler) = black_hole();
    let hole_addr = _hole.local_addr().unwrap().as_socket().unwrap();
    let reset = rt.block_on(Backend::start(Behaviour::ResetAfter(RESET_AFTER)));
    let flood = rt.block_on(Backend::start(Behaviour::Flood));
    let stall = rt.block_on(Backend::start(Behaviour::Stall(STEP_TIMEOUT)));
    let edge = edge_for(&[
        ("refused", dead_addr()),
        ("blackhole", hole_addr),
        ("reset", reset.addr),
        ("flood", flood.addr),
        ("stall", stall.addr),
    ]);
    let addr = edge.addr;
    let hello = |name: &str| rustls_hello(&format!("{name}.test"));
    let simple = |name: &'static str, count: usize, concurrency: usize| {
        let hello = hello(name);
        rt.block_on(drive(count, concurrency, move |_| {
            let hello = hello.clone();
            async move { client(addr, &hello, None, STEP_TIMEOUT).await }
        }))
    };
    let slow = |count: usize, peak: &mut u64| {
        let (down, up) = (hello("flood"), hello("stall"));
        let run = rt.spawn(drive(count, count, move |i| {
            let (down, up) = (down.clone(), up.clone());
            async move {
                if i % 2 == 0 {
                    slow_reading_client(addr, down, IDLE_TIMEOUT * 2).await
                } else {
                    uploading_client(addr, up).await
                }
            }
        }));
        // Sample the edge's memory while the connections are held.
        while !run.is_finished() {
            *peak = (*peak).max(edge.peer.rss_kib());
            std::thread::sleep(Duration::from_millis(20));
        }
        let seen = rt.block_on(run).expect("slow clients");
        // Even: slow clients (flooding backend); odd: slow backends (uploading client).
        let (clients, backends): (Vec<_>, Vec<_>) =
            seen.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let strip = |v: Vec<(usize, Seen)>| v.into_iter().map(|(_, s)| s).collect::<Vec<_>>();
        (strip(clients), strip(backends))
    };

    let fds_fresh = edge.peer.fd_count();
    let rss_fresh = edge.peer.rss_kib();
    // The same mix twice: the first round shows the allocator's high-water
    // mark, the second must not add to it.
    let mut modes = [
        Mode::new("refused", Duration::ZERO),
        Mode::new("black-holed", DIAL_TIMEOUT),
        Mode::new("reset", Duration::ZERO),
        Mode::new("slow client", IDLE_TIMEOUT * 2),
        Mode::new("slow backend", IDLE_TIMEOUT),
    ];
    let mut peak = 0;
    let mut after_round = Vec::new();
    for _ in 0..ROUNDS {
        modes[0]
            .seen
            .extend(simple("refused", REFUSED / ROUNDS, 32));
        modes[1]
            .seen
            .extend(simple("blackhole", BLACK_HOLED / ROUNDS, 200));
        modes[2].seen.extend(simple("reset", RESET / ROUNDS, 32));
        let (clients, backends) = slow(SLOW_ROUND, &mut peak);
        modes[3].seen.extend(clients);
        modes[4].seen.extend(backends);
        let fds = poll_until(STEP_TIMEOUT, || {
            let fds = edge.peer.fd_count();
            (fds <= fds_fresh).then_some(fds)
        });
        after_round.push((edge.peer.rss_kib(), fds));
    }
    let dial_failures = edge.logs().count("backend dial failed");
    let held_kib = peak.saturating_sub(rss_fresh + BULK_BUFFERS_KIB) / SLOW_ROUND as u64;
    let mut text = String::new();
    for mode in &mut modes {
        text += &mode.line();
    }
    let total: usize = modes.iter().map(|m| m.seen.len()).sum();
    text += &format!(
        "{total} connections in {ROUNDS} rounds; edge 'backend dial failed' lines: {dial_failures} \
         (refused + black-holed = {})\n\
         edge RSS: fresh {rss_fresh} KiB, peak with {SLOW_ROUND} slow readers held {peak} KiB \
         (≤{held_kib} KiB per held connection beyond the {BULK_BUFFERS_KIB} KiB of bulk buffers), after each round (KiB, fds): {after_round:?}\n\
         edge fds: fresh {fds_fresh}\n",
        REFUSED + BLACK_HOLED,
    );
    report("backends", &text);

    let late: Vec<String> = modes.iter().flat_map(Mode::not_closed_promptly).collect();
    assert!(late.is_empty(), "clients not closed promptly: {late:#?}");
    assert_eq!(dial_failures, REFUSED + BLACK_HOLED);
    let resets = &modes[2].seen;
    assert!(resets.iter().all(|s| s.received <= RESET_AFTER));
    for (round, (_, fds)) in after_round.iter().enumerate() {
        assert!(
            fds.is_some(),
            "fds did not return to {fds_fresh} after round {round}"
        );
    }
    assert!(
        held_kib <= HELD_PER_CONN_BOUND_KIB,
        "{held_kib} KiB held per slow connection: buffers are not bounded"
    );
    let (first, last) = (after_round[0].0, after_round[ROUNDS - 1].0);
    assert!(
        last <= first + RSS_ROUND_GROWTH_BOUND_KIB,
        "RSS grew from {first} to {last} KiB over a round of the same connections"
    );
}
