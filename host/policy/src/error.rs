//! Errors of the policy runtime: loading a policy, and asking it for a decision.
//! Raised by `policy.rs` and `instance.rs`; the harness has its own errors in
//! `harness/`.

use std::path::PathBuf;

/// Loading, compiling or initialising a policy failed. Always names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("policy {path}: cannot read: {source}")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid component for the `hearth:edge/policy` world.
    #[error("policy {path}: {message}")]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// What is wrong, from wasmtime, in one line.
        message: String,
    },
    /// The policy's `init` refused its configuration.
    #[error("policy {path}: init refused its config: {message}")]
    InitRefused {
        /// The policy file.
        path: PathBuf,
        /// The policy's own message.
        message: String,
    },
    /// The policy trapped or ran out of time or memory during `init`.
    #[error("policy {path}: init failed: {source}")]
    InitFailed {
        /// The policy file.
        path: PathBuf,
        /// What happened.
        source: PolicyError,
    },
    /// The runtime itself could not be set up.
    #[error("policy runtime: {0}")]
    Runtime(String),
}

/// A decision could not be obtained from the policy. The caller handles it
/// per the `on_error` setting; the process and other connections go on.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The guest trapped (panic, unreachable, out-of-bounds access...).
    #[error("policy trapped: {0}")]
    Trap(String),
    /// The call ran past `max_time` and was interrupted.
    #[error("policy ran past its time limit")]
    Timeout,
    /// The guest tried to grow its memory past `max_memory`.
    #[error("policy exceeded its memory limit")]
    Memory,
    /// The decision names a backend the edge config does not have.
    #[error("policy chose unknown backend {0:?}")]
    UnknownBackend(String),
    /// The answer is not one the edge can carry out (an HTTP status or
    /// header the contract does not allow).
    #[error("policy answer refused: {0}")]
    InvalidAnswer(String),
    /// No instance could be created to serve the call (the runtime's
    /// instance pool is exhausted, or re-initialising the policy failed).
    #[error("policy instance unavailable: {0}")]
    Unavailable(String),
}

impl PolicyError {
    /// A short label for metrics and logs: `trap`, `timeout`, `memory`,
    /// `unknown_backend`, `invalid_answer`, `unavailable`.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyError::Trap(_) => "trap",
            PolicyError::Timeout => "timeout",
            PolicyError::Memory => "memory",
            PolicyError::UnknownBackend(_) => "unknown_backend",
            PolicyError::InvalidAnswer(_) => "invalid_answer",
            PolicyError::Unavailable(_) => "unavailable",
        }
    }
}
