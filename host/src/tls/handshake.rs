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

/// The TLS handshake with `client`, fed `hello` (already read) first,
/// complete within `timeout`.
pub async fn accept<C>(
    client: C,
    hello: Vec<u8>,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<TlsStream<Replay<C>>, ConnError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let accept = TlsAcceptor::from(config).accept(Replay::new(hello, client));
    tokio::time::timeout(timeout, accept)
        .await
        .map_err(|_| ConnError::HandshakeTimeout(timeout))?
        .map_err(ConnError::Handshake)
}
