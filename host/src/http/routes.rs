//! Route matching: the first route of a set whose host and path prefix
//! both match wins. Hosts match exactly or by a `*.` wildcard covering one
//! label, ignoring case and port; a path prefix matches on segment
//! boundaries (`/api` matches `/api`, `/api/x` and `/api?q`, not `/apix`).
//! Also the prefix strip (`strip_prefix`). The routes come from
//! `config/http.rs`; the request handler is `http/handler.rs`.

use std::borrow::Cow;

use crate::config::{HttpRoute, RouteSet};

/// The first route of `set` matching `host` (lowercase, no port) and
/// `path`.
pub fn find<'a>(set: &'a RouteSet, host: &str, path: &str) -> Option<&'a HttpRoute> {
    set.routes.iter().find(|route| {
        route.host.as_deref().is_none_or(|h| host_matches(h, host))
            && route
                .path_prefix
                .as_deref()
                .is_none_or(|p| prefix_matches(p, path))
    })
}

/// `pattern` is a lowercase name or `*.parent`.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == host,
    }
}

/// `prefix` has no trailing `/` (except the root `/` itself).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The request's host: lowercase, port and trailing dot removed.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        // An IPv6 literal: keep the brackets, drop the port.
        host.split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let name = without_port.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// `path_and_query` with `prefix` removed from the path; the root when
/// nothing is left (`/lk-ws?x` → `/?x`).
pub fn strip(prefix: &str, path_and_query: &str) -> String {
    if prefix == "/" {
        return path_and_query.to_owned();
    }
    let rest = path_and_query
        .strip_prefix(prefix)
        .unwrap_or(path_and_query);
    if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: Option<&str>, backend: &str) -> HttpRoute {
        HttpRoute {
            host: host.map(str::to_owned),
            path_prefix: prefix.map(str::to_owned),
            to: crate::config::RouteTarget::Backend(backend.to_owned()),
            strip_prefix: false,
            forward_auth: None,
        }
    }

    fn set(routes: Vec<HttpRoute>) -> RouteSet {
        RouteSet {
            name: "web".to_owned(),
            alpn: vec![],
            trusted_proxies: vec![],
            routes,
            stun_backend: None,
        }
    }

    #[test]
    fn first_match_wins_on_host_and_prefix() {
        let set = set(vec![
            route(None, Some("/lk-ws"), "livekit"),
            route(Some("api.example"), None, "api"),
            route(Some("*.example"), Some("/"), "wild"),
            route(None, None, "frontend"),
        ]);
        let pick = |host: &str, path: &str| find(&set, host, path).map(|r| r.to.name());
        assert_eq!(pick("api.example", "/lk-ws/rtc"), Some("livekit"));
        assert_eq!(pick("x", "/lk-ws"), Some("livekit"));
        assert_eq!(pick("x", "/lk-wsx"), Some("frontend"));
        assert_eq!(pick("api.example", "/v1"), Some("api"));
        assert_eq!(pick("www.example", "/"), Some("wild"));
        assert_eq!(pick("a.b.example", "/"), Some("frontend"));
        assert_eq!(pick("example", "/"), Some("frontend"));
    }

    #[test]
    fn no_match_is_none() {
        let set = set(vec![route(Some("a.example"), Some("/api"), "api")]);
        assert!(find(&set, "a.example", "/").is_none());
        assert!(find(&set, "b.example", "/api").is_none());
        assert!(
            find(&set, "a.example", "/api?x=1").is_none(),
            "paths carry no query here"
        );
        assert!(find(&set, "a.example", "/api/x").is_some());
    }

    #[test]
    fn hosts_lose_case_port_and_trailing_dot() {
        assert_eq!(normalize_host("API.Example:8443"), "api.example");
        assert_eq!(normalize_host("api.example."), "api.example");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
    }

    #[test]
    fn strip_keeps_the_rest_and_the_query() {
        assert_eq!(strip("/lk-ws", "/lk-ws/rtc?a=1"), "/rtc?a=1");
        assert_eq!(strip("/lk-ws", "/lk-ws"), "/");
        assert_eq!(strip("/lk-ws", "/lk-ws?a=1"), "/?a=1");
        assert_eq!(strip("/", "/x"), "/x");
    }
}
