//! [`ConnError`]: every way handling one connection can fail before its
//! bytes are relayed, each knowing its [`Side`], and [`ConnError::alert`],
//! the one place an error becomes what the client sees (a TLS alert or a
//! silent close).
//!
//! Produced and reported by `proxy/conn.rs`; relay errors after a route is
//! established are not errors of the connection (`io/copy.rs`). The HTTP
//! mode's per-request failures are `http/error.rs`, with the same sides.

use std::io;
use std::time::Duration;

use hearth_edge_hello::HelloError;
use hearth_edge_policy::{Alert, PolicyError};

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: bad, slow or truncated ClientHello, failed handshake.
    Client,
    /// The backend: unreachable, refused, slow to accept.
    Backend,
    /// The policy: trapped, too slow, too big, chose an unknown backend.
    Policy,
    /// The edge itself: a bug or missing setup.
    Internal,
    /// A handler component: trapped, too slow, out of memory, no answer.
    Handler,
}

impl Side {
    /// Every side, in label order.
    pub const ALL: [Side; 5] = [
        Side::Client,
        Side::Backend,
        Side::Policy,
        Side::Internal,
        Side::Handler,
    ];

    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
            Side::Policy => "policy",
            Side::Internal => "internal",
            Side::Handler => "handler",
        }
    }
}

/// Handling a connection failed before a route was established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The bytes are not a usable ClientHello.
    #[error("{0}")]
    Hello(#[from] HelloError),
    /// The ClientHello did not arrive completely in time.
    #[error("client hello not complete within {0:?}")]
    HelloTimeout(Duration),
    /// Reading from the client failed while waiting for the hello.
    #[error("reading the client hello: {0}")]
    HelloIo(io::Error),
    /// No decision could be had from the policy (and `on_error` is `reject`).
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// Connecting to the backend failed.
    #[error("connecting to {addr}: {source}")]
    Dial {
        /// The backend's address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// Connecting to the backend took longer than `backend_dial_timeout`.
    #[error("connecting to {addr}: timed out after {timeout:?}")]
    DialTimeout {
        /// The backend's address.
        addr: String,
        /// The limit.
        timeout: Duration,
    },
    /// Writing the PROXY header or the replayed hello to the backend failed.
    #[error("writing to the backend: {0}")]
    BackendIo(io::Error),
    /// The TLS handshake with the client failed.
    #[error("{0}")]
    Handshake(io::Error),
    /// The TLS handshake did not complete in time.
    #[error("handshake not complete within {0:?}")]
    HandshakeTimeout(Duration),
    /// The edge has no TLS setup for the chosen backend (a bug).
    #[error("no tls configuration for backend {0}")]
    NoTlsConfig(String),
    /// The edge has no pool for the chosen backend (a bug: every
    /// configured backend gets one).
    #[error("no pool for backend {0}")]
    NoPool(String),
}

impl ConnError {
    /// Who caused it.
    pub fn side(&self) -> Side {
        match self {
            ConnError::Hello(_)
            | ConnError::HelloTimeout(_)
            | ConnError::HelloIo(_)
            | ConnError::Handshake(_)
            | ConnError::HandshakeTimeout(_) => Side::Client,
            ConnError::Dial { .. } | ConnError::DialTimeout { .. } | ConnError::BackendIo(_) => {
                Side::Backend
            }
            ConnError::Policy(_) => Side::Policy,
            ConnError::NoTlsConfig(_) | ConnError::NoPool(_) => Side::Internal,
        }
    }

    /// What the client gets before the connection closes. Client-side
    /// failures and unreachable backends close at once (the client sent no
    /// usable hello, or the route needs no explanation); policy and internal
    /// failures send `internal_error` when the client still awaits a
    /// ServerHello. After a handshake has begun rustls has answered already.
    pub fn alert(&self) -> Alert {
        match self.side() {
            Side::Client | Side::Backend => Alert::Close,
            Side::Policy | Side::Internal | Side::Handler => Alert::InternalError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_side_maps_to_a_response() {
        let cases = [
            (
                ConnError::HelloTimeout(Duration::from_secs(5)),
                Side::Client,
                Alert::Close,
            ),
            (
                ConnError::Hello(HelloError::Truncated { received: 3 }),
                Side::Client,
                Alert::Close,
            ),
            (
                ConnError::Policy(PolicyError::Timeout),
                Side::Policy,
                Alert::InternalError,
            ),
            (
                ConnError::DialTimeout {
                    addr: "127.0.0.1:1".into(),
                    timeout: Duration::from_secs(5),
                },
                Side::Backend,
                Alert::Close,
            ),
            (
                ConnError::NoTlsConfig("x".into()),
                Side::Internal,
                Alert::InternalError,
            ),
            (
                ConnError::Handshake(io::Error::other("bad")),
                Side::Client,
                Alert::Close,
            ),
        ];
        for (error, side, alert) in cases {
            assert_eq!(error.side(), side, "{error}");
            assert_eq!(error.alert(), alert, "{error}");
        }
    }
}
