//! TURN on the website's own name (`turn_mode: apex`, a route set's
//! `stun_backend`): a TURN client over TLS to `hearth.test` completes a real
//! Allocate with coturn's plain-TCP listener behind the edge, while curl to
//! the same name gets the website; PROXY v2 gives coturn the client's
//! address; probes get byte for byte what the same website without a
//! `stun_backend` gives; headless Chromium gathers a relay candidate through
//! the edge in both modes (TURN on the apex, `turn.<domain>` passed through).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::browser::chromium_command;
use crate::support::coturn::{Coturn, Listener, TURN_PASSWORD, TURN_USER};
use crate::support::edge::{Edge, EdgeBuilder};
use crate::support::http_echo::HttpEcho;
use crate::support::process::{Peer, TempDir, require_binary};
use crate::support::tls::{connect, connect_from, curl_edge, handshake};
use crate::support::turn::{self, allocate};
use crate::support::{APEX_NAME, LK_NAME, STEP_TIMEOUT, TURN_NAME, poll_until};

/// The header timeout of these edges: what a silent client waits for.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// An edge with TURN on the apex: the apex's route set `pocketbase` has
/// `stun_backend: turn-tcp` (coturn's plain TCP, PROXY v2 when `proxy`);
/// `lk.hearth.test`'s route set `livekit` serves the same site without
/// one, as the control a probe's answers are compared with.
fn apex_edge(site: &HttpEcho, coturn: &Coturn, proxy: bool) -> Edge {
    let proxy = if proxy { "v2" } else { "off" };
    EdgeBuilder::hearth()
        .without_backend("pocketbase")
        .without_backend("livekit")
        .policy_config("turn_mode", "apex")
        .backend("site", site.addr)
        .backend_yaml(
            "turn-tcp",
            &format!("{{ addr: \"{}\", proxy_protocol: {proxy} }}", coturn.addr),
        )
        .limit("http_header_timeout", "1s")
        .admin()
        .yaml(
            "http_routes:\n\
             \x20 pocketbase:\n\
             \x20   stun_backend: turn-tcp\n\
             \x20   routes: [ { backend: site } ]\n\
             \x20 livekit:\n\
             \x20   routes: [ { backend: site } ]\n",
        )
        .start()
}

#[test]
fn turn_allocates_over_tls_on_the_apex_while_curl_gets_the_website() {
    let coturn = Coturn::start_with(Listener::PlainTcp);
    let site = HttpEcho::start("site");
    let edge = apex_edge(&site, &coturn, false);

    // A TURN client with the website's name, no ALPN: a real Allocate.
    let mut stream = connect(edge.addr, APEX_NAME, &[]).expect("TLS to the apex");
    let allocation = allocate(&mut stream, TURN_USER, TURN_PASSWORD)
        .unwrap_or_else(|e| panic!("{e}\ncoturn log:\n{}", coturn.peer.logs.dump()));
    assert_eq!(allocation.relayed.ip().to_string(), "127.0.0.1");
    // Without PROXY v2 coturn sees the edge's connection.
    assert_eq!(
        allocation.mapped.map(|a| a.ip().to_string()).as_deref(),
        Some("127.0.0.1")
    );
    // A wrong password is refused by coturn itself: the relay was real.
    let mut wrong = connect(edge.addr, APEX_NAME, &["http/1.1"]).expect("TLS to the apex");
    let refused = allocate(&mut wrong, TURN_USER, "wrong password").unwrap_err();
    assert!(refused.contains("error Some(401)"), "{refused}");
    drop((stream, wrong));
    edge.expect_log(
        &["connection closed", "decision=turn", "backend=turn-tcp"],
        STEP_TIMEOUT,
    );

    // The same name over HTTP/1.1 and HTTP/2 is the website.
    for version in ["--http1.1", "--http2"] {
        let out = curl_edge(edge.addr, APEX_NAME, "/", &[version]);
        assert!(out.status.success(), "{version}: {}", out.stderr);
        assert!(out.stdout.starts_with("site GET /"), "{}", out.stdout);
    }

    // HTTP/2 connections are never STUN: coturn is not asked.
    let mut h2 = connect(edge.addr, APEX_NAME, &["h2"]).expect("TLS with h2");
    assert!(allocate(&mut h2, TURN_USER, TURN_PASSWORD).is_err());
    drop(h2);

    // There is no turn.<domain> in this mode.
    assert!(connect(edge.addr, TURN_NAME, &[]).is_err());

    let relays = poll_until(STEP_TIMEOUT, || {
        let n = edge.metric("hearth_edge_turn_relays_total{routes=\"pocketbase\"}")?;
        (n >= 2.0).then_some(n)
    });
    assert_eq!(relays, Some(2.0), "{}", edge.admin_get("/metrics").1);
    let up = edge
        .metric("hearth_edge_turn_relay_bytes_total{routes=\"pocketbase\",direction=\"up\"}")
        .unwrap_or(0.0);
    let down = edge
        .metric("hearth_edge_turn_relay_bytes_total{routes=\"pocketbase\",direction=\"down\"}")
        .unwrap_or(0.0);
    // Four Allocates went up (two of them with credentials), four answers
    // down; STUN messages are at least 20 bytes each.
    assert!(up >= 80.0 && down >= 80.0, "up {up} down {down}");
    assert_eq!(
        edge.metric("hearth_edge_connections_closed_total{outcome=\"turn\"}"),
        Some(2.0)
    );
    assert_eq!(
        edge.metric("hearth_edge_turn_relay_duration_seconds_count{routes=\"pocketbase\"}"),
        Some(2.0)
    );
}

#[test]
fn proxy_v2_gives_turn_the_clients_address() {
    let coturn = Coturn::start_with(Listener::ProxyTcp);
    let site = HttpEcho::start("site");
    let edge = apex_edge(&site, &coturn, true);
    let sock = connect_from([127, 0, 0, 5], edge.addr);
    let mut stream = handshake(sock, APEX_NAME, &[]).expect("TLS to the apex");
    let allocation = allocate(&mut stream, TURN_USER, TURN_PASSWORD)
        .unwrap_or_else(|e| panic!("{e}\ncoturn log:\n{}", coturn.peer.logs.dump()));
    assert_eq!(
        allocation.mapped.map(|a| a.ip().to_string()).as_deref(),
        Some("127.0.0.5"),
        "coturn saw the client's address from the PROXY header"
    );
}

/// Sends `probe` over TLS to `name` (no ALPN) and reads until the edge
/// closes or `wait` passes. Returns the answer with `date:` lines removed
/// and whether the connection was closed.
fn probe(edge: &Edge, name: &str, probe: &[u8], wait: Duration) -> (String, bool) {
    let mut stream = connect(edge.addr, name, &[]).expect("TLS");
    stream.sock.set_read_timeout(Some(wait)).unwrap();
    if !probe.is_empty() {
        stream.write_all(probe).unwrap();
        stream.flush().unwrap();
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
            // A close without close_notify is a close.
            Err(_) => break true,
        }
    };
    let text = String::from_utf8_lossy(&answer)
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect::<Vec<_>>()
        .join("\n");
    (text, closed)
}

#[test]
fn probes_get_what_the_website_without_turn_gives() {
    let coturn = Coturn::start_with(Listener::PlainTcp);
    let site = HttpEcho::start("site");
    let edge = apex_edge(&site, &coturn, false);

    // Bytes from a fixed-seed generator, led by a zero byte so the sniff
    // has to look further than the first byte.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut random: Vec<u8> = (0..64)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    random[0] = 0;
    // A STUN header with the magic cookie and an absurd length.
    let mut absurd = vec![0x00, 0x03, 0xFF, 0xFC, 0x21, 0x12, 0xA4, 0x42];
    absurd.extend_from_slice(&[9; 12]);
    let probes: [(&str, Vec<u8>); 4] = [
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        ("random bytes", random),
        ("a STUN header with an absurd length", absurd),
        ("a header and half a line", b"GET / HT".to_vec()),
    ];
    let wait = HEADER_TIMEOUT + STEP_TIMEOUT;
    for (what, bytes) in &probes {
        let control = probe(&edge, LK_NAME, bytes, wait);
        let apex = probe(&edge, APEX_NAME, bytes, wait);
        assert_eq!(
            apex, control,
            "{what}: the apex answered unlike the website"
        );
        assert!(control.1, "{what}: the website closed: {control:?}");
    }
    // The HTTP probe got the page, the garbage a 400.
    let page = probe(&edge, APEX_NAME, &probes[0].1, wait).0;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("site GET /"), "{page}");
    let garbage = probe(&edge, APEX_NAME, &probes[1].1, wait).0;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    // A TLS client that sends nothing is closed at the header timeout,
    // on both names alike.
    for name in [APEX_NAME, LK_NAME] {
        let start = Instant::now();
        let (answer, closed) = probe(&edge, name, b"", wait);
        let took = start.elapsed();
        assert!(closed, "{name}: not closed within {wait:?}");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{name}: {answer}"
        );
        assert!(took >= HEADER_TIMEOUT, "{name}: closed after {took:?}");
    }
    // A STUN Binding request is TURN's on the apex, the website's 400 on
    // the name without a stun_backend.
    let binding = turn::encode(0x0001, &[1; 12], &[], None);
    let control = probe(&edge, LK_NAME, &binding, wait).0;
    assert!(control.starts_with("HTTP/1.1 400"), "{control}");
    assert_eq!(
        edge.metric("hearth_edge_turn_relays_total{routes=\"pocketbase\"}"),
        None,
        "no probe reached TURN"
    );
    let mut stream = connect(edge.addr, APEX_NAME, &[]).unwrap();
    stream.write_all(&binding).unwrap();
    let answer = turn::read_message(&mut stream).expect("coturn answers a Binding");
    assert_eq!(answer.kind, 0x0101, "Binding success from coturn");
}

/// A page server for Chromium on loopback: `GET /` is a page that gathers
/// ICE candidates with only the TURN server `turn_url`, reporting each to
/// `GET /result?...`, which is recorded.
struct PageServer {
    addr: SocketAddr,
    results: Arc<Mutex<Vec<String>>>,
}

impl PageServer {
    fn start(turn_url: &str) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let results = Arc::new(Mutex::new(Vec::new()));
        let page = format!(
            "<!doctype html><html><body><script>\n\
             const report = r => fetch('/result?' + encodeURIComponent(r));\n\
             (async () => {{ try {{\n\
             const pc = new RTCPeerConnection({{iceServers: [{{urls: '{turn_url}', \
             username: '{TURN_USER}', credential: '{TURN_PASSWORD}'}}], iceTransportPolicy: 'relay'}});\n\
             pc.createDataChannel('probe');\n\
             pc.onicecandidate = e => report(e.candidate ? 'candidate ' + e.candidate.candidate : 'done');\n\
             pc.onicecandidateerror = e => report('error ' + e.errorCode + ' ' + e.errorText);\n\
             await pc.setLocalDescription(await pc.createOffer());\n\
             }} catch (e) {{ report('exception ' + e); }} }})();\n\
             </script></body></html>"
        );
        let recorded = results.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                conn.set_read_timeout(Some(STEP_TIMEOUT)).ok();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                let body = if let Some(query) = target.strip_prefix("/result?") {
                    recorded.lock().unwrap().push(percent_decode(query));
                    String::new()
                } else {
                    page.clone()
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        PageServer { addr, results }
    }

    fn results(&self) -> Vec<String> {
        self.results.lock().unwrap().clone()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs Chromium on a page that gathers candidates through `turn_url`
/// (trusting `certs`) and returns the relay candidate it reported.
fn chromium_relay_candidate(turn_url: &str, names: &[&str], certs: &[&str]) -> String {
    let chromium = require_binary("chromium", "chromium");
    let page = PageServer::start(turn_url);
    let profile = TempDir::new("chromium-turn");
    let mut command = chromium_command(&chromium, &profile, names, certs);
    command.arg(format!("http://{}/", page.addr));
    let browser = Peer::spawn("chromium", command);
    let found = poll_until(STEP_TIMEOUT * 3, || {
        let results = page.results();
        results
            .iter()
            .find(|r| r.contains(" typ relay "))
            .cloned()
            .or_else(|| results.iter().any(|r| r == "done").then(String::new))
    });
    let results = page.results();
    drop(browser);
    match found {
        Some(candidate) if !candidate.is_empty() => candidate,
        _ => panic!("Chromium gathered no relay candidate through {turn_url}: {results:?}"),
    }
}

#[test]
fn chromium_gathers_a_relay_candidate_with_turn_on_the_apex() {
    let coturn = Coturn::start_with(Listener::PlainTcp);
    let site = HttpEcho::start("site");
    let edge = apex_edge(&site, &coturn, false);
    let url = format!("turns:{APEX_NAME}:{}?transport=tcp", edge.addr.port());
    let candidate = chromium_relay_candidate(&url, &[APEX_NAME], &["edge.crt"]);
    assert!(candidate.contains("127.0.0.1"), "{candidate}");
    edge.expect_log(
        &["connection closed", "sni=hearth.test", "decision=turn"],
        STEP_TIMEOUT,
    );
}

#[test]
fn chromium_gathers_a_relay_candidate_through_the_passed_through_turn_name() {
    let coturn = Coturn::start();
    let edge = EdgeBuilder::hearth().backend("turn", coturn.addr).start();
    let url = format!("turns:{TURN_NAME}:{}?transport=tcp", edge.addr.port());
    let candidate = chromium_relay_candidate(&url, &[TURN_NAME], &["turn.crt"]);
    assert!(candidate.contains("127.0.0.1"), "{candidate}");
    edge.expect_log(
        &[
            "connection closed",
            "sni=turn.hearth.test",
            "decision=passthrough",
        ],
        STEP_TIMEOUT,
    );
}

/// The README's TURN-on-the-apex config, given a listener and the test
/// certificate, passes `check` (its policy config and route set agree).
#[test]
fn the_documented_apex_config_passes_check() {
    let root = crate::support::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let (_, after) = readme
        .split_once("The edge config and the TURN server's for TURN on the apex")
        .expect("the Stealth TURN example");
    let block = after
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block");
    assert!(block.contains("stun_backend: turn-tcp"), "{block}");
    let certs = root.join("tests/peers/certs");
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\n{}tls:\n  certificates:\n    - {{ cert: \"{}\", key: \"{}\" }}\n",
        block.replace(
            "/usr/lib/hearth-wasm-edge/hearth.wasm",
            &root.join("policies/hearth.wasm").display().to_string()
        ),
        certs.join("edge.crt").display(),
        certs.join("edge.key").display()
    );
    let dir = TempDir::new("stealth-check");
    let path = dir.join("edge.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut command = std::process::Command::new(crate::support::edge::EDGE_BIN);
    command.arg("check").arg("--config").arg(&path);
    let out = crate::support::process::run_tool(command, b"", STEP_TIMEOUT * 3);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
}
