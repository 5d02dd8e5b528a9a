//! Certificates: ACME against a real Pebble (TLS-ALPN-01 and HTTP-01, for a
//! name the Hearth policy terminates and one it passes through), the cache
//! across restarts, renewal with export and `on_renew`, the HTTP listener's
//! redirect and refusals, and hot reload of certificate files.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::support::edge::{Edge, EdgeBuilder};
use crate::support::nginx::{Nginx, POCKETBASE_BODY};
use crate::support::pebble::{Pebble, edge_ports};
use crate::support::process::{Peer, TempDir, ToolOutput, dead_addr, require_binary, run_tool};
use crate::support::tls::{first_pem_cert, openssl_s_client};
use crate::support::{APEX_NAME, LK_NAME, STEP_TIMEOUT, TURN_NAME, poll_until};

/// Time allowed for one issuance: rustls-acme polls the authorization and
/// the order with 1 s, 2 s... backoffs, so a healthy order takes ~3 s.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(40);

/// `curl https://<name>:<port><path>` through the edge, trusting only `root`.
fn curl_trusting(edge: SocketAddr, name: &str, path: &str, root: &Path) -> ToolOutput {
    let mut command = Command::new(require_binary("curl", "curl"));
    command
        .args(["-sS", "--max-time", &STEP_TIMEOUT.as_secs().to_string()])
        .arg("--cacert")
        .arg(root)
        .args(["--resolve", &format!("{name}:{}:127.0.0.1", edge.port())])
        .arg(format!("https://{name}:{}{path}", edge.port()));
    run_tool(command, b"", STEP_TIMEOUT * 2)
}

/// Waits for the edge to log that `name`'s certificate was deployed from
/// `source` (`issued` or `cache`).
fn expect_deployed(edge: &Edge, name: &str, source: &str, timeout: Duration) {
    edge.expect_log(
        &[
            "certificate deployed",
            &format!("name={name} "),
            &format!("source={source}"),
        ],
        timeout,
    );
}

/// One request on the HTTP listener; returns the whole response.
fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream.write_all(request).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    String::from_utf8_lossy(&response).into_owned()
}

/// `openssl s_server` serving `cert` + `key` on a free port (the TURN
/// backend's stand-in: a passthrough backend terminating TLS itself).
fn tls_backend(cert: &Path, key: &Path, port: u16) -> Peer {
    let mut command = Command::new(require_binary("openssl", "openssl"));
    command
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(cert)
        .arg("-cert_chain")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(["-www", "-quiet"]);
    let mut peer = Peer::spawn("openssl s_server", command);
    peer.wait_listening(port)
        .expect("openssl s_server listening");
    peer
}

fn file_mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn tls_alpn_01_for_a_terminated_and_a_passed_through_name_then_restart_from_cache() {
    let work = TempDir::new("acme-alpn");
    let (listen, http) = edge_ports();
    let pebble = Pebble::start(http.port(), listen.port());
    let nginx = Nginx::start(dead_addr());
    // The TURN stand-in starts only once the certificate is exported;
    // its port is held until then so no parallel test takes it.
    let turn_reserved =
        std::net::TcpListener::bind("127.0.0.1:0").expect("reserve the TURN backend port");
    let turn_port = turn_reserved.local_addr().unwrap().port();
    let (cert, key, renewed) = (
        work.join("export/turn/turn.crt"),
        work.join("export/turn/turn.key"),
        work.join("renewed"),
    );
    let export = format!(
        "  export:\n    - name: {TURN_NAME}\n      cert: \"{}\"\n      key: \"{}\"\n      on_renew: {{ command: [sh, -c, \"echo renewed >> '{}'\"] }}\n",
        cert.display(),
        key.display(),
        renewed.display()
    );
    let cache = work.join("cache").display().to_string();
    let builder = EdgeBuilder::hearth()
        .backend("pocketbase", nginx.pocketbase)
        .backend("turn", SocketAddr::from(([127, 0, 0, 1], turn_port)))
        .tls_yaml(&pebble.tls_yaml(&[APEX_NAME, TURN_NAME], "tls-alpn-01", &cache, &export));
    let edge = builder.start_on(listen, Some(http));

    expect_deployed(&edge, APEX_NAME, "issued", ISSUE_TIMEOUT);
    expect_deployed(&edge, TURN_NAME, "issued", ISSUE_TIMEOUT);
    // Pebble's validations were answered by the edge for both names; the
    // Hearth policy would have passed the TURN name through to a backend
    // that is not even running.
    for sni in [APEX_NAME, TURN_NAME] {
        edge.expect_log(
            &["connection closed", &format!("sni={sni} "), "decision=acme"],
            STEP_TIMEOUT,
        );
    }

    // The terminated name is served with the issued chain.
    let apex = curl_trusting(listen, APEX_NAME, "/", &pebble.issuer_root);
    assert!(apex.status.success(), "curl apex: {}", apex.stderr);
    assert_eq!(apex.stdout, POCKETBASE_BODY);

    // The passed-through name's certificate was exported (key 0600) and
    // on_renew ran; a backend serving the exported files is trusted
    // through the edge's passthrough.
    assert!(
        poll_until(STEP_TIMEOUT, || renewed.exists().then_some(())).is_some(),
        "on_renew ran:\n{}",
        edge.logs().dump()
    );
    assert_eq!(file_mode(&key), 0o600);
    drop(turn_reserved);
    let _backend = tls_backend(&cert, &key, turn_port);
    let turn = curl_trusting(listen, TURN_NAME, "/", &pebble.issuer_root);
    assert!(turn.status.success(), "curl turn: {}", turn.stderr);
    assert!(turn.stdout.contains("s_server"), "{}", turn.stdout);
    edge.expect_log(
        &["connection closed", TURN_NAME, "decision=passthrough"],
        STEP_TIMEOUT,
    );
    let exported = std::fs::read(&cert).unwrap();
    drop(edge);

    // Restart with the CA stopped (its files kept): the cached
    // certificates are served, no order is attempted, the export and
    // on_renew are left alone.
    drop(pebble.peer);
    drop(pebble.dns);
    let (listen, http) = edge_ports();
    let edge = builder.start_on(listen, Some(http));
    expect_deployed(&edge, APEX_NAME, "cache", STEP_TIMEOUT);
    expect_deployed(&edge, TURN_NAME, "cache", STEP_TIMEOUT);
    let apex = curl_trusting(listen, APEX_NAME, "/", &pebble.issuer_root);
    assert!(
        apex.status.success(),
        "curl apex from cache: {}",
        apex.stderr
    );
    for absent in ["acme failed", "trigger challenge", "certificate exported"] {
        assert_eq!(
            edge.logs().count(absent),
            0,
            "{absent}:\n{}",
            edge.logs().dump()
        );
    }
    assert_eq!(std::fs::read(&cert).unwrap(), exported);
    assert_eq!(std::fs::read_to_string(&renewed).unwrap(), "renewed\n");
}

#[test]
fn http_01_issues_through_the_http_listener_which_redirects_everything_else() {
    let work = TempDir::new("acme-http");
    let (listen, http) = edge_ports();
    let pebble = Pebble::start(http.port(), listen.port());
    let nginx = Nginx::start(dead_addr());
    let cache = work.join("cache").display().to_string();
    let edge = EdgeBuilder::hearth()
        .backend("pocketbase", nginx.pocketbase)
        .backend("livekit", nginx.livekit)
        .tls_yaml(&pebble.tls_yaml(&[APEX_NAME, LK_NAME], "http-01", &cache, ""))
        .start_on(listen, Some(http));

    expect_deployed(&edge, APEX_NAME, "issued", ISSUE_TIMEOUT);
    expect_deployed(&edge, LK_NAME, "issued", ISSUE_TIMEOUT);
    for host in [APEX_NAME, LK_NAME] {
        edge.expect_log(
            &[
                "http request",
                &format!("host={host}:{}", http.port()),
                "path=/.well-known/acme-challenge/",
                "status=200",
            ],
            STEP_TIMEOUT,
        );
    }
    assert_eq!(edge.logs().count("decision=acme"), 0, "no TLS-ALPN-01 used");
    let apex = curl_trusting(listen, APEX_NAME, "/", &pebble.issuer_root);
    assert!(apex.status.success(), "curl apex: {}", apex.stderr);
    assert_eq!(apex.stdout, POCKETBASE_BODY);

    // Everything else on the HTTP listener: 301 to https on the TLS port,
    // the Host's port dropped, path and query kept.
    let response = http_exchange(
        http,
        format!(
            "GET /app/x?y=1 HTTP/1.1\r\nHost: {LK_NAME}:{}\r\n\r\n",
            http.port()
        )
        .as_bytes(),
    );
    assert!(response.starts_with("HTTP/1.1 301 "), "{response}");
    assert!(
        response.contains(&format!(
            "\r\nLocation: https://{LK_NAME}:{}/app/x?y=1\r\n",
            listen.port()
        )),
        "{response}"
    );
    // An unknown challenge token is 404, not a redirect.
    let response = http_exchange(
        http,
        format!("GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: {APEX_NAME}\r\n\r\n")
            .as_bytes(),
    );
    assert!(response.starts_with("HTTP/1.1 404 "), "{response}");
    // Bad requests get 400 and the listener keeps serving.
    for bad in [
        &b"GET /a HTTP/1.1\r\n\r\n"[..],
        b"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    ] {
        let response = http_exchange(http, bad);
        assert!(response.starts_with("HTTP/1.1 400 "), "{bad:?}: {response}");
    }
    let curl = {
        let mut command = Command::new(require_binary("curl", "curl"));
        command
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args([
                "--resolve",
                &format!("{APEX_NAME}:{}:127.0.0.1", http.port()),
            ])
            .arg(format!("http://{APEX_NAME}:{}/login", http.port()));
        run_tool(command, b"", STEP_TIMEOUT)
    };
    assert_eq!(
        curl.stdout,
        format!("301 https://{APEX_NAME}:{}/login", listen.port()),
        "{}",
        curl.stderr
    );
}

/// A certificate for `name` in rustls-acme's cache layout (PKCS#8 key,
/// then the chain) that is valid but past two thirds of its lifetime.
fn nearly_expired_pem(name: &str) -> String {
    const SECONDS_PER_YEAR: u64 = 31_556_952;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let next_year = i32::try_from(1970 + now / SECONDS_PER_YEAR + 1).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(next_year, 6, 1);
    let cert = params.self_signed(&key).unwrap();
    format!("{}\n{}", key.serialize_pem(), cert.pem())
}

#[test]
fn a_cached_certificate_near_expiry_is_renewed_exported_and_signalled() {
    let work = TempDir::new("acme-renew");
    let (listen, http) = edge_ports();
    let pebble = Pebble::start(http.port(), listen.port());
    let cache = work.join("cache");
    // The cache layout the README documents: <cache_dir>/<16 hex digits of
    // the directory URL's SHA-256>/<name>.pem.
    let hash: String = Sha256::digest(pebble.directory.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let entry = cache.join(&hash[..16]).join(format!("{TURN_NAME}.pem"));
    std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
    let seeded = nearly_expired_pem(TURN_NAME);
    std::fs::write(&entry, &seeded).unwrap();

    // The TURN server's stand-in: counts SIGHUPs in a file.
    let (hups, ready, pid_file) = (work.join("hups"), work.join("ready"), work.join("turn.pid"));
    let script = format!(
        "trap 'echo hup >> \"{}\"' HUP; touch \"{}\"; while :; do sleep 0.05; done",
        hups.display(),
        ready.display()
    );
    let mut sh = Command::new("sh");
    sh.args(["-c", &script]);
    let turn = Peer::spawn("turn stand-in", sh);
    std::fs::write(&pid_file, turn.pid().to_string()).unwrap();
    assert!(poll_until(STEP_TIMEOUT, || ready.exists().then_some(())).is_some());

    let cert = work.join("turn.crt");
    let export = format!(
        "  export:\n    - name: {TURN_NAME}\n      cert: \"{}\"\n      key: \"{}\"\n      on_renew: {{ signal: HUP, pid_file: \"{}\" }}\n",
        cert.display(),
        work.join("turn.key").display(),
        pid_file.display()
    );
    let edge = EdgeBuilder::hearth()
        .tls_yaml(&pebble.tls_yaml(
            &[TURN_NAME],
            "tls-alpn-01",
            &cache.display().to_string(),
            &export,
        ))
        .start_on(listen, Some(http));

    // The cached certificate is served and exported at once, then renewed.
    expect_deployed(&edge, TURN_NAME, "cache", STEP_TIMEOUT);
    expect_deployed(&edge, TURN_NAME, "issued", ISSUE_TIMEOUT);
    // Two exports (the cached one at startup, the renewed one), each
    // followed by a SIGHUP.
    let lines = poll_until(STEP_TIMEOUT, || {
        let text = std::fs::read_to_string(&hups).unwrap_or_default();
        (text.lines().count() >= 2).then_some(text)
    });
    assert_eq!(
        lines.as_deref(),
        Some("hup\nhup\n"),
        "{}",
        edge.logs().dump()
    );
    assert_eq!(edge.logs().count("certificate exported"), 2);
    // The exported chain is now Pebble's, complete up to its root.
    let exported = std::fs::read_to_string(&cert).unwrap();
    assert!(!seeded.contains(exported.lines().nth(1).unwrap()));
    let mut verify = Command::new(require_binary("openssl", "openssl"));
    verify
        .args(["verify", "-CAfile"])
        .arg(&pebble.issuer_root)
        .arg("-untrusted")
        .arg(&cert)
        .arg(&cert);
    let verified = run_tool(verify, b"", STEP_TIMEOUT);
    assert!(
        verified.status.success(),
        "{}{}",
        verified.stdout,
        verified.stderr
    );
    assert_eq!(file_mode(&work.join("turn.key")), 0o600);
    // The cache holds the new certificate for the next start.
    assert_ne!(std::fs::read_to_string(&entry).unwrap(), seeded);
}

/// A self-signed certificate for `name` written to `dir/tls.crt` and
/// `dir/tls.key`, each replaced in one rename; returns its DER.
fn write_cert_pair(dir: &Path, name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    for (file, text) in [("tls.key", key.serialize_pem()), ("tls.crt", cert.pem())] {
        let temp = dir.join(format!("{file}.new"));
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, dir.join(file)).unwrap();
    }
    cert.der().to_vec()
}

/// The leaf the edge presents for `name` (no verification: self-signed).
fn served_leaf(edge: &Edge, name: &str) -> Option<Vec<u8>> {
    let output = openssl_s_client(edge.addr, Some(name), &["-showcerts"]);
    first_pem_cert(&output.stdout).map(|c| c.to_vec())
}

#[test]
fn certificate_files_are_reloaded_and_a_broken_change_is_refused() {
    let work = TempDir::new("cert-reload");
    let first = write_cert_pair(work.path(), APEX_NAME);
    let tls = format!(
        "tls:\n  certificates:\n    - {{ cert: \"{}\", key: \"{}\" }}\n",
        work.join("tls.crt").display(),
        work.join("tls.key").display()
    );
    // The edge dials the backend before its handshake: it must be alive.
    let nginx = Nginx::start(dead_addr());
    let edge = EdgeBuilder::hearth()
        .backend("pocketbase", nginx.pocketbase)
        .tls_yaml(&tls)
        .start();
    assert_eq!(served_leaf(&edge, APEX_NAME).as_deref(), Some(&first[..]));

    // Rotated (like cert-manager renewing a Secret): served without restart.
    let second = write_cert_pair(work.path(), APEX_NAME);
    let swapped = poll_until(STEP_TIMEOUT, || {
        (served_leaf(&edge, APEX_NAME).as_deref() == Some(&second[..])).then_some(())
    });
    assert!(
        swapped.is_some(),
        "new certificate not served:\n{}",
        edge.logs().dump()
    );
    edge.expect_log(&["certificate reloaded", "tls.crt"], STEP_TIMEOUT);

    // A broken certificate file is refused; the previous one stays in use.
    let refused_before = edge.logs().count("certificate reload refused");
    std::fs::write(
        work.join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\ntruncated\n",
    )
    .unwrap();
    assert!(
        edge.logs()
            .wait_for_n(
                &["certificate reload refused"],
                refused_before + 1,
                STEP_TIMEOUT
            )
            .is_some(),
        "{}",
        edge.logs().dump()
    );
    assert_eq!(served_leaf(&edge, APEX_NAME).as_deref(), Some(&second[..]));
}
