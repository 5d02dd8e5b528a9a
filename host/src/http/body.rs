//! [`Body`]: the one body type of the HTTP mode, both ways. Streamed bodies
//! (a client's upload, a backend's answer) pass frame by frame, never
//! buffered; local answers (errors, redirects, forward-auth denials) are a
//! single chunk. A backend's answer carries its [`Return`] guard, which
//! drives the backend connection while the body is read and puts it back
//! for reuse once the body has ended (`http/client.rs`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::client::Return;

/// A request or response body.
#[derive(Debug)]
pub enum Body {
    /// No bytes.
    Empty,
    /// One chunk, sent once.
    Full(Option<Bytes>),
    /// Streamed from a peer.
    Incoming(Incoming),
    /// Streamed from a backend; `guard` is released when the body ends.
    Upstream {
        /// The backend's body.
        inner: Incoming,
        /// Returns the connection when dropped.
        guard: Option<Return>,
    },
}

impl Body {
    /// A one-chunk body.
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Some(bytes.into()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(chunk) => Poll::Ready(chunk.take().map(|b| Ok(Frame::data(b)))),
            Body::Incoming(inner) => Pin::new(inner).poll_frame(cx),
            Body::Upstream { inner, guard } => {
                // The backend connection has no task: reading its body
                // drives it.
                if let Some(guard) = guard {
                    guard.drive(cx);
                }
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match &polled {
                    // Ended cleanly (servers stop polling once
                    // `is_end_stream` says so, often right after the last
                    // chunk): the connection may serve the next request.
                    Poll::Ready(None) => {
                        if let Some(guard) = guard.take() {
                            guard.finished();
                        }
                    }
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => {
                        if let Some(guard) = guard.take() {
                            guard.finished();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        guard.take();
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(chunk) => chunk.is_none(),
            Body::Incoming(inner) | Body::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(chunk) => SizeHint::with_exact(chunk.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(inner) | Body::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
