//! Does a BPF sockmap relay pay on this kernel? Measures the whole
//! machine's CPU time (`/proc/stat`: user, nice, system, irq, softirq,
//! steal) while 2 GiB cross a loopback relay, done two ways in the same
//! run:
//!
//! - `sockmap`: both relay sockets in a `SOCKHASH` with an `SK_SKB` stream
//!   verdict program (hand-assembled below, loaded through `bpf(2)`) that
//!   looks up the peer by socket cookie and redirects each skb to the
//!   peer's egress (`bpf_sk_redirect_hash`): no byte reaches user space;
//! - `user space`: a thread copying through a 16 KiB buffer, the edge's
//!   relay (`io/copy.rs`) in its simplest form.
//!
//! It then shows what a slow reader does to the sockmap relay: the sender
//! writes while the receiver reads nothing for 2 s, and the bytes the
//! sender got rid of are what the kernel holds on the relay's behalf.
//!
//! Needs root (or CAP_BPF + CAP_NET_ADMIN). Loopback only, bounded in bytes
//! and time. `cargo run --release -p hearth-edge-benches --bin sockmap_relay`.
//! Results: `benches/RESULTS.md` ("A sockmap relay").

#![allow(unsafe_code)] // bpf(2) and getsockopt(SO_COOKIE) have no safe wrapper here.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bytes relayed per measurement.
const RELAYED: usize = 2 << 30;
/// Write and read size of the endpoints.
const CHUNK: usize = 64 * 1024;
/// The user-space relay's buffer (the edge's `RELAY_BUFFER_BYTES`).
const RELAY_BUFFER: usize = 16 * 1024;
/// How long the slow reader reads nothing.
const STALL: Duration = Duration::from_secs(2);
/// The most the slow-reader sender writes (bounds the test).
const STALL_CAP: usize = 1 << 30;

// bpf(2) commands, map, program and attach types, helpers (uapi/linux/bpf.h).
const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_ATTACH: i32 = 8;
const MAP_TYPE_HASH: u32 = 1;
const MAP_TYPE_SOCKHASH: u32 = 18;
const PROG_TYPE_SK_SKB: u32 = 14;
const SK_SKB_STREAM_VERDICT: u32 = 5;
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_GET_SOCKET_COOKIE: i32 = 46;
const HELPER_SK_REDIRECT_HASH: i32 = 72;
const SK_PASS: i32 = 1;
/// `SO_COOKIE` (asm-generic/socket.h).
const SO_COOKIE: i32 = 57;
/// Entries of both maps.
const MAP_ENTRIES: u32 = 64;

/// A `union bpf_attr`, zeroed, with fields written at their offsets.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(mut self, offset: usize, value: u32) -> Attr {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }
    fn u64(mut self, offset: usize, value: u64) -> Attr {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }
    fn call(mut self, command: i32) -> io::Result<i32> {
        // SAFETY: the attribute buffer is a valid, fully initialised
        // `union bpf_attr` of the size passed; pointers in it point to
        // live buffers owned by the caller for the duration of the call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, command, self.0.as_mut_ptr(), 128usize) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as i32)
        }
    }
}

/// One eBPF instruction.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0xf);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// The verdict program: peer = peers[cookie(skb)]; redirect to it, or pass
/// the bytes to the socket itself when there is none.
fn program(peers: i32, sockets: i32) -> Vec<u8> {
    [
        insn(0xbf, 6, 1, 0, 0),                        // r6 = skb
        insn(0x85, 0, 0, 0, HELPER_GET_SOCKET_COOKIE), // r0 = cookie
        insn(0x7b, 10, 0, -8, 0),                      // *(fp-8) = r0
        insn(0x18, 1, 1, 0, peers),                    // r1 = &peers
        insn(0, 0, 0, 0, 0),
        insn(0xbf, 2, 10, 0, 0),                     // r2 = fp
        insn(0x07, 2, 0, 0, -8),                     // r2 -= 8
        insn(0x85, 0, 0, 0, HELPER_MAP_LOOKUP_ELEM), // r0 = &peer
        insn(0x15, 0, 0, 10, 0),                     // if !r0 goto pass
        insn(0x79, 1, 0, 0, 0),                      // r1 = *r0
        insn(0x7b, 10, 1, -16, 0),                   // *(fp-16) = r1
        insn(0xbf, 1, 6, 0, 0),                      // r1 = skb
        insn(0x18, 2, 1, 0, sockets),                // r2 = &sockets
        insn(0, 0, 0, 0, 0),
        insn(0xbf, 3, 10, 0, 0),                      // r3 = fp
        insn(0x07, 3, 0, 0, -16),                     // r3 -= 16
        insn(0xb7, 4, 0, 0, 0),                       // r4 = 0 (egress)
        insn(0x85, 0, 0, 0, HELPER_SK_REDIRECT_HASH), // return redirect
        insn(0x95, 0, 0, 0, 0),
        insn(0xb7, 0, 0, 0, SK_PASS), // pass: return SK_PASS
        insn(0x95, 0, 0, 0, 0),
    ]
    .concat()
}

fn map(kind: u32) -> io::Result<i32> {
    Attr::new()
        .u32(0, kind)
        .u32(4, 8)
        .u32(8, 8)
        .u32(12, MAP_ENTRIES)
        .call(BPF_MAP_CREATE)
}

fn update(map: i32, key: u64, value: u64) -> io::Result<()> {
    let (key, value) = (key.to_ne_bytes(), value.to_ne_bytes());
    Attr::new()
        .u32(0, map as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value.as_ptr() as u64)
        .call(BPF_MAP_UPDATE_ELEM)
        .map(drop)
}

fn cookie(socket: &TcpStream) -> io::Result<u64> {
    let mut value = 0u64;
    let mut len = 8 as libc::socklen_t;
    // SAFETY: a valid socket and an 8-byte out buffer with its length.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_COOKIE,
            (&mut value as *mut u64).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The sockmap relay's maps, with the program attached.
struct Sockmap {
    peers: i32,
    sockets: i32,
}

impl Sockmap {
    fn load() -> io::Result<Sockmap> {
        let sockets = map(MAP_TYPE_SOCKHASH)?;
        let peers = map(MAP_TYPE_HASH)?;
        let code = program(peers, sockets);
        let license = b"Apache-2.0\0";
        let prog = Attr::new()
            .u32(0, PROG_TYPE_SK_SKB)
            .u32(4, (code.len() / 8) as u32)
            .u64(8, code.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .call(BPF_PROG_LOAD)?;
        Attr::new()
            .u32(0, sockets as u32)
            .u32(4, prog as u32)
            .u32(8, SK_SKB_STREAM_VERDICT)
            .call(BPF_PROG_ATTACH)?;
        Ok(Sockmap { peers, sockets })
    }

    /// Joins `a` and `b`: each one's bytes go out of the other.
    fn join(&self, a: &TcpStream, b: &TcpStream) -> io::Result<()> {
        let (ca, cb) = (cookie(a)?, cookie(b)?);
        update(self.sockets, ca, a.as_raw_fd() as u64)?;
        update(self.sockets, cb, b.as_raw_fd() as u64)?;
        update(self.peers, ca, cb)?;
        update(self.peers, cb, ca)
    }
}

/// client ⇄ (front | back) ⇄ server on loopback.
struct Path {
    client: TcpStream,
    front: TcpStream,
    back: TcpStream,
    server: TcpStream,
}

fn path() -> io::Result<Path> {
    let l1 = TcpListener::bind("127.0.0.1:0")?;
    let l2 = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(l1.local_addr()?)?;
    let (front, _) = l1.accept()?;
    let back = TcpStream::connect(l2.local_addr()?)?;
    let (server, _) = l2.accept()?;
    Ok(Path {
        client,
        front,
        back,
        server,
    })
}

fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    busy as f64 / 100.0 // USER_HZ
}

/// Sends RELAYED bytes server → client; returns (seconds, machine CPU s).
fn download(mut server: TcpStream, mut client: TcpStream) -> io::Result<(f64, f64)> {
    let sender = std::thread::spawn(move || -> io::Result<()> {
        let chunk = vec![7u8; CHUNK];
        for _ in 0..RELAYED / CHUNK {
            server.write_all(&chunk)?;
        }
        server.shutdown(Shutdown::Write)
    });
    let busy = machine_busy_seconds();
    let start = Instant::now();
    let mut got = 0;
    let mut buf = vec![0u8; CHUNK];
    while got < RELAYED {
        match client.read(&mut buf)? {
            0 => break,
            n => got += n,
        }
    }
    let took = start.elapsed().as_secs_f64();
    let cpu = machine_busy_seconds() - busy;
    sender
        .join()
        .map_err(|_| io::Error::other("sender panicked"))??;
    if got != RELAYED {
        return Err(io::Error::other(format!(
            "relayed {got} of {RELAYED} bytes"
        )));
    }
    Ok((took, cpu))
}

fn main() -> io::Result<()> {
    let sockmap = Sockmap::load()
        .map_err(|e| io::Error::other(format!("loading the sockmap relay (needs root): {e}")))?;
    let gib = RELAYED as f64 / (1u64 << 30) as f64;

    let p = path()?;
    sockmap.join(&p.front, &p.back)?;
    let (t_map, cpu_map) = download(p.server, p.client)?;

    let p = path()?;
    let (mut front, mut back) = (p.front, p.back);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; RELAY_BUFFER];
        while let Ok(n) = back.read(&mut buf) {
            if n == 0 || front.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = front.shutdown(Shutdown::Write);
    });
    let (t_copy, cpu_copy) = download(p.server, p.client)?;

    println!("| relay | MB/s | whole-machine CPU per GiB (s, endpoints included) |");
    println!("|---|---:|---:|");
    println!(
        "| sockmap (bpf_sk_redirect_hash) | {:.0} | {:.2} |",
        RELAYED as f64 / t_map / 1e6,
        cpu_map / gib
    );
    println!(
        "| user-space copy | {:.0} | {:.2} |",
        RELAYED as f64 / t_copy / 1e6,
        cpu_copy / gib
    );
    println!("| sockmap ÷ copy | | {:.2}× |", cpu_map / cpu_copy);

    // A slow reader behind the sockmap relay.
    let p = path()?;
    sockmap.join(&p.front, &p.back)?;
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let mut server = p.server;
    server.set_write_timeout(Some(STALL))?;
    let sender = std::thread::spawn(move || {
        let chunk = vec![7u8; CHUNK];
        while counter.load(Ordering::Relaxed) < STALL_CAP && server.write_all(&chunk).is_ok() {
            counter.fetch_add(CHUNK, Ordering::Relaxed);
        }
    });
    std::thread::sleep(STALL);
    let stalled = written.load(Ordering::Relaxed);
    let mut client = p.client;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0;
    while got < stalled {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let _ = sender.join();
    println!();
    println!(
        "slow reader: the sender wrote {} MiB while the reader read nothing for {:?} (the relay's socket buffers hold a few MiB; the rest waited in the kernel's sockmap queue); the reader then got {} MiB",
        stalled >> 20,
        STALL,
        got >> 20
    );
    Ok(())
}
