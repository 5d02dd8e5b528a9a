//! A loaded policy: its compiled component, its config, and the pool of
//! initialised instances that serve decisions. One instance is taken per
//! call and given back after; an instance whose call failed is dropped and
//! replaced lazily, by the next call that finds the pool empty. Calls
//! themselves (deadline, memory cap, error mapping) are in `instance.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bindings::http::HttpPolicyPre;
use crate::bindings::plain::PolicyPre as PlainPolicyPre;
use crate::host_api::PolicyShared;
use crate::host_api::token_bucket::TokenBuckets;
use crate::instance::{Instance, Pre, StartError, Template};
use crate::runtime::{ArtifactSource, MAX_POLICY_MEMORY, one_line};
use crate::{ClientHello, Decision, HttpDecision, HttpRequest, LoadError, PolicyError, Runtime};

/// The export that makes a component an `http-policy`.
const ON_REQUEST: &str = "on-request";

/// Resource limits for every call into a policy.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub max_memory: u64,
    /// Longest a single `decide` call may run.
    pub max_time: Duration,
    /// Longest instantiation plus `init` may run. Separate from (and longer
    /// than) `max_time`: `init` runs once per instance, off the per-call
    /// budget, and may parse a large config; on a loaded machine a 5 ms
    /// budget would make loads and reloads fail at random.
    pub init_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: 16 << 20,
            max_time: Duration::from_millis(5),
            init_timeout: DEFAULT_INIT_TIMEOUT,
        }
    }
}

/// Default [`Limits::init_timeout`]: generous for a config-heavy `init` on a
/// busy machine, still short enough that a looping `init` fails a load fast.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Idle instances kept per core: enough for every worker thread to find one
/// without instantiating, with a margin for bursts.
const IDLE_INSTANCES_PER_CORE: usize = 2;
const IDLE_INSTANCES_MARGIN: usize = 2;

/// A loaded, initialised policy. Cheap to clone; safe to share between tasks.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    template: Template,
    idle: Mutex<Vec<Instance>>,
    max_idle: usize,
    source: ArtifactSource,
    stats: Counters,
    /// Keeps the runtime's epoch ticker running for as long as the policy
    /// lives: without it `max_time` would never fire once the caller drops
    /// its `Runtime`.
    _runtime: Runtime,
}

/// Counters of one policy since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Decisions returned.
    pub decisions: u64,
    /// Calls that failed (trap, timeout, memory, unavailable).
    pub failures: u64,
    /// Instances created after the first (replacements and extra
    /// concurrency).
    pub instantiations: u64,
    /// Keys held in the policy's token buckets.
    pub token_keys: usize,
}

#[derive(Default)]
struct Counters {
    decisions: AtomicU64,
    failures: AtomicU64,
    instantiations: AtomicU64,
}

// === impl Policy ===

impl Policy {
    /// Loads the component at `path` (from the precompiled cache when it
    /// holds this file), instantiates it once and calls `init(config)`.
    pub fn load(
        runtime: &Runtime,
        path: &Path,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Policy, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Policy::load_bytes(runtime, path, &wasm, config, limits)
    }

    /// Like [`Policy::load`], with the file's contents already read; `path`
    /// names the policy in errors and logs.
    pub fn load_bytes(
        runtime: &Runtime,
        path: &Path,
        wasm: &[u8],
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Policy, LoadError> {
        let invalid = |message: String| LoadError::Invalid {
            path: path.to_owned(),
            message,
        };
        if limits.max_memory > MAX_POLICY_MEMORY {
            return Err(invalid(format!(
                "max_memory {} exceeds the runtime's ceiling of {MAX_POLICY_MEMORY} bytes",
                limits.max_memory
            )));
        }
        let (pre, source) = prepare(runtime, path, wasm)?;

        let name: Arc<str> = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
            .into();
        let handles_requests = matches!(pre, Pre::Http(_));
        let template = Template {
            pre,
            policy: Arc::new(PolicyShared {
                name,
                buckets: TokenBuckets::default(),
                runtime: runtime.shared().clone(),
            }),
            max_memory: usize::try_from(limits.max_memory).unwrap_or(usize::MAX),
            deadline_ticks: runtime.deadline_ticks(limits.max_time),
            init_deadline_ticks: runtime.deadline_ticks(limits.init_timeout),
            config,
        };
        let first = Instance::start(&template).map_err(|e| match e {
            StartError::Refused(message) => LoadError::InitRefused {
                path: path.to_owned(),
                message,
            },
            StartError::Failed(source) => LoadError::InitFailed {
                path: path.to_owned(),
                source,
            },
        })?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let policy = Policy {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                template,
                idle: Mutex::new(vec![first]),
                max_idle: cores * IDLE_INSTANCES_PER_CORE + IDLE_INSTANCES_MARGIN,
                source,
                stats: Counters::default(),
                _runtime: runtime.clone(),
            }),
        };
        tracing::info!(
            policy = policy.name(),
            path = %path.display(),
            ?source,
            on_request = handles_requests,
            "policy loaded"
        );
        Ok(policy)
    }

    /// Checks that `wasm` is a policy this runtime can run (a component of
    /// the `hearth:edge/policy` world whose imports are all provided),
    /// without instantiating it or calling `init`.
    pub fn check_bytes(runtime: &Runtime, path: &Path, wasm: &[u8]) -> Result<(), LoadError> {
        prepare(runtime, path, wasm).map(drop)
    }

    /// Asks the policy what to do with one connection. Synchronous and
    /// bounded by `max_time`.
    pub fn decide(&self, hello: &ClientHello) -> Result<Decision, PolicyError> {
        self.call(|instance| instance.decide(hello))
    }

    /// Whether the policy exports `on-request` (the `http-policy` world).
    /// When it does not, [`Policy::on_request`] always follows the routes
    /// and the HTTP mode need not ask.
    pub fn handles_requests(&self) -> bool {
        matches!(self.inner.template.pre, Pre::Http(_))
    }

    /// Asks the policy what to do with one HTTP request. Synchronous and
    /// bounded by `max_time`, like [`Policy::decide`]; counted with the
    /// decisions.
    pub fn on_request(&self, request: &HttpRequest) -> Result<HttpDecision, PolicyError> {
        if !self.handles_requests() {
            return Ok(HttpDecision::FollowRoutes);
        }
        self.call(|instance| instance.on_request(request))
    }

    /// One call on a pooled instance: the instance goes back to the pool
    /// after a successful call and is dropped after a failed one.
    fn call<R>(
        &self,
        f: impl FnOnce(&mut Instance) -> Result<R, PolicyError>,
    ) -> Result<R, PolicyError> {
        let mut instance = match self.take_idle() {
            Some(instance) => instance,
            None => self.start_instance()?,
        };
        match f(&mut instance) {
            Ok(answer) => {
                self.inner.stats.decisions.fetch_add(1, Ordering::Relaxed);
                self.give_back(instance);
                Ok(answer)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Decides with a new instance (instantiate + `init`), discarded after.
    /// Slower than [`Policy::decide`]; for benchmarks and for checking that
    /// a policy keeps no state between connections.
    pub fn decide_with_fresh_instance(&self, hello: &ClientHello) -> Result<Decision, PolicyError> {
        let mut instance = self.start_instance()?;
        let decision = instance.decide(hello).map_err(|e| self.failed(e))?;
        self.inner.stats.decisions.fetch_add(1, Ordering::Relaxed);
        Ok(decision)
    }

    /// The policy's name (its file stem), for logs and metrics.
    pub fn name(&self) -> &str {
        &self.inner.template.policy.name
    }

    /// The file the policy was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether the compiled code came from the cache or was compiled now.
    pub fn artifact_source(&self) -> ArtifactSource {
        self.inner.source
    }

    /// Counters since the policy was loaded.
    pub fn stats(&self) -> PolicyStats {
        let c = &self.inner.stats;
        PolicyStats {
            decisions: c.decisions.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            instantiations: c.instantiations.load(Ordering::Relaxed),
            token_keys: self.inner.template.policy.buckets.len(),
        }
    }

    /// How many initialised instances are waiting in the pool.
    pub fn idle_instances(&self) -> usize {
        self.idle().len()
    }

    fn take_idle(&self) -> Option<Instance> {
        self.idle().pop()
    }

    fn give_back(&self, instance: Instance) {
        let mut idle = self.idle();
        if idle.len() < self.inner.max_idle {
            idle.push(instance);
        }
    }

    fn start_instance(&self) -> Result<Instance, PolicyError> {
        self.inner
            .stats
            .instantiations
            .fetch_add(1, Ordering::Relaxed);
        Instance::start(&self.inner.template).map_err(|e| {
            let e = match e {
                // `init` accepted this config at load; refusing it now means
                // the policy depends on something that changed (e.g. time).
                StartError::Refused(message) => PolicyError::Unavailable(format!(
                    "init refused its config on restart: {message}"
                )),
                StartError::Failed(e) => e,
            };
            self.failed(e)
        })
    }

    /// Counts and logs a failed call; the instance has been dropped.
    fn failed(&self, e: PolicyError) -> PolicyError {
        self.inner.stats.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            policy = self.name(),
            kind = e.kind(),
            "{e}; instance discarded"
        );
        e
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        // Instances are only pushed and popped: a poisoned lock holds a
        // valid list.
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Compiles (or loads) `wasm` and links it against the runtime's imports,
/// as an `http-policy` when it exports `on-request`, else as a `policy`.
fn prepare(
    runtime: &Runtime,
    path: &Path,
    wasm: &[u8],
) -> Result<(Pre, ArtifactSource), LoadError> {
    let invalid = |e: wasmtime::Error| LoadError::Invalid {
        path: path.to_owned(),
        message: format!("not a hearth:edge policy: {}", one_line(&e)),
    };
    let (component, source) = runtime.component(path, wasm)?;
    let instance_pre = runtime
        .linker()
        .instantiate_pre(&component)
        .map_err(invalid)?;
    let pre = if component.get_export_index(None, ON_REQUEST).is_some() {
        Pre::Http(HttpPolicyPre::new(instance_pre).map_err(invalid)?)
    } else {
        Pre::Plain(PlainPolicyPre::new(instance_pre).map_err(invalid)?)
    };
    Ok((pre, source))
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name())
            .field("path", &self.inner.path)
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}
