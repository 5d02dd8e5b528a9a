//! `forward_auth`: before a request is forwarded, a `GET` subrequest to the
//! auth backend's `path` carries the original request's headers plus
//! `X-Forwarded-Method` and `X-Forwarded-Uri` (and the forwarding headers).
//! A 2xx answer lets the request through with the configured
//! `copy_headers` taken from the answer (client-sent copies are dropped by
//! the caller); any other answer (a 302 to the login page, a 401) is
//! returned to the client as it is. An allowing answer's body is read to
//! its end (bounded) so the auth connection serves the next check. Used by
//! `http/handler.rs`.

use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::Http;
use super::body::Body;
use super::error::HttpError;
use super::headers::{self, Forwarding};
use crate::config::{ForwardAuth, UpstreamProtocol};

/// `X-Forwarded-Method`: the original request's method.
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `X-Forwarded-Uri`: the original request's path and query.
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The most of an allowing answer's body read to keep its connection; a
/// longer body (auth answers are usually empty or a word) closes it.
const MAX_DRAINED_BODY: usize = 64 * 1024;

/// The auth backend's verdict.
pub enum Verdict {
    /// Forward, adding these headers.
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// Answer the client with this.
    Deny(Box<Response<Body>>),
}

/// Asks the auth backend about `request`.
pub async fn check(
    http: &Http,
    request: &Request<Incoming>,
    auth: &ForwardAuth,
    forwarding: &Forwarding<'_>,
) -> Result<Verdict, HttpError> {
    let upstream = http
        .upstreams
        .get(&auth.backend)
        .ok_or(HttpError::Internal("no such auth backend"))?;
    let mut headers = request.headers().clone();
    headers::remove_hop_by_hop(&mut headers, false);
    headers.remove(header::CONTENT_LENGTH);
    headers::set_forwarding(&mut headers, forwarding);
    if let Ok(method) = HeaderValue::from_str(request.method().as_str()) {
        headers.insert(X_FORWARDED_METHOD.clone(), method);
    }
    let original_uri = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(uri) = HeaderValue::from_str(original_uri) {
        headers.insert(X_FORWARDED_URI.clone(), uri);
    }
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, forwarding.host.clone());
    }
    let uri: Uri = match upstream.protocol() {
        UpstreamProtocol::Http1 => auth.path.parse(),
        UpstreamProtocol::H2c => format!("http://{}{}", forwarding.host_str(), auth.path).parse(),
    }
    .map_err(|_| HttpError::BadRequest("invalid auth path"))?;
    let mut subrequest = Request::new(Body::Empty);
    *subrequest.method_mut() = Method::GET;
    *subrequest.uri_mut() = uri;
    *subrequest.headers_mut() = headers;
    if upstream.protocol() == UpstreamProtocol::H2c {
        // The host travels in :authority.
        subrequest.headers_mut().remove(header::HOST);
        *subrequest.version_mut() = http::Version::HTTP_2;
    }
    let limits = &http.config.limits;
    let sent = tokio::time::timeout(
        limits.backend_dial_timeout + limits.idle_timeout,
        upstream.send(subrequest, limits.backend_dial_timeout),
    )
    .await
    .map_err(|_| HttpError::Timeout {
        backend: auth.backend.clone(),
    })??;
    let mut response = sent.response;
    if response.status().is_success() {
        let copied = auth
            .copy_headers
            .iter()
            .flat_map(|name| {
                response
                    .headers()
                    .get_all(name)
                    .iter()
                    .map(|v| (name.clone(), v.clone()))
            })
            .collect();
        drain(response.into_body(), limits.idle_timeout).await;
        Ok(Verdict::Allow(copied))
    } else {
        headers::remove_hop_by_hop(response.headers_mut(), false);
        Ok(Verdict::Deny(Box::new(response)))
    }
}

/// Reads `body` to its end, within `timeout` and [`MAX_DRAINED_BODY`]
/// bytes, which returns its connection to the pool; past either limit the
/// body is dropped and the connection closed.
async fn drain(mut body: Body, timeout: Duration) {
    let read = async {
        let mut bytes = 0;
        while let Some(Ok(frame)) = body.frame().await {
            bytes += frame.data_ref().map_or(0, |d| d.len());
            if bytes > MAX_DRAINED_BODY {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
}
