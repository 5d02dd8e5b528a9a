//! `HelloError`: every way reading a ClientHello can end without one, each with a
//! stable metric label ([`HelloError::kind`]). The record reader that produces most of
//! them lives in `reader.rs`; message-level errors come from `parse.rs`.

use std::fmt;

/// Why no ClientHello could be read; every variant means the connection must be closed.
///
/// `Display` gives a lowercase message for logs; [`HelloError::kind`] gives a short,
/// stable label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// The first bytes are not a TLS record at all; the hint says what they look like
    /// when that is cheap to tell from the first five bytes.
    #[error("not tls: looks like {0}")]
    NotTls(NotTlsHint),
    /// A TLS record arrived whose content type is not handshake (22), where a record of
    /// the ClientHello was expected: e.g. an alert or application data sent first.
    #[error("tls record of content type {content_type} is not a handshake record")]
    NotHandshake {
        /// The record's content type byte (21 alert, 23 application data, ...).
        content_type: u8,
    },
    /// The record layer announces SSL 3.0 (0x0300), which is not spoken here.
    #[error("record version {0:#06x} (ssl 3.0) is not supported")]
    ObsoleteVersion(u16),
    /// The first handshake message is not a ClientHello (type 1).
    #[error("handshake message of type {msg_type} is not a client hello")]
    NotClientHello {
        /// The handshake message type byte that arrived instead.
        msg_type: u8,
    },
    /// The bytes are TLS but break the record or ClientHello syntax; the string names
    /// the field (e.g. `"cipher_suites"`, `"record length"`).
    #[error("malformed client hello: bad {0}")]
    Malformed(&'static str),
    /// The ClientHello needs (or a record or handshake header announces) more than the
    /// configured limit of buffered bytes.
    #[error("client hello exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The `max_bytes` the reader was created with.
        limit: usize,
    },
    /// The stream ended before a complete ClientHello arrived. The reader never returns
    /// this itself (it cannot see end of stream): the caller gets it from
    /// [`Reader::finish`](crate::Reader::finish) when its socket reports EOF. `received`
    /// is 0 when the peer closed without sending anything (a health check, a port scan).
    #[error("stream ended after {received} bytes, before a complete client hello")]
    Truncated {
        /// How many bytes had arrived before end of stream.
        received: usize,
    },
}

/// What non-TLS bytes look like, for [`HelloError::NotTls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotTlsHint {
    /// Starts with an HTTP/1 method or the HTTP/2 preface (`GET `, `POST`, `PRI `, ...):
    /// plain HTTP sent to the TLS port.
    Http,
    /// Starts with `SSH-`: an SSH client's version banner.
    Ssh,
    /// An SSL 2.0 record header carrying a CLIENT-HELLO (high bit set, message type 1).
    Sslv2,
    /// Anything else.
    Unknown,
}

// === impl HelloError ===

impl HelloError {
    /// A short, stable label for metrics, one per variant (`"empty"` for a
    /// [`Truncated`](HelloError::Truncated) with no bytes at all).
    pub fn kind(&self) -> &'static str {
        match self {
            HelloError::NotTls(NotTlsHint::Http) => "not_tls_http",
            HelloError::NotTls(NotTlsHint::Ssh) => "not_tls_ssh",
            HelloError::NotTls(NotTlsHint::Sslv2) => "not_tls_sslv2",
            HelloError::NotTls(NotTlsHint::Unknown) => "not_tls",
            HelloError::NotHandshake { .. } => "not_handshake",
            HelloError::ObsoleteVersion(_) => "obsolete_version",
            HelloError::NotClientHello { .. } => "not_client_hello",
            HelloError::Malformed(_) => "malformed",
            HelloError::TooLarge { .. } => "too_large",
            HelloError::Truncated { received: 0 } => "empty",
            HelloError::Truncated { .. } => "truncated",
        }
    }
}

// === impl NotTlsHint ===

/// HTTP/1 request methods (first four bytes) and the HTTP/2 connection preface: what a
/// plain-HTTP client sends first.
const HTTP_PREFIXES: [&[u8; 4]; 10] = [
    b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC", b"PRI ",
];

/// What every SSH client sends first (RFC 4253 section 4.2).
const SSH_PREFIX: &[u8; 4] = b"SSH-";

/// The SSL 2.0 CLIENT-HELLO message type, the third byte of a 2-byte SSLv2 header.
const SSLV2_CLIENT_HELLO: u8 = 1;

impl NotTlsHint {
    /// Guesses what `first` (the first bytes of the stream, at least four for a useful
    /// answer) looks like.
    pub(crate) fn classify(first: &[u8]) -> NotTlsHint {
        if let Some(head) = first.first_chunk::<4>() {
            if HTTP_PREFIXES.contains(&head) {
                return NotTlsHint::Http;
            }
            if head == SSH_PREFIX {
                return NotTlsHint::Ssh;
            }
        }
        match first {
            [len_hi, _, SSLV2_CLIENT_HELLO, ..] if len_hi & 0x80 != 0 => NotTlsHint::Sslv2,
            _ => NotTlsHint::Unknown,
        }
    }
}

impl fmt::Display for NotTlsHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotTlsHint::Http => "an http request",
            NotTlsHint::Ssh => "an ssh banner",
            NotTlsHint::Sslv2 => "an sslv2 client hello",
            NotTlsHint::Unknown => "nothing known",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_non_tls_openers() {
        assert_eq!(
            NotTlsHint::classify(b"GET / HTTP/1.1\r\n"),
            NotTlsHint::Http
        );
        assert_eq!(
            NotTlsHint::classify(b"PRI * HTTP/2.0\r\n"),
            NotTlsHint::Http
        );
        assert_eq!(
            NotTlsHint::classify(b"SSH-2.0-OpenSSH_9.2"),
            NotTlsHint::Ssh
        );
        assert_eq!(
            NotTlsHint::classify(&[0x80, 0x2e, 0x01, 0x00, 0x02]),
            NotTlsHint::Sslv2
        );
        assert_eq!(NotTlsHint::classify(b"hello"), NotTlsHint::Unknown);
        assert_eq!(NotTlsHint::classify(b""), NotTlsHint::Unknown);
    }

    #[test]
    fn messages_are_lowercase_and_kinds_distinct() {
        let errors = [
            HelloError::NotTls(NotTlsHint::Http),
            HelloError::NotTls(NotTlsHint::Unknown),
            HelloError::NotHandshake { content_type: 21 },
            HelloError::ObsoleteVersion(0x0300),
            HelloError::NotClientHello { msg_type: 2 },
            HelloError::Malformed("cipher_suites"),
            HelloError::TooLarge { limit: 16 },
            HelloError::Truncated { received: 3 },
            HelloError::Truncated { received: 0 },
        ];
        let mut kinds: Vec<_> = errors.iter().map(HelloError::kind).collect();
        for e in &errors {
            let msg = e.to_string();
            assert_eq!(msg, msg.to_lowercase(), "{msg}");
        }
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), errors.len());
        assert_eq!(
            HelloError::NotTls(NotTlsHint::Ssh).to_string(),
            "not tls: looks like an ssh banner"
        );
    }
}
