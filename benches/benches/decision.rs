//! Policy decision latency: one `decide` call on a reused instance, on a
//! fresh instance (instantiate + `init` + `decide`), and the same routing as
//! native Rust (`hearth_edge_benches::NativeHearth`) as the baseline. Then
//! one `on-request` call of `policies/web-gate.wasm` on a browser-like
//! request (ten headers), against the same policy crate run natively.
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
use hearth_edge_policy::{ClientHello, HttpRequest, Limits, Policy, Runtime, RuntimeOptions};
use hearth_edge_sdk::{HttpPolicy, Policy as _};

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
    let base = measure_each("native Rust (baseline)", CALLS, &hellos, |h| {
        black_box(native.decide(black_box(h)));
    });
    let reused = measure_each("wasm, reused instance", CALLS, &hellos, |h| {
        black_box(policy.decide(black_box(h)).expect("decides"));
    });
    let fresh = measure_each("wasm, fresh instance per call", FRESH_CALLS, &hellos, |h| {
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
    on_request(&runtime);
    languages(&runtime);
}

/// The same allow-list in Python (`policies/py-allow-list`) and in Rust
/// (the crate `hearth-wasm-edge new` writes), both as components on reused
/// instances; `benches/policy/languages.sh` builds both and names them in
/// `HEARTH_BENCH_PY_POLICY` and `HEARTH_BENCH_RUST_ALLOW_LIST`.
fn languages(runtime: &Runtime) {
    let path = |var: &str| std::env::var_os(var).map(std::path::PathBuf::from);
    let (Some(python), Some(rust)) = (
        path("HEARTH_BENCH_PY_POLICY"),
        path("HEARTH_BENCH_RUST_ALLOW_LIST"),
    ) else {
        println!("\nlanguages: skipped (run benches/policy/languages.sh)");
        return;
    };
    let config = vec![(
        "names".to_owned(),
        "app.localhost, *.app.localhost".to_owned(),
    )];
    let load = |p: &std::path::Path| {
        Policy::load(runtime, p, config.clone(), Limits::default()).expect("policy loads")
    };
    let (python, rust) = (load(&python), load(&rust));
    let hellos: Vec<ClientHello> = [
        Some("app.localhost"),
        Some("api.app.localhost"),
        Some("other.example"),
        None,
    ]
    .iter()
    .map(|sni| {
        HelloSpec {
            sni: sni.map(str::to_owned),
            ..HelloSpec::default()
        }
        .to_hello()
        .expect("hello")
    })
    .collect();
    println!("\nallow-list policy, reused instance, same hellos and config");
    let base = measure_each("Rust component (baseline)", CALLS, &hellos, |h| {
        black_box(rust.decide(black_box(h)).expect("decides"));
    });
    let py = measure_each("Python component", CALLS / 10, &hellos, |h| {
        black_box(python.decide(black_box(h)).expect("decides"));
    });
    println!(
        "python: p50 {:.1}x rust, p99 {:.1}x rust",
        py.p50 as f64 / base.p50.max(1) as f64,
        py.p99 as f64 / base.p99.max(1) as f64
    );
}

/// `on-request` of web-gate: wasm (reused instance) vs the crate natively.
fn on_request(runtime: &Runtime) {
    let Some(path) = shipped_policy("web-gate.wasm") else {
        println!("on-request: policies/web-gate.wasm not built, skipped");
        return;
    };
    let config: Vec<(String, String)> = WEB_GATE_CONFIG
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let policy = Policy::load(runtime, &path, config.clone(), Limits::default()).expect("loads");
    let native =
        web_gate_policy::WebGate::init(&hearth_edge_sdk::Config::new(config)).expect("native init");
    let requests = requests();
    let native_requests: Vec<hearth_edge_sdk::HttpRequest> = requests.iter().map(to_sdk).collect();
    println!();
    println!("policy: policies/web-gate.wasm (on-request, 10 request headers)");
    let base = measure_each("native Rust (baseline)", CALLS, &native_requests, |r| {
        black_box(native.on_request(black_box(r)));
    });
    let wasm = measure_each("wasm on-request, reused instance", CALLS, &requests, |r| {
        black_box(policy.on_request(black_box(r)).expect("answers"));
    });
    println!(
        "on-request: p50 {:.0}x native, p99 {:.0}x native",
        wasm.p50 as f64 / base.p50.max(1) as f64,
        wasm.p99 as f64 / base.p99.max(1) as f64
    );
}

/// web-gate's config for the bench: every rule on, no rate limit (a
/// limit would answer 429 after the burst and measure something else).
const WEB_GATE_CONFIG: &[(&str, &str)] = &[
    ("names", "app.example, www.app.example"),
    ("routes", "site"),
    ("canonical_host", "app.example"),
    ("admin_prefix", "/_/"),
    ("admin_sources", "10.0.0.0/8"),
    ("canary_header", "x-canary"),
    ("canary_backend", "next"),
];

/// A mix that takes each rule: followed, redirected, the admin area from
/// an admin source (a refusal would log a line, natively to stderr, and
/// measure the terminal), canary.
fn requests() -> Vec<HttpRequest> {
    let browser_headers = [
        ("host", "app.example"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("cookie", "pb_auth=eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "none"),
        ("upgrade-insecure-requests", "1"),
    ];
    [
        ("app.example", "/index.html"),
        ("www.app.example", "/a"),
        ("app.example", "/_/"),
        ("app.example", "/canary"),
    ]
    .iter()
    .map(|(host, path)| {
        let mut headers: Vec<(String, String)> = browser_headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        if *path == "/canary" {
            headers.pop();
            headers.push(("x-canary".into(), "1".into()));
        }
        HttpRequest {
            method: "GET".into(),
            scheme: "https".into(),
            host: (*host).into(),
            path: (*path).into(),
            query: None,
            headers,
            source_addr: if path.starts_with("/_/") {
                "10.1.2.3".into()
            } else {
                "203.0.113.7".into()
            },
            source_port: 40_000,
            server_name: Some((*host).into()),
            route_set: "site".into(),
            routed_to: Some("web".into()),
        }
    })
    .collect()
}

/// The same request as the SDK's type, for the native baseline.
fn to_sdk(r: &HttpRequest) -> hearth_edge_sdk::HttpRequest {
    hearth_edge_sdk::HttpRequest {
        method: r.method.clone(),
        scheme: r.scheme.clone(),
        host: r.host.clone(),
        path: r.path.clone(),
        query: r.query.clone(),
        headers: r.headers.clone(),
        source_addr: r.source_addr.clone(),
        source_port: r.source_port,
        server_name: r.server_name.clone(),
        route_set: r.route_set.clone(),
        routed_to: r.routed_to.clone(),
    }
}

#[derive(Clone, Copy)]
struct Summary {
    p50: u64,
    p99: u64,
}

/// Times `calls` calls of `f`, cycling through `inputs`.
fn measure_each<T>(name: &str, calls: usize, inputs: &[T], mut f: impl FnMut(&T)) -> Summary {
    for i in 0..WARMUP.min(calls) {
        f(&inputs[i % inputs.len()]);
    }
    let mut ns = Vec::with_capacity(calls);
    for i in 0..calls {
        let input = &inputs[i % inputs.len()];
        let start = Instant::now();
        f(input);
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
