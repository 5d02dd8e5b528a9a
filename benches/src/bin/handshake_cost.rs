//! CPU per terminated TLS handshake: the edge with X25519MLKEM768 vs with
//! X25519 (same run, same client), and nginx terminating with the same ECDSA
//! P-256 certificate (X25519: Debian's OpenSSL 3.0 has no ML-KEM). The
//! client is rustls (aws-lc-rs) offering exactly one group, without
//! resumption: every connection is a full handshake, then `GET /` answered
//! 404 by the server itself (no backend), then close. Server CPU is
//! utime+stime from /proc/<pid>/stat (nginx: its one worker).
//!
//!   cargo run --release -p hearth-edge-benches --bin handshake_cost -- \
//!       target/release/hearth-wasm-edge [CONNECTIONS]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use hearth_edge_benches::process::{cpu_seconds, free_port, wait_up};

use rustls::crypto::aws_lc_rs::{self, kx_group};

const NAME: &str = "hearth.test";

fn client(
    group: &'static dyn rustls::crypto::SupportedKxGroup,
    ca: &Path,
) -> Arc<rustls::ClientConfig> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![group];
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// `n` handshakes + one request each from 2 threads; server CPU µs each.
fn run(pid: u32, addr: SocketAddr, config: &Arc<rustls::ClientConfig>, n: usize) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut answer = Vec::new();
                for _ in 0..n / 2 {
                    let name = rustls::pki_types::ServerName::try_from(NAME).unwrap();
                    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
                    let tcp = TcpStream::connect(addr).unwrap();
                    tcp.set_nodelay(true).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    tls.write_all(
                        b"GET / HTTP/1.1\r\nhost: hearth.test\r\nconnection: close\r\n\r\n",
                    )
                    .unwrap();
                    answer.clear();
                    let _ = tls.read_to_end(&mut answer);
                    assert!(
                        answer.starts_with(b"HTTP/1.1 404"),
                        "{}",
                        String::from_utf8_lossy(&answer)
                    );
                }
            });
        }
    });
    (cpu_seconds(pid) - before) * 1e6 / n as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let bin = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/release/hearth-wasm-edge".into()),
    );
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4_000);
    let root = std::env::current_dir().unwrap();
    let certs = root.join("tests/peers/certs");
    let dir = std::env::temp_dir().join(format!("bench-handshake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The edge: the apex terminated into a route set with no route (404).
    let edge_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("edge.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"{edge_addr}\"\npolicy: {{ path: \"{}\", config: {{ domain: hearth.test }} }}\nbackends: {{}}\nhttp_routes:\n  pocketbase:\n    routes:\n      - {{ host: nothing.test, backend: nowhere }}\nlog: {{ level: error }}\ntls:\n  certificates:\n    - {{ cert: \"{}\", key: \"{}\" }}\n",
            root.join("policies/hearth.wasm").display(),
            certs.join("edge.crt").display(),
            certs.join("edge.key").display(),
        )
        .replace("backends: {}", "backends:\n  nowhere: { addr: \"127.0.0.1:9\" }"),
    )
    .unwrap();
    let mut edge: Child = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the edge");
    wait_up(edge_addr);

    // nginx with the same certificate, one worker.
    let nginx_port = free_port();
    let nginx_conf = dir.join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {dir}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{nginx_port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    ssl_protocols TLSv1.3;\n    ssl_session_tickets off;\n    ssl_session_cache off;\n    location / {{ return 404; }}\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            dir = dir.display(),
            cert = certs.join("edge.crt").display(),
            key = certs.join("edge.key").display(),
        ),
    )
    .unwrap();
    let mut nginx = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&nginx_conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let nginx_addr = SocketAddr::from(([127, 0, 0, 1], nginx_port));
    wait_up(nginx_addr);
    // The worker is the master's child.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", nginx.id()))
        .unwrap_or_default();
    let worker: u32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(nginx.id());

    let ca = certs.join("ca.crt");
    let hybrid = client(kx_group::X25519MLKEM768, &ca);
    let x25519 = client(kx_group::X25519, &ca);
    run(edge.id(), edge_addr, &hybrid, 400);
    run(worker, nginx_addr, &x25519, 400);
    let mut sums = [0.0f64; 3];
    for round in 0..2 {
        let order: [usize; 3] = if round == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            sums[which] += match which {
                0 => run(edge.id(), edge_addr, &hybrid, n),
                1 => run(edge.id(), edge_addr, &x25519, n),
                _ => run(worker, nginx_addr, &x25519, n),
            } / 2.0;
        }
    }
    println!(
        "handshake_cost: {n} full TLS 1.3 handshakes × 2 rounds per case (ECDSA P-256 certificate), server CPU per connection"
    );
    println!("| server, group | CPU µs/conn |");
    println!("|---|---|");
    println!("| edge, X25519MLKEM768 | {:.1} |", sums[0]);
    println!("| edge, X25519 | {:.1} |", sums[1]);
    println!("| nginx, X25519 | {:.1} |", sums[2]);
    println!();
    println!(
        "edge X25519MLKEM768 ÷ edge X25519: {:.2}",
        sums[0] / sums[1]
    );
    println!("edge X25519 ÷ nginx X25519: {:.2}", sums[1] / sums[2]);
    println!(
        "edge X25519MLKEM768 ÷ nginx X25519: {:.2}",
        sums[0] / sums[2]
    );
    for child in [&mut edge, &mut nginx] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
