//! JA4 TLS client fingerprint (FoxIO's JA4 technical details, TCP flavour: `t` prefix),
//! computed from the lists `parse.rs` extracted. Hashing and hex formatting only; nothing
//! here looks at wire bytes except the first ALPN value.

use sha2::{Digest, Sha256};

use crate::is_grease;
use crate::parse::ext;

/// What JA4 needs from a ClientHello; lists already have GREASE removed.
pub(crate) struct Ja4Input<'a> {
    /// `legacy_version` from the hello body (not the record layer).
    pub legacy_version: u16,
    /// The supported_versions list, `None` when the extension is absent.
    pub supported_versions: Option<&'a [u16]>,
    /// Whether the server_name extension is present at all.
    pub has_sni: bool,
    pub cipher_suites: &'a [u16],
    /// Extension types in wire order.
    pub extensions: &'a [u16],
    /// The first ALPN protocol's raw bytes.
    pub first_alpn: Option<&'a [u8]>,
    pub signature_algorithms: &'a [u16],
}

/// Two-digit counts saturate here ("if there's > 99 ... output 99").
const MAX_COUNT: usize = 99;
/// Hashes are truncated to the first 12 hex characters.
const HASH_HEX_LEN: usize = 12;
/// Stands in for the hash of an empty list, so "no values" is visible.
const EMPTY_HASH: &str = "000000000000";

/// Builds the JA4 string, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
pub(crate) fn fingerprint(input: &Ja4Input<'_>) -> String {
    let mut out = String::with_capacity(36);
    out.push('t');
    out.push_str(version_code(input));
    out.push(if input.has_sni { 'd' } else { 'i' });
    push_count(&mut out, input.cipher_suites.len());
    push_count(&mut out, input.extensions.len());
    push_alpn(&mut out, input.first_alpn);

    // One scratch list and one scratch text serve both hashes; a value
    // takes four hex digits and a comma.
    let longest = input
        .cipher_suites
        .len()
        .max(input.extensions.len() + input.signature_algorithms.len());
    let mut sorted: Vec<u16> = Vec::with_capacity(longest);
    let mut text: Vec<u8> = Vec::with_capacity(5 * longest + 1);

    out.push('_');
    sorted.extend_from_slice(input.cipher_suites);
    sorted.sort_unstable();
    push_hex_list(&mut text, &sorted);
    push_hash(&mut out, &text);

    out.push('_');
    sorted.clear();
    sorted.extend(
        input
            .extensions
            .iter()
            .copied()
            .filter(|e| *e != ext::SERVER_NAME && *e != ext::ALPN),
    );
    sorted.sort_unstable();
    text.clear();
    push_hex_list(&mut text, &sorted);
    if !text.is_empty() && !input.signature_algorithms.is_empty() {
        text.push(b'_');
        push_hex_list(&mut text, input.signature_algorithms);
    }
    push_hash(&mut out, &text);
    out
}

/// A count as two decimal digits, saturating at [`MAX_COUNT`].
fn push_count(out: &mut String, count: usize) {
    let count = count.min(MAX_COUNT) as u8;
    out.push(char::from(b'0' + count / 10));
    out.push(char::from(b'0' + count % 10));
}

/// The highest non-GREASE supported_versions entry if the extension is there, else the
/// hello's legacy_version, as JA4's two characters.
fn version_code(input: &Ja4Input<'_>) -> &'static str {
    let version = input
        .supported_versions
        .and_then(|v| v.iter().copied().filter(|v| !is_grease(*v)).max())
        .unwrap_or(input.legacy_version);
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// First and last character of the first ALPN value; `00` when there is none; the first
/// and last hex digits of the whole value when either end byte is not ASCII alphanumeric.
fn push_alpn(out: &mut String, first: Option<&[u8]>) {
    match first.and_then(|v| Some((*v.first()?, *v.last()?))) {
        Some((first, last)) if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() => {
            out.push(char::from(first));
            out.push(char::from(last));
        }
        Some((first, last)) => {
            out.push(hex_digit(first >> 4));
            out.push(hex_digit(last));
        }
        None => out.push_str("00"),
    }
}

/// Lowercase hex digits.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The lowercase hex digit of `nibble`'s low four bits.
fn hex_digit(nibble: u8) -> char {
    char::from(HEX_DIGITS[usize::from(nibble & 0x0f)])
}

/// Appends `0403,0804,...`: lowercase 4-digit hex, comma separated. Runs
/// once per list per connection, so it writes digits directly rather than
/// through `fmt`.
fn push_hex_list(text: &mut Vec<u8>, values: &[u16]) {
    let digit = |v: u16, shift: u16| HEX_DIGITS[usize::from((v >> shift) & 0x0f)];
    for (i, &v) in values.iter().enumerate() {
        let item = [b',', digit(v, 12), digit(v, 8), digit(v, 4), digit(v, 0)];
        text.extend_from_slice(if i == 0 { &item[1..] } else { &item });
    }
}

/// Appends the first 12 hex digits of sha256(`text`), or [`EMPTY_HASH`] for empty text.
fn push_hash(out: &mut String, text: &[u8]) {
    if text.is_empty() {
        out.push_str(EMPTY_HASH);
        return;
    }
    let digest = Sha256::digest(text);
    for b in &digest[..HASH_HEX_LEN / 2] {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(*b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(list: &str) -> Vec<u16> {
        list.split(',')
            .map(|h| u16::from_str_radix(h, 16).unwrap())
            .collect()
    }

    /// The worked example of the JA4 technical details, with its lists in wire order.
    const SPEC_CIPHERS: &str =
        "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035";
    const SPEC_EXTENSIONS: &str =
        "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015";
    const SPEC_SIGALGS: &str = "0403,0804,0401,0503,0805,0501,0806,0601";

    fn spec_input<'a>(c: &'a [u16], e: &'a [u16], s: &'a [u16]) -> Ja4Input<'a> {
        Ja4Input {
            legacy_version: 0x0303,
            supported_versions: Some(&[0x0304, 0x0303]),
            has_sni: true,
            cipher_suites: c,
            extensions: e,
            first_alpn: Some(b"h2"),
            signature_algorithms: s,
        }
    }

    #[test]
    fn spec_worked_example() {
        let (c, e, s) = (hex(SPEC_CIPHERS), hex(SPEC_EXTENSIONS), hex(SPEC_SIGALGS));
        assert_eq!(
            fingerprint(&spec_input(&c, &e, &s)),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
    }

    #[test]
    fn spec_example_without_signature_algorithms_has_no_trailing_underscore() {
        let (c, e) = (hex(SPEC_CIPHERS), hex(SPEC_EXTENSIONS));
        let ja4 = fingerprint(&spec_input(&c, &e, &[]));
        assert_eq!(&ja4[24..], "6d807ffa2a79");
    }

    /// FoxIO's expected output for `sigalg-grease.pcapng` (a Chrome hello with ECH and
    /// a GREASE signature algorithm), original wire order from its JA4_ro line.
    #[test]
    fn chrome_capture_with_ech_and_grease_sigalg() {
        let c = hex(SPEC_CIPHERS);
        let e = hex(
            "fe0d,0010,0017,0033,44cd,ff01,000a,000d,0023,002b,000b,ca34,002d,0000,0005,001b,0012",
        );
        let s = hex("0904,0905,0906,0403,0804,0401,0503,0805,0501,0806,0601");
        assert_eq!(
            fingerprint(&spec_input(&c, &e, &s)),
            "t13d1517h2_8daaf6152771_cb7bf5808d99"
        );
    }

    /// FoxIO's expected output for stream 9 of `tls3.pcapng` (pre_shared_key 0x0029 present).
    #[test]
    fn capture_with_pre_shared_key() {
        let c = hex(SPEC_CIPHERS);
        let e =
            hex("0033,000a,0005,000d,0012,0000,0010,002b,0023,001b,0017,002d,ff01,4469,000b,0029");
        let s = hex(SPEC_SIGALGS);
        assert_eq!(
            fingerprint(&spec_input(&c, &e, &s)),
            "t13d1516h2_8daaf6152771_9b887d9acb53"
        );
    }

    #[test]
    fn alpn_rules_from_the_spec() {
        let cases: [(&[u8], &str); 7] = [
            (b"h2", "h2"),
            (b"http/1.1", "h1"),
            (b"x", "xx"),
            (&[0xab], "ab"),
            (&[0xab, 0xcd], "ad"),
            (&[0x30, 0xab], "3b"),
            (&[0x30, 0xab, 0xcd, 0x31], "01"),
        ];
        for (alpn, want) in cases {
            let mut s = String::new();
            push_alpn(&mut s, Some(alpn));
            assert_eq!(s, want, "{alpn:?}");
        }
        let mut s = String::new();
        push_alpn(&mut s, None);
        assert_eq!(s, "00");
        // The fourth spec case as well: 0x30 0x31 0xAB 0xCD → "3d".
        let mut s = String::new();
        push_alpn(&mut s, Some(&[0x30, 0x31, 0xab, 0xcd]));
        assert_eq!(s, "3d");
    }

    #[test]
    fn versions_counts_and_empty_lists() {
        let many: Vec<u16> = (1..=150).collect();
        let mut input = spec_input(&many, &many, &[]);
        input.supported_versions = None;
        input.legacy_version = 0x0301;
        input.has_sni = false;
        input.first_alpn = None;
        assert!(fingerprint(&input).starts_with("t10i999900_"));
        input.supported_versions = Some(&[]);
        input.legacy_version = 0x0300;
        assert!(fingerprint(&input).starts_with("ts3i"));
        input.legacy_version = 0x1234;
        assert!(fingerprint(&input).starts_with("t00i"));
        let only_sni_alpn = [ext::SERVER_NAME, ext::ALPN];
        let input = Ja4Input {
            cipher_suites: &[],
            extensions: &only_sni_alpn,
            ..input
        };
        assert!(fingerprint(&input).ends_with("_000000000000_000000000000"));
    }
}
