//! A policy that panics, loops or hogs memory costs one decision: the error
//! says which, and the next decision on the same `Policy` works.

use std::time::{Duration, Instant};

use hearth_edge_policy::guests::{HOG, SPIN, TRAP, guest};
use hearth_edge_policy::{Decision, Limits, Policy};

use super::support::{hello, runtime};

fn assert_ok_passthrough(decision: Decision) {
    match decision {
        Decision::Passthrough(route) => assert_eq!(route.backend, "ok"),
        other => panic!("expected passthrough to ok, got {other:?}"),
    }
}

/// Default limits with a `max_time` no test machine reaches: for tests of
/// something else than time, since the deadline is wall-clock and a loaded
/// two-core machine can preempt a call past the 5 ms default.
fn untimed() -> Limits {
    Limits {
        max_time: Duration::from_secs(5),
        ..Limits::default()
    }
}

#[test]
fn a_panic_is_a_trap_with_the_message_and_the_next_decision_works() {
    let rt = runtime();
    let policy = Policy::load(&rt, &guest(TRAP), vec![], Limits::default()).unwrap();
    let err = policy.decide(&hello(Some("trap.test"))).unwrap_err();
    assert_eq!(err.kind(), "trap", "{err}");
    assert!(
        err.to_string().contains("trap guest asked to panic"),
        "panic message missing: {err}"
    );
    assert_eq!(
        policy.idle_instances(),
        0,
        "the trapped instance was discarded"
    );
    assert_ok_passthrough(policy.decide(&hello(Some("fine.test"))).unwrap());
    let stats = policy.stats();
    assert_eq!(
        (stats.failures, stats.decisions, stats.instantiations),
        (1, 1, 1)
    );
}

#[test]
fn a_panic_inside_a_tokio_task_is_still_just_a_trap() {
    // The data path calls `decide` from async code; a panicking guest writes
    // to stderr and flushes it, which must not need `block_on`.
    let rt = runtime();
    let policy = Policy::load(&rt, &guest(TRAP), vec![], Limits::default()).unwrap();
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (trapped, next) = tokio_rt.block_on(async {
        let trapped = policy.decide(&hello(Some("trap.test")));
        let next = policy.decide(&hello(Some("fine.test")));
        (trapped, next)
    });
    let err = trapped.unwrap_err();
    assert_eq!(err.kind(), "trap");
    assert!(
        err.to_string().contains("trap guest asked to panic"),
        "{err}"
    );
    assert_ok_passthrough(next.unwrap());
}

#[test]
fn an_endless_loop_times_out_and_the_next_decision_works() {
    let rt = runtime();
    let limits = Limits {
        max_time: Duration::from_millis(20),
        ..Limits::default()
    };
    let policy = Policy::load(&rt, &guest(SPIN), vec![], limits).unwrap();
    let started = Instant::now();
    let err = policy.decide(&hello(Some("spin.test"))).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert!(
        took >= limits.max_time,
        "stopped after {took:?}, before max_time"
    );
    println!(
        "spin: max_time {:?}, interrupted after {took:?}",
        limits.max_time
    );
    assert_ok_passthrough(policy.decide(&hello(Some("fine.test"))).unwrap());
}

#[test]
fn max_time_still_holds_after_the_runtime_handle_is_dropped() {
    // The edge builds a `Runtime`, loads its policy and keeps only the
    // `Policy`: the epoch ticker must live on with it.
    /// Far beyond any `max_time`: a call still running then was never interrupted.
    const HANG: Duration = Duration::from_secs(10);
    let policy = Policy::load(&runtime(), &guest(SPIN), vec![], Limits::default()).unwrap();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(
            policy
                .decide(&hello(Some("spin.test")))
                .map_err(|e| e.kind()),
        );
    });
    match outcome.recv_timeout(HANG) {
        Ok(result) => assert_eq!(result.unwrap_err(), "timeout"),
        Err(_) => panic!("an endless policy ran for {HANG:?}: max_time is not enforced"),
    }
}

#[test]
fn unbounded_allocation_hits_the_memory_cap_and_the_next_decision_works() {
    let rt = runtime();
    let limits = Limits {
        max_memory: 8 << 20,
        ..untimed()
    };
    let policy = Policy::load(&rt, &guest(HOG), vec![], limits).unwrap();
    let err = policy.decide(&hello(Some("hog.test"))).unwrap_err();
    assert_eq!(err.kind(), "memory", "{err}");
    assert_ok_passthrough(policy.decide(&hello(Some("fine.test"))).unwrap());
}

#[test]
fn instances_are_reused_between_decisions() {
    let rt = runtime();
    let policy = Policy::load(&rt, &guest(TRAP), vec![], Limits::default()).unwrap();
    for _ in 0..100 {
        assert_ok_passthrough(policy.decide(&hello(Some("fine.test"))).unwrap());
    }
    assert_eq!(
        policy.stats().instantiations,
        0,
        "the instance from load served every call"
    );
    assert_eq!(policy.idle_instances(), 1);
}

#[test]
fn concurrent_decisions_each_get_an_instance() {
    const THREADS: usize = 8;
    const CALLS: usize = 200;
    let rt = runtime();
    let policy = Policy::load(&rt, &guest(TRAP), vec![], untimed()).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let policy = &policy;
            s.spawn(move || {
                for i in 0..CALLS {
                    // Every 50th call of each thread traps.
                    let sni = if i % 50 == 49 {
                        "trap.test"
                    } else {
                        "fine.test"
                    };
                    let r = policy.decide(&hello(Some(sni)));
                    assert_eq!(r.is_err(), sni == "trap.test", "thread {t} call {i}: {r:?}");
                }
            });
        }
    });
    let stats = policy.stats();
    assert_eq!(stats.decisions as usize, THREADS * CALLS * 49 / 50);
    assert_eq!(stats.failures as usize, THREADS * CALLS / 50);
    assert!(
        policy.idle_instances() <= THREADS,
        "{} idle",
        policy.idle_instances()
    );
}

#[test]
fn guest_log_lines_reach_the_log_sink() {
    use std::sync::{Arc, Mutex};
    let rt = runtime();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    rt.set_log_sink(Some(Arc::new(
        move |r: &hearth_edge_policy::LogRecord<'_>| {
            sink.lock()
                .unwrap()
                .push(format!("{}: {:?} {}", r.policy, r.level, r.message));
        },
    )));
    let policy = Policy::load(&rt, &guest(TRAP), vec![], Limits::default()).unwrap();
    policy.decide(&hello(Some("log.test"))).unwrap();
    let lines = lines.lock().unwrap();
    assert_eq!(
        *lines,
        [
            "guest_trap: Level::Info trap guest initialised",
            "guest_trap: Level::Warn decide called for log.test",
        ]
    );
}

#[test]
fn a_policy_that_sleeps_is_refused_not_waited_for() {
    let rt = runtime();
    let policy = Policy::load(&rt, &guest(SPIN), vec![], Limits::default()).unwrap();
    let started = Instant::now();
    let err = policy.decide(&hello(Some("sleep.test"))).unwrap_err();
    assert_eq!(err.kind(), "trap", "{err}");
    assert!(err.to_string().contains("must not block"), "{err}");
    assert!(
        started.elapsed() < Limits::default().max_time * 100,
        "it did not wait for the sleep"
    );
    // The same from inside a Tokio task, where a blocking wait would panic.
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy2 = policy.clone();
    let err = tokio_rt
        .block_on(async move {
            tokio::spawn(async move { policy2.decide(&hello(Some("sleep.test"))) }).await
        })
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), "trap", "{err}");
    assert_ok_passthrough(policy.decide(&hello(Some("fine.test"))).unwrap());
}

#[test]
fn a_flood_of_log_lines_is_capped_per_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rt = runtime();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    rt.set_log_sink(Some(Arc::new(
        move |r: &hearth_edge_policy::LogRecord<'_>| {
            if r.message.starts_with("flood line") {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        },
    )));
    // Not a test of time: room for 64 log calls on a loaded machine.
    let limits = Limits {
        max_time: std::time::Duration::from_millis(250),
        ..Limits::default()
    };
    let policy = Policy::load(&rt, &guest(TRAP), vec![], limits).unwrap();
    assert_ok_passthrough(policy.decide(&hello(Some("flood.test"))).unwrap());
    assert_eq!(
        count.load(Ordering::Relaxed),
        64,
        "1000 lines logged, 64 kept"
    );
    assert_ok_passthrough(policy.decide(&hello(Some("flood.test"))).unwrap());
    assert_eq!(
        count.load(Ordering::Relaxed),
        128,
        "the allowance is per call"
    );
}

#[test]
fn init_has_its_own_budget_longer_than_max_time() {
    let rt = runtime();
    // `init` takes 30 ms, six times the per-decision `max_time`.
    let config = vec![("init_spin_ms".to_owned(), "30".to_owned())];
    let limits = Limits::default();
    assert!(limits.max_time < Duration::from_millis(30));
    let policy = Policy::load(&rt, &guest(SPIN), config.clone(), limits)
        .expect("init within init_timeout loads even though it exceeds max_time");
    assert_ok_passthrough(policy.decide(&hello(Some("fine.test"))).unwrap());

    // The same init under a shorter init_timeout is stopped, as a timeout.
    let short = Limits {
        init_timeout: Duration::from_millis(10),
        ..Limits::default()
    };
    let err = Policy::load(&rt, &guest(SPIN), config, short).unwrap_err();
    match &err {
        hearth_edge_policy::LoadError::InitFailed { source, .. } => {
            assert_eq!(source.kind(), "timeout", "{err}")
        }
        other => panic!("expected InitFailed(timeout), got {other:?}"),
    }
}
