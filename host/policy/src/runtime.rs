//! The shared wasmtime engine: built once per process, with the linker that
//! grants a policy its host interface and an empty WASI context.

use std::path::PathBuf;
use std::time::Duration;

use crate::LoadError;

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where precompiled policies are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances; `max_time` is enforced at this granularity.
    pub epoch_tick: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions { cache_dir: None, epoch_tick: Duration::from_millis(1) }
    }
}

/// The engine, linker and epoch ticker shared by every loaded policy.
/// Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    _todo: (),
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(options: RuntimeOptions) -> Result<Runtime, LoadError> {
        let _ = options;
        todo!("policy runtime")
    }
}
