//! A loaded policy: its compiled component, its config, and the pool of
//! initialised instances that serve decisions.

use std::path::Path;
use std::time::Duration;

use crate::{ClientHello, Decision, LoadError, PolicyError, Runtime};

/// Resource limits for every call into a policy.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub max_memory: u64,
    /// Longest a single `init` or `decide` call may run.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_memory: 16 << 20, max_time: Duration::from_millis(5) }
    }
}

/// A loaded, initialised policy. Cheap to clone; safe to share between tasks.
#[derive(Clone)]
pub struct Policy {
    _todo: (),
}

impl Policy {
    /// Loads the component at `path` (from the precompiled cache when it
    /// holds this file), instantiates it once and calls `init(config)`.
    pub fn load(
        runtime: &Runtime,
        path: &Path,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Policy, LoadError> {
        let _ = (runtime, path, config, limits);
        todo!("policy load")
    }

    /// Asks the policy what to do with one connection. Synchronous and
    /// bounded by `max_time`.
    pub fn decide(&self, hello: &ClientHello) -> Result<Decision, PolicyError> {
        let _ = hello;
        todo!("policy decide")
    }

    /// The policy's name (its file stem), for logs and metrics.
    pub fn name(&self) -> &str {
        todo!("policy name")
    }
}
