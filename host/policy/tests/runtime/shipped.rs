//! The shipped policies' case files (`policies/*.tests.yaml`) run through the
//! harness, when the policies have been built by `policies/build.sh`.

use std::path::Path;

use hearth_edge_policy::guests::POLICIES_DIR;
use hearth_edge_policy::harness;

use super::support::runtime;

#[test]
fn shipped_policy_cases_pass() {
    let dir = Path::new(POLICIES_DIR);
    let mut ran = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let cases = entry.unwrap().path();
        let Some(name) = cases.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".tests.yaml") else {
            continue;
        };
        let wasm = dir.join(format!("{stem}.wasm"));
        if !wasm.is_file() {
            println!(
                "skipping {name}: {} not built (run policies/build.sh)",
                wasm.display()
            );
            continue;
        }
        let report = harness::run_file(&runtime(), &wasm, &cases)
            .unwrap_or_else(|e| panic!("{}: {e}", cases.display()));
        for failure in &report.failures {
            println!("{failure}");
        }
        assert!(
            report.failures.is_empty(),
            "{}: {}",
            cases.display(),
            report.summary()
        );
        assert!(report.passed > 0, "{} has no cases", cases.display());
        ran += 1;
    }
    println!("ran the cases of {ran} shipped policies");
}
