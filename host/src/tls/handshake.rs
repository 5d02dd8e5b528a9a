//! The one TLS handshake with a client: rustls is fed the ClientHello
//! bytes the edge already read ([`Replay`] serves them before the
//! socket's), picks the certificate by SNI (`tls/store.rs`) and the ALPN of
//! `config`, within a deadline. Used for terminate relays
//! (`proxy/relay.rs`), the HTTP mode and ACME TLS-ALPN-01 answers
//! (`proxy/conn.rs`).

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::ConnError;
use crate::io::Replay;
use crate::metrics::Metrics;

/// What a completed handshake negotiated, for the connection's log line
/// and `tls_handshakes_total{group,kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The key exchange group: `X25519MLKEM768` (post-quantum hybrid),
    /// `X25519`, `secp256r1`, `secp384r1`.
    pub group: &'static str,
    /// `full`, `hrr` (after a HelloRetryRequest: the client's key share was
    /// for another group) or `resumed`.
    pub kind: &'static str,
}

/// The TLS handshake with `client`, fed `hello` (already read) first,
/// complete within `timeout`; counted by group and kind.
pub async fn accept<C>(
    client: C,
    hello: Vec<u8>,
    config: Arc<ServerConfig>,
    timeout: Duration,
    metrics: &Metrics,
) -> Result<(TlsStream<Replay<C>>, Negotiated), ConnError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let accept = TlsAcceptor::from(config).accept(Replay::new(hello, client));
    let stream = tokio::time::timeout(timeout, accept)
        .await
        .map_err(|_| ConnError::HandshakeTimeout(timeout))?
        .map_err(ConnError::Handshake)?;
    let negotiated = negotiated(stream.get_ref().1);
    metrics.tls_handshake(negotiated.group, negotiated.kind);
    Ok((stream, negotiated))
}

fn negotiated(conn: &rustls::ServerConnection) -> Negotiated {
    use rustls::{HandshakeKind, NamedGroup};
    let group = match conn.negotiated_key_exchange_group().map(|g| g.name()) {
        Some(NamedGroup::X25519MLKEM768) => "X25519MLKEM768",
        Some(NamedGroup::X25519) => "X25519",
        Some(NamedGroup::secp256r1) => "secp256r1",
        Some(NamedGroup::secp384r1) => "secp384r1",
        Some(_) => "other",
        None => "-",
    };
    let kind = match conn.handshake_kind() {
        Some(HandshakeKind::FullWithHelloRetryRequest) => "hrr",
        Some(HandshakeKind::Resumed) => "resumed",
        _ => "full",
    };
    Negotiated { group, kind }
}
