//! Relaying bytes both ways between a client and a backend until both sides
//! have closed, propagating half-close (an EOF on one side shuts down writing
//! on the other), with bounded buffers, byte counts and an idle timeout.
//!
//! Buffers are held only while bytes are in flight: a direction takes one
//! [`RELAY_BUFFER_BYTES`] buffer when it reads, and gives it back as soon as
//! everything read has been written and the next read would block. An idle
//! connection holds no relay buffer at all; a slow reader holds at most one
//! per direction (the writer stops reading until its buffer drains). Given
//! back buffers wait in a small per-thread pool ([`SPARE_BUFFERS_PER_THREAD`])
//! so a busy connection does not allocate per read.
//!
//! A direction whose read fills its buffer is carrying bulk bytes: from then
//! on it reads into a [`BULK_BUFFER_BYTES`] buffer, so a large transfer
//! costs a sixteenth of the reads, writes and wake-ups (measured in
//! `benches/RESULTS.md`, "Bulk buffers"). At most [`BULK_BUFFERS`] are held
//! at once in the whole process; past that a direction stays on the small
//! buffer, so slow readers cannot make memory grow past
//! `BULK_BUFFERS × BULK_BUFFER_BYTES` (16 MiB) for bulk buffers.
//!
//! This is the seam for a zero-copy passthrough (`splice(2)`): callers only
//! see [`relay`] and [`Relayed`]. A splice relay was measured on loopback
//! (the usual backend placement): ~530 MiB/s against ~870 MiB/s copying,
//! for the same CPU time, and again with 1 MiB pipes for no less CPU per
//! GiB, so copying stays. Used by `proxy/relay.rs`
//! (passthrough and terminate) and `http/handler.rs` (WebSocket).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Buffer per direction while bytes are in flight: a full TLS record's
/// payload. 64 KiB measured no clearly better on loopback.
pub const RELAY_BUFFER_BYTES: usize = 16 * 1024;

/// Buffer per direction once a read filled a [`RELAY_BUFFER_BYTES`] one.
pub const BULK_BUFFER_BYTES: usize = 256 * 1024;

/// Bulk buffers held at once by the whole process (16 MiB).
const BULK_BUFFERS: usize = 64;

/// Bulk buffers held by relays right now.
static BULK_IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Given-back bulk buffers kept for reuse per worker thread.
const SPARE_BULK_BUFFERS_PER_THREAD: usize = 2;

/// Buffers kept for reuse per worker thread (16 KiB each): enough for the
/// connections one worker moves bytes for at once in a burst; the rest are
/// freed.
const SPARE_BUFFERS_PER_THREAD: usize = 8;

thread_local! {
    /// Buffers given back by quiet directions, reused by the next reader.
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    /// Bulk buffers given back, reused by the next bulk reader.
    static SPARE_BULK: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

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

/// The last activity, in milliseconds since `start`; read by the idle timer
/// while the copy updates it.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

/// One direction of the relay: read from one side, write to the other.
struct Pipe {
    /// Holds `buf[pos..end]` not yet written; `None` while nothing is in flight.
    buf: Option<Box<[u8]>>,
    pos: usize,
    end: usize,
    /// Bytes read (and so, in the end, written).
    moved: u64,
    /// Written since the last flush.
    need_flush: bool,
    /// A read filled a small buffer: this direction carries bulk bytes.
    bulk: bool,
    state: PipeState,
}

/// Where a [`Pipe`] is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PipeState {
    /// Reading and writing.
    Copying,
    /// The reader reached EOF and everything is written: shutting down the
    /// writer (half-close).
    ShuttingDown,
    /// Finished.
    Done,
}

/// Copies `client` ⇄ `backend` until both directions reached EOF, an error,
/// or `idle` passed without a byte either way.
pub async fn relay<C, B>(mut client: C, mut backend: B, idle: Duration) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let mut up = Pipe::new();
    let mut down = Pipe::new();
    let end = {
        let copy = poll_fn(|cx| {
            let before = up.moved + down.moved;
            let up_done = up.poll_pump(cx, &mut client, &mut backend)?;
            let down_done = down.poll_pump(cx, &mut backend, &mut client)?;
            // One clock read per turn that moved bytes, not one per read.
            if up.moved + down.moved != before {
                activity.touch();
            }
            match (up_done, down_done) {
                (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok::<(), io::Error>(())),
                _ => Poll::Pending,
            }
        });
        tokio::select! {
            biased;
            result = copy => match result {
                Ok(()) => RelayEnd::Closed,
                Err(e) => RelayEnd::Error(e),
            },
            () = idle_expired(&activity, idle) => RelayEnd::Idle,
        }
    };
    // Both pipes give their buffers back when dropped (`Drop for Pipe`).
    Relayed {
        up: up.moved,
        down: down.moved,
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

// === impl Activity ===

impl Activity {
    /// Notes that bytes moved now.
    fn touch(&self) {
        let elapsed = self.start.elapsed().as_millis();
        self.last_ms.store(
            u64::try_from(elapsed).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

// === impl Pipe ===

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            buf: None,
            pos: 0,
            end: 0,
            moved: 0,
            need_flush: false,
            bulk: false,
            state: PipeState::Copying,
        }
    }

    /// Moves bytes from `reader` to `writer` until the reader would block
    /// (`Pending`) or this direction is finished (`Ready`).
    fn poll_pump<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            match self.state {
                PipeState::Done => return Poll::Ready(Ok(())),
                PipeState::ShuttingDown => {
                    ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                    self.state = PipeState::Done;
                }
                PipeState::Copying => {
                    if self.pos == self.end {
                        // Nothing in flight: read more, or give the buffer back.
                        match self.poll_fill(cx, reader) {
                            Poll::Pending => {
                                self.release();
                                if self.need_flush {
                                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                                    self.need_flush = false;
                                }
                                return Poll::Pending;
                            }
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Ready(Ok(0)) => {
                                self.release();
                                ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                                self.need_flush = false;
                                self.state = PipeState::ShuttingDown;
                                continue;
                            }
                            Poll::Ready(Ok(n)) => {
                                self.moved += n as u64;
                            }
                        }
                    }
                    // A slow writer keeps the buffer: at most one per direction.
                    ready!(self.poll_drain(cx, writer))?;
                }
            }
        }
    }

    /// Reads into a (pooled) buffer; `Ok(0)` is EOF.
    fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
    ) -> Poll<io::Result<usize>> {
        let buf = self.read_buffer();
        let mut read = ReadBuf::new(buf);
        ready!(Pin::new(reader).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == buf.len() {
            self.bulk = true;
        }
        self.pos = 0;
        self.end = n;
        Poll::Ready(Ok(n))
    }

    /// The buffer to read into: a bulk one once this direction is bulk and
    /// the budget allows, else the one it holds or a small one.
    fn read_buffer(&mut self) -> &mut Box<[u8]> {
        let small = self
            .buf
            .as_ref()
            .is_none_or(|b| b.len() < BULK_BUFFER_BYTES);
        if self.bulk
            && small
            && let Some(large) = take_bulk_buffer()
            && let Some(old) = self.buf.replace(large)
        {
            give_back(old);
        }
        self.buf.get_or_insert_with(take_buffer)
    }

    /// Writes `buf[pos..end]` out.
    fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<io::Result<()>> {
        while self.pos < self.end {
            let Some(buf) = &self.buf else { break };
            let n = ready!(Pin::new(&mut *writer).poll_write(cx, &buf[self.pos..self.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
            self.need_flush = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Gives the buffer back to the pool once nothing is in flight.
    fn release(&mut self) {
        if self.pos == self.end
            && let Some(buf) = self.buf.take()
        {
            give_back(buf);
        }
    }
}

/// A bulk buffer, unless the process holds [`BULK_BUFFERS`] already.
fn take_bulk_buffer() -> Option<Box<[u8]>> {
    BULK_IN_USE
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < BULK_BUFFERS).then_some(n + 1)
        })
        .ok()?;
    Some(
        SPARE_BULK
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| vec![0; BULK_BUFFER_BYTES].into_boxed_slice()),
    )
}

impl Drop for Pipe {
    /// A relay that ended with bytes in flight still gives its buffer back
    /// (a bulk one counts against [`BULK_BUFFERS`] until then).
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            give_back(buf);
        }
    }
}

/// A buffer from this thread's pool, or a new one.
fn take_buffer() -> Box<[u8]> {
    SPARE
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| vec![0; RELAY_BUFFER_BYTES].into_boxed_slice())
}

/// Returns a buffer to this thread's pool, or frees it when the pool is full.
fn give_back(buf: Box<[u8]>) {
    if buf.len() == BULK_BUFFER_BYTES {
        BULK_IN_USE.fetch_sub(1, Ordering::Relaxed);
        SPARE_BULK.with_borrow_mut(|spare| {
            if spare.len() < SPARE_BULK_BUFFERS_PER_THREAD {
                spare.push(buf);
            }
        });
        return;
    }
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARE_BUFFERS_PER_THREAD {
            spare.push(buf);
        }
    });
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

    /// Polls `pipe` once, moving `reader` → `writer`.
    fn pump_once<R, W>(pipe: &mut Pipe, reader: &mut R, writer: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let waker = std::task::Waker::noop();
        pipe.poll_pump(&mut Context::from_waker(waker), reader, writer)
    }

    #[tokio::test]
    async fn a_quiet_direction_holds_no_buffer() {
        let (mut client, mut client_side) = duplex(64 * 1024);
        let (mut backend_side, mut backend) = duplex(64 * 1024);
        let mut up = Pipe::new();
        assert!(pump_once(&mut up, &mut client_side, &mut backend_side).is_pending());
        assert!(up.buf.is_none(), "no bytes yet, no buffer");

        client.write_all(b"some bytes").await.unwrap();
        assert!(pump_once(&mut up, &mut client_side, &mut backend_side).is_pending());
        let mut got = [0u8; 10];
        backend.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"some bytes");
        assert_eq!(up.moved, 10);
        assert!(up.buf.is_none(), "everything written: the buffer went back");
    }

    #[tokio::test]
    async fn a_slow_writer_bounds_what_is_read() {
        /// What the stalled writer's side accepts before it blocks.
        const WRITER_ROOM: usize = 4096;
        let (mut client, mut client_side) = duplex(1024 * 1024);
        let (mut backend_side, _backend) = duplex(WRITER_ROOM);
        let sent = vec![7u8; 512 * 1024];
        client.write_all(&sent).await.unwrap();
        let mut up = Pipe::new();
        for _ in 0..100 {
            assert!(pump_once(&mut up, &mut client_side, &mut backend_side).is_pending());
        }
        // One buffer in flight plus what the writer took: the rest stays
        // unread in the client's socket.
        assert!(
            up.moved <= (RELAY_BUFFER_BYTES + WRITER_ROOM) as u64,
            "read {} bytes for a writer that took {WRITER_ROOM}",
            up.moved
        );
        assert!(up.moved > 0);
        assert!(up.buf.is_some(), "unwritten bytes stay buffered");
    }

    #[tokio::test]
    async fn a_direction_that_fills_its_buffer_reads_into_a_bulk_one() {
        let (mut client, mut client_side) = duplex(1024 * 1024);
        let (mut backend_side, mut backend) = duplex(1024 * 1024);
        let mut up = Pipe::new();
        client.write_all(b"small").await.unwrap();
        assert!(pump_once(&mut up, &mut client_side, &mut backend_side).is_pending());
        assert!(!up.bulk, "a short read is not bulk");

        let sent: Vec<u8> = (0..600 * 1024).map(|i| (i % 253) as u8).collect();
        client.write_all(&sent).await.unwrap();
        let mut reads = 0;
        while up.moved < 5 + sent.len() as u64 {
            assert!(pump_once(&mut up, &mut client_side, &mut backend_side).is_pending());
            reads += 1;
            assert!(reads < 100);
        }
        assert!(up.bulk, "a read filled the small buffer");
        let spare_bulk = SPARE_BULK.with_borrow(Vec::len);
        assert_eq!(
            spare_bulk, 1,
            "the bulk buffer went back to this thread's pool"
        );
        let mut got = vec![0u8; 5 + sent.len()];
        backend.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..5], b"small");
        assert_eq!(&got[5..], &sent[..]);
    }

    #[test]
    fn bulk_buffers_are_bounded_for_the_process() {
        let mut held = Vec::new();
        while let Some(buf) = take_bulk_buffer() {
            held.push(buf);
            assert!(held.len() <= BULK_BUFFERS);
        }
        assert!(!held.is_empty());
        for buf in held {
            give_back(buf);
        }
        let again = take_bulk_buffer().expect("given back, the budget returns");
        give_back(again);
    }

    #[tokio::test]
    async fn bulk_bytes_arrive_intact_in_both_directions() {
        const BYTES: usize = 4 * 1024 * 1024;
        let (client_side, client) = duplex(8 * 1024);
        let (backend_side, backend) = duplex(8 * 1024);
        let relay = tokio::spawn(relay(client_side, backend_side, Duration::from_secs(60)));
        let pattern: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
        let echo = |mut side: tokio::io::DuplexStream, data: Vec<u8>| async move {
            let (mut rd, mut wr) = tokio::io::split(&mut side);
            let write = async {
                wr.write_all(&data).await.unwrap();
                wr.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let read = rd.read_to_end(&mut got);
            let ((), n) = tokio::join!(write, read);
            n.unwrap();
            got
        };
        let (at_backend, at_client) = tokio::time::timeout(TEST_DEADLINE, async {
            tokio::join!(
                echo(backend, pattern.clone()),
                echo(client, pattern.clone())
            )
        })
        .await
        .unwrap();
        assert!(at_backend == pattern && at_client == pattern);
        let done = tokio::time::timeout(TEST_DEADLINE, relay)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(done.end, RelayEnd::Closed), "{:?}", done.end);
        assert_eq!((done.up, done.down), (BYTES as u64, BYTES as u64));
    }
}
