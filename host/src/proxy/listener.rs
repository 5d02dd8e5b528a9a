//! Listening sockets and the accept loop: one task per listener, one task
//! per connection (`proxy/conn.rs`), and the `max_concurrent_conns` limit
//! applied at accept time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::warn;

use super::{Shared, conn};

/// Pending connections the kernel queues before `accept`: bursts of new
/// TLS connections are common at :443.
const LISTEN_BACKLOG: i32 = 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Binds a TCP listener. IPv6 sockets are IPv6-only, so `0.0.0.0:443` and
/// `[::]:443` can be listed together.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Accepts until `shutdown` turns true; connections over the limit are
/// closed at once.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limiter: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let metrics = &shared.metrics;
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
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = limiter.clone().try_acquire_owned() else {
            metrics.limit_rejected.fetch_add(1, Ordering::Relaxed);
            warn!(source = %source, limit = shared.config.limits.max_concurrent_conns, "connection limit reached");
            drop(stream);
            continue;
        };
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(error) => {
                warn!(source = %source, error = %error, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(conn::handle(shared.clone(), stream, source, local, permit));
    }
}
