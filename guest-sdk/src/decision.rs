//! Constructors, accessors and text forms for the WIT decision types
//! ([`Decision`], [`Route`], [`Rejection`], [`Alert`], [`ProxyProtocol`]).
//!
//! The types themselves are generated from `wit/edge.wit` in `lib.rs`.
//! Text forms use the WIT case names (`unrecognized-name`, `v2`), which are
//! also what config-driven policies accept.

use std::fmt;
use std::str::FromStr;

use crate::{Alert, Decision, ProxyProtocol, Rejection, Route};

/// A string that names no [`Alert`] or [`ProxyProtocol`] case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What was given.
    pub given: String,
    /// The accepted names, for the message.
    pub expected: &'static str,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {:?}, expected one of {}",
            self.given, self.expected
        )
    }
}

impl std::error::Error for UnknownName {}

// === impl Decision ===

impl Decision {
    /// Relay the encrypted bytes untouched to `backend`, which terminates TLS.
    /// The backend's own PROXY protocol setting applies.
    pub fn passthrough(backend: impl Into<String>) -> Self {
        Decision::Passthrough(Route::new(backend))
    }

    /// Terminate TLS at the edge, then relay the plaintext to `backend`.
    /// The backend's own PROXY protocol setting applies.
    pub fn terminate(backend: impl Into<String>) -> Self {
        Decision::Terminate(Route::new(backend))
    }

    /// Refuse the connection. `reason` labels logs and metrics: keep it short
    /// and low-cardinality (`unknown-sni`, not the name itself).
    pub fn reject(reason: impl Into<String>, alert: Alert) -> Self {
        Decision::Reject(Rejection {
            reason: reason.into(),
            alert,
        })
    }

    /// Sets the PROXY protocol choice of a passthrough or terminate route;
    /// a reject is returned unchanged.
    #[must_use]
    pub fn with_proxy_protocol(mut self, proxy_protocol: ProxyProtocol) -> Self {
        if let Decision::Passthrough(route) | Decision::Terminate(route) = &mut self {
            route.proxy_protocol = proxy_protocol;
        }
        self
    }

    /// The route of a passthrough or terminate decision.
    pub fn route(&self) -> Option<&Route> {
        match self {
            Decision::Passthrough(route) | Decision::Terminate(route) => Some(route),
            Decision::Reject(_) => None,
        }
    }

    /// The backend name of a passthrough or terminate decision.
    pub fn backend(&self) -> Option<&str> {
        self.route().map(|route| route.backend.as_str())
    }

    /// The rejection of a reject decision.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Decision::Reject(rejection) => Some(rejection),
            _ => None,
        }
    }
}

/// `passthrough turn`, `terminate livekit proxy=v2`,
/// `reject unknown-sni alert=unrecognized-name`.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Passthrough(route) => write!(f, "passthrough {route}"),
            Decision::Terminate(route) => write!(f, "terminate {route}"),
            Decision::Reject(rejection) => {
                write!(f, "reject {} alert={}", rejection.reason, rejection.alert)
            }
        }
    }
}

// === impl Route ===

impl Route {
    /// A route to `backend` with the backend's default PROXY protocol setting.
    pub fn new(backend: impl Into<String>) -> Self {
        Route {
            backend: backend.into(),
            proxy_protocol: ProxyProtocol::BackendDefault,
        }
    }
}

/// The backend, then ` proxy=…` unless it is the backend default.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.backend)?;
        if self.proxy_protocol != ProxyProtocol::BackendDefault {
            write!(f, " proxy={}", self.proxy_protocol)?;
        }
        Ok(())
    }
}

// === impl Alert ===

const ALERT_NAMES: &str =
    "unrecognized-name, access-denied, handshake-failure, protocol-version, internal-error, close";

impl Alert {
    /// The WIT case name, e.g. `unrecognized-name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alert::UnrecognizedName => "unrecognized-name",
            Alert::AccessDenied => "access-denied",
            Alert::HandshakeFailure => "handshake-failure",
            Alert::ProtocolVersion => "protocol-version",
            Alert::InternalError => "internal-error",
            Alert::Close => "close",
        }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepts the WIT case names and the TLS spec's spelling with underscores
/// (`unrecognized_name`), in any case.
impl FromStr for Alert {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        [
            Alert::UnrecognizedName,
            Alert::AccessDenied,
            Alert::HandshakeFailure,
            Alert::ProtocolVersion,
            Alert::InternalError,
            Alert::Close,
        ]
        .into_iter()
        .find(|alert| alert.as_str() == wanted)
        .ok_or_else(|| UnknownName {
            given: s.to_owned(),
            expected: ALERT_NAMES,
        })
    }
}

// === impl ProxyProtocol ===

impl ProxyProtocol {
    /// The WIT case name: `backend-default`, `off` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocol::BackendDefault => "backend-default",
            ProxyProtocol::Off => "off",
            ProxyProtocol::V2 => "v2",
        }
    }
}

impl fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepts `backend-default` (or `default`), `off` and `v2`, in any case.
impl FromStr for ProxyProtocol {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "backend-default" | "default" => Ok(ProxyProtocol::BackendDefault),
            "off" => Ok(ProxyProtocol::Off),
            "v2" => Ok(ProxyProtocol::V2),
            _ => Err(UnknownName {
                given: s.to_owned(),
                expected: "backend-default, off, v2",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_build_the_wit_variants() {
        assert_eq!(
            Decision::passthrough("turn"),
            Decision::Passthrough(Route {
                backend: "turn".into(),
                proxy_protocol: ProxyProtocol::BackendDefault
            })
        );
        assert_eq!(
            Decision::terminate("lk").with_proxy_protocol(ProxyProtocol::V2),
            Decision::Terminate(Route {
                backend: "lk".into(),
                proxy_protocol: ProxyProtocol::V2
            })
        );
        assert_eq!(
            Decision::reject("x", Alert::Close).with_proxy_protocol(ProxyProtocol::V2),
            Decision::Reject(Rejection {
                reason: "x".into(),
                alert: Alert::Close
            })
        );
    }

    #[test]
    fn accessors() {
        assert_eq!(Decision::terminate("lk").backend(), Some("lk"));
        assert_eq!(Decision::reject("x", Alert::Close).backend(), None);
        assert_eq!(
            Decision::reject("x", Alert::Close)
                .rejection()
                .map(|r| r.alert),
            Some(Alert::Close)
        );
    }

    #[test]
    fn display() {
        assert_eq!(
            Decision::passthrough("turn").to_string(),
            "passthrough turn"
        );
        assert_eq!(
            Decision::terminate("lk")
                .with_proxy_protocol(ProxyProtocol::V2)
                .to_string(),
            "terminate lk proxy=v2"
        );
        assert_eq!(
            Decision::reject("unknown-sni", Alert::UnrecognizedName).to_string(),
            "reject unknown-sni alert=unrecognized-name"
        );
    }

    #[test]
    fn alert_names_round_trip_and_accept_tls_spelling() {
        for alert in [
            Alert::UnrecognizedName,
            Alert::AccessDenied,
            Alert::HandshakeFailure,
            Alert::ProtocolVersion,
            Alert::InternalError,
            Alert::Close,
        ] {
            assert_eq!(alert.as_str().parse::<Alert>(), Ok(alert));
        }
        assert_eq!("Access_Denied".parse::<Alert>(), Ok(Alert::AccessDenied));
        let err = "nope".parse::<Alert>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"unknown "nope", expected one of"#)
        );
    }

    #[test]
    fn proxy_protocol_names() {
        assert_eq!("v2".parse(), Ok(ProxyProtocol::V2));
        assert_eq!("OFF".parse(), Ok(ProxyProtocol::Off));
        assert_eq!("default".parse(), Ok(ProxyProtocol::BackendDefault));
        assert_eq!("backend-default".parse(), Ok(ProxyProtocol::BackendDefault));
        assert!("v1".parse::<ProxyProtocol>().is_err());
    }
}
