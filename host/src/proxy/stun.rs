//! TURN on the website's own name: after the edge terminates TLS into a
//! route set that has a `stun_backend`, the first plaintext bytes decide
//! what the connection is. A STUN message (RFC 8489 §5: top two bits zero,
//! the magic cookie, a length that is a multiple of 4 and whose attributes
//! fill it exactly) makes the connection a raw relay to the TURN server's
//! plain-TCP listener, optionally after a PROXY v2 header; anything else
//! is served as HTTP, so a probe gets the website.
//!
//! [`classify`] is the sans-IO test, fed as bytes arrive; [`sniff`] reads
//! the bytes within `http_header_timeout`; [`relay`] dials and copies.
//! Called by `proxy/conn.rs` after the handshake (never for ALPN `h2`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::{Shared, proxy_protocol, relay as backend_relay};
use crate::config::Backend;
use crate::error::ConnError;
use crate::io::{Relayed, relay as copy};

/// The STUN magic cookie (RFC 8489 §5), bytes 4–7 of every message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// A STUN message header's size.
const HEADER_LEN: usize = 20;
/// Largest first-message body accepted as STUN. A TURN Allocate with long
/// credentials is a few hundred bytes; anything larger is not a TURN
/// client's first message and is served as HTTP.
pub const MAX_FIRST_BODY: usize = 2048;
/// Bytes read at a time while deciding: one HTTP request head usually
/// arrives whole in one read.
const SNIFF_READ: usize = 4096;

/// What the bytes read so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// A whole STUN message.
    Stun,
    /// Not STUN: HTTP (or garbage, which HTTP answers as a website would).
    Http,
    /// Still possibly STUN: read more.
    NeedMore,
}

/// Classifies the first bytes of a terminated connection. Decides as
/// early as the bytes allow: an HTTP method's first letter says `Http` at
/// once; a STUN message is `Stun` only once all of it has arrived and its
/// attributes' lengths add up.
pub fn classify(bytes: &[u8]) -> Sniff {
    let Some(&first) = bytes.first() else {
        return Sniff::NeedMore;
    };
    if first & 0xC0 != 0 {
        return Sniff::Http;
    }
    if bytes.len() < 4 {
        return Sniff::NeedMore;
    }
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if length % 4 != 0 || length > MAX_FIRST_BODY {
        return Sniff::Http;
    }
    let cookie_seen = bytes.len().min(8) - 4;
    if bytes[4..4 + cookie_seen] != MAGIC_COOKIE[..cookie_seen] {
        return Sniff::Http;
    }
    if bytes.len() < HEADER_LEN + length {
        return Sniff::NeedMore;
    }
    if attributes_fill(&bytes[HEADER_LEN..HEADER_LEN + length]) {
        Sniff::Stun
    } else {
        Sniff::Http
    }
}

/// Whether `body` is a sequence of attributes (type, length, value padded
/// to 4 bytes) ending exactly at its end.
fn attributes_fill(mut body: &[u8]) -> bool {
    while !body.is_empty() {
        if body.len() < 4 {
            return false;
        }
        let length = usize::from(u16::from_be_bytes([body[2], body[3]]));
        let padded = length.div_ceil(4) * 4;
        match body.get(4 + padded..) {
            Some(rest) => body = rest,
            None => return false,
        }
    }
    true
}

/// What [`sniff`] found.
#[derive(Debug)]
pub enum Sniffed {
    /// A STUN message; the bytes read, to be sent first.
    Stun(Vec<u8>),
    /// HTTP; the bytes read, to be replayed into the HTTP server.
    Http(Vec<u8>),
    /// The client sent nothing within the time allowed (or closed first):
    /// closed as the HTTP server closes a connection without a request.
    Silent,
}

/// Reads the connection's first bytes until [`classify`] decides, within
/// `timeout` for all of them. End of stream or a read error hands what
/// was read to HTTP, which answers it as it would have.
pub async fn sniff<S>(stream: &mut S, timeout: Duration) -> Sniffed
where
    S: AsyncRead + Unpin,
{
    let deadline = Instant::now() + timeout;
    let mut read = Vec::new();
    loop {
        let start = read.len();
        read.resize(start + SNIFF_READ, 0);
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut read[start..])).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => {
                read.truncate(start);
                // Bytes that may still be STUN are no request: HTTP
                // answers them at once, as a website would have.
                return if read.is_empty() {
                    Sniffed::Silent
                } else {
                    Sniffed::Http(read)
                };
            }
        };
        read.truncate(start + n);
        if n == 0 {
            return if read.is_empty() {
                Sniffed::Silent
            } else {
                Sniffed::Http(read)
            };
        }
        match classify(&read) {
            Sniff::Stun => return Sniffed::Stun(read),
            Sniff::Http => return Sniffed::Http(read),
            Sniff::NeedMore => {}
        }
    }
}

/// Relays a STUN connection to `backend` (the route set's `stun_backend`):
/// the PROXY v2 header when `proxy` is set (the client and local
/// addresses), then `first` (the bytes [`sniff`] read), then both ways
/// until the connection ends. `up` counts `first`.
pub async fn relay<S>(
    shared: &Shared,
    client: S,
    first: Vec<u8>,
    backend: &Backend,
    proxy: Option<(SocketAddr, SocketAddr)>,
) -> Result<Relayed, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let sent = first.len() as u64;
    let mut head = proxy.map_or_else(Vec::new, |(source, local)| {
        proxy_protocol::header_v2(source, local)
    });
    head.extend_from_slice(&first);
    drop(first);
    let (mut upstream, _lease, early) = backend_relay::dial(shared, &backend.name, &head).await?;
    upstream
        .write_all(&head[early..])
        .await
        .map_err(ConnError::BackendIo)?;
    drop(head);
    let mut relayed = copy(client, upstream, shared.config.limits.idle_timeout).await;
    relayed.up += sent;
    backend_relay::finish(shared, &backend.name, &relayed);
    Ok(relayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN message of `kind` with `attributes` (type, value), padded.
    fn message(kind: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, value) in attributes {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&MAGIC_COOKIE);
        out.extend_from_slice(&[7; 12]);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn a_turn_allocate_is_stun_only_once_whole() {
        let allocate = message(0x0003, &[(0x0019, &[17, 0, 0, 0]), (0x8022, b"client")]);
        for cut in 0..allocate.len() {
            assert_eq!(classify(&allocate[..cut]), Sniff::NeedMore, "cut at {cut}");
        }
        assert_eq!(classify(&allocate), Sniff::Stun);
        // A pipelined second message does not change the answer.
        let mut two = allocate.clone();
        two.extend_from_slice(&message(0x0001, &[]));
        assert_eq!(classify(&two), Sniff::Stun);
        // A Binding request without attributes is STUN too.
        assert_eq!(classify(&message(0x0001, &[])), Sniff::Stun);
    }

    #[test]
    fn http_is_known_from_the_first_byte() {
        for method in [&b"G"[..], b"POST / HTTP/1.1\r\n", b"PRI * HTTP/2.0"] {
            assert_eq!(classify(method), Sniff::Http, "{method:?}");
        }
        // A TLS record inside TLS starts with zero top bits, but its fifth
        // byte is no cookie.
        let record = b"\x16\x03\x01\x00\xfc\x01\x00\x00\xf8";
        assert_eq!(classify(&record[..4]), Sniff::NeedMore);
        assert_eq!(classify(record), Sniff::Http);
        assert_eq!(classify(b""), Sniff::NeedMore);
    }

    #[test]
    fn near_misses_are_http() {
        let good = message(0x0003, &[(0x0019, &[17, 0, 0, 0])]);
        // Top bits set: ChannelData (0x4000–0x7FFF) is never a first message.
        let mut channel_data = good.clone();
        channel_data[0] = 0x40;
        assert_eq!(classify(&channel_data), Sniff::Http);
        // A wrong cookie is seen as soon as its first byte differs.
        let mut cookie = good.clone();
        cookie[5] ^= 1;
        assert_eq!(classify(&cookie[..6]), Sniff::Http);
        // A length not a multiple of 4.
        let mut odd = good.clone();
        odd[3] = 5;
        assert_eq!(classify(&odd[..4]), Sniff::Http);
        // An absurd length, as a probe would send.
        let mut huge = good.clone();
        huge[2] = 0xFF;
        huge[3] = 0xFC;
        assert_eq!(classify(&huge[..4]), Sniff::Http);
        // Attributes that do not fill the body exactly.
        let mut overrun = good.clone();
        overrun[HEADER_LEN + 3] = 8;
        assert_eq!(classify(&overrun), Sniff::Http);
        // One attribute header claiming more value than the body holds.
        let mut ragged = message(0x0003, &[]);
        ragged[3] = 4;
        ragged.extend_from_slice(&[0x00, 0x19, 0x00, 0x04]);
        assert_eq!(classify(&ragged), Sniff::Http);
    }

    #[test]
    fn the_largest_first_message_is_bounded() {
        let value = vec![0u8; MAX_FIRST_BODY - 4];
        let largest = message(0x0003, &[(0x8022, &value)]);
        assert_eq!(classify(&largest), Sniff::Stun);
        let value = vec![0u8; MAX_FIRST_BODY];
        let larger = message(0x0003, &[(0x8022, &value)]);
        assert_eq!(classify(&larger[..4]), Sniff::Http);
    }

    #[tokio::test]
    async fn sniff_reads_until_it_knows() {
        let allocate = message(0x0003, &[(0x0019, &[17, 0, 0, 0])]);
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let writer = {
            let allocate = allocate.clone();
            tokio::spawn(async move {
                for byte in allocate {
                    theirs.write_all(&[byte]).await.unwrap();
                    tokio::task::yield_now().await;
                }
                theirs
            })
        };
        match sniff(&mut ours, Duration::from_secs(5)).await {
            Sniffed::Stun(bytes) => assert_eq!(bytes, allocate),
            other => panic!("{other:?}"),
        }
        drop(writer.await.unwrap());

        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        theirs.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        match sniff(&mut ours, Duration::from_secs(5)).await {
            Sniffed::Http(bytes) => assert_eq!(bytes, b"GET / HTTP/1.1\r\n"),
            other => panic!("{other:?}"),
        }

        let (mut ours, theirs) = tokio::io::duplex(1024);
        drop(theirs);
        assert!(matches!(
            sniff(&mut ours, Duration::from_secs(5)).await,
            Sniffed::Silent
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_closed_at_the_timeout_and_a_stalled_header_goes_to_http() {
        let (mut ours, _theirs) = tokio::io::duplex(1024);
        let start = Instant::now();
        assert!(matches!(
            sniff(&mut ours, Duration::from_secs(30)).await,
            Sniffed::Silent
        ));
        assert_eq!(start.elapsed(), Duration::from_secs(30));

        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let header = &message(0x0003, &[(0x0019, &[17, 0, 0, 0])])[..HEADER_LEN];
        theirs.write_all(header).await.unwrap();
        match sniff(&mut ours, Duration::from_secs(30)).await {
            Sniffed::Http(bytes) => assert_eq!(bytes, header),
            other => panic!("{other:?}"),
        }
    }
}
