//! Faulting policies under load, through the real binary: the `trap`,
//! `spin` and `hog` test guests (`tests/guests/`) fault on one server name
//! and pass everything else to backend `ok`. Tens of thousands of
//! connections, faulting ones interleaved with good ones: the process never
//! crashes, every connection is answered as `policy.on_error` says (an
//! `internal_error` alert, or the `ok` backend), every fault is logged with
//! its kind, and the edge's memory stays flat (RSS before/after reported).

use hearth_edge_policy::guests::{HOG, SPIN, TRAP, guest};

use super::{Backend, Behaviour, End, Seen, client, drive, percentile_ms, report, runtime};
use crate::support::STEP_TIMEOUT;
use crate::support::edge::EdgeBuilder;
use crate::support::hello::rustls_hello;

/// Every `GOOD_EVERY`th connection carries a name the policy handles.
const GOOD_EVERY: usize = 10;
/// Clients in flight at once.
const CONCURRENCY: usize = 16;
/// Connections before the "before" RSS reading: the runtime's pools and the
/// policy's instances are warm by then.
const WARMUP: usize = 1000;
/// RSS growth allowed over the measured connections. A leak of even 1 KiB
/// per faulting connection would exceed it.
const RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;
/// The name the guests route normally.
const GOOD_NAME: &str = "ok.test";

/// What the policy does with a faulting call.
#[derive(Clone, Copy)]
enum OnError {
    /// `on_error: reject`: an `internal_error` alert, then close.
    Reject,
    /// `on_error: ok`: fail open to backend `ok` (an echo server here).
    Backend,
}

/// One guest's run.
struct Case {
    name: &'static str,
    guest: &'static str,
    fault_name: &'static str,
    /// `kind=` of the edge's `policy failed` line.
    kind: &'static str,
    on_error: OnError,
    limits: &'static str,
    connections: usize,
}

/// TLS alert record: type 21, level fatal (2), `internal_error` (80).
fn is_internal_error_alert(bytes: &[u8]) -> bool {
    bytes.len() == 7 && bytes[0] == 21 && bytes[3..5] == [0, 2] && bytes[5] == 2 && bytes[6] == 80
}

fn run(case: Case) {
    let rt = runtime();
    let echo = rt.block_on(Backend::start(Behaviour::Echo));
    let on_error = match case.on_error {
        OnError::Reject => "reject",
        OnError::Backend => "ok",
    };
    let mut edge = EdgeBuilder::with_policy(&guest(case.guest))
        .policy_yaml("on_error", on_error)
        .policy_yaml("limits", case.limits)
        .backend("ok", echo.addr)
        .start();
    let good = rustls_hello(GOOD_NAME);
    let bad = rustls_hello(case.fault_name);
    let addr = edge.addr;
    let batch = |count: usize| {
        let (good, bad) = (good.clone(), bad.clone());
        rt.block_on(drive(count, CONCURRENCY, move |i| {
            let hello = if i % GOOD_EVERY == 0 {
                good.clone()
            } else {
                bad.clone()
            };
            let faulty = i % GOOD_EVERY != 0;
            async move {
                // Echo answers are read in full; alerts end with the close.
                let echoed = !faulty || matches!(case.on_error, OnError::Backend);
                let enough = echoed.then_some(hello.len());
                (
                    faulty,
                    hello.clone(),
                    client(addr, &hello, enough, STEP_TIMEOUT).await,
                )
            }
        }))
    };

    let warm = batch(WARMUP);
    let rss_before = edge.peer.rss_kib();
    let fds_before = edge.peer.fd_count();
    let measured = batch(case.connections);
    let fds_after = crate::support::poll_until(STEP_TIMEOUT, || {
        let fds = edge.peer.fd_count();
        (fds <= fds_before).then_some(fds)
    });
    let rss_after = edge.peer.rss_kib();

    let mut wrong: Vec<String> = Vec::new();
    let mut latencies = Vec::new();
    let mut faulty_total = 0;
    for (faulty, hello, seen) in warm.iter().chain(&measured) {
        faulty_total += usize::from(*faulty);
        latencies.push(seen.elapsed);
        let answered = match (faulty, case.on_error) {
            (true, OnError::Reject) => {
                is_internal_error_alert(&seen.bytes) && matches!(seen.end, End::Eof | End::Reset)
            }
            _ => seen.end == End::Enough && seen.bytes == *hello,
        };
        if !answered && wrong.len() < 5 {
            wrong.push(describe(*faulty, seen));
        }
        if !answered && wrong.len() == 5 {
            wrong.push("...".into());
        }
    }
    let total = warm.len() + measured.len();
    // Every faulting call is logged once, with its kind: the provoked one,
    // or `timeout` when a loaded machine descheduled the call past max_time.
    let sni = format!("sni={} ", case.fault_name);
    let kind = format!("kind={} ", case.kind);
    let faults_logged = edge
        .logs()
        .wait_for_n(&["policy failed", &sni], faulty_total, STEP_TIMEOUT)
        .unwrap_or_default();
    let logged = faults_logged.iter().filter(|l| l.contains(&kind)).count();
    // Timeouts other than the provoked kind (none when timeouts are provoked).
    let fault_timeouts = if case.kind == "timeout" {
        0
    } else {
        faults_logged
            .iter()
            .filter(|l| l.contains("kind=timeout "))
            .count()
    };
    let others: Vec<String> = edge
        .logs()
        .lines()
        .into_iter()
        .filter(|l| l.contains("policy failed") && !l.contains(&sni))
        .collect();
    let other_failures = others.len();
    let alive = edge.peer.exited().is_none();
    report(
        &format!("faults-{}", case.name),
        &format!(
            "guest {} ({}), on_error {on_error}, limits {}\n\
             connections: {total} ({faulty_total} faulting, {} good), {CONCURRENCY} at a time\n\
             answered as expected: {} of {total}; 'policy failed' for the faulting name: {logged} kind={}, {fault_timeouts} kind=timeout; for good names: {other_failures}\n\
             latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
             edge RSS after {WARMUP} warm-up connections: {rss_before} KiB, after {} more: {rss_after} KiB ({:+} KiB)\n\
             edge fds: {fds_before} before, {fds_after:?} after; process alive: {alive}\n",
            case.guest,
            case.fault_name,
            case.limits,
            total - faulty_total,
            total - wrong.len().min(total),
            case.kind,
            percentile_ms(&mut latencies, 50.0),
            percentile_ms(&mut latencies, 99.0),
            percentile_ms(&mut latencies, 100.0),
            case.connections,
            rss_after as i64 - rss_before as i64,
        ),
    );
    assert!(alive, "the edge exited:\n{}", edge.logs().dump());
    assert!(
        wrong.is_empty(),
        "connections not answered per on_error: {wrong:#?}"
    );
    assert_eq!(
        faults_logged.len(),
        faulty_total,
        "'policy failed {sni}' lines"
    );
    assert!(logged > 0, "no fault logged as {kind}");
    assert_eq!(
        logged + fault_timeouts,
        faulty_total,
        "faults logged as neither {kind} nor a timeout"
    );
    assert!(
        others.iter().all(|l| l.contains("kind=timeout ")),
        "good calls failed other than by a timeout: {others:?}"
    );
    assert!(
        fds_after.is_some(),
        "fds did not return to {fds_before}: {}",
        edge.peer.fd_count()
    );
    assert!(
        rss_after <= rss_before + RSS_GROWTH_BOUND_KIB,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(echo.accepts(), {
        let good_total = total - faulty_total;
        match case.on_error {
            OnError::Reject => good_total,
            OnError::Backend => total,
        }
    });
}

fn describe(faulty: bool, seen: &Seen) -> String {
    format!(
        "{} connection: {:?} after {:?}, {} bytes: {:02x?}",
        if faulty { "faulting" } else { "good" },
        seen.end,
        seen.elapsed,
        seen.received,
        &seen.bytes[..seen.bytes.len().min(16)]
    )
}

#[test]
fn a_trapping_policy_costs_each_connection_an_alert_and_nothing_else() {
    run(Case {
        name: "trap",
        guest: TRAP,
        fault_name: "trap.test",
        kind: "trap",
        on_error: OnError::Reject,
        // Generous: on a loaded machine a call can be descheduled for
        // milliseconds, and a timeout would hide what this test counts.
        limits: "{ max_memory: 16MiB, max_time: 200ms }",
        connections: 10_000,
    });
}

#[test]
fn an_endless_policy_is_cut_at_max_time_and_fails_open_as_configured() {
    run(Case {
        name: "spin",
        guest: SPIN,
        fault_name: "spin.test",
        kind: "timeout",
        on_error: OnError::Backend,
        limits: "{ max_memory: 16MiB, max_time: 5ms }",
        connections: 3_000,
    });
}

#[test]
fn a_memory_hog_policy_is_stopped_at_max_memory() {
    run(Case {
        name: "hog",
        guest: HOG,
        fault_name: "hog.test",
        kind: "memory",
        on_error: OnError::Reject,
        limits: "{ max_memory: 2MiB, max_time: 200ms }",
        connections: 6_000,
    });
}
