//! Relaying bytes both ways between a client and a backend until both sides
//! have closed, propagating half-close (an EOF on one side shuts down writing
//! on the other), with bounded buffers, byte counts and an idle timeout.
//!
//! This is the seam for a zero-copy passthrough (`splice(2)`): callers only
//! see [`relay`] and [`Relayed`]. A splice relay was measured on loopback
//! (the usual backend placement): ~530 MiB/s against ~870 MiB/s copying,
//! for the same CPU time, so copying stays. Used by `proxy/passthrough.rs`
//! and `proxy/terminate.rs`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Buffer per direction: a full TLS record's payload. Two per connection
/// keep 10,000 connections near 320 MiB; 64 KiB measured no clearly better
/// on loopback.
pub const RELAY_BUFFER_BYTES: usize = 16 * 1024;

/// How a relay ended, with what it moved.
#[derive(Debug)]
pub struct Relayed {
    /// Bytes read from the client and written to the backend.
    pub up: u64,
    /// Bytes read from the backend and written to the client.
    pub down: u64,
    /// Why it stopped.
    pub end: RelayEnd,
}

/// Why a relay stopped.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides closed their sending half.
    Closed,
    /// No byte moved either way for the idle timeout.
    Idle,
    /// A read or write failed (reset, broken pipe, TLS error...).
    Error(io::Error),
}

/// Shared by both wrapped streams: byte counts and the last activity, in
/// milliseconds since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

/// A stream that counts the bytes read from it and notes activity.
struct Counted<'a, S> {
    inner: S,
    bytes: &'a AtomicU64,
    activity: &'a Activity,
}

/// Copies `client` ⇄ `backend` until both directions reached EOF, an error,
/// or `idle` passed without a byte either way.
pub async fn relay<C, B>(client: C, backend: B, idle: Duration) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut client = Counted {
        inner: client,
        bytes: &up,
        activity: &activity,
    };
    let mut backend = Counted {
        inner: backend,
        bytes: &down,
        activity: &activity,
    };
    let end = tokio::select! {
        result = tokio::io::copy_bidirectional_with_sizes(
            &mut client, &mut backend, RELAY_BUFFER_BYTES, RELAY_BUFFER_BYTES,
        ) => match result {
            Ok(_) => RelayEnd::Closed,
            Err(e) => RelayEnd::Error(e),
        },
        () = idle_expired(&activity, idle) => RelayEnd::Idle,
    };
    Relayed {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        end,
    }
}

/// Resolves once `idle` has passed since the last activity.
async fn idle_expired(activity: &Activity, idle: Duration) {
    loop {
        let last = activity.start + Duration::from_millis(activity.last_ms.load(Ordering::Relaxed));
        let deadline = last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

// === impl Counted ===

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
            let elapsed = self.activity.start.elapsed().as_millis();
            self.activity.last_ms.store(
                u64::try_from(elapsed).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// Bounds every wait in these tests.
    const TEST_DEADLINE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn half_close_is_propagated_and_the_other_direction_continues() {
        let (client_side, mut client) = duplex(1024);
        let (backend_side, mut backend) = duplex(1024);
        let relay = tokio::spawn(relay(client_side, backend_side, Duration::from_secs(60)));

        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        // The backend sees the request and then EOF...
        let mut got = Vec::new();
        tokio::time::timeout(TEST_DEADLINE, backend.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"request");
        // ...and can still answer.
        backend.write_all(b"response").await.unwrap();
        backend.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(TEST_DEADLINE, client.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer, b"response");

        let done = tokio::time::timeout(TEST_DEADLINE, relay)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(done.end, RelayEnd::Closed), "{:?}", done.end);
        assert_eq!((done.up, done.down), (7, 8));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed() {
        let (client_side, mut client) = duplex(1024);
        let (backend_side, mut backend) = duplex(1024);
        let idle = Duration::from_secs(30);
        let relay = tokio::spawn(relay(client_side, backend_side, idle));
        client.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        backend.read_exact(&mut one).await.unwrap();
        let started = Instant::now();
        let done = relay.await.unwrap();
        assert!(matches!(done.end, RelayEnd::Idle), "{:?}", done.end);
        assert!(started.elapsed() >= idle - Duration::from_millis(1));
        assert_eq!(done.up, 1);
    }
}
