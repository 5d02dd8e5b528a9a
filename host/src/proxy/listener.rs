//! Listening sockets and the accept loop: one task per listening socket,
//! one task per connection (`proxy/conn.rs`, `proxy/plain.rs`,
//! `proxy/redirect.rs`), and the
//! `max_concurrent_conns` limit applied at accept time. With several
//! worker threads each has its own socket per address (`bind_group`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::warn;

use super::conn::Conn;
use super::{Live, Shared, accept_proxy, current, plain, redirect};

/// Pending connections the kernel queues before `accept`: bursts of new
/// TLS connections are common at :443.
const LISTEN_BACKLOG: i32 = 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// At most one `connection limit reached` line per listener this often: a
/// flood at the limit must not become a flood of log lines.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Lets an event through at most once per interval, counting the rest.
struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when this event should be logged, `n` being the events
    /// since the last logged one, this one included.
    fn note(&mut self) -> Option<u64> {
        let now = Instant::now();
        self.suppressed += 1;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// What a listener's connections get.
#[derive(Debug, Clone)]
pub enum Serve {
    /// The TLS data path: ClientHello, policy, route (`proxy/conn.rs`).
    Tls,
    /// Plain HTTP into this route set (`plain_listen`, `proxy/plain.rs`).
    PlainHttp(Arc<str>),
    /// `http_listen`: ACME HTTP-01 and 301 to https (`proxy/redirect.rs`).
    Redirect,
}

/// Binds a TCP listener. IPv6 sockets are IPv6-only, so `0.0.0.0:443` and
/// `[::]:443` can be listed together.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(listening_socket(addr, false)?)
}

/// Binds `count` listening sockets on `addr` that share one port with
/// `SO_REUSEPORT`, one per worker thread: the kernel spreads new
/// connections over them, and each worker accepts from its own. A port
/// another socket already holds is refused as it would be with one socket
/// (the option alone would let the group join another process's); a
/// `:0` port is chosen once, for the whole group.
pub fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if count <= 1 {
        return Ok(vec![listening_socket(addr, false)?]);
    }
    let probe = socket_for(addr, false)?;
    probe.bind(&addr.into())?;
    let addr = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound address is not an IP address"))?;
    drop(probe);
    (0..count).map(|_| listening_socket(addr, true)).collect()
}

fn socket_for(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    // Accepted sockets inherit it (Linux copies the listener's TCP
    // options): small TLS records and WebSocket frames do not wait for
    // Nagle, at no syscall per connection.
    socket.set_tcp_nodelay(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn listening_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = socket_for(addr, reuse_port)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Accepts until `shutdown` turns true; connections over the limit are
/// closed at once. Each connection gets the generation current at its
/// accept, and `closing`, which turns true when the drain runs out.
pub async fn accept_loop(
    listener: TcpListener,
    live: Arc<Live>,
    limiter: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    closing: watch::Receiver<bool>,
    serve: Serve,
) {
    let mut limit_log = Throttle::new(LIMIT_LOG_INTERVAL);
    // A listener bound to one address knows every connection's local
    // address; only a wildcard one asks the kernel per connection.
    let bound = listener
        .local_addr()
        .ok()
        .filter(|addr| !addr.ip().is_unspecified());
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, source) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                warn!(error = %error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let shared = current(&live);
        let metrics = &shared.metrics;
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = limiter.clone().try_acquire_owned() else {
            metrics.limit_rejected.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            if let Some(refused) = limit_log.note() {
                let limit = shared.config.limits.max_concurrent_conns;
                warn!(source = %source, limit, refused, "connection limit reached");
            }
            continue;
        };
        let local = match bound.map_or_else(|| stream.local_addr(), Ok) {
            Ok(local) => local,
            Err(error) => {
                warn!(source = %source, error = %error, "accept failed");
                continue;
            }
        };
        if let Some(settings) = shared
            .config
            .accept_proxy
            .as_ref()
            .filter(|s| s.requires(source.ip()))
        {
            // A balancer: the client's address comes first, in the task.
            let settings = settings.clone();
            let closing = closing.clone();
            let serve = serve.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                let Some((source, local)) =
                    accept_proxy::addresses(&shared, &settings, &mut stream, source, local).await
                else {
                    return;
                };
                serve_conn(shared, serve, stream, source, local, permit, closing).await;
            });
            continue;
        }
        tokio::spawn(serve_conn(
            shared,
            serve.clone(),
            stream,
            source,
            local,
            permit,
            closing.clone(),
        ));
    }
}

/// What a connection from `source` to `local` does on a listener of kind
/// `serve`.
async fn serve_conn(
    shared: Arc<Shared>,
    serve: Serve,
    stream: TcpStream,
    source: SocketAddr,
    local: SocketAddr,
    permit: OwnedSemaphorePermit,
    closing: watch::Receiver<bool>,
) {
    match serve {
        Serve::Tls => {
            Conn::new(shared, source, local)
                .run(stream, permit, closing)
                .await
        }
        // One short request each: the drain waits for it (permit). These
        // and the HTTP mode are boxed so their state does not size every
        // passthrough connection's task (benches/RESULTS.md, "Per
        // connection: the gap is user time").
        Serve::Redirect => Box::pin(redirect::handle(shared, stream, source, permit)).await,
        Serve::PlainHttp(set) => {
            Box::pin(plain::run(shared, stream, source, set, permit, closing)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY not inherited");
        // The client side is a plain socket: without the option.
        assert!(!client.nodelay().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_lets_one_event_through_per_interval_and_counts_the_rest() {
        let mut throttle = Throttle::new(Duration::from_secs(1));
        assert_eq!(throttle.note(), Some(1));
        assert_eq!(throttle.note(), None);
        assert_eq!(throttle.note(), None);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(throttle.note(), Some(3));
        assert_eq!(throttle.note(), None);
    }
}
