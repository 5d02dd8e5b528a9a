//! `accept_proxy`: connections from a load balancer (a peer in
//! `accept_proxy.from`) begin with a PROXY protocol v1 or v2 header naming
//! the client; everything after this step (policy, logs, metrics,
//! forwarding headers, the PROXY header sent to backends) sees the client's
//! address instead of the balancer's. Connections from anyone else are
//! served as they come, so nobody outside `from` can claim an address: their
//! header is just bytes that are not a ClientHello or HTTP request.
//!
//! The header is read without taking a byte that follows it (peeked, then
//! taken exactly once complete), from however many segments it arrives in,
//! within `accept_proxy.timeout`. The wire format is
//! `proxy/proxy_protocol.rs`; the listener calls [`addresses`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::Shared;
use super::proxy_protocol::{self, Malformed, Received, V1_MAX};
use crate::config::AcceptProxy;
use crate::metrics::Outcome;

/// Why no header could be used.
#[derive(Debug, thiserror::Error)]
enum HeaderError {
    #[error("{0}")]
    Malformed(#[from] Malformed),
    #[error("no complete header within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl HeaderError {
    fn kind(&self) -> &'static str {
        match self {
            HeaderError::Malformed(m) => m.kind(),
            HeaderError::Timeout(_) => "timeout",
            HeaderError::Io(_) => "io",
        }
    }
}

/// The client's address and the address it connected to, for a
/// connection from `peer` accepted on `local` that `settings` says must
/// begin with a header. `None`: the connection is to be closed (counted
/// and logged here).
pub async fn addresses(
    shared: &Shared,
    settings: &AcceptProxy,
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<(SocketAddr, SocketAddr)> {
    let read = read_header(stream, settings.max_v2_bytes);
    let result = match tokio::time::timeout(settings.timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(HeaderError::Timeout(settings.timeout)),
    };
    let metrics = &shared.metrics;
    match result {
        Ok((
            version,
            Received::Proxied {
                source,
                destination,
            },
        )) => {
            metrics.proxy_header(version);
            debug!(peer = %peer, source = %source, version, "PROXY header");
            Some((source, destination))
        }
        Ok((version, Received::Local)) => {
            metrics.proxy_header(version);
            Some((peer, local))
        }
        Err(error) => {
            metrics.proxy_header_error(error.kind());
            metrics.closed(Outcome::Error, 0, 0);
            warn!(peer = %peer, reason = error.kind(), error = %error, "PROXY header refused");
            None
        }
    }
}

/// Reads one header: `("v1" | "v2", what it says)`. Peeks at what has
/// arrived and takes exactly the header once it is complete: one `recv`
/// with `MSG_PEEK` and one `read` when it came in one segment. While it is
/// incomplete, every byte seen is the header's, so those are taken and the
/// wait goes on for the rest.
async fn read_header(
    stream: &mut TcpStream,
    max_v2: usize,
) -> Result<(&'static str, Received), HeaderError> {
    let limit = max_v2.max(V1_MAX);
    let mut taken: Vec<u8> = Vec::new();
    let mut peeked = vec![0u8; limit];
    loop {
        let n = stream.peek(&mut peeked[..limit - taken.len()]).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let seen = [taken.as_slice(), &peeked[..n]].concat();
        match proxy_protocol::parse_prefix(&seen, max_v2)? {
            Some((len, received)) => {
                let mut rest = vec![0u8; len - taken.len()];
                stream.read_exact(&mut rest).await?;
                let version = if proxy_protocol::is_v1(&seen) {
                    "v1"
                } else {
                    "v2"
                };
                return Ok((version, received));
            }
            None => {
                let start = taken.len();
                taken.resize(start + n, 0);
                stream.read_exact(&mut taken[start..]).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connected pair: what the test writes arrives at the edge's side.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.set_nodelay(true).unwrap();
        (client, server)
    }

    async fn read_after(writes: &[&[u8]]) -> (Result<(&'static str, Received), String>, Vec<u8>) {
        let (mut client, mut server) = pair().await;
        for chunk in writes {
            client.write_all(chunk).await.unwrap();
            client.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        client.shutdown().await.unwrap();
        let result = read_header(&mut server, 536)
            .await
            .map_err(|e| e.to_string());
        let mut after = Vec::new();
        server.read_to_end(&mut after).await.unwrap();
        (result, after)
    }

    #[tokio::test]
    async fn headers_in_any_segments_leave_the_following_bytes() {
        let v2 = proxy_protocol::header_v2(
            "127.0.0.3:40000".parse().unwrap(),
            "127.0.0.1:443".parse().unwrap(),
        );
        let v1 = b"PROXY TCP4 127.0.0.3 127.0.0.1 40000 443\r\n".to_vec();
        for header in [v2, v1] {
            let whole = [header.as_slice(), b"\x16\x03\x01hello"].concat();
            let bytes: Vec<&[u8]> = whole.chunks(1).collect();
            for writes in [vec![whole.as_slice()], bytes] {
                let (result, after) = read_after(&writes).await;
                let (_, received) = result.unwrap();
                assert_eq!(
                    received,
                    Received::Proxied {
                        source: "127.0.0.3:40000".parse().unwrap(),
                        destination: "127.0.0.1:443".parse().unwrap()
                    }
                );
                assert_eq!(
                    after, b"\x16\x03\x01hello",
                    "nothing after the header is taken"
                );
            }
        }
    }

    #[tokio::test]
    async fn short_garbage_and_endless_lines_are_refused() {
        let (result, _) =
            read_after(&[b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh"]).await;
        assert_eq!(result.unwrap_err(), "no PROXY protocol header");
        let (result, _) = read_after(&[b"PROXY TCP4"]).await;
        assert!(result.is_err());
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        let (result, _) = read_after(&[&long]).await;
        assert_eq!(result.unwrap_err(), "header too long");
        let (result, _) = read_after(&[b"PROXY UNKNOWN\n\x16\x03\x01"]).await;
        assert!(result.is_err());
    }
}
