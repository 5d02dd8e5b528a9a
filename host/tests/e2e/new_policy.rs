//! `hearth-wasm-edge new`: the generated crates (a policy and an HTTP
//! policy) pass their own `cargo test`, build for `wasm32-wasip2`, pass
//! `hearth-wasm-edge test` (with and without their dev config), and route
//! real requests in an edge; `new` refuses a non-empty directory.

use std::path::Path;
use std::process::Command;

use crate::support::edge::{EDGE_BIN, EdgeBuilder};
use crate::support::http_echo::HttpEcho;
use crate::support::process::{TempDir, ToolOutput, run_tool};
use crate::support::tls::curl_edge;
use crate::support::{APEX_NAME, STEP_TIMEOUT, repo_root};

/// Runs `cargo args…` in `dir` with a shared target dir, offline (the
/// workspace's lock file is copied in, so every crate is in the cache).
fn cargo(dir: &Path, target: &Path, args: &[&str]) -> ToolOutput {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(dir)
        .args(args)
        .arg("--offline")
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS");
    run_tool(command, b"", STEP_TIMEOUT * 30)
}

fn edge(args: &[&str], dir: &Path) -> ToolOutput {
    let mut command = Command::new(EDGE_BIN);
    command.current_dir(dir).args(args).env("NO_COLOR", "1");
    run_tool(command, b"", STEP_TIMEOUT * 3)
}

/// `new` → `cargo test` → wasm build → `hearth-wasm-edge test`, for one
/// crate; returns the component's path.
fn scaffold(root: &Path, target: &Path, name: &str, http: bool) -> std::path::PathBuf {
    let mut args = vec!["new", name];
    if http {
        args.push("--http");
    }
    let out = edge(&args, root);
    assert!(out.status.success(), "new: {}{}", out.stdout, out.stderr);
    let dir = root.join(name);
    for file in ["Cargo.toml", "src/lib.rs", "cases.yaml", "dev.yaml"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    std::fs::copy(repo_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();

    let test = cargo(&dir, target, &["test"]);
    assert!(
        test.status.success(),
        "cargo test: {}{}",
        test.stdout,
        test.stderr
    );
    assert!(test.stdout.contains("cases_pass ... ok"), "{}", test.stdout);

    let build = cargo(
        &dir,
        target,
        &["build", "--release", "--target", "wasm32-wasip2"],
    );
    assert!(build.status.success(), "wasm build: {}", build.stderr);
    let wasm = target.join(format!(
        "wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    ));
    assert!(wasm.is_file(), "no {}", wasm.display());

    let wasm_arg = wasm.display().to_string();
    let cases = edge(&["test", "--policy", &wasm_arg, "cases.yaml"], &dir);
    assert!(cases.status.success(), "{}", cases.stdout);
    assert!(cases.stdout.contains(", 0 failed"), "{}", cases.stdout);
    // The dev config names the built component in the crate's own target
    // dir; point it at the shared one, then its policy.cases run at check.
    let dev = std::fs::read_to_string(dir.join("dev.yaml"))
        .unwrap()
        .replace(
            &format!(
                "target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ),
            &wasm_arg,
        );
    std::fs::write(dir.join("dev.yaml"), dev).unwrap();
    let with_config = edge(&["test", "--config", "dev.yaml", "cases.yaml"], &dir);
    assert!(with_config.status.success(), "{}", with_config.stdout);
    let check = edge(&["check", "--config", "dev.yaml"], &dir);
    assert!(check.status.success(), "{}{}", check.stdout, check.stderr);
    wasm
}

#[test]
fn new_policy_crates_build_pass_their_cases_and_route_in_an_edge() {
    let root = TempDir::new("new-policy");
    let target = root.join("target");
    let site = HttpEcho::start("site");

    let policy = scaffold(root.path(), &target, "allow-list", false);
    // Generated into a directory that is not empty: refused, nothing lost.
    let again = edge(&["new", "allow-list"], root.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(again.stderr.contains("is not empty"), "{}", again.stderr);
    assert!(root.join("allow-list/cases.yaml").is_file());

    let edge_proc = EdgeBuilder::with_policy(&policy)
        .policy_config("names", APEX_NAME)
        .backend("app", site.addr)
        .start();
    let out = curl_edge(edge_proc.addr, APEX_NAME, "/", &[]);
    assert!(out.stdout.starts_with("site GET /"), "{}", out.stderr);
    drop(edge_proc);

    let gate = scaffold(root.path(), &target, "gate", true);
    let edge_proc = EdgeBuilder::with_policy(&gate)
        .policy_config("names", APEX_NAME)
        .backend("app", site.addr)
        .yaml("http_routes:\n  web:\n    routes: [ { backend: app } ]\n")
        .start();
    let open = curl_edge(edge_proc.addr, APEX_NAME, "/", &[]);
    assert!(open.stdout.starts_with("site GET /"), "{}", open.stderr);
    let blocked = curl_edge(edge_proc.addr, APEX_NAME, "/admin/x", &[]);
    assert_eq!(blocked.stdout, "forbidden\n", "{}", blocked.stderr);
}
