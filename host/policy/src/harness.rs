//! The policy test harness: YAML case files run against a compiled policy.
//! Used by `hearth-wasm-edge test` / `explain` (`host/src/cli/policy_cmds.rs`)
//! and by policy crates' own `cargo test` through [`run_file`].
//!
//! - [`cases`]: the case file format and its strict parser.
//!
//! A policy's config (`crate::config`) and the words decisions are shown
//! in (`crate::describe`) are shared with the edge and re-exported here.

pub mod cases;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

pub use self::cases::{
    CASES_HEADER, Case, CaseFile, Expect, HelloSpec, ParseError, RequestSpec, emit_case,
};
pub use crate::config::{ConfigError, config_map, config_pairs};
use crate::describe::describe_headers;
pub use crate::describe::{alert_name, describe, describe_request, proxy_name};
use crate::{Decision, HttpDecision, Limits, LoadError, Policy, ProxyProtocol, Runtime};

/// Case files could not be run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The case file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The case file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The case file is malformed.
    #[error("{path}{}: {}: {}", location(.error), field(.error), .error.message)]
    Parse {
        /// The case file.
        path: PathBuf,
        /// Where and what.
        error: ParseError,
    },
    /// The policy could not be loaded (unreadable, not a policy). A policy
    /// whose `init` refuses a config is not this: that is a case outcome.
    #[error("{0}")]
    Load(LoadError),
}

/// The outcome of a case file.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed, in file order.
    pub failures: Vec<Failure>,
}

/// One failed case.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The case file.
    pub file: PathBuf,
    /// The case's name.
    pub case: String,
    /// What the case expected, as text.
    pub expected: String,
    /// What happened, as text.
    pub got: String,
}

/// The names an edge config gives decisions to aim at: `passthrough` and
/// a request's `forward` need a backend, `terminate` a backend or an HTTP
/// route set. Given to [`run_cases_for`], a case whose expected or actual
/// decision names anything else fails, naming the config file.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// The config file, for messages.
    pub file: String,
    /// `backends.*`.
    pub backends: BTreeSet<String>,
    /// `http_routes.*`.
    pub route_sets: BTreeSet<String>,
}

impl Targets {
    /// Why `kind` (`passthrough`, `terminate`, `forward`) to `name` cannot
    /// happen under this config, if it cannot.
    fn missing(&self, kind: &str, name: &str) -> Option<String> {
        let known = |set: &BTreeSet<String>| {
            if set.is_empty() {
                "none".to_owned()
            } else {
                set.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        let found =
            self.backends.contains(name) || (kind == "terminate" && self.route_sets.contains(name));
        if found {
            return None;
        }
        let sets = if kind == "terminate" {
            format!("; route sets: {}", known(&self.route_sets))
        } else {
            String::new()
        };
        Some(format!(
            "{} has no {} {name:?} (backends: {}{sets})",
            self.file,
            if kind == "terminate" {
                "backend or route set"
            } else {
                "backend"
            },
            known(&self.backends),
        ))
    }
}

/// What loading a policy with one config gave; kept per distinct config so
/// cases sharing a config share one loaded policy.
enum Loaded {
    Ready(Policy),
    /// `init` refused, with its message.
    Refused(String),
    /// `init` trapped, timed out or exhausted memory.
    Failed(String),
}

// === impl Report ===

impl Report {
    /// `N passed, M failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failures.len())
    }

    /// Adds another report's results.
    pub fn merge(&mut self, other: Report) {
        self.passed += other.passed;
        self.failures.extend(other.failures);
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FAIL {}: {}: expected {}, got {}",
            self.file.display(),
            self.case,
            self.expected,
            self.got
        )
    }
}

// === running ===

/// Runs the cases of `cases_path` against the policy at `policy_path` with
/// the default [`Limits`].
pub fn run_file(
    runtime: &Runtime,
    policy_path: &Path,
    cases_path: &Path,
) -> Result<Report, HarnessError> {
    let file = read_case_file(cases_path)?;
    let wasm = std::fs::read(policy_path).map_err(|source| {
        HarnessError::Load(LoadError::Read {
            path: policy_path.to_owned(),
            source,
        })
    })?;
    run_cases(
        runtime,
        policy_path,
        &wasm,
        cases_path,
        &file,
        Limits::default(),
    )
}

/// Reads and parses a case file.
pub fn read_case_file(path: &Path) -> Result<CaseFile, HarnessError> {
    let text = std::fs::read_to_string(path).map_err(|source| HarnessError::Read {
        path: path.to_owned(),
        source,
    })?;
    cases::parse(&text).map_err(|error| HarnessError::Parse {
        path: path.to_owned(),
        error,
    })
}

/// Runs parsed cases against the policy `wasm` (read from `policy_path`).
/// `cases_path` names the file in failures.
pub fn run_cases(
    runtime: &Runtime,
    policy_path: &Path,
    wasm: &[u8],
    cases_path: &Path,
    file: &CaseFile,
    limits: Limits,
) -> Result<Report, HarnessError> {
    run_cases_for(runtime, policy_path, wasm, cases_path, file, limits, None)
}

/// [`run_cases`], and with `targets`, every decision a case expects or
/// gets must name one of them.
pub fn run_cases_for(
    runtime: &Runtime,
    policy_path: &Path,
    wasm: &[u8],
    cases_path: &Path,
    file: &CaseFile,
    limits: Limits,
    targets: Option<&Targets>,
) -> Result<Report, HarnessError> {
    // Fail on a broken policy even when no case would load it.
    Policy::check_bytes(runtime, policy_path, wasm).map_err(HarnessError::Load)?;
    let mut loaded: HashMap<Vec<(String, String)>, Loaded> = HashMap::new();
    let mut report = Report::default();
    for case in &file.cases {
        let config = case.config.as_ref().unwrap_or(&file.config);
        if !loaded.contains_key(config) {
            let outcome =
                match Policy::load_bytes(runtime, policy_path, wasm, config.clone(), limits) {
                    Ok(p) => Loaded::Ready(p),
                    Err(LoadError::InitRefused { message, .. }) => Loaded::Refused(message),
                    Err(LoadError::InitFailed { source, .. }) => Loaded::Failed(source.to_string()),
                    Err(e) => return Err(HarnessError::Load(e)),
                };
            loaded.insert(config.clone(), outcome);
        }
        let got = match (&loaded[config], &case.request) {
            (Loaded::Ready(policy), None) => match policy.decide(&case.hello) {
                Ok(d) => Outcome::Decision(d),
                Err(e) => Outcome::Error(e.to_string()),
            },
            (Loaded::Ready(policy), Some(_)) if !policy.handles_requests() => {
                Outcome::Error("the policy does not export on-request (not an http-policy)".into())
            }
            (Loaded::Ready(policy), Some(request)) => match policy.on_request(request) {
                Ok(d) => Outcome::Request(d),
                Err(e) => Outcome::Error(e.to_string()),
            },
            (Loaded::Refused(m), _) => Outcome::InitRefused(m.clone()),
            (Loaded::Failed(m), _) => Outcome::Error(format!("init failed: {m}")),
        };
        let missing = targets.and_then(|t| {
            let expected = expect_target(&case.expect).and_then(|(k, n)| t.missing(k, n));
            expected.or_else(|| got.target().and_then(|(k, n)| t.missing(k, n)))
        });
        let failed = match missing {
            Some(missing) => Some(format!("{got}, but {missing}")),
            None if got.matches(&case.expect) => None,
            None => Some(got.to_string()),
        };
        match failed {
            None => report.passed += 1,
            Some(got) => report.failures.push(Failure {
                file: cases_path.to_owned(),
                case: case.name.clone(),
                expected: describe_expect(&case.expect),
                got,
            }),
        }
    }
    Ok(report)
}

/// What a case produced.
enum Outcome {
    Decision(Decision),
    Request(HttpDecision),
    InitRefused(String),
    Error(String),
}

/// The (kind, name) a case's expected decision aims at, if any.
fn expect_target(expect: &Expect) -> Option<(&'static str, &str)> {
    match expect {
        Expect::Passthrough { backend, .. } => Some(("passthrough", backend)),
        Expect::Terminate { backend, .. } => Some(("terminate", backend)),
        Expect::Forward { backend, .. } => Some(("forward", backend)),
        _ => None,
    }
}

impl Outcome {
    /// The (kind, name) the decision aims at, if any.
    fn target(&self) -> Option<(&'static str, &str)> {
        match self {
            Outcome::Decision(Decision::Passthrough(r)) => Some(("passthrough", &r.backend)),
            Outcome::Decision(Decision::Terminate(r)) => Some(("terminate", &r.backend)),
            Outcome::Request(HttpDecision::Forward(f)) => Some(("forward", &f.backend)),
            _ => None,
        }
    }

    fn matches(&self, expect: &Expect) -> bool {
        let proxy_ok =
            |want: &Option<ProxyProtocol>, got: ProxyProtocol| want.is_none_or(|w| w == got);
        match (self, expect) {
            (
                Outcome::Decision(Decision::Passthrough(r)),
                Expect::Passthrough {
                    backend,
                    proxy_protocol,
                },
            )
            | (
                Outcome::Decision(Decision::Terminate(r)),
                Expect::Terminate {
                    backend,
                    proxy_protocol,
                },
            ) => &r.backend == backend && proxy_ok(proxy_protocol, r.proxy_protocol),
            (Outcome::Decision(Decision::Reject(r)), Expect::Reject { reason, alert }) => {
                &r.reason == reason && alert.is_none_or(|a| a == r.alert)
            }
            (Outcome::InitRefused(message), Expect::InitError(text)) => {
                message.contains(text.as_str())
            }
            (Outcome::Request(HttpDecision::FollowRoutes), Expect::FollowRoutes) => true,
            (Outcome::Request(HttpDecision::Forward(f)), Expect::Forward { backend, headers }) => {
                &f.backend == backend && has_headers(&f.set_headers, headers)
            }
            (
                Outcome::Request(HttpDecision::Redirect(r)),
                Expect::Redirect { location, status },
            ) => &r.location == location && status.is_none_or(|s| s == r.status),
            (
                Outcome::Request(HttpDecision::Respond(r)),
                Expect::Respond {
                    status,
                    body,
                    headers,
                },
            ) => {
                r.status == *status
                    && body.as_ref().is_none_or(|b| b == &r.body)
                    && has_headers(&r.headers, headers)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Decision(d) => f.write_str(&describe(d)),
            Outcome::Request(d) => f.write_str(&describe_request(d)),
            Outcome::InitRefused(m) => write!(f, "init error {m:?}"),
            Outcome::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// Whether every `(name, value)` of `want` is in `got` (names compared
/// case-insensitively).
fn has_headers(got: &[(String, String)], want: &[(String, String)]) -> bool {
    want.iter().all(|(name, value)| {
        got.iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value)
    })
}

fn describe_expect(e: &Expect) -> String {
    let proxy = |p: &Option<ProxyProtocol>| {
        p.map(|p| format!(" (proxy_protocol {})", proxy_name(p)))
            .unwrap_or_default()
    };
    match e {
        Expect::Passthrough {
            backend,
            proxy_protocol,
        } => format!("passthrough {backend}{}", proxy(proxy_protocol)),
        Expect::Terminate {
            backend,
            proxy_protocol,
        } => format!("terminate {backend}{}", proxy(proxy_protocol)),
        Expect::Reject { reason, alert } => {
            let alert = alert
                .map(|a| format!(" (alert {})", alert_name(a)))
                .unwrap_or_default();
            format!("reject {reason}{alert}")
        }
        Expect::InitError(text) => format!("init error containing {text:?}"),
        Expect::FollowRoutes => "follow_routes".into(),
        Expect::Forward { backend, headers } => {
            format!("forward {backend}{}", describe_headers(headers))
        }
        Expect::Redirect { location, status } => {
            let status = status.map(|s| format!(" (status {s})")).unwrap_or_default();
            format!("redirect {location}{status}")
        }
        Expect::Respond {
            status,
            body,
            headers,
        } => {
            let body = body
                .as_ref()
                .map(|b| format!(" (body {b:?})"))
                .unwrap_or_default();
            format!("respond {status}{body}{}", describe_headers(headers))
        }
    }
}

fn location(e: &ParseError) -> String {
    match (e.line, e.column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn field(e: &ParseError) -> &str {
    if e.field.is_empty() || e.field == "." {
        "(top level)"
    } else {
        &e.field
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_file_line_and_field() {
        let text =
            "cases:\n  - name: x\n    hello: { sni: a, snii: b }\n    expect: { passthrough: t }\n";
        let error = cases::parse(text).unwrap_err();
        let e = HarnessError::Parse {
            path: PathBuf::from("p.tests.yaml"),
            error,
        };
        let msg = e.to_string();
        assert!(msg.starts_with("p.tests.yaml:3:"), "{msg}");
        assert!(
            msg.contains("cases[0].hello.snii: unknown field `snii`"),
            "{msg}"
        );
    }

    #[test]
    fn outcomes_match_only_what_is_expected() {
        use crate::{Alert, Rejection, Route};
        let pass = Outcome::Decision(Decision::Passthrough(Route {
            backend: "turn".into(),
            proxy_protocol: ProxyProtocol::V2,
        }));
        let any_proxy = Expect::Passthrough {
            backend: "turn".into(),
            proxy_protocol: None,
        };
        assert!(pass.matches(&any_proxy));
        let off = Expect::Passthrough {
            backend: "turn".into(),
            proxy_protocol: Some(ProxyProtocol::Off),
        };
        assert!(!pass.matches(&off));
        let term = Expect::Terminate {
            backend: "turn".into(),
            proxy_protocol: None,
        };
        assert!(!pass.matches(&term), "terminate is not passthrough");

        let rej = Outcome::Decision(Decision::Reject(Rejection {
            reason: "unknown-sni".into(),
            alert: Alert::Close,
        }));
        assert!(rej.matches(&Expect::Reject {
            reason: "unknown-sni".into(),
            alert: None
        }));
        assert!(!rej.matches(&Expect::Reject {
            reason: "unknown-sni".into(),
            alert: Some(Alert::UnrecognizedName)
        }));
        assert!(!rej.matches(&Expect::Reject {
            reason: "unknown".into(),
            alert: None
        }));

        let refused = Outcome::InitRefused("config needs a domain".into());
        assert!(refused.matches(&Expect::InitError("domain".into())));
        assert!(!refused.matches(&Expect::InitError("port".into())));
        assert!(!Outcome::Error("trap".into()).matches(&Expect::InitError("trap".into())));
    }
}
