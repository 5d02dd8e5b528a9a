//! The route grammar of the `sni-table` policy: one route's text
//! (`<matchers> -> <action>`) and one action's text, parsed into [`Route`]
//! and [`Action`].
//!
//! Which config keys hold routes, their order, and evaluation live in
//! `lib.rs`; the grammar is documented there for users.

use std::fmt;

use hearth_edge_sdk::cidr::{self, Cidr};
use hearth_edge_sdk::names::Pattern;
use hearth_edge_sdk::{Alert, ClientHello, Decision, ProxyProtocol, alpn};

/// Separates a route's matchers from its action.
const ARROW: &str = "->";

/// One route: every present matcher must hold, then `action` applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Server-name patterns, any of which must match; empty = any hello,
    /// with or without SNI.
    pub names: Vec<Pattern>,
    /// ALPN protocols, any of which the client must offer; empty = no check.
    pub alpn: Vec<String>,
    /// Source ranges, any of which must contain the client; empty = no check.
    pub sources: Vec<Cidr>,
    /// Local ports, any of which the connection must have arrived on;
    /// empty = no check.
    pub ports: Vec<u16>,
    /// What happens on a match.
    pub action: Action,
}

/// What a matching route (or the fallback) does; a [`Decision`] kept ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action(pub Decision);

/// Why a route or action text is refused; shown with the key it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn error<T>(message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(message.into()))
}

// === impl Route ===

impl Route {
    /// Parses `<matchers> -> <action>`.
    pub fn parse(text: &str) -> Result<Route, ParseError> {
        let Some((matchers, action)) = text.split_once(ARROW) else {
            return error(format!("expected \"<matchers> {ARROW} <action>\""));
        };
        if action.contains(ARROW) {
            return error(format!("more than one \"{ARROW}\""));
        }
        let mut route = Route {
            names: Vec::new(),
            alpn: Vec::new(),
            sources: Vec::new(),
            ports: Vec::new(),
            action: Action::parse(action)?,
        };
        for token in matcher_tokens(matchers) {
            route.add_matcher(&token)?;
        }
        Ok(route)
    }

    fn add_matcher(&mut self, token: &str) -> Result<(), ParseError> {
        let Some((key, values)) = token.split_once('=') else {
            for name in items(token) {
                let pattern = name
                    .parse::<Pattern>()
                    .map_err(|e| ParseError(e.to_string()))?;
                self.names.push(pattern);
            }
            return Ok(());
        };
        let values = items(values);
        if values.is_empty() {
            return error(format!("\"{key}=\" needs at least one value"));
        }
        match key {
            "alpn" => self.alpn.extend(values.iter().map(|v| (*v).to_owned())),
            "source" => {
                for value in values {
                    let range = value
                        .parse::<Cidr>()
                        .map_err(|e| ParseError(format!("source: {e}")))?;
                    self.sources.push(range);
                }
            }
            "port" => {
                for value in values {
                    let port = value
                        .parse::<u16>()
                        .map_err(|_| ParseError(format!("port: {value:?} is not a port number")))?;
                    self.ports.push(port);
                }
            }
            _ => {
                return error(format!(
                    "unknown matcher \"{key}=\" (expected alpn=, source= or port=)"
                ));
            }
        }
        Ok(())
    }

    /// True if every matcher holds for `hello`.
    pub fn matches(&self, hello: &ClientHello) -> bool {
        let name_ok = self.names.is_empty()
            || hello
                .server_name()
                .is_some_and(|sni| self.names.iter().any(|p| p.matches(sni)));
        name_ok
            && (self.alpn.is_empty() || alpn::offers_any(hello, &self.alpn))
            && (self.sources.is_empty() || cidr::any_contains_source(&self.sources, hello))
            && (self.ports.is_empty() || self.ports.contains(&hello.local_port))
    }
}

// === shadowing ===

impl Route {
    /// True if every hello that `later` matches is matched by `self` too, so
    /// `later` can never win when it comes after `self`. Conservative: a
    /// `false` may still be a shadowed route, a `true` always is.
    pub fn covers(&self, later: &Route) -> bool {
        let names = self.names.is_empty()
            || (!later.names.is_empty()
                && later
                    .names
                    .iter()
                    .all(|b| self.names.iter().any(|a| pattern_covers(a, b))));
        let alpn = self.alpn.is_empty()
            || (!later.alpn.is_empty() && later.alpn.iter().all(|b| self.alpn.contains(b)));
        let sources = self.sources.is_empty()
            || (!later.sources.is_empty()
                && later
                    .sources
                    .iter()
                    .all(|b| self.sources.iter().any(|a| range_covers(a, b))));
        let ports = self.ports.is_empty()
            || (!later.ports.is_empty() && later.ports.iter().all(|b| self.ports.contains(b)));
        names && alpn && sources && ports
    }
}

fn pattern_covers(a: &Pattern, b: &Pattern) -> bool {
    match (a, b) {
        (Pattern::Any, _) => true,
        (Pattern::Wildcard(x), Pattern::Wildcard(y)) | (Pattern::Exact(x), Pattern::Exact(y)) => {
            x == y
        }
        (Pattern::Wildcard(_), Pattern::Exact(name)) => a.matches(name),
        _ => false,
    }
}

fn range_covers(a: &Cidr, b: &Cidr) -> bool {
    a.prefix() <= b.prefix() && a.contains(b.network())
}

/// Splits the matcher side on whitespace, rejoining a `key=a, b` list whose
/// items were separated by ", " (a token ending in a comma continues).
fn matcher_tokens(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match tokens.last_mut() {
            Some(last) if last.contains('=') && last.ends_with(',') => last.push_str(word),
            _ => tokens.push(word.to_owned()),
        }
    }
    tokens
}

/// Comma-separated items, blanks dropped.
fn items(text: &str) -> Vec<&str> {
    text.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect()
}

// === impl Action ===

impl Action {
    /// Parses `passthrough <backend> [proxy=v2|off|default]`,
    /// `terminate <backend> [proxy=…]` or `reject <reason> [alert=<alert>]`.
    pub fn parse(text: &str) -> Result<Action, ParseError> {
        let mut words = text.split_whitespace();
        let (Some(verb), Some(target)) = (words.next(), words.next()) else {
            return error(
                "expected an action: \"passthrough <backend>\", \"terminate <backend>\" or \"reject <reason>\"",
            );
        };
        if target.contains('=') {
            return error(format!("\"{verb}\" needs a name before {target:?}"));
        }
        let mut decision = match verb {
            "passthrough" => Decision::passthrough(target),
            "terminate" => Decision::terminate(target),
            "reject" => Decision::reject(target, Alert::UnrecognizedName),
            _ => {
                return error(format!(
                    "unknown action {verb:?} (expected passthrough, terminate or reject)"
                ));
            }
        };
        for option in words {
            decision = match (option.split_once('='), &decision) {
                (Some(("proxy", value)), Decision::Passthrough(_) | Decision::Terminate(_)) => {
                    let proxy: ProxyProtocol = value
                        .parse()
                        .map_err(|e| ParseError(format!("proxy: {e}")))?;
                    decision.with_proxy_protocol(proxy)
                }
                (Some(("alert", value)), Decision::Reject(rejection)) => {
                    let alert: Alert = value
                        .parse()
                        .map_err(|e| ParseError(format!("alert: {e}")))?;
                    Decision::reject(rejection.reason.as_str(), alert)
                }
                _ => return error(format!("unexpected {option:?} after \"{verb} {target}\"")),
            };
        }
        Ok(Action(decision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> Route {
        Route::parse(text).unwrap()
    }

    fn err(text: &str) -> String {
        Route::parse(text).unwrap_err().0
    }

    #[test]
    fn names_alpn_sources_ports_and_action() {
        let r = route(
            "a.example, *.b.example c.example alpn=h2,http/1.1 source=10.0.0.0/8 port=443,8443 -> terminate web proxy=v2",
        );
        assert_eq!(
            r.names,
            ["a.example", "*.b.example", "c.example"].map(|p| p.parse::<Pattern>().unwrap())
        );
        assert_eq!(r.alpn, ["h2", "http/1.1"]);
        assert_eq!(r.sources, ["10.0.0.0/8".parse::<Cidr>().unwrap()]);
        assert_eq!(r.ports, [443, 8443]);
        assert_eq!(
            r.action.0,
            Decision::terminate("web").with_proxy_protocol(ProxyProtocol::V2)
        );
    }

    #[test]
    fn lists_may_have_spaces_after_commas() {
        let r =
            route("a.example alpn=h2, http/1.1 source=10.0.0.0/8, 192.168.0.0/16 -> passthrough x");
        assert_eq!(r.alpn, ["h2", "http/1.1"]);
        assert_eq!(r.sources.len(), 2);
        assert_eq!(r.names.len(), 1);
    }

    #[test]
    fn actions() {
        assert_eq!(
            Action::parse("passthrough turn").unwrap().0,
            Decision::passthrough("turn")
        );
        assert_eq!(
            Action::parse(" passthrough turn proxy=off ").unwrap().0,
            Decision::passthrough("turn").with_proxy_protocol(ProxyProtocol::Off)
        );
        assert_eq!(
            Action::parse("reject unknown-sni").unwrap().0,
            Decision::reject("unknown-sni", Alert::UnrecognizedName)
        );
        assert_eq!(
            Action::parse("reject banned alert=access_denied")
                .unwrap()
                .0,
            Decision::reject("banned", Alert::AccessDenied)
        );
    }

    #[test]
    fn bad_actions_say_what_is_wrong() {
        let e = |t: &str| Action::parse(t).unwrap_err().0;
        assert!(e("").starts_with("expected an action"));
        assert!(e("passthrough").starts_with("expected an action"));
        assert_eq!(
            e("forward web"),
            r#"unknown action "forward" (expected passthrough, terminate or reject)"#
        );
        assert_eq!(
            e("passthrough proxy=v2"),
            r#""passthrough" needs a name before "proxy=v2""#
        );
        assert_eq!(
            e("reject x proxy=v2"),
            r#"unexpected "proxy=v2" after "reject x""#
        );
        assert_eq!(
            e("terminate x alert=close"),
            r#"unexpected "alert=close" after "terminate x""#
        );
        assert_eq!(e("terminate x y"), r#"unexpected "y" after "terminate x""#);
        assert!(e("terminate x proxy=v1").starts_with(r#"proxy: unknown "v1""#));
        assert!(e("reject x alert=nope").starts_with(r#"alert: unknown "nope""#));
    }

    #[test]
    fn bad_routes_say_what_is_wrong() {
        assert_eq!(
            err("a.example passthrough x"),
            r#"expected "<matchers> -> <action>""#
        );
        assert_eq!(err("a -> b -> passthrough x"), r#"more than one "->""#);
        assert_eq!(
            err("a_b.example -> passthrough x"),
            r#""a_b.example" is not a valid DNS name"#
        );
        assert!(err("a.*.example -> passthrough x").contains("wildcard"));
        assert_eq!(
            err("alpm=h2 -> passthrough x"),
            r#"unknown matcher "alpm=" (expected alpn=, source= or port=)"#
        );
        assert_eq!(
            err("alpn= -> passthrough x"),
            r#""alpn=" needs at least one value"#
        );
        assert_eq!(
            err("source=10.0.0.0/40 -> passthrough x"),
            r#"source: "40" is not a valid prefix length"#
        );
        assert_eq!(
            err("port=https -> passthrough x"),
            r#"port: "https" is not a port number"#
        );
    }

    #[test]
    fn matching_needs_every_matcher() {
        let r = route("*.example.com alpn=h2 source=10.0.0.0/8 port=443 -> passthrough x");
        let good = ClientHello {
            local_port: 443,
            ..ClientHello::for_server_name("a.example.com")
                .with_alpn(&["http/1.1", "h2"])
                .with_source("10.1.2.3")
        };
        assert!(r.matches(&good));
        let mut h = good.clone();
        h.server_name = Some("example.com".into());
        assert!(!r.matches(&h), "wildcard needs one label");
        h = good.clone();
        h.server_name = None;
        assert!(!r.matches(&h), "names need an SNI");
        h = good.clone();
        h.alpn = vec!["http/1.1".into()];
        assert!(!r.matches(&h), "alpn");
        h = good.clone();
        h.source_addr = "11.0.0.1".into();
        assert!(!r.matches(&h), "source");
        h = good.clone();
        h.local_port = 8443;
        assert!(!r.matches(&h), "port");
    }

    #[test]
    fn covering_routes_are_detected() {
        let covers = |a: &str, b: &str| route(a).covers(&route(b));
        assert!(covers("* -> passthrough x", "a.example -> passthrough y"));
        assert!(covers(
            "source=10.0.0.0/8 -> passthrough x",
            "* source=10.1.0.0/16 -> passthrough y"
        ));
        assert!(covers(
            "*.example -> passthrough x",
            "a.example b.example alpn=h2 -> passthrough y"
        ));
        assert!(covers(
            "a.example alpn=h2,http/1.1 -> passthrough x",
            "a.example alpn=h2 port=443 -> passthrough y"
        ));
        assert!(covers(
            "port=443,8443 -> passthrough x",
            "port=443 -> passthrough y"
        ));
        assert!(
            !covers("* -> passthrough x", "source=10.0.0.0/8 -> passthrough y"),
            "no-SNI hellos"
        );
        assert!(!covers(
            "*.example -> passthrough x",
            "a.b.example -> passthrough y"
        ));
        assert!(!covers(
            "a.example -> passthrough x",
            "*.example -> passthrough y"
        ));
        assert!(!covers(
            "a.example alpn=h2 -> passthrough x",
            "a.example -> passthrough y"
        ));
        assert!(!covers(
            "source=10.1.0.0/16 -> passthrough x",
            "source=10.0.0.0/8 -> passthrough y"
        ));
        assert!(!covers(
            "source=10.0.0.0/8 -> passthrough x",
            "source=2001:db8::/32 -> passthrough y"
        ));
        assert!(!covers(
            "port=443 -> passthrough x",
            "port=443,8443 -> passthrough y"
        ));
    }

    #[test]
    fn a_route_without_names_matches_with_or_without_sni() {
        let r = route("source=10.0.0.0/8 -> passthrough internal");
        assert!(r.matches(&ClientHello::default().with_source("10.0.0.1")));
        assert!(
            r.matches(&ClientHello::for_server_name("x.example").with_source("::ffff:10.0.0.1"))
        );
        assert!(!r.matches(&ClientHello::default().with_source("192.0.2.1")));
        let star = route("* -> passthrough any");
        assert!(star.matches(&ClientHello::for_server_name("x.example")));
        assert!(!star.matches(&ClientHello::default()), "* needs an SNI");
    }
}
