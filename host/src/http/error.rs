//! [`HttpError`]: every way one request of the HTTP mode can fail, and
//! [`HttpError::response`], the one place such a failure becomes what the
//! client sees (a short plain-text answer with the matching status).
//! Produced by `http/handler.rs` and `http/client.rs`.

use http::{Response, StatusCode, header};

use hearth_edge_policy::handler::Failure as HandlerFailure;

use super::body::Body;
use crate::error::{ConnError, Side};

/// A request could not be forwarded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// No route of the set matches the host and path.
    #[error("no route for host {host:?} path {path:?}")]
    NoRoute {
        /// The request's host.
        host: String,
        /// The request's path.
        path: String,
    },
    /// The request is malformed for proxying (no host, bad URI).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No member of the backend could be connected to.
    #[error("backend {backend}: {error}")]
    Dial {
        /// The backend's name.
        backend: String,
        /// The last dial error.
        error: ConnError,
    },
    /// The backend failed after the request was sent, or its handshake
    /// failed.
    #[error("backend {backend}: {error}")]
    Upstream {
        /// The backend's name.
        backend: String,
        /// What failed: the connection, or the answer's framing.
        error: super::body::BoxError,
    },
    /// The policy's `on-request` failed and `policy.on_error` is `reject`.
    #[error("{0}")]
    Policy(hearth_edge_policy::PolicyError),
    /// The edge broke one of its own invariants (a route naming a route
    /// set or backend the running config lacks): a bug, not the client's
    /// fault.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// A handler gave no answer.
    #[error("handler {handler}: {failure}")]
    Handler {
        /// The handler's name.
        handler: String,
        /// What happened.
        failure: HandlerFailure,
    },
    /// The request body is longer than the handler's `max_request_body`.
    #[error("request body over {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The backend did not answer within the dial + idle limits.
    #[error("backend {backend}: no answer in time")]
    Timeout {
        /// The backend's name.
        backend: String,
    },
}

impl HttpError {
    /// Who caused it.
    pub fn side(&self) -> Side {
        match self {
            HttpError::NoRoute { .. }
            | HttpError::BadRequest(_)
            | HttpError::BodyTooLarge { .. } => Side::Client,
            HttpError::Handler { .. } => Side::Handler,
            HttpError::Dial { .. } | HttpError::Upstream { .. } | HttpError::Timeout { .. } => {
                Side::Backend
            }
            HttpError::Policy(_) => Side::Policy,
            HttpError::Internal(_) => Side::Internal,
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::NoRoute { .. } => StatusCode::NOT_FOUND,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Dial { .. } | HttpError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            HttpError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // Fail closed, and tell the client it may try again.
            HttpError::Policy(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            HttpError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Handler { failure, .. } => match failure {
                HandlerFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
                HandlerFailure::Busy => StatusCode::SERVICE_UNAVAILABLE,
                HandlerFailure::Trap(_) | HandlerFailure::Memory | HandlerFailure::NoAnswer(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        }
    }

    /// The answer: the status and its reason as plain text. Backend details
    /// stay in the log, not in the answer.
    pub fn response(&self) -> Response<Body> {
        let status = self.status();
        let text = format!(
            "{} {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        local_response(status, text)
    }
}

/// A plain-text answer made by the edge.
pub fn local_response(status: StatusCode, text: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status_and_side() {
        let no_route = HttpError::NoRoute {
            host: "a".into(),
            path: "/".into(),
        };
        assert_eq!(no_route.status(), StatusCode::NOT_FOUND);
        assert_eq!(no_route.side(), Side::Client);
        let dial = HttpError::Dial {
            backend: "api".into(),
            error: ConnError::Dial {
                addr: "127.0.0.1:1".into(),
                source: std::io::Error::other("refused"),
            },
        };
        assert_eq!(dial.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(dial.side(), Side::Backend);
        assert_eq!(dial.response().status(), StatusCode::BAD_GATEWAY);
        let timeout = HttpError::Timeout {
            backend: "api".into(),
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(HttpError::BadRequest("x").status(), StatusCode::BAD_REQUEST);
        let policy = HttpError::Policy(hearth_edge_policy::PolicyError::Timeout);
        assert_eq!(policy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(policy.side(), Side::Policy);
        let internal = HttpError::Internal("no such backend");
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(internal.side(), Side::Internal);
        let handler = |failure| HttpError::Handler {
            handler: "h".into(),
            failure,
        };
        assert_eq!(
            handler(HandlerFailure::Timeout).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            handler(HandlerFailure::Memory).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            handler(HandlerFailure::Busy).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(handler(HandlerFailure::Memory).side(), Side::Handler);
        assert_eq!(
            HttpError::BodyTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
