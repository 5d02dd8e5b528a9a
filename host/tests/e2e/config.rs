//! `hearth-wasm-edge check --config`: exit 0 on a good config, exit 1 with
//! `file:line:column: field: message` on a bad one.

use std::process::Command;

use crate::support::STEP_TIMEOUT;
use crate::support::edge::{EDGE_BIN, EdgeBuilder};
use crate::support::process::{TempDir, ToolOutput, dead_addr, run_tool};

fn check(config: &std::path::Path) -> ToolOutput {
    let mut command = Command::new(EDGE_BIN);
    command
        .arg("check")
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1");
    run_tool(command, b"", STEP_TIMEOUT * 3)
}

#[test]
fn check_accepts_a_good_config() {
    let dir = TempDir::new("check-good");
    let path = dir.join("good.yaml");
    std::fs::write(
        &path,
        EdgeBuilder::hearth()
            .limit("client_hello_timeout", "2s")
            .config_yaml(dead_addr(), None),
    )
    .unwrap();
    let out = check(&path);
    assert!(
        out.status.success(),
        "check failed on a good config:\n{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.status.code(), Some(0));
}

/// Replaces the first line starting with `prefix` (after indentation) and
/// returns the new text and that 1-based line number.
fn break_line(yaml: &str, prefix: &str, replacement: &str) -> (String, usize) {
    let index = yaml
        .lines()
        .position(|l| l.trim_start().starts_with(prefix))
        .expect("line to break");
    let lines: Vec<&str> = yaml
        .lines()
        .enumerate()
        .map(|(i, l)| if i == index { replacement } else { l })
        .collect();
    (lines.join("\n") + "\n", index + 1)
}

#[test]
fn check_names_file_line_and_field_of_a_bad_config() {
    let dir = TempDir::new("check-bad");
    let good = EdgeBuilder::hearth()
        .limit("client_hello_timeout", "2s")
        .config_yaml(dead_addr(), None);
    let cases = [
        // (line prefix to replace, replacement, field named in the error)
        (
            "client_hello_timeout:",
            "  client_hello_timeout: soon",
            "limits.client_hello_timeout",
        ),
        (
            "client_hello_timeout:",
            "  client_hello_tmeout: 2s",
            "client_hello_tmeout",
        ),
        (
            "turn:",
            "  turn: { addr: \"not an address\" }",
            "backends.turn",
        ),
    ];
    for (prefix, replacement, field) in cases {
        let (text, line) = break_line(&good, prefix, replacement);
        let path = dir.join("bad.yaml");
        std::fs::write(&path, &text).unwrap();
        let out = check(&path);
        assert_eq!(
            out.status.code(),
            Some(1),
            "check must fail on {replacement:?}:\n{}",
            out.stderr
        );
        let location = format!("{}:{line}:", path.display());
        assert!(
            out.stderr.contains(&location),
            "error must name {location}:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(field),
            "error must name {field}:\n{}",
            out.stderr
        );
    }
}

#[test]
fn check_fails_on_a_missing_policy_file() {
    let dir = TempDir::new("check-policy");
    let path = dir.join("edge.yaml");
    let yaml = EdgeBuilder::hearth()
        .config_yaml(dead_addr(), None)
        .replace("hearth.wasm", "missing.wasm");
    std::fs::write(&path, yaml).unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("missing.wasm"), "{}", out.stderr);
}

/// The deployment example the README shows (`docs/examples/hearth.yaml`)
/// passes `check`, with its certificate paths pointed at test certificates.
#[test]
fn check_accepts_the_documented_hearth_example() {
    let root = crate::support::repo_root();
    let example = std::fs::read_to_string(root.join("docs/examples/hearth.yaml")).unwrap();
    let certs = root.join("tests/peers/certs");
    let yaml = example
        .replace(
            "/etc/hearth-wasm-edge/certs/hearth.example.crt",
            &certs.join("edge.crt").display().to_string(),
        )
        .replace(
            "/etc/hearth-wasm-edge/certs/hearth.example.key",
            &certs.join("edge.key").display().to_string(),
        );
    assert_ne!(yaml, example, "the example names its certificate files");
    let dir = TempDir::new("check-example");
    // The handler and its secrets, where the image and compose put them.
    for secret in ["livekit_key", "livekit_secret"] {
        std::fs::write(dir.join(secret), "value\n").unwrap();
    }
    let yaml = yaml
        .replace(
            "/usr/lib/hearth-wasm-edge/lk-jwt.wasm",
            &root.join("handlers/lk-jwt.wasm").display().to_string(),
        )
        .replace(
            "/etc/hearth-wasm-edge/secrets",
            &dir.path().display().to_string(),
        );
    let path = dir.join("hearth.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut command = Command::new(EDGE_BIN);
    command
        .arg("check")
        .arg("--config")
        .arg(&path)
        .arg("--policy")
        .arg(root.join("policies/hearth.wasm"))
        .env("NO_COLOR", "1");
    let out = run_tool(command, b"", STEP_TIMEOUT * 3);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the documented example must pass check:\n{}{}",
        out.stdout,
        out.stderr
    );
}

/// The ACME example of the README's "Certificates" section
/// (`docs/examples/hearth-acme.yaml`) is the one the README shows, and
/// passes `check`.
#[test]
fn check_accepts_the_documented_acme_example() {
    let root = crate::support::repo_root();
    let example = std::fs::read_to_string(root.join("docs/examples/hearth-acme.yaml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let (_, body) = example
        .split_once('\n')
        .expect("a comment line, then the config");
    assert!(
        readme.contains(body),
        "README's Certificates example differs from docs/examples/hearth-acme.yaml"
    );
    let mut command = Command::new(EDGE_BIN);
    command
        .arg("check")
        .arg("--config")
        .arg(root.join("docs/examples/hearth-acme.yaml"))
        .arg("--policy")
        .arg(root.join("policies/hearth.wasm"))
        .env("NO_COLOR", "1");
    let out = run_tool(command, b"", STEP_TIMEOUT * 3);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the documented example must pass check:\n{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn a_second_edge_on_the_same_port_is_refused() {
    // Each worker binds its own socket with SO_REUSEPORT; that must not let
    // a second edge (same user, same option) join the first one's port.
    let first = EdgeBuilder::hearth().yaml("workers: 2\n").start();
    let dir = TempDir::new("port-held");
    let path = dir.join("edge.yaml");
    let yaml = EdgeBuilder::hearth()
        .yaml("workers: 2\n")
        .config_yaml(first.addr, None);
    std::fs::write(&path, yaml).unwrap();
    let mut command = Command::new(EDGE_BIN);
    command.arg("--config").arg(&path).env("NO_COLOR", "1");
    let out = run_tool(command, b"", STEP_TIMEOUT * 3);
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&first.addr.to_string())
            && out.stderr.to_lowercase().contains("in use"),
        "{}",
        out.stderr
    );
}

/// Cases aimed at the Hearth names, one of whose backends an edge config
/// may lack.
const HEARTH_CASES: &str = r#"cases:
  - name: turn is passed through
    hello: { sni: turn.hearth.test }
    expect: { passthrough: turn }
  - name: lk is terminated
    hello: { sni: lk.hearth.test }
    expect: { terminate: livekit }
"#;

/// `test --config` runs the cases with the config's `policy.config` and
/// flags a decision naming a backend the config lacks, which `test
/// --policy` alone cannot see.
#[test]
fn test_with_a_config_flags_decisions_naming_missing_backends() {
    let dir = TempDir::new("test-config");
    let cases = dir.join("cases.yaml");
    std::fs::write(&cases, HEARTH_CASES).unwrap();
    let config = dir.join("edge.yaml");
    let yaml = EdgeBuilder::hearth()
        .without_backend("livekit")
        .config_yaml(dead_addr(), None);
    std::fs::write(&config, yaml).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let mut command = Command::new(EDGE_BIN);
        command.arg("test").args(args).arg(&cases);
        run_tool(command, b"", STEP_TIMEOUT * 3)
    };
    let with_config = run(&["--config".as_ref(), config.as_os_str()]);
    assert_eq!(with_config.status.code(), Some(1), "{}", with_config.stdout);
    assert!(
        with_config
            .stdout
            .contains("lk is terminated: expected terminate livekit, got terminate livekit"),
        "{}",
        with_config.stdout
    );
    assert!(
        with_config
            .stdout
            .contains("has no backend or route set \"livekit\""),
        "{}",
        with_config.stdout
    );
    assert!(with_config.stdout.contains("1 passed, 1 failed"));

    // With every backend present the same cases pass, with the config's
    // domain (the case file has none of its own).
    std::fs::write(
        &config,
        EdgeBuilder::hearth().config_yaml(dead_addr(), None),
    )
    .unwrap();
    let complete = run(&["--config".as_ref(), config.as_os_str()]);
    assert_eq!(complete.status.code(), Some(0), "{}", complete.stdout);
    assert!(complete.stdout.contains("2 passed, 0 failed"));
}

/// `policy.cases` makes `check` (and every reload) run the cases against
/// the config: a policy that routes to a backend the config lacks is
/// refused before it can go live.
#[test]
fn check_and_reload_run_the_configs_policy_cases() {
    let dir = TempDir::new("check-cases");
    let cases = dir.join("cases.yaml");
    std::fs::write(&cases, HEARTH_CASES).unwrap();
    let good = EdgeBuilder::hearth().policy_yaml("cases", &format!("\"{}\"", cases.display()));
    let path = dir.join("edge.yaml");
    std::fs::write(&path, good.config_yaml(dead_addr(), None)).unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);

    let missing = good.clone().without_backend("livekit");
    std::fs::write(&path, missing.config_yaml(dead_addr(), None)).unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("policy.cases:")
            && out
                .stderr
                .contains("has no backend or route set \"livekit\""),
        "{}",
        out.stderr
    );

    // A missing case file is a config error with its line and field.
    let absent = good.clone().policy_yaml("cases", "absent.yaml");
    std::fs::write(&path, absent.config_yaml(dead_addr(), None)).unwrap();
    let out = check(&path);
    assert!(
        out.stderr.contains("policy.cases: no such file"),
        "{}",
        out.stderr
    );

    // A running edge keeps its config when a reload would route to nowhere.
    let edge = good.clone().start();
    edge.rewrite_config(&missing);
    edge.signal("HUP");
    let line = edge.expect_log(&["reload failed"], STEP_TIMEOUT);
    assert!(line.contains("livekit"), "{line}");
    assert_eq!(edge.logs().count("reloaded"), 0);
}
