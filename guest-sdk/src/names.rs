//! Server-name helpers: normalising, validating and matching DNS names
//! against exact and wildcard patterns.
//!
//! Names compare ASCII-case-insensitively and ignore one trailing dot, so
//! `Turn.Example.COM.` and `turn.example.com` are the same name. The edge
//! already sends SNI lowercased without the dot; these helpers do not rely on
//! it. A wildcard `*.example.com` matches exactly one extra label, like a
//! TLS certificate wildcard (RFC 6125 §6.4.3): it matches `a.example.com` but
//! neither `example.com` nor `a.b.example.com`. The pattern `*` matches every
//! name.
//!
//! Internationalised names must be given in their ASCII (`xn--`) form, as
//! they appear in SNI.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// RFC 1035: at most 253 characters in the text form without the trailing dot.
const MAX_NAME_LEN: usize = 253;
/// RFC 1035: at most 63 octets per label.
const MAX_LABEL_LEN: usize = 63;

/// Lowercases `name` and removes one trailing dot.
pub fn normalize(name: &str) -> String {
    strip_dot(name).to_ascii_lowercase()
}

/// True if `name` matches `pattern`: `*` (any name), `*.suffix` (one label
/// before `suffix`) or an exact name. Both sides ignore case and a trailing
/// dot. An empty name matches nothing.
pub fn matches(pattern: &str, name: &str) -> bool {
    let name = strip_dot(name);
    if name.is_empty() {
        return false;
    }
    let pattern = strip_dot(pattern);
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => matches_wildcard(suffix, name),
        None => pattern.eq_ignore_ascii_case(name),
    }
}

/// True if `name` is an IP address rather than a host name: `192.0.2.1`,
/// `2001:db8::1` or `[2001:db8::1]`. RFC 6066 forbids IP literals in SNI,
/// but some clients send them.
pub fn is_ip_literal(name: &str) -> bool {
    let name = strip_dot(name);
    let unbracketed = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    unbracketed.parse::<Ipv6Addr>().is_ok() || name.parse::<Ipv4Addr>().is_ok()
}

/// True if `name` is a valid DNS host name (one trailing dot allowed):
/// 1–63 letters, digits or hyphens per label, no label starting or ending
/// with a hyphen, at most 253 characters, and not an IP address. Underscores
/// are refused, as in host names.
pub fn is_valid_dns_name(name: &str) -> bool {
    let name = strip_dot(name);
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(is_valid_label)
        && !is_ip_literal(name)
        // A numeric top-level label would make the name look like an address.
        && !name.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn strip_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

fn matches_wildcard(suffix: &str, name: &str) -> bool {
    // name = <label> "." <suffix>, with a non-empty label holding no dot.
    let Some(split) = name.len().checked_sub(suffix.len() + 1) else {
        return false;
    };
    if !name.is_char_boundary(split) {
        return false;
    }
    let (label, rest) = name.split_at(split);
    !label.is_empty()
        && !label.contains('.')
        && rest.as_bytes()[0] == b'.'
        && rest[1..].eq_ignore_ascii_case(suffix)
}

/// A validated name pattern, normalised: parse it once from config, then
/// [`matches`](Pattern::matches) it against each hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: any server name.
    Any,
    /// `*.example.com`: one label before the stored suffix (`example.com`).
    Wildcard(String),
    /// `example.com`: this name only.
    Exact(String),
}

/// Why a string is not a valid [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// The name part is not a valid DNS name.
    InvalidName(String),
    /// A `*` appears other than as the whole pattern or its first label.
    MisplacedWildcard(String),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::InvalidName(p) => write!(f, "{p:?} is not a valid DNS name"),
            PatternError::MisplacedWildcard(p) => write!(
                f,
                "{p:?}: a wildcard must be the whole first label (\"*.example.com\") or \"*\""
            ),
        }
    }
}

impl std::error::Error for PatternError {}

impl Pattern {
    /// True if `name` matches; see the [module docs](self) for the rules.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => !strip_dot(name).is_empty(),
            Pattern::Wildcard(suffix) => matches_wildcard(suffix, strip_dot(name)),
            Pattern::Exact(exact) => exact.eq_ignore_ascii_case(strip_dot(name)),
        }
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "*" {
            return Ok(Pattern::Any);
        }
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(suffix) => (true, suffix),
            None => (false, s),
        };
        if name.contains('*') {
            return Err(PatternError::MisplacedWildcard(s.to_owned()));
        }
        if !is_valid_dns_name(name) {
            return Err(PatternError::InvalidName(s.to_owned()));
        }
        let name = normalize(name);
        Ok(if wildcard {
            Pattern::Wildcard(name)
        } else {
            Pattern::Exact(name)
        })
    }
}

/// The normalised pattern text: `*`, `*.example.com` or `example.com`.
impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
            Pattern::Exact(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowercases_and_drops_one_trailing_dot() {
        assert_eq!(normalize("Turn.Example.COM."), "turn.example.com");
        assert_eq!(normalize("example.com"), "example.com");
        assert_eq!(normalize("."), "");
    }

    #[test]
    fn exact_matching_ignores_case_and_trailing_dot() {
        assert!(matches("example.com", "example.com"));
        assert!(matches("example.com", "EXAMPLE.com."));
        assert!(matches("Example.com.", "example.com"));
        assert!(!matches("example.com", "www.example.com"));
        assert!(!matches("example.com", "example.co"));
        assert!(!matches("example.com", ""));
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        assert!(matches("*.example.com", "a.example.com"));
        assert!(matches("*.example.com", "A.Example.Com."));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("*.example.com", ".example.com"));
        assert!(!matches("*.example.com", "a.b.example.com"));
        assert!(!matches("*.example.com", "aexample.com"));
        assert!(!matches("*.example.com", "a.example.org"));
    }

    #[test]
    fn star_matches_any_non_empty_name() {
        assert!(matches("*", "anything.example"));
        assert!(!matches("*", ""));
    }

    #[test]
    fn wildcard_matching_survives_non_ascii_names() {
        assert!(!matches("*.example.com", "é.example.com.x"));
        assert!(matches("*.example.com", "é.example.com"));
        assert!(!matches("*.é.com", "a.ée.com"));
    }

    #[test]
    fn ip_literals() {
        assert!(is_ip_literal("192.0.2.1"));
        assert!(is_ip_literal("2001:db8::1"));
        assert!(is_ip_literal("[2001:db8::1]"));
        assert!(is_ip_literal("::ffff:192.0.2.1"));
        assert!(!is_ip_literal("example.com"));
        assert!(!is_ip_literal("192.0.2.1.example"));
        assert!(!is_ip_literal("[example.com]"));
    }

    #[test]
    fn dns_name_validation() {
        for ok in [
            "example.com",
            "a-b.example.com.",
            "localhost",
            "xn--bcher-kva.example",
            "a1.b2",
        ] {
            assert!(is_valid_dns_name(ok), "{ok}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 4].join(".") + ".com";
        for bad in [
            "",
            ".",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "*.example.com",
            "192.0.2.1",
            "1.2.3.4.5",
            "a b.com",
            "exa/mple.com",
            &long_label,
            &long_name,
        ] {
            assert!(!is_valid_dns_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn patterns_parse_normalise_and_match() {
        assert_eq!("*".parse(), Ok(Pattern::Any));
        assert_eq!(
            " *.Example.COM. ".parse(),
            Ok(Pattern::Wildcard("example.com".into()))
        );
        assert_eq!("A.example".parse(), Ok(Pattern::Exact("a.example".into())));
        let wildcard: Pattern = "*.example.com".parse().unwrap();
        assert!(wildcard.matches("x.example.com."));
        assert!(!wildcard.matches("x.y.example.com"));
        assert_eq!(wildcard.to_string(), "*.example.com");
        assert!(Pattern::Any.matches("x"));
        assert!(!Pattern::Any.matches(""));
    }

    #[test]
    fn bad_patterns_are_refused_with_reasons() {
        assert_eq!(
            "a.*.com".parse::<Pattern>(),
            Err(PatternError::MisplacedWildcard("a.*.com".into()))
        );
        assert_eq!(
            "**.com".parse::<Pattern>(),
            Err(PatternError::MisplacedWildcard("**.com".into()))
        );
        assert_eq!(
            "*.".parse::<Pattern>(),
            Err(PatternError::InvalidName("*.".into()))
        );
        assert_eq!(
            "10.0.0.1".parse::<Pattern>(),
            Err(PatternError::InvalidName("10.0.0.1".into()))
        );
    }
}
