//! A real browser: headless Chromium (Debian `chromium`) loads a page from
//! the apex through the edge. Its ClientHello carries a post-quantum key
//! share (X25519MLKEM768, code point 0x11ec) and is larger than one
//! Ethernet frame, so this is the hello that split-hello bugs break.

use std::process::Command;

use crate::support::edge::EdgeBuilder;
use crate::support::nginx::{Nginx, POCKETBASE_BODY, WsEcho};
use crate::support::process::{TempDir, log_field, require_binary, run_tool};
use crate::support::{APEX_NAME, STEP_TIMEOUT, cert_path};

/// The TLS code point of the X25519MLKEM768 hybrid group.
const X25519_MLKEM768: &str = "0x11ec";

/// base64(sha256(SubjectPublicKeyInfo)) of the test leaf `cert`
/// (`edge.crt`, `turn.crt`): what Chromium's
/// `--ignore-certificate-errors-spki-list` pins, so the browser accepts
/// exactly that certificate and no other (for TURN over TLS too).
pub(crate) fn spki_pin(cert: &str) -> String {
    let script = format!(
        "openssl x509 -in '{}' -noout -pubkey | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | openssl base64 -A",
        cert_path(cert).display()
    );
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    let out = run_tool(command, b"", STEP_TIMEOUT);
    assert!(out.status.success(), "spki pin: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// Headless Chromium with its own profile, `names` resolving to
/// 127.0.0.1 and only the test leaves `certs` accepted (by SPKI pin).
pub(crate) fn chromium_command(
    chromium: &std::path::Path,
    profile: &TempDir,
    names: &[&str],
    certs: &[&str],
) -> Command {
    let rules: Vec<String> = names.iter().map(|n| format!("MAP {n} 127.0.0.1")).collect();
    let pins: Vec<String> = certs.iter().map(|c| spki_pin(c)).collect();
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--host-resolver-rules={}", rules.join(", ")))
        .arg(format!(
            "--ignore-certificate-errors-spki-list={}",
            pins.join(",")
        ));
    command
}

#[test]
fn chromium_loads_a_page_through_the_edge_with_a_post_quantum_hello() {
    let chromium = require_binary("chromium", "chromium");
    let ws = WsEcho::start();
    let nginx = Nginx::start(ws.addr);
    let edge = EdgeBuilder::hearth()
        .backend("pocketbase", nginx.pocketbase)
        .log_level("debug")
        .start();
    let profile = TempDir::new("chromium");
    let url = format!("https://{APEX_NAME}:{}/api/health", edge.addr.port());

    let mut command = chromium_command(&chromium, &profile, &[APEX_NAME], &["edge.crt"]);
    command.arg("--dump-dom").arg(&url);
    let out = run_tool(command, b"", STEP_TIMEOUT * 6);
    assert!(
        out.stdout.contains(POCKETBASE_BODY.trim()),
        "Chromium did not get the backend's page from {url}:\nstdout: {}\nstderr: {}\nedge log:\n{}",
        out.stdout,
        out.stderr,
        edge.logs().dump()
    );
    let requests = nginx.requests("pocketbase");
    assert!(
        requests.iter().any(|r| r.contains("/api/health")),
        "the page request reached the backend: {requests:?}"
    );

    let hello = edge.expect_log(&["ClientHello parsed", "sni=hearth.test"], STEP_TIMEOUT);
    let bytes: u32 = log_field(&hello, "hello_bytes")
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no hello_bytes in {hello}"));
    assert!(
        bytes > 1500,
        "a post-quantum hello is larger than one frame, got {bytes} bytes: {hello}"
    );
    assert!(
        hello.contains(X25519_MLKEM768),
        "Chromium offers an X25519MLKEM768 key share: {hello}"
    );
    // The edge answers it post-quantum: the hybrid group is negotiated.
    edge.expect_log(
        &[
            "connection closed",
            "sni=hearth.test",
            "decision=terminate",
            "backend=pocketbase",
            "tls_group=X25519MLKEM768",
        ],
        STEP_TIMEOUT,
    );
}
