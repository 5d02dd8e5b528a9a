//! One rendering of decisions and alert names, in the case file's words
//! (`passthrough turn (proxy_protocol v2)`, `reject blocked (alert
//! access-denied)`), shared by the edge's logs and shadow diffs, `explain`
//! and `test` (the harness), so an operator reads the same words
//! everywhere.

use crate::{Alert, Decision, HttpDecision, PolicyError, ProxyProtocol};

/// A decision in the case file's words, e.g. `passthrough turn (proxy_protocol
/// backend-default)` or `reject unknown-sni (alert unrecognized-name)`.
pub fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Passthrough(r) => {
            format!(
                "passthrough {} (proxy_protocol {})",
                r.backend,
                proxy_name(r.proxy_protocol)
            )
        }
        Decision::Terminate(r) => {
            format!(
                "terminate {} (proxy_protocol {})",
                r.backend,
                proxy_name(r.proxy_protocol)
            )
        }
        Decision::Reject(r) => format!("reject {} (alert {})", r.reason, alert_name(r.alert)),
    }
}

/// A decision, or the kind of error that stood in for one: `error timeout`.
pub fn outcome(decision: &Result<Decision, PolicyError>) -> String {
    match decision {
        Ok(decision) => describe(decision),
        Err(error) => format!("error {}", error.kind()),
    }
}

/// Headers as `{a: 1, b: 2}`, or nothing when empty.
pub(crate) fn describe_headers(headers: &[(String, String)]) -> String {
    if headers.is_empty() {
        return String::new();
    }
    let list: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v:?}")).collect();
    format!(" (headers {{{}}})", list.join(", "))
}

/// An `on-request` answer in the case file's words, e.g. `forward web
/// (headers {x-canary: "1"})` or `respond 403 (body "forbidden\n")`.
pub fn describe_request(decision: &HttpDecision) -> String {
    match decision {
        HttpDecision::FollowRoutes => "follow_routes".into(),
        HttpDecision::Forward(f) => {
            format!("forward {}{}", f.backend, describe_headers(&f.set_headers))
        }
        HttpDecision::Redirect(r) => format!("redirect {} (status {})", r.location, r.status),
        HttpDecision::Respond(r) => format!(
            "respond {} (body {:?}){}",
            r.status,
            r.body,
            describe_headers(&r.headers)
        ),
    }
}

/// The case-file spelling of a PROXY protocol choice.
pub fn proxy_name(p: ProxyProtocol) -> &'static str {
    match p {
        ProxyProtocol::BackendDefault => "backend-default",
        ProxyProtocol::Off => "off",
        ProxyProtocol::V2 => "v2",
    }
}

/// The case-file spelling of an alert.
pub fn alert_name(a: Alert) -> &'static str {
    match a {
        Alert::UnrecognizedName => "unrecognized-name",
        Alert::AccessDenied => "access-denied",
        Alert::HandshakeFailure => "handshake-failure",
        Alert::ProtocolVersion => "protocol-version",
        Alert::InternalError => "internal-error",
        Alert::Close => "close",
    }
}
