//! Passthrough: the backend terminates TLS. The edge sends the optional
//! PROXY header and the ClientHello bytes exactly as read, then relays both
//! ways (`proxy/copy.rs`). The backend was dialled by `proxy/conn.rs`.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::copy::{self, Relayed};
use crate::error::ConnError;

/// Replays `hello` (after `header`, in one write) to `backend`, then relays
/// until both sides close or `idle` passes. `up` includes the replayed bytes.
pub async fn run<C>(
    client: C,
    mut backend: TcpStream,
    hello: &[u8],
    header: Option<Vec<u8>>,
    idle: Duration,
) -> Result<Relayed, ConnError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut first = header.unwrap_or_default();
    first.extend_from_slice(hello);
    backend
        .write_all(&first)
        .await
        .map_err(ConnError::BackendIo)?;
    let mut relayed = copy::relay(client, backend, idle).await;
    relayed.up += hello.len() as u64;
    Ok(relayed)
}
