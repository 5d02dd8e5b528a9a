//! The LiveKit access token and the names derived for it: room aliases and
//! identities are unpadded standard base64 of SHA-256 over a JSON array of
//! strings written exactly as Go's `encoding/json` writes it, so a room
//! gets the same alias as with the reference service.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The alias of a MatrixRTC room slot, or the identity of a member:
/// base64(SHA-256(`["a","b",...]`)).
pub fn hashed_name(parts: &[&str]) -> String {
    let mut json = String::from("[");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        go_json_string(&mut json, part);
    }
    json.push(']');
    base64(&Sha256::digest(json.as_bytes()), STANDARD)
}

/// A JSON string as Go's `encoding/json` (HTML escaping on) writes it.
fn go_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The `video` grant of a token.
pub enum Grant<'a> {
    /// Join `room`, publish, subscribe, update own metadata.
    Join {
        /// The room alias.
        room: &'a str,
    },
    /// Create rooms (the service's own call to `CreateRoom`).
    CreateRoom,
}

/// An HS256 JWT for LiveKit: `iss` = API key, `sub` = identity, valid from
/// `now` for an hour.
pub fn access_token(
    key: &str,
    secret: &str,
    identity: &str,
    grant: &Grant<'_>,
    now: u64,
) -> String {
    let video = match grant {
        Grant::Join { room } => format!(
            "{{\"roomJoin\":true,\"room\":{},\"canPublish\":true,\"canSubscribe\":true,\"canUpdateOwnMetadata\":true}}",
            json_string(room)
        ),
        Grant::CreateRoom => "{\"roomCreate\":true}".to_owned(),
    };
    let claims = format!(
        "{{\"iss\":{},\"sub\":{},\"nbf\":{now},\"exp\":{},\"video\":{video}}}",
        json_string(key),
        json_string(identity),
        now + 3600
    );
    let header = base64(br#"{"alg":"HS256","typ":"JWT"}"#, URL_SAFE);
    let payload = base64(claims.as_bytes(), URL_SAFE);
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    let signature = base64(&mac.finalize().into_bytes(), URL_SAFE);
    format!("{signing_input}.{signature}")
}

/// A JSON string (standard escaping).
pub fn json_string(text: &str) -> String {
    let mut out = String::new();
    go_json_string(&mut out, text);
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64 with `alphabet`.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_identities_match_the_reference_vectors() {
        assert_eq!(
            hashed_name(&["!roomid:example.com", "slot1234"]),
            "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc"
        );
        assert_eq!(
            hashed_name(&["@alice:example.com", "DEVICE123", "memberABC"]),
            "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU"
        );
    }

    #[test]
    fn strings_are_escaped_like_go() {
        assert_eq!(json_string("a<b>&c"), r#""a\u003cb\u003e\u0026c""#);
        assert_eq!(json_string("\u{2028}\u{2029}"), r#""\u2028\u2029""#);
        assert_eq!(json_string("q\"\\\n\u{1}"), r#""q\"\\\n\u0001""#);
        assert_eq!(json_string("é"), "\"é\"");
    }

    #[test]
    fn base64_variants() {
        assert_eq!(base64(b"", STANDARD), "");
        assert_eq!(base64(b"f", STANDARD), "Zg");
        assert_eq!(base64(b"fo", STANDARD), "Zm8");
        assert_eq!(base64(b"foo", STANDARD), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff], STANDARD), "+/8");
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE), "-_8");
    }

    #[test]
    fn tokens_are_signed_hs256() {
        let token = access_token(
            "key",
            "secret",
            "@a:b:DEV",
            &Grant::Join { room: "r" },
            1000,
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(parts[2], base64(&mac.finalize().into_bytes(), URL_SAFE));
    }
}
