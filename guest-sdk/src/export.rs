//! The per-instance slot behind [`export_policy!`](crate::export_policy):
//! holds the policy built by `init` and answers `decide` (and, for an
//! [`HttpPolicy`](crate::HttpPolicy), `on-request`) with it.
//!
//! The macro itself lives in `lib.rs`; the [`Policy`] trait it drives is
//! there too.

use std::cell::RefCell;

use crate::{Alert, ClientHello, Config, Decision, Policy};

/// The reject reason of a `decide` (and the body of the 503 answer to an
/// `on-request`) that arrives before a successful `init`.
pub const NOT_INITIALISED: &str = "not-initialised";

/// Holds one instance's policy. A component instance is single-threaded, so
/// the macro keeps the slot in a `thread_local!`.
pub struct Slot<P> {
    policy: RefCell<Option<P>>,
}

impl<P: Policy> Slot<P> {
    /// An empty slot: `decide` rejects until `init` succeeds.
    pub const fn new() -> Self {
        Slot {
            policy: RefCell::new(None),
        }
    }

    /// Builds the policy from the raw config pairs and keeps it. On error the
    /// slot is left empty and the error's message is returned for the host.
    pub fn init(&self, pairs: Vec<(String, String)>) -> Result<(), String> {
        // Drop any earlier instance first, so a failed re-init cannot leave
        // a policy built from the previous config answering.
        self.policy.replace(None);
        let policy = P::init(&Config::new(pairs)).map_err(|err| err.to_string())?;
        self.policy.replace(Some(policy));
        Ok(())
    }

    /// Asks the policy about one connection.
    pub fn decide(&self, hello: &ClientHello) -> Decision {
        match &*self.policy.borrow() {
            Some(policy) => policy.decide(hello),
            None => Decision::reject(NOT_INITIALISED, Alert::InternalError),
        }
    }
}

#[cfg(feature = "http")]
impl<P: crate::HttpPolicy> Slot<P> {
    /// Asks the policy about one request; 503 before a successful `init`.
    pub fn on_request(&self, request: &crate::HttpRequest) -> crate::HttpDecision {
        match &*self.policy.borrow() {
            Some(policy) => policy.on_request(request),
            None => crate::HttpDecision::respond(503, NOT_INITIALISED),
        }
    }
}

impl<P: Policy> Default for Slot<P> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigError;

    struct Echo(String);

    impl Policy for Echo {
        fn init(config: &Config) -> Result<Self, ConfigError> {
            Ok(Echo(config.required("backend")?.to_owned()))
        }

        fn decide(&self, _hello: &ClientHello) -> Decision {
            Decision::passthrough(self.0.as_str())
        }
    }

    fn pairs(backend: Option<&str>) -> Vec<(String, String)> {
        backend
            .map(|b| vec![("backend".to_owned(), b.to_owned())])
            .unwrap_or_default()
    }

    #[test]
    fn decide_before_init_rejects_not_initialised() {
        let slot = Slot::<Echo>::new();
        assert_eq!(
            slot.decide(&ClientHello::default()),
            Decision::reject(NOT_INITIALISED, Alert::InternalError)
        );
    }

    #[test]
    fn init_keeps_the_policy() {
        let slot = Slot::<Echo>::new();
        slot.init(pairs(Some("web"))).unwrap();
        assert_eq!(
            slot.decide(&ClientHello::default()),
            Decision::passthrough("web")
        );
    }

    #[test]
    fn failed_reinit_clears_the_previous_policy() {
        let slot = Slot::<Echo>::new();
        slot.init(pairs(Some("web"))).unwrap();
        let err = slot.init(pairs(None)).unwrap_err();
        assert_eq!(err, r#"missing required key "backend""#);
        assert_eq!(
            slot.decide(&ClientHello::default()),
            Decision::reject(NOT_INITIALISED, Alert::InternalError)
        );
    }
}
