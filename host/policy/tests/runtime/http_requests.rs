//! `on-request`, the `http-policy` world's export: which components have
//! it, what it answers, and that policies built against `hearth:edge@0.1.0`
//! (before it existed) load and decide exactly as before.

use std::path::Path;
use std::time::Duration;

use hearth_edge_policy::guests::{SPIN, TRAP, guest, shipped_policy};
use hearth_edge_policy::{HttpDecision, HttpRequest, Limits, Policy, harness};

use super::support::{hello, runtime};

/// `policies/hearth.wasm` as built against `hearth:edge@0.1.0`, kept as it
/// shipped: the compatibility promise of the WIT's versioning rule.
const HEARTH_0_1_0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/hearth-0.1.0.wasm");

fn request(host: &str, path: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        scheme: "https".into(),
        host: host.into(),
        path: path.into(),
        query: None,
        headers: vec![("user-agent".into(), "test".into())],
        source_addr: "203.0.113.7".into(),
        source_port: 40_000,
        server_name: Some(host.into()),
        route_set: "web".into(),
        routed_to: Some("app".into()),
    }
}

fn web_gate() -> Policy {
    let path = shipped_policy("web-gate.wasm").expect("policies/web-gate.wasm is committed");
    let config = [
        ("names", "app.example"),
        ("canonical_host", "app.example"),
        ("admin_prefix", "/_/"),
        ("admin_sources", "10.0.0.0/8"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    Policy::load(&runtime(), &path, config, Limits::default()).unwrap()
}

#[test]
fn a_component_exporting_on_request_is_asked_about_requests() {
    let policy = web_gate();
    assert!(policy.handles_requests());
    assert_eq!(
        policy.on_request(&request("app.example", "/")).unwrap(),
        HttpDecision::FollowRoutes
    );
    match policy
        .on_request(&request("www.app.example", "/a"))
        .unwrap()
    {
        HttpDecision::Redirect(r) => {
            assert_eq!(
                (r.status, r.location.as_str()),
                (308, "https://app.example/a")
            );
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    match policy.on_request(&request("app.example", "/_/")).unwrap() {
        HttpDecision::Respond(r) => assert_eq!(r.status, 403),
        other => panic!("expected 403, got {other:?}"),
    }
    // The same instance pool serves connections.
    assert!(policy.decide(&hello(Some("app.example"))).is_ok());
    assert_eq!(policy.stats().decisions, 4);
}

#[test]
fn a_plain_policy_is_never_called_for_requests() {
    let path = shipped_policy("hearth.wasm").expect("policies/hearth.wasm is committed");
    let config = vec![("domain".to_owned(), "hearth.example".to_owned())];
    let policy = Policy::load(&runtime(), &path, config, Limits::default()).unwrap();
    assert!(!policy.handles_requests());
    assert_eq!(
        policy.on_request(&request("hearth.example", "/")).unwrap(),
        HttpDecision::FollowRoutes
    );
    assert_eq!(policy.stats().decisions, 0, "no call into the guest");
}

#[test]
fn a_policy_built_against_0_1_0_loads_and_passes_its_cases_unchanged() {
    let wasm = std::fs::read(HEARTH_0_1_0).unwrap();
    let imports_0_1_0 = String::from_utf8_lossy(&wasm).contains("hearth:edge/host@0.1.0");
    assert!(
        imports_0_1_0,
        "the fixture imports the 0.1.0 host interface"
    );
    let cases = Path::new(hearth_edge_policy::guests::POLICIES_DIR).join("hearth.tests.yaml");
    // Cases of keys added to the policy since (`turn_mode`) are not this
    // build's; every other case must pass unchanged.
    let mut file = harness::read_case_file(&cases).unwrap();
    let before = file.cases.len();
    file.cases.retain(|case| {
        case.config
            .as_ref()
            .is_none_or(|c| c.iter().all(|(key, _)| key != "turn_mode"))
    });
    assert!(file.cases.len() < before, "the newer cases were recognised");
    let report = harness::run_cases(
        &runtime(),
        Path::new(HEARTH_0_1_0),
        &wasm,
        &cases,
        &file,
        hearth_edge_policy::Limits::default(),
    )
    .unwrap();
    for failure in &report.failures {
        println!("{failure}");
    }
    assert!(report.failures.is_empty(), "{}", report.summary());
    assert!(report.passed >= 20, "{}", report.summary());
    let config = vec![("domain".to_owned(), "hearth.example".to_owned())];
    let policy = Policy::load(
        &runtime(),
        Path::new(HEARTH_0_1_0),
        config,
        Limits::default(),
    )
    .unwrap();
    assert!(!policy.handles_requests());
}

#[test]
fn a_spinning_on_request_is_stopped_at_max_time_and_the_next_call_works() {
    let limits = Limits {
        max_time: Duration::from_millis(20),
        ..Limits::default()
    };
    let policy = Policy::load(&runtime(), &guest(SPIN), vec![], limits).unwrap();
    assert!(policy.handles_requests());
    let err = policy.on_request(&request("spin.test", "/")).unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert_eq!(
        policy.on_request(&request("fine.test", "/")).unwrap(),
        HttpDecision::FollowRoutes
    );
    assert_eq!(policy.stats().failures, 1);
}

#[test]
fn the_trap_guest_is_a_plain_policy() {
    let policy = Policy::load(&runtime(), &guest(TRAP), vec![], Limits::default()).unwrap();
    assert!(!policy.handles_requests());
}
