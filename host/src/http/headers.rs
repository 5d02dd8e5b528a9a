//! Header rewriting on the way through: hop-by-hop headers removed (RFC
//! 9110 §7.6.1: `Connection` and every header it names, plus
//! `Proxy-Connection`, `Keep-Alive`, `TE` other than `trailers`,
//! `Transfer-Encoding` and `Upgrade`; an upgrade request keeps its
//! `Upgrade` and `Connection: upgrade`), and the forwarding headers
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and
//! `Forwarded` (RFC 7239) set from the connection. Copies sent by the client
//! are dropped unless it is a trusted proxy, whose values are kept and
//! extended. Used by `http/handler.rs`.

use std::net::IpAddr;
use std::sync::Mutex;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

use crate::sync::lock;

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers that are always removed, besides those `Connection`
/// names. `Upgrade` is handled apart.
/// Named once, as the map's own type, so each removal is a lookup without
/// parsing a name.
const HOP_BY_HOP: [HeaderName; 3] = [
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TRANSFER_ENCODING,
];

/// What the forwarding headers say about one request.
pub struct Forwarding<'a> {
    /// The client (the TCP peer), as written once per connection.
    pub source: &'a SourceText,
    /// `https` or `http`.
    pub proto: &'static str,
    /// The host the client asked for, as it sent it (a valid string).
    pub host: &'a HeaderValue,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
}

impl Forwarding<'_> {
    /// The host as text.
    pub fn host_str(&self) -> &str {
        self.host.to_str().unwrap_or_default()
    }
}

/// A client address in the two forms the forwarding headers use, made once
/// per connection rather than once per request.
#[derive(Debug, Clone)]
pub struct SourceText {
    /// `X-Forwarded-For`'s form: `203.0.113.7`, `2001:db8::1`.
    xff: HeaderValue,
    /// `Forwarded`'s node (RFC 7239 §6): `203.0.113.7`, `"[2001:db8::1]"`.
    node: String,
    /// The last `Forwarded` value made for this client from scratch (no
    /// trusted chain), for the next request naming the same host.
    last_forwarded: LastForwarded,
}

/// `(host, proto, Forwarded value)`: a connection's requests nearly always
/// name the same host, so the value is built once.
#[derive(Debug, Default)]
struct LastForwarded(Mutex<Option<(HeaderValue, &'static str, HeaderValue)>>);

impl Clone for LastForwarded {
    fn clone(&self) -> Self {
        LastForwarded::default()
    }
}

impl SourceText {
    /// The forms of `source` (IPv4-mapped IPv6 shown as IPv4).
    pub fn new(source: IpAddr) -> SourceText {
        let source = source.to_canonical();
        let text = source.to_string();
        let node = match source {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        SourceText {
            xff: HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
                .expect("an IP address is a valid header value"),
            node,
            last_forwarded: LastForwarded::default(),
        }
    }
}

/// Removes hop-by-hop headers; when `upgrade` is true, keeps `Upgrade`
/// and sets `Connection: upgrade`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most requests carry none of them: one pass over the names instead
    // of a lookup per name.
    let hop_by_hop = |name: &HeaderName| {
        name == header::CONNECTION
            || name == header::TE
            || name == header::UPGRADE
            || HOP_BY_HOP.contains(name)
    };
    if !upgrade && !headers.keys().any(hop_by_hop) {
        return;
    }
    // Names listed in `Connection`, but for those removed below anyway
    // (`Connection: keep-alive` and `close` are the usual values).
    let handled_below = |token: &str| {
        [
            "close",
            "keep-alive",
            "upgrade",
            "proxy-connection",
            "transfer-encoding",
        ]
        .iter()
        .any(|h| token.eq_ignore_ascii_case(h))
    };
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| !handled_below(token))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    let keep_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    headers.remove(header::TE);
    if keep_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether a request asks to switch protocols (`Connection: upgrade` and an
/// `Upgrade` header).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Sets the forwarding headers for `fwd`.
pub fn set_forwarding(headers: &mut HeaderMap, fwd: &Forwarding<'_>) {
    let previous_for = fwd
        .trusted
        .then(|| joined(headers, &X_FORWARDED_FOR))
        .flatten();
    match previous_for {
        Some(previous) => {
            let source = fwd.source.xff.to_str().unwrap_or_default();
            set(headers, &X_FORWARDED_FOR, format!("{previous}, {source}"));
        }
        // The common case: a shared copy of the connection's value.
        None => {
            headers.insert(X_FORWARDED_FOR.clone(), fwd.source.xff.clone());
        }
    }
    if !(fwd.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(fwd.proto),
        );
    }
    if !(fwd.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        headers.insert(X_FORWARDED_HOST.clone(), fwd.host.clone());
    }
    let previous = fwd
        .trusted
        .then(|| joined(headers, &header::FORWARDED))
        .flatten();
    let last = &fwd.source.last_forwarded.0;
    if previous.is_none() {
        let last = lock(last);
        if let Some((host, proto, value)) = &*last
            && host == fwd.host
            && *proto == fwd.proto
        {
            headers.insert(header::FORWARDED, value.clone());
            return;
        }
    }
    let mut forwarded = String::with_capacity(
        previous.as_ref().map_or(0, |p| p.len() + 2) + fwd.source.node.len() + fwd.host.len() + 24,
    );
    let from_scratch = previous.is_none();
    if let Some(previous) = previous {
        forwarded.push_str(&previous);
        forwarded.push_str(", ");
    }
    forwarded.push_str("for=");
    forwarded.push_str(&fwd.source.node);
    forwarded.push_str(";host=");
    push_quoted_if_needed(&mut forwarded, fwd.host_str());
    forwarded.push_str(";proto=");
    forwarded.push_str(fwd.proto);
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(forwarded)) {
        Ok(value) => {
            if from_scratch {
                *lock(last) = Some((fwd.host.clone(), fwd.proto, value.clone()));
            }
            headers.insert(header::FORWARDED, value);
        }
        Err(_) => {
            headers.remove(header::FORWARDED);
        }
    }
}

/// Every value of `name` joined with `, `, if there is one.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Replaces `name` with `value` (removed when `value` is not a valid header
/// value). The string becomes the header's bytes without a copy.
fn set(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        Ok(value) => {
            headers.insert(name.clone(), value);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// Appends `value`, as a quoted string unless it is a token (RFC 7239 §4).
fn push_quoted_if_needed(out: &mut String, value: &str) {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers, deflate"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["accept", "te"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_connection_upgrade() {
        let mut h = map(&[
            ("connection", "Upgrade, x-other"),
            ("upgrade", "websocket"),
            ("x-other", "1"),
        ]);
        assert!(is_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("x-other"));
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn an_untrusted_clients_forwarding_headers_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        let fwd = Forwarding {
            source: &SourceText::new("203.0.113.7".parse().unwrap()),
            proto: "https",
            host: &HeaderValue::from_static("app.example"),
            trusted: false,
        };
        set_forwarding(&mut h, &fwd);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.7;host=app.example;proto=https"
        );
    }

    #[test]
    fn a_trusted_proxys_chain_is_extended() {
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=198.51.100.1"),
        ]);
        let fwd = Forwarding {
            source: &SourceText::new("2001:db8::1".parse().unwrap()),
            proto: "https",
            host: &HeaderValue::from_static("app.example:8443"),
            trusted: true,
        };
        set_forwarding(&mut h, &fwd);
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 2001:db8::1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.example:8443");
        assert_eq!(
            h["forwarded"],
            "for=198.51.100.1, for=\"[2001:db8::1]\";host=\"app.example:8443\";proto=https"
        );
    }

    #[test]
    fn a_connections_forwarded_value_follows_its_host() {
        let source = SourceText::new("203.0.113.7".parse().unwrap());
        let forwarded = |host: &'static str, proto: &'static str| {
            let mut h = HeaderMap::new();
            let fwd = Forwarding {
                source: &source,
                proto,
                host: &HeaderValue::from_static(host),
                trusted: false,
            };
            set_forwarding(&mut h, &fwd);
            h["forwarded"].to_str().unwrap().to_owned()
        };
        assert_eq!(
            forwarded("a.example", "https"),
            "for=203.0.113.7;host=a.example;proto=https"
        );
        assert_eq!(
            forwarded("a.example", "https"),
            "for=203.0.113.7;host=a.example;proto=https"
        );
        assert_eq!(
            forwarded("b.example", "https"),
            "for=203.0.113.7;host=b.example;proto=https"
        );
        assert_eq!(
            forwarded("b.example", "http"),
            "for=203.0.113.7;host=b.example;proto=http"
        );
        assert_eq!(
            forwarded("a.example", "https"),
            "for=203.0.113.7;host=a.example;proto=https"
        );
    }

    #[test]
    fn a_host_that_is_not_a_token_is_quoted_and_escaped() {
        let mut h = HeaderMap::new();
        let fwd = Forwarding {
            source: &SourceText::new("::ffff:10.1.2.3".parse().unwrap()),
            proto: "http",
            host: &HeaderValue::from_static("a\"b:80"),
            trusted: false,
        };
        set_forwarding(&mut h, &fwd);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["forwarded"], "for=10.1.2.3;host=\"a\\\"b:80\";proto=http");
    }
}
