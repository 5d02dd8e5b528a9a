//! Counters of the edge, all in one place: plain atomics, small label maps
//! for per-kind, per-reason and per-backend counts, and fixed-bucket
//! histograms. The proxy bumps them; the admin listener (`admin.rs`) renders
//! them in the Prometheus text format (`metrics/prometheus.rs`). Tests read
//! them through [`Metrics::snapshot`].
//!
//! Written by `proxy/listener.rs` (accepts, limit hits), `proxy/conn.rs`
//! and `proxy/plain.rs` (everything per connection), `decide.rs` (policy
//! calls), `http/handler.rs` (per request), `proxy/shadow.rs` (shadow
//! comparisons) and `cli/serve.rs` (reloads).

pub mod histogram;
pub mod prometheus;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Side;
use crate::sync::lock;

pub use histogram::{Buckets, Histogram};

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
    /// An ACME TLS-ALPN-01 validation answered by the edge itself.
    Acme,
    /// Served as plain HTTP on a `plain_listen` listener.
    PlainHttp,
    /// TLS terminated into a route set, then relayed to its `stun_backend`
    /// because the first bytes were a STUN message.
    Turn,
}

/// Distinct labels kept per labelled counter; further labels count under
/// `other`, so a policy inventing reasons cannot grow memory without bound.
const MAX_LABELS: usize = 64;
/// The label that absorbs labels past [`MAX_LABELS`].
const OVERFLOW_LABEL: &str = "other";

/// The data path's counters.
#[derive(Debug)]
pub struct Metrics {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections being handled now.
    pub active: AtomicU64,
    /// Connections closed on accept because `max_concurrent_conns` was reached.
    pub limit_rejected: AtomicU64,
    closed: [AtomicU64; Outcome::ALL.len()],
    /// Backend dials that failed or timed out (all backends).
    pub dial_failures: AtomicU64,
    /// TLS handshakes (terminate) that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// Connections closed for being idle past `idle_timeout`.
    pub idle_timeouts: AtomicU64,
    /// Bytes from clients to backends (plaintext when terminating).
    pub bytes_up: AtomicU64,
    /// Bytes from backends to clients (plaintext when terminating).
    pub bytes_down: AtomicU64,
    hello_errors: Labelled<String>,
    rejects: Labelled<String>,
    policy_errors: Labelled<String>,
    /// Decisions by (action, backend).
    decisions: Labelled<(String, String)>,
    /// Relayed bytes by (backend, direction).
    relayed: Labelled<(String, &'static str)>,
    dial_failures_by_backend: Labelled<String>,
    decision_latency: Histogram,
    hello_size: Histogram,
    dial_latency: Mutex<BTreeMap<String, Histogram>>,
    /// HTTP mode: time from a request's head to its answer's head, by
    /// backend (`-` for answers the edge made itself).
    http_latency: Mutex<BTreeMap<String, Histogram>>,
    /// Completed TLS handshakes (terminate, HTTP mode, ACME) by
    /// [`TLS_GROUPS`] × [`TLS_KINDS`]: fixed counters, no lock per handshake.
    tls_handshakes: [[AtomicU64; TLS_KINDS.len()]; TLS_GROUPS.len()],
    /// PROXY headers received from balancers, by version (`v1`, `v2`).
    proxy_headers: Labelled<String>,
    /// Connections from balancers closed for their PROXY header, by kind.
    proxy_header_errors: Labelled<String>,
    /// Handlers: requests by (handler, status).
    handler_requests: Labelled<(String, String)>,
    /// Handlers: requests that got no answer, by (handler, kind).
    handler_failures: Labelled<(String, String)>,
    /// Handlers: outgoing requests by (handler, result).
    handler_outbound: Labelled<(String, String)>,
    /// Handlers: time to the answer's head, by handler.
    handler_latency: Mutex<BTreeMap<String, Histogram>>,
    /// TURN relays of route sets' `stun_backend`, by route set.
    turn_relays: Labelled<String>,
    /// Their bytes by (route set, direction).
    turn_bytes: Labelled<(String, &'static str)>,
    /// Their durations by route set.
    turn_duration: Mutex<BTreeMap<String, Histogram>>,
    reloads: Labelled<&'static str>,
    /// Unix time of the last successful load or reload, and whether the
    /// last attempt succeeded.
    last_reload: Mutex<(u64, bool)>,
    /// Shadow decisions made.
    pub shadow_decisions: AtomicU64,
    /// Shadow decisions that differed from the live one.
    pub shadow_disagreements: AtomicU64,
    /// Shadow comparisons skipped because too many were in flight.
    pub shadow_skipped: AtomicU64,
    /// ACME events that failed (orders, cache reads and writes).
    pub acme_errors: AtomicU64,
    /// `tls.export` writes that failed.
    pub export_failures: AtomicU64,
    /// `on_renew` actions that failed or timed out.
    pub on_renew_failures: AtomicU64,
    /// Certificate files reloaded after a change.
    pub cert_reloads: AtomicU64,
    /// Changed certificate files refused (the old certificate stays).
    pub cert_reload_failures: AtomicU64,
    /// Responses of the HTTP listener by status code.
    http_responses: StatusCounts,
    /// Failed HTTP-mode requests by the side that caused them
    /// (`Side as usize`).
    http_errors: [AtomicU64; Side::ALL.len()],
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
    /// Decisions by (action, backend); backend is empty for rejections.
    pub decisions: BTreeMap<(String, String), u64>,
    /// Relayed bytes by (backend, `up`/`down`).
    pub relayed: BTreeMap<(String, &'static str), u64>,
    /// Dial failures by backend.
    pub dial_failures_by_backend: BTreeMap<String, u64>,
    /// Reload attempts by result (`success`, `failure`).
    pub reloads: BTreeMap<&'static str, u64>,
    /// See [`Metrics::shadow_decisions`].
    pub shadow_decisions: u64,
    /// See [`Metrics::shadow_disagreements`].
    pub shadow_disagreements: u64,
    /// Handler requests by (handler, status).
    pub handler_requests: BTreeMap<(String, String), u64>,
    /// Handler requests without an answer by (handler, kind).
    pub handler_failures: BTreeMap<(String, String), u64>,
    /// Handlers' outgoing requests by (handler, result).
    pub handler_outbound: BTreeMap<(String, String), u64>,
    /// PROXY headers received by version.
    pub proxy_headers: BTreeMap<String, u64>,
    /// Balancers' connections closed for their PROXY header, by kind.
    pub proxy_header_errors: BTreeMap<String, u64>,
    /// Completed TLS handshakes by (group, kind).
    pub tls_handshakes: BTreeMap<(String, String), u64>,
    /// TURN relays by route set.
    pub turn_relays: BTreeMap<String, u64>,
    /// TURN relays' bytes by (route set, `up`/`down`).
    pub turn_bytes: BTreeMap<(String, &'static str), u64>,
}

/// Counters by label, bounded in the number of labels.
#[derive(Debug)]
struct Labelled<K>(Mutex<BTreeMap<K, u64>>);

/// A label key that has a catch-all value for labels past [`MAX_LABELS`].
trait LabelKey: Ord + Clone {
    fn overflow() -> Self;
}

/// Key exchange groups of `tls_handshakes_total` (`tls/handshake.rs`).
pub const TLS_GROUPS: [&str; 5] = [
    "X25519MLKEM768",
    "X25519",
    "secp256r1",
    "secp384r1",
    "other",
];
/// Where a group not in [`TLS_GROUPS`] is counted.
const TLS_OTHER_GROUP: usize = 4;
/// Handshake kinds of `tls_handshakes_total`.
pub const TLS_KINDS: [&str; 3] = ["full", "hrr", "resumed"];

/// Buckets of the policy decision latency, in seconds: a decision takes
/// microseconds; `max_time` (5 ms by default) bounds it.
const DECISION_SECONDS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
];
/// Buckets of the ClientHello size, in bytes: classic hellos are ~500 B,
/// post-quantum ones ~1.8 KiB, the default cap is 16 KiB.
const HELLO_BYTES: &[f64] = &[
    256.0, 512.0, 1024.0, 1536.0, 2048.0, 4096.0, 8192.0, 16384.0, 65536.0,
];
/// Buckets of HTTP answer times, in seconds: from a cached page (~1 ms) to
/// a slow API call or a long poll.
const HTTP_SECONDS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the backend dial latency, in seconds: loopback is ~0.1 ms,
/// the default dial timeout 5 s.
const DIAL_SECONDS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets of TURN relay durations, in seconds: from a failed attempt to
/// a call of hours.
const TURN_SECONDS: &[f64] = &[
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

// === impl Outcome ===

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Passthrough,
        Outcome::Terminate,
        Outcome::Reject,
        Outcome::Error,
        Outcome::Acme,
        Outcome::PlainHttp,
        Outcome::Turn,
    ];

    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passthrough => "passthrough",
            Outcome::Terminate => "terminate",
            Outcome::Reject => "reject",
            Outcome::Error => "error",
            Outcome::Acme => "acme",
            Outcome::PlainHttp => "plain_http",
            Outcome::Turn => "turn",
        }
    }
}

// === impl Metrics ===

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            accepted: AtomicU64::new(0),
            active: AtomicU64::new(0),
            limit_rejected: AtomicU64::new(0),
            closed: Default::default(),
            dial_failures: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            hello_errors: Labelled::default(),
            rejects: Labelled::default(),
            policy_errors: Labelled::default(),
            decisions: Labelled::default(),
            relayed: Labelled::default(),
            dial_failures_by_backend: Labelled::default(),
            decision_latency: Histogram::new(Buckets::Seconds(DECISION_SECONDS)),
            hello_size: Histogram::new(Buckets::Bytes(HELLO_BYTES)),
            dial_latency: Mutex::new(BTreeMap::new()),
            http_latency: Mutex::new(BTreeMap::new()),
            tls_handshakes: Default::default(),
            proxy_headers: Labelled::default(),
            proxy_header_errors: Labelled::default(),
            handler_requests: Labelled::default(),
            handler_failures: Labelled::default(),
            handler_outbound: Labelled::default(),
            handler_latency: Mutex::new(BTreeMap::new()),
            turn_relays: Labelled::default(),
            turn_bytes: Labelled::default(),
            turn_duration: Mutex::new(BTreeMap::new()),
            reloads: Labelled::default(),
            last_reload: Mutex::new((0, false)),
            shadow_decisions: AtomicU64::new(0),
            shadow_disagreements: AtomicU64::new(0),
            shadow_skipped: AtomicU64::new(0),
            acme_errors: AtomicU64::new(0),
            export_failures: AtomicU64::new(0),
            on_renew_failures: AtomicU64::new(0),
            cert_reloads: AtomicU64::new(0),
            cert_reload_failures: AtomicU64::new(0),
            http_responses: StatusCounts::default(),
            http_errors: Default::default(),
        }
    }
}

impl Metrics {
    /// Counts a finished connection.
    pub fn closed(&self, outcome: Outcome, bytes_up: u64, bytes_down: u64) {
        self.closed[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.bytes_up.fetch_add(bytes_up, Ordering::Relaxed);
        self.bytes_down.fetch_add(bytes_down, Ordering::Relaxed);
    }

    /// Counts a failed ClientHello read.
    pub fn hello_error(&self, kind: &str) {
        self.hello_errors.add_str(kind, 1);
    }

    /// Counts a rejection.
    pub fn reject(&self, reason: &str) {
        self.rejects.add_str(reason, 1);
    }

    /// Counts a response of the HTTP listener or the HTTP mode. Lock- and
    /// allocation-free: it runs once per proxied request.
    pub fn http_response(&self, status: u16) {
        self.http_responses.add(status);
    }

    /// Responses of the HTTP listener and the HTTP mode by status code.
    pub fn http_responses(&self) -> BTreeMap<String, u64> {
        self.http_responses.snapshot()
    }

    /// Counts a failed HTTP-mode request by the side that caused it.
    pub fn http_error(&self, side: Side) {
        self.http_errors[side as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Failed HTTP-mode requests by side.
    pub fn http_errors(&self) -> impl Iterator<Item = (Side, u64)> + '_ {
        Side::ALL.into_iter().map(|side| {
            (
                side,
                self.http_errors[side as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// Counts a policy failure.
    pub fn policy_error(&self, kind: &str) {
        self.policy_errors.add_str(kind, 1);
    }

    /// Counts what was done with a connection: `action` is `passthrough`,
    /// `terminate` or `reject`; `backend` is empty for rejections.
    pub fn decision(&self, action: &str, backend: &str) {
        self.decisions.add_pair(action, backend, 1);
    }

    /// Records how long the policy took to decide.
    pub fn decision_latency(&self, took: Duration) {
        self.decision_latency.observe_duration(took);
    }

    /// Records the size of a ClientHello.
    pub fn hello_size(&self, bytes: u64) {
        self.hello_size.observe(bytes);
    }

    /// Adds a finished relay's bytes to its backend.
    pub fn relayed(&self, backend: &str, up: u64, down: u64) {
        self.relayed.add_pair(backend, "up", up);
        self.relayed.add_pair(backend, "down", down);
    }

    /// Records a successful dial's latency.
    pub fn dial_latency(&self, backend: &str, took: Duration) {
        observe_by_label(&self.dial_latency, backend, DIAL_SECONDS, took);
    }

    /// Records how long an HTTP-mode request took to get its answer's head.
    pub fn http_latency(&self, backend: &str, took: Duration) {
        observe_by_label(&self.http_latency, backend, HTTP_SECONDS, took);
    }

    /// Counts a completed TLS handshake by key exchange group and kind
    /// (values of [`TLS_GROUPS`] and [`TLS_KINDS`]; anything else counts as
    /// `other` / `full`).
    pub fn tls_handshake(&self, group: &str, kind: &str) {
        let g = TLS_GROUPS
            .iter()
            .position(|x| *x == group)
            .unwrap_or(TLS_OTHER_GROUP);
        let k = TLS_KINDS.iter().position(|x| *x == kind).unwrap_or(0);
        self.tls_handshakes[g][k].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a PROXY header read from a balancer (`v1` or `v2`).
    pub fn proxy_header(&self, version: &str) {
        self.proxy_headers.add_str(version, 1);
    }

    /// Counts a balancer's connection closed for its PROXY header:
    /// `missing`, `malformed`, `too_large`, `timeout` or `io`.
    pub fn proxy_header_error(&self, kind: &str) {
        self.proxy_header_errors.add_str(kind, 1);
    }

    /// Counts a request a handler was asked to answer, with its status
    /// and the time to the answer's head.
    pub fn handler_request(&self, handler: &str, status: u16, took: Duration) {
        self.handler_requests
            .add((handler.to_owned(), status.to_string()), 1);
        observe_by_label(&self.handler_latency, handler, HTTP_SECONDS, took);
    }

    /// Counts a handler request that got no answer: `trap`, `timeout`,
    /// `memory`, `busy` or `no_answer`.
    pub fn handler_failure(&self, handler: &str, kind: &'static str) {
        self.handler_failures.add_pair(handler, kind, 1);
    }

    /// Counts an outgoing request of a handler: `ok`, `refused`, `timeout`
    /// or `error`.
    pub fn handler_outbound(&self, handler: &str, result: &'static str) {
        self.handler_outbound.add_pair(handler, result, 1);
    }

    /// Counts a finished TURN relay of route set `routes`: its bytes
    /// (plaintext) and how long it lasted.
    pub fn turn_relay(&self, routes: &str, up: u64, down: u64, took: Duration) {
        self.turn_relays.add_str(routes, 1);
        self.turn_bytes.add_pair(routes, "up", up);
        self.turn_bytes.add_pair(routes, "down", down);
        observe_by_label(&self.turn_duration, routes, TURN_SECONDS, took);
    }

    /// Counts a failed dial.
    pub fn dial_failure(&self, backend: &str) {
        self.dial_failures.fetch_add(1, Ordering::Relaxed);
        self.dial_failures_by_backend.add_str(backend, 1);
    }

    /// Records the first load (not counted as a reload).
    pub fn loaded(&self, now: u64) {
        *lock(&self.last_reload) = (now, true);
    }

    /// Counts a reload attempt; `now` is the Unix time in seconds.
    pub fn reload(&self, ok: bool, now: u64) {
        self.reloads.add(if ok { "success" } else { "failure" }, 1);
        let mut last = lock(&self.last_reload);
        last.1 = ok;
        if ok {
            last.0 = now;
        }
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
            decisions: self.decisions.snapshot(),
            relayed: self.relayed.snapshot(),
            dial_failures_by_backend: self.dial_failures_by_backend.snapshot(),
            reloads: self.reloads.snapshot(),
            shadow_decisions: load(&self.shadow_decisions),
            shadow_disagreements: load(&self.shadow_disagreements),
            tls_handshakes: TLS_GROUPS
                .iter()
                .enumerate()
                .flat_map(|(g, group)| {
                    TLS_KINDS.iter().enumerate().filter_map(move |(k, kind)| {
                        let n = load(&self.tls_handshakes[g][k]);
                        (n > 0).then(|| ((group.to_string(), kind.to_string()), n))
                    })
                })
                .collect(),
            proxy_headers: self.proxy_headers.snapshot(),
            proxy_header_errors: self.proxy_header_errors.snapshot(),
            handler_requests: self.handler_requests.snapshot(),
            handler_failures: self.handler_failures.snapshot(),
            handler_outbound: self.handler_outbound.snapshot(),
            turn_relays: self.turn_relays.snapshot(),
            turn_bytes: self.turn_bytes.snapshot(),
        }
    }
}

impl hearth_edge_policy::handler::HandlerObserver for Metrics {
    fn outbound(&self, handler: &str, result: hearth_edge_policy::handler::OutboundResult) {
        use hearth_edge_policy::handler::OutboundResult;
        let result = match result {
            OutboundResult::Ok => "ok",
            OutboundResult::Refused => "refused",
            OutboundResult::Timeout => "timeout",
            OutboundResult::Error => "error",
        };
        self.handler_outbound(handler, result);
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

impl<K> Default for Labelled<K> {
    fn default() -> Self {
        Labelled(Mutex::new(BTreeMap::new()))
    }
}

impl<K: LabelKey> Labelled<K> {
    fn add(&self, key: K, n: u64) {
        let mut map = lock(&self.0);
        if let Some(count) = map.get_mut(&key) {
            *count += n;
        } else if map.len() < MAX_LABELS {
            map.insert(key, n);
        } else {
            *map.entry(K::overflow()).or_default() += n;
        }
    }

    fn snapshot(&self) -> BTreeMap<K, u64> {
        lock(&self.0).clone()
    }
}

/// Records `took` in `label`'s histogram of `map`, creating it with
/// `buckets` unless the map already holds [`MAX_LABELS`] labels.
fn observe_by_label(
    map: &Mutex<BTreeMap<String, Histogram>>,
    label: &str,
    buckets: &'static [f64],
    took: Duration,
) {
    let mut map = lock(map);
    if let Some(h) = map.get(label) {
        h.observe_duration(took);
    } else if map.len() < MAX_LABELS {
        let h = Histogram::new(Buckets::Seconds(buckets));
        h.observe_duration(took);
        map.insert(label.to_owned(), h);
    }
}

/// The lowest and highest status codes `http::StatusCode` allows.
const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 999;

/// One counter per HTTP status code.
struct StatusCounts(Box<[AtomicU64]>);

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts(
            (STATUS_MIN..=STATUS_MAX)
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }
}

impl std::fmt::Debug for StatusCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.snapshot()).finish()
    }
}

impl StatusCounts {
    fn add(&self, status: u16) {
        let i = status.clamp(STATUS_MIN, STATUS_MAX) - STATUS_MIN;
        self.0[usize::from(i)].fetch_add(1, Ordering::Relaxed);
    }

    /// The codes counted at least once, as text.
    fn snapshot(&self) -> BTreeMap<String, u64> {
        (STATUS_MIN..=STATUS_MAX)
            .zip(self.0.iter())
            .filter_map(|(code, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then(|| (code.to_string(), n))
            })
            .collect()
    }
}

impl Labelled<String> {
    /// Like `add`, without allocating when the label is already counted.
    fn add_str(&self, label: &str, n: u64) {
        let mut map = lock(&self.0);
        if let Some(count) = map.get_mut(label) {
            *count += n;
            return;
        }
        drop(map);
        self.add(label.to_owned(), n);
    }
}

impl<B: LabelKey> Labelled<(String, B)> {
    /// Like `add`, without allocating when the pair is already counted: a
    /// look through at most [`MAX_LABELS`] pairs costs less than the copies
    /// of the names a new key takes.
    fn add_pair<S: PartialEq<B> + Into<B>>(&self, first: &str, second: S, n: u64) {
        let mut map = lock(&self.0);
        let counted = map
            .iter_mut()
            .find_map(|((a, b), count)| (a == first && second == *b).then_some(count));
        if let Some(count) = counted {
            *count += n;
            return;
        }
        drop(map);
        self.add((first.to_owned(), second.into()), n);
    }
}

impl LabelKey for String {
    fn overflow() -> Self {
        OVERFLOW_LABEL.to_owned()
    }
}

impl LabelKey for &'static str {
    fn overflow() -> Self {
        OVERFLOW_LABEL
    }
}

impl<A: LabelKey, B: LabelKey> LabelKey for (A, B) {
    fn overflow() -> Self {
        (A::overflow(), B::overflow())
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
