//! Where a policy's stdout and stderr go: a small bounded buffer per stream,
//! drained by `instance.rs` after every call into the guest and turned into
//! log lines (and into the `PolicyError::Trap` text when the call trapped,
//! which is how a Rust policy's panic message reaches the operator).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes kept per stream between two drains; more is dropped. A panic
/// message with its location is a few hundred bytes.
pub const MAX_GUEST_OUTPUT: usize = 8 * 1024;

/// Largest single write the guest is offered; what WASI's
/// `blocking-write-and-flush` allows.
const WRITE_PERMIT: usize = 4096;

/// One captured stream (stdout or stderr). Clones share the buffer.
#[derive(Clone, Default)]
pub struct GuestOutput {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    buf: Mutex<Vec<u8>>,
    /// Set on write, so the drain after each call costs one atomic load
    /// when the guest wrote nothing (the normal case).
    written: AtomicBool,
}

// === impl GuestOutput ===

impl GuestOutput {
    /// Takes what was written since the last call, as lossy UTF-8, or
    /// `None` when nothing was.
    pub fn take(&self) -> Option<String> {
        if !self.inner.written.swap(false, Ordering::AcqRel) {
            return None;
        }
        let bytes = std::mem::take(&mut *self.lock());
        (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
    }

    fn append(&self, bytes: &[u8]) {
        let mut buf = self.lock();
        let room = MAX_GUEST_OUTPUT.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.inner.written.store(true, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // The buffer is plain bytes: a poisoned lock holds nothing broken.
        self.inner.buf.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    /// Always writable: writes land in memory and never wait.
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_returns_writes_once() {
        let mut out = GuestOutput::default();
        assert_eq!(out.take(), None);
        OutputStream::write(&mut out, Bytes::from_static(b"panicked at x")).unwrap();
        assert_eq!(out.take().as_deref(), Some("panicked at x"));
        assert_eq!(out.take(), None);
    }

    #[test]
    fn output_is_bounded() {
        let mut out = GuestOutput::default();
        for _ in 0..10 {
            OutputStream::write(&mut out, Bytes::from(vec![b'x'; MAX_GUEST_OUTPUT])).unwrap();
        }
        assert_eq!(out.take().map(|s| s.len()), Some(MAX_GUEST_OUTPUT));
    }
}
