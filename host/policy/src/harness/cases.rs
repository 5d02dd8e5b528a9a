//! The case file format (`*.tests.yaml`), parsed strictly: unknown fields
//! are errors, and every error names the file, line and field. Running the
//! cases is `harness.rs`'s job.
//!
//! ```yaml
//! config:                 # policy config for every case (optional)
//!   domain: hearth.example
//! cases:
//!   - name: turn is passed through
//!     hello: { sni: turn.hearth.example, alpn: [h2], source: 203.0.113.7 }
//!     expect: { passthrough: turn }            # or terminate: <backend>
//!   - name: unknown name is refused
//!     hello: { sni: other.example }
//!     expect: { reject: unknown-sni, alert: unrecognized-name }
//!   - name: init needs a domain
//!     config: {}                               # replaces the file's config
//!     expect: { init_error: "domain" }         # substring of init's message
//! ```
//!
//! `expect` holds exactly one of `passthrough`, `terminate` (each with an
//! optional `proxy_protocol`: `v2`, `off` or `backend-default`), `reject`
//! (with an optional `alert`) or `init_error`. An omitted optional field is
//! not checked.
//!
//! A case of an `http-policy` (one exporting `on-request`) may give a
//! `request` instead of a `hello`; the policy's `on-request` is then asked:
//!
//! ```yaml
//!   - name: the admin area is refused from outside
//!     request: { host: app.example, path: "/_/?x=1", source: 203.0.113.9,
//!                headers: { user-agent: curl }, routed_to: web }
//!     expect: { respond: 403, body: "forbidden\n" }
//!   - name: other names go to the canonical one
//!     request: { host: www.app.example, path: /a }
//!     expect: { redirect: "https://app.example/a", status: 308 }
//!   - name: the canary header picks the canary backend
//!     request: { host: app.example, headers: { x-canary: "1" } }
//!     expect: { forward: web-next, headers: { x-canary: "1" } }
//!   - name: anything else follows the routes
//!     request: { host: app.example }
//!     expect: { follow_routes: true }
//! ```
//!
//! Request expectations: `follow_routes: true`; `forward: <backend>`;
//! `redirect: <location>` (optional `status`); `respond: <status>`
//! (optional `body`, exact). `headers` goes with `forward` (the headers the
//! policy sets) or `respond` (the answer's headers): each listed header must
//! be there with that value; others are not checked. `request` fields, all
//! optional: `method` (`GET`), `scheme` (`https`), `host` (`example.com`),
//! `path` (`/`, may carry `?query`), `headers` (a map; names lowercased),
//! `source` (`203.0.113.7`), `source_port` (40000), `sni` (the host for
//! `https`, none for `http`), `route_set` (`web`), `routed_to` (none).
//!
//! `hello` fields, all optional; omitted ones take the value of a typical
//! modern browser hello (see [`HelloSpec`]): `sni` (omitted = no SNI),
//! `alpn`, `source`, `source_port`, `local_port`, `legacy_version`,
//! `supported_versions`, `cipher_suites`, `extensions`, `supported_groups`,
//! `signature_algorithms`, `key_share_groups`, `ja4`, `has_ech`,
//! `hello_bytes`. The server name and source address are normalised as the
//! edge does (lowercase, no trailing dot; IPv4-mapped IPv6 shown as IPv4).

use std::net::IpAddr;

use serde::Deserialize;
use serde_yaml::Value;

use crate::config::config_map;
use crate::{Alert, ClientHello, Decision, HttpRequest, ProxyProtocol};

/// A parsed case file.
#[derive(Debug, Clone)]
pub struct CaseFile {
    /// The config of cases that do not set their own.
    pub config: Vec<(String, String)>,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

/// One case: a hello (or just a config) and what must come of it.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's name, for reports.
    pub name: String,
    /// The case's own config, replacing the file's.
    pub config: Option<Vec<(String, String)>>,
    /// The hello given to `decide`.
    pub hello: ClientHello,
    /// The request given to `on-request` instead, for a request case.
    pub request: Option<HttpRequest>,
    /// The expected outcome.
    pub expect: Expect,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// `passthrough(route)` to this backend.
    Passthrough {
        /// Backend name.
        backend: String,
        /// Checked when given.
        proxy_protocol: Option<ProxyProtocol>,
    },
    /// `terminate(route)` to this backend.
    Terminate {
        /// Backend name.
        backend: String,
        /// Checked when given.
        proxy_protocol: Option<ProxyProtocol>,
    },
    /// `reject` with this reason.
    Reject {
        /// The reason, exactly.
        reason: String,
        /// Checked when given.
        alert: Option<Alert>,
    },
    /// `init` refuses the config with a message containing this text.
    InitError(String),
    /// `on-request` follows the routes.
    FollowRoutes,
    /// `on-request` forwards to this backend.
    Forward {
        /// Backend name.
        backend: String,
        /// Headers the policy must set (a subset check).
        headers: Vec<(String, String)>,
    },
    /// `on-request` redirects.
    Redirect {
        /// The location, exactly.
        location: String,
        /// Checked when given.
        status: Option<u16>,
    },
    /// `on-request` answers itself.
    Respond {
        /// The status.
        status: u16,
        /// Checked (exactly) when given.
        body: Option<String>,
        /// Headers the answer must have (a subset check).
        headers: Vec<(String, String)>,
    },
}

impl Expect {
    /// Whether this expects an answer of `on-request` (a request case).
    pub fn is_for_request(&self) -> bool {
        matches!(
            self,
            Expect::FollowRoutes
                | Expect::Forward { .. }
                | Expect::Redirect { .. }
                | Expect::Respond { .. }
        )
    }
}

// --- The raw YAML shapes ---

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default, deserialize_with = "de_config")]
    config: Vec<(String, String)>,
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default, deserialize_with = "de_case_config")]
    config: Option<Vec<(String, String)>>,
    hello: Option<HelloSpec>,
    request: Option<RequestSpec>,
    expect: RawExpect,
}

/// The `request:` of a request case; see the module docs for defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestSpec {
    /// Default `GET`.
    pub method: String,
    /// `https` (default) or `http`.
    pub scheme: String,
    /// Default `example.com`.
    pub host: String,
    /// Path with an optional `?query`; default `/`.
    pub path: String,
    /// Request headers; names are lowercased.
    #[serde(deserialize_with = "de_headers")]
    pub headers: Vec<(String, String)>,
    /// Client IP address; default `203.0.113.7`.
    pub source: String,
    /// Client port; default 40000.
    pub source_port: u16,
    /// SNI; default the host over https, none over http.
    pub sni: Option<String>,
    /// Route set name; default `web`.
    pub route_set: String,
    /// The route set's choice; default none (no route matched).
    pub routed_to: Option<String>,
}

/// The `hello:` of a case. Every field is optional; the defaults describe
/// a TLS 1.3 hello from a current browser.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HelloSpec {
    /// Server name; `None` = no SNI.
    pub sni: Option<String>,
    /// ALPN protocols; default none.
    pub alpn: Vec<String>,
    /// Client IP address; default `203.0.113.7`.
    pub source: String,
    /// Client port; default 40000.
    pub source_port: u16,
    /// Local port; default 443.
    pub local_port: u16,
    /// Default 0x0303.
    pub legacy_version: u16,
    /// Default `[0x0304, 0x0303]`.
    pub supported_versions: Vec<u16>,
    /// Default the three TLS 1.3 suites and two ECDHE ones.
    pub cipher_suites: Vec<u16>,
    /// Default a typical extension list.
    pub extensions: Vec<u16>,
    /// Default X25519MLKEM768, X25519, P-256.
    pub supported_groups: Vec<u16>,
    /// Default ECDSA-P256, RSA-PSS, RSA-PKCS1 with SHA-256.
    pub signature_algorithms: Vec<u16>,
    /// Default X25519MLKEM768, X25519.
    pub key_share_groups: Vec<u16>,
    /// Default empty.
    pub ja4: String,
    /// Default false.
    pub has_ech: bool,
    /// Default 512.
    pub hello_bytes: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    passthrough: Option<String>,
    terminate: Option<String>,
    reject: Option<String>,
    init_error: Option<String>,
    proxy_protocol: Option<RawProxyProtocol>,
    alert: Option<RawAlert>,
    follow_routes: Option<bool>,
    forward: Option<String>,
    redirect: Option<String>,
    respond: Option<u16>,
    status: Option<u16>,
    body: Option<String>,
    #[serde(default, deserialize_with = "de_headers_opt")]
    headers: Option<Vec<(String, String)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawProxyProtocol {
    BackendDefault,
    Off,
    V2,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawAlert {
    UnrecognizedName,
    AccessDenied,
    HandshakeFailure,
    ProtocolVersion,
    InternalError,
    Close,
}

// === impl RequestSpec ===

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: "GET".into(),
            scheme: "https".into(),
            host: "example.com".into(),
            path: "/".into(),
            headers: Vec::new(),
            source: "203.0.113.7".into(),
            source_port: 40_000,
            sni: None,
            route_set: "web".into(),
            routed_to: None,
        }
    }
}

impl RequestSpec {
    /// The request as the edge would present it to the policy.
    pub fn to_request(&self) -> Result<HttpRequest, String> {
        let source = canonical_ip(&self.source)?;
        let (path, query) = match self.path.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (self.path.as_str(), None),
        };
        if !path.starts_with('/') {
            return Err(format!("path {:?} does not start with /", self.path));
        }
        let host = normalise_name(&self.host);
        let server_name = match (&self.sni, self.scheme.as_str()) {
            (Some(sni), _) => Some(normalise_name(sni)),
            (None, "https") => Some(host.clone()),
            (None, "http") => None,
            (None, other) => return Err(format!("scheme {other:?} is not https or http")),
        };
        Ok(HttpRequest {
            method: self.method.clone(),
            scheme: self.scheme.clone(),
            host,
            path: path.to_owned(),
            query,
            headers: self.headers.clone(),
            source_addr: source,
            source_port: self.source_port,
            server_name,
            route_set: self.route_set.clone(),
            routed_to: self.routed_to.clone(),
        })
    }
}

/// An IP address as the edge shows it: IPv4-mapped IPv6 as IPv4.
fn canonical_ip(text: &str) -> Result<String, String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("source {text:?} is not an IP address"))?;
    Ok(ip.to_canonical().to_string())
}

// === impl HelloSpec ===

impl Default for HelloSpec {
    fn default() -> Self {
        HelloSpec {
            sni: None,
            alpn: Vec::new(),
            source: "203.0.113.7".into(),
            source_port: 40_000,
            local_port: 443,
            legacy_version: 0x0303,
            supported_versions: vec![0x0304, 0x0303],
            cipher_suites: vec![0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f],
            extensions: vec![
                0x0000, 0x0017, 0xff01, 0x000a, 0x000b, 0x0023, 0x0010, 0x0005, 0x000d, 0x0033,
                0x002d, 0x002b,
            ],
            supported_groups: vec![0x11ec, 0x001d, 0x0017],
            signature_algorithms: vec![0x0403, 0x0804, 0x0401],
            key_share_groups: vec![0x11ec, 0x001d],
            ja4: String::new(),
            has_ech: false,
            hello_bytes: 512,
        }
    }
}

impl HelloSpec {
    /// The hello as the edge would present it to the policy.
    pub fn to_hello(&self) -> Result<ClientHello, String> {
        let source = canonical_ip(&self.source)?;
        Ok(ClientHello {
            server_name: self.sni.as_deref().map(normalise_name),
            alpn: self.alpn.clone(),
            source_addr: source,
            source_port: self.source_port,
            local_port: self.local_port,
            legacy_version: self.legacy_version,
            supported_versions: self.supported_versions.clone(),
            cipher_suites: self.cipher_suites.clone(),
            extensions: self.extensions.clone(),
            supported_groups: self.supported_groups.clone(),
            signature_algorithms: self.signature_algorithms.clone(),
            key_share_groups: self.key_share_groups.clone(),
            ja4: self.ja4.clone(),
            has_ech: self.has_ech,
            hello_bytes: self.hello_bytes,
        })
    }
}

/// Lowercase, trailing dot removed: the form the edge gives policies.
fn normalise_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

// === writing ===

/// The first line of a case file that [`emit_case`] entries are appended to.
pub const CASES_HEADER: &str = "cases:\n";

/// One case, as an entry of a case file's `cases:` list: every field of
/// `hello` (so `test` replays exactly what the edge saw) and `decision` as
/// the expectation. `name` is quoted as needed.
pub fn emit_case(name: &str, hello: &ClientHello, decision: &Decision) -> String {
    let hex = |list: &[u16]| {
        let items: Vec<String> = list.iter().map(|v| format!("0x{v:04x}")).collect();
        format!("[{}]", items.join(", "))
    };
    let quoted = |s: &str| format!("{s:?}");
    let mut out = format!("  - name: {}\n    hello:\n", quoted(name));
    if let Some(sni) = &hello.server_name {
        out.push_str(&format!("      sni: {}\n", quoted(sni)));
    }
    let alpn: Vec<String> = hello.alpn.iter().map(|a| quoted(a)).collect();
    out.push_str(&format!("      alpn: [{}]\n", alpn.join(", ")));
    out.push_str(&format!("      source: {}\n", quoted(&hello.source_addr)));
    out.push_str(&format!("      source_port: {}\n", hello.source_port));
    out.push_str(&format!("      local_port: {}\n", hello.local_port));
    out.push_str(&format!(
        "      legacy_version: 0x{:04x}\n",
        hello.legacy_version
    ));
    for (key, list) in [
        ("supported_versions", &hello.supported_versions),
        ("cipher_suites", &hello.cipher_suites),
        ("extensions", &hello.extensions),
        ("supported_groups", &hello.supported_groups),
        ("signature_algorithms", &hello.signature_algorithms),
        ("key_share_groups", &hello.key_share_groups),
    ] {
        out.push_str(&format!("      {key}: {}\n", hex(list)));
    }
    out.push_str(&format!("      ja4: {}\n", quoted(&hello.ja4)));
    out.push_str(&format!("      has_ech: {}\n", hello.has_ech));
    out.push_str(&format!("      hello_bytes: {}\n", hello.hello_bytes));
    let expect = match decision {
        Decision::Passthrough(r) | Decision::Terminate(r) => {
            let kind = if matches!(decision, Decision::Passthrough(_)) {
                "passthrough"
            } else {
                "terminate"
            };
            let proxy = match r.proxy_protocol {
                ProxyProtocol::BackendDefault => String::new(),
                p => format!(", proxy_protocol: {}", crate::describe::proxy_name(p)),
            };
            format!("{{ {kind}: {}{proxy} }}", quoted(&r.backend))
        }
        Decision::Reject(r) => format!(
            "{{ reject: {}, alert: {} }}",
            quoted(&r.reason),
            crate::describe::alert_name(r.alert)
        ),
    };
    out.push_str(&format!("    expect: {expect}\n"));
    out
}

// === parsing ===

/// A case file that cannot be used, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The field path, e.g. `cases[2].expect`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Parses a case file's text.
pub fn parse(text: &str) -> Result<CaseFile, ParseError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let location = inner.location();
        ParseError {
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            field,
            message: strip_location(&inner.to_string()),
        }
    })?;
    let mut cases = Vec::with_capacity(raw.cases.len());
    for (i, c) in raw.cases.into_iter().enumerate() {
        // Checks serde cannot express; located by field path (serde_yaml
        // keeps no positions after deserialisation).
        let at = |field: &str, message: String| ParseError {
            line: None,
            column: None,
            field: format!("cases[{i}].{field}"),
            message: format!("{message} (case {:?})", c.name),
        };
        let expect = c.expect.into_expect().map_err(|m| at("expect", m))?;
        let request = match (&c.request, &c.hello) {
            (Some(_), Some(_)) => {
                return Err(at(
                    "request",
                    "a case has a hello or a request, not both".into(),
                ));
            }
            (Some(spec), None) => Some(spec.to_request().map_err(|m| at("request", m))?),
            (None, _) => None,
        };
        match (request.is_some(), expect.is_for_request()) {
            (true, false) if !matches!(expect, Expect::InitError(_)) => {
                return Err(at(
                    "expect",
                    "a request case expects follow_routes, forward, redirect or respond".into(),
                ));
            }
            (false, true) => {
                return Err(at(
                    "request",
                    "follow_routes, forward, redirect and respond need a request".into(),
                ));
            }
            _ => {}
        }
        let hello = c
            .hello
            .unwrap_or_default()
            .to_hello()
            .map_err(|m| at("hello.source", m))?;
        cases.push(Case {
            name: c.name,
            config: c.config,
            hello,
            request,
            expect,
        });
    }
    Ok(CaseFile {
        config: raw.config,
        cases,
    })
}

/// serde_yaml prefixes messages with its own field path and appends " at
/// line L column C"; both are reported separately.
fn strip_location(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    match message.split_once(": ") {
        Some((path, rest)) if !path.contains(char::is_whitespace) => rest.to_owned(),
        _ => message.to_owned(),
    }
}

fn de_config<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    let value = Value::deserialize(d)?;
    config_map(&value).map_err(serde::de::Error::custom)
}

fn de_headers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    let value = Value::deserialize(d)?;
    let pairs = config_map(&value).map_err(serde::de::Error::custom)?;
    Ok(pairs
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect())
}

fn de_headers_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<(String, String)>>, D::Error> {
    de_headers(d).map(Some)
}

fn de_case_config<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<(String, String)>>, D::Error> {
    de_config(d).map(Some)
}

impl RawExpect {
    fn into_expect(self) -> Result<Expect, String> {
        let proxy_protocol = self.proxy_protocol.map(|p| match p {
            RawProxyProtocol::BackendDefault => ProxyProtocol::BackendDefault,
            RawProxyProtocol::Off => ProxyProtocol::Off,
            RawProxyProtocol::V2 => ProxyProtocol::V2,
        });
        let alert = self.alert.map(|a| match a {
            RawAlert::UnrecognizedName => Alert::UnrecognizedName,
            RawAlert::AccessDenied => Alert::AccessDenied,
            RawAlert::HandshakeFailure => Alert::HandshakeFailure,
            RawAlert::ProtocolVersion => Alert::ProtocolVersion,
            RawAlert::InternalError => Alert::InternalError,
            RawAlert::Close => Alert::Close,
        });
        let given = [
            self.passthrough.is_some(),
            self.terminate.is_some(),
            self.reject.is_some(),
            self.init_error.is_some(),
            self.follow_routes.is_some(),
            self.forward.is_some(),
            self.redirect.is_some(),
            self.respond.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(
                "expect needs exactly one of passthrough, terminate, reject, \
                        init_error, follow_routes, forward, redirect, respond"
                    .into(),
            );
        }
        let headers = self.headers;
        let expect = if let Some(backend) = self.passthrough {
            Expect::Passthrough {
                backend,
                proxy_protocol,
            }
        } else if let Some(backend) = self.terminate {
            Expect::Terminate {
                backend,
                proxy_protocol,
            }
        } else if let Some(reason) = self.reject {
            Expect::Reject { reason, alert }
        } else if let Some(text) = self.init_error {
            Expect::InitError(text)
        } else if let Some(follow) = self.follow_routes {
            if !follow {
                return Err("follow_routes can only be true".into());
            }
            Expect::FollowRoutes
        } else if let Some(backend) = self.forward {
            Expect::Forward {
                backend,
                headers: headers.clone().unwrap_or_default(),
            }
        } else if let Some(location) = self.redirect {
            Expect::Redirect {
                location,
                status: self.status,
            }
        } else if let Some(status) = self.respond {
            Expect::Respond {
                status,
                body: self.body.clone(),
                headers: headers.clone().unwrap_or_default(),
            }
        } else {
            unreachable!("exactly one expectation was counted above")
        };
        if self.status.is_some() && !matches!(expect, Expect::Redirect { .. }) {
            return Err("status goes with redirect (respond takes the status itself)".into());
        }
        if self.body.is_some() && !matches!(expect, Expect::Respond { .. }) {
            return Err("body goes with respond".into());
        }
        if headers.is_some() && !matches!(expect, Expect::Forward { .. } | Expect::Respond { .. }) {
            return Err("headers goes with forward or respond".into());
        }
        let routes = matches!(
            expect,
            Expect::Passthrough { .. } | Expect::Terminate { .. }
        );
        if proxy_protocol.is_some() && !routes {
            return Err("proxy_protocol goes with passthrough or terminate".into());
        }
        if alert.is_some() && !matches!(expect, Expect::Reject { .. }) {
            return Err("alert goes with reject".into());
        }
        Ok(expect)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn emitted_cases_parse_back_to_the_same_hello_and_decision() {
        use crate::{Rejection, Route};
        let hello = HelloSpec {
            sni: Some("app.example".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            ja4: "t13d1516h2_8daaf6152771_d8a2da3f94cd".into(),
            has_ech: true,
            hello_bytes: 1789,
            ..HelloSpec::default()
        }
        .to_hello()
        .unwrap();
        let decisions = [
            Decision::Passthrough(Route {
                backend: "turn".into(),
                proxy_protocol: ProxyProtocol::V2,
            }),
            Decision::Terminate(Route {
                backend: "app".into(),
                proxy_protocol: ProxyProtocol::BackendDefault,
            }),
            Decision::Reject(Rejection {
                reason: "say \"no\"".into(),
                alert: Alert::AccessDenied,
            }),
        ];
        let mut text = CASES_HEADER.to_owned();
        for (i, decision) in decisions.iter().enumerate() {
            text.push_str(&emit_case(&format!("captured: {i}"), &hello, decision));
        }
        let file = parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert_eq!(file.cases.len(), 3);
        let expected = [
            Expect::Passthrough {
                backend: "turn".into(),
                proxy_protocol: Some(ProxyProtocol::V2),
            },
            Expect::Terminate {
                backend: "app".into(),
                proxy_protocol: None,
            },
            Expect::Reject {
                reason: "say \"no\"".into(),
                alert: Some(Alert::AccessDenied),
            },
        ];
        for (case, expect) in file.cases.iter().zip(&expected) {
            assert_eq!(case.hello, hello, "{text}");
            assert_eq!(&case.expect, expect, "{text}");
        }
        assert_eq!(file.cases[1].name, "captured: 1");
    }
    use super::*;

    const GOOD: &str = "\
config:
  domain: hearth.example
  port: 8443
cases:
  - name: turn
    hello: { sni: Turn.Hearth.Example., alpn: [h2], source: '::ffff:192.0.2.1' }
    expect: { passthrough: turn, proxy_protocol: v2 }
  - name: no sni
    expect: { reject: no-sni, alert: unrecognized-name }
  - name: init
    config: {}
    expect: { init_error: domain }
";

    #[test]
    fn a_good_file_parses() {
        let f = parse(GOOD).unwrap();
        assert_eq!(
            f.config,
            vec![
                ("domain".into(), "hearth.example".into()),
                ("port".into(), "8443".into())
            ]
        );
        assert_eq!(f.cases.len(), 3);
        let turn = &f.cases[0];
        assert_eq!(
            turn.hello.server_name.as_deref(),
            Some("turn.hearth.example")
        );
        assert_eq!(turn.hello.source_addr, "192.0.2.1");
        assert_eq!(turn.hello.alpn, ["h2"]);
        assert_eq!(
            turn.expect,
            Expect::Passthrough {
                backend: "turn".into(),
                proxy_protocol: Some(ProxyProtocol::V2)
            }
        );
        assert_eq!(f.cases[1].hello.server_name, None);
        assert_eq!(f.cases[2].config, Some(vec![]));
        assert_eq!(f.cases[2].expect, Expect::InitError("domain".into()));
        assert_eq!(f.cases[0].config, None);
    }

    #[test]
    fn an_unknown_hello_field_names_line_and_field() {
        let text =
            "cases:\n  - name: x\n    hello: { sni: a, snii: b }\n    expect: { passthrough: t }\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(3), "{e:?}");
        assert_eq!(e.field, "cases[0].hello.snii", "{e:?}");
        assert!(e.message.contains("unknown field `snii`"), "{e:?}");
    }

    #[test]
    fn an_unknown_expect_field_is_refused() {
        let text = "cases:\n  - name: x\n    expect: { passthru: t }\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.field.starts_with("cases[0].expect"), "{e:?}");
    }

    #[test]
    fn a_bad_alert_is_refused() {
        let text = "cases:\n  - name: x\n    expect: { reject: r, alert: nope }\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.field, "cases[0].expect.alert", "{e:?}");
        assert!(e.message.contains("unknown variant `nope`"), "{e:?}");
    }

    #[test]
    fn two_outcomes_are_refused() {
        let text = "cases:\n  - name: x\n    expect: { passthrough: a, terminate: b }\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.field, "cases[0].expect");
        assert!(e.message.contains("exactly one"), "{e:?}");
    }

    #[test]
    fn an_alert_without_reject_is_refused() {
        let text = "cases:\n  - name: x\n    expect: { passthrough: a, alert: close }\n";
        assert!(
            parse(text)
                .unwrap_err()
                .message
                .contains("alert goes with reject")
        );
    }

    #[test]
    fn a_bad_source_is_refused() {
        let text =
            "cases:\n  - name: x\n    hello: { source: nowhere }\n    expect: { reject: r }\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.field, "cases[0].hello.source");
    }

    #[test]
    fn a_nested_config_value_names_its_field() {
        let text = "config:\n  routes: [a]\ncases: []\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.field, "config", "{e:?}");
        assert!(e.message.contains("\"routes\""), "{e:?}");
    }

    #[test]
    fn a_missing_name_is_refused() {
        let text = "cases:\n  - expect: { reject: r }\n";
        let e = parse(text).unwrap_err();
        assert!(e.message.contains("missing field `name`"), "{e:?}");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn unknown_top_level_fields_are_refused() {
        let e = parse("cases: []\ncasez: []\n").unwrap_err();
        assert!(e.message.contains("unknown field `casez`"), "{e:?}");
    }

    #[test]
    fn a_request_case_is_built_as_the_edge_would_present_it() {
        let text = "cases:\n  - name: r\n    request: { host: WWW.App.Example., path: \"/a?b=1\", \
                    source: '::ffff:10.0.0.1', headers: { X-Canary: yes } }\n    \
                    expect: { forward: next, headers: { x-canary: \"1\" } }\n";
        let f = parse(text).unwrap();
        let request = f.cases[0].request.as_ref().unwrap();
        assert_eq!(request.host, "www.app.example");
        assert_eq!(request.server_name.as_deref(), Some("www.app.example"));
        assert_eq!(
            (request.path.as_str(), request.query.as_deref()),
            ("/a", Some("b=1"))
        );
        assert_eq!(request.source_addr, "10.0.0.1");
        assert_eq!(request.headers, [("x-canary".to_owned(), "yes".to_owned())]);
        assert_eq!(request.method, "GET");
        assert_eq!(
            f.cases[0].expect,
            Expect::Forward {
                backend: "next".into(),
                headers: vec![("x-canary".into(), "1".into())]
            }
        );
    }

    #[test]
    fn request_expectations_need_a_request_and_hello_ones_a_hello() {
        let e = parse("cases:\n  - name: x\n    expect: { respond: 403 }\n").unwrap_err();
        assert_eq!(e.field, "cases[0].request", "{e:?}");
        let e =
            parse("cases:\n  - name: x\n    request: {}\n    expect: { reject: r }\n").unwrap_err();
        assert_eq!(e.field, "cases[0].expect", "{e:?}");
        let e = parse(
            "cases:\n  - name: x\n    hello: {}\n    request: {}\n    expect: { follow_routes: true }\n",
        )
        .unwrap_err();
        assert!(e.message.contains("not both"), "{e:?}");
        let e = parse(
            "cases:\n  - name: x\n    request: {}\n    expect: { respond: 200, status: 200 }\n",
        )
        .unwrap_err();
        assert!(e.message.contains("status goes with redirect"), "{e:?}");
        let e = parse(
            "cases:\n  - name: x\n    request: { path: a }\n    expect: { follow_routes: true }\n",
        )
        .unwrap_err();
        assert!(e.message.contains("does not start with /"), "{e:?}");
    }
}
