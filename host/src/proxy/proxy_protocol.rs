//! The PROXY protocol (HAProxy's `proxy-protocol.txt`), both ways, on the
//! wire only (no I/O):
//! - [`header_v2`]: the binary version 2 header for TCP over IPv4 and IPv6,
//!   sent to a backend before any other byte so it learns the client's
//!   address (`proxy/relay.rs`);
//! - [`parse_prefix`] (over [`parse_v1`], [`v2_length`], [`parse_v2`]):
//!   headers a load balancer sends the edge, read by
//!   `proxy/accept_proxy.rs` (`accept_proxy`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// High nibble: version 2; low nibble: command PROXY (a relayed connection).
const VERSION_2_PROXY: u8 = 0x21;
/// High nibble: AF_INET; low nibble: STREAM.
const TCP_OVER_IPV4: u8 = 0x11;
/// High nibble: AF_INET6; low nibble: STREAM.
const TCP_OVER_IPV6: u8 = 0x21;
/// Address block length for IPv4: two 4-byte addresses and two ports.
const IPV4_BLOCK_LEN: u16 = 12;
/// Address block length for IPv6: two 16-byte addresses and two ports.
const IPV6_BLOCK_LEN: u16 = 36;
/// Fixed part: signature, version/command, family, length.
const FIXED_LEN: usize = 16;

/// The header for a TCP connection from `source` (the client) to
/// `destination` (the address it connected to). IPv4-mapped IPv6 addresses
/// are sent as IPv4; when the families still differ, both go as IPv6.
pub fn header_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let src_ip = source.ip().to_canonical();
    let dst_ip = destination.ip().to_canonical();
    let mut out = Vec::with_capacity(FIXED_LEN + usize::from(IPV6_BLOCK_LEN));
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_2_PROXY);
    match (src_ip, dst_ip) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(TCP_OVER_IPV4);
            out.extend_from_slice(&IPV4_BLOCK_LEN.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            out.push(TCP_OVER_IPV6);
            out.extend_from_slice(&IPV6_BLOCK_LEN.to_be_bytes());
            out.extend_from_slice(&as_v6(src).octets());
            out.extend_from_slice(&as_v6(dst).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// The longest version 1 header, `\r\n` included (section 2.1).
pub const V1_MAX: usize = 107;

/// What a received header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A relayed TCP connection: the client, and the address it connected to.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// Where the client connected (the balancer's public address).
        destination: SocketAddr,
    },
    /// v2 `LOCAL` (the balancer's own health check), v1 `UNKNOWN`, or an
    /// address family other than TCP over IPv4/IPv6: the connection's own
    /// addresses stand.
    Local,
}

/// Why received bytes are not a usable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Neither `PROXY ` nor the v2 signature.
    #[error("no PROXY protocol header")]
    Missing,
    /// A v1 line that does not parse.
    #[error("bad v1 header: {0}")]
    V1(&'static str),
    /// A v2 header that does not parse.
    #[error("bad v2 header: {0}")]
    V2(&'static str),
    /// Longer than allowed (v1: 107 bytes; v2: `max_v2_bytes`).
    #[error("header too long")]
    TooLong,
}

impl Malformed {
    /// The metric label.
    pub fn kind(self) -> &'static str {
        match self {
            Malformed::Missing => "missing",
            Malformed::V1(_) | Malformed::V2(_) => "malformed",
            Malformed::TooLong => "too_large",
        }
    }
}

/// Whether `head` starts a v1 header.
pub fn is_v1(head: &[u8]) -> bool {
    head.starts_with(b"PROXY ")
}

/// Whether `head` starts a v2 header.
pub fn is_v2(head: &[u8]) -> bool {
    head.starts_with(&SIGNATURE)
}

/// A header at the start of `bytes` (what has arrived so far): its
/// length and what it says once complete, `None` while every byte so far
/// could still be the start of one (then all of them belong to it).
pub fn parse_prefix(bytes: &[u8], max_v2: usize) -> Result<Option<(usize, Received)>, Malformed> {
    let v1 = b"PROXY ";
    let head = &bytes[..bytes.len().min(SIGNATURE.len())];
    if !(v1.starts_with(&head[..head.len().min(v1.len())]) || SIGNATURE.starts_with(head)) {
        return Err(Malformed::Missing);
    }
    if bytes.starts_with(v1) {
        let window = &bytes[..bytes.len().min(V1_MAX)];
        return match window.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && window[i - 1] == b'\r' => {
                parse_v1(&window[..=i]).map(|r| Some((i + 1, r)))
            }
            Some(_) => Err(Malformed::V1("line ends without CRLF")),
            None if window.len() >= V1_MAX => Err(Malformed::TooLong),
            None => Ok(None),
        };
    }
    if bytes.len() < FIXED_LEN {
        return Ok(None);
    }
    let fixed: &[u8; FIXED_LEN] = bytes[..FIXED_LEN].try_into().expect("FIXED_LEN bytes");
    let total = FIXED_LEN + v2_length(fixed, max_v2)?;
    if bytes.len() < total {
        return Ok(None);
    }
    parse_v2(fixed, &bytes[FIXED_LEN..total]).map(|r| Some((total, r)))
}

/// A whole v1 line, `PROXY ` to `\r\n` included.
pub fn parse_v1(line: &[u8]) -> Result<Received, Malformed> {
    if line.len() > V1_MAX {
        return Err(Malformed::TooLong);
    }
    let text = line
        .strip_prefix(b"PROXY ")
        .and_then(|l| l.strip_suffix(b"\r\n"))
        .ok_or(Malformed::V1("not a PROXY line"))?;
    let text = std::str::from_utf8(text).map_err(|_| Malformed::V1("not ASCII"))?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Ok(Received::Local),
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *family == "TCP4";
            let ip = |text: &str| -> Result<IpAddr, Malformed> {
                let ip = if v4 {
                    text.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    text.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| Malformed::V1("bad address"))
            };
            let port = |text: &str| -> Result<u16, Malformed> {
                let digits = !text.is_empty()
                    && text.len() <= 5
                    && text.bytes().all(|b| b.is_ascii_digit())
                    && (text == "0" || !text.starts_with('0'));
                digits
                    .then(|| text.parse::<u16>().ok())
                    .flatten()
                    .ok_or(Malformed::V1("bad port"))
            };
            Ok(Received::Proxied {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            })
        }
        _ => Err(Malformed::V1(
            "expected TCP4, TCP6 or UNKNOWN and four fields",
        )),
    }
}

/// The length of the address block and TLVs that follow a v2 header's
/// fixed part, checked against `max_total` (the whole header).
pub fn v2_length(fixed: &[u8; FIXED_LEN], max_total: usize) -> Result<usize, Malformed> {
    if !is_v2(fixed) {
        return Err(Malformed::Missing);
    }
    if fixed[12] >> 4 != 2 {
        return Err(Malformed::V2("version is not 2"));
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if FIXED_LEN + len > max_total {
        return Err(Malformed::TooLong);
    }
    Ok(len)
}

/// A v2 header: its fixed part and the `v2_length` bytes after it (the
/// addresses, then TLVs, which are skipped).
pub fn parse_v2(fixed: &[u8; FIXED_LEN], rest: &[u8]) -> Result<Received, Malformed> {
    match fixed[12] & 0x0f {
        0 => return Ok(Received::Local),
        1 => {}
        _ => return Err(Malformed::V2("unknown command")),
    }
    let port = |at: usize| u16::from_be_bytes([rest[at], rest[at + 1]]);
    match fixed[13] {
        TCP_OVER_IPV4 => {
            if rest.len() < usize::from(IPV4_BLOCK_LEN) {
                return Err(Malformed::V2("short IPv4 address block"));
            }
            let src = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            let dst = Ipv4Addr::new(rest[4], rest[5], rest[6], rest[7]);
            Ok(Received::Proxied {
                source: SocketAddr::new(src.into(), port(8)),
                destination: SocketAddr::new(dst.into(), port(10)),
            })
        }
        TCP_OVER_IPV6 => {
            if rest.len() < usize::from(IPV6_BLOCK_LEN) {
                return Err(Malformed::V2("short IPv6 address block"));
            }
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&rest[at..at + 16]);
                Ipv6Addr::from(octets).to_canonical()
            };
            Ok(Received::Proxied {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        // UNSPEC, UNIX, or datagrams: keep the connection's addresses.
        _ => Ok(Received::Local),
    }
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(header: &[u8]) -> Result<Received, Malformed> {
        let fixed: [u8; FIXED_LEN] = header[..FIXED_LEN].try_into().unwrap();
        let len = v2_length(&fixed, 536)?;
        parse_v2(&fixed, &header[FIXED_LEN..FIXED_LEN + len])
    }

    #[test]
    fn v2_headers_we_write_read_back() {
        for (src, dst) in [
            ("203.0.113.7:51234", "192.0.2.1:443"),
            ("[2001:db8::7]:51234", "[2001:db8::1]:443"),
        ] {
            let (src, dst) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(
                v2(&header_v2(src, dst)),
                Ok(Received::Proxied {
                    source: src,
                    destination: dst
                })
            );
        }
    }

    #[test]
    fn v2_local_tlvs_and_limits() {
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(v2(&local), Ok(Received::Local));
        // TLVs after the addresses are skipped.
        let mut with_tlv = header_v2(
            "10.0.0.9:1000".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        );
        with_tlv[15] += 7;
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x04, b'v', b'p', b'c', b'e']);
        assert!(
            matches!(v2(&with_tlv), Ok(Received::Proxied { source, .. }) if source.to_string() == "10.0.0.9:1000")
        );
        let mut long = header_v2(
            "10.0.0.9:1000".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        );
        long[14] = 0x10;
        assert_eq!(v2(&long), Err(Malformed::TooLong));
        let mut bad = header_v2(
            "10.0.0.9:1000".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        );
        bad[3] = b'x';
        assert_eq!(v2(&bad), Err(Malformed::Missing));
        let mut v1_in_v2 = header_v2(
            "10.0.0.9:1000".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        );
        v1_in_v2[12] = 0x11;
        assert_eq!(v2(&v1_in_v2), Err(Malformed::V2("version is not 2")));
        let mut short = SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert_eq!(v2(&short), Err(Malformed::V2("short IPv4 address block")));
    }

    #[test]
    fn prefixes_are_complete_incomplete_or_refused() {
        let v2 = header_v2(
            "127.0.0.3:40000".parse().unwrap(),
            "127.0.0.1:443".parse().unwrap(),
        );
        let v1 = b"PROXY TCP4 127.0.0.3 127.0.0.1 40000 443\r\n".to_vec();
        for header in [&v2, &v1] {
            let mut bytes = header.clone();
            bytes.extend_from_slice(b"\x16\x03\x01");
            for cut in 0..header.len() {
                assert_eq!(parse_prefix(&bytes[..cut], 536), Ok(None), "cut at {cut}");
            }
            let (len, received) = parse_prefix(&bytes, 536).unwrap().unwrap();
            assert_eq!(len, header.len());
            assert!(
                matches!(received, Received::Proxied { source, .. } if source.to_string() == "127.0.0.3:40000")
            );
        }
        assert_eq!(parse_prefix(b"\x16\x03\x01", 536), Err(Malformed::Missing));
        assert_eq!(parse_prefix(b"PROXZ", 536), Err(Malformed::Missing));
        assert_eq!(
            parse_prefix(b"GET / HTTP/1.1\r\n", 536),
            Err(Malformed::Missing)
        );
        assert_eq!(
            parse_prefix(b"PROXY TCP4\n", 536),
            Err(Malformed::V1("line ends without CRLF"))
        );
        assert_eq!(parse_prefix(b"P", 536), Ok(None));
        let endless = [b"PROXY ".as_slice(), &[b'1'; 110]].concat();
        assert_eq!(parse_prefix(&endless, 536), Err(Malformed::TooLong));
        let mut big = v2.clone();
        big[14] = 0x02;
        assert_eq!(parse_prefix(&big, 536), Err(Malformed::TooLong));
    }

    #[test]
    fn v1_lines() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 127.0.0.3 127.0.0.1 50000 443\r\n"),
            Ok(Received::Proxied {
                source: "127.0.0.3:50000".parse().unwrap(),
                destination: "127.0.0.1:443".parse().unwrap()
            })
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 ::1 ::2 1 2\r\n"),
            Ok(Received::Proxied {
                source: "[::1]:1".parse().unwrap(),
                destination: "[::2]:2".parse().unwrap()
            })
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n"), Ok(Received::Local));
        for bad in [
            &b"PROXY TCP4 127.0.0.3 127.0.0.1 50000\r\n"[..],
            b"PROXY TCP4 ::1 127.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 1\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 1\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 1\n",
        ] {
            assert!(parse_v1(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_v1(&[b'x'; 108]), Err(Malformed::TooLong));
    }

    #[test]
    fn ipv4_header_matches_the_spec_layout() {
        let header = header_v2(
            "203.0.113.7:51234".parse().unwrap(),
            "192.0.2.1:443".parse().unwrap(),
        );
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x21,                   // version 2, PROXY
            0x11,                   // TCP over IPv4
            0x00, 0x0c,             // 12 address bytes follow
            203, 0, 113, 7,         // source address
            192, 0, 2, 1,           // destination address
            0xc8, 0x22,             // source port 51234
            0x01, 0xbb,             // destination port 443
        ];
        assert_eq!(header, expected);
    }

    #[test]
    fn ipv6_header_matches_the_spec_layout() {
        let header = header_v2(
            "[2001:db8::7]:40000".parse().unwrap(),
            "[2001:db8::1]:8443".parse().unwrap(),
        );
        assert_eq!(header.len(), 16 + 36);
        assert_eq!(&header[..12], &SIGNATURE);
        assert_eq!(header[12], 0x21);
        assert_eq!(header[13], 0x21, "TCP over IPv6");
        assert_eq!(&header[14..16], &[0, 36]);
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        src[15] = 7;
        assert_eq!(&header[16..32], &src);
        assert_eq!(header[47], 1);
        assert_eq!(&header[48..50], &40000u16.to_be_bytes());
        assert_eq!(&header[50..52], &8443u16.to_be_bytes());
    }

    #[test]
    fn mapped_addresses_are_sent_as_ipv4() {
        let header = header_v2(
            "[::ffff:127.0.0.1]:5000".parse().unwrap(),
            "[::ffff:127.0.0.2]:443".parse().unwrap(),
        );
        assert_eq!(header[13], 0x11);
        assert_eq!(&header[16..24], &[127, 0, 0, 1, 127, 0, 0, 2]);
    }

    #[test]
    fn mixed_families_are_sent_as_ipv6() {
        let header = header_v2(
            "127.0.0.1:5000".parse().unwrap(),
            "[::1]:443".parse().unwrap(),
        );
        assert_eq!(header[13], 0x21);
        assert_eq!(
            &header[16..32],
            &Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().octets()
        );
    }

    use std::net::Ipv4Addr;
}
