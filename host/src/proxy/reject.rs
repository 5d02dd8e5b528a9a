//! Refusing a connection: a fatal TLS alert record (or nothing, for
//! `Alert::Close`), then close. Used for policy rejections and, through
//! `ConnError::alert` (`error.rs`), for failures before a route exists.
//! Called from `proxy/conn.rs`.

use std::time::Duration;

use hearth_edge_policy::Alert;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// TLS record content type `alert` (RFC 8446 §5.1).
const CONTENT_TYPE_ALERT: u8 = 21;
/// The record version sent before a version is negotiated: TLS 1.2, as
/// RFC 8446 §5.1 asks of every record but the very first ClientHello.
const LEGACY_RECORD_VERSION: [u8; 2] = [0x03, 0x03];
/// Alert level `fatal` (RFC 8446 §6).
const LEVEL_FATAL: u8 = 2;
/// Writing 7 bytes to a fresh socket does not block; this only guards
/// against a peer that stopped reading with a full window.
const ALERT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The alert's description code (RFC 8446 §6), `None` for a silent close.
pub fn alert_code(alert: Alert) -> Option<u8> {
    match alert {
        Alert::UnrecognizedName => Some(112),
        Alert::AccessDenied => Some(49),
        Alert::HandshakeFailure => Some(40),
        Alert::ProtocolVersion => Some(70),
        Alert::InternalError => Some(80),
        Alert::Close => None,
    }
}

/// The 7-byte alert record for `code`.
pub fn alert_record(code: u8) -> [u8; 7] {
    let [v0, v1] = LEGACY_RECORD_VERSION;
    [CONTENT_TYPE_ALERT, v0, v1, 0, 2, LEVEL_FATAL, code]
}

/// Sends `alert` (if any) and closes the sending half. Errors are ignored:
/// the client is being turned away either way.
pub async fn send<S: AsyncWrite + Unpin>(stream: &mut S, alert: Alert) {
    let _ = tokio::time::timeout(ALERT_WRITE_TIMEOUT, async {
        if let Some(code) = alert_code(alert) {
            stream.write_all(&alert_record(code)).await?;
        }
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn records_follow_the_tls_layout() {
        assert_eq!(
            alert_record(112),
            [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]
        );
        assert_eq!(alert_code(Alert::AccessDenied), Some(49));
        assert_eq!(alert_code(Alert::Close), None);
    }

    #[tokio::test]
    async fn close_sends_nothing_and_alerts_send_one_record() {
        let (mut ours, mut theirs) = tokio::io::duplex(64);
        send(&mut ours, Alert::Close).await;
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());

        let (mut ours, mut theirs) = tokio::io::duplex(64);
        send(&mut ours, Alert::ProtocolVersion).await;
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, alert_record(70));
    }
}
