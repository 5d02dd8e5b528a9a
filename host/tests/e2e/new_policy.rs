//! `hearth-wasm-edge new`: the generated crates (a policy and an HTTP
//! policy) pass their own `cargo test`, build for `wasm32-wasip2`, pass
//! `hearth-wasm-edge test` (with and without their dev config), and route
//! real requests in an edge; `new` refuses a non-empty directory.

use std::path::Path;
use std::process::Command;

use crate::support::edge::{EDGE_BIN, EdgeBuilder};
use crate::support::http_echo::HttpEcho;
use crate::support::process::{
    Peer, TempDir, ToolOutput, dead_addr, free_port, require_binary, run_tool,
};
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

/// curl to the dev edge for `name`, trusting the crate's local CA.
fn curl_dev(dir: &Path, edge: u16, name: &str, max_time: &str) -> ToolOutput {
    let mut command = Command::new(require_binary("curl", "curl"));
    command
        .args(["-sS", "--max-time", max_time, "--cacert"])
        .arg(dir.join(".dev-ca/ca.crt"))
        .arg("--resolve")
        .arg(format!("{name}:{edge}:127.0.0.1"))
        .arg(format!("https://{name}:{edge}/hello"));
    run_tool(command, b"", STEP_TIMEOUT * 2)
}

/// `dev` on a fresh crate: builds, runs the cases, serves through the echo
/// backend; a save that does not compile or fails a case keeps the running
/// policy and says why in one line; a good save reloads; the sink reports
/// a passed-through hello; a dial that fails after a decision is logged as
/// that decision with `outcome=error`.
#[test]
fn dev_builds_tests_and_reloads_on_every_save() {
    let root = TempDir::new("dev-loop");
    // Without a config, or with one outside a crate: one clear error.
    let missing = edge(&["dev", "--config", "nope.yaml"], root.path());
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        missing.stderr.contains("nope.yaml: no such config"),
        "{}",
        missing.stderr
    );
    std::fs::write(root.join("loose.yaml"), "listen: \"127.0.0.1:0\"\n").unwrap();
    let loose = edge(&["dev", "--config", "loose.yaml"], root.path());
    assert_eq!(loose.status.code(), Some(1));
    assert!(
        loose.stderr.contains("no Cargo.toml beside the config"),
        "{}",
        loose.stderr
    );

    let out = edge(&["new", "mypol"], root.path());
    assert!(out.status.success(), "new: {}{}", out.stdout, out.stderr);
    let dir = root.join("mypol");
    std::fs::copy(repo_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let (listen, admin, echo, sink) = (free_port(), free_port(), free_port(), free_port());
    let down = dead_addr();
    let dev_yaml = std::fs::read_to_string(dir.join("dev.yaml"))
        .unwrap()
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{listen}"))
        .replace("127.0.0.1:9180", &format!("127.0.0.1:{admin}"))
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{echo}"))
        .replace("127.0.0.1:3001", &format!("127.0.0.1:{sink}"))
        .replace(
            "backends:\n",
            &format!("backends:\n  down: {{ addr: \"{down}\" }}\n"),
        );
    std::fs::write(dir.join("dev.yaml"), dev_yaml).unwrap();

    let mut command = Command::new(EDGE_BIN);
    command
        .current_dir(&dir)
        .args(["dev", "--echo", &format!("127.0.0.1:{echo}")])
        .args(["--sink", &format!("127.0.0.1:{sink}")])
        .env("NO_COLOR", "1")
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS");
    let dev = Peer::spawn("dev", command);
    let wait = |needles: &[&str]| {
        dev.logs
            .wait_for(needles, STEP_TIMEOUT * 12)
            .unwrap_or_else(|| panic!("no {needles:?} in:\n{}", dev.logs.dump()))
    };
    wait(&["dev: build  ok"]);
    wait(&["dev: cases  6 passed, 0 failed"]);
    wait(&["edge started"]);

    let answer = curl_dev(&dir, listen, "app.localhost", "10");
    assert!(
        answer.stdout.contains("echo backend") && answer.stdout.contains("GET /hello HTTP/1.1"),
        "{}{}",
        answer.stdout,
        answer.stderr
    );
    wait(&["dev: echo   GET /hello (host app.localhost"]);

    // A save that does not compile: the compiler's first error, and the
    // running policy keeps serving.
    let lib = dir.join("src/lib.rs");
    let good = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        good.replace("Some(_) => Decision::reject", "Some(_) => Decision::rejec"),
    )
    .unwrap();
    let failed = wait(&["dev: build  failed, the running policy stays:"]);
    assert!(
        failed.contains("src/lib.rs:") && failed.contains("error"),
        "{failed}"
    );
    let still = curl_dev(&dir, listen, "app.localhost", "10");
    assert!(still.stdout.contains("GET /hello"), "{}", still.stderr);

    // A save that builds but routes to a backend the config lacks: the
    // cases refuse it.
    std::fs::write(
        &lib,
        good.replace("unwrap_or(\"app\")", "unwrap_or(\"nowhere\")"),
    )
    .unwrap();
    let refused = wait(&["dev: cases", "the running policy stays"]);
    assert!(
        refused.contains("no backend or route set \"nowhere\""),
        "{refused}"
    );
    assert_eq!(dev.logs.count("dev: reload"), 0, "{}", dev.logs.dump());

    // A good save: built, tested, reloaded. `sink.` names pass through to
    // the sink, `down.` names to a backend where nothing listens.
    let routed = good.replace(
        "        match hello.server_name() {\n",
        "        match hello.server_name() {\n            Some(sni) if sni.starts_with(\"sink.\") => Decision::passthrough(\"sink\"),\n            Some(sni) if sni.starts_with(\"down.\") => Decision::passthrough(\"down\"),\n",
    );
    assert_ne!(routed, good, "the template's match moved");
    std::fs::write(&lib, routed).unwrap();
    wait(&["dev: reload ok, serving mypol"]);

    let _ = curl_dev(&dir, listen, "sink.app.localhost", "2");
    wait(&["dev: sink", "TLS ClientHello, sni=sink.app.localhost"]);

    let _ = curl_dev(&dir, listen, "down.app.localhost", "5");
    let closed = wait(&["connection closed", "sni=down.app.localhost"]);
    assert!(
        closed.contains("decision=passthrough")
            && closed.contains("outcome=error")
            && closed.contains("backend=down"),
        "{closed}"
    );
}

/// The cases of a case file without its leading comment lines.
fn case_body(text: &str) -> String {
    text.lines()
        .skip_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A policy in Python (componentize-py) answers the cases `new` writes for
/// its Rust allow-list, unchanged, and routes real connections in an edge;
/// its host log calls reach the edge's log.
#[test]
fn a_python_policy_passes_the_rust_templates_cases_and_routes() {
    let component = Path::new(hearth_edge_policy::guests::GUEST_DIR)
        .join(hearth_edge_policy::guests::PY_ALLOW_LIST);
    assert!(
        component.is_file(),
        "{} is missing: run policies/py-allow-list/build.sh (needs componentize-py from PyPI)",
        component.display()
    );
    let cases = repo_root().join("policies/py-allow-list.tests.yaml");
    let template = include_str!("../../templates/policy/cases.yaml.in");
    assert_eq!(
        case_body(&std::fs::read_to_string(&cases).unwrap()),
        case_body(template),
        "policies/py-allow-list.tests.yaml must hold the template's cases"
    );
    let policy = component.display().to_string();
    let out = edge(
        &["test", "--policy", &policy, &cases.display().to_string()],
        &repo_root(),
    );
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("6 passed, 0 failed"), "{}", out.stdout);

    let site = HttpEcho::start("site");
    let edge_proc = EdgeBuilder::with_policy(&component)
        .policy_config("names", APEX_NAME)
        .backend("app", site.addr)
        .start();
    let out = curl_edge(edge_proc.addr, APEX_NAME, "/", &[]);
    assert!(out.stdout.starts_with("site GET /"), "{}", out.stderr);
    edge_proc.expect_log(&["allow-list of 1 names into app"], STEP_TIMEOUT);
    let refused = curl_edge(edge_proc.addr, "other.hearth.test", "/", &[]);
    assert!(!refused.status.success(), "{}", refused.stdout);
    edge_proc.expect_log(
        &[
            "connection rejected",
            "sni=other.hearth.test",
            "reason=unknown-sni",
        ],
        STEP_TIMEOUT,
    );
}
