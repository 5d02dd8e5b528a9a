//! `log.capture`: real ClientHellos (Chromium, curl, openssl) written as
//! cases that `hearth-wasm-edge test` passes against the same edge config;
//! sources masked; an unwritable capture file reported once.

use std::process::Command;

use crate::browser::chromium_command;
use crate::support::edge::{EDGE_BIN, EdgeBuilder};
use crate::support::http_echo::HttpEcho;
use crate::support::process::{TempDir, require_binary, run_tool};
use crate::support::tls::curl_edge;
use crate::support::{APEX_NAME, STEP_TIMEOUT, TURN_NAME, poll_until};

/// The cases written so far.
fn cases_in(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.matches("\n  - name: ").count())
        .unwrap_or(0)
}

/// One case's block of the capture file, found by its server name.
fn case_for<'a>(text: &'a str, sni: &str) -> &'a str {
    text.split("\n  - name: ")
        .find(|block| block.contains(&format!("sni: \"{sni}\"")))
        .unwrap_or_else(|| panic!("no case for {sni} in\n{text}"))
}

fn openssl_hello(addr: std::net::SocketAddr, sni: &str) {
    let mut command = Command::new(require_binary("openssl", "openssl"));
    command
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            sni,
        ])
        .arg("-quiet");
    let _ = run_tool(command, b"", STEP_TIMEOUT);
}

#[test]
fn real_hellos_become_cases_that_test_passes() {
    let chromium = require_binary("chromium", "chromium");
    let dir = TempDir::new("capture");
    let file = dir.join("captured.yaml");
    let site = HttpEcho::start("site");
    let edge = EdgeBuilder::hearth()
        .backend("pocketbase", site.addr)
        .log_capture(&format!("{{ file: \"{}\" }}", file.display()))
        .start();

    let curl = curl_edge(edge.addr, APEX_NAME, "/", &[]);
    assert!(curl.stdout.starts_with("site GET /"), "{}", curl.stderr);
    openssl_hello(edge.addr, TURN_NAME);
    let profile = TempDir::new("capture-chromium");
    let mut command = chromium_command(&chromium, &profile, &["www.hearth.test"], &["edge.crt"]);
    command
        .arg("--dump-dom")
        .arg(format!("https://www.hearth.test:{}/", edge.addr.port()));
    let _ = run_tool(command, b"", STEP_TIMEOUT * 6);

    poll_until(STEP_TIMEOUT, || (cases_in(&file) >= 3).then_some(()))
        .unwrap_or_else(|| panic!("3 cases in {}:\n{}", file.display(), edge.logs().dump()));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("cases:\n"), "{text}");

    // Each client's hello, as the edge saw it, with the decision taken.
    let curl_case = case_for(&text, APEX_NAME);
    assert!(
        curl_case.contains("alpn: [\"h2\", \"http/1.1\"]"),
        "{curl_case}"
    );
    assert!(
        curl_case.contains("expect: { terminate: \"pocketbase\" }"),
        "{curl_case}"
    );
    let openssl_case = case_for(&text, TURN_NAME);
    assert!(
        openssl_case.contains("expect: { passthrough: \"turn\" }"),
        "{openssl_case}"
    );
    let chromium_case = case_for(&text, "www.hearth.test");
    assert!(
        chromium_case.contains("0x11ec"),
        "Chromium offers X25519MLKEM768: {chromium_case}"
    );
    let ja4s: Vec<&str> = [curl_case, openssl_case, chromium_case]
        .iter()
        .map(|c| {
            let ja4 = c
                .split("ja4: \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("");
            assert!(ja4.starts_with("t13"), "a TLS 1.3 JA4: {c}");
            ja4
        })
        .collect();
    assert_ne!(ja4s[0], ja4s[2], "curl and Chromium hellos differ");
    // Sources are masked by default.
    assert!(!text.contains("127.0.0.1"), "{text}");
    assert!(
        text.contains("source: \"127.0.0.0\"") && text.contains("source_port: 0"),
        "{text}"
    );

    // The captured cases pass against the same edge config.
    let mut test = Command::new(EDGE_BIN);
    test.arg("test")
        .arg("--config")
        .arg(&edge.config_path)
        .arg(&file);
    let out = run_tool(test, b"", STEP_TIMEOUT * 3);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(", 0 failed"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("{} passed", cases_in(&file))),
        "{}",
        out.stdout
    );

    // explain --emit-case writes the same shape of case for a hello given
    // by hand; it parses and passes.
    let mut explain = Command::new(EDGE_BIN);
    explain
        .args([
            "explain",
            "--emit-case",
            "--sni",
            "lk.hearth.test",
            "--policy-config",
            "domain=hearth.test",
        ])
        .arg("--policy")
        .arg(crate::support::hearth_policy());
    let out = run_tool(explain, b"", STEP_TIMEOUT * 3);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with("  - name: \"lk.hearth.test (from explain)\""),
        "{}",
        out.stdout
    );
    let emitted = dir.join("emitted.yaml");
    std::fs::write(
        &emitted,
        format!("config: {{ domain: hearth.test }}\ncases:\n{}", out.stdout),
    )
    .unwrap();
    let mut test = Command::new(EDGE_BIN);
    test.args(["test", "--policy"])
        .arg(crate::support::hearth_policy())
        .arg(&emitted);
    let out = run_tool(test, b"", STEP_TIMEOUT * 3);
    assert!(
        out.stdout.contains("1 passed, 0 failed"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn an_unwritable_capture_file_is_reported_once() {
    let dir = TempDir::new("capture-unwritable");
    // A directory where the file should be: every open fails, also as root.
    let file = dir.join("captured.yaml");
    std::fs::create_dir(&file).unwrap();
    let site = HttpEcho::start("site");
    let edge = EdgeBuilder::hearth()
        .backend("pocketbase", site.addr)
        .log_capture(&format!("{{ file: \"{}\" }}", file.display()))
        .start();
    for _ in 0..3 {
        let out = curl_edge(edge.addr, APEX_NAME, "/", &[]);
        assert!(
            out.stdout.starts_with("site GET /"),
            "served anyway: {}",
            out.stderr
        );
    }
    edge.expect_log(&["cannot write log.capture file"], STEP_TIMEOUT);
    // Writable again: the next case is written, and the writer says so;
    // by then every earlier case has been tried (one queue, in order).
    std::fs::remove_dir(&file).unwrap();
    let out = curl_edge(edge.addr, APEX_NAME, "/", &[]);
    assert!(out.stdout.starts_with("site GET /"), "{}", out.stderr);
    edge.expect_log(&["log.capture file writable again"], STEP_TIMEOUT);
    assert_eq!(
        edge.logs().count("cannot write log.capture file"),
        1,
        "{}",
        edge.logs().dump()
    );
    assert_eq!(cases_in(&file), 1, "only the case after recovery");
}
