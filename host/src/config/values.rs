//! Validating newtypes for config values: listen addresses, backend
//! addresses and names, host names and ALPN ids.
//! Each rejects bad text while the YAML is read, so the error carries the
//! field's path and line.
//!
//! Neighbours: durations and sizes are in `config/duration.rs`; the structs
//! that hold these are in `config/raw.rs`.

use std::fmt;
use std::net::SocketAddr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// The longest host name (RFC 1035 §2.3.4), in bytes.
const MAX_HOSTNAME_LEN: usize = 253;
/// The longest label of a host name (RFC 1035 §2.3.4), in bytes.
const MAX_LABEL_LEN: usize = 63;
/// Backend names show up in logs and metric labels: keep them short.
const MAX_BACKEND_NAME_LEN: usize = 63;
/// An ALPN protocol id is 1..=255 bytes (RFC 7301 §3.1).
const MAX_ALPN_LEN: usize = 255;

/// `workers`: how many threads serve connections; `auto` (the default)
/// is one per two CPUs the edge may run on, at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers(pub Option<usize>);

/// The most worker threads accepted.
pub const MAX_WORKERS: u64 = 1024;

/// A local address to accept TLS on: `127.0.0.1:8443`, `[::]:443`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

/// `listen`: one address or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenList(pub Vec<ListenAddr>);

/// Where a backend is dialled: an IP socket address, or `host:port` with the
/// host resolved at dial time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddr {
    /// An IP address or a host name.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

/// A backend's name: lowercase letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendName(pub String);

/// A DNS host name, lowercased; `*.` as the first label is allowed (wildcard
/// certificate names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hostname(pub String);

/// An ALPN protocol id such as `h2` or `http/1.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alpn(pub String);

// === parsing ===

impl ListenAddr {
    /// Parses an IP socket address (`127.0.0.1:8443`, `[::1]:8443`).
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        text.parse().map(ListenAddr).map_err(|_| {
            format!("invalid socket address {text:?} (expected e.g. 127.0.0.1:8443 or [::]:443)")
        })
    }
}

impl BackendAddr {
    /// Parses `127.0.0.1:5349`, `[::1]:5349` or `localhost:8090`.
    pub fn parse(text: &str) -> Result<BackendAddr, String> {
        let invalid = || {
            format!("invalid backend address {text:?} (expected host:port, e.g. 127.0.0.1:5349)")
        };
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(BackendAddr {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        if port == 0
            || host.contains(':')
            || Hostname::parse(host).is_err()
            || host.starts_with('*')
        {
            return Err(invalid());
        }
        Ok(BackendAddr {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl BackendName {
    /// Checks the allowed alphabet and length.
    pub fn parse(text: &str) -> Result<BackendName, String> {
        let ok = !text.is_empty()
            && text.len() <= MAX_BACKEND_NAME_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(BackendName(text.to_owned()))
        } else {
            Err(format!(
                "invalid backend name {text:?} (1 to {MAX_BACKEND_NAME_LEN} of a-z, 0-9, '-', '_')"
            ))
        }
    }
}

impl Hostname {
    /// Checks RFC 1123 host name syntax; lowercases; allows a leading `*.`.
    pub fn parse(text: &str) -> Result<Hostname, String> {
        let invalid = || format!("invalid host name {text:?}");
        let name = text.to_ascii_lowercase();
        let rest = name.strip_prefix("*.").unwrap_or(&name);
        if rest.is_empty() || name.len() > MAX_HOSTNAME_LEN {
            return Err(invalid());
        }
        for label in rest.split('.') {
            let ok = !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(invalid());
            }
        }
        Ok(Hostname(name))
    }
}

impl Alpn {
    /// Checks the length limits of an ALPN protocol id.
    pub fn parse(text: &str) -> Result<Alpn, String> {
        if text.is_empty() || text.len() > MAX_ALPN_LEN {
            Err(format!(
                "invalid ALPN protocol {text:?} (1 to {MAX_ALPN_LEN} bytes)"
            ))
        } else {
            Ok(Alpn(text.to_owned()))
        }
    }
}

// === serde ===

/// Deserializes a newtype from a string through its `parse`.
macro_rules! from_str_visitor {
    ($ty:ty, $expecting:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                        <$ty>::parse(v).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(V)
            }
        }
    };
}

from_str_visitor!(ListenAddr, "a socket address such as 127.0.0.1:8443");
from_str_visitor!(BackendAddr, "a backend address such as 127.0.0.1:5349");
from_str_visitor!(BackendName, "a backend name");
from_str_visitor!(Hostname, "a host name");
from_str_visitor!(Alpn, "an ALPN protocol id");

impl<'de> serde::Deserialize<'de> for ListenList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListenList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a socket address or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ListenAddr::parse(v)
                    .map(|a| ListenList(vec![a]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut addrs = Vec::new();
                while let Some(addr) = seq.next_element::<ListenAddr>()? {
                    addrs.push(addr);
                }
                Ok(ListenList(addrs))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for Workers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Workers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "`auto` or a number of threads from 1 to {MAX_WORKERS}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "auto" {
                    Ok(Workers(None))
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if (1..=MAX_WORKERS).contains(&v) {
                    Ok(Workers(usize::try_from(v).ok()))
                } else {
                    Err(E::invalid_value(de::Unexpected::Unsigned(v), &self))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_addresses_accept_ips_and_host_names() {
        let v4 = BackendAddr::parse("127.0.0.1:5349").unwrap();
        assert_eq!((v4.host.as_str(), v4.port), ("127.0.0.1", 5349));
        let v6 = BackendAddr::parse("[::1]:7880").unwrap();
        assert_eq!(v6.to_string(), "[::1]:7880");
        let name = BackendAddr::parse("LocalHost:8090").unwrap();
        assert_eq!(name.to_string(), "localhost:8090");
        for bad in [
            "127.0.0.1",
            "localhost",
            "local host:1",
            "a:0",
            "a:65536",
            "::1:80",
            "*.a:1",
        ] {
            assert!(BackendAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names_follow_rfc_1123_with_wildcards() {
        assert_eq!(
            Hostname::parse("Hearth.Example").unwrap().0,
            "hearth.example"
        );
        assert_eq!(
            Hostname::parse("*.hearth.example").unwrap().0,
            "*.hearth.example"
        );
        for bad in [
            "",
            "-a.example",
            "a..example",
            "a_b.example",
            "*",
            "a.*.example",
            "x y",
        ] {
            assert!(Hostname::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backend_names_are_short_lowercase_words() {
        assert!(BackendName::parse("pocket_base-2").is_ok());
        for bad in ["", "Turn", "a b", "a.b", &"x".repeat(64)] {
            assert!(BackendName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_takes_one_address_or_a_list() {
        let one: ListenList = serde_yaml::from_str("\"127.0.0.1:8443\"").unwrap();
        assert_eq!(one.0.len(), 1);
        let two: ListenList = serde_yaml::from_str("[\"0.0.0.0:443\", \"[::]:443\"]").unwrap();
        assert_eq!(two.0.len(), 2);
        assert!(serde_yaml::from_str::<ListenList>("\"localhost:443\"").is_err());
    }
}
