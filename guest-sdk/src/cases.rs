//! Runs a policy's YAML case file natively, against the Rust type, so a
//! policy crate's `cargo test` checks the same cases the edge's
//! `hearth-wasm-edge test` runs against the built `.wasm` (the harness in
//! `host/policy/src/harness.rs`). Feature `cases`.
//!
//! The file format:
//!
//! ```yaml
//! config:              # applied to every case unless the case has its own
//!   domain: hearth.example
//! cases:
//!   - name: turn is passed through
//!     hello: { sni: turn.hearth.example, alpn: [h2], source: 203.0.113.7 }
//!     expect: { passthrough: turn }      # or terminate: <backend>; optional proxy_protocol
//!   - name: unknown name is refused
//!     hello: { sni: other.example }
//!     expect: { reject: unknown-sni, alert: unrecognized-name }   # alert optional
//!   - name: init needs a domain
//!     config: {}
//!     expect: { init_error: "domain" }   # a substring of init's message
//! ```
//!
//! Each case starts from fresh native host state ([`host::native::reset`]).
//! Request cases (`request:`, for an HTTP policy's `on-request`) are
//! skipped here: they run under `hearth-wasm-edge test` against the built
//! component.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::host::native;
use crate::{Alert, ClientHello, Config, Decision, Policy, ProxyProtocol};

/// A case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    config: BTreeMap<String, String>,
    cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    config: Option<BTreeMap<String, String>>,
    #[serde(default)]
    hello: Hello,
    /// A request case: skipped natively.
    request: Option<serde_yaml::Value>,
    /// An [`Expect`] for hello cases; request cases expect other things.
    expect: serde_yaml::Value,
}

/// The hello fields a case may set; all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hello {
    sni: Option<String>,
    #[serde(default)]
    alpn: Vec<String>,
    source: Option<String>,
    source_port: Option<u16>,
    local_port: Option<u16>,
    legacy_version: Option<u16>,
    #[serde(default)]
    supported_versions: Vec<u16>,
    #[serde(default)]
    cipher_suites: Vec<u16>,
    #[serde(default)]
    extensions: Vec<u16>,
    #[serde(default)]
    supported_groups: Vec<u16>,
    #[serde(default)]
    signature_algorithms: Vec<u16>,
    #[serde(default)]
    key_share_groups: Vec<u16>,
    ja4: Option<String>,
    #[serde(default)]
    has_ech: bool,
    hello_bytes: Option<u32>,
}

/// The expected outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    passthrough: Option<String>,
    terminate: Option<String>,
    reject: Option<String>,
    alert: Option<String>,
    proxy_protocol: Option<String>,
    init_error: Option<String>,
}

impl Hello {
    fn to_client_hello(&self) -> ClientHello {
        ClientHello {
            server_name: self.sni.clone(),
            alpn: self.alpn.clone(),
            source_addr: self.source.clone().unwrap_or_default(),
            source_port: self.source_port.unwrap_or_default(),
            local_port: self.local_port.unwrap_or_default(),
            legacy_version: self.legacy_version.unwrap_or_default(),
            supported_versions: self.supported_versions.clone(),
            cipher_suites: self.cipher_suites.clone(),
            extensions: self.extensions.clone(),
            supported_groups: self.supported_groups.clone(),
            signature_algorithms: self.signature_algorithms.clone(),
            key_share_groups: self.key_share_groups.clone(),
            ja4: self.ja4.clone().unwrap_or_default(),
            has_ech: self.has_ech,
            hello_bytes: self.hello_bytes.unwrap_or_default(),
        }
    }
}

/// Runs every hello case of the YAML text against `P`. Returns how many
/// passed, or a report naming each failing case.
pub fn run<P: Policy>(yaml: &str) -> Result<usize, String> {
    let file: CaseFile = serde_yaml::from_str(yaml).map_err(|e| format!("case file: {e}"))?;
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in file.cases.iter().filter(|c| c.request.is_none()) {
        ran += 1;
        let expect = serde_yaml::from_value::<Expect>(case.expect.clone())
            .map_err(|e| format!("case {:?}: expect: {e}", case.name));
        if let Err(why) = expect.and_then(|expect| {
            run_case::<P>(&file.config, case, &expect)
                .map_err(|why| format!("case {:?}: {why}", case.name))
        }) {
            failures.push(why);
        }
    }
    if failures.is_empty() {
        Ok(ran)
    } else {
        Err(failures.join("\n"))
    }
}

fn run_case<P: Policy>(
    file_config: &BTreeMap<String, String>,
    case: &Case,
    expect: &Expect,
) -> Result<(), String> {
    native::reset();
    let pairs = case.config.as_ref().unwrap_or(file_config);
    let config = Config::new(pairs.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let init = P::init(&config);
    if let Some(wanted) = &expect.init_error {
        return match init {
            Ok(_) => Err(format!(
                "init succeeded, expected an error containing {wanted:?}"
            )),
            Err(err) if err.to_string().contains(wanted.as_str()) => Ok(()),
            Err(err) => Err(format!(
                "init error {:?} does not contain {wanted:?}",
                err.to_string()
            )),
        };
    }
    let policy = init.map_err(|err| format!("init failed: {err}"))?;
    let hello = case.hello.to_client_hello();
    let got = policy.decide(&hello);
    check(expect, &got).map_err(|why| format!("{why} (got `{got}`)"))
}

fn check(expect: &Expect, got: &Decision) -> Result<(), String> {
    let proxy = |wanted: &Option<String>, route: &crate::Route| -> Result<(), String> {
        match wanted {
            None => Ok(()),
            Some(text) => {
                let wanted: ProxyProtocol = text.parse().map_err(|e| format!("{e}"))?;
                if route.proxy_protocol == wanted {
                    Ok(())
                } else {
                    Err(format!("expected proxy_protocol {wanted}"))
                }
            }
        }
    };
    match (expect, got) {
        (
            Expect {
                passthrough: Some(backend),
                ..
            },
            Decision::Passthrough(route),
        )
        | (
            Expect {
                terminate: Some(backend),
                ..
            },
            Decision::Terminate(route),
        ) if &route.backend == backend => proxy(&expect.proxy_protocol, route),
        (
            Expect {
                reject: Some(reason),
                ..
            },
            Decision::Reject(rejection),
        ) if &rejection.reason == reason => match &expect.alert {
            None => Ok(()),
            Some(text) => {
                let wanted: Alert = text.parse().map_err(|e| format!("{e}"))?;
                if rejection.alert == wanted {
                    Ok(())
                } else {
                    Err(format!("expected alert {wanted}"))
                }
            }
        },
        _ => Err(format!("expected {}", describe(expect))),
    }
}

fn describe(expect: &Expect) -> String {
    match expect {
        Expect {
            passthrough: Some(b),
            ..
        } => format!("passthrough {b}"),
        Expect {
            terminate: Some(b), ..
        } => format!("terminate {b}"),
        Expect {
            reject: Some(r), ..
        } => format!("reject {r}"),
        _ => "one of passthrough, terminate, reject or init_error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigError;

    /// Routes every name to the backend named by config key `backend`.
    struct To(String);

    impl Policy for To {
        fn init(config: &Config) -> Result<Self, ConfigError> {
            Ok(To(config.required("backend")?.to_owned()))
        }

        fn decide(&self, hello: &ClientHello) -> Decision {
            match hello.server_name() {
                Some(_) => {
                    Decision::passthrough(self.0.as_str()).with_proxy_protocol(ProxyProtocol::V2)
                }
                None => Decision::reject("no-sni", Alert::UnrecognizedName),
            }
        }
    }

    const FILE: &str = r#"
config: { backend: web }
cases:
  - name: routed
    hello: { sni: a.example, alpn: [h2], source: 192.0.2.1, source_port: 5000 }
    expect: { passthrough: web, proxy_protocol: v2 }
  - name: no sni
    expect: { reject: no-sni, alert: unrecognized-name }
  - name: init error
    config: {}
    expect: { init_error: backend }
"#;

    #[test]
    fn passing_cases_are_counted() {
        assert_eq!(run::<To>(FILE), Ok(3));
    }

    #[test]
    fn failing_cases_are_named_with_what_happened() {
        let file = r#"
config: { backend: web }
cases:
  - name: wrong backend
    hello: { sni: a.example }
    expect: { passthrough: turn }
  - name: wrong kind
    hello: { sni: a.example }
    expect: { terminate: web }
  - name: wrong proxy
    hello: { sni: a.example }
    expect: { passthrough: web, proxy_protocol: off }
  - name: wrong alert
    expect: { reject: no-sni, alert: close }
  - name: init unexpectedly fine
    expect: { init_error: backend }
"#;
        let report = run::<To>(file).unwrap_err();
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines,
            [
                r#"case "wrong backend": expected passthrough turn (got `passthrough web proxy=v2`)"#,
                r#"case "wrong kind": expected terminate web (got `passthrough web proxy=v2`)"#,
                r#"case "wrong proxy": expected proxy_protocol off (got `passthrough web proxy=v2`)"#,
                r#"case "wrong alert": expected alert close (got `reject no-sni alert=unrecognized-name`)"#,
                r#"case "init unexpectedly fine": init succeeded, expected an error containing "backend""#,
            ]
        );
    }

    #[test]
    fn request_cases_are_left_to_the_edge_and_expect_fields_are_checked() {
        let file = "config: { backend: web }\ncases:\n  - name: r\n    request: { path: / }\n    expect: { respond: 403 }\n\
                    \x20 - name: h\n    hello: { sni: a }\n    expect: { passthrough: web }\n";
        assert_eq!(run::<To>(file), Ok(1));
        let typo = "cases:\n  - name: x\n    hello: { sni: a }\n    expect: { passthru: web }\n";
        assert!(
            run::<To>(typo)
                .unwrap_err()
                .contains("unknown field `passthru`")
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let file = "cases:\n  - name: x\n    hello: { snii: a }\n    expect: { passthrough: a }\n";
        assert!(
            run::<To>(file)
                .unwrap_err()
                .contains("unknown field `snii`")
        );
    }
}
