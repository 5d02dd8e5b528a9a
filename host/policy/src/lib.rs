//! The policy runtime of hearth-wasm-edge: loads WebAssembly routing policies
//! (components targeting the `hearth:edge/policy` world in `wit/edge.wit`) and
//! asks them for decisions under time and memory limits.
//!
//! # Layout
//! - [`bindings`]: the host side of the WIT contract (`bindgen!`, once).
//! - `runtime`: the shared wasmtime `Engine` + `Linker` and the epoch ticker.
//! - `cache`: precompiled artifacts on disk, keyed by content and engine hash.
//! - `instance`: one store + instance, and the pool that reuses them.
//! - `host_api`: what a policy may call (`log`, `now-ms`, `take-token`).
//! - [`harness`]: test cases for a policy (`hearth-wasm-edge test`, `explain`).
//!
//! The data path (in the `hearth-wasm-edge` crate) only sees [`Runtime`],
//! [`Policy`], the WIT types re-exported here, and [`PolicyError`].

#![deny(missing_docs)]

pub mod bindings;
pub mod harness;

mod error;
mod policy;
mod runtime;

pub use bindings::hearth::edge::types::{
    Alert, ClientHello, Decision, Level, ProxyProtocol, Rejection, Route,
};
pub use error::{LoadError, PolicyError};
pub use policy::{Limits, Policy};
pub use runtime::{Runtime, RuntimeOptions};
