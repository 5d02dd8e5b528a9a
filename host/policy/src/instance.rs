//! One store + initialised instance of a policy, and the rules for every call
//! into it: an epoch deadline set before the call, a memory cap enforced by
//! the store's limiter, and the mapping of whatever went wrong to a
//! [`PolicyError`]. The pool that reuses instances is in `policy.rs`; host
//! functions are in `host_api.rs`; WASI is in `wasi.rs`.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::http::{HttpPolicy, HttpPolicyPre};
use crate::bindings::plain::{Policy as PlainPolicy, PolicyPre as PlainPolicyPre};
use crate::host_api::PolicyShared;
use crate::wasi::output::GuestOutput;
use crate::{ClientHello, Decision, HttpDecision, HttpRequest, PolicyError};

/// Log lines one `init` or `decide` call may write; more are counted and
/// dropped, so a looping policy cannot flood the log.
pub(crate) const MAX_LOG_LINES_PER_CALL: u32 = 64;

/// Largest table (function references) an instance may grow to. Rust
/// policies use a few hundred entries.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Everything a store holds for one policy instance.
pub(crate) struct StoreState {
    /// The empty WASI context.
    wasi: WasiCtx,
    /// WASI resources (streams, pollables) of this instance.
    table: ResourceTable,
    /// Enforces `max_memory`.
    limiter: MemoryLimiter,
    /// Captured stdout / stderr.
    stdout: GuestOutput,
    stderr: GuestOutput,
    /// What host functions need: the policy's name, token buckets, clock.
    pub policy: Arc<PolicyShared>,
    /// Log lines the current call may still write (see `host_api.rs`).
    pub log_lines_left: u32,
    /// Log lines the current call wrote past its allowance.
    pub log_lines_dropped: u32,
}

/// Caps linear memory at `max_memory` bytes and remembers that the cap was
/// hit, so the resulting trap is reported as [`PolicyError::Memory`].
struct MemoryLimiter {
    max_memory: usize,
    hit: bool,
}

/// A policy's component, linked as the world it implements.
#[derive(Clone)]
pub(crate) enum Pre {
    /// `init` and `decide`.
    Plain(PlainPolicyPre<StoreState>),
    /// `init`, `decide` and `on-request`.
    Http(HttpPolicyPre<StoreState>),
}

/// The exports of one instance.
enum World {
    Plain(PlainPolicy),
    Http(HttpPolicy),
}

/// What it takes to start an instance of a policy.
pub(crate) struct Template {
    pub pre: Pre,
    pub policy: Arc<PolicyShared>,
    pub max_memory: usize,
    /// Epoch ticks allowed per `decide` (see `Runtime::deadline_ticks`).
    pub deadline_ticks: u64,
    /// Epoch ticks allowed for instantiation plus `init`.
    pub init_deadline_ticks: u64,
    pub config: Vec<(String, String)>,
}

/// A started instance failed to become usable.
pub(crate) enum StartError {
    /// `init` returned an error: the policy refuses its config.
    Refused(String),
    /// Instantiation or `init` failed.
    Failed(PolicyError),
}

/// An initialised instance, ready for `decide`.
pub(crate) struct Instance {
    store: Store<StoreState>,
    world: World,
    deadline_ticks: u64,
}

// === impl Instance ===

impl Instance {
    /// Instantiates the policy and calls `init` with its config, each step
    /// under `init_timeout`.
    pub fn start(t: &Template) -> Result<Instance, StartError> {
        let stdout = GuestOutput::default();
        let stderr = GuestOutput::default();
        let state = StoreState {
            wasi: crate::wasi::context(&stdout, &stderr),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_memory: t.max_memory,
                hit: false,
            },
            stdout,
            stderr,
            policy: t.policy.clone(),
            log_lines_left: MAX_LOG_LINES_PER_CALL,
            log_lines_dropped: 0,
        };
        let engine = match &t.pre {
            Pre::Plain(pre) => pre.engine(),
            Pre::Http(pre) => pre.engine(),
        };
        let runtime = t.policy.runtime.clone();
        let _in_flight = runtime.call_started();
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        // A new store's deadline (0) has already passed: set it first.
        store.set_epoch_deadline(t.init_deadline_ticks);
        let instantiated = match &t.pre {
            Pre::Plain(pre) => pre.instantiate(&mut store).map(World::Plain),
            Pre::Http(pre) => pre.instantiate(&mut store).map(World::Http),
        };
        let world = match instantiated {
            Ok(world) => world,
            Err(e) => {
                // Only a trap or the memory cap is the policy's doing; any
                // other failure is the allocator's (e.g. the pool is full).
                let policy_fault = e.downcast_ref::<Trap>().is_some() || store.data().limiter.hit;
                if !policy_fault {
                    return Err(StartError::Failed(PolicyError::Unavailable(format!(
                        "{e:#}"
                    ))));
                }
                return Err(StartError::Failed(classify(&mut store, e)));
            }
        };
        let mut instance = Instance {
            store,
            world,
            deadline_ticks: t.deadline_ticks,
        };
        instance.store.set_epoch_deadline(t.init_deadline_ticks);
        let outcome = match &instance.world {
            World::Plain(w) => w.call_init(&mut instance.store, &t.config),
            World::Http(w) => w.call_init(&mut instance.store, &t.config),
        };
        match instance.finish(outcome) {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(message)) => Err(StartError::Refused(message)),
            Err(e) => Err(StartError::Failed(e)),
        }
    }

    /// Asks for one decision under the time limit.
    pub fn decide(&mut self, hello: &ClientHello) -> Result<Decision, PolicyError> {
        let runtime = self.store.data().policy.runtime.clone();
        let _in_flight = runtime.call_started();
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().log_lines_left = MAX_LOG_LINES_PER_CALL;
        let outcome = match &self.world {
            World::Plain(w) => w.call_decide(&mut self.store, hello),
            World::Http(w) => w.call_decide(&mut self.store, hello),
        };
        self.finish(outcome)
    }

    /// Asks about one HTTP request under the time limit. Only called on
    /// instances of an `http-policy` (see `Policy::handles_requests`); a
    /// plain instance answers `follow-routes`.
    pub fn on_request(&mut self, request: &HttpRequest) -> Result<HttpDecision, PolicyError> {
        let World::Http(world) = &self.world else {
            return Ok(HttpDecision::FollowRoutes);
        };
        let runtime = self.store.data().policy.runtime.clone();
        let _in_flight = runtime.call_started();
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().log_lines_left = MAX_LOG_LINES_PER_CALL;
        let outcome = world.call_on_request(&mut self.store, request);
        self.finish(outcome)
    }

    /// Drains the guest's output into the log, and maps a failed call.
    fn finish<R>(&mut self, outcome: wasmtime::Result<R>) -> Result<R, PolicyError> {
        let state = self.store.data_mut();
        if state.log_lines_dropped > 0 {
            let dropped = std::mem::take(&mut state.log_lines_dropped);
            tracing::warn!(
                policy = &*state.policy.name,
                dropped,
                "policy log lines over the limit of {MAX_LOG_LINES_PER_CALL} per call were dropped"
            );
        }
        match outcome {
            Ok(r) => {
                self.log_output();
                Ok(r)
            }
            Err(e) => Err(classify(&mut self.store, e)),
        }
    }

    fn log_output(&mut self) {
        let state = self.store.data();
        for text in [state.stdout.take(), state.stderr.take()]
            .into_iter()
            .flatten()
        {
            state.policy.log(crate::Level::Warn, text.trim_end());
        }
    }
}

/// Maps a failed call to a [`PolicyError`]; for traps, the guest's captured
/// stderr (a Rust panic message) is appended and also logged.
fn classify(store: &mut Store<StoreState>, e: wasmtime::Error) -> PolicyError {
    let state = store.data_mut();
    let output: Vec<String> = [state.stdout.take(), state.stderr.take()]
        .into_iter()
        .flatten()
        .map(|s| s.trim_end().to_owned())
        .collect();
    if state.limiter.hit {
        state.limiter.hit = false;
        return PolicyError::Memory;
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return PolicyError::Timeout;
    }
    let mut message = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        // Not a wasm trap: a host function refused (e.g. a blocking WASI
        // call) or instantiation failed.
        None => crate::runtime::one_line(&e),
    };
    let said = guest_said(&output);
    if !said.is_empty() {
        message.push_str("; guest stderr: ");
        message.push_str(&said);
    }
    PolicyError::Trap(message)
}

/// The guest's output on one line: non-empty lines joined with ` / `,
/// without Rust's hint about `RUST_BACKTRACE` (a policy cannot act on it).
fn guest_said(output: &[String]) -> String {
    output
        .iter()
        .flat_map(|text| text.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect::<Vec<_>>()
        .join(" / ")
}

// === impl StoreState ===

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

// === impl MemoryLimiter ===

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory would grow to {desired} bytes, over the {} limit",
                self.max_memory
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
