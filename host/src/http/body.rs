//! [`Body`]: the one body type of the HTTP mode, both ways. Streamed bodies
//! (a client's upload, a backend's answer) pass frame by frame, never
//! buffered; local answers (errors, redirects, forward-auth denials) are a
//! single chunk. A backend's answer carries its [`Return`] guard, which
//! puts the connection back for reuse once the body has ended
//! (`http/client.rs`); an HTTP/1.1 backend's body is read straight from
//! its connection (`http/h1.rs`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::client::Return;
use super::h1;

/// The error of a streamed body, either way.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body.
#[derive(Debug)]
pub enum Body {
    /// No bytes.
    Empty,
    /// One chunk, sent once.
    Full(Option<Bytes>),
    /// Streamed from a peer.
    Incoming(Incoming),
    /// Streamed from an h2c backend; `guard` is released when the body
    /// ends.
    Upstream {
        /// The backend's body.
        inner: Incoming,
        /// Releases the request's hold on the pool member.
        guard: Option<Return>,
    },
    /// Streamed from a handler component.
    Handler(hearth_edge_policy::handler::ResponseBody),
    /// Read from an HTTP/1.1 backend's connection, which `guard` gives
    /// back to the pool when the body has ended cleanly.
    H1 {
        /// The body's reader, owning the connection.
        reader: h1::Reader,
        /// Gives the connection back.
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
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(chunk) => Poll::Ready(chunk.take().map(|b| Ok(Frame::data(b)))),
            Body::Incoming(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Body::Handler(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Body::H1 { reader, guard } => {
                let polled = reader.poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Err(_))) => {
                        // The connection is in an unknown state: closed.
                        guard.take();
                    }
                    // Give the connection back as soon as the body has
                    // ended: servers stop polling once `is_end_stream`
                    // says so, often right after the last chunk.
                    Poll::Ready(_) if reader.is_end() => {
                        if let Some(guard) = guard.take() {
                            guard.give_back(reader.take_reusable());
                        }
                    }
                    _ => {}
                }
                polled.map_err(Into::into)
            }
            Body::Upstream { inner, guard } => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                // The request's hold on the member ends with the body
                // (servers stop polling once `is_end_stream` says so, often
                // right after the last chunk) or with its error; the shared
                // h2c connection stays in the idle list either way.
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) || inner.is_end_stream() {
                    guard.take();
                }
                polled.map_err(Into::into)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(chunk) => chunk.is_none(),
            Body::Incoming(inner) | Body::Upstream { inner, .. } => inner.is_end_stream(),
            Body::H1 { reader, .. } => reader.is_end(),
            Body::Handler(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(chunk) => SizeHint::with_exact(chunk.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(inner) | Body::Upstream { inner, .. } => inner.size_hint(),
            Body::H1 { reader, .. } => reader.size_hint(),
            Body::Handler(inner) => inner.size_hint(),
        }
    }
}
