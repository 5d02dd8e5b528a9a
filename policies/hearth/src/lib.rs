//! The `hearth` policy: routes a Hearth deployment's three names by SNI.
//!
//! This is the edge's default policy (`policies/hearth.wasm`, built by
//! `policies/build.sh`); its YAML cases are `policies/hearth.tests.yaml`
//! (`hearth-wasm-edge test --policy policies/hearth.wasm
//! policies/hearth.tests.yaml`). The generic, config-driven router is its
//! neighbour `policies/sni-table`.
//!
//! # Rules, in order
//!
//! 1. With `rate_per_ip` set, a source address over its rate is rejected
//!    (`rate-limited`, alert `access_denied`).
//! 2. No SNI: rejected (`no-sni`, alert `unrecognized_name`).
//! 3. An IP address as SNI: rejected (`ip-literal`, alert `unrecognized_name`).
//! 4. `turn.<domain>` and every `turn_aliases` name: passed through to the
//!    TURN backend, which terminates TLS itself. ACME needs nothing here:
//!    the edge answers TLS-ALPN-01 validations for the names it manages
//!    (`tls.names`) before asking the policy, and those of other names reach
//!    the TURN backend like any connection, for its own ACME client.
//!    With `turn_mode: apex` there is no `turn.<domain>` (it is an unknown
//!    name) and the aliases are terminated to the web backend like the
//!    apex: TURN then rides on the website's names, found by the edge in
//!    the first plaintext bytes (the route set's `stun_backend`).
//! 5. `lk.<domain>`: terminated, forwarded to the LiveKit backend.
//! 6. `<domain>`: terminated, forwarded to the web backend (PocketBase).
//! 7. Anything else: rejected (`unknown-sni`, alert `unrecognized_name`).
//!
//! Names compare case-insensitively and ignore a trailing dot.
//!
//! # Config keys (`policy.config`)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `domain` | required | the apex name, e.g. `hearth.example`; must be a valid DNS name |
//! | `turn_mode` | `passthrough` | `passthrough`: `turn.<domain>` and the aliases go to the TURN backend untouched; `apex`: no TURN name, the aliases are terminated like the apex (whose route set has a `stun_backend`) |
//! | `turn_aliases` | none | comma-separated extra names for TURN, e.g. `cdn.hearth.example` |
//! | `turn_backend` | `turn` | backend name for TURN passthrough |
//! | `livekit_backend` | `livekit` | backend name for `lk.<domain>` |
//! | `web_backend` | `pocketbase` | backend name for `<domain>` |
//! | `rate_per_ip` | off | new connections per second allowed per source address |
//! | `burst_per_ip` | `rate_per_ip` | connections a source address may open at once before the rate applies; needs `rate_per_ip` |
//!
//! Unknown keys are refused, so a typo does not silently change routing.
//! The rate limit uses the host's shared token bucket `per-ip` keyed by the
//! source address.
//!
//! ```yaml
//! policy:
//!   path: policies/hearth.wasm
//!   config:
//!     domain: hearth.example
//!     turn_aliases: cdn.hearth.example
//!     rate_per_ip: "20"
//!     burst_per_ip: "40"
//! ```

use hearth_edge_sdk::{
    Alert, ClientHello, Config, ConfigError, Decision, Policy, names, take_token,
};

/// The host's token-bucket group for per-address limits.
const RATE_BUCKET: &str = "per-ip";
/// Config keys this policy reads; any other key is refused.
const KNOWN_KEYS: &[&str] = &[
    "domain",
    "turn_mode",
    "turn_aliases",
    "turn_backend",
    "livekit_backend",
    "web_backend",
    "rate_per_ip",
    "burst_per_ip",
];
/// Default backend names, matching the edge's local profile.
const DEFAULT_TURN_BACKEND: &str = "turn";
const DEFAULT_LIVEKIT_BACKEND: &str = "livekit";
const DEFAULT_WEB_BACKEND: &str = "pocketbase";

/// Reject reasons (the `reason` label of the edge's rejects metric).
pub mod reasons {
    /// The client's source address is over `rate_per_ip`.
    pub const RATE_LIMITED: &str = "rate-limited";
    /// The ClientHello has no SNI.
    pub const NO_SNI: &str = "no-sni";
    /// The SNI is an IP address.
    pub const IP_LITERAL: &str = "ip-literal";
    /// The SNI is not one of this deployment's names.
    pub const UNKNOWN_SNI: &str = "unknown-sni";
}

/// The configured router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hearth {
    /// The apex name, normalised.
    domain: String,
    /// `lk.<domain>`.
    livekit_name: String,
    /// `turn.<domain>` (unless TURN is on the apex) followed by the
    /// aliases, normalised.
    turn_names: Vec<String>,
    /// Whether TURN rides on the website's names (`turn_mode: apex`).
    turn_on_apex: bool,
    turn_backend: String,
    livekit_backend: String,
    web_backend: String,
    rate: Option<RateLimit>,
}

/// Per-source-address connection rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RateLimit {
    per_second: u32,
    burst: u32,
}

impl Policy for Hearth {
    fn init(config: &Config) -> Result<Self, ConfigError> {
        config.deny_unknown_keys(KNOWN_KEYS)?;
        let domain = config.dns_name("domain")?;
        let turn_on_apex = match config.optional("turn_mode") {
            None | Some("passthrough") => false,
            Some("apex") => true,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "turn_mode",
                    other,
                    "expected passthrough or apex",
                ));
            }
        };
        let mut turn_names = Vec::new();
        if !turn_on_apex {
            turn_names.push(format!("turn.{domain}"));
        }
        for alias in config.list("turn_aliases") {
            if !names::is_valid_dns_name(alias) {
                return Err(ConfigError::invalid(
                    "turn_aliases",
                    alias,
                    "not a valid DNS name",
                ));
            }
            turn_names.push(names::normalize(alias));
        }
        Ok(Hearth {
            livekit_name: format!("lk.{domain}"),
            turn_names,
            turn_on_apex,
            turn_backend: backend(config, "turn_backend", DEFAULT_TURN_BACKEND)?,
            livekit_backend: backend(config, "livekit_backend", DEFAULT_LIVEKIT_BACKEND)?,
            web_backend: backend(config, "web_backend", DEFAULT_WEB_BACKEND)?,
            rate: rate_limit(config)?,
            domain,
        })
    }

    fn decide(&self, hello: &ClientHello) -> Decision {
        if let Some(rate) = self.rate
            && !take_token(RATE_BUCKET, &hello.source_addr, rate.per_second, rate.burst)
        {
            return Decision::reject(reasons::RATE_LIMITED, Alert::AccessDenied);
        }
        let Some(sni) = hello.server_name() else {
            return Decision::reject(reasons::NO_SNI, Alert::UnrecognizedName);
        };
        if names::is_ip_literal(sni) {
            return Decision::reject(reasons::IP_LITERAL, Alert::UnrecognizedName);
        }
        if self.turn_names.iter().any(|name| names::matches(name, sni)) {
            return if self.turn_on_apex {
                Decision::terminate(self.web_backend.as_str())
            } else {
                Decision::passthrough(self.turn_backend.as_str())
            };
        }
        if names::matches(&self.livekit_name, sni) {
            return Decision::terminate(self.livekit_backend.as_str());
        }
        if names::matches(&self.domain, sni) {
            return Decision::terminate(self.web_backend.as_str());
        }
        Decision::reject(reasons::UNKNOWN_SNI, Alert::UnrecognizedName)
    }
}

/// A backend-name key: any non-blank text, or `default` when absent.
fn backend(config: &Config, key: &str, default: &str) -> Result<String, ConfigError> {
    match config.optional(key) {
        None => Ok(default.to_owned()),
        Some(_) => config.required(key).map(str::to_owned),
    }
}

fn rate_limit(config: &Config) -> Result<Option<RateLimit>, ConfigError> {
    let per_second = config.parse::<u32>("rate_per_ip")?;
    let burst = config.parse::<u32>("burst_per_ip")?;
    let Some(per_second) = per_second else {
        return match burst {
            Some(_) => Err(ConfigError::Other(
                r#"key "burst_per_ip" needs "rate_per_ip""#.to_owned(),
            )),
            None => Ok(None),
        };
    };
    if per_second == 0 {
        return Err(ConfigError::invalid(
            "rate_per_ip",
            "0",
            "must be at least 1 (omit the key to disable the limit)",
        ));
    }
    let burst = burst.unwrap_or(per_second);
    if burst == 0 {
        return Err(ConfigError::invalid(
            "burst_per_ip",
            "0",
            "must be at least 1",
        ));
    }
    Ok(Some(RateLimit { per_second, burst }))
}

hearth_edge_sdk::export_policy!(Hearth);

#[cfg(test)]
mod tests {
    use hearth_edge_sdk::ProxyProtocol;
    use hearth_edge_sdk::host::native;

    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Hearth {
        Hearth::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
    }

    fn init_error(pairs: &[(&str, &str)]) -> String {
        Hearth::init(&Config::from_pairs(pairs.iter().copied()))
            .unwrap_err()
            .to_string()
    }

    fn decide(policy: &Hearth, sni: &str) -> Decision {
        policy.decide(&ClientHello::for_server_name(sni).with_source("203.0.113.7"))
    }

    fn hearth() -> Hearth {
        policy(&[("domain", "hearth.example")])
    }

    #[test]
    fn yaml_cases_pass_natively() {
        let cases = include_str!("../../hearth.tests.yaml");
        match hearth_edge_sdk::cases::run::<Hearth>(cases) {
            Ok(count) => assert!(count > 20, "only {count} cases"),
            Err(report) => panic!("failing cases:\n{report}"),
        }
    }

    #[test]
    fn the_three_names_route_to_their_backends() {
        let p = hearth();
        assert_eq!(
            decide(&p, "turn.hearth.example"),
            Decision::passthrough("turn")
        );
        assert_eq!(
            decide(&p, "lk.hearth.example"),
            Decision::terminate("livekit")
        );
        assert_eq!(
            decide(&p, "hearth.example"),
            Decision::terminate("pocketbase")
        );
    }

    #[test]
    fn routes_use_the_backend_default_proxy_protocol() {
        let route = decide(&hearth(), "turn.hearth.example");
        assert_eq!(
            route.route().map(|r| r.proxy_protocol),
            Some(ProxyProtocol::BackendDefault)
        );
    }

    #[test]
    fn names_ignore_case_and_trailing_dot() {
        let p = policy(&[("domain", "Hearth.Example.")]);
        assert_eq!(
            decide(&p, "TURN.hearth.EXAMPLE."),
            Decision::passthrough("turn")
        );
        assert_eq!(
            decide(&p, "Lk.Hearth.Example"),
            Decision::terminate("livekit")
        );
        assert_eq!(
            decide(&p, "hearth.example."),
            Decision::terminate("pocketbase")
        );
    }

    #[test]
    fn other_names_are_refused_as_unknown() {
        let p = hearth();
        for sni in [
            "other.example",
            "www.hearth.example",
            "x.turn.hearth.example",
            "hearth.example.evil",
            "turn.hearth.example.evil",
        ] {
            assert_eq!(
                decide(&p, sni),
                Decision::reject("unknown-sni", Alert::UnrecognizedName),
                "{sni}"
            );
        }
    }

    #[test]
    fn missing_sni_and_ip_literals_are_refused() {
        let p = hearth();
        assert_eq!(
            p.decide(&ClientHello::default()),
            Decision::reject("no-sni", Alert::UnrecognizedName)
        );
        for sni in ["192.0.2.1", "2001:db8::1"] {
            assert_eq!(
                decide(&p, sni),
                Decision::reject("ip-literal", Alert::UnrecognizedName)
            );
        }
    }

    #[test]
    fn turn_aliases_pass_through_to_turn() {
        let p = policy(&[
            ("domain", "hearth.example"),
            ("turn_aliases", "cdn.hearth.example, Media.Other.Example."),
        ]);
        assert_eq!(
            decide(&p, "cdn.hearth.example"),
            Decision::passthrough("turn")
        );
        assert_eq!(
            decide(&p, "media.other.example"),
            Decision::passthrough("turn")
        );
        assert_eq!(
            decide(&p, "turn.hearth.example"),
            Decision::passthrough("turn")
        );
    }

    #[test]
    fn turn_on_the_apex_has_no_turn_name_and_terminates_the_aliases() {
        let p = policy(&[
            ("domain", "hearth.example"),
            ("turn_mode", "apex"),
            ("turn_aliases", "cdn.hearth.example"),
            ("web_backend", "web"),
        ]);
        assert_eq!(decide(&p, "hearth.example"), Decision::terminate("web"));
        assert_eq!(
            decide(&p, "CDN.hearth.example."),
            Decision::terminate("web")
        );
        assert_eq!(
            decide(&p, "lk.hearth.example"),
            Decision::terminate("livekit")
        );
        assert_eq!(
            decide(&p, "turn.hearth.example"),
            Decision::reject("unknown-sni", Alert::UnrecognizedName)
        );
        let explicit = policy(&[("domain", "hearth.example"), ("turn_mode", "passthrough")]);
        assert_eq!(
            decide(&explicit, "turn.hearth.example"),
            Decision::passthrough("turn")
        );
        assert!(
            init_error(&[("domain", "hearth.example"), ("turn_mode", "stealth")])
                .contains("expected passthrough or apex"),
        );
    }

    #[test]
    fn acme_validation_for_turn_names_goes_where_other_turn_traffic_goes() {
        // The edge answers validations of the names it manages before the
        // policy; any other reaches the TURN backend's own ACME client.
        let p = hearth();
        let hello = ClientHello::for_server_name("turn.hearth.example").with_alpn(&["acme-tls/1"]);
        assert_eq!(p.decide(&hello), Decision::passthrough("turn"));
    }

    #[test]
    fn backend_names_can_be_overridden() {
        let p = policy(&[
            ("domain", "hearth.example"),
            ("turn_backend", "turn-tls"),
            ("livekit_backend", "lk-signal"),
            ("web_backend", "web"),
        ]);
        assert_eq!(
            decide(&p, "turn.hearth.example"),
            Decision::passthrough("turn-tls")
        );
        assert_eq!(
            decide(&p, "lk.hearth.example"),
            Decision::terminate("lk-signal")
        );
        assert_eq!(decide(&p, "hearth.example"), Decision::terminate("web"));
    }

    #[test]
    fn init_refuses_bad_configs_with_clear_messages() {
        assert_eq!(init_error(&[]), r#"missing required key "domain""#);
        assert_eq!(
            init_error(&[("domain", "not a name")]),
            r#"key "domain": invalid value "not a name": not a valid DNS name"#
        );
        assert_eq!(
            init_error(&[("domain", "192.0.2.1")]),
            r#"key "domain": invalid value "192.0.2.1": not a valid DNS name"#
        );
        assert_eq!(
            init_error(&[
                ("domain", "h.example"),
                ("turn_aliases", "ok.example, bad_name")
            ]),
            r#"key "turn_aliases": invalid value "bad_name": not a valid DNS name"#
        );
        assert!(
            init_error(&[("domain", "h.example"), ("domian", "x")])
                .starts_with(r#"unknown key "domian""#)
        );
        assert_eq!(
            init_error(&[("domain", "h.example"), ("web_backend", " ")]),
            r#"key "web_backend": invalid value "": must not be empty"#
        );
        assert_eq!(
            init_error(&[("domain", "h.example"), ("rate_per_ip", "fast")]),
            r#"key "rate_per_ip": invalid value "fast": invalid digit found in string"#
        );
        assert!(
            init_error(&[("domain", "h.example"), ("rate_per_ip", "0")])
                .starts_with(r#"key "rate_per_ip": invalid value "0""#)
        );
        assert_eq!(
            init_error(&[("domain", "h.example"), ("burst_per_ip", "5")]),
            r#"key "burst_per_ip" needs "rate_per_ip""#
        );
    }

    #[test]
    fn rate_limit_rejects_a_source_over_its_burst_and_recovers() {
        native::reset();
        let p = policy(&[
            ("domain", "hearth.example"),
            ("rate_per_ip", "1"),
            ("burst_per_ip", "2"),
        ]);
        let from = |addr: &str| {
            p.decide(&ClientHello::for_server_name("hearth.example").with_source(addr))
        };
        assert_eq!(from("203.0.113.7"), Decision::terminate("pocketbase"));
        assert_eq!(from("203.0.113.7"), Decision::terminate("pocketbase"));
        assert_eq!(
            from("203.0.113.7"),
            Decision::reject("rate-limited", Alert::AccessDenied)
        );
        assert_eq!(
            from("198.51.100.1"),
            Decision::terminate("pocketbase"),
            "other addresses keep their own budget"
        );
        native::advance_ms(1000);
        assert_eq!(from("203.0.113.7"), Decision::terminate("pocketbase"));
    }

    #[test]
    fn rate_limit_applies_before_routing() {
        native::reset();
        let p = policy(&[("domain", "hearth.example"), ("rate_per_ip", "1")]);
        let hello = ClientHello::default().with_source("203.0.113.7");
        assert_eq!(
            p.decide(&hello),
            Decision::reject("no-sni", Alert::UnrecognizedName)
        );
        assert_eq!(
            p.decide(&hello),
            Decision::reject("rate-limited", Alert::AccessDenied)
        );
    }

    #[test]
    fn without_a_rate_limit_volume_is_never_refused() {
        native::reset();
        let p = hearth();
        for _ in 0..100 {
            assert_eq!(
                decide(&p, "hearth.example"),
                Decision::terminate("pocketbase")
            );
        }
    }
}
