//! One request of the HTTP mode, top to bottom: find the route
//! (`http/routes.rs`), ask the policy's `on-request` when it has one
//! (`http/policy.rs`), ask `forward_auth` when the route has it
//! (`http/forward_auth.rs`), rewrite the head (`http/headers.rs`, prefix
//! strip), send it to the backend (`http/client.rs`) or the route's
//! handler component (`http/hosted.rs`) and stream the answer back. A `101 Switching Protocols` answer (WebSocket) joins the two
//! upgraded connections with the byte relay (`io/copy.rs`). Failures
//! become answers in `http/error.rs`; one `http request` line per request.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::body::Body;
use super::error::HttpError;
use super::forward_auth::{self, Verdict};
use super::h1::Upgraded;
use super::headers::{self, Forwarding};
use super::policy::{self, Answer};
use super::{ConnInfo, Http, hosted, routes};
use crate::config::{RouteTarget, UpstreamProtocol};
use crate::error::Side;
use crate::io::{Replay, relay};

/// What one request did, for its log line. Borrowed or shared where it
/// can be: most requests log nothing at `warn`.
#[derive(Default)]
struct Trace<'a> {
    /// The host as the client sent it.
    host: Option<HeaderValue>,
    backend: Option<Cow<'a, str>>,
    /// What `on-request` did, when the policy was asked and did not
    /// follow the routes: `forward` or `respond`.
    policy: Option<&'static str>,
    /// The handler that answered, for a handler route.
    handler: Option<&'a str>,
}

impl Trace<'_> {
    /// The host as routing saw it (no port, lower case).
    fn host(&self) -> Cow<'_, str> {
        self.host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map_or(Cow::Borrowed(""), routes::normalize_host)
    }
}

/// Serves one request; never fails (failures are answers).
pub async fn handle(
    http: Arc<Http>,
    conn: Arc<ConnInfo>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let method = request.method().clone();
    // A shared copy for the log line (the request itself moves on).
    let uri = request.uri().clone();
    let path = uri.path();
    let mut trace = Trace::default();
    let response = match forward(&http, &conn, request, &mut trace).await {
        Ok(response) => response,
        Err(error) => {
            report(&http, &conn, &method, &trace, path, &error);
            error.response()
        }
    };
    let elapsed = start.elapsed();
    info!(
        source = %conn.source,
        method = %method,
        host = %trace.host(),
        path = %path,
        status = response.status().as_u16(),
        backend = %trace.backend.as_deref().unwrap_or("-"),
        policy = %trace.policy.unwrap_or("-"),
        handler = %trace.handler.unwrap_or("-"),
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "http request"
    );
    http.metrics.http_response(response.status().as_u16());
    http.metrics
        .http_latency(trace.backend.as_deref().unwrap_or("-"), elapsed);
    Ok(response)
}

/// Logs and counts a failed request with the side that caused it: the
/// edge's own faults at `error`, the others at `warn`.
fn report(
    http: &Http,
    conn: &ConnInfo,
    method: &http::Method,
    trace: &Trace<'_>,
    path: &str,
    error: &HttpError,
) {
    let side = error.side();
    http.metrics.http_error(side);
    let backend = trace.backend.as_deref().unwrap_or("-");
    if side == Side::Internal {
        error!(source = %conn.source, method = %method, host = %trace.host(), path = %path, backend = %backend, side = side.as_str(), error = %error, "http request failed");
    } else {
        warn!(source = %conn.source, method = %method, host = %trace.host(), path = %path, backend = %backend, side = side.as_str(), error = %error, "http request failed");
    }
}

/// Route → policy → auth → backend.
async fn forward<'a>(
    http: &'a Http,
    conn: &ConnInfo,
    mut request: Request<Incoming>,
    trace: &mut Trace<'a>,
) -> Result<Response<Body>, HttpError> {
    let host_value = request_host(&request)?;
    trace.host = Some(host_value.clone());
    let raw_host = host_value
        .to_str()
        .map_err(|_| HttpError::BadRequest("invalid host"))?;
    let host = routes::normalize_host(raw_host);
    let set = http
        .config
        .http_routes
        .get(&conn.routes)
        .ok_or(HttpError::Internal("no such route set"))?;
    let route = routes::find(set, &host, request.uri().path());
    let routed_to = route.map(|r| r.to.name());
    let (backend, set_headers) = match policy::ask(http, conn, &request, &host, routed_to)? {
        Answer::FollowRoutes => (route.map(|r| Cow::Borrowed(&r.to)), Vec::new()),
        Answer::Forward {
            backend,
            set_headers,
        } => {
            trace.policy = Some("forward");
            (Some(Cow::Owned(RouteTarget::Backend(backend))), set_headers)
        }
        Answer::Respond(response) => {
            trace.policy = Some("respond");
            return Ok(response);
        }
    };
    let backend = backend.ok_or_else(|| HttpError::NoRoute {
        host: host.clone().into_owned(),
        path: request.uri().path().to_owned(),
    })?;
    let backend = match backend {
        Cow::Borrowed(RouteTarget::Backend(name)) => Cow::Borrowed(name.as_str()),
        Cow::Owned(RouteTarget::Backend(name)) => Cow::Owned(name),
        Cow::Borrowed(RouteTarget::Handler(name)) => {
            trace.handler = Some(name);
            Cow::Borrowed("-")
        }
        Cow::Owned(RouteTarget::Handler(_)) => return Err(HttpError::Internal("handler by name")),
    };
    trace.backend = Some(backend.clone());
    let trusted = set
        .trusted_proxies
        .iter()
        .any(|c| c.contains(conn.source.ip()));
    let forwarding = Forwarding {
        source: &conn.source_text,
        proto: conn.proto,
        host: &host_value,
        trusted,
    };

    if let Some(auth) = route.and_then(|r| r.forward_auth.as_ref()) {
        match forward_auth::check(http, &request, auth, &forwarding).await? {
            Verdict::Allow(copied) => {
                for name in &auth.copy_headers {
                    // Only the auth server may set these.
                    request.headers_mut().remove(name);
                }
                for (name, value) in copied {
                    request.headers_mut().append(name, value);
                }
            }
            Verdict::Deny(response) => return Ok(*response),
        }
    }

    let upgrade = request.version() == Version::HTTP_11 && headers::is_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    // Only a stripped prefix changes the target.
    let stripped = match route.map(|r| (&r.path_prefix, r.strip_prefix)) {
        Some((Some(prefix), true)) => Some(routes::strip(prefix, path_and_query)),
        _ => None,
    };
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    headers::set_forwarding(&mut parts.headers, &forwarding);
    // Last, so the policy's choice stands.
    for (name, value) in set_headers {
        parts.headers.insert(name, value);
    }
    if !parts.headers.contains_key(header::HOST) {
        // HTTP/2 clients send :authority; HTTP/1.1 backends need Host.
        parts.headers.insert(header::HOST, host_value.clone());
    }
    if let Some(handler) = trace.handler {
        // The component sees an absolute URI: scheme, the client's host,
        // the (stripped) target.
        let target = stripped.as_deref().unwrap_or(path_and_query);
        parts.uri = format!("{}://{raw_host}{target}", conn.proto)
            .parse::<Uri>()
            .map_err(|_| HttpError::BadRequest("invalid request target"))?;
        return hosted::answer(http, handler, parts, body, conn.proto == "https").await;
    }
    let upstream = http
        .upstreams
        .get(&*backend)
        .ok_or(HttpError::Internal("no such backend"))?;
    let target = stripped.as_deref().unwrap_or(path_and_query);
    let (version, uri) = match upstream.protocol() {
        // An origin-form target as received (HTTP/1.1 clients) is reused
        // as it is, without parsing it again.
        UpstreamProtocol::Http1 if stripped.is_none() && parts.uri.authority().is_none() => {
            (Version::HTTP_11, Ok(parts.uri.clone()))
        }
        UpstreamProtocol::Http1 => (Version::HTTP_11, target.parse::<Uri>()),
        UpstreamProtocol::H2c => (
            Version::HTTP_2,
            format!("http://{raw_host}{target}").parse::<Uri>(),
        ),
    };
    if version == Version::HTTP_2 {
        // HTTP/2 carries the host in :authority (RFC 9113 §8.3.1); some
        // servers refuse a request with both.
        parts.headers.remove(header::HOST);
    }
    parts.version = version;
    parts.uri = uri.map_err(|_| HttpError::BadRequest("invalid request target"))?;
    let outgoing = Request::from_parts(parts, Body::Incoming(body));

    let limits = &http.config.limits;
    let sent = tokio::time::timeout(
        limits.backend_dial_timeout + limits.idle_timeout,
        upstream.send(outgoing, limits.backend_dial_timeout),
    )
    .await
    .map_err(|_| HttpError::Timeout {
        backend: backend.to_string(),
    })??;
    let mut response = sent.response;
    debug!(backend = %backend, member = %sent.member, status = response.status().as_u16(), "backend answered");
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        match (client_upgrade, sent.switched) {
            (Some(client_upgrade), Some(backend)) => {
                tokio::spawn(tunnel(client_upgrade, backend, limits.idle_timeout));
            }
            _ => return Err(HttpError::BadRequest("unrequested protocol switch")),
        }
    } else {
        headers::remove_hop_by_hop(response.headers_mut(), false);
    }
    Ok(response)
}

/// The host the client asked for: the URI's authority (HTTP/2, absolute
/// form), else the `Host` header (a shared copy).
fn request_host(request: &Request<Incoming>) -> Result<HeaderValue, HttpError> {
    if let Some(authority) = request.uri().authority() {
        return HeaderValue::from_str(authority.as_str())
            .map_err(|_| HttpError::BadRequest("invalid host"));
    }
    request
        .headers()
        .get(header::HOST)
        .filter(|h| !h.is_empty())
        .cloned()
        .ok_or(HttpError::BadRequest("missing host"))
}

/// Relays an upgraded (WebSocket) connection both ways until both close.
async fn tunnel(client: hyper::upgrade::OnUpgrade, backend: Upgraded, idle: std::time::Duration) {
    let client = match client.await {
        Ok(client) => client,
        Err(error) => {
            debug!(error = %error, "upgrade failed");
            return;
        }
    };
    // What the backend sent right after its 101 goes first.
    let backend = Replay::new(backend.leftover.to_vec(), backend.io);
    let relayed = relay(TokioIo::new(client), backend, idle).await;
    debug!(
        up = relayed.up,
        down = relayed.down,
        "upgraded connection closed"
    );
}
