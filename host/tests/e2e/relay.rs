//! The relay end to end: the bytes the edge copies between real loopback
//! sockets once the policy chose a route (`io/copy.rs`), through both routes
//! that copy: passthrough, and terminate, where the client's side is the
//! edge's TLS. A large pseudo-random stream each way at once (SHA-256 at
//! both ends), half-close each way with the other direction still flowing,
//! 1,000 relays open at once, a backend process killed mid-stream, and the
//! byte counters against what was sent. The idle time-out is in `limits`;
//! slow readers and resetting backends at volume in `hostile/backends`.
//!
//! Every stream starts with an [`Ask`]: which order the backend keeps, and
//! the seed and length of the stream it sends back, so each end knows what
//! the other must have received.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::hostile::{raise_fd_limit, runtime};
use crate::support::edge::{Edge, EdgeBuilder};
use crate::support::hello::rustls_hello;
use crate::support::process::{Peer, free_port, require_binary};
use crate::support::tls::client_config;
use crate::support::{APEX_NAME, STEP_TIMEOUT, TURN_NAME, poll_until};

/// Bytes each way in the large-stream tests.
const LARGE: u64 = 64 * 1024 * 1024;
/// Bytes each way in the half-close tests: more than a relay buffer holds.
const MEDIUM: u64 = 4 * 1024 * 1024;
/// Relays open at once, and the bytes each carries each way (more than a
/// small relay buffer, so many ask for a bulk one past the process's budget).
const CONCURRENT: usize = 1000;
const PER_RELAY: u64 = 128 * 1024;
/// Bounds each test's whole exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Bounds one relay's exchange (64 MiB each way takes under a second).
const EXCHANGE_STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pieces the streams are generated, written and hashed in.
const CHUNK: usize = 64 * 1024;

/// The order the backend keeps on a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Order {
    /// Both ends write and read at once.
    AtOnce,
    /// The client writes everything and half-closes first; the backend
    /// answers only after it has read that EOF.
    ClientFirst,
    /// The backend writes everything and half-closes first; the client
    /// writes only after it has read that EOF.
    BackendFirst,
}

/// The first bytes on every stream: the backend's order, and the seed and
/// length of the stream it sends back.
#[derive(Clone, Copy)]
struct Ask {
    order: Order,
    seed: u64,
    len: u64,
}

/// What one end received: the SHA-256 of the bytes and their count.
type Received = ([u8; 32], u64);

/// A reproducible pseudo-random byte stream (xorshift64*): bytes dropped,
/// repeated or reordered by the relay change its hash.
struct Noise(u64);

// === impl Noise ===

impl Noise {
    fn new(seed: u64) -> Noise {
        // A zero state would stay zero.
        Noise(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// What a reader of `len` bytes of stream `seed` must have received.
    fn expected(seed: u64, len: u64) -> Received {
        let mut noise = Noise::new(seed);
        let mut hash = Sha256::new();
        let mut buf = vec![0; CHUNK];
        let mut left = len;
        while left > 0 {
            let n = chunk_len(left);
            noise.fill(&mut buf[..n]);
            hash.update(&buf[..n]);
            left -= n as u64;
        }
        (hash.finalize().into(), len)
    }
}

fn chunk_len(left: u64) -> usize {
    usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK))
}

// === impl Ask ===

impl Ask {
    const LEN: usize = 17;

    fn encode(self) -> [u8; Ask::LEN] {
        let mut out = [0; Ask::LEN];
        out[0] = match self.order {
            Order::AtOnce => 0,
            Order::ClientFirst => 1,
            Order::BackendFirst => 2,
        };
        out[1..9].copy_from_slice(&self.seed.to_le_bytes());
        out[9..].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8; Ask::LEN]) -> io::Result<Ask> {
        let order = match bytes[0] {
            0 => Order::AtOnce,
            1 => Order::ClientFirst,
            2 => Order::BackendFirst,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("order {other}"),
                ));
            }
        };
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(Ask {
            order,
            seed: word(1),
            len: word(9),
        })
    }
}

/// Writes `len` bytes of stream `seed`, then half-closes.
async fn send(writer: &mut (impl AsyncWrite + Unpin), seed: u64, len: u64) -> io::Result<()> {
    let mut noise = Noise::new(seed);
    let mut buf = vec![0; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = chunk_len(left);
        noise.fill(&mut buf[..n]);
        writer.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    writer.shutdown().await
}

/// Reads to EOF, hashing.
async fn drain(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Received> {
    let mut hash = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut count = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((hash.finalize().into(), count));
        }
        hash.update(&buf[..n]);
        count += n as u64;
    }
}

/// Plays the client's side of `order` (`client`) or the backend's: sends
/// `len` bytes of stream `seed` and half-closes, reads to EOF, in the
/// order's sequence; returns what it read.
async fn play<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    order: Order,
    client: bool,
    seed: u64,
    len: u64,
) -> io::Result<Received> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let first = match order {
        Order::AtOnce => {
            let (received, ()) =
                tokio::try_join!(drain(&mut reader), send(&mut writer, seed, len))?;
            return Ok(received);
        }
        Order::ClientFirst => client,
        Order::BackendFirst => !client,
    };
    if first {
        send(&mut writer, seed, len).await?;
        drain(&mut reader).await
    } else {
        let received = drain(&mut reader).await?;
        send(&mut writer, seed, len).await?;
        Ok(received)
    }
}

/// A stand-in backend: skips the replayed hello (`skip` bytes), reads the
/// [`Ask`], plays its side, and keeps what it received by the seed it
/// answered with.
struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<HashMap<u64, io::Result<Received>>>>,
}

// === impl Backend ===

impl Backend {
    async fn start(skip: usize) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let backend = Backend {
            addr: listener.local_addr().expect("backend address"),
            accepted: Arc::default(),
            received: Arc::default(),
        };
        let (accepted, received) = (backend.accepted.clone(), backend.received.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let received = received.clone();
                tokio::spawn(async move {
                    let (seed, result) = Backend::serve(stream, skip).await;
                    received.lock().unwrap().insert(seed, result);
                });
            }
        });
        backend
    }

    async fn serve(mut stream: TcpStream, skip: usize) -> (u64, io::Result<Received>) {
        let mut head = vec![0; skip + Ask::LEN];
        if let Err(e) = stream.read_exact(&mut head).await {
            return (u64::MAX, Err(e));
        }
        let ask = match Ask::decode(head[skip..].try_into().expect("ask length")) {
            Ok(ask) => ask,
            Err(e) => return (u64::MAX, Err(e)),
        };
        (
            ask.seed,
            play(stream, ask.order, false, ask.seed, ask.len).await,
        )
    }

    /// What the backend received on the connection that answered `seed`.
    async fn received_for(&self, seed: u64) -> Received {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(result) = self.received.lock().unwrap().remove(&seed) {
                return result.unwrap_or_else(|e| panic!("backend for seed {seed}: {e}"));
            }
            assert!(
                Instant::now() < deadline,
                "the backend never finished seed {seed}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The two routes that copy.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// `turn.hearth.test`: the hello is replayed, then raw bytes.
    Passthrough,
    /// `hearth.test`: TLS ends at the edge, plaintext to the backend.
    Terminate,
}

/// An edge with both routes on their own stand-in backends.
struct Setup {
    edge: Edge,
    passthrough: Backend,
    terminate: Backend,
}

// === impl Setup ===

impl Setup {
    async fn start(builder: impl FnOnce(EdgeBuilder) -> EdgeBuilder) -> Setup {
        let passthrough = Backend::start(rustls_hello(TURN_NAME).len()).await;
        let terminate = Backend::start(0).await;
        let edge = builder(
            EdgeBuilder::hearth()
                .backend("turn", passthrough.addr)
                .backend("pocketbase", terminate.addr)
                .admin(),
        );
        let edge = tokio::task::spawn_blocking(move || edge.start())
            .await
            .expect("edge start");
        Setup {
            edge,
            passthrough,
            terminate,
        }
    }

    fn backend(&self, route: Route) -> &Backend {
        match route {
            Route::Passthrough => &self.passthrough,
            Route::Terminate => &self.terminate,
        }
    }

    /// Opens a connection through `route` and sends the [`Ask`]; the
    /// client's side of the stream, ready to play.
    async fn open(&self, route: Route, ask: Ask) -> io::Result<Box<dyn Stream>> {
        let mut tcp = TcpStream::connect(self.edge.addr).await?;
        let mut stream: Box<dyn Stream> = match route {
            Route::Passthrough => {
                tcp.write_all(&rustls_hello(TURN_NAME)).await?;
                Box::new(tcp)
            }
            Route::Terminate => {
                let name = ServerName::try_from(APEX_NAME).expect("server name");
                let connector = TlsConnector::from(client_config(&[]));
                Box::new(connector.connect(name, tcp).await?)
            }
        };
        stream.write_all(&ask.encode()).await?;
        Ok(stream)
    }

    /// One relay through `route` in `order`: `up` bytes from the client,
    /// `down` from the backend; asserts both arrived intact.
    async fn exchange(&self, route: Route, order: Order, seed: u64, up: u64, down: u64) {
        let ask = Ask {
            order,
            seed,
            len: down,
        };
        let stream = self
            .open(route, ask)
            .await
            .unwrap_or_else(|e| panic!("{route:?} open: {e}"));
        let client_seed = !seed;
        let at_client = tokio::time::timeout(
            EXCHANGE_STEP_TIMEOUT,
            play(stream, order, true, client_seed, up),
        )
        .await
        .unwrap_or_else(|_| panic!("{route:?} {order:?}: no EOF within {EXCHANGE_STEP_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{route:?} {order:?} client: {e}"));
        assert!(
            at_client == Noise::expected(seed, down),
            "{route:?} {order:?}: the client received {} bytes, not the {down} the backend sent, or other bytes",
            at_client.1
        );
        let at_backend = self.backend(route).received_for(seed).await;
        assert!(
            at_backend == Noise::expected(client_seed, up),
            "{route:?} {order:?}: the backend received {} bytes, not the {up} the client sent, or other bytes",
            at_backend.1
        );
    }

    /// Waits until the edge holds no connection, then reads a metric.
    fn settled_metric(&self, name: &str) -> f64 {
        poll_until(STEP_TIMEOUT, || {
            (self.edge.metric("hearth_edge_connections_active") == Some(0.0)).then_some(())
        })
        .expect("connections_active back to 0");
        self.edge
            .metric(name)
            .unwrap_or_else(|| panic!("no {name}"))
    }
}

/// A client stream: TCP or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(async {
        tokio::time::timeout(EXCHANGE_TIMEOUT, future)
            .await
            .expect("within the exchange timeout")
    })
}

#[test]
fn a_large_random_stream_each_way_at_once_arrives_intact_and_is_counted() {
    block_on(async {
        let setup = Setup::start(|edge| edge).await;
        setup
            .exchange(Route::Passthrough, Order::AtOnce, 1, LARGE, LARGE)
            .await;
        setup
            .exchange(Route::Terminate, Order::AtOnce, 2, LARGE, LARGE)
            .await;
        // Passthrough's counters are exact: the hello, the ask and the
        // stream up; the stream down.
        let hello = rustls_hello(TURN_NAME).len() as u64;
        let up = setup
            .settled_metric("hearth_edge_relayed_bytes_total{backend=\"turn\",direction=\"up\"}");
        let down = setup
            .settled_metric("hearth_edge_relayed_bytes_total{backend=\"turn\",direction=\"down\"}");
        assert_eq!(up, (hello + Ask::LEN as u64 + LARGE) as f64);
        assert_eq!(down, LARGE as f64);
    });
}

#[test]
fn half_close_either_way_keeps_the_other_direction_flowing() {
    block_on(async {
        let setup = Setup::start(|edge| edge).await;
        for (seed, route, order) in [
            (10, Route::Passthrough, Order::ClientFirst),
            (11, Route::Passthrough, Order::BackendFirst),
            (12, Route::Terminate, Order::ClientFirst),
            (13, Route::Terminate, Order::BackendFirst),
        ] {
            setup.exchange(route, order, seed, MEDIUM, MEDIUM).await;
        }
        assert_eq!(
            setup.settled_metric("hearth_edge_connections_closed_total{outcome=\"passthrough\"}"),
            2.0
        );
        assert_eq!(
            setup.settled_metric("hearth_edge_connections_closed_total{outcome=\"terminate\"}"),
            2.0
        );
    });
}

#[test]
fn a_thousand_relays_open_at_once_all_arrive_intact_and_are_counted() {
    let fd_limit = raise_fd_limit();
    // The test holds both ends of each relay, the edge two sockets each.
    assert!(
        fd_limit > 3 * CONCURRENT as u64,
        "RLIMIT_NOFILE {fd_limit} is too low for {CONCURRENT} relays"
    );
    block_on(async {
        let setup = Arc::new(Setup::start(|edge| edge).await);
        let (go, start) = watch::channel(false);
        let relays: Vec<_> = (0..CONCURRENT as u64)
            .map(|i| {
                let setup = setup.clone();
                let mut start = start.clone();
                tokio::spawn(async move {
                    let seed = 1_000 + i;
                    let ask = Ask {
                        order: Order::AtOnce,
                        seed,
                        len: PER_RELAY,
                    };
                    let stream = setup.open(Route::Passthrough, ask).await?;
                    start.wait_for(|go| *go).await.expect("start sender");
                    let at_client = play(stream, Order::AtOnce, true, !seed, PER_RELAY).await?;
                    let at_backend = setup.passthrough.received_for(seed).await;
                    Ok::<_, io::Error>(
                        at_client == Noise::expected(seed, PER_RELAY)
                            && at_backend == Noise::expected(!seed, PER_RELAY),
                    )
                })
            })
            .collect();
        // Every relay is dialled through before any byte of a stream moves.
        let deadline = Instant::now() + EXCHANGE_TIMEOUT / 2;
        while setup.passthrough.accepted.load(Ordering::SeqCst) < CONCURRENT {
            assert!(
                Instant::now() < deadline,
                "only {} of {CONCURRENT} relays reached the backend",
                setup.passthrough.accepted.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let active = setup.edge.metric("hearth_edge_connections_active");
        assert_eq!(active, Some(CONCURRENT as f64), "relays open at once");
        go.send(true).expect("start receivers");
        let mut intact = 0;
        for relay in relays {
            match relay.await.expect("relay task") {
                Ok(true) => intact += 1,
                Ok(false) => {}
                Err(e) => panic!("a relay failed: {e}"),
            }
        }
        assert_eq!(intact, CONCURRENT, "relays whose bytes arrived intact");
        let hello = rustls_hello(TURN_NAME).len() as u64;
        let n = CONCURRENT as u64;
        assert_eq!(
            setup.settled_metric(
                "hearth_edge_relayed_bytes_total{backend=\"turn\",direction=\"up\"}"
            ),
            (n * (hello + Ask::LEN as u64 + PER_RELAY)) as f64
        );
        assert_eq!(
            setup.settled_metric(
                "hearth_edge_relayed_bytes_total{backend=\"turn\",direction=\"down\"}"
            ),
            (n * PER_RELAY) as f64
        );
        assert_eq!(
            setup.settled_metric("hearth_edge_connections_closed_total{outcome=\"passthrough\"}"),
            n as f64
        );
    });
}

/// A backend process that, once a connection comes, streams bytes of
/// [`KILLED_BYTE`] forever without reading.
const FLOODING_BACKEND: &str = r"
import socket, sys
listener = socket.socket()
listener.bind(('127.0.0.1', int(sys.argv[1])))
listener.listen()
conn, _ = listener.accept()
chunk = bytes([0x5a]) * 65536
while True:
    conn.sendall(chunk)
";
const KILLED_BYTE: u8 = 0x5a;

#[test]
fn a_backend_killed_mid_stream_ends_its_connection_and_nothing_else() {
    let python = require_binary("python3", "python3");
    block_on(async {
        let port = free_port();
        let mut command = Command::new(python);
        command.args(["-c", FLOODING_BACKEND, &port.to_string()]);
        let mut flooding = Peer::spawn("flooding backend", command);
        flooding.wait_listening(port).expect("flooding backend");
        let killed_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let setup = Setup::start(|edge| edge.backend("livekit", killed_addr)).await;

        // lk.hearth.test is the livekit route (terminated): the client reads
        // some of the flood, then the backend process is killed.
        let name = ServerName::try_from(crate::support::LK_NAME).expect("server name");
        let tcp = TcpStream::connect(setup.edge.addr).await.expect("connect");
        let mut client = TlsConnector::from(client_config(&[]))
            .connect(name, tcp)
            .await
            .expect("TLS to the edge");
        // Bytes the backend never reads: killed, it resets the connection.
        client
            .write_all(&[0; 1024])
            .await
            .expect("write to the backend");
        let mut buf = vec![0; CHUNK];
        let mut got = 0usize;
        while got < 1024 * 1024 {
            let n = client.read(&mut buf).await.expect("read the flood");
            assert!(n > 0, "the flood ended before the backend was killed");
            assert!(buf[..n].iter().all(|&b| b == KILLED_BYTE));
            got += n;
        }
        drop(flooding);
        // The client's side ends (a reset, or EOF when the backend's end
        // came as a FIN) once the edge has passed on what it held.
        let ended = async {
            loop {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => assert!(buf[..n].iter().all(|&b| b == KILLED_BYTE)),
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, ended)
            .await
            .expect("the client's connection ended after the backend died");
        drop(client);
        assert_eq!(setup.settled_metric("hearth_edge_connections_active"), 0.0);
        // The edge goes on relaying.
        setup
            .exchange(Route::Passthrough, Order::AtOnce, 20, MEDIUM, MEDIUM)
            .await;
    });
}
