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
/// The hello's memory is freed before the relay starts.
pub async fn run<C>(
    client: C,
    mut backend: TcpStream,
    hello: Vec<u8>,
    header: Option<Vec<u8>>,
    idle: Duration,
) -> Result<Relayed, ConnError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let replayed = hello.len() as u64;
    let first = match header {
        Some(mut header) => {
            header.extend_from_slice(&hello);
            header
        }
        None => hello,
    };
    backend
        .write_all(&first)
        .await
        .map_err(ConnError::BackendIo)?;
    drop(first);
    let mut relayed = copy::relay(client, backend, idle).await;
    relayed.up += replayed;
    Ok(relayed)
}
