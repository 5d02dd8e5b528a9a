//! Behind a load balancer: `accept_proxy`. Real senders — HAProxy with
//! `send-proxy-v2` and nginx's stream module with `proxy_protocol on` (v1) —
//! in front of the edge, clients bound to their own loopback addresses
//! (127.0.0.3, 127.0.0.4) so the balancer (127.0.0.1) and the client can be
//! told apart; and hostile headers sent by hand.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::support::edge::{Edge, EdgeBuilder};
use crate::support::hello::rustls_hello;
use crate::support::http_echo::HttpEcho;
use crate::support::process::{Peer, TempDir, free_port, require_binary};
use crate::support::recorder::{Mode, Recorder};
use crate::support::tls::{client_config, connect_from, curl_edge, status};
use crate::support::{APEX_NAME, STEP_TIMEOUT, TURN_NAME, poll_until, repo_root};

/// The edge takes PROXY headers from 127.0.0.1 (the balancers) only.
const ACCEPT_PROXY: &str = "accept_proxy: { from: [\"127.0.0.1/32\"], timeout: 2s }\n";

/// HAProxy in TCP mode in front of `edge`, sending PROXY v2.
fn haproxy(edge: SocketAddr) -> (Peer, SocketAddr, TempDir) {
    let dir = TempDir::new("haproxy");
    let port = free_port();
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\nbackend be\n  server edge {edge} send-proxy-v2\n"
        ),
    )
    .unwrap();
    let mut command = Command::new(require_binary("haproxy", "haproxy"));
    command.arg("-db").arg("-f").arg(&conf);
    let mut peer = Peer::spawn("haproxy", command);
    peer.wait_listening(port).expect("haproxy listening");
    (peer, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// nginx's stream module in front of `edge`, sending PROXY v1.
fn nginx_stream(edge: SocketAddr) -> (Peer, SocketAddr, TempDir) {
    let dir = TempDir::new("nginx-stream");
    let port = free_port();
    let module = "/usr/lib/nginx/modules/ngx_stream_module.so";
    assert!(
        std::path::Path::new(module).is_file(),
        "{module} is missing: apt-get install libnginx-mod-stream"
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "load_module {module};\ndaemon off;\nmaster_process off;\npid {pid};\nerror_log stderr;\nevents {{}}\nstream {{\n  server {{\n    listen 127.0.0.1:{port};\n    proxy_pass {edge};\n    proxy_protocol on;\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display()
        ),
    )
    .unwrap();
    let mut command = Command::new(require_binary("nginx", "nginx"));
    command.arg("-p").arg(dir.path()).arg("-c").arg(&conf);
    let mut peer = Peer::spawn("nginx", command);
    peer.wait_listening(port).expect("nginx listening");
    (peer, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// Whether the edge closes `stream` (EOF or reset) before it answers.
fn closed_by_edge(mut stream: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

/// The edge: the Hearth policy, the apex into route set `pocketbase` (an
/// echo backend), TURN passed through with a PROXY v2 header to `turn`.
fn edge_behind(web: &HttpEcho, turn: &Recorder, extra: &str) -> Edge {
    EdgeBuilder::hearth()
        .without_backend("pocketbase")
        .without_backend("turn")
        .backend_yaml("web", &format!("{{ addr: \"{}\" }}", web.addr))
        .backend_yaml("turn", &format!("{{ addr: \"{}\", proxy_protocol: v2 }}", turn.addr))
        .yaml(&format!(
            "http_routes:\n  pocketbase:\n    routes:\n      - {{ backend: web }}\n{ACCEPT_PROXY}{extra}"
        ))
        .admin()
        .start()
}

fn forwarded_for(out: &str) -> Option<&str> {
    out.lines()
        .find_map(|l| l.strip_prefix("x-forwarded-for: "))
}

#[test]
fn the_client_address_survives_haproxy_and_nginx() {
    let web = HttpEcho::start("web");
    let turn = Recorder::start(Mode::Record);
    let plain_port = free_port();
    let plain = SocketAddr::from(([127, 0, 0, 1], plain_port));
    let edge = edge_behind(
        &web,
        &turn,
        &format!("plain_listen:\n  - {{ addr: \"{plain}\", routes: pocketbase }}\n"),
    );
    let (_haproxy, via_haproxy, _d1) = haproxy(edge.addr);
    let (_nginx, via_nginx, _d2) = nginx_stream(plain);

    // Terminated, through HAProxy (v2): the backend's X-Forwarded-For and
    // the edge's log name the client, not the balancer.
    let out = curl_edge(via_haproxy, APEX_NAME, "/", &["--interface", "127.0.0.3"]);
    assert_eq!(status(&out), Some(200), "{}", out.stderr);
    assert_eq!(
        forwarded_for(&out.stdout),
        Some("127.0.0.3"),
        "{}",
        out.stdout
    );
    edge.expect_log(&["http request", "source=127.0.0.3:"], STEP_TIMEOUT);
    edge.expect_log(&["connection closed", "source=127.0.0.3:"], STEP_TIMEOUT);

    // A plain listener through nginx (v1).
    let out = {
        let mut command = Command::new(require_binary("curl", "curl"));
        command.args(["-sS", "-v", "--interface", "127.0.0.4", "--max-time", "10"]);
        command.arg(format!("http://127.0.0.1:{}/", via_nginx.port()));
        command.args(["-H", &format!("host: {APEX_NAME}")]);
        command.output().unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        forwarded_for(&stdout),
        Some("127.0.0.4"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Passed through (v2 in, v2 out): TURN's PROXY header names the client.
    let mut client = connect_from([127, 0, 0, 3], via_haproxy);
    let hello = rustls_hello(TURN_NAME);
    client.write_all(&hello).unwrap();
    let got = turn
        .wait_received(0, 28 + hello.len(), STEP_TIMEOUT)
        .expect("the TURN backend got the header and the hello");
    assert_eq!(&got[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(
        &got[16..20],
        &[127, 0, 0, 3],
        "the client's address, not the balancer's"
    );
    assert_eq!(&got[28..], hello.as_slice());
    assert!(
        edge.metric("hearth_edge_proxy_headers_total{version=\"v2\"}")
            .unwrap()
            >= 2.0
    );
    assert!(
        edge.metric("hearth_edge_proxy_headers_total{version=\"v1\"}")
            .unwrap()
            >= 1.0
    );
}

#[test]
fn clients_behind_one_balancer_get_their_own_token_buckets() {
    let web = HttpEcho::start("web");
    let edge = EdgeBuilder::with_policy(&repo_root().join("policies/web-gate.wasm"))
        .policy_config("names", APEX_NAME)
        .policy_config("routes", "site")
        .policy_config("canonical_host", APEX_NAME)
        .policy_config("rate_per_ip", "1")
        .policy_config("burst_per_ip", "2")
        .backend("web", web.addr)
        .yaml(&format!(
            "http_routes:\n  site:\n    routes:\n      - {{ backend: web }}\n{ACCEPT_PROXY}"
        ))
        .start();
    let (_haproxy, via, _dir) = haproxy(edge.addr);
    let burst = |from: &str| {
        let url = format!("https://{APEX_NAME}:{}/r", via.port());
        let out = curl_edge(
            via,
            APEX_NAME,
            "/r",
            &[
                "--interface",
                from,
                "--http1.1",
                "-o",
                "/dev/null",
                &url,
                "-o",
                "/dev/null",
                &url,
            ],
        );
        out.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("< HTTP/1.1 "))
            .map(|s| s[..3].to_owned())
            .collect::<Vec<_>>()
    };
    let first = burst("127.0.0.3");
    assert!(
        first.iter().any(|s| s == "429"),
        "one client runs out: {first:?}"
    );
    // Right after, another client behind the same balancer has its own bucket.
    let second = burst("127.0.0.4");
    assert_eq!(second[..2], ["200", "200"], "{second:?}");
}

#[test]
fn hostile_headers_cost_their_connection_only() {
    let web = HttpEcho::start("web");
    let turn = Recorder::start(Mode::Record);
    let edge = edge_behind(&web, &turn, "");
    let metric = |kind: &str| {
        edge.metric(&format!(
            "hearth_edge_proxy_header_errors_total{{kind=\"{kind}\"}}"
        ))
        .unwrap_or(0.0)
    };

    // A v2 header in one-byte segments, then TLS on the same connection.
    let header = hearth_wasm_edge::proxy::proxy_protocol::header_v2(
        "127.0.0.9:40000".parse().unwrap(),
        edge.addr,
    );
    let mut stream = connect_from([127, 0, 0, 1], edge.addr);
    for byte in &header {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let name = rustls::pki_types::ServerName::try_from(APEX_NAME).unwrap();
    let conn = rustls::ClientConnection::new(client_config(&["http/1.1"]), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, stream);
    tls.write_all(
        format!("GET / HTTP/1.1\r\nhost: {APEX_NAME}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-forwarded-for: 127.0.0.9"), "{answer}");

    // Refused, each on its own: a bad signature, a v2 length past the
    // limit, v1 garbage, and no header at all from a balancer.
    let mut bad_signature = header.clone();
    bad_signature[5] = b'X';
    let mut too_long = header.clone();
    too_long[14] = 0xff;
    for (bytes, kind) in [
        (bad_signature, "missing"),
        (too_long, "too_large"),
        (
            b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n".to_vec(),
            "malformed",
        ),
        (rustls_hello(APEX_NAME), "missing"),
    ] {
        let before = metric(kind);
        let mut stream = connect_from([127, 0, 0, 1], edge.addr);
        stream.write_all(&bytes).unwrap();
        assert!(closed_by_edge(stream), "{kind}");
        assert!(
            poll_until(STEP_TIMEOUT, || (metric(kind) > before).then_some(())).is_some(),
            "{kind} counted"
        );
    }

    // Someone outside `from` claiming an address: not a ClientHello, closed;
    // the claimed address is used nowhere.
    let mut stream = connect_from([127, 0, 0, 5], edge.addr);
    stream
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n")
        .unwrap();
    stream.write_all(&rustls_hello(APEX_NAME)).unwrap();
    assert!(closed_by_edge(stream));
    edge.expect_log(
        &["ClientHello read failed", "source=127.0.0.5:"],
        STEP_TIMEOUT,
    );
    assert_eq!(edge.logs().count("203.0.113.9"), 0);

    // 1,000 balancer connections that never finish their header, while
    // clients through a real balancer are served; then all are cut.
    let before = metric("timeout");
    let slow: Vec<TcpStream> = (0..1_000)
        .map(|_| {
            let mut s = connect_from([127, 0, 0, 1], edge.addr);
            s.write_all(b"PROXY ").unwrap();
            s
        })
        .collect();
    let (_haproxy, via, _dir) = haproxy(edge.addr);
    for _ in 0..10 {
        let out = curl_edge(via, APEX_NAME, "/", &["--interface", "127.0.0.3"]);
        assert_eq!(status(&out), Some(200), "{}", out.stderr);
    }
    let cut = poll_until(STEP_TIMEOUT * 2, || {
        (metric("timeout") - before >= 1_000.0).then_some(())
    });
    assert!(
        cut.is_some(),
        "every slow header is cut at the timeout: {}",
        metric("timeout") - before
    );
    drop(slow);
}

#[test]
fn the_redirect_listener_logs_the_client_behind_a_balancer() {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let edge = EdgeBuilder::hearth()
        .yaml(ACCEPT_PROXY)
        .start_on(listen, Some(http));
    let (_haproxy, via, _dir) = haproxy(http);
    let out = Command::new(require_binary("curl", "curl"))
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            "127.0.0.3",
        ])
        .args(["--max-time", "10", "-H", &format!("host: {APEX_NAME}")])
        .arg(format!("http://127.0.0.1:{}/page", via.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "301");
    let line = edge.expect_log(&["http request", "path=/page"], STEP_TIMEOUT);
    assert!(line.contains("source=127.0.0.3:"), "{line}");
}
