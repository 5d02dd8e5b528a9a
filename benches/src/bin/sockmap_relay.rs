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
//! Last, the cost per short connection (`per_connection`): many small
//! connections, each the four flights of a TLS 1.3 handshake and one small
//! request, through each relay, against the same connections made directly.
//! The sockmap relay there does what one in the edge would have to: read
//! the hello, join the two sockets, replay the hello, forward any bytes the
//! verdict passed, and at each end of stream wait until every redirected
//! byte is in the peer's write queue before shutting its write side.
//!
//! Needs root (or CAP_BPF + CAP_NET_ADMIN). Loopback only, bounded in bytes
//! and time. `cargo run --release -p hearth-edge-benches --bin sockmap_relay
//! [bulk|slow|conns]` (all three when none is named).
//! Results: `benches/RESULTS.md` ("A sockmap relay").

#![allow(unsafe_code)] // bpf(2), getsockopt(SO_COOKIE, TCP_INFO), ioctl(SIOCOUTQ) and poll have no safe wrapper here.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
const BPF_MAP_DELETE_ELEM: i32 = 3;
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
/// Entries of both maps (more than the connections open at once).
const MAP_ENTRIES: u32 = 1024;

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
/// the bytes to the socket itself when there is none. An skb without bytes
/// (a FIN) is passed too: redirected, the kernel fails the peer's socket
/// with EPIPE when it finds nothing to send; passed, it reaches user space
/// as the end of stream it is.
fn program(peers: i32, sockets: i32) -> Vec<u8> {
    [
        insn(0x61, 2, 1, 0, 0),                        // r2 = skb->len
        insn(0x15, 2, 0, 19, 0),                       // if !r2 goto pass
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

fn delete(map: i32, key: u64) -> io::Result<()> {
    let key = key.to_ne_bytes();
    Attr::new()
        .u32(0, map as u32)
        .u64(8, key.as_ptr() as u64)
        .call(BPF_MAP_DELETE_ELEM)
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
#[derive(Clone, Copy)]
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

    /// Undoes `join`'s peer entries (the sockets leave the `SOCKHASH` by
    /// themselves when they close).
    fn part(&self, a: &TcpStream, b: &TcpStream) -> io::Result<()> {
        delete(self.peers, cookie(a)?)?;
        delete(self.peers, cookie(b)?)
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

fn bulk(sockmap: &Sockmap) -> io::Result<()> {
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

    Ok(())
}

/// A slow reader behind the sockmap relay.
fn slow_reader(sockmap: &Sockmap) -> io::Result<()> {
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
    println!(
        "slow reader: the sender wrote {} MiB while the reader read nothing for {:?} (the relay's socket buffers hold a few MiB; the rest waited in the kernel's sockmap queue); the reader then got {} MiB",
        stalled >> 20,
        STALL,
        got >> 20
    );
    Ok(())
}

/// Connections per relay and round in the per-connection measurement.
const CONNS: usize = 10_000;
/// Connections in flight at once (client, relay and server threads each).
const PARALLEL: usize = 8;
/// Alternated rounds (direct, copy, sockmap); medians are reported.
const ROUNDS: usize = 5;
/// A TLS 1.3 handshake with one small request, in bytes: the client's
/// hello, the server's flight, the client's Finished with the request, the
/// response.
const FLIGHTS: [usize; 4] = [517, 4_000, 150, 300];
/// How long a relay waits for redirected bytes to be acknowledged.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq)]
#[repr(usize)]
enum Relay {
    Copy,
    Sockmap,
}

/// `tcpi_bytes_acked` and `tcpi_bytes_received` (linux/tcp.h, `struct
/// tcp_info` at offsets 120 and 128).
fn acked_received(socket: &TcpStream) -> io::Result<(u64, u64)> {
    let mut info = [0u8; 232];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: a valid socket and an out buffer with its length.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 || len < 136 {
        return Err(io::Error::other("TCP_INFO without byte counts"));
    }
    let at = |o: usize| u64::from_ne_bytes(info[o..o + 8].try_into().unwrap_or([0; 8]));
    Ok((at(120), at(128)))
}

/// Bytes written to `socket` so far: acknowledged (`tcpi_bytes_acked`)
/// plus still in its write queue (`SIOCOUTQ`).
fn written(socket: &TcpStream) -> io::Result<u64> {
    let (acked, _) = acked_received(socket)?;
    let mut queued: libc::c_int = 0;
    // SAFETY: a valid socket and an int out parameter.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(acked + queued.max(0) as u64)
}

/// Once `from` has ended its stream, waits until every byte it received
/// has been written to `to` (the verdict's redirects are sent from a
/// kernel worker, after the verdict ran): a FIN queued on `to` before them
/// would fail them. `from`'s count includes its FIN, one sequence number.
/// Counts the times it had to wait.
fn flushed(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let started = Instant::now();
    let (_, received) = acked_received(from)?;
    loop {
        let sent = written(to)?;
        if sent + 1 >= received {
            return Ok(());
        }
        if started.elapsed() > FLUSH_LIMIT {
            return Err(io::Error::other(format!(
                "{sent} of {received} redirected bytes written"
            )));
        }
        FLUSH_WAITS.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(FLUSH_POLL);
    }
}

/// Waits in `flushed`, all connections together.
static FLUSH_WAITS: AtomicUsize = AtomicUsize::new(0);
/// How long `flushed` sleeps between looks.
const FLUSH_POLL: Duration = Duration::from_micros(20);

/// Readiness events each relay took, and how many of them found nothing
/// to read (`[copy, sockmap]`).
static EVENTS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static EMPTY: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Both directions of one connection: bytes read on either socket are
/// written to the other (all of them with `Relay::Copy`; with
/// `Relay::Sockmap` only what the verdict passed); an end of stream is
/// passed on as a half-close once the peer is flushed. A socket in a
/// sockmap stays reported readable once the verdict took bytes from it
/// (`poll` counts them as received and not yet read), so the sockmap relay
/// waits for the end of stream alone (`POLLRDHUP`) and forwards what was
/// passed then; reads never block, and an empty one waits again.
fn pump(relay: Relay, sockets: [&TcpStream; 2]) -> io::Result<()> {
    let mode = relay as usize;
    let events = match relay {
        Relay::Copy => libc::POLLIN | libc::POLLRDHUP,
        Relay::Sockmap => libc::POLLRDHUP,
    };
    let mut open = [true, true];
    let mut buf = vec![0u8; RELAY_BUFFER];
    while open[0] || open[1] {
        let mut fds = [0, 1].map(|i| libc::pollfd {
            fd: if open[i] { sockets[i].as_raw_fd() } else { -1 },
            events,
            revents: 0,
        });
        // SAFETY: two valid pollfd entries.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, 5_000) } <= 0 {
            return Err(io::Error::other("relay: no event within 5 s"));
        }
        for i in 0..2 {
            if !open[i] || fds[i].revents == 0 {
                continue;
            }
            EVENTS[mode].fetch_add(1, Ordering::Relaxed);
            let (from, to) = (sockets[i], sockets[1 - i]);
            // SAFETY: a valid socket and a buffer of the length passed.
            let n = unsafe {
                libc::recv(
                    from.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => {
                    if relay == Relay::Sockmap {
                        flushed(from, to)?;
                    }
                    to.shutdown(Shutdown::Write)?;
                    open[i] = false;
                }
                n if n > 0 => (&*to).write_all(&buf[..n as usize])?,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::WouldBlock {
                        return Err(e);
                    }
                    EMPTY[mode].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    Ok(())
}

/// One relayed connection: the hello is read first (the edge reads it for
/// the policy), then the backend dialled, the pair joined, the hello
/// replayed.
fn relay_one(
    relay: Relay,
    sockmap: Sockmap,
    front: TcpStream,
    server: SocketAddr,
) -> io::Result<()> {
    front.set_nodelay(true)?;
    let mut hello = [0u8; FLIGHTS[0]];
    (&front).read_exact(&mut hello)?;
    let back = TcpStream::connect(server)?;
    back.set_nodelay(true)?;
    if relay == Relay::Sockmap {
        sockmap.join(&front, &back)?;
    }
    (&back).write_all(&hello)?;
    pump(relay, [&front, &back])?;
    if relay == Relay::Sockmap {
        sockmap.part(&front, &back)?;
    }
    Ok(())
}

/// One server side: the handshake's flights, then the server closes first
/// (as nginx does after a `Connection: close` response).
fn serve_one(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = [0u8; 4_096];
    s.read_exact(&mut buf[..FLIGHTS[0]])?;
    s.write_all(&[1u8; FLIGHTS[1]])?;
    s.read_exact(&mut buf[..FLIGHTS[2]])?;
    s.write_all(&[2u8; FLIGHTS[3]])?;
    s.shutdown(Shutdown::Write)?;
    while s.read(&mut buf)? > 0 {}
    Ok(())
}

/// One client side; checks every byte it is sent.
fn client_one(to: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect(to)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 4_096];
    s.write_all(&[3u8; FLIGHTS[0]])?;
    s.read_exact(&mut buf[..FLIGHTS[1]])
        .map_err(|e| io::Error::other(format!("reading the server's flight: {e}")))?;
    if buf[..FLIGHTS[1]].iter().any(|&b| b != 1) {
        return Err(io::Error::other("server flight corrupted"));
    }
    s.write_all(&[4u8; FLIGHTS[2]])?;
    s.read_exact(&mut buf[..FLIGHTS[3]])
        .map_err(|e| io::Error::other(format!("reading the response: {e}")))?;
    if buf[..FLIGHTS[3]].iter().any(|&b| b != 2) {
        return Err(io::Error::other("response corrupted"));
    }
    if s.read(&mut buf)
        .map_err(|e| io::Error::other(format!("waiting for the end of stream: {e}")))?
        != 0
    {
        return Err(io::Error::other("bytes after the response"));
    }
    Ok(())
}

/// Counts a failed connection; the first is shown.
fn count_failure(failed: &AtomicUsize, side: &str, e: &io::Error) {
    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
        eprintln!("{side}: {e}");
    }
}

/// Threads accepting on `listener` until `stop`, each running `each` per
/// connection; errors are counted in `failed`.
fn acceptors(
    listener: &TcpListener,
    stop: &Arc<AtomicBool>,
    failed: &Arc<AtomicUsize>,
    each: impl Fn(TcpStream) -> io::Result<()> + Clone + Send + 'static,
) -> io::Result<()> {
    for _ in 0..PARALLEL {
        let (listener, stop, failed, each) = (
            listener.try_clone()?,
            stop.clone(),
            failed.clone(),
            each.clone(),
        );
        std::thread::spawn(move || {
            while let Ok((s, _)) = listener.accept() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Err(e) = each(s) {
                    count_failure(&failed, "relay or server", &e);
                }
            }
        });
    }
    Ok(())
}

/// The whole machine's context switches so far (`/proc/stat` `ctxt`).
fn machine_switches() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find_map(|l| l.strip_prefix("ctxt "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// CONNS connections to `to`, PARALLEL at a time; the whole machine's busy
/// seconds and context switches over them.
fn connections(to: SocketAddr, failed: &Arc<AtomicUsize>) -> io::Result<(f64, f64)> {
    let switches = machine_switches();
    let busy = machine_busy_seconds();
    let clients: Vec<_> = (0..PARALLEL)
        .map(|_| {
            let failed = failed.clone();
            std::thread::spawn(move || {
                for _ in 0..CONNS / PARALLEL {
                    if let Err(e) = client_one(to) {
                        count_failure(&failed, "client", &e);
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().map_err(|_| io::Error::other("client panicked"))?;
    }
    Ok((machine_busy_seconds() - busy, machine_switches() - switches))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The whole machine's CPU per short connection, directly and through each
/// relay, alternated.
fn per_connection(sockmap: Sockmap) -> io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let server = TcpListener::bind("127.0.0.1:0")?;
    let server_addr = server.local_addr()?;
    acceptors(&server, &stop, &failed, serve_one)?;
    let mut fronts = Vec::new();
    for relay in [Relay::Copy, Relay::Sockmap] {
        let front = TcpListener::bind("127.0.0.1:0")?;
        acceptors(&front, &stop, &failed, move |s| {
            relay_one(relay, sockmap, s, server_addr)
        })?;
        fronts.push(front);
    }
    let targets = [
        server_addr,
        fronts[0].local_addr()?,
        fronts[1].local_addr()?,
    ];
    let mut cpu = [Vec::new(), Vec::new(), Vec::new()];
    let mut switches = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (t, &to) in targets.iter().enumerate() {
            let (busy, switched) = connections(to, &failed)?;
            cpu[t].push(busy / CONNS as f64 * 1e6);
            switches[t].push(switched / CONNS as f64);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for &to in &targets {
        for _ in 0..PARALLEL {
            let _ = TcpStream::connect(to);
        }
    }
    let failures = failed.load(Ordering::Relaxed);
    if failures > 0 {
        return Err(io::Error::other(format!("{failures} connections failed")));
    }
    let [direct, copy, map] = cpu.map(median);
    let [s_direct, s_copy, s_map] = switches.map(median);
    println!(
        "Per short connection ({CONNS} × {ROUNDS} alternated rounds each, {PARALLEL} at once, flights {FLIGHTS:?} bytes), the whole machine, medians:"
    );
    println!(
        "| path | CPU µs per connection | beyond direct | context switches per connection | beyond direct |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!("| direct | {direct:.1} | | {s_direct:.1} | |");
    println!(
        "| user-space copy relay | {copy:.1} | {:.1} | {s_copy:.1} | {:.1} |",
        copy - direct,
        s_copy - s_direct
    );
    println!(
        "| sockmap relay | {map:.1} | {:.1} | {s_map:.1} | {:.1} |",
        map - direct,
        s_map - s_direct
    );
    println!(
        "| sockmap ÷ copy, beyond direct | | {:.2}× | | {:.2}× |",
        (map - direct) / (copy - direct),
        (s_map - s_direct) / (s_copy - s_direct)
    );
    let per_conn = |a: &[AtomicUsize; 2], m: Relay| {
        a[m as usize].load(Ordering::Relaxed) as f64 / (CONNS * ROUNDS) as f64
    };
    println!(
        "Readiness events per connection: copy {:.1} ({:.1} with nothing to read), sockmap {:.1} ({:.1}); the sockmap relay waited for its redirects to be written {:.2} times per connection.",
        per_conn(&EVENTS, Relay::Copy),
        per_conn(&EMPTY, Relay::Copy),
        per_conn(&EVENTS, Relay::Sockmap),
        per_conn(&EMPTY, Relay::Sockmap),
        FLUSH_WAITS.load(Ordering::Relaxed) as f64 / (CONNS * ROUNDS) as f64
    );
    Ok(())
}

fn main() -> io::Result<()> {
    let sockmap = Sockmap::load()
        .map_err(|e| io::Error::other(format!("loading the sockmap relay (needs root): {e}")))?;
    let only = std::env::args().nth(1);
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if runs("bulk") {
        bulk(&sockmap)?;
        println!();
    }
    if runs("slow") {
        slow_reader(&sockmap)?;
        println!();
    }
    if runs("conns") {
        per_connection(sockmap)?;
    }
    Ok(())
}
