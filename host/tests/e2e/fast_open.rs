//! TCP Fast Open towards a backend (`backends.*.fast_open`): curl through
//! the edge to a TLS nginx whose listener enables Fast Open
//! (`listen … fastopen=16`), all three in a network namespace of the
//! test's own, where Fast Open's server side is switched on
//! (`net.ipv4.tcp_fastopen=3`) and the kernel's Fast Open counters
//! (`/proc/net/netstat`) count only this test's connections.
//!
//! Fast Open on: the first connection asks nginx for a cookie, every later
//! one carries the replayed hello in its SYN and nginx accepts it there. Off
//! (the control): no SYN asks for a cookie or carries data. A pool whose
//! first member refuses (same address, so the cookie applies to it too):
//! the SYN with the hello is refused, the next member gets the hello whole.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::edge::{EDGE_BIN, EdgeBuilder};
use crate::support::nginx::conf_head;
use crate::support::process::{Peer, TempDir, require_binary, run_tool};
use crate::support::{TURN_NAME, cert_path};

/// Where nginx and the edge listen inside the namespace (nothing else
/// runs there, so fixed ports cannot collide).
const NGINX_PORT: u16 = 8443;
const EDGE_PORT: u16 = 9443;
/// The body nginx answers with.
const BODY: &str = "fast open backend\n";
/// Connections made through the edge in each phase.
const CONNECTIONS: u64 = 5;

/// A network namespace with its loopback up, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(label: &str) -> Netns {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("hearth-{label}-{}-{n}", std::process::id());
        let ip = require_binary("ip", "iproute2");
        let _ = Command::new(&ip).args(["netns", "del", &name]).output();
        let ns = Netns { name };
        ns.ip(&["netns", "add", &ns.name]);
        ns.ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `program args…` run inside the namespace.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Writes a sysctl of the namespace.
    fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let out = self
            .command("sh")
            .args(["-c", &format!("echo {value} > {path}")])
            .output()
            .expect("run sh");
        assert!(out.status.success(), "set {key}");
    }

    /// One `TcpExt` counter of the namespace.
    fn counter(&self, name: &str) -> u64 {
        let out = self
            .command("cat")
            .arg("/proc/net/netstat")
            .output()
            .expect("read netstat");
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| l.starts_with("TcpExt:"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 2, "TcpExt names and values:\n{text}");
        let at = rows[0]
            .iter()
            .position(|k| *k == name)
            .unwrap_or_else(|| panic!("no {name} in /proc/net/netstat"));
        rows[1][at].parse().expect("a counter")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// nginx terminating TLS for `TURN_NAME` with Fast Open on its listener.
fn start_nginx(ns: &Netns, dir: &TempDir) -> Peer {
    let nginx = require_binary("nginx", "nginx");
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"{head}    access_log off;
    server {{
        listen 127.0.0.1:{NGINX_PORT} ssl fastopen=16;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "{body}"; }}
    }}
}}
"#,
            head = conf_head(dir),
            cert = cert_path("turn.crt").display(),
            key = cert_path("turn.key").display(),
            body = BODY.escape_default(),
        ),
    )
    .expect("write nginx.conf");
    let mut command = ns.command(nginx);
    command.arg("-p").arg(dir.path()).arg("-c").arg(&conf);
    command.args(["-e", "stderr", "-g", "daemon off;"]);
    let mut peer = Peer::spawn("nginx", command);
    peer.wait_listening(NGINX_PORT)
        .unwrap_or_else(|e| panic!("{e}"));
    peer
}

/// The Hearth policy's edge in the namespace, `turn` being `turn_yaml`.
fn start_edge(ns: &Netns, dir: &Path, turn_yaml: &str) -> Peer {
    let listen = SocketAddr::from(([127, 0, 0, 1], EDGE_PORT));
    let yaml = EdgeBuilder::hearth()
        .backend_yaml("turn", turn_yaml)
        .config_yaml(listen, None);
    let path = dir.join("edge.yaml");
    std::fs::write(&path, &yaml).expect("write edge config");
    let mut command = ns.command(EDGE_BIN);
    command.arg("--config").arg(&path);
    command.env("NO_COLOR", "1").env_remove("RUST_LOG");
    let mut peer = Peer::spawn("edge", command);
    peer.wait_listening(EDGE_PORT)
        .unwrap_or_else(|e| panic!("{e}\n--- config:\n{yaml}"));
    peer
}

/// One HTTPS request by curl through the edge, checked against nginx's body.
fn fetch_through_edge(ns: &Netns) {
    let mut curl = ns.command(require_binary("curl", "curl"));
    curl.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(cert_path("ca.crt"))
        .arg("--resolve")
        .arg(format!("{TURN_NAME}:{EDGE_PORT}:127.0.0.1"))
        .arg(format!("https://{TURN_NAME}:{EDGE_PORT}/"));
    let out = run_tool(curl, b"", Duration::from_secs(15));
    assert!(out.status.success(), "curl: {}", out.stderr);
    assert_eq!(out.stdout, BODY, "nginx's body through the edge");
}

#[test]
fn the_hello_rides_in_the_syn_only_where_fast_open_is_on() {
    let ns = Netns::new("tfo");
    ns.sysctl("net.ipv4.tcp_fastopen", "3");
    let dir = TempDir::new("fast-open");
    let _nginx = start_nginx(&ns, &dir);
    let backend = format!("127.0.0.1:{NGINX_PORT}");

    // Off (the default): no cookie asked for, no SYN with data.
    let edge = start_edge(&ns, dir.path(), &format!("{{ addr: \"{backend}\" }}"));
    for _ in 0..CONNECTIONS {
        fetch_through_edge(&ns);
    }
    drop(edge);
    assert_eq!(ns.counter("TCPFastOpenCookieReqd"), 0);
    assert_eq!(ns.counter("TCPFastOpenPassive"), 0);

    // On: one cookie, then the hello in every SYN, accepted by nginx.
    let edge = start_edge(
        &ns,
        dir.path(),
        &format!("{{ addr: \"{backend}\", fast_open: true }}"),
    );
    for _ in 0..CONNECTIONS {
        fetch_through_edge(&ns);
    }
    drop(edge);
    assert_eq!(ns.counter("TCPFastOpenCookieReqd"), 1);
    assert_eq!(ns.counter("TCPFastOpenActive"), CONNECTIONS - 1);
    assert_eq!(ns.counter("TCPFastOpenPassive"), CONNECTIONS - 1);
    assert_eq!(ns.counter("TCPFastOpenPassiveFail"), 0);
}

#[test]
fn a_member_refusing_the_syn_with_the_hello_leaves_it_whole_for_the_next() {
    let ns = Netns::new("tfo-pool");
    ns.sysctl("net.ipv4.tcp_fastopen", "3");
    let dir = TempDir::new("fast-open-pool");
    let _nginx = start_nginx(&ns, &dir);
    // Port 1 refuses; the cookie nginx gave is for 127.0.0.1, so the SYN
    // to port 1 carries the hello too.
    let edge = start_edge(
        &ns,
        dir.path(),
        &format!(
            "{{ addrs: [\"127.0.0.1:1\", \"127.0.0.1:{NGINX_PORT}\"], balance: round_robin, \
             eject: {{ failures: 1000, cooldown: 1s }}, fast_open: true }}"
        ),
    );
    for _ in 0..CONNECTIONS {
        fetch_through_edge(&ns);
    }
    let refused = edge.logs.count("member=127.0.0.1:1 ");
    drop(edge);
    // Every connection reached nginx; those after the cookie with the
    // hello in the SYN, some of them after a refused SYN that carried it.
    assert!(refused >= 2, "dials refused by the first member: {refused}");
    assert!(
        ns.counter("TCPFastOpenPassive") >= CONNECTIONS - 1,
        "SYNs with data accepted: {}",
        ns.counter("TCPFastOpenPassive")
    );
}
