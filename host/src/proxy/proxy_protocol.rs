//! PROXY protocol version 2 headers (the binary form of HAProxy's
//! `proxy-protocol.txt`, section 2.2) for TCP over IPv4 and IPv6: sent to a
//! backend before any other byte so it learns the client's address.
//!
//! Used by `proxy/passthrough.rs` and `proxy/terminate.rs`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

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

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
