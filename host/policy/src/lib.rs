//! The policy runtime of hearth-wasm-edge: loads WebAssembly routing policies
//! (components targeting the `hearth:edge/policy` world in `wit/edge.wit`) and
//! asks them for decisions under time and memory limits. A component of the
//! `http-policy` world also answers `on-request` for the HTTP mode
//! ([`Policy::handles_requests`], [`Policy::on_request`]).
//!
//! # Layout
//! - [`bindings`]: the host side of the WIT contract (`bindgen!`, once).
//! - `runtime`: the shared wasmtime `Engine` + `Linker` and the epoch ticker.
//! - `cache`: precompiled artifacts on disk, keyed by content and engine hash
//!   (the crate's only `unsafe`).
//! - `policy`: a loaded policy and the pool that reuses its instances.
//! - `instance`: one store + instance; deadlines, memory cap, error mapping.
//! - `host_api`: what a policy may call (`log`, `now-ms`, `take-token`).
//! - `wasi`: the empty WASI context and captured stdout/stderr.
//! - [`config`]: a policy's `init` config from YAML or `key=value` pairs.
//! - [`describe`]: decisions and alert names in words, for every reader.
//! - [`guests`]: where the test guests and shipped policies are built.
//! - [`harness`]: test cases for a policy (`hearth-wasm-edge test`, `explain`).
//! - [`handler`]: `wasi:http/proxy` components that answer HTTP requests
//!   (their own async engine; outbound requests default deny).
//!
//! The data path (in the `hearth-wasm-edge` crate) only sees [`Runtime`],
//! [`Policy`], the WIT types re-exported here, and [`PolicyError`].
//!
//! # What a call may do, and what happens when it misbehaves
//! - Every `decide` (and `on-request`) runs under an epoch deadline: it is stopped between
//!   `max_time` and `max_time + 5 × epoch_tick` ([`PolicyError::Timeout`];
//!   the ticker ticks only while a call runs, and looks for one every four
//!   ticks otherwise, so a call never loses time it was given but may be
//!   stopped up to four ticks late; a 20 ms limit with the default 1 ms tick
//!   measured 20.3–21.0 ms with a ticker that always ticked).
//!   Instantiation plus `init` has its own, longer budget, `init_timeout`
//!   ([`DEFAULT_INIT_TIMEOUT`]), so a load or reload on a busy machine does
//!   not fail for want of a few milliseconds.
//! - Linear memory is capped at `max_memory` ([`PolicyError::Memory`]).
//! - A trap (a Rust panic, `unreachable`, ...) is [`PolicyError::Trap`], with
//!   the guest's stderr (the panic message) in the text and in the log.
//! - After any of these the instance is discarded; the next call gets a
//!   fresh one (instantiate + `init`, ~25 µs) while the others keep serving.
//! - WASI is present but empty: no files, environment, arguments, sockets or
//!   name lookups; waiting (sleeping, polling) is refused with a trap.
//! - At most 64 log lines per call, each at most [`MAX_LOG_BYTES`].
//!
//! # Calling from async code
//! [`Policy::decide`] is synchronous and short (bounded by `max_time`); it
//! may be called directly from a Tokio task. It never blocks on I/O: the
//! WASI calls that would are refused (see `wasi.rs`).
//!
//! # Resources
//! The pooling allocator reserves about a terabyte of virtual address space
//! (not memory); do not run the edge under a low `RLIMIT_AS` (`ulimit -v`).

#![deny(missing_docs)]

pub mod bindings;
pub mod config;
pub mod describe;
pub mod guests;
pub mod handler;
pub mod harness;

mod cache;
mod error;
mod host_api;
mod instance;
mod policy;
mod runtime;
mod wasi;

pub use bindings::hearth::edge::http_types::{
    Forward, HttpDecision, HttpRequest, LocalResponse, Redirect,
};
pub use bindings::hearth::edge::types::{
    Alert, ClientHello, Decision, Level, ProxyProtocol, Rejection, Route,
};
pub use error::{LoadError, PolicyError};
pub use host_api::token_bucket::{
    MAX_KEY_BYTES as MAX_TOKEN_KEY_BYTES, MAX_KEYS as MAX_TOKEN_KEYS,
};
pub use host_api::{LogRecord, LogSink, MAX_LOG_BYTES};
pub use policy::{DEFAULT_INIT_TIMEOUT, Limits, Policy, PolicyStats};
pub use runtime::{
    ArtifactSource, CacheStats, MAX_POLICY_MEMORY, POOL_INSTANCES, Runtime, RuntimeOptions,
};
