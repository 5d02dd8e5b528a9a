//! `on-request`: the policy's say over one request of the HTTP mode, for a
//! policy of the `http-policy` world (`wit/edge.wit`). Builds the WIT
//! request from the hyper one, asks the policy, and checks the answer
//! before anything is done with it; a failed call or an answer the edge
//! cannot carry out is handled per `policy.on_error` (`decide.rs`).
//!
//! Called from `http/handler.rs` after route matching and before
//! `forward_auth`; plain policies are never asked (`Http::new`).

use hearth_edge_policy::{HttpDecision, HttpRequest, PolicyError};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use tracing::info_span;

use super::body::Body;
use super::error::{HttpError, local_response};
use super::{ConnInfo, Http};
use crate::decide::{self, Fallback, Subject};

/// What the request handler does after asking the policy.
#[derive(Debug)]
pub enum Answer {
    /// Carry on with the route set's choice.
    FollowRoutes,
    /// Forward to this backend with these request headers set.
    Forward {
        /// A backend with an HTTP side (checked).
        backend: String,
        /// Set on the request, replacing any of the same name.
        set_headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// Send this answer; nothing is forwarded.
    Respond(Response<Body>),
}

/// Redirect statuses a policy may use.
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];
/// The range of statuses a local answer may have: no informational (1xx)
/// answers, which would leave the exchange unfinished.
const LOCAL_STATUSES: std::ops::RangeInclusive<u16> = 200..=599;
/// Headers a policy may not set: they frame the message or the connection,
/// which the edge owns (RFC 9110 §7.6.1, RFC 9112 §6).
const FRAMING_HEADERS: [HeaderName; 7] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// Asks the policy about `request`, which the route set sent to
/// `routed_to`. Errors only when the policy failed and `on_error` is
/// `reject`.
pub fn ask<B>(
    http: &Http,
    conn: &ConnInfo,
    request: &Request<B>,
    host: &str,
    routed_to: Option<&str>,
) -> Result<Answer, HttpError> {
    let Some(policy) = &http.policy else {
        return Ok(Answer::FollowRoutes);
    };
    let wit_request = wit_request(conn, request, host, routed_to);
    let subject = Subject::Request {
        source: conn.source,
        host,
        path: request.uri().path(),
    };
    match decide::ask(
        &http.metrics,
        &http.config.policy.on_error,
        info_span!("on_request", source = %conn.source),
        subject,
        || policy.on_request(&wit_request),
        |decision| decision.and_then(|d| check(http, d)),
    ) {
        Ok(answer) => Ok(answer),
        Err(Fallback::Reject(error)) => Err(HttpError::Policy(error)),
        // Failing open in the HTTP mode: as if the policy had no opinion.
        Err(Fallback::Backend(_)) => Ok(Answer::FollowRoutes),
    }
}

/// The request as the policy sees it.
fn wit_request<B>(
    conn: &ConnInfo,
    request: &Request<B>,
    host: &str,
    routed_to: Option<&str>,
) -> HttpRequest {
    HttpRequest {
        method: request.method().as_str().to_owned(),
        scheme: conn.proto.to_owned(),
        host: host.to_owned(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        source_addr: decide::source_addr(conn.source.ip()),
        source_port: conn.source.port(),
        server_name: conn.sni.clone(),
        route_set: conn.routes.clone(),
        routed_to: routed_to.map(str::to_owned),
    }
}

/// Turns the policy's answer into an [`Answer`], refusing what the edge
/// cannot carry out.
fn check(http: &Http, decision: HttpDecision) -> Result<Answer, PolicyError> {
    match decision {
        HttpDecision::FollowRoutes => Ok(Answer::FollowRoutes),
        HttpDecision::Forward(forward) => {
            if !http.upstreams.contains_key(&forward.backend) {
                return Err(PolicyError::UnknownBackend(forward.backend));
            }
            Ok(Answer::Forward {
                backend: forward.backend,
                set_headers: headers(forward.set_headers)?,
            })
        }
        HttpDecision::Redirect(redirect) => {
            if !REDIRECT_STATUSES.contains(&redirect.status) {
                return Err(invalid(format!(
                    "redirect status {} is not one of {REDIRECT_STATUSES:?}",
                    redirect.status
                )));
            }
            let location = HeaderValue::from_str(&redirect.location).map_err(|_| {
                invalid(format!(
                    "redirect location {:?} is not a header value",
                    redirect.location
                ))
            })?;
            let mut response = Response::new(Body::full(bytes::Bytes::new()));
            *response.status_mut() = status(redirect.status)?;
            response.headers_mut().insert(header::LOCATION, location);
            Ok(Answer::Respond(response))
        }
        HttpDecision::Respond(local) => {
            if !LOCAL_STATUSES.contains(&local.status) {
                return Err(invalid(format!(
                    "local response status {} is outside {}-{}",
                    local.status,
                    LOCAL_STATUSES.start(),
                    LOCAL_STATUSES.end()
                )));
            }
            let mut response = local_response(status(local.status)?, local.body);
            for (name, value) in headers(local.headers)? {
                if name == header::CONTENT_TYPE {
                    response.headers_mut().insert(name, value);
                } else {
                    response.headers_mut().append(name, value);
                }
            }
            Ok(Answer::Respond(response))
        }
    }
}

/// Parses a policy's header list, refusing invalid names and values and
/// the headers that frame the message.
fn headers(list: Vec<(String, String)>) -> Result<Vec<(HeaderName, HeaderValue)>, PolicyError> {
    list.into_iter()
        .map(|(name, value)| {
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("{name:?} is not a header name")))?;
            if FRAMING_HEADERS.contains(&parsed) {
                return Err(invalid(format!("header {name:?} is the edge's to set")));
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| invalid(format!("header {name}: {value:?} is not a header value")))?;
            Ok((parsed, value))
        })
        .collect()
}

fn status(code: u16) -> Result<StatusCode, PolicyError> {
    StatusCode::from_u16(code).map_err(|_| invalid(format!("status {code}")))
}

fn invalid(message: String) -> PolicyError {
    PolicyError::InvalidAnswer(message)
}
