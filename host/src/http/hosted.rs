//! A route answered by a handler component (`handlers.<name>`, run by
//! `hearth_edge_policy::handler`): the request, with the forwarding headers
//! a backend would get and its prefix stripped, goes to a fresh instance,
//! and the answer streams back. A handler that gives no answer costs that
//! one request: 500 (trap, memory), 504 (time-out), 503 (no free
//! instance); the failure is logged by `http/handler.rs` with
//! `side=handler` and counted here by kind.

use std::collections::HashMap;
use std::sync::Arc;

use hearth_edge_policy::handler::Handler;
use http::request::Parts;
use http::{Request, Response, header};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::Http;
use super::body::Body;
use super::error::HttpError;

/// The loaded handlers of one config generation, by name.
pub type Handlers = HashMap<String, Arc<Handler>>;

/// Has handler `name` answer the request; `https`: the client's scheme.
pub async fn answer(
    http: &Http,
    name: &str,
    parts: Parts,
    body: Incoming,
    https: bool,
) -> Result<Response<Body>, HttpError> {
    let handler = http
        .handlers
        .get(name)
        .ok_or(HttpError::Internal("no such handler"))?;
    let limit = handler.limits().max_request_body;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(HttpError::BodyTooLarge { limit });
    }
    let started = Instant::now();
    let served = handler.serve(Request::from_parts(parts, body), https).await;
    let metrics = &http.metrics;
    match served {
        Ok(answer) => {
            metrics.handler_request(name, answer.status().as_u16(), started.elapsed());
            Ok(answer.map(Body::Handler))
        }
        Err(failure) => {
            metrics.handler_failure(name, failure.kind());
            let error = HttpError::Handler {
                handler: name.to_owned(),
                failure,
            };
            metrics.handler_request(name, error.status().as_u16(), started.elapsed());
            Err(error)
        }
    }
}
