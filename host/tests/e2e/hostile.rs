//! Hostile input and faults, at volume, through the real binary: slowloris
//! clients, faulting policies, failing backends, the exact connection limit,
//! and the security-relevant defaults. Each test asserts what must hold
//! (every connection answered or closed, nothing crashes, nothing leaks) and
//! writes the figures it saw (latency percentiles, RSS, fd counts) to
//! `$CARGO_TARGET_TMPDIR/hostile-<test>.txt`, which the test command prints;
//! figures are recorded in `benches/RESULTS.md`, never asserted as timings.
//!
//! - `hostile/slowloris.rs`: thousands of byte-a-second hellos vs real clients.
//! - `hostile/faults.rs`: trap / spin / hog policies for tens of thousands of connections.
//! - `hostile/backends.rs`: refused, black-holed, resetting and slow backends and clients.
//! - `hostile/defaults.rs`: no WASI capabilities, no TLS < 1.2 or weak suites, no keys in logs.
//!
//! The load is driven from a tokio runtime in the test process
//! ([`runtime`]); the backends here are tokio tasks too ([`Backend`]).

mod backends;
mod defaults;
mod faults;
mod slowloris;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A multi-threaded runtime for the load a test drives.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children,
/// the edge among them, inherit it) and returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    #[allow(unsafe_code)]
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// The `p`th percentile (0–100) of `samples` (sorted in place), in ms.
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank].as_secs_f64() * 1000.0
}

/// `policy.limits` for the tests whose policy is not what is under test: a
/// generous `max_time`, so a call descheduled on a loaded machine does not
/// turn into a policy timeout (and a connection answered by `on_error`).
pub const RELAXED_POLICY_LIMITS: &str = "{ max_time: 250ms }";

/// Writes `text` to `$CARGO_TARGET_TMPDIR/hostile-<name>.txt` and stderr.
pub fn report(name: &str, text: &str) {
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{name}.txt"));
    let _ = std::fs::write(&path, text);
    eprintln!("--- {name}\n{text}");
}

/// What a backend does with each connection it accepts.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Writes back what it reads until EOF.
    Echo,
    /// Reads the first bytes (the replayed hello), writes this many bytes,
    /// then resets the connection (RST, via `SO_LINGER` 0).
    ResetAfter(usize),
    /// Writes [`FLOOD_BYTES`] zeros as fast as the edge takes them, then
    /// waits for the close.
    Flood,
    /// Accepts and holds the connection this long, never reads or writes.
    Stall(Duration),
}

/// A backend on 127.0.0.1:0, run as tokio tasks on the runtime it was started on.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Binds and serves every connection with `behaviour`.
    pub async fn start(behaviour: Behaviour) -> Backend {
        let socket = tokio::net::TcpSocket::new_v4().expect("backend socket");
        if matches!(behaviour, Behaviour::Stall(_)) {
            // A backend that never reads should fill up quickly.
            socket
                .set_recv_buffer_size(SMALL_SOCKET_BUFFER)
                .expect("SO_RCVBUF");
        }
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind backend");
        let listener = socket.listen(BACKEND_BACKLOG).expect("listen");
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counter = accepts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, behaviour));
            }
        });
        Backend {
            addr,
            accepts,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Socket buffer asked for on the side of a stalled peer, so backpressure
/// reaches the edge after kilobytes rather than megabytes.
pub const SMALL_SOCKET_BUFFER: u32 = 4096;
/// Accept queue of the test backends: bursts of a thousand dials.
const BACKEND_BACKLOG: u32 = 4096;
/// Bytes a [`Behaviour::Flood`] backend writes before it waits for the close.
const FLOOD_BYTES: usize = 256 * 1024;

/// How long a backend connection may live: every behaviour ends by then.
const BACKEND_CONN_LIFETIME: Duration = Duration::from_secs(60);

async fn serve(mut stream: TcpStream, behaviour: Behaviour) {
    let mut buf = vec![0u8; 16 * 1024];
    let work = async {
        match behaviour {
            Behaviour::Echo => loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            },
            Behaviour::ResetAfter(bytes) => {
                if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    let _ = stream.write_all(&vec![b'r'; bytes]).await;
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                }
            }
            Behaviour::Flood => {
                let zeros = vec![0u8; FLOOD_BYTES];
                if stream.write_all(&zeros).await.is_ok() {
                    let _ = stream.read(&mut buf).await;
                }
            }
            Behaviour::Stall(hold) => tokio::time::sleep(hold).await,
        }
    };
    let _ = tokio::time::timeout(BACKEND_CONN_LIFETIME, work).await;
}

/// How a client's connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The client got what it waited for and closed first.
    Enough,
    /// The edge closed (EOF).
    Eof,
    /// The edge reset the connection.
    Reset,
    /// Still open at the client's deadline.
    StillOpen,
    /// Could not connect.
    ConnectFailed,
}

/// What one client connection saw.
#[derive(Debug)]
pub struct Seen {
    /// Bytes received (the first [`SEEN_KEEP`] of them).
    pub bytes: Vec<u8>,
    /// Total bytes received.
    pub received: usize,
    /// How it ended.
    pub end: End,
    /// From connect to the end.
    pub elapsed: Duration,
}

impl Seen {
    /// Nothing yet: not connected.
    pub fn unconnected() -> Seen {
        Seen {
            bytes: Vec::new(),
            received: 0,
            end: End::ConnectFailed,
            elapsed: Duration::ZERO,
        }
    }
}

/// Bytes of each answer kept for checks (an alert is 7, an echoed hello a few hundred).
pub const SEEN_KEEP: usize = 4096;

/// Connects to `addr`, sends `hello`, then reads until the edge closes, or
/// until `enough` bytes arrived (then closes itself), or `deadline` passes.
pub async fn client(
    addr: SocketAddr,
    hello: &[u8],
    enough: Option<usize>,
    deadline: Duration,
) -> Seen {
    let started = tokio::time::Instant::now();
    let mut seen = Seen::unconnected();
    let Ok(Ok(mut stream)) = tokio::time::timeout(deadline, TcpStream::connect(addr)).await else {
        seen.elapsed = started.elapsed();
        return seen;
    };
    let run = async {
        if stream.write_all(hello).await.is_err() {
            return End::Reset;
        }
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return End::Eof,
                Ok(n) => {
                    let keep = n.min(SEEN_KEEP.saturating_sub(seen.bytes.len()));
                    seen.bytes.extend_from_slice(&buf[..keep]);
                    seen.received += n;
                    if enough.is_some_and(|want| seen.received >= want) {
                        return End::Enough;
                    }
                }
                Err(_) => return End::Reset,
            }
        }
    };
    seen.end = tokio::time::timeout(deadline, run)
        .await
        .unwrap_or(End::StillOpen);
    seen.elapsed = started.elapsed();
    seen
}

/// Runs `one(i)` for `i` in `0..count`, at most `concurrency` at a time, and
/// returns the results in order.
pub async fn drive<F, Fut, T>(count: usize, concurrency: usize, one: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let one = Arc::new(one);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (next, one) = (next.clone(), one.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return done;
                }
                done.push((i, one(i).await));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = workers.join_next().await {
        all.extend(done.expect("load worker panicked"));
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}
