//! IP address ranges in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`) and
//! matching a hello's source address against them.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`) are treated as the IPv4
//! address they carry, on both sides: `10.0.0.0/8` contains
//! `::ffff:10.1.2.3`, and `::ffff:10.0.0.0/104` is the same range as
//! `10.0.0.0/8`. The source address text itself comes from
//! [`ClientHello::source_ip`].

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::ClientHello;

/// Bits in an IPv4 address.
const V4_BITS: u8 = 32;
/// Bits in an IPv6 address.
const V6_BITS: u8 = 128;
/// Prefix length of the IPv4-mapped block `::ffff:0:0/96`.
const V4_MAPPED_PREFIX: u8 = 96;

/// An address range: a network address and a prefix length. Host bits given
/// in the text are cleared (`10.1.2.3/8` is `10.0.0.0/8`); a bare address is
/// a single-address range (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a string is not a valid [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    InvalidAddress(String),
    /// The prefix length is not a number within the address family's size.
    InvalidPrefix(String),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::InvalidAddress(s) => write!(f, "{s:?} is not an IP address"),
            CidrError::InvalidPrefix(s) => write!(f, "{s:?} is not a valid prefix length"),
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The range `addr/prefix`, host bits cleared; `None` if `prefix` is
    /// longer than the address. IPv4-mapped IPv6 ranges of prefix 96 or more
    /// become the IPv4 range they cover.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= V4_MAPPED_PREFIX => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - V4_MAPPED_PREFIX),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        if prefix > bits(addr) {
            return None;
        }
        Some(Cidr {
            network: mask(addr, prefix),
            prefix,
        })
    }

    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True if `addr` is in the range. An address of the other family is
    /// not, except that IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.network.is_ipv4() && mask(addr, self.prefix) == self.network
    }

    /// True if the hello's source address is in the range; false if the
    /// address does not parse.
    pub fn contains_source(&self, hello: &ClientHello) -> bool {
        hello.source_ip().is_some_and(|ip| self.contains(ip))
    }
}

/// True if any of `ranges` contains the hello's source address.
pub fn any_contains_source(ranges: &[Cidr], hello: &ClientHello) -> bool {
    hello
        .source_ip()
        .is_some_and(|ip| ranges.iter().any(|range| range.contains(ip)))
}

fn bits(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => V4_BITS,
        IpAddr::V6(_) => V6_BITS,
    }
}

/// Clears every bit after the first `prefix`; `prefix` is at most the
/// family's bit count.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let keep = u32::MAX
                .checked_shl(u32::from(V4_BITS - prefix))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX
                .checked_shl(u32::from(V6_BITS - prefix))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| CidrError::InvalidAddress(addr_text.to_owned()))?;
        let prefix = match prefix_text {
            None => bits(addr),
            // Digits only: `u8::from_str` would also take a leading `+`.
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse()
                .map_err(|_| CidrError::InvalidPrefix(p.to_owned()))?,
            Some(p) => return Err(CidrError::InvalidPrefix(p.to_owned())),
        };
        Cidr::new(addr, prefix).ok_or_else(|| CidrError::InvalidPrefix(prefix.to_string()))
    }
}

/// `network/prefix`, e.g. `10.0.0.0/8`.
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_ranges() {
        let range = cidr("10.0.0.0/8");
        assert!(range.contains(ip("10.0.0.0")));
        assert!(range.contains(ip("10.255.255.255")));
        assert!(!range.contains(ip("11.0.0.0")));
        assert!(!range.contains(ip("9.255.255.255")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.7")));
        assert!(cidr("192.0.2.7/32").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7/32").contains(ip("192.0.2.8")));
    }

    #[test]
    fn ipv6_ranges() {
        let range = cidr("2001:db8::/32");
        assert!(range.contains(ip("2001:db8::1")));
        assert!(range.contains(ip("2001:db8:ffff::1")));
        assert!(!range.contains(ip("2001:db9::1")));
        assert!(cidr("::/0").contains(ip("::1")));
        assert!(
            !cidr("::/0").contains(ip("10.0.0.1")),
            "families do not mix"
        );
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!cidr("10.0.0.0/8").contains(ip("::ffff:11.1.2.3")));
        let mapped = cidr("::ffff:10.0.0.0/104");
        assert_eq!(mapped, cidr("10.0.0.0/8"));
        assert!(mapped.contains(ip("10.9.9.9")));
    }

    #[test]
    fn host_bits_are_cleared_and_bare_addresses_are_single() {
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("192.0.2.1").to_string(), "192.0.2.1/32");
        assert_eq!(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(cidr("2001:db8::1/32").network(), ip("2001:db8::"));
        assert_eq!(cidr("2001:db8::1/32").prefix(), 32);
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::InvalidPrefix("33".into()))
        );
        assert_eq!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::InvalidPrefix("129".into()))
        );
        assert_eq!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::InvalidAddress("10.0.0".into()))
        );
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/x",
            "10.0.0.0/8/8",
            "10.0.0.0/999",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::InvalidPrefix(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn source_matching() {
        let hello = ClientHello::default().with_source("192.168.1.20");
        assert!(cidr("192.168.0.0/16").contains_source(&hello));
        assert!(!cidr("10.0.0.0/8").contains_source(&hello));
        let ranges = [cidr("10.0.0.0/8"), cidr("192.168.0.0/16")];
        assert!(any_contains_source(&ranges, &hello));
        assert!(!any_contains_source(&ranges, &ClientHello::default()));
        assert!(!any_contains_source(&[], &hello));
    }
}
