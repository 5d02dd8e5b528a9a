//! `parse_client_hello`: one complete ClientHello handshake message (RFC 8446 section
//! 4.1.2, RFC 5246 section 7.4.1.2) → [`ClientHello`]. Pure and bounds-checked: every read
//! goes through [`Cursor`], so no input can panic. Record reassembly lives in `reader.rs`,
//! the fingerprint in `ja4.rs`, the output type in `lib.rs`.

use std::net::IpAddr;

use crate::ja4::{self, Ja4Input};
use crate::{ClientHello, HelloError, is_grease};

/// A bounds-checked reader over a byte slice; every failure names the field being read.
struct Cursor<'a> {
    rest: &'a [u8],
}

/// Handshake message type of a ClientHello (RFC 8446 section 4).
pub(crate) const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Handshake header: 1 byte type + 3 bytes length.
pub(crate) const HANDSHAKE_HEADER_LEN: usize = 4;
/// `Random random` is always 32 bytes.
const RANDOM_LEN: usize = 32;
/// `opaque legacy_session_id<0..32>`.
const MAX_SESSION_ID_LEN: usize = 32;
/// `HostName` is a DNS name: at most 253 characters without the trailing dot (RFC 1035).
const MAX_HOST_NAME_LEN: usize = 253;
/// A DNS label is at most 63 characters (RFC 1035 section 2.3.4).
const MAX_LABEL_LEN: usize = 63;
/// `NameType host_name(0)` in the server_name extension (RFC 6066 section 3).
const SNI_HOST_NAME: u8 = 0;

/// Extension code points this parser reads (IANA "TLS ExtensionType Values").
pub(crate) mod ext {
    /// server_name (RFC 6066).
    pub const SERVER_NAME: u16 = 0x0000;
    /// supported_groups (RFC 8422, RFC 8446).
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    /// signature_algorithms (RFC 8446).
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    /// application_layer_protocol_negotiation (RFC 7301).
    pub const ALPN: u16 = 0x0010;
    /// supported_versions (RFC 8446).
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
    /// key_share (RFC 8446).
    pub const KEY_SHARE: u16 = 0x0033;
    /// encrypted_client_hello (draft-ietf-tls-esni).
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

// === impl Cursor ===

impl<'a> Cursor<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Cursor { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], HelloError> {
        if n > self.rest.len() {
            return Err(HelloError::Malformed(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self, field: &'static str) -> Result<usize, HelloError> {
        let b = self.take(3, field)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// `opaque x<0..2^8-1>`: a one-byte length, then that many bytes.
    fn vec8(&mut self, field: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u8(field)?;
        self.take(usize::from(n), field)
    }

    /// `opaque x<0..2^16-1>`: a two-byte length, then that many bytes.
    fn vec16(&mut self, field: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u16(field)?;
        self.take(usize::from(n), field)
    }

    /// Fails unless everything was consumed: a length that does not match its contents.
    fn finish(&self, field: &'static str) -> Result<(), HelloError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(HelloError::Malformed(field))
        }
    }
}

/// Reads a non-empty list of u16 values (`u16 x<2..2^k-2>` already cut out), dropping GREASE.
fn u16_list(bytes: &[u8], field: &'static str) -> Result<Vec<u16>, HelloError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
        return Err(HelloError::Malformed(field));
    }
    // Sized up front: collecting through the filter grew the list one
    // reallocation at a time.
    let mut list = Vec::with_capacity(bytes.len() / 2);
    list.extend(
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .filter(|v| !is_grease(*v)),
    );
    Ok(list)
}

// === parse_client_hello ===

/// Parses one complete ClientHello handshake message, starting at its 4-byte handshake
/// header (type 1, 24-bit length). Bytes after the message are ignored; a slice shorter
/// than the announced length is [`HelloError::Malformed`]. Never panics.
pub fn parse_client_hello(handshake: &[u8]) -> Result<ClientHello, HelloError> {
    let mut c = Cursor::new(handshake);
    let msg_type = c.u8("handshake header")?;
    if msg_type != HANDSHAKE_CLIENT_HELLO {
        return Err(HelloError::NotClientHello { msg_type });
    }
    let len = c.u24("handshake header")?;
    let body = c.take(len, "handshake length")?;
    let mut hello = parse_body(body)?;
    // The length fits: it came from 24 bits.
    hello.hello_bytes = u32::try_from(HANDSHAKE_HEADER_LEN + len).unwrap_or(u32::MAX);
    Ok(hello)
}

/// What the extension walk collects beyond the [`ClientHello`] fields, for JA4.
#[derive(Default)]
struct Seen<'a> {
    first_alpn: Option<&'a [u8]>,
}

fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut c = Cursor::new(body);
    let legacy_version = c.u16("legacy_version")?;
    c.take(RANDOM_LEN, "random")?;
    if c.vec8("legacy_session_id")?.len() > MAX_SESSION_ID_LEN {
        return Err(HelloError::Malformed("legacy_session_id"));
    }
    let cipher_suites = u16_list(c.vec16("cipher_suites")?, "cipher_suites")?;
    if c.vec8("legacy_compression_methods")?.is_empty() {
        return Err(HelloError::Malformed("legacy_compression_methods"));
    }

    let mut hello = ClientHello {
        server_name: None,
        alpn: Vec::new(),
        legacy_version,
        supported_versions: Vec::new(),
        cipher_suites,
        extensions: Vec::new(),
        supported_groups: Vec::new(),
        signature_algorithms: Vec::new(),
        key_share_groups: Vec::new(),
        has_ech: false,
        hello_bytes: 0,
        ja4: String::new(),
    };
    let mut seen = Seen::default();
    // Before TLS 1.3 the extensions block is optional: the body may end here.
    if !c.is_empty() {
        let block = c.vec16("extensions")?;
        c.finish("extensions")?;
        parse_extensions(block, &mut hello, &mut seen)?;
    }

    hello.ja4 = ja4::fingerprint(&Ja4Input {
        legacy_version,
        supported_versions: hello
            .extensions
            .contains(&ext::SUPPORTED_VERSIONS)
            .then_some(hello.supported_versions.as_slice()),
        has_sni: hello.extensions.contains(&ext::SERVER_NAME),
        cipher_suites: &hello.cipher_suites,
        extensions: &hello.extensions,
        first_alpn: seen.first_alpn,
        signature_algorithms: &hello.signature_algorithms,
    });
    Ok(hello)
}

/// An extension's type and length fields.
const EXTENSION_HEADER_LEN: usize = 4;
/// Extensions to make room for up front: more than browsers send (≈18).
const EXPECTED_EXTENSIONS: usize = 32;

fn parse_extensions<'a>(
    block: &'a [u8],
    hello: &mut ClientHello,
    seen: &mut Seen<'a>,
) -> Result<(), HelloError> {
    let mut c = Cursor::new(block);
    // Room for every extension a browser sends (an extension takes at least
    // four bytes), so the lists do not grow one reallocation at a time.
    let expected = (block.len() / EXTENSION_HEADER_LEN).min(EXPECTED_EXTENSIONS);
    hello.extensions.reserve(expected);
    // Every type, GREASE included, to refuse duplicates (RFC 8446 section 4.2).
    let mut all_types = Vec::with_capacity(expected);
    while !c.is_empty() {
        let typ = c.u16("extension header")?;
        let data = c.vec16("extension length")?;
        all_types.push(typ);
        if is_grease(typ) {
            continue;
        }
        hello.extensions.push(typ);
        match typ {
            ext::SERVER_NAME => hello.server_name = server_name(data)?,
            ext::ALPN => {
                let protocols = alpn(data)?;
                seen.first_alpn = protocols.first().copied();
                hello.alpn = protocols
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
            }
            ext::SUPPORTED_VERSIONS => {
                let mut e = Cursor::new(data);
                hello.supported_versions =
                    u16_list(e.vec8("supported_versions")?, "supported_versions")?;
                e.finish("supported_versions")?;
            }
            ext::SUPPORTED_GROUPS => {
                let mut e = Cursor::new(data);
                hello.supported_groups =
                    u16_list(e.vec16("supported_groups")?, "supported_groups")?;
                e.finish("supported_groups")?;
            }
            ext::SIGNATURE_ALGORITHMS => {
                let mut e = Cursor::new(data);
                hello.signature_algorithms =
                    u16_list(e.vec16("signature_algorithms")?, "signature_algorithms")?;
                e.finish("signature_algorithms")?;
            }
            ext::KEY_SHARE => hello.key_share_groups = key_share(data)?,
            ext::ENCRYPTED_CLIENT_HELLO => hello.has_ech = true,
            _ => {}
        }
    }
    all_types.sort_unstable();
    if all_types.windows(2).any(|w| w[0] == w[1]) {
        return Err(HelloError::Malformed("duplicate extension"));
    }
    Ok(())
}

/// `ServerNameList` (RFC 6066 section 3): the one `host_name`, validated, ASCII-lowercased,
/// one trailing dot stripped. An IP literal (forbidden there, yet sent by some clients)
/// counts as no name. A name type other than host_name ends the walk, since its encoding
/// is unknown.
fn server_name(data: &[u8]) -> Result<Option<String>, HelloError> {
    const FIELD: &str = "server_name";
    let mut e = Cursor::new(data);
    let list = e.vec16(FIELD)?;
    e.finish(FIELD)?;
    if list.is_empty() {
        return Err(HelloError::Malformed(FIELD));
    }
    let mut l = Cursor::new(list);
    let mut found: Option<Option<String>> = None;
    while !l.is_empty() {
        if l.u8(FIELD)? != SNI_HOST_NAME {
            break;
        }
        let raw = l.vec16(FIELD)?;
        if found.is_some() {
            // "The ServerNameList MUST NOT contain more than one name of the same name_type."
            return Err(HelloError::Malformed(FIELD));
        }
        found = Some(host_name(raw)?);
    }
    Ok(found.flatten())
}

/// Validates a DNS host name: LDH labels (underscore tolerated, as seen in the wild),
/// 1..=63 bytes each, at most 253 in all once one trailing dot is stripped.
fn host_name(raw: &[u8]) -> Result<Option<String>, HelloError> {
    const FIELD: &str = "server_name";
    let name = raw.strip_suffix(b".").unwrap_or(raw);
    if let Ok(text) = std::str::from_utf8(name)
        && text.parse::<IpAddr>().is_ok()
    {
        return Ok(None);
    }
    let label_ok = |label: &[u8]| {
        (1..=MAX_LABEL_LEN).contains(&label.len())
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    };
    if name.is_empty()
        || name.len() > MAX_HOST_NAME_LEN
        || !name.split(|b| *b == b'.').all(label_ok)
    {
        return Err(HelloError::Malformed(FIELD));
    }
    // Only ASCII remains, so this conversion cannot fail.
    let mut s = String::from_utf8_lossy(name).into_owned();
    s.make_ascii_lowercase();
    Ok(Some(s))
}

/// `ProtocolNameList` (RFC 7301 section 3.1): `ProtocolName protocol_name_list<2..2^16-1>`,
/// each `opaque ProtocolName<1..2^8-1>`.
fn alpn(data: &[u8]) -> Result<Vec<&[u8]>, HelloError> {
    const FIELD: &str = "application_layer_protocol_negotiation";
    let mut e = Cursor::new(data);
    let list = e.vec16(FIELD)?;
    e.finish(FIELD)?;
    if list.is_empty() {
        return Err(HelloError::Malformed(FIELD));
    }
    let mut l = Cursor::new(list);
    let mut out = Vec::new();
    while !l.is_empty() {
        let name = l.vec8(FIELD)?;
        if name.is_empty() {
            return Err(HelloError::Malformed(FIELD));
        }
        out.push(name);
    }
    Ok(out)
}

/// `KeyShareClientHello` (RFC 8446 section 4.2.8): the offered groups, GREASE removed.
fn key_share(data: &[u8]) -> Result<Vec<u16>, HelloError> {
    const FIELD: &str = "key_share";
    let mut e = Cursor::new(data);
    let list = e.vec16(FIELD)?;
    e.finish(FIELD)?;
    let mut l = Cursor::new(list);
    let mut groups = Vec::with_capacity(2);
    while !l.is_empty() {
        let group = l.u16(FIELD)?;
        if l.vec16(FIELD)?.is_empty() {
            return Err(HelloError::Malformed(FIELD));
        }
        if !is_grease(group) {
            groups.push(group);
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::HelloBuilder;

    #[test]
    fn minimal_tls12_hello_without_extensions() {
        let msg = HelloBuilder::new().no_extensions().build();
        let h = parse_client_hello(&msg).unwrap();
        assert_eq!(h.legacy_version, 0x0303);
        assert_eq!(h.cipher_suites, vec![0x1301, 0xc02f]);
        assert!(h.extensions.is_empty() && h.server_name.is_none() && h.alpn.is_empty());
        assert_eq!(h.hello_bytes as usize, msg.len());
        assert_eq!(&h.ja4[..10], "t12i020000");
        assert!(h.ja4.ends_with("_000000000000"), "{}", h.ja4);
    }

    #[test]
    fn reads_every_field_and_drops_grease() {
        let msg = HelloBuilder::new()
            .ciphers(&[0x3a3a, 0x1301, 0x1302])
            .ext(0x7a7a, &[])
            .sni("Example.COM.")
            .alpn(&[b"h2", b"http/1.1"])
            .versions(&[0x5a5a, 0x0304, 0x0303])
            .groups(&[0x8a8a, 0x11ec, 0x001d])
            .sigalgs(&[0x0403, 0x0804])
            .key_shares(&[(0x8a8a, 1), (0x11ec, 1216), (0x001d, 32)])
            .ext(0xfe0d, &[0; 8])
            .build();
        let h = parse_client_hello(&msg).unwrap();
        assert_eq!(h.server_name.as_deref(), Some("example.com"));
        assert_eq!(h.alpn, vec!["h2", "http/1.1"]);
        assert_eq!(h.cipher_suites, vec![0x1301, 0x1302]);
        assert_eq!(h.supported_versions, vec![0x0304, 0x0303]);
        assert_eq!(h.supported_groups, vec![0x11ec, 0x001d]);
        assert_eq!(h.signature_algorithms, vec![0x0403, 0x0804]);
        assert_eq!(h.key_share_groups, vec![0x11ec, 0x001d]);
        assert_eq!(
            h.extensions,
            vec![0x0000, 0x0010, 0x002b, 0x000a, 0x000d, 0x0033, 0xfe0d]
        );
        assert!(h.has_ech);
        assert_eq!(h.hello_bytes as usize, msg.len());
        assert!(h.ja4.starts_with("t13d0207h2_"), "{}", h.ja4);
    }

    #[test]
    fn ip_literal_sni_counts_as_no_name_but_still_d_in_ja4() {
        for ip in ["192.0.2.1", "2001:db8::1"] {
            let h = parse_client_hello(&HelloBuilder::new().sni(ip).build()).unwrap();
            assert_eq!(h.server_name, None, "{ip}");
            assert_eq!(&h.ja4[3..4], "d");
        }
    }

    #[test]
    fn rejects_bad_fields_by_name() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (HelloBuilder::new().ciphers(&[]).build(), "cipher_suites"),
            (HelloBuilder::new().sni("bad name").build(), "server_name"),
            (HelloBuilder::new().sni("a..b").build(), "server_name"),
            (
                HelloBuilder::new().sni(&"a".repeat(64)).build(),
                "server_name",
            ),
            (
                HelloBuilder::new().alpn(&[b""]).build(),
                "application_layer_protocol_negotiation",
            ),
            (
                HelloBuilder::new().ext(0x002b, &[3, 3, 4]).build(),
                "supported_versions",
            ),
            (
                HelloBuilder::new().ext(0x000a, &[0, 2, 0, 0x1d, 9]).build(),
                "supported_groups",
            ),
            (
                HelloBuilder::new()
                    .ext(0x0017, &[])
                    .ext(0x0017, &[])
                    .build(),
                "duplicate extension",
            ),
            (
                HelloBuilder::new().key_shares(&[(0x001d, 0)]).build(),
                "key_share",
            ),
            (HelloBuilder::new().trailing(&[0]).build(), "extensions"),
        ];
        for (msg, field) in cases {
            assert_eq!(
                parse_client_hello(&msg),
                Err(HelloError::Malformed(field)),
                "{field}"
            );
        }
    }

    #[test]
    fn wrong_type_and_short_slices() {
        let mut msg = HelloBuilder::new().build();
        assert_eq!(
            parse_client_hello(&msg[..msg.len() - 1]),
            Err(HelloError::Malformed("handshake length"))
        );
        assert_eq!(
            parse_client_hello(&msg[..2]),
            Err(HelloError::Malformed("handshake header"))
        );
        assert_eq!(
            parse_client_hello(&[]),
            Err(HelloError::Malformed("handshake header"))
        );
        msg[0] = 2;
        assert_eq!(
            parse_client_hello(&msg),
            Err(HelloError::NotClientHello { msg_type: 2 })
        );
    }

    #[test]
    fn every_prefix_and_bit_flip_is_handled_without_panic() {
        let msg = HelloBuilder::new()
            .sni("a.example")
            .alpn(&[b"h2"])
            .versions(&[0x0304])
            .build();
        for n in 0..msg.len() {
            assert!(parse_client_hello(&msg[..n]).is_err(), "prefix {n}");
        }
        for i in 0..msg.len() {
            for bit in 0..8 {
                let mut m = msg.clone();
                m[i] ^= 1 << bit;
                let _ = parse_client_hello(&m);
            }
        }
    }
}
