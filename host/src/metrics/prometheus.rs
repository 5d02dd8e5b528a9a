//! [`Metrics`] in the Prometheus text exposition format (version 0.0.4),
//! written by hand: `# HELP`, `# TYPE`, then the samples, every name
//! prefixed `hearth_edge_`, counters ending in `_total`, units in the name
//! (`_seconds`, `_bytes`). Served by the admin listener (`admin.rs`); the
//! list is in the README ("Operating").

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::histogram::HistogramSnapshot;
use super::{Metrics, Outcome, lock};

/// The prefix of every metric name.
const PREFIX: &str = "hearth_edge_";

/// The policy error kinds always exported, at zero until they happen, so
/// alerts on them need no `absent()`.
const POLICY_ERROR_KINDS: &[&str] = &[
    "trap",
    "timeout",
    "memory",
    "unknown_backend",
    "invalid_answer",
    "unavailable",
];
/// Reload results always exported.
const RELOAD_RESULTS: &[&str] = &["success", "failure"];

/// What the exposition needs besides the counters.
#[derive(Debug, Default)]
pub struct Context<'a> {
    /// `(name, notAfter as Unix seconds)` of every certificate held.
    pub certificates: &'a [(String, i64)],
    /// Unix time the process started.
    pub start_time: u64,
}

/// The handlers' families: requests by status, their duration, requests
/// without an answer by kind, outgoing requests by result.
fn handlers(out: &mut Writer, m: &Metrics, s: &super::Snapshot) {
    out.family(
        "handler_requests_total",
        "counter",
        "Requests answered by handlers, by handler and status.",
    );
    for ((handler, status), n) in &s.handler_requests {
        out.sample(
            "handler_requests_total",
            &[("handler", handler), ("status", status)],
            *n,
        );
    }
    out.family(
        "handler_failures_total",
        "counter",
        "Handler requests without an answer, by handler and kind (trap, timeout, memory, busy, no_answer).",
    );
    for ((handler, kind), n) in &s.handler_failures {
        out.sample(
            "handler_failures_total",
            &[("handler", handler), ("kind", kind)],
            *n,
        );
    }
    out.family(
        "handler_outbound_requests_total",
        "counter",
        "Handlers' outgoing requests, by handler and result (ok, refused, timeout, error).",
    );
    for ((handler, result), n) in &s.handler_outbound {
        out.sample(
            "handler_outbound_requests_total",
            &[("handler", handler), ("result", result)],
            *n,
        );
    }
    out.family(
        "handler_request_duration_seconds",
        "histogram",
        "Time from a request's head to the handler's answer head, by handler.",
    );
    for (handler, h) in lock(&m.handler_latency).iter() {
        out.histogram(
            "handler_request_duration_seconds",
            &[("handler", handler)],
            &h.snapshot(),
        );
    }
}

/// TURN relays of route sets' `stun_backend` (`proxy/stun.rs`): count,
/// bytes and duration by route set.
fn turn(out: &mut Writer, m: &Metrics, s: &super::Snapshot) {
    out.family(
        "turn_relays_total",
        "counter",
        "Terminated connections relayed to a route set's stun_backend, by route set.",
    );
    for (routes, n) in &s.turn_relays {
        out.sample("turn_relays_total", &[("routes", routes)], *n);
    }
    out.family(
        "turn_relay_bytes_total",
        "counter",
        "Plaintext bytes of TURN relays, by route set and direction (up: client to TURN).",
    );
    for ((routes, direction), n) in &s.turn_bytes {
        out.sample(
            "turn_relay_bytes_total",
            &[("routes", routes), ("direction", direction)],
            *n,
        );
    }
    out.family(
        "turn_relay_duration_seconds",
        "histogram",
        "How long TURN relays lasted, by route set.",
    );
    for (routes, h) in lock(&m.turn_duration).iter() {
        out.histogram(
            "turn_relay_duration_seconds",
            &[("routes", routes)],
            &h.snapshot(),
        );
    }
}

/// The text served at `/metrics`.
pub fn render(m: &Metrics, cx: &Context<'_>) -> String {
    let mut out = Writer(String::with_capacity(8 * 1024));
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let s = m.snapshot();

    out.family(
        "build_info",
        "gauge",
        "Build of the running edge; always 1.",
    );
    out.sample(
        "build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("wit", "hearth:edge@0.1.1"),
        ],
        1,
    );
    out.family(
        "start_time_seconds",
        "gauge",
        "Unix time the process started.",
    );
    out.sample("start_time_seconds", &[], cx.start_time);

    out.family(
        "connections_accepted_total",
        "counter",
        "TCP connections accepted.",
    );
    out.sample("connections_accepted_total", &[], s.accepted);
    out.family(
        "connections_active",
        "gauge",
        "Connections being handled now.",
    );
    out.sample("connections_active", &[], s.active);
    out.family(
        "connections_limit_rejected_total",
        "counter",
        "Connections closed at accept because max_concurrent_conns was reached.",
    );
    out.sample("connections_limit_rejected_total", &[], s.limit_rejected);
    out.family(
        "connections_closed_total",
        "counter",
        "Connections closed, by outcome.",
    );
    for outcome in Outcome::ALL {
        let label = outcome.as_str();
        out.sample(
            "connections_closed_total",
            &[("outcome", label)],
            s.closed.get(label).copied().unwrap_or(0),
        );
    }
    out.family(
        "connection_idle_timeouts_total",
        "counter",
        "Connections closed for being idle past idle_timeout.",
    );
    out.sample("connection_idle_timeouts_total", &[], s.idle_timeouts);

    out.family(
        "client_hello_errors_total",
        "counter",
        "ClientHello reads that failed, by kind.",
    );
    for (kind, n) in &s.hello_errors {
        out.sample("client_hello_errors_total", &[("kind", kind)], *n);
    }
    out.family(
        "client_hello_size_bytes",
        "histogram",
        "Size of complete ClientHellos (all records).",
    );
    out.histogram("client_hello_size_bytes", &[], &m.hello_size.snapshot());

    out.family(
        "decisions_total",
        "counter",
        "What was done with connections, by action and backend (empty for reject).",
    );
    for ((action, backend), n) in &s.decisions {
        out.sample(
            "decisions_total",
            &[("action", action), ("backend", backend)],
            *n,
        );
    }
    out.family(
        "rejects_total",
        "counter",
        "Rejected connections, by reason.",
    );
    for (reason, n) in &s.rejects {
        out.sample("rejects_total", &[("reason", reason)], *n);
    }
    out.family(
        "policy_errors_total",
        "counter",
        "Failed policy calls, by kind.",
    );
    for kind in POLICY_ERROR_KINDS {
        let n = s.policy_errors.get(*kind).copied().unwrap_or(0);
        out.sample("policy_errors_total", &[("kind", kind)], n);
    }
    for (kind, n) in &s.policy_errors {
        if !POLICY_ERROR_KINDS.contains(&kind.as_str()) {
            out.sample("policy_errors_total", &[("kind", kind)], *n);
        }
    }
    out.family(
        "policy_decision_duration_seconds",
        "histogram",
        "Time the live policy took to answer (decide, and on-request in the HTTP mode).",
    );
    out.histogram(
        "policy_decision_duration_seconds",
        &[],
        &m.decision_latency.snapshot(),
    );

    out.family(
        "client_bytes_total",
        "counter",
        "Bytes of closed connections, every mode: up read from clients, down written to them.",
    );
    out.sample("client_bytes_total", &[("direction", "up")], s.bytes_up);
    out.sample("client_bytes_total", &[("direction", "down")], s.bytes_down);

    out.family(
        "relayed_bytes_total",
        "counter",
        "Bytes relayed, by backend and direction (up: client to backend).",
    );
    for ((backend, direction), n) in &s.relayed {
        out.sample(
            "relayed_bytes_total",
            &[("backend", backend), ("direction", direction)],
            *n,
        );
    }
    out.family(
        "backend_dial_failures_total",
        "counter",
        "Backend connections that failed or timed out, by backend.",
    );
    for (backend, n) in &s.dial_failures_by_backend {
        out.sample("backend_dial_failures_total", &[("backend", backend)], *n);
    }
    out.family(
        "backend_dial_duration_seconds",
        "histogram",
        "Time to connect to a backend, by backend (successful dials).",
    );
    for (backend, h) in lock(&m.dial_latency).iter() {
        out.histogram(
            "backend_dial_duration_seconds",
            &[("backend", backend)],
            &h.snapshot(),
        );
    }
    out.family(
        "http_request_duration_seconds",
        "histogram",
        "HTTP mode: time from a request's head to its answer's head, by backend (- for the edge's own answers).",
    );
    for (backend, h) in lock(&m.http_latency).iter() {
        out.histogram(
            "http_request_duration_seconds",
            &[("backend", backend)],
            &h.snapshot(),
        );
    }
    handlers(&mut out, m, &s);
    turn(&mut out, m, &s);
    out.family(
        "tls_handshakes_total",
        "counter",
        "Completed TLS handshakes where the edge terminates, by key exchange group and kind (full, hrr, resumed).",
    );
    for ((group, kind), n) in &s.tls_handshakes {
        out.sample(
            "tls_handshakes_total",
            &[("group", group), ("kind", kind)],
            *n,
        );
    }
    out.family(
        "proxy_headers_total",
        "counter",
        "PROXY protocol headers received from accept_proxy peers, by version.",
    );
    for version in ["v1", "v2"] {
        let n = s.proxy_headers.get(version).copied().unwrap_or(0);
        out.sample("proxy_headers_total", &[("version", version)], n);
    }
    out.family(
        "proxy_header_errors_total",
        "counter",
        "Connections from accept_proxy peers closed for their PROXY header, by kind.",
    );
    for kind in ["missing", "malformed", "too_large", "timeout", "io"] {
        let n = s.proxy_header_errors.get(kind).copied().unwrap_or(0);
        out.sample("proxy_header_errors_total", &[("kind", kind)], n);
    }
    out.family(
        "tls_handshake_failures_total",
        "counter",
        "TLS handshakes (terminate) that failed or timed out.",
    );
    out.sample(
        "tls_handshake_failures_total",
        &[],
        s.tls_handshake_failures,
    );
    out.family(
        "certificate_expiry_timestamp_seconds",
        "gauge",
        "Unix time the certificate served for a name expires.",
    );
    for (name, not_after) in cx.certificates {
        out.sample_i64(
            "certificate_expiry_timestamp_seconds",
            &[("name", name)],
            *not_after,
        );
    }

    out.family(
        "reloads_total",
        "counter",
        "Config and policy reloads, by result.",
    );
    for result in RELOAD_RESULTS {
        let n = s.reloads.get(result).copied().unwrap_or(0);
        out.sample("reloads_total", &[("result", result)], n);
    }
    let (last_ok_time, last_ok) = *lock(&m.last_reload);
    out.family(
        "config_last_reload_successful",
        "gauge",
        "1 if the last load or reload succeeded, else 0.",
    );
    out.sample("config_last_reload_successful", &[], u64::from(last_ok));
    out.family(
        "config_last_reload_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful load or reload.",
    );
    out.sample(
        "config_last_reload_success_timestamp_seconds",
        &[],
        last_ok_time,
    );

    out.family(
        "shadow_decisions_total",
        "counter",
        "Decisions made by the shadow policy.",
    );
    out.sample("shadow_decisions_total", &[], s.shadow_decisions);
    out.family(
        "shadow_disagreements_total",
        "counter",
        "Shadow decisions that differed from the live one.",
    );
    out.sample("shadow_disagreements_total", &[], s.shadow_disagreements);
    out.family(
        "shadow_skipped_total",
        "counter",
        "Shadow comparisons skipped because too many were in flight.",
    );
    out.sample("shadow_skipped_total", &[], load(&m.shadow_skipped));

    out.family(
        "http_responses_total",
        "counter",
        "Responses of the HTTP listener (http_listen), by status code.",
    );
    for (code, n) in m.http_responses() {
        out.sample("http_responses_total", &[("code", &code)], n);
    }
    out.family(
        "http_request_errors_total",
        "counter",
        "HTTP-mode requests that failed, by the side that caused the failure.",
    );
    for (side, n) in m.http_errors() {
        out.sample("http_request_errors_total", &[("side", side.as_str())], n);
    }
    for (name, help, value) in [
        (
            "acme_errors_total",
            "ACME failures (orders, cache reads and writes); each is retried with backoff.",
            &m.acme_errors,
        ),
        (
            "certificate_export_failures_total",
            "tls.export writes that failed.",
            &m.export_failures,
        ),
        (
            "on_renew_failures_total",
            "on_renew actions that failed or timed out.",
            &m.on_renew_failures,
        ),
        (
            "certificate_reloads_total",
            "Certificate files swapped in after a change.",
            &m.cert_reloads,
        ),
        (
            "certificate_reload_failures_total",
            "Changed certificate files refused; the previous certificate stays.",
            &m.cert_reload_failures,
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], load(value));
    }
    out.0
}

/// The text being built.
struct Writer(String);

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.0, "# TYPE {PREFIX}{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.name_and_labels(name, labels, None);
        let _ = writeln!(self.0, " {value}");
    }

    fn sample_i64(&mut self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.name_and_labels(name, labels, None);
        let _ = writeln!(self.0, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &h.buckets {
            let le = if bound.is_infinite() {
                "+Inf".to_owned()
            } else {
                bound.to_string()
            };
            self.name_and_labels(&bucket, labels, Some(&le));
            let _ = writeln!(self.0, " {count}");
        }
        self.name_and_labels(&format!("{name}_sum"), labels, None);
        let _ = writeln!(self.0, " {}", h.sum);
        self.name_and_labels(&format!("{name}_count"), labels, None);
        let _ = writeln!(self.0, " {}", h.count);
    }

    fn name_and_labels(&mut self, name: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.0.push_str(PREFIX);
        self.0.push_str(name);
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.0.push('{');
        let le = le.map(|v| ("le", v));
        for (i, (key, value)) in labels.iter().copied().chain(le).enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(key);
            self.0.push_str("=\"");
            escape_into(&mut self.0, value);
            self.0.push('"');
        }
        self.0.push('}');
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn samples_carry_their_labels_escaped() {
        let m = Metrics::default();
        m.reject("bad \"name\"\nhere\\");
        m.decision("passthrough", "turn");
        m.relayed("turn", 10, 20);
        m.decision_latency(Duration::from_micros(30));
        let text = render(&m, &Context::default());
        assert!(
            text.contains(r#"hearth_edge_rejects_total{reason="bad \"name\"\nhere\\"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                "hearth_edge_decisions_total{action=\"passthrough\",backend=\"turn\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "hearth_edge_relayed_bytes_total{backend=\"turn\",direction=\"down\"} 20\n"
            )
        );
        assert!(
            text.contains(
                "hearth_edge_policy_decision_duration_seconds_bucket{le=\"0.00005\"} 1\n"
            )
        );
        assert!(
            text.contains("hearth_edge_policy_decision_duration_seconds_bucket{le=\"+Inf\"} 1\n")
        );
        assert!(text.contains("hearth_edge_policy_errors_total{kind=\"trap\"} 0\n"));
    }

    #[test]
    fn every_family_is_declared_once_before_its_samples() {
        let m = Metrics::default();
        m.dial_latency("a", Duration::from_millis(1));
        m.dial_latency("b", Duration::from_millis(1));
        m.http_latency("web", Duration::from_millis(3));
        m.http_latency("-", Duration::from_millis(1));
        let text = render(
            &m,
            &Context {
                certificates: &[("x.example".to_owned(), 1_900_000_000)],
                start_time: 1,
            },
        );
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{name} before its # TYPE");
            }
        }
        assert!(text.contains(
            "hearth_edge_certificate_expiry_timestamp_seconds{name=\"x.example\"} 1900000000\n"
        ));
    }
}
