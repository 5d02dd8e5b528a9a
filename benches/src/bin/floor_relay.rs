//! The floor under a user-space passthrough relay's cost per connection:
//! a relay that does nothing a passthrough proxy could leave out. It
//! accepts, waits for the first bytes (the ClientHello), dials the one
//! backend, replays them and copies both ways through a 16 KiB buffer per
//! direction, passing each end of stream on as a half-close, then closes.
//! No hello parsing, no policy, no routing, no time-outs, no metrics, no
//! log, one thread, buffers kept from connection to connection. Two ways
//! to wait for the sockets, each with the fewest system calls it allows:
//!
//! - `epoll`: non-blocking sockets registered edge-triggered once each
//!   (closing them unregisters them), no `SO_ERROR` after connect, no read
//!   to see `EAGAIN` after a short read unless the peer has hung up (its
//!   end of stream can sit behind the short read), none after a short
//!   write;
//! - `uring`: io_uring, a multishot accept, the connect linked to the
//!   hello's send, each read and write an operation, shutdowns and closes
//!   too, all submitted in one `io_uring_enter` per turn of the loop.
//!
//! `benches/macro/run.sh` runs both beside the edge and HAProxy when
//! `FLOOR=1` and reports their CPU per new connection and per relayed GiB
//! in the same rounds. What they show is how much of a proxy's cost is
//! the kernel's work for the relayed sockets, which no proxy can skip.
//!
//! `floor_relay epoll|uring <listen ip:port> <backend ip:port>` (IPv4).
//! Results: `benches/RESULTS.md` ("The floor of a user-space relay").

#![allow(unsafe_code)] // epoll, io_uring and the socket calls have no safe wrapper here.

use std::io;
use std::net::{SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{IoUring, opcode, squeue, types};

/// Bytes per direction in flight through the relay (the edge's relay
/// buffer).
const BUF: usize = 16 * 1024;

/// Client → backend is direction 0, backend → client direction 1; side 0
/// is the client's socket, side 1 the backend's.
struct Conn {
    fds: [RawFd; 2],
    bufs: [Box<[u8]>; 2],
    /// Bytes of each direction's buffer not yet written: `start..end`.
    pending: [(usize, usize); 2],
    /// Each direction's source has ended (and the destination was shut).
    ended: [bool; 2],
    /// The backend is dialled and the hello replayed.
    relaying: bool,
    /// epoll: what each side is known to be ready for.
    readable: [bool; 2],
    writable: [bool; 2],
    /// epoll: each side's peer has ended its stream (`EPOLLRDHUP`): its end
    /// of stream may sit behind a short read, with no event to follow.
    hung_up: [bool; 2],
    /// io_uring: operations in flight on this connection's buffers.
    in_flight: u32,
    failed: bool,
}

/// The connections, by slot, and the free slots.
#[derive(Default)]
struct Slab {
    conns: Vec<Conn>,
    free: Vec<usize>,
}

impl Slab {
    fn open(&mut self, client: RawFd) -> usize {
        let fresh = |conn: &mut Conn| {
            conn.fds = [client, -1];
            conn.pending = [(0, 0); 2];
            conn.ended = [false; 2];
            conn.relaying = false;
            conn.readable = [false; 2];
            conn.writable = [false; 2];
            conn.hung_up = [false; 2];
            conn.in_flight = 0;
            conn.failed = false;
        };
        if let Some(slot) = self.free.pop() {
            fresh(&mut self.conns[slot]);
            return slot;
        }
        let mut conn = Conn {
            fds: [-1; 2],
            bufs: [
                vec![0; BUF].into_boxed_slice(),
                vec![0; BUF].into_boxed_slice(),
            ],
            pending: [(0, 0); 2],
            ended: [false; 2],
            relaying: false,
            readable: [false; 2],
            writable: [false; 2],
            hung_up: [false; 2],
            in_flight: 0,
            failed: false,
        };
        fresh(&mut conn);
        self.conns.push(conn);
        self.conns.len() - 1
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    sa
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

// --- epoll ---

const LISTENER: u64 = u64::MAX;

fn epoll_add(ep: RawFd, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: a valid epoll fd and socket; `ev` outlives the call.
    check(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves what it can in both directions of an epoll connection. Returns
/// false when the connection is over (both ends of stream passed on, or
/// an error) and its sockets must be closed.
fn pump(conn: &mut Conn) -> io::Result<bool> {
    for d in 0..2 {
        let (src, dst) = (d, 1 - d);
        loop {
            let (start, end) = conn.pending[d];
            if start < end {
                if !conn.writable[dst] {
                    break;
                }
                match send(conn.fds[dst], &conn.bufs[d][start..end]) {
                    Ok(n) => {
                        conn.pending[d].0 += n;
                        if start + n < end {
                            conn.writable[dst] = false; // its send buffer is full
                            break;
                        }
                    }
                    Err(e) if would_block(&e) => {
                        conn.writable[dst] = false;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if conn.ended[d] || !conn.readable[src] {
                break;
            }
            match recv(conn.fds[src], &mut conn.bufs[d]) {
                Ok(0) => {
                    conn.ended[d] = true;
                    // SAFETY: an open socket.
                    check(unsafe { libc::shutdown(conn.fds[dst], libc::SHUT_WR) })?;
                    break;
                }
                Ok(n) => {
                    conn.pending[d] = (0, n);
                    if n < BUF && !conn.hung_up[src] {
                        conn.readable[src] = false; // drained: the next bytes bring an event
                    }
                }
                Err(e) if would_block(&e) => {
                    conn.readable[src] = false;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(!(conn.ended[0] && conn.ended[1]))
}

/// One epoll connection's turn after an event: the hello, the dial and
/// its replay, then the relay. Returns false when it is over.
fn epoll_turn(
    conn: &mut Conn,
    ep: RawFd,
    slot: usize,
    backend: &libc::sockaddr_in,
) -> io::Result<bool> {
    if conn.fds[1] < 0 {
        if !conn.readable[0] {
            return Ok(true);
        }
        let n = match recv(conn.fds[0], &mut conn.bufs[0]) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if would_block(&e) => {
                conn.readable[0] = false;
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        conn.pending[0] = (0, n);
        conn.readable[0] = n == BUF || conn.hung_up[0];
        // SAFETY: plain socket calls; `backend` outlives them.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        conn.fds[1] = fd;
        let ret = unsafe {
            libc::connect(
                fd,
                (backend as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        let ready = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        epoll_add(ep, fd, ready as u32, (slot as u64) << 1 | 1)?;
        return Ok(true); // the backend's writability says the dial is done
    }
    if !conn.relaying {
        if !conn.writable[1] {
            return Ok(true);
        }
        conn.relaying = true;
    }
    pump(conn)
}

fn run_epoll(listener: &TcpListener, backend: SocketAddrV4) -> io::Result<()> {
    let backend = sockaddr(backend);
    listener.set_nonblocking(true)?;
    let lfd = listener.as_raw_fd();
    // SAFETY: plain system calls on fds this function owns.
    let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    epoll_add(ep, lfd, libc::EPOLLIN as u32, LISTENER)?;
    let mut slab = Slab::default();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let ready = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
    loop {
        // SAFETY: `events` holds 256 entries.
        let n = match check(unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 256, -1) }) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for ev in &events[..n] {
            let (token, flags) = (ev.u64, ev.events);
            if token == LISTENER {
                loop {
                    // SAFETY: the listener is open; no peer address wanted.
                    let fd = unsafe {
                        libc::accept4(
                            lfd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        break; // EAGAIN, or a connection that died in the queue
                    }
                    let slot = slab.open(fd);
                    epoll_add(ep, fd, ready, (slot as u64) << 1)?;
                }
                continue;
            }
            let (slot, side) = ((token >> 1) as usize, (token & 1) as usize);
            let Some(conn) = slab.conns.get_mut(slot) else {
                continue;
            };
            if conn.fds[0] < 0 {
                continue; // closed earlier in this batch
            }
            let bits = |b: libc::c_int| flags & b as u32 != 0;
            if bits(libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) {
                conn.readable[side] = true;
            }
            if bits(libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) {
                conn.hung_up[side] = true;
            }
            if bits(libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) {
                conn.writable[side] = true;
            }
            if !matches!(epoll_turn(conn, ep, slot, &backend), Ok(true)) {
                for fd in conn.fds {
                    if fd >= 0 {
                        // SAFETY: the connection's own sockets, closed once.
                        unsafe { libc::close(fd) };
                    }
                }
                conn.fds = [-1; 2];
                slab.free.push(slot);
            }
        }
    }
}

// --- io_uring ---

// Operation kinds, in the low byte of each entry's user data (the slot
// above it).
const ACCEPT: u64 = 0;
const RECV: u64 = 1; // + direction
const SEND: u64 = 3; // + direction
const CONNECT: u64 = 5;
const SHUTDOWN: u64 = 6;
const CLOSE: u64 = 7;

struct Uring {
    ring: IoUring,
    backend: Box<libc::sockaddr_in>,
    lfd: RawFd,
    slab: Slab,
}

impl Uring {
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every buffer and address an entry points to lives in
            // the slab or in `self` until its completion arrives.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn op(&mut self, slot: usize, entry: squeue::Entry, kind: u64) -> io::Result<()> {
        self.slab.conns[slot].in_flight += 1;
        self.push(entry.user_data((slot as u64) << 8 | kind))
    }

    fn recv(&mut self, slot: usize, d: usize) -> io::Result<()> {
        let conn = &mut self.slab.conns[slot];
        let fd = conn.fds[d]; // direction d reads side d
        let buf = conn.bufs[d].as_mut_ptr();
        self.op(
            slot,
            opcode::Recv::new(types::Fd(fd), buf, BUF as u32).build(),
            RECV + d as u64,
        )
    }

    fn send(&mut self, slot: usize, d: usize) -> io::Result<()> {
        let conn = &mut self.slab.conns[slot];
        let (start, end) = conn.pending[d];
        let fd = conn.fds[1 - d];
        // SAFETY: `start < end <= BUF`.
        let buf = unsafe { conn.bufs[d].as_ptr().add(start) };
        let entry = opcode::Send::new(types::Fd(fd), buf, (end - start) as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        self.op(slot, entry, SEND + d as u64)
    }

    fn accept(&mut self) -> io::Result<()> {
        self.push(
            opcode::AcceptMulti::new(types::Fd(self.lfd))
                .build()
                .user_data(ACCEPT),
        )
    }

    /// Closes a connection whose operations are all complete, through the
    /// ring, and frees its slot (a close touches no buffer).
    fn finish(&mut self, slot: usize) -> io::Result<()> {
        let fds = self.slab.conns[slot].fds;
        self.slab.conns[slot].fds = [-1; 2];
        self.slab.free.push(slot);
        for fd in fds {
            if fd >= 0 {
                self.push(opcode::Close::new(types::Fd(fd)).build().user_data(CLOSE))?;
            }
        }
        Ok(())
    }

    /// Ends a connection after an error: its sockets are shut both ways so
    /// that the operations still in flight complete, then closed.
    fn fail(&mut self, slot: usize) {
        let conn = &mut self.slab.conns[slot];
        if !conn.failed {
            conn.failed = true;
            for fd in conn.fds {
                if fd >= 0 {
                    // SAFETY: the connection's own open sockets.
                    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                }
            }
        }
    }

    fn complete(&mut self, user_data: u64, res: i32, more: bool) -> io::Result<()> {
        let kind = user_data & 0xff;
        if kind == CLOSE {
            return Ok(());
        }
        if kind == ACCEPT {
            if !more {
                self.accept()?;
            }
            if res >= 0 {
                let slot = self.slab.open(res);
                self.recv(slot, 0)?;
            }
            return Ok(());
        }
        let slot = (user_data >> 8) as usize;
        self.slab.conns[slot].in_flight -= 1;
        if self.slab.conns[slot].failed {
            if self.slab.conns[slot].in_flight == 0 {
                self.finish(slot)?;
            }
            return Ok(());
        }
        match kind {
            RECV | 2 => {
                let d = (kind - RECV) as usize;
                if !self.slab.conns[slot].relaying && d == 0 {
                    return self.hello(slot, res);
                }
                if res < 0 {
                    self.fail(slot);
                } else if res == 0 {
                    self.slab.conns[slot].ended[d] = true;
                    let fd = self.slab.conns[slot].fds[1 - d];
                    self.op(
                        slot,
                        opcode::Shutdown::new(types::Fd(fd), libc::SHUT_WR).build(),
                        SHUTDOWN,
                    )?;
                } else {
                    self.slab.conns[slot].pending[d] = (0, res as usize);
                    self.send(slot, d)?;
                }
            }
            CONNECT if res < 0 => self.fail(slot), // the linked send is cancelled with it
            SEND | 4 => {
                let d = (kind - SEND) as usize;
                if res < 0 {
                    self.fail(slot);
                    return self.settle(slot);
                }
                let conn = &mut self.slab.conns[slot];
                conn.pending[d].0 += res as usize;
                if conn.pending[d].0 < conn.pending[d].1 {
                    self.send(slot, d)?;
                } else if !conn.relaying {
                    conn.relaying = true; // the hello is replayed: read both ways
                    self.recv(slot, 0)?;
                    self.recv(slot, 1)?;
                } else {
                    self.recv(slot, d)?;
                }
            }
            _ => {} // SHUTDOWN
        }
        self.settle(slot)
    }

    /// Closes the connection once nothing is in flight and both ends of
    /// stream were passed on, or it failed.
    fn settle(&mut self, slot: usize) -> io::Result<()> {
        let conn = &self.slab.conns[slot];
        if conn.in_flight == 0 && (conn.failed || conn.ended == [true; 2]) {
            self.finish(slot)?;
        }
        Ok(())
    }

    /// The client's first bytes: dial the backend and replay them, the send
    /// linked to the connect so both go in one submission.
    fn hello(&mut self, slot: usize, res: i32) -> io::Result<()> {
        if res <= 0 {
            self.slab.conns[slot].failed = true;
            return self.settle(slot);
        }
        self.slab.conns[slot].pending[0] = (0, res as usize);
        // SAFETY: a plain socket call.
        let fd = check(unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
        })?;
        self.slab.conns[slot].fds[1] = fd;
        let addr = (&*self.backend as *const libc::sockaddr_in).cast();
        let connect = opcode::Connect::new(
            types::Fd(fd),
            addr,
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
        .build()
        .flags(squeue::Flags::IO_LINK);
        self.op(slot, connect, CONNECT)?;
        self.send(slot, 0)
    }
}

fn run_uring(listener: &TcpListener, backend: SocketAddrV4) -> io::Result<()> {
    let mut uring = Uring {
        ring: IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(4096)?,
        backend: Box::new(sockaddr(backend)),
        lfd: listener.as_raw_fd(),
        slab: Slab::default(),
    };
    uring.accept()?;
    let mut done = Vec::with_capacity(1024);
    loop {
        match uring.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        done.clear();
        done.extend(
            uring
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), io_uring::cqueue::more(c.flags()))),
        );
        for &(user_data, res, more) in &done {
            uring.complete(user_data, res, more)?;
        }
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        || io::Error::other("usage: floor_relay epoll|uring <listen ip:port> <backend ip:port>");
    if args.len() != 4 {
        return Err(usage());
    }
    let listen: SocketAddrV4 = args[2].parse().map_err(|_| usage())?;
    let backend: SocketAddrV4 = args[3].parse().map_err(|_| usage())?;
    let listener = TcpListener::bind(listen)?;
    match args[1].as_str() {
        "epoll" => run_epoll(&listener, backend),
        "uring" => run_uring(&listener, backend),
        _ => Err(usage()),
    }
}
