//! The two request bodies, read like the reference service reads them: an
//! unknown field or a value of the wrong type is `M_NOT_JSON`, a missing
//! or empty required field `M_BAD_JSON`.

use serde::Deserialize;

/// `openid_token`, as the Matrix client got it from its homeserver.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenIdToken {
    /// The token the homeserver's userinfo endpoint checks.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// The homeserver that issued it.
    pub matrix_server_name: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
}

/// `POST /sfu/get`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfuGet {
    /// The Matrix room ID.
    pub room: String,
    /// The user's OpenID token.
    pub openid_token: OpenIdToken,
    /// The user's device.
    pub device_id: String,
}

/// `member` of `POST /get_token`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Member {
    /// The MatrixRTC membership ID.
    pub id: String,
    /// The user the client says it is (checked against the token).
    pub claimed_user_id: String,
    /// The device the client says it is.
    pub claimed_device_id: String,
}

/// `POST /get_token`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GetToken {
    /// The Matrix room ID.
    pub room_id: String,
    /// The MatrixRTC slot.
    pub slot_id: String,
    /// The user's OpenID token.
    pub openid_token: OpenIdToken,
    /// The membership.
    pub member: Member,
}

/// A refused request body: `(errcode, error)`.
pub type Refusal = (&'static str, String);

/// Parses `body` as `T`, then checks the required fields.
pub fn parse<T: for<'de> Deserialize<'de> + Required>(body: &[u8]) -> Result<T, Refusal> {
    let value: T = serde_json::from_slice(body).map_err(|e| {
        (
            "M_NOT_JSON",
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    if let Some(field) = value.missing() {
        return Err(("M_BAD_JSON", format!("missing field {field}")));
    }
    Ok(value)
}

/// The first required field that is missing or empty.
pub trait Required {
    /// Its name, when one is.
    fn missing(&self) -> Option<&'static str>;
}

impl Required for SfuGet {
    fn missing(&self) -> Option<&'static str> {
        [
            ("room", &self.room),
            ("openid_token.access_token", &self.openid_token.access_token),
            (
                "openid_token.matrix_server_name",
                &self.openid_token.matrix_server_name,
            ),
            ("device_id", &self.device_id),
        ]
        .into_iter()
        .find_map(|(name, value)| value.is_empty().then_some(name))
    }
}

impl Required for GetToken {
    fn missing(&self) -> Option<&'static str> {
        [
            ("room_id", &self.room_id),
            ("slot_id", &self.slot_id),
            ("openid_token.access_token", &self.openid_token.access_token),
            (
                "openid_token.matrix_server_name",
                &self.openid_token.matrix_server_name,
            ),
            ("member.id", &self.member.id),
            ("member.claimed_user_id", &self.member.claimed_user_id),
            ("member.claimed_device_id", &self.member.claimed_device_id),
        ]
        .into_iter()
        .find_map(|(name, value)| value.is_empty().then_some(name))
    }
}

/// Where a homeserver's federation API is, when its name says so without
/// a lookup: an IP literal (with or without port) or a name with a port.
pub fn explicit_server(name: &str) -> Option<String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Some(if name.contains(':') {
            format!("[{name}]:8448")
        } else {
            format!("{name}:8448")
        });
    }
    if name.starts_with('[') {
        return Some(if name.ends_with(']') {
            format!("{name}:8448")
        } else {
            name.to_owned()
        });
    }
    name.contains(':').then(|| name.to_owned())
}

/// `host[:port]` from a `.well-known/matrix/server` `m.server` value (no
/// port: 8448).
pub fn delegated_server(value: &str) -> String {
    explicit_server(value).unwrap_or_else(|| format!("{value}:8448"))
}

/// The server part of a Matrix user ID: after the first `:`.
pub fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server)
}

/// Whether `server` gets rooms created: listed in `setting` (comma or
/// space separated), or `setting` is `*` alone.
pub fn full_access(setting: &str, server: &str) -> bool {
    let setting = setting.trim();
    setting == "*"
        || setting
            .split([',', ' '])
            .map(str::trim)
            .any(|entry| !entry.is_empty() && entry == server)
}

/// `LIVEKIT_URL` as an HTTP base: `ws` → `http`, `wss` → `https`, no
/// trailing `/`.
pub fn http_base(livekit_url: &str) -> String {
    let url = livekit_url.trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_owned()
    }
}

/// `text` for a URL query.
pub fn query_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_refused_like_the_reference() {
        let ok = br#"{"room":"!r:hs","openid_token":{"access_token":"t","token_type":"Bearer","matrix_server_name":"hs","expires_in":3600},"device_id":"D"}"#;
        let parsed: SfuGet = parse(ok).unwrap();
        assert_eq!(parsed.openid_token.matrix_server_name, "hs");
        let not_json = parse::<SfuGet>(b"{nope").unwrap_err();
        assert_eq!(not_json.0, "M_NOT_JSON");
        let unknown = parse::<SfuGet>(br#"{"room":"r","extra":1}"#).unwrap_err();
        assert_eq!(unknown.0, "M_NOT_JSON");
        let missing = parse::<SfuGet>(
            br#"{"room":"r","openid_token":{"access_token":"t","matrix_server_name":"hs"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            missing,
            ("M_BAD_JSON", "missing field device_id".to_owned())
        );
        let missing = parse::<GetToken>(br#"{"room_id":"r","slot_id":"s","openid_token":{"access_token":"t","matrix_server_name":"hs"},"member":{"id":"m","claimed_device_id":"D"}}"#).unwrap_err();
        assert_eq!(missing.1, "missing field member.claimed_user_id");
    }

    #[test]
    fn servers_are_found_by_their_name() {
        assert_eq!(
            explicit_server("127.0.0.1:8448").as_deref(),
            Some("127.0.0.1:8448")
        );
        assert_eq!(
            explicit_server("10.0.0.1").as_deref(),
            Some("10.0.0.1:8448")
        );
        assert_eq!(explicit_server("::1").as_deref(), Some("[::1]:8448"));
        assert_eq!(explicit_server("[::1]:9000").as_deref(), Some("[::1]:9000"));
        assert_eq!(
            explicit_server("hs.example:443").as_deref(),
            Some("hs.example:443")
        );
        assert_eq!(explicit_server("hs.example"), None);
        assert_eq!(
            delegated_server("matrix.hs.example"),
            "matrix.hs.example:8448"
        );
        assert_eq!(
            delegated_server("matrix.hs.example:443"),
            "matrix.hs.example:443"
        );
        assert_eq!(server_of("@alice:127.0.0.1:8448"), Some("127.0.0.1:8448"));
    }

    #[test]
    fn full_access_lists() {
        assert!(full_access("*", "any"));
        assert!(full_access("a.example, b.example", "b.example"));
        assert!(full_access("a.example b.example", "a.example"));
        assert!(!full_access("a.example", "b.example"));
        assert!(!full_access("", "b.example"));
        assert!(!full_access("*.example", "b.example"));
    }

    #[test]
    fn urls() {
        assert_eq!(http_base("wss://lk.example/"), "https://lk.example");
        assert_eq!(http_base("ws://127.0.0.1:7880"), "http://127.0.0.1:7880");
        assert_eq!(query_escape("a b/+=&"), "a%20b%2F%2B%3D%26");
    }
}
