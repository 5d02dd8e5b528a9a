//! The `web-gate` policy: terminates a web app's names into an HTTP route
//! set and guards it per request. An example of the `http-policy` world
//! (`on-request`), shipped as `policies/web-gate.wasm` (built by
//! `policies/build.sh`); the connection-level policies are its neighbours
//! `policies/hearth` and `policies/sni-table`.
//!
//! # Connections (`decide`)
//!
//! A ClientHello whose SNI matches one of `names` is terminated into
//! `routes` (a key of the edge's `http_routes`); anything else is rejected
//! (`unknown-sni`, alert `unrecognized_name`).
//!
//! # Requests (`on-request`), rules in order
//!
//! 1. With `rate_per_ip` set, a source address over its request rate gets
//!    `429 Too Many Requests` with `retry-after: 1`.
//! 2. With `canonical_host` set, a request for any other host is redirected
//!    (308) to the same path and query on `https://<canonical_host>`.
//! 3. With `admin_prefix` set (PocketBase's admin UI is `/_/`), a request
//!    under that prefix from outside `admin_sources` gets `403 Forbidden`.
//! 4. With `canary_header` and `canary_backend` set, a request carrying that
//!    header is forwarded to `canary_backend`, tagged `x-canary: 1`.
//! 5. Anything else follows the route set.
//!
//! # Config keys (`policy.config`)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `names` | required | comma-separated server names, exact or `*.`-wildcard |
//! | `routes` | `web` | the route set (`http_routes` key) to terminate into |
//! | `rate_per_ip` | off | requests per second allowed per source address |
//! | `burst_per_ip` | `rate_per_ip` | requests a source address may send at once |
//! | `canonical_host` | off | the one host name requests should use |
//! | `admin_prefix` | off | a path prefix only `admin_sources` may reach |
//! | `admin_sources` | none | comma-separated CIDR ranges, e.g. `10.0.0.0/8, ::1/128` |
//! | `canary_header` | off | a request header that selects `canary_backend` |
//! | `canary_backend` | off | backend for requests carrying `canary_header` |
//!
//! Unknown keys are refused.

use hearth_edge_sdk::cidr::Cidr;
use hearth_edge_sdk::names::Pattern;
use hearth_edge_sdk::{
    Alert, ClientHello, Config, ConfigError, Decision, HttpDecision, HttpPolicy, HttpRequest,
    Policy, take_token,
};

/// Config keys this policy reads.
const KNOWN_KEYS: &[&str] = &[
    "names",
    "routes",
    "rate_per_ip",
    "burst_per_ip",
    "canonical_host",
    "admin_prefix",
    "admin_sources",
    "canary_header",
    "canary_backend",
];
/// Default route set name.
const DEFAULT_ROUTES: &str = "web";
/// The host's token-bucket group for per-address request rates.
const RATE_BUCKET: &str = "requests-per-ip";
/// Seconds a rate-limited client is told to wait.
const RETRY_AFTER_SECONDS: &str = "1";
/// The reject reason for a name this policy does not serve.
pub const UNKNOWN_SNI: &str = "unknown-sni";

/// The configured gate.
#[derive(Debug)]
pub struct WebGate {
    names: Vec<Pattern>,
    routes: String,
    rate: Option<(u32, u32)>,
    canonical_host: Option<String>,
    admin: Option<Admin>,
    canary: Option<Canary>,
}

/// The admin area and who may reach it.
#[derive(Debug)]
struct Admin {
    prefix: String,
    sources: Vec<Cidr>,
}

/// The header that selects the canary backend.
#[derive(Debug)]
struct Canary {
    header: String,
    backend: String,
}

impl Policy for WebGate {
    fn init(config: &Config) -> Result<Self, ConfigError> {
        config.deny_unknown_keys(KNOWN_KEYS)?;
        let names = config
            .list("names")
            .into_iter()
            .map(|n| {
                n.parse::<Pattern>()
                    .map_err(|e| ConfigError::invalid("names", n, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() {
            config.required("names")?;
            return Err(ConfigError::invalid("names", "", "lists no name"));
        }
        let rate = match config.parse::<u32>("rate_per_ip")? {
            Some(per_second) => Some((per_second, config.parse_or("burst_per_ip", per_second)?)),
            None if config.optional("burst_per_ip").is_some() => {
                return Err(ConfigError::invalid(
                    "burst_per_ip",
                    config.optional("burst_per_ip").unwrap_or_default(),
                    "needs rate_per_ip",
                ));
            }
            None => None,
        };
        let canonical_host = match config.optional("canonical_host") {
            Some(_) => Some(config.dns_name("canonical_host")?),
            None => None,
        };
        let admin = match config.optional("admin_prefix") {
            Some(prefix) if prefix.starts_with('/') => Some(Admin {
                prefix: prefix.to_owned(),
                sources: config
                    .list("admin_sources")
                    .into_iter()
                    .map(|c| {
                        c.parse::<Cidr>()
                            .map_err(|e| ConfigError::invalid("admin_sources", c, e))
                    })
                    .collect::<Result<_, _>>()?,
            }),
            Some(prefix) => {
                return Err(ConfigError::invalid(
                    "admin_prefix",
                    prefix,
                    "must start with /",
                ));
            }
            None => None,
        };
        let canary = match (
            config.optional("canary_header"),
            config.optional("canary_backend"),
        ) {
            (Some(header), Some(backend)) => Some(Canary {
                header: header.to_ascii_lowercase(),
                backend: backend.to_owned(),
            }),
            (None, None) => None,
            (Some(header), None) => {
                return Err(ConfigError::invalid(
                    "canary_header",
                    header,
                    "needs canary_backend",
                ));
            }
            (None, Some(backend)) => {
                return Err(ConfigError::invalid(
                    "canary_backend",
                    backend,
                    "needs canary_header",
                ));
            }
        };
        Ok(WebGate {
            names,
            routes: config
                .optional("routes")
                .unwrap_or(DEFAULT_ROUTES)
                .to_owned(),
            rate,
            canonical_host,
            admin,
            canary,
        })
    }

    fn decide(&self, hello: &ClientHello) -> Decision {
        match hello.server_name() {
            Some(sni) if self.names.iter().any(|p| p.matches(sni)) => {
                Decision::terminate(self.routes.as_str())
            }
            _ => Decision::reject(UNKNOWN_SNI, Alert::UnrecognizedName),
        }
    }
}

impl HttpPolicy for WebGate {
    fn on_request(&self, request: &HttpRequest) -> HttpDecision {
        if let Some((per_second, burst)) = self.rate
            && !take_token(RATE_BUCKET, &request.source_addr, per_second, burst)
        {
            return HttpDecision::respond(429, "too many requests\n")
                .with_header("retry-after", RETRY_AFTER_SECONDS);
        }
        if let Some(canonical) = &self.canonical_host
            && !request.host.eq_ignore_ascii_case(canonical)
        {
            let query = request
                .query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            return HttpDecision::redirect(
                308,
                format!("https://{canonical}{}{query}", request.path),
            );
        }
        if let Some(admin) = &self.admin
            && request.path_starts_with(&admin.prefix)
            && !request
                .source_ip()
                .is_some_and(|ip| admin.sources.iter().any(|c| c.contains(ip)))
        {
            hearth_edge_sdk::info!("admin area refused to {}", request.source_addr);
            return HttpDecision::respond(403, "forbidden\n");
        }
        if let Some(canary) = &self.canary
            && request.header(&canary.header).is_some()
        {
            return HttpDecision::forward(canary.backend.as_str()).with_header("x-canary", "1");
        }
        HttpDecision::FollowRoutes
    }
}

hearth_edge_sdk::export_http_policy!(WebGate);

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(pairs: &[(&str, &str)]) -> WebGate {
        WebGate::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
    }

    fn init_error(pairs: &[(&str, &str)]) -> String {
        WebGate::init(&Config::from_pairs(pairs.iter().copied()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn terminates_its_names_into_the_route_set() {
        let g = gate(&[("names", "app.example, *.app.example"), ("routes", "site")]);
        let at = ClientHello::for_server_name;
        assert_eq!(g.decide(&at("app.example")), Decision::terminate("site"));
        assert_eq!(g.decide(&at("x.app.example")), Decision::terminate("site"));
        assert_eq!(
            g.decide(&at("other.example")),
            Decision::reject(UNKNOWN_SNI, Alert::UnrecognizedName)
        );
        assert_eq!(
            g.decide(&ClientHello::default()),
            Decision::reject(UNKNOWN_SNI, Alert::UnrecognizedName)
        );
    }

    #[test]
    fn plain_requests_follow_the_routes() {
        let g = gate(&[("names", "app.example")]);
        let request = HttpRequest::get("app.example", "/").with_routed_to("web");
        assert_eq!(g.on_request(&request), HttpDecision::FollowRoutes);
    }

    #[test]
    fn other_hosts_are_redirected_to_the_canonical_one_with_path_and_query() {
        let g = gate(&[
            ("names", "*.app.example"),
            ("canonical_host", "www.app.example"),
        ]);
        assert_eq!(
            g.on_request(&HttpRequest::get("old.app.example", "/a/b?x=1")),
            HttpDecision::redirect(308, "https://www.app.example/a/b?x=1")
        );
        assert_eq!(
            g.on_request(&HttpRequest::get("www.app.example", "/a")),
            HttpDecision::FollowRoutes
        );
    }

    #[test]
    fn admin_area_is_only_for_admin_sources() {
        let g = gate(&[
            ("names", "app.example"),
            ("admin_prefix", "/_/"),
            ("admin_sources", "10.0.0.0/8, ::1/128"),
        ]);
        let admin = |source: &str| HttpRequest::get("app.example", "/_/users").with_source(source);
        assert_eq!(g.on_request(&admin("10.2.3.4")), HttpDecision::FollowRoutes);
        assert_eq!(g.on_request(&admin("::1")), HttpDecision::FollowRoutes);
        assert_eq!(g.on_request(&admin("203.0.113.9")).status(), Some(403));
        assert_eq!(g.on_request(&admin("not-an-ip")).status(), Some(403));
        let elsewhere = HttpRequest::get("app.example", "/_x").with_source("203.0.113.9");
        assert_eq!(g.on_request(&elsewhere), HttpDecision::FollowRoutes);
    }

    #[test]
    fn canary_header_selects_the_canary_backend() {
        let g = gate(&[
            ("names", "app.example"),
            ("canary_header", "X-Canary"),
            ("canary_backend", "web-next"),
        ]);
        let request = HttpRequest::get("app.example", "/").with_header("x-canary", "yes");
        assert_eq!(
            g.on_request(&request),
            HttpDecision::forward("web-next").with_header("x-canary", "1")
        );
    }

    #[test]
    fn rate_limit_answers_429_past_the_burst() {
        hearth_edge_sdk::host::native::reset();
        let g = gate(&[
            ("names", "app.example"),
            ("rate_per_ip", "1"),
            ("burst_per_ip", "2"),
        ]);
        let request = HttpRequest::get("app.example", "/").with_source("198.51.100.7");
        assert_eq!(g.on_request(&request), HttpDecision::FollowRoutes);
        assert_eq!(g.on_request(&request), HttpDecision::FollowRoutes);
        let limited = g.on_request(&request);
        assert_eq!(
            limited,
            HttpDecision::respond(429, "too many requests\n").with_header("retry-after", "1")
        );
        let other = HttpRequest::get("app.example", "/").with_source("198.51.100.8");
        assert_eq!(g.on_request(&other), HttpDecision::FollowRoutes);
    }

    #[test]
    fn bad_config_is_refused_naming_the_key() {
        assert_eq!(init_error(&[]), r#"missing required key "names""#);
        assert!(init_error(&[("names", "a.example"), ("colour", "x")]).contains("colour"));
        assert!(
            init_error(&[("names", "a.example"), ("admin_prefix", "_/")]).contains("admin_prefix")
        );
        assert!(
            init_error(&[
                ("names", "a.example"),
                ("admin_prefix", "/_/"),
                ("admin_sources", "10.0.0.0/33")
            ])
            .contains("admin_sources")
        );
        assert!(
            init_error(&[("names", "a.example"), ("canary_header", "x")])
                .contains("canary_backend")
        );
        assert!(
            init_error(&[("names", "a.example"), ("burst_per_ip", "3")]).contains("rate_per_ip")
        );
        assert!(init_error(&[("names", "a..example")]).contains("names"));
    }
}
