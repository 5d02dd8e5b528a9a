//! The policy seam both modes share: [`Decide`], what asks the wasm policy
//! (or a plain function in tests) about a ClientHello (`proxy/conn.rs`) or
//! an HTTP request (`http/policy.rs`), and [`ask`], the one place a policy
//! call is timed, its failure counted and logged, and `policy.on_error`
//! applied; and [`source_addr`], the client address as both kinds of call
//! give it. What each mode does with the answer stays with the mode.

use std::net::{IpAddr, SocketAddr};

use hearth_edge_policy::{ClientHello, Decision, HttpDecision, HttpRequest, Policy, PolicyError};
use tokio::time::Instant;
use tracing::{Span, warn};

use crate::config::OnError;
use crate::metrics::Metrics;

/// Something that decides what happens to a connection: the wasm policy, or
/// a plain function in tests.
pub trait Decide: Send + Sync + 'static {
    /// The decision for one ClientHello.
    fn decide(&self, hello: &ClientHello) -> Result<Decision, PolicyError>;

    /// A name for logs.
    fn name(&self) -> &str {
        "policy"
    }

    /// Whether [`Decide::on_request`] has anything to say: the HTTP mode
    /// only asks when it does.
    fn handles_requests(&self) -> bool {
        false
    }

    /// The decision for one request of the HTTP mode.
    fn on_request(&self, _request: &HttpRequest) -> Result<HttpDecision, PolicyError> {
        Ok(HttpDecision::FollowRoutes)
    }
}

/// What a failed call is about, for the `policy failed` line.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A connection's ClientHello.
    Hello {
        /// The client.
        source: SocketAddr,
        /// Its SNI, if any.
        sni: Option<&'a str>,
    },
    /// One request of the HTTP mode.
    Request {
        /// The client.
        source: SocketAddr,
        /// The request's host as routing saw it.
        host: &'a str,
        /// The request's path.
        path: &'a str,
    },
}

/// What `policy.on_error` chose after a failed call (already counted and
/// logged).
#[derive(Debug)]
pub enum Fallback<'a> {
    /// Fail closed: the connection or request is refused.
    Reject(PolicyError),
    /// Fail open toward this backend (the TCP path passes through to it;
    /// the HTTP mode follows the routes).
    Backend(&'a str),
}

impl Decide for Policy {
    fn decide(&self, hello: &ClientHello) -> Result<Decision, PolicyError> {
        Policy::decide(self, hello)
    }

    fn name(&self) -> &str {
        Policy::name(self)
    }

    fn handles_requests(&self) -> bool {
        Policy::handles_requests(self)
    }

    fn on_request(&self, request: &HttpRequest) -> Result<HttpDecision, PolicyError> {
        Policy::on_request(self, request)
    }
}

impl<F> Decide for F
where
    F: Fn(&ClientHello) -> Result<Decision, PolicyError> + Send + Sync + 'static,
{
    fn decide(&self, hello: &ClientHello) -> Result<Decision, PolicyError> {
        self(hello)
    }
}

/// Runs one policy call: `call` inside `span` (so lines the policy logs
/// carry the connection they are about), timed into the decision latency
/// histogram; then `check` turns its result into what the caller acts on,
/// refusing what the edge cannot carry out. A failure of either is counted
/// (`policy_errors_total{kind}`), logged once as `policy failed`, and
/// answered by `on_error`.
pub fn ask<'a, D, T>(
    metrics: &Metrics,
    on_error: &'a OnError,
    span: Span,
    subject: Subject<'_>,
    call: impl FnOnce() -> Result<D, PolicyError>,
    check: impl FnOnce(Result<D, PolicyError>) -> Result<T, PolicyError>,
) -> Result<T, Fallback<'a>> {
    let started = Instant::now();
    let answer = span.in_scope(call);
    metrics.decision_latency(started.elapsed());
    let error = match check(answer) {
        Ok(checked) => return Ok(checked),
        Err(error) => error,
    };
    metrics.policy_error(error.kind());
    match subject {
        Subject::Hello { source, sni } => warn!(
            source = %source,
            sni = %sni.unwrap_or("-"),
            kind = %error.kind(),
            error = %error,
            on_error = %on_error,
            "policy failed"
        ),
        Subject::Request { source, host, path } => warn!(
            source = %source,
            host = %host,
            path = %path,
            kind = %error.kind(),
            error = %error,
            on_error = %on_error,
            "policy failed"
        ),
    }
    Err(match on_error {
        OnError::Reject => Fallback::Reject(error),
        OnError::Backend(name) => Fallback::Backend(name),
    })
}

/// `ip` as a policy's `source_addr` (hello and request alike), an
/// IPv4-mapped IPv6 address as IPv4.
/// IPv4 is written digit by digit: through `fmt` it cost a thousand
/// instructions per connection.
pub fn source_addr(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip.to_canonical() else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn source_addr_is_display_of_the_canonical_address() {
        for octet in 0..=255u8 {
            for v4 in [
                Ipv4Addr::new(octet, 0, 9, 255),
                Ipv4Addr::new(1, octet, 10, 99),
                Ipv4Addr::new(100, 20, octet, 7),
                Ipv4Addr::new(255, 255, 0, octet),
            ] {
                assert_eq!(source_addr(IpAddr::V4(v4)), v4.to_string());
                assert_eq!(source_addr(IpAddr::V6(v4.to_ipv6_mapped())), v4.to_string());
            }
        }
        for v6 in [Ipv6Addr::LOCALHOST, "2001:db8::1".parse().unwrap()] {
            assert_eq!(source_addr(IpAddr::V6(v6)), v6.to_string());
        }
    }
}
