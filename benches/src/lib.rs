//! Native baselines for the benchmarks in `benches/benches/`: the same work
//! as a policy, written as plain Rust, so wasm figures can be given as ratios.
//! Results and the commands that produced them are in `benches/RESULTS.md`.
//! [`process`] holds what the benchmark binaries (`src/bin/`) share.

#![deny(missing_docs)]

pub mod process;

use hearth_edge_policy::{Alert, ClientHello, Decision, ProxyProtocol, Rejection, Route};

/// The Hearth routing of `policies/hearth` (config: `domain` only), natively:
/// `turn.<domain>` passed through to `turn` (terminated for an ACME
/// TLS-ALPN-01 validation), `lk.<domain>` terminated to `livekit`, the apex
/// terminated to `pocketbase`, anything else rejected.
#[derive(Debug, Clone)]
pub struct NativeHearth {
    domain: String,
    turn: String,
    livekit: String,
}

impl NativeHearth {
    /// Routing for `domain` (lowercase, no trailing dot).
    pub fn new(domain: &str) -> NativeHearth {
        NativeHearth {
            domain: domain.to_owned(),
            turn: format!("turn.{domain}"),
            livekit: format!("lk.{domain}"),
        }
    }

    /// The decision for one hello.
    pub fn decide(&self, hello: &ClientHello) -> Decision {
        let Some(sni) = hello.server_name.as_deref() else {
            return reject("no-sni");
        };
        if sni.parse::<std::net::IpAddr>().is_ok() {
            return reject("ip-literal");
        }
        if names_match(&self.turn, sni) {
            if hello.alpn.iter().any(|p| p == "acme-tls/1") {
                return route(true, "turn");
            }
            return route(false, "turn");
        }
        if names_match(&self.livekit, sni) {
            return route(true, "livekit");
        }
        if names_match(&self.domain, sni) {
            return route(true, "pocketbase");
        }
        reject("unknown-sni")
    }
}

/// Case-insensitive, trailing-dot-insensitive name comparison.
fn names_match(name: &str, sni: &str) -> bool {
    sni.strip_suffix('.')
        .unwrap_or(sni)
        .eq_ignore_ascii_case(name)
}

fn route(terminate: bool, backend: &str) -> Decision {
    let route = Route {
        backend: backend.to_owned(),
        proxy_protocol: ProxyProtocol::BackendDefault,
    };
    if terminate {
        Decision::Terminate(route)
    } else {
        Decision::Passthrough(route)
    }
}

fn reject(reason: &str) -> Decision {
    Decision::Reject(Rejection {
        reason: reason.to_owned(),
        alert: Alert::UnrecognizedName,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_edge_policy::harness::HelloSpec;

    fn decide(sni: Option<&str>, alpn: &[&str]) -> Decision {
        let spec = HelloSpec {
            sni: sni.map(str::to_owned),
            alpn: alpn.iter().map(|s| s.to_string()).collect(),
            ..HelloSpec::default()
        };
        NativeHearth::new("hearth.example").decide(&spec.to_hello().unwrap())
    }

    fn describe(d: &Decision) -> String {
        hearth_edge_policy::harness::describe(d)
    }

    #[test]
    fn routes_like_the_hearth_policy() {
        let turn = decide(Some("turn.hearth.example"), &["h2"]);
        assert_eq!(
            describe(&turn),
            "passthrough turn (proxy_protocol backend-default)"
        );
        let acme = decide(Some("turn.hearth.example"), &["acme-tls/1"]);
        assert_eq!(
            describe(&acme),
            "terminate turn (proxy_protocol backend-default)"
        );
        let lk = decide(Some("lk.hearth.example"), &[]);
        assert_eq!(
            describe(&lk),
            "terminate livekit (proxy_protocol backend-default)"
        );
        let apex = decide(Some("hearth.example"), &[]);
        assert_eq!(
            describe(&apex),
            "terminate pocketbase (proxy_protocol backend-default)"
        );
        let other = decide(Some("other.example"), &[]);
        assert_eq!(
            describe(&other),
            "reject unknown-sni (alert unrecognized-name)"
        );
        assert_eq!(
            describe(&decide(None, &[])),
            "reject no-sni (alert unrecognized-name)"
        );
    }
}
