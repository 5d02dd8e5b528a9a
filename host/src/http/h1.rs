//! HTTP/1.1 toward backends (RFC 9112), written for the proxy's one use of
//! it: a connection carries one request at a time; the request head is
//! encoded into a buffer the connection keeps and written with one call;
//! the answer's head is parsed by `httparse` into `http` types whose
//! values share the bytes read; the answer's body is cut from the read
//! buffer as the client connection pulls it. There is no task, channel or
//! waker per request between the request and its backend connection.
//! hyper's client, which this replaced for HTTP/1.1, spent about a fifth of
//! the HTTP mode's user time on exactly those (`benches/RESULTS.md`); h2c
//! backends still use it.
//!
//! Framing follows RFC 9112 §6: a request body is sent with its
//! `Content-Length` when its size is known, chunked otherwise; an answer's
//! body is empty (HEAD, 1xx, 204, 304), chunked, `Content-Length` long, or
//! read until the backend closes. Interim answers (`100 Continue`) are
//! skipped; `101 Switching Protocols` hands the socket over
//! ([`Next::Switched`]). A connection is reused only after an answer that
//! ended cleanly, was not close-delimited and did not say `Connection:
//! close`, and only when the whole request was sent.

use std::future::poll_fn;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::{Body, BoxError};
use codec::{Framing, Head, MAX_HEAD, Malformed, Step};
use codec::{answer_framing, chunk_step, keeps_alive, parse_head};

mod codec;

/// Memory the read buffer grows by when it runs low...
const READ_SIZE: usize = 16 * 1024;
/// ...which is when less than this is free. Reads into what is left
/// otherwise, so the buffer is not re-allocated per request (a 16 KiB
/// allocation and free per answer cost more than its parsing).
const MIN_READ_SPACE: usize = 2 * 1024;
/// One HTTP/1.1 connection to a backend.
#[derive(Debug)]
pub struct Conn {
    io: TcpStream,
    /// Bytes read and not yet used.
    buf: BytesMut,
    /// The request head being written; kept to reuse its memory.
    head: Vec<u8>,
}

/// A request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the backend's socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The backend closed the connection before its answer ended.
    #[error("connection closed before the answer ended")]
    Closed,
    /// The backend's answer does not parse.
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    /// The client's request body failed or did not match its length.
    #[error("request body: {0}")]
    Request(BoxError),
}

impl From<Malformed> for Error {
    fn from(malformed: Malformed) -> Error {
        Error::Malformed(malformed.0)
    }
}

/// Why [`Conn::send`] gave no answer.
#[derive(Debug)]
pub enum SendError {
    /// Nothing of the request was used by the backend: a reused
    /// connection that turned out closed. Safe to send on another
    /// connection.
    Unsent(Box<Request<Body>>, Error),
    /// The request may have reached the backend.
    Failed(Error),
}

/// What follows an answer's head.
#[derive(Debug)]
pub enum Next {
    /// The answer's body, read from the connection.
    Body(Reader),
    /// The backend switched protocols (101): the socket, and what it had
    /// sent past the head.
    Switched(Upgraded),
}

/// A connection taken over after `101 Switching Protocols`.
#[derive(Debug)]
pub struct Upgraded {
    /// The socket.
    pub io: TcpStream,
    /// Bytes the backend sent after its answer's head.
    pub leftover: Bytes,
}

/// Reads an answer's body from its connection.
#[derive(Debug)]
pub struct Reader {
    /// `None` once the body has ended and the connection was taken.
    conn: Option<Conn>,
    framing: Framing,
    /// The connection may carry another request once the body has ended.
    keep_alive: bool,
}

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    None,
    Length(u64),
    Chunked,
}

// === impl Conn ===

impl Conn {
    /// A fresh connection.
    pub fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            head: Vec::new(),
        }
    }

    /// Whether an idle connection can carry a request: the backend has not
    /// closed it nor sent anything unasked. The socket is read only when it
    /// has turned readable since its last read; `cx` is registered for
    /// that readiness.
    pub fn is_usable(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match self.io.poll_read_ready(cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Sends `request` and reads the answer's head; the answer's body (or
    /// the switched connection) comes with it. `reused`: the connection
    /// carried a request before, so a close before any answer means the
    /// backend closed it while idle (the request is given back when it had
    /// no body).
    pub async fn send(
        mut self,
        request: Request<Body>,
        reused: bool,
    ) -> Result<(Response<()>, Next), SendError> {
        let (parts, mut body) = request.into_parts();
        let outgoing = outgoing_framing(&parts.method, &parts.headers, &body);
        encode_head(&parts, outgoing, &mut self.head);
        // Nothing written yet: a failed first write leaves the request
        // whole, to be sent again when the connection was an idle one
        // (a fresh one failing is the member failing).
        let written = match self.io.write(&self.head).await {
            Ok(n) => n,
            Err(error) if reused => {
                return Err(SendError::Unsent(
                    Box::new(Request::from_parts(parts, body)),
                    error.into(),
                ));
            }
            Err(error) => return Err(SendError::Failed(error.into())),
        };
        if written < self.head.len() {
            self.io
                .write_all(&self.head[written..])
                .await
                .map_err(|e| SendError::Failed(e.into()))?;
        }

        let Conn { io, buf, .. } = &mut self;
        let (mut rd, mut wr) = io.split();
        let (head, whole) = if outgoing == Outgoing::None || body.is_end_stream() {
            (read_head(&mut rd, buf).await, true)
        } else {
            let head = read_head(&mut rd, buf);
            let write = write_body(&mut wr, &mut body, outgoing);
            tokio::pin!(head, write);
            // The backend may answer before the body is sent (a 413, a
            // redirect): the answer wins, and the connection is not
            // reused.
            tokio::select! {
                biased;
                head = &mut head => (head, false),
                written = &mut write => {
                    written.map_err(SendError::Failed)?;
                    (head.await, true)
                }
            }
        };
        let head = match head {
            Ok(head) => head,
            Err(HeadError::Eof { answered: false }) if reused && whole && body.is_end_stream() => {
                return Err(SendError::Unsent(
                    Box::new(Request::from_parts(parts, body)),
                    Error::Closed,
                ));
            }
            Err(HeadError::Eof { .. }) => return Err(SendError::Failed(Error::Closed)),
            Err(HeadError::Failed(error)) => return Err(SendError::Failed(error)),
        };
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            let Conn { io, buf, .. } = self;
            return Ok((
                head.into_response(),
                Next::Switched(Upgraded {
                    io,
                    leftover: buf.freeze(),
                }),
            ));
        }
        let framing = answer_framing(&parts.method, head.status, &head.headers)
            .map_err(|m| SendError::Failed(m.into()))?;
        let keep_alive = whole
            && framing != Framing::Close
            && keeps_alive(head.version, &head.headers)
            && !(head.headers.contains_key(header::TRANSFER_ENCODING)
                && head.headers.contains_key(header::CONTENT_LENGTH));
        let reader = Reader {
            conn: Some(self),
            framing,
            keep_alive,
        };
        Ok((head.into_response(), Next::Body(reader)))
    }

    /// Reads more bytes into the buffer: `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        make_room(&mut self.buf);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

impl Head {
    fn into_response(self) -> Response<()> {
        let mut response = Response::new(());
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        response
    }
}

enum HeadError {
    /// The connection ended first; `answered`: some of a head had come.
    Eof {
        answered: bool,
    },
    Failed(Error),
}

/// Reads the final answer's head, skipping interim (1xx) answers other
/// than 101.
async fn read_head<R>(rd: &mut R, buf: &mut BytesMut) -> Result<Head, HeadError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut answered = false;
    loop {
        if !buf.is_empty() {
            answered = true;
            if let Some(head) = parse_head(buf).map_err(|m| HeadError::Failed(m.into()))? {
                let interim = head.status.is_informational()
                    && head.status != StatusCode::SWITCHING_PROTOCOLS;
                if !interim {
                    return Ok(head);
                }
                // A 1xx answer has no body; the final one follows.
                continue;
            }
            if buf.len() >= MAX_HEAD {
                return Err(HeadError::Failed(Error::Malformed("head too large")));
            }
        }
        make_room(buf);
        match rd.read_buf(buf).await {
            Ok(0) => return Err(HeadError::Eof { answered }),
            Ok(_) => {}
            Err(error) => return Err(HeadError::Failed(error.into())),
        }
    }
}

/// Makes room for a read, when little is left.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_READ_SPACE {
        buf.reserve(READ_SIZE);
    }
}

/// How the request's body goes on the wire.
fn outgoing_framing(method: &Method, headers: &HeaderMap, body: &Body) -> Outgoing {
    if body.is_end_stream() {
        // An empty body is announced only where the method expects one
        // (RFC 9110 §8.6) or the client announced it.
        let expects = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        return if expects || headers.contains_key(header::CONTENT_LENGTH) {
            Outgoing::Length(0)
        } else {
            Outgoing::None
        };
    }
    match body.size_hint().exact() {
        Some(n) => Outgoing::Length(n),
        None => Outgoing::Chunked,
    }
}

/// Writes the request line and headers; the framing headers are the
/// codec's own.
fn encode_head(parts: &http::request::Parts, outgoing: Outgoing, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match outgoing {
        Outgoing::None => {}
        Outgoing::Length(n) => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Outgoing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Streams the request body, framed as `outgoing` says. Trailers are not
/// sent.
async fn write_body<W>(wr: &mut W, body: &mut Body, outgoing: Outgoing) -> Result<(), Error>
where
    W: AsyncWrite + Unpin,
{
    let mut sent: u64 = 0;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        let frame = frame.map_err(Error::Request)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match outgoing {
            Outgoing::Chunked => {
                let size = format!("{:x}\r\n", data.len());
                let mut chunk = Bytes::from(size).chain(data).chain(&b"\r\n"[..]);
                wr.write_all_buf(&mut chunk).await?;
            }
            Outgoing::Length(n) if sent > n => {
                return Err(Error::Request("longer than its content-length".into()));
            }
            Outgoing::Length(_) | Outgoing::None => {
                let mut data = data;
                wr.write_all_buf(&mut data).await?;
            }
        }
    }
    match outgoing {
        Outgoing::Chunked => wr.write_all(b"0\r\n\r\n").await?,
        Outgoing::Length(n) if sent != n => {
            return Err(Error::Request("shorter than its content-length".into()));
        }
        _ => {}
    }
    Ok(())
}

// === impl Reader ===

impl Reader {
    /// The next piece of the body: data, then trailers if the backend sent
    /// any.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(left) => {
                    if conn.buf.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(Err(Error::Closed)));
                    }
                    let n = conn
                        .buf
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = conn.buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.framing = if left == 0 {
                        Framing::Done
                    } else {
                        Framing::Length(left)
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Close => {
                    if conn.buf.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        self.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(state) => match chunk_step(&mut conn.buf, state)? {
                    Step::Next(next) => self.framing = next,
                    Step::Data(data, next) => {
                        self.framing = next;
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Step::Trailers(trailers) => {
                        self.framing = Framing::Done;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Step::More => {
                        if ready!(conn.poll_fill(cx))? == 0 {
                            return Poll::Ready(Some(Err(Error::Closed)));
                        }
                    }
                },
            }
        }
    }

    /// The body has ended cleanly.
    pub fn is_end(&self) -> bool {
        self.framing == Framing::Done
    }

    /// What is known of the body's length.
    pub fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Chunked(_) | Framing::Close => SizeHint::default(),
        }
    }

    /// The connection, once the body has ended cleanly and the connection
    /// can carry another request.
    pub fn take_reusable(&mut self) -> Option<Conn> {
        if self.is_end() && self.keep_alive {
            self.conn.take().filter(|c| c.buf.is_empty())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
