//! What reading a PROXY header costs the edge per connection: two edges at
//! their default config, one with `accept_proxy` for 127.0.0.1 (every
//! connection sends a v2 header, or a v1 line, first) and one without; the
//! same client opens connections that send a ClientHello the Hearth policy
//! rejects (`unknown.test`: no backend, so only the edge's own work counts)
//! and wait for the close. Prints the edge's CPU (utime+stime from
//! /proc/<pid>/stat) per connection for each, in one run.
//!
//!   cargo run --release -p hearth-edge-benches --bin proxy_header -- \
//!       target/release/hearth-wasm-edge [CONNECTIONS]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hearth_edge_benches::process::{cpu_seconds, free_port, wait_up};

/// A minimal TLS 1.2/1.3 ClientHello for `unknown.test` (SNI only).
fn client_hello() -> Vec<u8> {
    let name = b"unknown.test";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut extensions = Vec::new();
    extensions.extend_from_slice(&0u16.to_be_bytes());
    extensions.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    extensions.extend_from_slice(&sni);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

fn start_edge(bin: &Path, dir: &Path, name: &str, extra: &str) -> (Child, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let policy = std::env::current_dir()
        .unwrap()
        .join("policies/hearth.wasm");
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "listen: \"{addr}\"\npolicy: {{ path: \"{}\", config: {{ domain: hearth.test }} }}\nbackends: {{}}\nlog: {{ level: error }}\n{extra}",
            policy.display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the edge");
    wait_up(addr);
    (child, addr)
}

/// Opens `n` connections (4 threads), each sending `prefix` + the hello
/// and reading until the edge closes; returns the edge's CPU µs per connection.
fn run(edge: &Child, addr: SocketAddr, prefix: &[u8], n: usize) -> f64 {
    let hello = client_hello();
    let message = [prefix, hello.as_slice()].concat();
    let before = cpu_seconds(edge.id());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut buf = [0u8; 64];
                for _ in 0..n / 4 {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream.set_nodelay(true).unwrap();
                    stream.write_all(&message).unwrap();
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                }
            });
        }
    });
    (cpu_seconds(edge.id()) - before) * 1e6 / n as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let bin = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/release/hearth-wasm-edge".into()),
    );
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("bench-proxy-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut plain, plain_addr) = start_edge(&bin, &dir, "plain", "");
    let (mut proxied, proxied_addr) = start_edge(
        &bin,
        &dir,
        "proxied",
        "accept_proxy: { from: [\"127.0.0.1/32\"] }\n",
    );
    let v2 = [
        b"\r\n\r\n\0\r\nQUIT\n".as_slice(),
        &[
            0x21, 0x11, 0, 12, 203, 0, 113, 7, 127, 0, 0, 1, 0xc8, 0x22, 1, 0xbb,
        ],
    ]
    .concat();
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 443\r\n".to_vec();
    // Warm-up, then alternate so neither edge always runs first.
    run(&plain, plain_addr, &[], 1_000);
    run(&proxied, proxied_addr, &v2, 1_000);
    let mut results = [0.0f64; 3];
    for round in 0..2 {
        let order: [usize; 3] = if round == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            results[which] += match which {
                0 => run(&plain, plain_addr, &[], n),
                1 => run(&proxied, proxied_addr, &v2, n),
                _ => run(&proxied, proxied_addr, &v1, n),
            } / 2.0;
        }
    }
    println!(
        "proxy_header: {n} connections × 2 rounds per case, rejected ClientHellos, edge CPU per connection"
    );
    println!("| case | edge CPU µs/conn | ÷ no header |");
    println!("|---|---|---|");
    for (label, value) in [
        ("no accept_proxy, no header", results[0]),
        ("accept_proxy, v2 header", results[1]),
        ("accept_proxy, v1 header", results[2]),
    ] {
        println!("| {label} | {value:.1} | {:.2} |", value / results[0]);
    }
    for child in [&mut plain, &mut proxied] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
