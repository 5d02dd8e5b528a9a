//! What a policy may call: the `hearth:edge/host` interface of `wit/edge.wit`
//! (`log`, `now-ms`, `take-token`), implemented on the store state of
//! `instance.rs`. Token buckets live in [`token_bucket`].

pub mod token_bucket;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::Level;
use crate::bindings::hearth::edge::{host, http_types, types};
use crate::instance::StoreState;
use crate::runtime::{Calls, InFlight};

use self::token_bucket::TokenBuckets;

/// Longest log line a policy may write (at most
/// `instance::MAX_LOG_LINES_PER_CALL` lines per call); longer lines are cut (at a
/// character boundary) and marked with `…`.
pub const MAX_LOG_BYTES: usize = 4096;

/// One line a policy logged.
#[derive(Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// The policy's name (its file stem).
    pub policy: &'a str,
    /// The severity the policy chose.
    pub level: Level,
    /// The message, already cut to [`MAX_LOG_BYTES`].
    pub message: &'a str,
}

/// Receives every policy log line in addition to `tracing` (used by
/// `hearth-wasm-edge explain` to show a decision's log lines).
pub type LogSink = Arc<dyn Fn(&LogRecord<'_>) + Send + Sync>;

/// State shared by the whole runtime that host functions need.
pub(crate) struct RuntimeShared {
    /// Zero of `now-ms`.
    pub started: Instant,
    /// Optional extra receiver of log lines.
    pub log_sink: RwLock<Option<LogSink>>,
    /// Calls into wasm (instantiate + `init`, `decide`, `on-request`): the
    /// epoch ticker only ticks while there are any.
    pub calls: Arc<Calls>,
}

impl RuntimeShared {
    /// Marks a call into wasm as running until the guard is dropped.
    pub fn call_started(&self) -> InFlight {
        self.calls.start()
    }
}

/// State shared by all instances of one policy.
pub(crate) struct PolicyShared {
    /// The policy's name, for logs.
    pub name: Arc<str>,
    /// Its token buckets.
    pub buckets: TokenBuckets,
    /// The runtime's shared state.
    pub runtime: Arc<RuntimeShared>,
}

// === impl PolicyShared ===

impl PolicyShared {
    /// Emits one policy log line to `tracing` and the runtime's sink.
    pub fn log(&self, level: Level, message: &str) {
        let message = truncate(message, MAX_LOG_BYTES);
        let policy: &str = &self.name;
        match level {
            Level::Error => tracing::error!(target: "policy", policy, "{message}"),
            Level::Warn => tracing::warn!(target: "policy", policy, "{message}"),
            Level::Info => tracing::info!(target: "policy", policy, "{message}"),
            Level::Debug => tracing::debug!(target: "policy", policy, "{message}"),
            Level::Trace => tracing::trace!(target: "policy", policy, "{message}"),
        }
        let sink = self
            .runtime
            .log_sink
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = sink.as_ref() {
            sink(&LogRecord {
                policy,
                level,
                message: &message,
            });
        }
    }
}

impl types::Host for StoreState {}

impl http_types::Host for StoreState {}

impl host::Host for StoreState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_lines_left == 0 {
            self.log_lines_dropped = self.log_lines_dropped.saturating_add(1);
            return;
        }
        self.log_lines_left -= 1;
        self.policy.log(level, &message);
    }

    fn now_ms(&mut self) -> u64 {
        u64::try_from(self.policy.runtime.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn take_token(&mut self, bucket: String, key: String, per_second: u32, burst: u32) -> bool {
        let now = self.policy.runtime.started.elapsed();
        self.policy
            .buckets
            .take(&bucket, &key, per_second, burst, now)
    }
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_log_lines_are_cut_at_a_char_boundary() {
        let line = "é".repeat(MAX_LOG_BYTES);
        let cut = truncate(&line, MAX_LOG_BYTES);
        assert!(cut.len() <= MAX_LOG_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", MAX_LOG_BYTES), "short");
    }
}
