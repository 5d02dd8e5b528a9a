//! The HTTP mode: the Hearth policy terminates the apex as usual, but its
//! `pocketbase` target is an `http_routes` set, so requests are routed by
//! path to real backends (`tests/peers/http_echo.py`, the WebSocket echo
//! server), with curl over HTTP/1.1 and HTTP/2 as clients. Forwarding and
//! hop-by-hop headers, WebSocket upgrades, SSE streaming, pools with a dead
//! member and forward auth are checked against what the backends received.

use std::process::Command;

use crate::support::edge::{Edge, EdgeBuilder};
use crate::support::http_echo::{HttpEcho, echoed_header};
use crate::support::nginx::WsEcho;
use crate::support::process::{Peer, TempDir, dead_addr, free_port, require_binary};
use crate::support::tls::connect;
use crate::support::tls::{curl_edge, curl_plain};
use crate::support::websocket::{self, OP_BINARY, OP_TEXT};
use crate::support::{APEX_NAME, LK_NAME, STEP_TIMEOUT, cert_path, poll_until};

/// An edge config whose `pocketbase` decision goes to the route set
/// `pocketbase` (`set_yaml`: its body, indented four spaces), with
/// `backends` added.
fn http_builder(backends: &[(&str, String)], set_yaml: &str) -> EdgeBuilder {
    let mut builder = EdgeBuilder::hearth().without_backend("pocketbase");
    for (name, yaml) in backends {
        builder = builder.backend_yaml(name, yaml);
    }
    builder.yaml(&format!("http_routes:\n  pocketbase:\n{set_yaml}"))
}

/// [`http_builder`], started.
fn http_edge(backends: &[(&str, String)], set_yaml: &str) -> Edge {
    http_builder(backends, set_yaml).start()
}

fn addr_yaml(addr: std::net::SocketAddr) -> String {
    format!("{{ addr: \"{addr}\" }}")
}

#[test]
fn routes_by_path_over_h1_and_h2_with_forwarding_headers() {
    let front = HttpEcho::start("front");
    let api = HttpEcho::start("api");
    let edge = http_edge(
        &[
            ("front", addr_yaml(front.addr)),
            ("api", addr_yaml(api.addr)),
        ],
        "    routes:\n\
         \x20     - { path_prefix: /api, backend: api, strip_prefix: true }\n\
         \x20     - { host: hearth.test, path_prefix: /app, backend: front }\n",
    );
    let host = format!("{APEX_NAME}:{}", edge.addr.port());

    // HTTP/1.1: prefix stripped, query kept, spoofed and hop-by-hop headers gone.
    let h1 = curl_edge(
        edge.addr,
        APEX_NAME,
        "/api/v1/items?x=1",
        &[
            "--http1.1",
            "-H",
            "X-Forwarded-For: 6.6.6.6",
            "-H",
            "Forwarded: for=6.6.6.6",
            "-H",
            "Connection: X-Secret",
            "-H",
            "X-Secret: 1",
            "-H",
            "Keep-Alive: timeout=5",
        ],
    );
    assert!(h1.status.success(), "{}", h1.stderr);
    assert!(h1.stderr.contains("< HTTP/1.1 200"), "{}", h1.stderr);
    let body = &h1.stdout;
    assert_eq!(body.lines().next(), Some("api GET /v1/items?x=1"), "{body}");
    assert_eq!(echoed_header(body, "host"), Some(host.as_str()), "{body}");
    assert_eq!(
        echoed_header(body, "x-forwarded-for"),
        Some("127.0.0.1"),
        "{body}"
    );
    assert_eq!(
        echoed_header(body, "x-forwarded-proto"),
        Some("https"),
        "{body}"
    );
    assert_eq!(
        echoed_header(body, "x-forwarded-host"),
        Some(host.as_str()),
        "{body}"
    );
    assert_eq!(
        echoed_header(body, "forwarded"),
        Some(format!("for=127.0.0.1;host=\"{host}\";proto=https").as_str()),
        "{body}"
    );
    for hop in ["x-secret", "keep-alive", "connection"] {
        assert_eq!(
            echoed_header(body, hop),
            None,
            "{hop} reached the backend: {body}"
        );
    }

    // HTTP/2 (ALPN h2) to an HTTP/1.1 backend: Host comes from :authority,
    // and a 1 MiB upload arrives whole.
    let upload = std::env::temp_dir().join(format!("hearth-upload-{}", std::process::id()));
    std::fs::write(&upload, vec![b'u'; 1 << 20]).unwrap();
    let h2 = curl_edge(
        edge.addr,
        APEX_NAME,
        "/app/page",
        &[
            "--http2",
            "--data-binary",
            &format!("@{}", upload.display()),
        ],
    );
    let _ = std::fs::remove_file(&upload);
    assert!(h2.status.success(), "{}", h2.stderr);
    assert!(h2.stderr.contains("< HTTP/2 200"), "{}", h2.stderr);
    assert_eq!(
        h2.stdout.lines().next(),
        Some("front POST /app/page"),
        "{}",
        h2.stdout
    );
    assert_eq!(echoed_header(&h2.stdout, "host"), Some(host.as_str()));
    assert_eq!(echoed_header(&h2.stdout, "body-bytes"), Some("1048576"));

    // No route: 404 from the edge, nothing reaches a backend.
    let none = curl_edge(edge.addr, APEX_NAME, "/elsewhere", &["--http2"]);
    assert!(none.stderr.contains("< HTTP/2 404"), "{}", none.stderr);
    assert_eq!(front.hits("/elsewhere") + api.hits("/elsewhere"), 0);
    edge.expect_log(
        &["http request", "status=404", "path=/elsewhere"],
        STEP_TIMEOUT,
    );
    edge.expect_log(&["http request", "status=200", "backend=api"], STEP_TIMEOUT);
}

#[test]
fn backend_connections_are_reused_across_requests_and_clients() {
    const WORKERS: usize = 2;
    let front = HttpEcho::start("front");
    let edge = http_builder(
        &[("front", addr_yaml(front.addr))],
        "    routes:\n      - { backend: front }\n",
    )
    .yaml(&format!("workers: {WORKERS}\n"))
    .start();
    // Separate client connections, one after the other: each request finds
    // a backend connection an earlier one returned to its worker thread
    // (idle connections are kept per worker), so there are at most as many
    // backend connections as workers.
    let ports: std::collections::BTreeSet<String> = (0..6)
        .map(|i| {
            let out = curl_edge(edge.addr, APEX_NAME, &format!("/r{i}"), &[]);
            assert!(out.status.success(), "{}", out.stderr);
            echoed_header(&out.stdout, "peer-port")
                .expect("peer-port")
                .to_owned()
        })
        .collect();
    assert!(
        ports.len() <= WORKERS,
        "backend connections not reused: {ports:?}"
    );
}

/// Sockets on this machine in state CLOSE_WAIT (the peer closed, this side
/// has not) whose remote port is `port`, from `/proc/net/tcp`.
fn close_wait_to(port: u16) -> usize {
    const CLOSE_WAIT: &str = "08";
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|a| a.split(':').nth(1))
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && fields.get(3) == Some(&CLOSE_WAIT)
        })
        .count()
}

#[test]
fn an_idle_backend_connection_the_backend_closes_is_closed_here_too() {
    // The backend closes keep-alive connections idle for a second; the
    // edge's side must follow, not sit in CLOSE_WAIT in the idle list.
    let front = HttpEcho::with_idle_timeout("front", 1);
    let edge = http_edge(
        &[("front", addr_yaml(front.addr))],
        "    routes:\n      - { backend: front }\n",
    );
    let out = curl_edge(edge.addr, APEX_NAME, "/before", &[]);
    assert!(out.status.success(), "{}", out.stderr);
    let first_port = echoed_header(&out.stdout, "peer-port").map(str::to_owned);
    front
        .peer
        .logs
        .wait_for(&["Request timed out"], STEP_TIMEOUT)
        .unwrap_or_else(|| panic!("backend kept the connection: {}", front.peer.logs.dump()));
    let released = poll_until(STEP_TIMEOUT, || {
        (close_wait_to(front.addr.port()) == 0).then_some(())
    });
    assert!(
        released.is_some(),
        "{} edge socket(s) to the backend left in CLOSE_WAIT",
        close_wait_to(front.addr.port())
    );
    // The next request gets a new backend connection and is served.
    let out = curl_edge(edge.addr, APEX_NAME, "/after", &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.lines().next(), Some("front GET /after"));
    assert_ne!(
        echoed_header(&out.stdout, "peer-port").map(str::to_owned),
        first_port
    );
}

#[test]
fn a_trusted_proxys_forwarding_headers_are_extended() {
    let front = HttpEcho::start("front");
    let edge = http_edge(
        &[("front", addr_yaml(front.addr))],
        "    trusted_proxies: [\"127.0.0.0/8\"]\n    routes:\n      - { backend: front }\n",
    );
    let out = curl_edge(
        edge.addr,
        APEX_NAME,
        "/",
        &[
            "-H",
            "X-Forwarded-For: 198.51.100.1",
            "-H",
            "X-Forwarded-Proto: http",
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        echoed_header(&out.stdout, "x-forwarded-for"),
        Some("198.51.100.1, 127.0.0.1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        echoed_header(&out.stdout, "x-forwarded-proto"),
        Some("http")
    );
}

#[test]
fn websocket_upgrade_through_a_path_route() {
    const BIG_MESSAGE: usize = 200 * 1024;
    let ws = WsEcho::start();
    let front = HttpEcho::start("front");
    let edge = http_edge(
        &[("ws", addr_yaml(ws.addr)), ("front", addr_yaml(front.addr))],
        "    routes:\n\
         \x20     - { path_prefix: /lk-ws, backend: ws, strip_prefix: true }\n\
         \x20     - { backend: front }\n",
    );
    let stream = connect(edge.addr, APEX_NAME, &["h2", "http/1.1"]).expect("TLS to the edge");
    // A client that offers both gets h2; WebSocket needs HTTP/1.1.
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    drop(stream);
    let mut stream = connect(edge.addr, APEX_NAME, &["http/1.1"]).expect("TLS to the edge");
    websocket::handshake(&mut stream, APEX_NAME, "/lk-ws/rtc").expect("upgrade through the edge");
    websocket::send(&mut stream, OP_TEXT, b"hello reflector").unwrap();
    assert_eq!(
        websocket::receive(&mut stream).unwrap(),
        (OP_TEXT, b"hello reflector".to_vec())
    );
    let big: Vec<u8> = (0..BIG_MESSAGE).map(|i| (i * 7 % 251) as u8).collect();
    websocket::send(&mut stream, OP_BINARY, &big).unwrap();
    let (opcode, echoed) = websocket::receive(&mut stream).unwrap();
    assert_eq!(opcode, OP_BINARY);
    assert!(echoed == big, "the 200 KiB message came back altered");
    edge.expect_log(&["http request", "status=101", "backend=ws"], STEP_TIMEOUT);
}

#[test]
fn an_sse_stream_stays_open_across_a_reload_and_events_arrive_one_by_one() {
    let front = HttpEcho::start("front");
    let other = HttpEcho::start("other");
    let backends = [
        ("front", addr_yaml(front.addr)),
        ("other", addr_yaml(other.addr)),
    ];
    let edge = http_edge(&backends, "    routes:\n      - { backend: front }\n");
    let curl = require_binary("curl", "curl");
    let mut command = Command::new(curl);
    command
        .args(["-sS", "-N", "--http2", "--max-time", "60"])
        .arg("--cacert")
        .arg(cert_path("ca.crt"))
        .args([
            "--resolve",
            &format!("{APEX_NAME}:{}:127.0.0.1", edge.addr.port()),
        ])
        .arg(format!("https://{APEX_NAME}:{}/sse", edge.addr.port()));
    let stream = Peer::spawn("curl-sse", command);
    // The first event arrives while the backend still holds the stream open.
    stream
        .logs
        .wait_for(&["data: one"], STEP_TIMEOUT)
        .unwrap_or_else(|| panic!("first event not delivered:\n{}", stream.logs.dump()));
    assert_eq!(stream.logs.count("data: two"), 0);

    // Reload: new requests go to `other`, except /release.
    let reloaded = http_builder(
        &backends,
        "    routes:\n\
         \x20     - { path_prefix: /release, backend: front }\n\
         \x20     - { backend: other }\n",
    );
    edge.rewrite_config(&reloaded);
    edge.signal("HUP");
    edge.expect_log(&["reloaded"], STEP_TIMEOUT * 3);
    let after = curl_edge(edge.addr, APEX_NAME, "/after", &[]);
    assert!(
        after.stdout.starts_with("other GET /after"),
        "{}",
        after.stderr
    );

    // The stream opened before the reload still delivers.
    let release = curl_edge(edge.addr, APEX_NAME, "/release", &[]);
    assert!(
        release.stdout.contains("front released"),
        "{}",
        release.stderr
    );
    stream
        .logs
        .wait_for(&["data: two"], STEP_TIMEOUT)
        .unwrap_or_else(|| panic!("second event not delivered:\n{}", stream.logs.dump()));
}

#[test]
fn a_pool_with_a_dead_member_serves_every_request_from_the_live_one() {
    let live = HttpEcho::start("live");
    let dead = dead_addr();
    let edge = http_edge(
        &[(
            "api",
            format!(
                "{{ addrs: [\"{dead}\", \"{}\"], eject: {{ failures: 2, cooldown: 1m }} }}",
                live.addr
            ),
        )],
        "    routes:\n      - { backend: api }\n",
    );
    for i in 0..8 {
        let out = curl_edge(edge.addr, APEX_NAME, &format!("/n{i}"), &[]);
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(
            out.stdout.lines().next(),
            Some(format!("live GET /n{i}").as_str())
        );
    }
    // The dead member was tried, then ejected after two failures.
    edge.expect_log(
        &["backend member dial failed", &dead.to_string()],
        STEP_TIMEOUT,
    );
    edge.expect_log(&["backend member ejected", &dead.to_string()], STEP_TIMEOUT);
    assert!(
        edge.logs().count("backend member dial failed") <= 2,
        "{}",
        edge.logs().dump()
    );
}

#[test]
fn a_member_answering_503_is_ejected_and_one_answering_500_is_not() {
    let live = HttpEcho::start("live");
    let unavailable = HttpEcho::failing("unavailable", 503);
    let buggy = HttpEcho::failing("buggy", 500);
    let pool = |failing: &HttpEcho| {
        format!(
            "{{ addrs: [\"{}\", \"{}\"], eject: {{ failures: 2, cooldown: 1m }} }}",
            failing.addr, live.addr
        )
    };
    let edge = http_edge(
        &[("gw", pool(&unavailable)), ("app", pool(&buggy))],
        "    routes:\n\
         \x20     - { path_prefix: /gw, backend: gw }\n\
         \x20     - { backend: app }\n",
    );
    let statuses = |prefix: &str| -> Vec<String> {
        (0..8)
            .map(|i| {
                let out = curl_edge(edge.addr, APEX_NAME, &format!("{prefix}/n{i}"), &[]);
                assert!(out.status.success(), "{}", out.stderr);
                out.stdout.lines().next().unwrap_or_default().to_owned()
            })
            .collect()
    };
    // 503 is the member's own failure: two in a row (one per turn of the
    // round robin) eject it, and every later request goes to the live one.
    let gw = statuses("/gw");
    assert_eq!(
        gw.iter().filter(|l| *l == "unavailable failing").count(),
        2,
        "{gw:?}"
    );
    assert!(gw[4..].iter().all(|l| l.starts_with("live GET")), "{gw:?}");
    edge.expect_log(
        &["backend member ejected", &unavailable.addr.to_string()],
        STEP_TIMEOUT,
    );
    // 500 is the application's answer to a request: passed on, no ejection.
    let app = statuses("");
    assert_eq!(
        app.iter().filter(|l| *l == "buggy failing").count(),
        4,
        "{app:?}"
    );
    let buggy_ejected = edge
        .logs()
        .lines()
        .iter()
        .any(|l| l.contains("backend member ejected") && l.contains(&buggy.addr.to_string()));
    assert!(!buggy_ejected, "{}", edge.logs().dump());
}

#[test]
fn health_checks_take_a_dead_member_out_before_any_request() {
    let live = HttpEcho::start("live");
    let dead = dead_addr();
    let edge = http_edge(
        &[(
            "api",
            format!(
                "{{ addrs: [\"{dead}\", \"{}\"], balance: least_conn, health_check: {{ http_path: /healthz, interval: 200ms, timeout: 1s }} }}",
                live.addr
            ),
        )],
        "    routes:\n      - { backend: api }\n",
    );
    edge.expect_log(
        &[
            "backend member health changed",
            &dead.to_string(),
            "state=down",
        ],
        STEP_TIMEOUT,
    );
    for _ in 0..4 {
        let out = curl_edge(edge.addr, APEX_NAME, "/", &[]);
        assert!(out.stdout.starts_with("live GET /"), "{}", out.stderr);
    }
    assert_eq!(edge.logs().count("backend member dial failed"), 0);
    assert!(live.hits("/healthz") >= 1, "the live member was checked");
}

#[test]
fn terminate_to_a_raw_pool_skips_the_dead_member() {
    let live = HttpEcho::start("live");
    let dead = dead_addr();
    let edge = EdgeBuilder::hearth()
        .backend_yaml(
            "livekit",
            &format!("{{ addrs: [\"{dead}\", \"{}\"] }}", live.addr),
        )
        .start();
    for _ in 0..4 {
        let out = curl_edge(edge.addr, LK_NAME, "/raw", &["--http1.1"]);
        assert!(out.status.success(), "{}", out.stderr);
        assert!(out.stdout.starts_with("live GET /raw"), "{}", out.stdout);
    }
    edge.expect_log(
        &["backend member dial failed", &dead.to_string()],
        STEP_TIMEOUT,
    );
}

#[test]
fn forward_auth_allows_with_copied_headers_and_denies_with_the_auth_answer() {
    let front = HttpEcho::start("front");
    let auth = HttpEcho::start("auth");
    // One worker: idle connections are kept per worker thread, and the
    // reuse below is across client connections.
    let edge = http_builder(
        &[
            ("front", addr_yaml(front.addr)),
            ("auth", addr_yaml(auth.addr)),
        ],
        "    routes:\n\
         \x20     - backend: front\n\
         \x20       forward_auth: { backend: auth, path: /auth/check, copy_headers: [X-Authentik-Username, X-Auth-Peer-Port] }\n",
    )
    .yaml("workers: 1\n")
    .start();
    // Allowed: the username comes from the auth answer, not the client.
    let allowed = curl_edge(
        edge.addr,
        APEX_NAME,
        "/private?page=2",
        &[
            "-H",
            "Authorization: Bearer good",
            "-H",
            "X-Authentik-Username: mallory",
        ],
    );
    assert!(
        allowed.stderr.contains("< HTTP/2 200"),
        "{}",
        allowed.stderr
    );
    assert_eq!(
        allowed.stdout.lines().next(),
        Some("front GET /private?page=2")
    );
    assert_eq!(
        echoed_header(&allowed.stdout, "x-authentik-username"),
        Some("alice")
    );
    assert_eq!(
        echoed_header(&allowed.stdout, "x-other"),
        None,
        "only copy_headers are copied"
    );

    // A second allowed request checks over the same auth connection: the
    // allowing answer's body was read to its end.
    let again = curl_edge(
        edge.addr,
        APEX_NAME,
        "/private?page=4",
        &["-H", "Authorization: Bearer good"],
    );
    assert!(again.stderr.contains("< HTTP/2 200"), "{}", again.stderr);
    assert_eq!(
        echoed_header(&again.stdout, "x-auth-peer-port"),
        echoed_header(&allowed.stdout, "x-auth-peer-port"),
        "a new auth connection per check"
    );

    // Denied: the auth server's own answer, which saw the original request.
    let denied = curl_edge(edge.addr, APEX_NAME, "/private?page=3", &["-X", "DELETE"]);
    assert!(denied.stderr.contains("< HTTP/2 302"), "{}", denied.stderr);
    assert!(
        denied.stderr.contains("< location: /login"),
        "{}",
        denied.stderr
    );
    assert_eq!(
        denied.stdout,
        "auth login please: method=DELETE uri=/private?page=3\n"
    );
    assert_eq!(
        front.hits("/private?page=3"),
        0,
        "a denied request reached the app"
    );
    assert_eq!(auth.hits("/auth/check"), 3);
}

#[test]
fn plain_listen_serves_the_route_set_without_tls() {
    let front = HttpEcho::start("front");
    let plain = dead_addr();
    let edge = EdgeBuilder::hearth()
        .admin()
        .without_backend("pocketbase")
        .backend("front", front.addr)
        .yaml(&format!(
            "http_routes:\n  pocketbase:\n    routes:\n      - {{ backend: front }}\n\
             plain_listen:\n  - {{ addr: \"{plain}\", routes: pocketbase }}\n"
        ))
        .start();
    let out = curl_plain(plain, "reflector.localhost", "/dev?x=1");
    assert!(
        out.status.success(),
        "{}\n{}",
        out.stderr,
        edge.logs().dump()
    );
    assert_eq!(out.stdout.lines().next(), Some("front GET /dev?x=1"));
    assert_eq!(
        echoed_header(&out.stdout, "x-forwarded-proto"),
        Some("http")
    );
    edge.expect_log(&["connection closed", "decision=plain_http"], STEP_TIMEOUT);
    // Counted like every other connection: by outcome, with its bytes.
    assert_eq!(
        edge.metric("hearth_edge_connections_closed_total{outcome=\"plain_http\"}"),
        Some(1.0)
    );
    let up = edge.metric("hearth_edge_client_bytes_total{direction=\"up\"}");
    let down = edge.metric("hearth_edge_client_bytes_total{direction=\"down\"}");
    assert!(up.is_some_and(|n| n >= 40.0), "bytes up: {up:?}");
    assert!(down.is_some_and(|n| n >= 40.0), "bytes down: {down:?}");
}

#[test]
fn a_request_head_trickled_byte_by_byte_is_cut_at_http_header_timeout() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    /// Slow clients, each in its own thread.
    const SLOW_CLIENTS: usize = 20;
    /// The edge's `limits.http_header_timeout` in this test.
    const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
    /// A slow client sends one byte this often: the deadline is for the
    /// whole head, so trickling must not extend it.
    const DRIP: Duration = Duration::from_millis(200);

    let front = HttpEcho::start("front");
    let plain = dead_addr();
    let _edge = EdgeBuilder::hearth()
        .without_backend("pocketbase")
        .backend("front", front.addr)
        .limit("http_header_timeout", "1s")
        .yaml(&format!(
            "http_routes:\n  pocketbase:\n    routes:\n      - {{ backend: front }}\n\
             plain_listen:\n  - {{ addr: \"{plain}\", routes: pocketbase }}\n"
        ))
        .start();
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut socket = std::net::TcpStream::connect(plain).expect("connect");
                socket.set_nonblocking(true).unwrap();
                let start = Instant::now();
                let head = b"GET /slow HTTP/1.1\r\nHost: reflector.localhost\r\nX-Pad: ";
                let mut answer = Vec::new();
                let mut sent = 0;
                loop {
                    // A never-ending header value after the start of the head.
                    let byte = head.get(sent).copied().unwrap_or(b'a');
                    match socket.write(&[byte]) {
                        Ok(_) => sent += 1,
                        Err(_) => break,
                    }
                    let mut buf = [0u8; 512];
                    match socket.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => answer.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                    if start.elapsed() > STEP_TIMEOUT {
                        return (None, answer);
                    }
                    std::thread::sleep(DRIP);
                }
                (Some(start.elapsed()), answer)
            })
        })
        .collect();
    // Real requests are served meanwhile.
    let out = curl_plain(plain, "reflector.localhost", "/fast");
    assert_eq!(
        out.stdout.lines().next(),
        Some("front GET /fast"),
        "{}",
        out.stderr
    );
    for client in slow {
        let (closed_after, answer) = client.join().unwrap();
        let closed_after = closed_after.expect("a slow client was never cut");
        assert!(
            closed_after >= HEADER_TIMEOUT,
            "cut before the header timeout: {closed_after:?}"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    assert_eq!(front.hits("/slow"), 0, "a partial head reached the backend");
}

#[test]
fn an_h2c_backend_gets_http2_over_cleartext() {
    // nginx (Debian 1.22) speaks HTTP/2 with prior knowledge on a plain
    // `listen ... http2` socket and logs the protocol of each request.
    let nginx = require_binary("nginx", "nginx");
    let dir = TempDir::new("nginx-h2c");
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "master_process off;\npid {d}/nginx.pid;\nerror_log stderr info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n\
         \x20 uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
         \x20 log_format proto '$server_protocol $request_uri $http_x_forwarded_proto';\n\
         \x20 server {{ listen 127.0.0.1:{port} http2; access_log {d}/access.log proto;\n\
         \x20   location / {{ return 200 \"h2c backend\\n\"; }} }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-e", "stderr", "-g", "daemon off;"]);
    let mut backend = Peer::spawn("nginx", command);
    backend.wait_listening(port).expect("nginx h2c listening");
    let edge = http_edge(
        &[(
            "grpc",
            format!("{{ addr: \"127.0.0.1:{port}\", protocol: h2c }}"),
        )],
        "    routes:\n      - { backend: grpc }\n",
    );
    for client in ["--http1.1", "--http2"] {
        let out = curl_edge(edge.addr, APEX_NAME, "/svc?q=1", &[client]);
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(
            out.stdout,
            "h2c backend\n",
            "{}\n{}",
            out.stderr,
            backend.logs.dump()
        );
    }
    let log = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines, ["HTTP/2.0 /svc?q=1 https"; 2], "{log}");
}

/// A backend that answers every request head with `answer` and closes.
fn raw_backend(answer: Vec<u8>) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream.write_all(&answer);
        }
    });
    addr
}

#[test]
fn a_backend_answering_garbage_costs_its_request_only() {
    let mut huge = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 70_000));
    huge.extend_from_slice(b"\r\n\r\n");
    let garbage = raw_backend(b"SMTP ready\r\n\r\n".to_vec());
    let oversized = raw_backend(huge);
    // Chunked, so the client could not tell a cut from an end by itself.
    let short = raw_backend(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly this\r\n".to_vec(),
    );
    let front = HttpEcho::start("front");
    let edge = http_builder(
        &[
            ("garbage", addr_yaml(garbage)),
            ("oversized", addr_yaml(oversized)),
            ("short", addr_yaml(short)),
            ("front", addr_yaml(front.addr)),
        ],
        "    routes:\n\
         \x20     - { path_prefix: /garbage, backend: garbage }\n\
         \x20     - { path_prefix: /oversized, backend: oversized }\n\
         \x20     - { path_prefix: /short, backend: short }\n\
         \x20     - { backend: front }\n",
    )
    .admin()
    .start();

    // A head that is not HTTP, or longer than 64 KiB: 502, with the reason
    // in the log.
    for (path, reason) in [
        ("/garbage", "invalid head"),
        ("/oversized", "head too large"),
    ] {
        let out = curl_edge(edge.addr, APEX_NAME, path, &["--http1.1"]);
        assert!(
            out.stderr.contains("< HTTP/1.1 502"),
            "{path}: {}",
            out.stderr
        );
        edge.expect_log(&["http request failed", reason], STEP_TIMEOUT);
    }
    // A body cut short of its length: the client's transfer fails (the
    // connection is closed after what had come, or before the head went
    // out when the cut came first: curl exit 18 or 52), never a short body
    // passed off as whole.
    let out = curl_edge(edge.addr, APEX_NAME, "/short", &["--http1.1"]);
    assert!(
        matches!(out.status.code(), Some(18 | 52)),
        "{:?}\n{}",
        out.status,
        out.stderr
    );

    // The edge and its other routes are unaffected.
    let out = curl_edge(edge.addr, APEX_NAME, "/fine", &["--http1.1"]);
    assert!(out.stderr.contains("< HTTP/1.1 200"), "{}", out.stderr);
    assert_eq!(out.stdout.lines().next(), Some("front GET /fine"));
    assert_eq!(
        edge.metric("hearth_edge_http_responses_total{code=\"502\"}"),
        Some(2.0)
    );
}

#[test]
fn the_redirect_listener_cuts_a_slow_request_head_at_http_header_timeout() {
    use std::io::{Read, Write};
    use std::time::Instant;

    // The ClientHello deadline is far beyond the test's patience: only the
    // header deadline can end the slow request in time.
    let http = dead_addr();
    let edge = EdgeBuilder::hearth()
        .limit("client_hello_timeout", "60s")
        .limit("http_header_timeout", "1s")
        .start_on(dead_addr(), Some(http));
    let mut socket = std::net::TcpStream::connect(http).expect("connect");
    socket.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    socket.write_all(b"GET / HTTP/1.1\r\nHost: ").unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = socket.read_to_end(&mut answer);
    assert!(
        read.is_ok(),
        "no answer to a slow head within {STEP_TIMEOUT:?} ({:?}): {read:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    edge.expect_log(
        &["http request", "status=400", "reason=timeout"],
        STEP_TIMEOUT,
    );
}
