//! Counters of the data path, all in one place: plain atomics (and small
//! label maps for per-kind and per-reason counts) that the proxy bumps and
//! that a later admin listener will expose. Tests read them through
//! [`Metrics::snapshot`].
//!
//! Written by `proxy/listener.rs` (accepts, limit hits) and `proxy/conn.rs`
//! (everything per connection).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a connection ended, for the `closed` counters and the
/// `connection closed` log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Relayed to a backend without terminating TLS.
    Passthrough,
    /// TLS terminated here, plaintext relayed to a backend.
    Terminate,
    /// Refused by the policy (or by `on_error: reject`).
    Reject,
    /// Ended by an error before a route was established.
    Error,
}

/// Distinct labels kept per labelled counter; further labels count under
/// `other`, so a policy inventing reasons cannot grow memory without bound.
const MAX_LABELS: usize = 64;
/// The label that absorbs labels past [`MAX_LABELS`].
const OVERFLOW_LABEL: &str = "other";

/// The data path's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections being handled now.
    pub active: AtomicU64,
    /// Connections closed on accept because `max_concurrent_conns` was reached.
    pub limit_rejected: AtomicU64,
    closed: [AtomicU64; 4],
    /// Backend dials that failed or timed out.
    pub dial_failures: AtomicU64,
    /// TLS handshakes (terminate) that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// Connections closed for being idle past `idle_timeout`.
    pub idle_timeouts: AtomicU64,
    /// Bytes from clients to backends (plaintext when terminating).
    pub bytes_up: AtomicU64,
    /// Bytes from backends to clients (plaintext when terminating).
    pub bytes_down: AtomicU64,
    hello_errors: Labelled,
    rejects: Labelled,
    policy_errors: Labelled,
}

/// A point-in-time copy of every counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Metrics::accepted`].
    pub accepted: u64,
    /// See [`Metrics::active`].
    pub active: u64,
    /// See [`Metrics::limit_rejected`].
    pub limit_rejected: u64,
    /// Closed connections by outcome.
    pub closed: BTreeMap<&'static str, u64>,
    /// See [`Metrics::dial_failures`].
    pub dial_failures: u64,
    /// See [`Metrics::tls_handshake_failures`].
    pub tls_handshake_failures: u64,
    /// See [`Metrics::idle_timeouts`].
    pub idle_timeouts: u64,
    /// See [`Metrics::bytes_up`].
    pub bytes_up: u64,
    /// See [`Metrics::bytes_down`].
    pub bytes_down: u64,
    /// ClientHello read failures by kind (`timeout`, `not_tls`, `too_large`...).
    pub hello_errors: BTreeMap<String, u64>,
    /// Rejections by the policy's reason.
    pub rejects: BTreeMap<String, u64>,
    /// Policy failures by kind (`trap`, `timeout`, `memory`, `unknown_backend`).
    pub policy_errors: BTreeMap<String, u64>,
}

/// Counters by label, bounded in the number of labels.
#[derive(Debug, Default)]
struct Labelled(Mutex<BTreeMap<String, u64>>);

// === impl Outcome ===

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Passthrough,
        Outcome::Terminate,
        Outcome::Reject,
        Outcome::Error,
    ];

    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passthrough => "passthrough",
            Outcome::Terminate => "terminate",
            Outcome::Reject => "reject",
            Outcome::Error => "error",
        }
    }
}

// === impl Metrics ===

impl Metrics {
    /// Counts a finished connection.
    pub fn closed(&self, outcome: Outcome, bytes_up: u64, bytes_down: u64) {
        self.closed[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.bytes_up.fetch_add(bytes_up, Ordering::Relaxed);
        self.bytes_down.fetch_add(bytes_down, Ordering::Relaxed);
    }

    /// Counts a failed ClientHello read.
    pub fn hello_error(&self, kind: &str) {
        self.hello_errors.add(kind);
    }

    /// Counts a rejection.
    pub fn reject(&self, reason: &str) {
        self.rejects.add(reason);
    }

    /// Counts a policy failure.
    pub fn policy_error(&self, kind: &str) {
        self.policy_errors.add(kind);
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            accepted: load(&self.accepted),
            active: load(&self.active),
            limit_rejected: load(&self.limit_rejected),
            closed: Outcome::ALL
                .iter()
                .map(|o| (o.as_str(), load(&self.closed[*o as usize])))
                .collect(),
            dial_failures: load(&self.dial_failures),
            tls_handshake_failures: load(&self.tls_handshake_failures),
            idle_timeouts: load(&self.idle_timeouts),
            bytes_up: load(&self.bytes_up),
            bytes_down: load(&self.bytes_down),
            hello_errors: self.hello_errors.snapshot(),
            rejects: self.rejects.snapshot(),
            policy_errors: self.policy_errors.snapshot(),
        }
    }
}

/// Increments the `active` gauge and returns a guard that decrements it when
/// dropped, so the gauge stays right on every exit path.
pub fn track_active(metrics: &Metrics) -> ActiveGuard<'_> {
    metrics.active.fetch_add(1, Ordering::Relaxed);
    ActiveGuard(&metrics.active)
}

/// See [`track_active`].
#[derive(Debug)]
pub struct ActiveGuard<'a>(&'a AtomicU64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Labelled ===

impl Labelled {
    fn add(&self, label: &str) {
        let mut map = match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(count) = map.get_mut(label) {
            *count += 1;
        } else if map.len() < MAX_LABELS {
            map.insert(label.to_owned(), 1);
        } else {
            *map.entry(OVERFLOW_LABEL.to_owned()).or_default() += 1;
        }
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        match self.0.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_counts_by_outcome_and_sums_bytes() {
        let m = Metrics::default();
        m.closed(Outcome::Passthrough, 10, 20);
        m.closed(Outcome::Passthrough, 1, 2);
        m.closed(Outcome::Reject, 0, 0);
        let s = m.snapshot();
        assert_eq!(s.closed["passthrough"], 2);
        assert_eq!(s.closed["reject"], 1);
        assert_eq!(s.closed["error"], 0);
        assert_eq!((s.bytes_up, s.bytes_down), (11, 22));
    }

    #[test]
    fn labels_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_LABELS + 10 {
            m.reject(&format!("reason-{i}"));
        }
        m.reject("reason-0");
        let s = m.snapshot();
        assert_eq!(s.rejects.len(), MAX_LABELS + 1);
        assert_eq!(s.rejects["reason-0"], 2);
        assert_eq!(s.rejects[OVERFLOW_LABEL], 10);
    }

    #[test]
    fn active_guard_decrements_on_drop() {
        let m = Metrics::default();
        {
            let _a = track_active(&m);
            let _b = track_active(&m);
            assert_eq!(m.snapshot().active, 2);
        }
        assert_eq!(m.snapshot().active, 0);
    }
}
