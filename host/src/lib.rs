//! hearth-wasm-edge: a programmable TLS edge proxy.
//!
//! It accepts TCP, reads the TLS ClientHello without terminating it
//! (`hearth-edge-hello`), asks a WebAssembly policy what to do
//! (`hearth-edge-policy`), and passes the encrypted bytes through, terminates
//! TLS and forwards, or rejects.
//!
//! # Layout
//! - [`cli`]: the command-line actions (`run`, `check`, `test`, `explain`).

#![deny(missing_docs)]

pub mod cli;
