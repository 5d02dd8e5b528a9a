//! The `sni-table` policy: a routing table written entirely in the edge's
//! config, no code.
//!
//! Built to `policies/sni-table.wasm` by `policies/build.sh`; its YAML cases
//! are `policies/sni-table.tests.yaml`. The route grammar is parsed in
//! `parse.rs`; the fixed Hearth router is the neighbouring `policies/hearth`.
//!
//! # Config keys (`policy.config`)
//!
//! | key | meaning |
//! |---|---|
//! | `route.<n>` | one route; routes run in increasing `<n>` (a number; gaps are fine) |
//! | `routes` | alternatively, all routes in one text, one per line, run top to bottom; blank lines and `#` comments are skipped. Use either `routes` or `route.<n>`, not both |
//! | `fallback` | the action when no route matches; default `reject unknown-sni` (alert `unrecognized-name`) |
//! | `no_sni` | the action for a hello without SNI that no route matched; default: `fallback` |
//!
//! The first matching route wins. Any other key, or any entry that does not
//! parse, makes `init` fail with the key (and line) and the problem. A route
//! that an earlier one always pre-empts (`a.example` after `*.example`) is
//! accepted, with a warning in the edge's log.
//!
//! # Routes
//!
//! A route is `<matchers> -> <action>`. Every matcher given must hold:
//!
//! - **names**: `example.com` (exact), `*.example.com` (exactly one label
//!   before `example.com`, like a certificate wildcard: not `example.com`,
//!   not `a.b.example.com`), `*` (any SNI). Several names, separated by
//!   spaces or commas, match if any does. Names ignore case and a trailing
//!   dot. A route with names never matches a hello without SNI; a route with
//!   no names matches whatever the SNI, and its absence.
//! - `alpn=h2,http/1.1`: the client offers any of these protocols.
//! - `source=10.0.0.0/8,2001:db8::/32`: the client address is in any of these
//!   ranges (IPv4-mapped IPv6 addresses count as IPv4).
//! - `port=443,8443`: the connection arrived on any of these local ports.
//!
//! Actions:
//!
//! - `passthrough <backend> [proxy=v2|off|default]`: relay the encrypted
//!   bytes to the backend, which terminates TLS;
//! - `terminate <backend> [proxy=…]`: terminate TLS at the edge and relay the
//!   plaintext;
//! - `reject <reason> [alert=<alert>]`: refuse, with the alert
//!   `unrecognized-name` (default), `access-denied`, `handshake-failure`,
//!   `protocol-version`, `internal-error` or `close`.
//!
//! `proxy=` overrides the backend's `proxy_protocol` setting (default: keep
//! it). Backend names are those of the edge config's `backends:`.
//!
//! ACME needs no route: the edge answers TLS-ALPN-01 validations (ALPN
//! `acme-tls/1`) of the names it manages (`tls.names`) before the policy is
//! asked, whatever the route of the name. Validations of other names are
//! routed like any connection, so a passthrough backend running its own
//! ACME client gets them; `alpn=acme-tls/1` can send them elsewhere.
//!
//! # Example: a stealth-TURN SNI router
//!
//! Exact and wildcard names go to TURN-TLS servers (which hold their own
//! certificates), everything else, SNI or not, to the web server — so a
//! probe sees an ordinary website:
//!
//! ```yaml
//! backends:
//!   turn-main: { addr: "127.0.0.1:5349" }
//!   turn-edge: { addr: "127.0.0.1:5350" }
//!   web:       { addr: "127.0.0.1:8443" }
//! policy:
//!   path: policies/sni-table.wasm
//!   config:
//!     route.1: "turn.example.com -> passthrough turn-main"
//!     route.2: "*.turn.example.com -> passthrough turn-edge"
//!     fallback: "passthrough web"
//! ```
//!
//! # Example: a caddy-l4 route list
//!
//! ```text
//! layer4 {
//!     :443 {
//!         @turn tls sni turn.hearth.example relay.hearth.example
//!         route @turn {
//!             proxy 127.0.0.1:5349
//!         }
//!         @lk tls sni lk.hearth.example
//!         route @lk {
//!             tls
//!             proxy {
//!                 proxy_protocol v2
//!                 upstream 127.0.0.1:7880
//!             }
//!         }
//!         @web tls sni hearth.example *.hearth.example
//!         @h tls alpn h2 http/1.1
//!         route @web @h {
//!             tls
//!             proxy 127.0.0.1:8090
//!         }
//!     }
//! }
//! ```
//!
//! becomes (matchers in one caddy-l4 route are ANDed, as here; `tls` then
//! `proxy` is `terminate`; a bare `proxy` is `passthrough`):
//!
//! ```yaml
//! policy:
//!   path: policies/sni-table.wasm
//!   config:
//!     routes: |
//!       turn.hearth.example relay.hearth.example -> passthrough turn
//!       lk.hearth.example                        -> terminate livekit proxy=v2
//!       hearth.example *.hearth.example alpn=h2,http/1.1 -> terminate pocketbase
//!     fallback: reject unknown-sni
//! ```

mod parse;

use hearth_edge_sdk::{Alert, ClientHello, Config, ConfigError, Decision, Policy};

pub use parse::{Action, ParseError, Route};

/// The key prefix of numbered routes.
const ROUTE_PREFIX: &str = "route.";
/// The key holding all routes as lines.
const ROUTES_KEY: &str = "routes";
const FALLBACK_KEY: &str = "fallback";
const NO_SNI_KEY: &str = "no_sni";
/// Starts a comment line in `routes`.
const COMMENT: char = '#';
/// The reject reason when nothing matched and no fallback is configured.
pub const UNKNOWN_SNI: &str = "unknown-sni";

/// The configured table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniTable {
    routes: Vec<Route>,
    fallback: Decision,
    no_sni: Decision,
}

impl Policy for SniTable {
    fn init(config: &Config) -> Result<Self, ConfigError> {
        config.deny_unknown_keys_by(
            |key| {
                [ROUTES_KEY, FALLBACK_KEY, NO_SNI_KEY].contains(&key)
                    || key.starts_with(ROUTE_PREFIX)
            },
            "route.<n>, routes, fallback, no_sni",
        )?;
        let routes = match config.optional(ROUTES_KEY) {
            Some(text) => {
                if let Some(key) = config.keys().find(|k| k.starts_with(ROUTE_PREFIX)) {
                    return Err(ConfigError::Other(format!(
                        "use either {ROUTES_KEY:?} or \"route.<n>\" keys, not both (found {key:?})"
                    )));
                }
                lines(text)?
            }
            None => numbered(config)?,
        };
        warn_shadowed(&routes);
        let routes = routes.into_iter().map(|(_, route)| route).collect();
        let fallback = match config.optional(FALLBACK_KEY) {
            Some(text) => action(FALLBACK_KEY, text)?,
            None => Decision::reject(UNKNOWN_SNI, Alert::UnrecognizedName),
        };
        let no_sni = match config.optional(NO_SNI_KEY) {
            Some(text) => action(NO_SNI_KEY, text)?,
            None => fallback.clone(),
        };
        Ok(SniTable {
            routes,
            fallback,
            no_sni,
        })
    }

    fn decide(&self, hello: &ClientHello) -> Decision {
        if let Some(route) = self.routes.iter().find(|route| route.matches(hello)) {
            return route.action.0.clone();
        }
        match hello.server_name() {
            Some(_) => self.fallback.clone(),
            None => self.no_sni.clone(),
        }
    }
}

/// Routes with where they came from (`route.3`, `routes line 2`), for messages.
type Labelled = Vec<(String, Route)>;

/// Routes from `route.<n>` keys, in increasing `<n>`.
fn numbered(config: &Config) -> Result<Labelled, ConfigError> {
    let mut numbered: Vec<(u32, &str, Route)> = Vec::new();
    for (key, value) in config.pairs() {
        let Some(suffix) = key.strip_prefix(ROUTE_PREFIX) else {
            continue;
        };
        let number = suffix
            .parse::<u32>()
            .ok()
            .filter(|_| suffix.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                ConfigError::Other(format!(
                    "key {key:?}: the part after \"route.\" must be a number, e.g. \"route.10\""
                ))
            })?;
        if let Some((_, other, _)) = numbered.iter().find(|(n, _, _)| *n == number) {
            return Err(ConfigError::Other(format!(
                "keys {other:?} and {key:?} have the same route number"
            )));
        }
        let route = Route::parse(value).map_err(|e| ConfigError::invalid(key, value, e))?;
        numbered.push((number, key, route));
    }
    numbered.sort_by_key(|(n, _, _)| *n);
    Ok(numbered
        .into_iter()
        .map(|(_, key, route)| (key.to_owned(), route))
        .collect())
}

/// Routes from the lines of `routes`.
fn lines(text: &str) -> Result<Labelled, ConfigError> {
    let mut routes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(COMMENT) {
            continue;
        }
        let route = Route::parse(line).map_err(|e| {
            ConfigError::Other(format!(
                "key {ROUTES_KEY:?}, line {}: invalid route {line:?}: {e}",
                index + 1
            ))
        })?;
        routes.push((format!("{ROUTES_KEY} line {}", index + 1), route));
    }
    Ok(routes)
}

/// Logs a warning for each route that an earlier one always pre-empts: a
/// likely ordering mistake, though not an invalid table.
fn warn_shadowed(routes: &Labelled) {
    for (index, (label, route)) in routes.iter().enumerate() {
        if let Some((earlier, _)) = routes[..index].iter().find(|(_, e)| e.covers(route)) {
            hearth_edge_sdk::warn!(
                "{label} can never match: {earlier}, before it, matches every connection it would"
            );
        }
    }
}

fn action(key: &str, text: &str) -> Result<Decision, ConfigError> {
    Action::parse(text)
        .map(|a| a.0)
        .map_err(|e| ConfigError::invalid(key, text, e))
}

hearth_edge_sdk::export_policy!(SniTable);

#[cfg(test)]
mod tests {
    use hearth_edge_sdk::ProxyProtocol;

    use super::*;

    fn table(pairs: &[(&str, &str)]) -> SniTable {
        SniTable::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
    }

    fn init_error(pairs: &[(&str, &str)]) -> String {
        SniTable::init(&Config::from_pairs(pairs.iter().copied()))
            .unwrap_err()
            .to_string()
    }

    fn sni(name: &str) -> ClientHello {
        ClientHello::for_server_name(name).with_source("203.0.113.7")
    }

    #[test]
    fn yaml_cases_pass_natively() {
        let cases = include_str!("../../sni-table.tests.yaml");
        match hearth_edge_sdk::cases::run::<SniTable>(cases) {
            Ok(count) => assert!(count > 20, "only {count} cases"),
            Err(report) => panic!("failing cases:\n{report}"),
        }
    }

    #[test]
    fn numbered_routes_run_in_numeric_order() {
        // Key order and text order disagree with numeric order on purpose.
        let t = table(&[
            ("route.10", "* -> passthrough any"),
            ("route.9", "a.example -> terminate a"),
            ("route.2", "*.example -> passthrough wild"),
        ]);
        assert_eq!(t.decide(&sni("a.example")), Decision::passthrough("wild"));
        assert_eq!(t.decide(&sni("b.example")), Decision::passthrough("wild"));
        assert_eq!(t.decide(&sni("other.test")), Decision::passthrough("any"));
    }

    #[test]
    fn first_match_wins_in_routes_lines() {
        let t = table(&[(
            "routes",
            "# comment\n\n  a.example -> terminate a\n*.example -> passthrough wild\n",
        )]);
        assert_eq!(t.decide(&sni("a.example")), Decision::terminate("a"));
        assert_eq!(t.decide(&sni("b.example")), Decision::passthrough("wild"));
    }

    #[test]
    fn default_fallback_rejects_unknown_names_and_missing_sni() {
        let t = table(&[("route.1", "a.example -> passthrough a")]);
        let unknown = Decision::reject("unknown-sni", Alert::UnrecognizedName);
        assert_eq!(t.decide(&sni("b.example")), unknown);
        assert_eq!(t.decide(&ClientHello::default()), unknown);
    }

    #[test]
    fn no_sni_follows_fallback_unless_set() {
        let t = table(&[("fallback", "passthrough web")]);
        assert_eq!(
            t.decide(&ClientHello::default()),
            Decision::passthrough("web")
        );
        let t = table(&[
            ("fallback", "passthrough web"),
            ("no_sni", "reject no-sni alert=close"),
        ]);
        assert_eq!(t.decide(&sni("x.example")), Decision::passthrough("web"));
        assert_eq!(
            t.decide(&ClientHello::default()),
            Decision::reject("no-sni", Alert::Close)
        );
    }

    #[test]
    fn nameless_routes_come_before_no_sni() {
        let t = table(&[
            ("route.1", "source=10.0.0.0/8 -> passthrough internal"),
            ("no_sni", "reject no-sni"),
        ]);
        assert_eq!(
            t.decide(&ClientHello::default().with_source("10.2.3.4")),
            Decision::passthrough("internal")
        );
        assert_eq!(
            t.decide(&ClientHello::default().with_source("192.0.2.1")),
            Decision::reject("no-sni", Alert::UnrecognizedName)
        );
    }

    #[test]
    fn proxy_protocol_is_carried_into_the_decision() {
        let t = table(&[("route.1", "a.example -> terminate lk proxy=v2")]);
        assert_eq!(
            t.decide(&sni("a.example"))
                .route()
                .map(|r| r.proxy_protocol),
            Some(ProxyProtocol::V2)
        );
    }

    #[test]
    fn init_names_the_key_and_problem() {
        assert_eq!(
            init_error(&[("route.3", "a.example -> forward web")]),
            r#"key "route.3": invalid value "a.example -> forward web": unknown action "forward" (expected passthrough, terminate or reject)"#
        );
        assert_eq!(
            init_error(&[("routes", "a.example -> passthrough a\nb_c -> passthrough b")]),
            r#"key "routes", line 2: invalid route "b_c -> passthrough b": "b_c" is not a valid DNS name"#
        );
        assert_eq!(
            init_error(&[("route.x", "a -> passthrough a")]),
            r#"key "route.x": the part after "route." must be a number, e.g. "route.10""#
        );
        assert_eq!(
            init_error(&[("route.+1", "a -> passthrough a")]),
            r#"key "route.+1": the part after "route." must be a number, e.g. "route.10""#
        );
        assert_eq!(
            init_error(&[
                ("route.1", "a -> passthrough a"),
                ("route.01", "b -> passthrough b")
            ]),
            r#"keys "route.1" and "route.01" have the same route number"#
        );
        assert_eq!(
            init_error(&[
                ("routes", "a -> passthrough a"),
                ("route.1", "b -> passthrough b")
            ]),
            r#"use either "routes" or "route.<n>" keys, not both (found "route.1")"#
        );
        assert_eq!(
            init_error(&[("fallback", "passthrough")]),
            r#"key "fallback": invalid value "passthrough": expected an action: "passthrough <backend>", "terminate <backend>" or "reject <reason>""#
        );
        assert!(
            init_error(&[("no_sni", "drop")]).starts_with(r#"key "no_sni": invalid value "drop""#)
        );
        assert_eq!(
            init_error(&[("fallbak", "passthrough web")]),
            r#"unknown key "fallbak" (known keys: route.<n>, routes, fallback, no_sni)"#
        );
    }

    #[test]
    fn shadowed_routes_are_logged_at_init() {
        use hearth_edge_sdk::Level;
        use hearth_edge_sdk::host::native;

        native::reset();
        table(&[
            ("route.1", "*.example -> passthrough wild"),
            ("route.2", "a.example -> passthrough a"),
            ("route.3", "b.c.example -> passthrough b"),
        ]);
        assert_eq!(
            native::take_logs(),
            [(
                Level::Warn,
                "route.2 can never match: route.1, before it, matches every connection it would"
                    .to_owned()
            )]
        );
        table(&[(
            "routes",
            "* -> passthrough any\n\nx.example -> passthrough x",
        )]);
        assert_eq!(
            native::take_logs(),
            [(
                Level::Warn,
                "routes line 3 can never match: routes line 1, before it, matches every connection it would"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn an_empty_table_rejects_everything() {
        let t = table(&[]);
        assert_eq!(
            t.decide(&sni("a.example")),
            Decision::reject("unknown-sni", Alert::UnrecognizedName)
        );
    }
}
