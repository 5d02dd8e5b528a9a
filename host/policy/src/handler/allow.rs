//! What a handler may reach: `outbound.allow` patterns
//! (`scheme://host:port`, `*` for a host label or the port) and the address
//! rule behind them (loopback, private, link-local and other non-public
//! addresses are refused unless a pattern names that IP literally). Pure;
//! used by `handler/outbound.rs` before anything is dialled.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One `outbound.allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowPattern {
    https: bool,
    host: HostPattern,
    /// `None`: any port (`:*`).
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any host.
    Any,
    /// `*.parent`: one label under `parent`.
    Label(String),
    /// An exact name, lower case.
    Name(String),
    /// An IP literal, which also lifts the address rule for that IP.
    Ip(IpAddr),
}

/// Where an outgoing request goes, from its URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `https` (else `http`).
    pub https: bool,
    /// Lower-case name or IP literal (no brackets).
    pub host: String,
    /// The port, the scheme's default when the URI has none.
    pub port: u16,
}

// === impl AllowPattern ===

impl AllowPattern {
    /// Parses `scheme://host:port`; the message says what is wrong.
    pub fn parse(text: &str) -> Result<AllowPattern, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?}: expected scheme://host:port"))?;
        let https = match scheme {
            "https" => true,
            "http" => false,
            other => {
                return Err(format!(
                    "{text:?}: unsupported scheme {other:?} (http or https)"
                ));
            }
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{text:?}: only scheme://host:port (no path, query or user)"
            ));
        }
        let (host, port) = split_host_port(rest)
            .ok_or_else(|| format!("{text:?}: needs a port (e.g. :443, or :* for any)"))?;
        let port = match port {
            "*" => None,
            p => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{text:?}: invalid port {p:?}"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(parent) = host.strip_prefix("*.") {
            check_name(parent).map_err(|m| format!("{text:?}: {m}"))?;
            HostPattern::Label(parent.to_owned())
        } else if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            HostPattern::Ip(ip)
        } else {
            check_name(&host).map_err(|m| format!("{text:?}: {m}"))?;
            HostPattern::Name(host)
        };
        Ok(AllowPattern { https, host, port })
    }

    /// Whether a request to `to` matches.
    pub fn matches(&self, to: &Destination) -> bool {
        if self.https != to.https || self.port.is_some_and(|p| p != to.port) {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Label(parent) => to
                .host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            HostPattern::Name(name) => *name == to.host,
            HostPattern::Ip(ip) => to.host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
        }
    }

    /// Whether this pattern names `ip` literally for `to`'s scheme and port.
    fn names_ip(&self, ip: IpAddr, to: &Destination) -> bool {
        matches!(self.host, HostPattern::Ip(named) if named == ip)
            && self.https == to.https
            && self.port.is_none_or(|p| p == to.port)
    }
}

impl fmt::Display for AllowPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://")?;
        match &self.host {
            HostPattern::Any => write!(f, "*")?,
            HostPattern::Label(parent) => write!(f, "*.{parent}")?,
            HostPattern::Name(name) => write!(f, "{name}")?,
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostPattern::Ip(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => write!(f, ":*"),
        }
    }
}

/// `host:port` or `[v6]:port`.
fn split_host_port(text: &str) -> Option<(&str, &str)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    let (host, port) = text.rsplit_once(':')?;
    (!host.is_empty() && !host.contains(':')).then_some((host, port))
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid host name {name:?}"))
    }
}

// === impl Destination ===

impl Destination {
    /// The destination of `uri`; `None` without a host or with a scheme
    /// other than http/https.
    pub fn of(uri: &http::Uri) -> Option<Destination> {
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = uri.host()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Destination { https, host, port })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Whether any pattern allows `to`.
pub fn allowed(patterns: &[AllowPattern], to: &Destination) -> bool {
    patterns.iter().any(|p| p.matches(to))
}

/// Whether `to` may be dialled at `ip`: a public address, or one a
/// pattern names literally.
pub fn address_allowed(patterns: &[AllowPattern], to: &Destination, ip: IpAddr) -> bool {
    is_public(ip) || patterns.iter().any(|p| p.names_ip(ip, to))
}

/// Not loopback, private, link-local, shared (CGNAT), unspecified,
/// multicast, broadcast, documentation or otherwise reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(url: &str) -> Destination {
        Destination::of(&url.parse().unwrap()).unwrap()
    }

    fn pattern(text: &str) -> AllowPattern {
        AllowPattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        let any_443 = pattern("https://*:443");
        assert!(any_443.matches(&to("https://matrix.org/x")));
        assert!(!any_443.matches(&to("http://matrix.org/")), "scheme");
        assert!(!any_443.matches(&to("https://matrix.org:8448/")), "port");
        let label = pattern("https://*.example.com:*");
        assert!(label.matches(&to("https://a.example.com:9/")));
        assert!(!label.matches(&to("https://example.com/")));
        assert!(!label.matches(&to("https://a.b.example.com/")));
        let exact = pattern("https://LK.Hearth.Example:443");
        assert!(exact.matches(&to("https://lk.hearth.example/")));
        assert!(exact.matches(&to("https://lk.hearth.example./")));
        let v6 = pattern("http://[::1]:8080");
        assert!(v6.matches(&to("http://[::1]:8080/")));
        assert_eq!(v6.to_string(), "http://[::1]:8080");
        assert_eq!(label.to_string(), "https://*.example.com:*");
    }

    #[test]
    fn bad_patterns_say_why() {
        for (text, why) in [
            ("matrix.org:443", "expected scheme://host:port"),
            ("ftp://a:21", "unsupported scheme"),
            ("https://a", "needs a port"),
            ("https://a:0", "invalid port"),
            ("https://a:x", "invalid port"),
            ("https://a:443/path", "no path"),
            ("https://a b:443", "invalid host name"),
            ("https://*.:443", "invalid host name"),
        ] {
            let err = AllowPattern::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn non_public_addresses_need_a_literal_pattern() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        let patterns = [pattern("https://*:443"), pattern("https://127.0.0.1:*")];
        let d = to("https://127.0.0.1:8448/");
        assert!(address_allowed(&patterns, &d, "127.0.0.1".parse().unwrap()));
        assert!(!address_allowed(
            &patterns,
            &d,
            "127.0.0.2".parse().unwrap()
        ));
        // A name that resolves to loopback is not named literally.
        let name = to("https://localhost:443/");
        assert!(allowed(&patterns, &name));
        assert!(!address_allowed(
            &patterns,
            &name,
            "127.0.0.2".parse().unwrap()
        ));
        assert!(
            !address_allowed(
                &[pattern("http://127.0.0.1:*")],
                &d,
                "127.0.0.1".parse().unwrap()
            ),
            "the literal pattern is for http only"
        );
    }
}
