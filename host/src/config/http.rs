//! The HTTP mode and upstream pool parts of the config: `http_routes` (route
//! sets a terminate decision or a `plain_listen` listener may target), the
//! pool fields of a backend (`addrs`, `balance`, `health_check`, `eject`,
//! `protocol`), and `plain_listen`. Raw serde structs, the validated types,
//! and their checks live together here; `config/raw.rs`, `validate.rs` and
//! `config.rs` only hook them in.
//!
//! The HTTP data path that uses them is `http/`; pools are `upstream.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::duration::ConfigDuration;
use super::field::{FieldError, fail, nonzero};
use super::values::{Alpn, BackendAddr, BackendName, Hostname, ListenAddr};

/// ALPN a route set offers when it lists none: HTTP/2 first, then HTTP/1.1.
pub const DEFAULT_HTTP_ALPN: &[&str] = &["h2", "http/1.1"];
/// Default `health_check.interval`.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Default `health_check.timeout`.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `eject.failures`: consecutive failures before a member is ejected.
pub const DEFAULT_EJECT_FAILURES: u32 = 5;
/// Default `eject.cooldown`: how long an ejected member sits out.
pub const DEFAULT_EJECT_COOLDOWN: Duration = Duration::from_secs(10);
/// Default `resolve_interval`: how often host names in `addr`/`addrs` are
/// looked up again.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

// === raw ===

/// One entry of `http_routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteSet {
    /// The routes, tried in order.
    pub routes: Vec<RawRoute>,
    /// ALPN offered to clients (default `[h2, http/1.1]`).
    pub alpn: Option<Vec<Alpn>>,
    /// Peers whose `X-Forwarded-*` / `Forwarded` headers are kept.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// A TURN server's plain-TCP listener: terminated connections whose
    /// first bytes are a STUN message are relayed there (`proxy/stun.rs`).
    pub stun_backend: Option<BackendName>,
}

/// One route of a route set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Exact host or `*.` wildcard; any host when absent.
    pub host: Option<Hostname>,
    /// Path prefix on segment boundaries; any path when absent.
    pub path_prefix: Option<String>,
    /// Where matching requests go: a backend ...
    pub backend: Option<BackendName>,
    /// ... or a handler (`handlers.<name>`).
    pub handler: Option<BackendName>,
    /// Remove `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// An authorization subrequest before forwarding.
    pub forward_auth: Option<RawForwardAuth>,
}

/// `routes[].forward_auth`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    /// The backend that answers the subrequest.
    pub backend: BackendName,
    /// Path (and query) of the subrequest.
    pub path: String,
    /// Headers of a 2xx answer copied onto the forwarded request.
    #[serde(default)]
    pub copy_headers: Vec<String>,
}

/// The pool fields of a backend, as read from `backends.*` (serde's
/// `flatten` does not combine with `deny_unknown_fields`, so `raw.rs` lists
/// them and hands them over in this struct).
#[derive(Debug, Default)]
pub struct RawPoolFields {
    /// Several addresses instead of `addr`.
    pub addrs: Option<Vec<BackendAddr>>,
    /// How a member is picked.
    pub balance: Option<Balance>,
    /// Active health checks.
    pub health_check: Option<RawHealthCheck>,
    /// Passive ejection.
    pub eject: Option<RawEject>,
    /// How host names are re-resolved.
    pub resolve_interval: Option<ConfigDuration>,
    /// HTTP protocol spoken to the backend in HTTP mode.
    pub protocol: Option<UpstreamProtocol>,
}

/// `backends.*.health_check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// `GET` this path and expect a 2xx; a TCP connect check when absent.
    pub http_path: Option<String>,
    /// Time between checks.
    pub interval: Option<ConfigDuration>,
    /// Time one check may take.
    pub timeout: Option<ConfigDuration>,
}

/// `backends.*.eject`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEject {
    /// Consecutive failures that eject a member.
    pub failures: Option<u32>,
    /// How long it stays out.
    pub cooldown: Option<ConfigDuration>,
    /// Count every 5xx answer as a failure, not only 502, 503 and 504.
    pub all_5xx: Option<bool>,
}

/// One entry of `plain_listen`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlainListener {
    /// Where to accept plain HTTP.
    pub addr: ListenAddr,
    /// The route set (a key of `http_routes`).
    pub routes: BackendName,
}

// === validated ===

/// A named set of HTTP routes (`http_routes.<name>`).
#[derive(Debug, Clone)]
pub struct RouteSet {
    /// Its name.
    pub name: String,
    /// ALPN offered to clients.
    pub alpn: Vec<String>,
    /// Peers whose forwarding headers are trusted.
    pub trusted_proxies: Vec<Cidr>,
    /// First match wins.
    pub routes: Vec<HttpRoute>,
    /// The backend a STUN first message is relayed to, if any.
    pub stun_backend: Option<String>,
}

/// One HTTP route.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    /// Exact (lowercase) or `*.` wildcard host; any when `None`.
    pub host: Option<String>,
    /// Path prefix; any when `None`.
    pub path_prefix: Option<String>,
    /// Who answers.
    pub to: RouteTarget,
    /// Remove `path_prefix` before forwarding.
    pub strip_prefix: bool,
    /// Authorization subrequest.
    pub forward_auth: Option<ForwardAuth>,
}

/// Who answers a route's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// A backend (a key of `backends`), through its pool.
    Backend(String),
    /// A handler (a key of `handlers`), run by the edge.
    Handler(String),
}

impl RouteTarget {
    /// The backend's or handler's name.
    pub fn name(&self) -> &str {
        match self {
            RouteTarget::Backend(name) | RouteTarget::Handler(name) => name,
        }
    }
}

/// `forward_auth` of a route.
#[derive(Debug, Clone)]
pub struct ForwardAuth {
    /// The backend asked.
    pub backend: String,
    /// Path and query of the subrequest.
    pub path: String,
    /// Response headers copied onto the forwarded request (lowercase).
    pub copy_headers: Vec<http::HeaderName>,
}

/// How the members of a pool are used.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Round robin or least connections.
    pub balance: Balance,
    /// Active checks, when configured.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection.
    pub eject: Eject,
    /// How often host names are looked up again.
    pub resolve_interval: Duration,
    /// HTTP/1.1 or h2c in HTTP mode.
    pub protocol: UpstreamProtocol,
}

/// `backends.*.balance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each member in turn.
    RoundRobin,
    /// The member with the fewest connections/requests in flight.
    LeastConn,
}

/// `health_check`.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// `GET` this path (2xx = healthy); a TCP connect when `None`.
    pub http_path: Option<String>,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
}

/// `eject`.
#[derive(Debug, Clone, Copy)]
pub struct Eject {
    /// Consecutive failures that eject a member.
    pub failures: u32,
    /// How long it stays out.
    pub cooldown: Duration,
    /// In the HTTP mode, every 5xx answer counts as a failure; otherwise
    /// only 502, 503 and 504 (the member cannot serve) do.
    pub all_5xx: bool,
}

/// `protocol`: what the edge speaks to an HTTP backend.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    #[default]
    Http1,
    /// HTTP/2 over cleartext (prior knowledge).
    H2c,
}

/// A `plain_listen` entry: plain HTTP (no TLS) into a route set.
#[derive(Debug, Clone)]
pub struct PlainListener {
    /// Where to accept.
    pub addr: SocketAddr,
    /// The route set's name.
    pub routes: String,
}

/// An address range: `10.0.0.0/8`, `::1/128`, or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

// === impl Cidr ===

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address (a single host).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let invalid = || format!("invalid address range {text:?} (expected e.g. 10.0.0.0/8)");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(invalid)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in the range (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

// === validation ===

/// The addresses and pool settings of `backends.<name>`.
pub fn pool(
    name: &str,
    addr: Option<BackendAddr>,
    raw: RawPoolFields,
) -> Result<(Vec<BackendAddr>, PoolSettings), FieldError> {
    let at = |field: &str| format!("backends.{name}.{field}");
    let addrs = match (addr, raw.addrs) {
        (Some(_), Some(_)) => return fail(at("addrs"), "give addr or addrs, not both"),
        (Some(addr), None) => vec![addr],
        (None, Some(list)) if list.is_empty() => {
            return fail(at("addrs"), "at least one address is required");
        }
        (None, Some(list)) => list,
        (None, None) => {
            return fail(
                format!("backends.{name}"),
                "missing field `addr` (or `addrs`)",
            );
        }
    };
    let nonzero = |field: &str, value, default| nonzero(at(field), value, default);
    let health_check = match raw.health_check {
        None => None,
        Some(h) => {
            if let Some(path) = &h.http_path {
                check_path(&at("health_check.http_path"), path)?;
            }
            Some(HealthCheck {
                http_path: h.http_path,
                interval: nonzero("health_check.interval", h.interval, DEFAULT_HEALTH_INTERVAL)?,
                timeout: nonzero("health_check.timeout", h.timeout, DEFAULT_HEALTH_TIMEOUT)?,
            })
        }
    };
    let eject = match raw.eject {
        None => Eject {
            failures: DEFAULT_EJECT_FAILURES,
            cooldown: DEFAULT_EJECT_COOLDOWN,
            all_5xx: false,
        },
        Some(e) => {
            let failures = e.failures.unwrap_or(DEFAULT_EJECT_FAILURES);
            if failures == 0 {
                return fail(at("eject.failures"), "must be at least 1");
            }
            Eject {
                failures,
                cooldown: nonzero("eject.cooldown", e.cooldown, DEFAULT_EJECT_COOLDOWN)?,
                all_5xx: e.all_5xx.unwrap_or(false),
            }
        }
    };
    let settings = PoolSettings {
        balance: raw.balance.unwrap_or(Balance::RoundRobin),
        health_check,
        eject,
        resolve_interval: nonzero(
            "resolve_interval",
            raw.resolve_interval,
            DEFAULT_RESOLVE_INTERVAL,
        )?,
        protocol: raw.protocol.unwrap_or_default(),
    };
    Ok((addrs, settings))
}

/// `http_routes`, checked against the backend names.
pub fn route_sets(
    raw: BTreeMap<BackendName, RawRouteSet>,
    backends: &BTreeMap<String, super::Backend>,
    handlers: &BTreeMap<String, super::HandlerConfig>,
) -> Result<BTreeMap<String, RouteSet>, FieldError> {
    let known = || backends.keys().cloned().collect::<Vec<_>>().join(", ");
    let backend_ref = |path: String, name: &BackendName| {
        if backends.contains_key(&name.0) {
            Ok(name.0.clone())
        } else {
            fail(
                path,
                format!(
                    "unknown backend {:?} (expected one of: {})",
                    name.0,
                    known()
                ),
            )
        }
    };
    let mut sets = BTreeMap::new();
    for (BackendName(name), set) in raw {
        let at = |field: &str| format!("http_routes.{name}.{field}");
        if backends.contains_key(&name) {
            return fail(
                format!("http_routes.{name}"),
                "a backend has the same name (decisions name one or the other)",
            );
        }
        if set.routes.is_empty() {
            return fail(at("routes"), "at least one route is required");
        }
        let alpn = match set.alpn {
            Some(list) if list.is_empty() => {
                return fail(
                    at("alpn"),
                    "must not be empty (leave it out for h2, http/1.1)",
                );
            }
            Some(list) => {
                if let Some(p) = list
                    .iter()
                    .find(|p| !["h2", "http/1.1"].contains(&p.0.as_str()))
                {
                    return fail(
                        at("alpn"),
                        format!("unsupported protocol {:?} (expected h2 or http/1.1)", p.0),
                    );
                }
                list.into_iter().map(|a| a.0).collect()
            }
            None => DEFAULT_HTTP_ALPN.iter().map(|s| s.to_string()).collect(),
        };
        let mut trusted_proxies = Vec::new();
        for (i, text) in set.trusted_proxies.iter().enumerate() {
            trusted_proxies.push(
                Cidr::parse(text).or_else(|m| fail(at(&format!("trusted_proxies[{i}]")), m))?,
            );
        }
        let stun_backend = match &set.stun_backend {
            Some(name) => Some(backend_ref(at("stun_backend"), name)?),
            None => None,
        };
        let mut routes = Vec::new();
        for (i, r) in set.routes.into_iter().enumerate() {
            let rat = |field: &str| at(&format!("routes[{i}].{field}"));
            if let Some(prefix) = &r.path_prefix {
                check_path(&rat("path_prefix"), prefix)?;
                if prefix.contains('?') {
                    return fail(rat("path_prefix"), "must not contain a query");
                }
            }
            if r.strip_prefix && r.path_prefix.is_none() {
                return fail(rat("strip_prefix"), "needs a path_prefix");
            }
            let forward_auth = match r.forward_auth {
                None => None,
                Some(fa) => {
                    check_path(&rat("forward_auth.path"), &fa.path)?;
                    let mut copy_headers = Vec::new();
                    for (j, h) in fa.copy_headers.iter().enumerate() {
                        match http::HeaderName::from_bytes(h.as_bytes()) {
                            Ok(name) => copy_headers.push(name),
                            Err(_) => {
                                return fail(
                                    rat(&format!("forward_auth.copy_headers[{j}]")),
                                    format!("invalid header name {h:?}"),
                                );
                            }
                        }
                    }
                    Some(ForwardAuth {
                        backend: backend_ref(rat("forward_auth.backend"), &fa.backend)?,
                        path: fa.path,
                        copy_headers,
                    })
                }
            };
            routes.push(HttpRoute {
                host: r.host.map(|h| h.0),
                path_prefix: r.path_prefix.map(|p| {
                    // `/api/` and `/api` match the same requests.
                    let trimmed = p.trim_end_matches('/');
                    if trimmed.is_empty() {
                        "/".to_owned()
                    } else {
                        trimmed.to_owned()
                    }
                }),
                to: match (&r.backend, &r.handler) {
                    (Some(backend), None) => {
                        RouteTarget::Backend(backend_ref(rat("backend"), backend)?)
                    }
                    (None, Some(BackendName(handler))) => {
                        if !handlers.contains_key(handler) {
                            let known: Vec<&str> = handlers.keys().map(String::as_str).collect();
                            return fail(
                                rat("handler"),
                                format!(
                                    "unknown handler {handler:?} (expected one of: {})",
                                    known.join(", ")
                                ),
                            );
                        }
                        RouteTarget::Handler(handler.clone())
                    }
                    (Some(_), Some(_)) => {
                        return fail(
                            rat("handler"),
                            "a route has a backend or a handler, not both",
                        );
                    }
                    (None, None) => return fail(rat("backend"), "missing (or set handler)"),
                },
                strip_prefix: r.strip_prefix,
                forward_auth,
            });
        }
        sets.insert(
            name.clone(),
            RouteSet {
                name,
                alpn,
                trusted_proxies,
                routes,
                stun_backend,
            },
        );
    }
    Ok(sets)
}

/// `plain_listen`, checked against the route sets and the TLS listeners.
pub fn plain_listeners(
    raw: Vec<RawPlainListener>,
    sets: &BTreeMap<String, RouteSet>,
    tls_listen: &[SocketAddr],
) -> Result<Vec<PlainListener>, FieldError> {
    let mut out: Vec<PlainListener> = Vec::new();
    for (i, l) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("plain_listen[{i}].{field}");
        if tls_listen.contains(&l.addr.0) || out.iter().any(|o| o.addr == l.addr.0) {
            return fail(at("addr"), format!("duplicate address {}", l.addr.0));
        }
        if !sets.contains_key(&l.routes.0) {
            let known: Vec<&str> = sets.keys().map(String::as_str).collect();
            return fail(
                at("routes"),
                format!(
                    "unknown route set {:?} (expected one of: {})",
                    l.routes.0,
                    known.join(", ")
                ),
            );
        }
        out.push(PlainListener {
            addr: l.addr.0,
            routes: l.routes.0,
        });
    }
    Ok(out)
}

/// A request path: starts with `/`, no spaces or control characters.
fn check_path(field: &str, path: &str) -> Result<(), FieldError> {
    let ok = path.starts_with('/') && http::uri::PathAndQuery::try_from(path).is_ok();
    if ok {
        Ok(())
    } else {
        fail(field, format!("invalid path {path:?} (expected e.g. /api)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_ranges_contain_their_addresses_only() {
        let v4 = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(v4.contains("10.1.200.3".parse().unwrap()));
        assert!(!v4.contains("10.2.0.1".parse().unwrap()));
        assert!(v4.contains("::ffff:10.1.0.9".parse().unwrap()));
        let host = Cidr::parse("::1").unwrap();
        assert_eq!(host.prefix, 128);
        assert!(host.contains("::1".parse().unwrap()));
        assert!(!host.contains("::2".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
