//! Policies that also see HTTP requests (feature `http`, world
//! `http-policy` of `wit/edge.wit`): the [`HttpPolicy`] trait, constructors
//! for [`HttpDecision`], and helpers on [`HttpRequest`].
//!
//! The edge calls `on-request` for every request of its HTTP mode (route
//! sets, `http_routes`) after matching the routes and before `forward_auth`
//! and forwarding. The policy sees the route set's choice in
//! [`HttpRequest::routed_to`] and may keep it ([`HttpDecision::FollowRoutes`]),
//! send the request elsewhere ([`HttpDecision::forward`]), or answer it
//! itself ([`HttpDecision::redirect`], [`HttpDecision::respond`]).
//!
//! # Example
//!
//! ```
//! use hearth_edge_sdk::{
//!     Alert, ClientHello, Config, ConfigError, Decision, HttpDecision, HttpPolicy, HttpRequest,
//!     Policy, names,
//! };
//!
//! /// Terminates `example.com` into the route set `web` and guards it.
//! struct Gate;
//!
//! impl Policy for Gate {
//!     fn init(_config: &Config) -> Result<Self, ConfigError> {
//!         Ok(Gate)
//!     }
//!
//!     fn decide(&self, hello: &ClientHello) -> Decision {
//!         match hello.server_name() {
//!             Some(sni) if names::matches("example.com", sni) => Decision::terminate("web"),
//!             _ => Decision::reject("unknown-sni", Alert::UnrecognizedName),
//!         }
//!     }
//! }
//!
//! impl HttpPolicy for Gate {
//!     fn on_request(&self, request: &HttpRequest) -> HttpDecision {
//!         if request.path_starts_with("/internal") && request.header("x-office").is_none() {
//!             HttpDecision::respond(403, "forbidden\n")
//!         } else if request.host == "old.example.com" {
//!             HttpDecision::redirect(308, format!("https://example.com{}", request.path))
//!         } else if request.header("x-beta").is_some() {
//!             HttpDecision::forward("web-beta").with_header("x-beta", "1")
//!         } else {
//!             HttpDecision::FollowRoutes
//!         }
//!     }
//! }
//!
//! hearth_edge_sdk::export_http_policy!(Gate);
//!
//! # fn main() {
//! let gate = Gate::init(&Config::default()).unwrap();
//! let request = HttpRequest::get("example.com", "/internal/x");
//! assert_eq!(gate.on_request(&request).status(), Some(403));
//! let request = HttpRequest::get("example.com", "/").with_header("X-Beta", "on");
//! assert_eq!(
//!     gate.on_request(&request),
//!     HttpDecision::forward("web-beta").with_header("x-beta", "1")
//! );
//! # }
//! ```
//!
//! The export glue is `export_http_policy!` in `lib.rs`; the instance slot
//! is `export.rs`.

use std::net::IpAddr;

use crate::{Forward, HttpDecision, HttpRequest, LocalResponse, Policy, Redirect};

/// A [`Policy`] that also chooses what happens to each HTTP request.
///
/// Like `decide`, `on_request` takes `&self` and runs in one of several
/// instances; state that must span requests (rate limits) belongs in the
/// host's token buckets ([`take_token`](crate::take_token)).
pub trait HttpPolicy: Policy {
    /// Chooses what happens to one request.
    fn on_request(&self, request: &HttpRequest) -> HttpDecision;
}

// === impl HttpDecision ===

impl HttpDecision {
    /// Forward the request to `backend` (a backend name of the edge config).
    pub fn forward(backend: impl Into<String>) -> Self {
        HttpDecision::Forward(Forward {
            backend: backend.into(),
            set_headers: Vec::new(),
        })
    }

    /// Answer with a redirect to `location`. `status` must be 301, 302, 303,
    /// 307 or 308 (the edge treats anything else as a policy error).
    pub fn redirect(status: u16, location: impl Into<String>) -> Self {
        HttpDecision::Redirect(Redirect {
            status,
            location: location.into(),
        })
    }

    /// Answer with `status` (200–599) and a text body.
    pub fn respond(status: u16, body: impl Into<String>) -> Self {
        HttpDecision::Respond(LocalResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        })
    }

    /// Adds a header: to the forwarded request for [`HttpDecision::forward`],
    /// to the answer for [`HttpDecision::respond`]. Other decisions are
    /// returned unchanged.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let headers = match &mut self {
            HttpDecision::Forward(forward) => &mut forward.set_headers,
            HttpDecision::Respond(response) => &mut response.headers,
            HttpDecision::FollowRoutes | HttpDecision::Redirect(_) => return self,
        };
        headers.push((name.into(), value.into()));
        self
    }

    /// The status the client will see for a redirect or a local answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpDecision::Redirect(redirect) => Some(redirect.status),
            HttpDecision::Respond(response) => Some(response.status),
            HttpDecision::FollowRoutes | HttpDecision::Forward(_) => None,
        }
    }
}

// === impl HttpRequest ===

impl HttpRequest {
    /// A `GET` of `path` (with an optional `?query`) on `host`, over https
    /// from 192.0.2.1, matched to no route; for tests. Chain the `with_*`
    /// methods to fill in more.
    pub fn get(host: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (target, None),
        };
        HttpRequest {
            method: "GET".to_owned(),
            scheme: "https".to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            query,
            source_addr: "192.0.2.1".to_owned(),
            ..HttpRequest::default()
        }
    }

    /// Replaces the method; for tests.
    #[must_use]
    pub fn with_method(mut self, method: &str) -> Self {
        self.method = method.to_owned();
        self
    }

    /// Adds a header (the name is lowercased, as the edge sends them); for
    /// tests.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Replaces the source address; for tests.
    #[must_use]
    pub fn with_source(mut self, addr: &str) -> Self {
        self.source_addr = addr.to_owned();
        self
    }

    /// Sets the backend the route set chose; for tests.
    #[must_use]
    pub fn with_routed_to(mut self, backend: &str) -> Self {
        self.routed_to = Some(backend.to_owned());
        self
    }

    /// The first value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The source address parsed, IPv4-mapped IPv6 shown as IPv4; `None`
    /// if the text is not an IP address.
    pub fn source_ip(&self) -> Option<IpAddr> {
        let ip: IpAddr = self.source_addr.parse().ok()?;
        Some(ip.to_canonical())
    }

    /// Whether the path is `prefix` or below it on a segment boundary
    /// (`/_` matches `/_` and `/_/x`, not `/_x`), as the edge's
    /// `path_prefix` routes match.
    pub fn path_starts_with(&self, prefix: &str) -> bool {
        let prefix = prefix.trim_end_matches('/');
        match self.path.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_splits_the_query() {
        let request = HttpRequest::get("a.example", "/search?q=1&x");
        assert_eq!(request.path, "/search");
        assert_eq!(request.query.as_deref(), Some("q=1&x"));
        assert_eq!(HttpRequest::get("a.example", "/").query, None);
    }

    #[test]
    fn header_lookup_ignores_case() {
        let request = HttpRequest::get("a.example", "/").with_header("X-Canary", "1");
        assert_eq!(request.header("x-canary"), Some("1"));
        assert_eq!(request.header("X-CANARY"), Some("1"));
        assert_eq!(request.header("x-other"), None);
    }

    #[test]
    fn path_prefix_matches_on_segment_boundaries() {
        let at = |path: &str| HttpRequest::get("a.example", path);
        assert!(at("/_/").path_starts_with("/_/"));
        assert!(at("/_").path_starts_with("/_"));
        assert!(at("/_/users").path_starts_with("/_"));
        assert!(!at("/_x").path_starts_with("/_"));
        assert!(at("/anything").path_starts_with("/"));
    }

    #[test]
    fn with_header_goes_where_the_decision_uses_it() {
        let forward = HttpDecision::forward("api").with_header("x-tenant", "a");
        let HttpDecision::Forward(f) = &forward else {
            panic!("{forward:?}")
        };
        assert_eq!(f.set_headers, [("x-tenant".to_owned(), "a".to_owned())]);
        let answer = HttpDecision::respond(429, "slow down").with_header("retry-after", "1");
        assert_eq!(answer.status(), Some(429));
        let HttpDecision::Respond(r) = &answer else {
            panic!("{answer:?}")
        };
        assert_eq!(r.headers.len(), 1);
        assert_eq!(
            HttpDecision::redirect(308, "https://a.example/").with_header("x", "y"),
            HttpDecision::redirect(308, "https://a.example/")
        );
    }
}
