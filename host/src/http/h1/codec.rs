//! The sans-I/O half of the HTTP/1.1 codec (`http/h1.rs`): answer heads,
//! body framing (RFC 9112 §6.3) and the chunked decoder, over bytes
//! already read. It touches no socket and depends only on `bytes`, `http`
//! and `httparse`, so the fuzz target (`host/fuzz`, `h1_answer`) compiles
//! this very file and feeds it arbitrary bytes cut into arbitrary pieces.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// The backend's answer does not parse: what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Largest answer head (status line and headers), and largest trailer
/// section, accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in an answer head or a trailer section.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with extensions) accepted.
pub const MAX_CHUNK_LINE: usize = 4096;

/// An answer's head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
}

/// Where an answer's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked, in this state.
    Chunked(Chunk),
    /// Until the backend closes.
    Close,
    /// Ended cleanly.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The trailer section after the last chunk.
    Trailers,
}

/// Parses one answer head at the start of `buf` and removes it; `None`
/// when more bytes are needed.
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Malformed> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Malformed("too many headers")),
        Err(_) => return Err(Malformed("invalid head")),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Malformed("invalid status"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where each name and value sits, so the values can share the head's
    // bytes once they are split off the buffer.
    let base = buf.as_ptr() as usize;
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let count = parsed.headers.len();
    for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        *span = (name, name + h.name.len(), value, value + h.value.len());
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &(name_start, name_end, value_start, value_end) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[name_start..name_end])
            .map_err(|_| Malformed("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_start..value_end))
            .map_err(|_| Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    Ok(Some(Head {
        status,
        version,
        headers,
    }))
}

/// How the answer's body is delimited (RFC 9112 §6.3).
pub fn answer_framing(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Framing, Malformed> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Done);
    }
    if let Some(last) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let chunked = last
            .as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(item.trim_ascii()).ok_or(Malformed("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Malformed("conflicting content-length"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Done,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Whether the backend keeps the connection open after this answer.
pub fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let mut close = false;
    let mut keep = false;
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    !close && (version == Version::HTTP_11 || keep)
}

/// One step of the chunked decoder.
pub enum Step {
    /// A new state, nothing to yield.
    Next(Framing),
    /// Data to yield, then this state.
    Data(Bytes, Framing),
    /// The trailer section, after which the body has ended.
    Trailers(HeaderMap),
    /// More bytes are needed.
    More,
}

/// Advances the chunked decoder with what is buffered.
pub fn chunk_step(buf: &mut BytesMut, state: Chunk) -> Result<Step, Malformed> {
    match state {
        Chunk::Size => {
            let Some(end) = find_crlf(buf) else {
                return if buf.len() > MAX_CHUNK_LINE {
                    Err(Malformed("chunk size line too long"))
                } else {
                    Ok(Step::More)
                };
            };
            let size = parse_chunk_size(&buf[..end])?;
            buf.advance(end + 2);
            Ok(Step::Next(Framing::Chunked(if size == 0 {
                Chunk::Trailers
            } else {
                Chunk::Data(size)
            })))
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::More);
            }
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let data = buf.split_to(n).freeze();
            let left = left - n as u64;
            let next = if left == 0 {
                Chunk::DataEnd
            } else {
                Chunk::Data(left)
            };
            Ok(Step::Data(data, Framing::Chunked(next)))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(Step::More);
            }
            if &buf[..2] != b"\r\n" {
                return Err(Malformed("chunk not followed by CRLF"));
            }
            buf.advance(2);
            Ok(Step::Next(Framing::Chunked(Chunk::Size)))
        }
        Chunk::Trailers => {
            if buf.starts_with(b"\r\n") {
                buf.advance(2);
                return Ok(Step::Next(Framing::Done));
            }
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return if buf.len() > MAX_HEAD {
                    Err(Malformed("trailers too large"))
                } else {
                    Ok(Step::More)
                };
            };
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let trailers = match httparse::parse_headers(&buf[..end + 4], &mut slots) {
                Ok(httparse::Status::Complete((_, fields))) => {
                    let mut map = HeaderMap::with_capacity(fields.len());
                    for field in fields {
                        let name = HeaderName::from_bytes(field.name.as_bytes())
                            .map_err(|_| Malformed("invalid trailer name"))?;
                        let value = HeaderValue::from_bytes(field.value)
                            .map_err(|_| Malformed("invalid trailer value"))?;
                        map.append(name, value);
                    }
                    map
                }
                _ => return Err(Malformed("invalid trailers")),
            };
            buf.advance(end + 4);
            Ok(Step::Trailers(trailers))
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// The size of a chunk-size line (`1a;name=value`): hex digits, then
/// optional extensions, which are ignored.
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, Malformed> {
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, rest) = line.split_at(digits_end);
    let rest = rest.trim_ascii_start();
    if digits.is_empty() || digits.len() > 15 || !(rest.is_empty() || rest[0] == b';') {
        return Err(Malformed("invalid chunk size"));
    }
    Ok(digits.iter().fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16).unwrap_or(0);
        (n << 4) | u64::from(v)
    }))
}
