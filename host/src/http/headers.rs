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

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers that are always removed, besides those `Connection`
/// names. `Upgrade` is handled apart.
const HOP_BY_HOP: [&str; 3] = ["proxy-connection", "keep-alive", "transfer-encoding"];

/// What the forwarding headers say about one request.
pub struct Forwarding<'a> {
    /// The client's address (the TCP peer).
    pub source: IpAddr,
    /// `https` or `http`.
    pub proto: &'static str,
    /// The host the client asked for.
    pub host: &'a str,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
}

/// Removes hop-by-hop headers; when `upgrade` is true, keeps `Upgrade`
/// and sets `Connection: upgrade`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    headers.remove(header::CONNECTION);
    for name in HOP_BY_HOP {
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
    let source = fwd.source.to_canonical();
    let previous_for = fwd
        .trusted
        .then(|| joined(headers, &X_FORWARDED_FOR))
        .flatten();
    let xff = match previous_for {
        Some(previous) => format!("{previous}, {source}"),
        None => source.to_string(),
    };
    set(headers, &X_FORWARDED_FOR, &xff);
    if !(fwd.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        set(headers, &X_FORWARDED_PROTO, fwd.proto);
    }
    if !(fwd.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        set(headers, &X_FORWARDED_HOST, fwd.host);
    }
    let node = match source {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    let element = format!(
        "for={node};host={};proto={}",
        quote_if_needed(fwd.host),
        fwd.proto
    );
    let previous = fwd
        .trusted
        .then(|| joined(headers, &header::FORWARDED))
        .flatten();
    let forwarded = match previous {
        Some(previous) => format!("{previous}, {element}"),
        None => element,
    };
    set(headers, &header::FORWARDED, &forwarded);
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

/// Replaces `name` with `value` (dropped when not a valid header value).
fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    headers.remove(name);
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), value);
    }
}

/// RFC 7239 §4: a value that is not a token must be a quoted string.
fn quote_if_needed(value: &str) -> String {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
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
            source: "203.0.113.7".parse().unwrap(),
            proto: "https",
            host: "app.example",
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
            source: "2001:db8::1".parse().unwrap(),
            proto: "https",
            host: "app.example:8443",
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
}
