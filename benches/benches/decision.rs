//! Policy decision latency: one `decide` call on a reused instance, on a
//! fresh instance (instantiate + `init` + `decide`), and the same routing as
//! native Rust (`hearth_edge_benches::NativeHearth`) as the baseline.
//! Prints p50 / p99 / mean in ns and the ratios recorded in `RESULTS.md`.
//!
//! Run: `cargo bench -p hearth-edge-benches --bench decision` (after
//! `policies/build.sh`; uses `policies/hearth.wasm`, or the `trap` test guest
//! when the Hearth policy has not been built).

use std::hint::black_box;
use std::time::Instant;

use hearth_edge_benches::NativeHearth;
use hearth_edge_policy::guests::{TRAP, guest, shipped_policy};
use hearth_edge_policy::harness::HelloSpec;
use hearth_edge_policy::{ClientHello, Limits, Policy, Runtime, RuntimeOptions};

/// Calls measured per scenario (fresh instances are slower: fewer calls).
const CALLS: usize = 100_000;
const FRESH_CALLS: usize = 10_000;
/// Calls before measuring, to warm caches and the instance pool.
const WARMUP: usize = 2_000;
const DOMAIN: &str = "hearth.example";

fn main() {
    let (policy_path, label) = match shipped_policy("hearth.wasm") {
        Some(p) => (p, "policies/hearth.wasm"),
        None => (guest(TRAP), "tests/guests/trap (hearth.wasm not built)"),
    };
    let runtime = Runtime::new(RuntimeOptions::default()).expect("runtime");
    let config = vec![("domain".to_owned(), DOMAIN.to_owned())];
    let policy =
        Policy::load(&runtime, &policy_path, config, Limits::default()).expect("policy loads");
    let native = NativeHearth::new(DOMAIN);
    let hellos = hellos();

    println!("policy: {label}");
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8}",
        "scenario", "calls", "p50 ns", "p99 ns", "mean ns"
    );
    let base = measure("native Rust (baseline)", CALLS, &hellos, |h| {
        black_box(native.decide(black_box(h)));
    });
    let reused = measure("wasm, reused instance", CALLS, &hellos, |h| {
        black_box(policy.decide(black_box(h)).expect("decides"));
    });
    let fresh = measure("wasm, fresh instance per call", FRESH_CALLS, &hellos, |h| {
        black_box(
            policy
                .decide_with_fresh_instance(black_box(h))
                .expect("decides"),
        );
    });
    println!();
    for (name, s) in [("reused", reused), ("fresh", fresh)] {
        println!(
            "{name}: p50 {:.0}x native, p99 {:.0}x native",
            s.p50 as f64 / base.p50.max(1) as f64,
            s.p99 as f64 / base.p99.max(1) as f64
        );
    }
    let ok = reused.p50 <= 2_000 && reused.p99 <= 10_000;
    println!(
        "target reused p50 <= 2000 ns, p99 <= 10000 ns: {}",
        if ok { "met" } else { "MISSED" }
    );
}

#[derive(Clone, Copy)]
struct Summary {
    p50: u64,
    p99: u64,
}

/// Times `calls` calls of `f`, cycling through `hellos`.
fn measure(
    name: &str,
    calls: usize,
    hellos: &[ClientHello],
    mut f: impl FnMut(&ClientHello),
) -> Summary {
    for i in 0..WARMUP.min(calls) {
        f(&hellos[i % hellos.len()]);
    }
    let mut ns = Vec::with_capacity(calls);
    for i in 0..calls {
        let hello = &hellos[i % hellos.len()];
        let start = Instant::now();
        f(hello);
        ns.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let mean = ns.iter().sum::<u64>() / calls as u64;
    ns.sort_unstable();
    let at = |q: f64| ns[((calls as f64 * q) as usize).min(calls - 1)];
    let s = Summary {
        p50: at(0.50),
        p99: at(0.99),
    };
    println!("{name:<34} {calls:>8} {:>8} {:>8} {mean:>8}", s.p50, s.p99);
    s
}

/// The mix decided: the three Hearth names and an unknown one.
fn hellos() -> Vec<ClientHello> {
    [
        "turn.hearth.example",
        "lk.hearth.example",
        "hearth.example",
        "other.example",
    ]
    .iter()
    .map(|sni| {
        HelloSpec {
            sni: Some(sni.to_string()),
            alpn: vec!["h2".into()],
            ..HelloSpec::default()
        }
        .to_hello()
        .expect("valid hello")
    })
    .collect()
}
