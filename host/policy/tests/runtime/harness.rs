//! The case-file harness against a real policy (the `trap` test guest):
//! passing and failing cases, init refusals, per-case configs.

use std::path::Path;

use hearth_edge_policy::guests::{TRAP, guest};
use hearth_edge_policy::harness::{self, HarnessError};

use super::support::{ScratchDir, runtime};

const CASES: &str = r#"
config:
  mode: normal
cases:
  - name: passes through to ok
    hello: { sni: fine.test }
    expect: { passthrough: ok, proxy_protocol: backend-default }
  - name: wrong backend fails
    hello: { sni: fine.test }
    expect: { passthrough: elsewhere }
  - name: a trap fails a routing case
    hello: { sni: trap.test }
    expect: { passthrough: ok }
  - name: init refusal is expected
    config: { refuse: "yes" }
    expect: { init_error: refuses this config }
  - name: init refusal with the wrong text fails
    config: { refuse: "yes" }
    expect: { init_error: something else }
  - name: a refused config fails a routing case
    config: { refuse: "yes" }
    hello: { sni: fine.test }
    expect: { terminate: ok }
"#;

fn run(text: &str) -> Result<harness::Report, HarnessError> {
    let dir = ScratchDir::new("harness");
    let cases = dir.0.join("trap.tests.yaml");
    std::fs::write(&cases, text).unwrap();
    harness::run_file(&runtime(), &guest(TRAP), &cases)
}

#[test]
fn cases_pass_and_fail_as_they_should() {
    let report = run(CASES).unwrap();
    assert_eq!(report.summary(), "2 passed, 4 failed");
    let failed: Vec<String> = report
        .failures
        .iter()
        .map(|f| format!("{}: expected {}, got {}", f.case, f.expected, f.got))
        .collect();
    assert_eq!(
        failed[0],
        "wrong backend fails: expected passthrough elsewhere, got passthrough ok (proxy_protocol backend-default)"
    );
    assert!(
        failed[1].starts_with(
            "a trap fails a routing case: expected passthrough ok, got error: policy trapped:"
        ),
        "{}",
        failed[1]
    );
    assert!(
        failed[1].contains("trap guest asked to panic"),
        "{}",
        failed[1]
    );
    assert_eq!(
        failed[2],
        "init refusal with the wrong text fails: expected init error containing \"something else\", got init error \"trap guest refuses this config\""
    );
    assert_eq!(
        failed[3],
        "a refused config fails a routing case: expected terminate ok, got init error \"trap guest refuses this config\""
    );
    let line = report.failures[0].to_string();
    assert!(
        line.starts_with("FAIL ")
            && line.contains("trap.tests.yaml: wrong backend fails: expected"),
        "{line}"
    );
}

#[test]
fn a_malformed_file_is_an_error_naming_line_and_field() {
    let err =
        run("cases:\n  - name: x\n    expect: { passthrough: ok, alert: close }\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("trap.tests.yaml"), "{msg}");
    assert!(msg.contains("cases[0].expect"), "{msg}");
    let err =
        run("cases:\n  - name: x\n    hello: { sni: a, alpn: h2 }\n    expect: { reject: r }\n")
            .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("trap.tests.yaml:3:"), "{msg}");
    assert!(msg.contains("cases[0].hello.alpn"), "{msg}");
}

#[test]
fn a_policy_that_is_not_one_is_a_load_error() {
    let dir = ScratchDir::new("harness-bad");
    let cases = dir.0.join("x.tests.yaml");
    std::fs::write(&cases, "cases: []\n").unwrap();
    let bogus = dir.0.join("bogus.wasm");
    std::fs::write(&bogus, b"nope").unwrap();
    let err = harness::run_file(&runtime(), &bogus, &cases).unwrap_err();
    assert!(matches!(err, HarnessError::Load(_)), "{err:?}");
    assert!(err.to_string().contains("bogus.wasm"), "{err}");
    let err = harness::run_file(&runtime(), Path::new("/nonexistent.wasm"), &cases).unwrap_err();
    assert!(err.to_string().contains("/nonexistent.wasm"), "{err}");
}
