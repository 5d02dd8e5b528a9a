//! hearth-wasm-edge: a programmable TLS edge proxy.
//!
//! It accepts TCP, reads the TLS ClientHello without terminating it
//! (`hearth-edge-hello`), asks a WebAssembly policy what to do
//! (`hearth-edge-policy`), and passes the encrypted bytes through, terminates
//! TLS and forwards, or rejects.
//!
//! # Layout
//! - [`cli`]: the command-line actions (`run`, `check`, `test`, `explain`).
//! - [`config`]: YAML → validated, immutable [`config::Config`].
//! - [`proxy`]: the data path ([`proxy::Edge`]); start at `proxy/conn.rs`.
//! - [`http`]: the HTTP mode behind termination (`http_routes`).
//!
//! Below both, shared by them (dependencies point down):
//! - [`decide`]: the policy seam and the one place `on_error` is applied.
//! - [`upstream`]: backend pools: balancing, health checks, ejection, and
//!   the one pick → dial → retry loop.
//! - [`io`]: byte plumbing: the two-way relay, replay, byte counts.
//! - [`worker`]: which worker thread the code runs on.
//! - [`pem`]: certificate, key and CA root files (for `config` and `tls`).
//! - [`tls`]: certificates (files, local CA, the store) and rustls setup.
//! - [`error`]: connection errors, each with its side and client response.
//! - [`metrics`]: the counters, and their Prometheus text format.
//! - [`admin`]: the admin listener (`/healthz`, `/readyz`, `/metrics`).
//! - [`logging`]: `tracing` setup (text or JSON, `RUST_LOG`).
//! - `sync.rs`: poison-tolerant locking.

#![deny(missing_docs)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod decide;
pub mod error;
pub mod http;
pub mod io;
pub mod logging;
pub mod metrics;
pub mod pem;
pub mod proxy;
mod sync;
pub mod tls;
pub mod upstream;
pub mod worker;
