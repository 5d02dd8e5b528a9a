//! The shared wasmtime engine: built once per process, with the linker that
//! grants a policy its host interface (`host_api.rs`) and an empty WASI
//! context (`wasi.rs`), the epoch ticker that enforces `max_time`, and the
//! compile-or-load-from-cache step (`cache.rs`) used by `policy.rs`.
//!
//! # Address space
//! Instances come from wasmtime's pooling allocator, which reserves virtual
//! address space up front for every memory slot (about 4 GiB each, so
//! [`POOL_INSTANCES`] slots reserve around a terabyte). The reservation is
//! not memory use, but the process must not run under a low `RLIMIT_AS`
//! (`ulimit -v`), or the runtime fails to start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::http::HttpPolicy as HttpPolicyWorld;
use crate::host_api::{LogSink, RuntimeShared};
use crate::instance::StoreState;
use crate::{LoadError, cache};

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where precompiled policies are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances; `max_time` is enforced at this granularity.
    pub epoch_tick: Duration,
}

/// Live instances of all loaded policies together, the pooling allocator's
/// size. A policy keeps at most `2 × cores + 2` idle instances (see
/// `policy.rs`), a reload briefly holds two generations, and each concurrent
/// decision holds one; 256 leaves ample room on large machines.
pub const POOL_INSTANCES: u32 = 256;

/// Core instances per policy component: a Rust `wasm32-wasip2` component is
/// its module plus a few adapter shims.
const CORE_INSTANCES_PER_POLICY: u32 = 8;

/// Linear memories / tables per policy component, with room for shims.
const MEMORIES_PER_POLICY: u32 = 2;
const TABLES_PER_POLICY: u32 = 4;

/// The largest `max_memory` a policy may be given. Routing policies need a
/// few MiB; this is the pool's per-slot size limit.
pub const MAX_POLICY_MEMORY: u64 = 1 << 30;

/// Directory name under the user's cache directory.
const CACHE_DIR_NAME: &str = "hearth-wasm-edge";

/// Compiled components kept in memory, by content hash, so loading the same
/// policy again (each config of a case file, a reload that did not change
/// the file) neither compiles nor reads the disk cache. Each is a few MiB.
const MEMORY_CACHE_ENTRIES: usize = 8;

/// Where a precompiled policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactSource {
    /// Already compiled by this runtime (same file contents).
    Memory,
    /// Loaded from the on-disk cache without compiling.
    Cache,
    /// Compiled now (and written to the cache, if one is configured).
    Compiled,
}

/// Counters of the precompiled cache since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Policies loaded from the cache.
    pub hits: u64,
    /// Policies compiled (no usable entry, or no cache).
    pub compiled: u64,
    /// Entries found unusable (corrupt, unreadable or rejected) and replaced.
    pub bad_entries: u64,
}

/// The engine, linker and epoch ticker shared by every loaded policy.
/// Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<StoreState>,
    options: RuntimeOptions,
    shared: Arc<RuntimeShared>,
    /// Recently loaded components, most recent last.
    recent: Mutex<Vec<([u8; 32], Component)>>,
    hits: AtomicU64,
    compiled: AtomicU64,
    bad_entries: AtomicU64,
    /// Stops the ticker thread when the last clone is dropped.
    _ticker: Ticker,
}

/// The background thread that advances an engine's epoch every tick while
/// calls run (`handler.rs` has one too).
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The calls into one engine's wasm, as its [`Ticker`] sees them: how many
/// run now and how many ever started, in one word so a call costs one
/// atomic add; and whether the ticker sleeps until the next call.
pub(crate) struct Calls {
    /// Calls running in the low 32 bits, calls started in the high 32.
    count: AtomicU64,
    /// Set by the ticker before it parks; the call that finds it set wakes
    /// it.
    parked: AtomicBool,
    /// The ticker's thread, once it runs.
    ticker: OnceLock<std::thread::Thread>,
}

/// Counts one call into wasm as running until dropped.
pub(crate) struct InFlight(Arc<Calls>);

// === impl RuntimeOptions ===

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: None,
            epoch_tick: Duration::from_millis(1),
        }
    }
}

impl RuntimeOptions {
    /// The per-user cache directory: `$XDG_CACHE_HOME/hearth-wasm-edge`, or
    /// `~/.cache/hearth-wasm-edge`; `None` when neither is known.
    pub fn default_cache_dir() -> Option<PathBuf> {
        let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
        if let Some(dir) = xdg.filter(|d| d.is_absolute()) {
            return Some(dir.join(CACHE_DIR_NAME));
        }
        let home = std::env::var_os("HOME").map(PathBuf::from)?;
        home.is_absolute()
            .then(|| home.join(".cache").join(CACHE_DIR_NAME))
    }
}

// === impl Runtime ===

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(options: RuntimeOptions) -> Result<Runtime, LoadError> {
        if options.epoch_tick.is_zero() {
            return Err(LoadError::Runtime("epoch_tick must be positive".into()));
        }
        let engine = policy_engine().map_err(runtime_error)?;
        let mut linker = Linker::<StoreState>::new(&engine);
        crate::wasi::add_to_linker(&mut linker).map_err(runtime_error)?;
        // The `http-policy` world imports what `policy` does: one set of
        // host functions serves both.
        HttpPolicyWorld::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(runtime_error)?;
        let shared = Arc::new(RuntimeShared {
            started: Instant::now(),
            log_sink: RwLock::new(None),
            calls: Calls::new(),
        });
        let ticker = Ticker::start(
            engine.clone(),
            options.epoch_tick,
            "policy-epoch",
            shared.calls.clone(),
        )
        .map_err(|e| LoadError::Runtime(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                options,
                shared,
                recent: Mutex::new(Vec::new()),
                hits: AtomicU64::new(0),
                compiled: AtomicU64::new(0),
                bad_entries: AtomicU64::new(0),
                _ticker: ticker,
            }),
        })
    }

    /// Sends every policy log line to `sink` too (in addition to `tracing`);
    /// `None` removes it.
    pub fn set_log_sink(&self, sink: Option<LogSink>) {
        *self
            .inner
            .shared
            .log_sink
            .write()
            .unwrap_or_else(|p| p.into_inner()) = sink;
    }

    /// The options the runtime was built with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// Counters of the precompiled cache.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            bad_entries: self.inner.bad_entries.load(Ordering::Relaxed),
        }
    }

    /// The cache file that holds (or would hold) the precompiled `wasm`;
    /// `None` without a cache directory.
    pub fn cache_entry(&self, wasm: &[u8]) -> Option<PathBuf> {
        let dir = self.inner.options.cache_dir.as_deref()?;
        Some(cache::entry_path(dir, &self.inner.engine, wasm))
    }

    pub(crate) fn linker(&self) -> &Linker<StoreState> {
        &self.inner.linker
    }

    pub(crate) fn shared(&self) -> &Arc<RuntimeShared> {
        &self.inner.shared
    }

    /// Epoch ticks to allow a call of at most `max_time`: rounded up, plus
    /// one because the current tick is already partly over. A call is thus
    /// stopped between `max_time` and `max_time + epoch_tick`, plus up to
    /// [`IDLE_TICKS`] ticks when it started while the ticker was idle.
    pub(crate) fn deadline_ticks(&self, max_time: Duration) -> u64 {
        let tick = self.inner.options.epoch_tick.as_nanos().max(1);
        let ticks = max_time.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX - 1).max(1) + 1
    }

    /// The compiled component for `wasm` (read from `path`): from the cache
    /// when it holds a good entry, else compiled and written to the cache.
    pub(crate) fn component(
        &self,
        path: &Path,
        wasm: &[u8],
    ) -> Result<(Component, ArtifactSource), LoadError> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(component) = self.recent_component(&digest) {
            return Ok((component, ArtifactSource::Memory));
        }
        let (component, source) = self.component_from_disk_or_compiled(path, wasm)?;
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= MEMORY_CACHE_ENTRIES {
            recent.remove(0);
        }
        recent.push((digest, component.clone()));
        Ok((component, source))
    }

    fn recent_component(&self, digest: &[u8; 32]) -> Option<Component> {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        let i = recent.iter().position(|(d, _)| d == digest)?;
        let entry = recent.remove(i);
        let component = entry.1.clone();
        recent.push(entry);
        Some(component)
    }

    fn component_from_disk_or_compiled(
        &self,
        path: &Path,
        wasm: &[u8],
    ) -> Result<(Component, ArtifactSource), LoadError> {
        let entry = self.cache_entry(wasm);
        if let Some(entry) = &entry {
            match cache::load(&self.inner.engine, entry) {
                Ok(component) => {
                    self.inner.hits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(policy = %path.display(), entry = %entry.display(), "loaded precompiled policy");
                    return Ok((component, ArtifactSource::Cache));
                }
                Err(cache::Miss::Absent) => {}
                Err(miss) => {
                    self.inner.bad_entries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(policy = %path.display(), "policy cache entry unusable, recompiling: {miss}");
                }
            }
        }
        let component =
            Component::new(&self.inner.engine, wasm).map_err(|e| LoadError::Invalid {
                path: path.to_owned(),
                message: one_line(&e),
            })?;
        self.inner.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(entry) = &entry {
            let written = component
                .serialize()
                .map_err(|e| e.to_string())
                .and_then(|artifact| cache::store(entry, &artifact).map_err(|e| e.to_string()));
            match written {
                Ok(()) => {
                    tracing::debug!(policy = %path.display(), entry = %entry.display(), "cached precompiled policy")
                }
                // The cache is an optimisation: a read-only disk costs a
                // recompile next time, nothing more.
                Err(e) => {
                    tracing::warn!(policy = %path.display(), entry = %entry.display(), "cannot write policy cache entry: {e}")
                }
            }
        }
        Ok((component, ArtifactSource::Compiled))
    }
}

/// The policy engine: component model, epoch interruption, pooling.
fn policy_engine() -> Result<Engine, wasmtime::Error> {
    engine("policy", POOL_INSTANCES, MAX_POLICY_MEMORY, |_| {})
}

/// An engine whose instances come from a pool reserved up front
/// ([`pooled_config`]) or, where that address space cannot be reserved (the
/// pool asks for terabytes of it; `ulimit -v`, systemd's `LimitAS=`, some
/// container and VPS limits, valgrind refuse), one that allocates each
/// instance when it starts ([`on_demand_config`]), with one warning naming
/// why. Shared by the policy and handler engines; `what` names which.
pub(crate) fn engine(
    what: &str,
    instances: u32,
    max_memory: u64,
    more: impl FnOnce(&mut PoolingAllocationConfig),
) -> Result<Engine, wasmtime::Error> {
    let pooled = match Engine::new(&pooled_config(instances, max_memory, more)) {
        Ok(engine) => return Ok(engine),
        Err(e) => one_line(&e),
    };
    let engine = Engine::new(&on_demand_config())
        .map_err(|e| e.context(format!("the {what} instance pool failed too: {pooled}")))?;
    tracing::warn!(
        "{what} instances are allocated on demand: the instance pool cannot reserve its \
         address space ({pooled}); memory accesses are bounds-checked instead (calls \
         ≈10 % slower)"
    );
    Ok(engine)
}

/// What [`on_demand_config`] reserves per linear memory: room to grow to
/// the default `max_memory` in place, more by moving.
const ON_DEMAND_RESERVATION: u64 = 64 << 20;

/// Component model, epoch interruption, and instances allocated one by one,
/// each memory reserving [`ON_DEMAND_RESERVATION`] bytes (plus as much for
/// growth and a small guard) instead of the pool's gigabytes, so compiled
/// code checks bounds explicitly.
fn on_demand_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::OnDemand)
        .memory_reservation(ON_DEMAND_RESERVATION)
        .memory_reservation_for_growth(ON_DEMAND_RESERVATION)
        .memory_guard_size(64 << 10);
    config
}

/// Component model, epoch interruption, and a pool of `instances`
/// component instances of up to `max_memory` bytes each (room for each
/// one's shims: 8 core instances, 2 memories, 4 tables); `more` adjusts the
/// pool further.
fn pooled_config(
    instances: u32,
    max_memory: u64,
    more: impl FnOnce(&mut PoolingAllocationConfig),
) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances * CORE_INSTANCES_PER_POLICY)
        .total_memories(instances * MEMORIES_PER_POLICY)
        .total_tables(instances * TABLES_PER_POLICY)
        .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX));
    more(&mut pool);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

fn runtime_error(e: wasmtime::Error) -> LoadError {
    LoadError::Runtime(one_line(&e))
}

/// A wasmtime error with its causes, on one line.
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// While no call into wasm runs, the ticker looks for one every this many
/// ticks instead of ticking: an edge between connections wakes 250 times a
/// second rather than 1,000 (at 2,000 connections a second, the ticker was
/// ~6 % of the edge's CPU; `benches/RESULTS.md`). A call that starts while
/// it sleeps is stopped at most this many ticks after its `max_time`.
const IDLE_TICKS: u32 = 4;

/// Once no call has started for this many looks (a second at the default
/// tick), the ticker sleeps until the next call wakes it, so an idle edge
/// does not wake at all. Under load calls keep coming and it never gets
/// there.
const QUIET_LOOKS: u32 = 250;

// === impl Calls ===

/// One call started and running, in `Calls::count`.
const CALL_STARTED: u64 = (1 << 32) | 1;

impl Calls {
    pub(crate) fn new() -> Arc<Calls> {
        Arc::new(Calls {
            count: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            ticker: OnceLock::new(),
        })
    }

    /// Marks a call into wasm as running until the guard is dropped, and
    /// wakes the ticker if it sleeps.
    pub(crate) fn start(self: &Arc<Calls>) -> InFlight {
        self.count.fetch_add(CALL_STARTED, Ordering::SeqCst);
        // Paired with the ticker's store of `parked` and its load of
        // `count` (both SeqCst): either this call sees it parked, or the
        // ticker sees this call and does not park.
        if self.parked.load(Ordering::SeqCst) {
            self.wake_ticker();
        }
        InFlight(self.clone())
    }

    /// Calls running now.
    fn running(&self) -> u64 {
        self.count.load(Ordering::SeqCst) & u64::from(u32::MAX)
    }

    /// Calls started so far (wrapping at 2³²).
    fn started(&self) -> u64 {
        self.count.load(Ordering::SeqCst) >> 32
    }

    fn wake_ticker(&self) {
        if self.parked.swap(false, Ordering::SeqCst)
            && let Some(ticker) = self.ticker.get()
        {
            ticker.unpark();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

// === impl Ticker ===

impl Ticker {
    /// Ticks `engine` every `tick` while one of `calls` runs.
    pub(crate) fn start(
        engine: Engine,
        tick: Duration,
        thread_name: &str,
        calls: Arc<Calls>,
    ) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                let _ = calls.ticker.set(std::thread::current());
                let mut next = Instant::now() + tick;
                let (mut seen, mut quiet) = (calls.started(), 0);
                while !flag.load(Ordering::Relaxed) {
                    if calls.running() == 0 {
                        let started = calls.started();
                        if started != seen {
                            (seen, quiet) = (started, 0);
                        } else if quiet < QUIET_LOOKS {
                            quiet += 1;
                        } else {
                            // Paired with `Calls::start`: announce the
                            // park, then look once more.
                            calls.parked.store(true, Ordering::SeqCst);
                            if calls.started() == seen && !flag.load(Ordering::SeqCst) {
                                std::thread::park();
                            }
                            calls.parked.store(false, Ordering::SeqCst);
                            (seen, quiet) = (calls.started(), 0);
                            next = Instant::now() + tick;
                            continue;
                        }
                        // Nothing to time: look again later, and count no
                        // tick for the time slept, so a call that starts
                        // meanwhile is never cut before its `max_time`
                        // (only stopped up to IDLE_TICKS ticks later).
                        std::thread::sleep(tick * IDLE_TICKS);
                        next = Instant::now() + tick;
                        continue;
                    }
                    // Ticks are scheduled on absolute times and caught up
                    // after an oversleep, so the epoch follows the wall
                    // clock: `sleep` alone overshoots every tick (by up to
                    // ~25% for 1 ms on a VM), which would stretch every
                    // `max_time` by as much.
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    let now = Instant::now();
                    while next <= now {
                        engine.increment_epoch();
                        next += tick;
                    }
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_covers_max_time_plus_the_partial_tick() {
        let rt = Runtime::new(RuntimeOptions::default()).unwrap();
        assert_eq!(rt.deadline_ticks(Duration::from_millis(5)), 6);
        assert_eq!(rt.deadline_ticks(Duration::from_micros(4_500)), 6);
        assert_eq!(rt.deadline_ticks(Duration::ZERO), 2);
    }

    #[test]
    fn the_ticker_sleeps_when_no_call_comes_and_the_next_call_still_times_out() {
        use crate::guests::{SPIN, guest};
        use crate::harness::cases::HelloSpec;
        use crate::{Limits, Policy};
        /// Far beyond `QUIET_LOOKS` looks, and far beyond `max_time`.
        const BOUND: Duration = Duration::from_secs(10);
        let rt = Runtime::new(RuntimeOptions::default()).unwrap();
        let limits = Limits {
            max_time: Duration::from_millis(20),
            ..Limits::default()
        };
        let policy = Policy::load(&rt, &guest(SPIN), vec![], limits).unwrap();
        let calls = rt.inner.shared.calls.clone();
        let waiting = Instant::now();
        while !calls.parked.load(Ordering::SeqCst) {
            assert!(waiting.elapsed() < BOUND, "the ticker never went to sleep");
            std::thread::sleep(Duration::from_millis(20));
        }
        let hello = HelloSpec {
            sni: Some("spin.test".into()),
            ..HelloSpec::default()
        }
        .to_hello()
        .unwrap();
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(policy.decide(&hello).map_err(|e| e.kind()));
        });
        match outcome.recv_timeout(BOUND) {
            Ok(result) => assert_eq!(result.unwrap_err(), "timeout"),
            Err(_) => panic!("an endless call started while the ticker slept ran for {BOUND:?}"),
        }
    }

    #[test]
    fn zero_tick_is_refused() {
        let opts = RuntimeOptions {
            epoch_tick: Duration::ZERO,
            ..RuntimeOptions::default()
        };
        assert!(matches!(Runtime::new(opts), Err(LoadError::Runtime(_))));
    }
}
