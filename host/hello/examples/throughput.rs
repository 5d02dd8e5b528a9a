//! Rough cost of reading each captured hello: one push, one byte per push, and the
//! hello re-framed into 100-byte records. Run in release:
//! `cargo run --release -p hearth-edge-hello --example throughput`

use std::hint::black_box;
use std::time::Instant;

use hearth_edge_hello::Reader;

/// The edge's order of magnitude for its ClientHello limit.
const LIMIT: usize = 16 * 1024;
/// Iterations per measurement: enough for a stable per-hello figure in well under a second.
const ROUNDS: u32 = 20_000;
/// Record payload size for the re-framed variant.
const RECORD_SIZE: usize = 100;
const FIXTURES: [&str; 5] = [
    "openssl-tls13",
    "openssl-tls12-nosni",
    "curl",
    "rustls",
    "chromium-pq",
];

fn reframe(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in wire[5..].chunks(RECORD_SIZE) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn ns_per_hello(wire: &[u8], chunk: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..ROUNDS {
        let mut r = Reader::new(LIMIT);
        let mut hello = None;
        for piece in wire.chunks(chunk) {
            hello = r.push(black_box(piece)).expect("valid");
        }
        black_box(hello.expect("complete"));
    }
    start.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
}

fn main() {
    println!(
        "{:<22} {:>6} {:>12} {:>12} {:>14}",
        "fixture", "bytes", "one push", "1 B/push", "100 B records"
    );
    for name in FIXTURES {
        let path = format!("{}/testdata/{name}.bin", env!("CARGO_MANIFEST_DIR"));
        let wire = std::fs::read(&path).expect("fixture");
        let split = reframe(&wire);
        // Warm caches and the allocator before timing.
        ns_per_hello(&wire, wire.len());
        println!(
            "{:<22} {:>6} {:>9.0} ns {:>9.0} ns {:>11.0} ns",
            name,
            wire.len(),
            ns_per_hello(&wire, wire.len()),
            ns_per_hello(&wire, 1),
            ns_per_hello(&split, split.len()),
        );
    }
}
