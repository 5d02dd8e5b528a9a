//! Upstream pools: every backend is a [`Pool`] of one or more members
//! (`addr` or `addrs`, host names re-resolved every `resolve_interval`).
//! A member is picked round robin or by fewest in flight, skipping members
//! that failed their active health check (`upstream/health.rs`) or were
//! ejected after `eject.failures` consecutive failures (for
//! `eject.cooldown`). When every member is down, all are tried anyway: a
//! pool never refuses on stale health alone.
//!
//! Every mode picks, dials and retries through one loop,
//! [`Pool::try_members`]: passthrough and terminate relays through
//! [`Pool::connect`] (`proxy/relay.rs`), the HTTP mode with its own
//! attempt per member (`http/client.rs`). Settings come from
//! `config/http.rs`.

mod health;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{Backend, BackendAddr, Balance, Config, PoolSettings};
use crate::error::ConnError;
use crate::sync::{read, write};

/// Every backend's pool, by backend name.
#[derive(Debug, Default)]
pub struct Upstreams {
    pools: HashMap<String, Arc<Pool>>,
}

/// The members of one backend and how they are chosen.
#[derive(Debug)]
pub struct Pool {
    name: String,
    addrs: Vec<BackendAddr>,
    settings: PoolSettings,
    members: RwLock<Arc<Vec<Arc<Member>>>>,
    next: AtomicUsize,
    epoch: Instant,
    /// Relays offer their first bytes to TCP Fast Open.
    fast_open: bool,
}

/// One resolved address of a pool.
#[derive(Debug)]
pub struct Member {
    /// Where it is dialled.
    pub addr: SocketAddr,
    /// The configured host (name or IP) it came from, for `Host` headers.
    pub host: String,
    in_flight: AtomicUsize,
    failures: AtomicU32,
    /// Milliseconds since the pool's epoch until which it is ejected.
    ejected_until_ms: AtomicU64,
    healthy: AtomicBool,
}

/// Connects to `addr` with `TCP_NODELAY` set (small TLS records and
/// WebSocket frames should not wait for Nagle). A connect that completes
/// is known by the socket turning writable without an error condition, so
/// the kernel is asked for the socket's error (`SO_ERROR`) only when it
/// failed.
///
/// With `early` bytes the socket asks for TCP Fast Open
/// (`TCP_FASTOPEN_CONNECT`): when the kernel holds a cookie from this
/// backend the connect is deferred and the first send carries the bytes in
/// the SYN; otherwise the SYN asks for a cookie and nothing is sent early.
/// Either way the connect is confirmed (the SYN-ACK came) before this
/// returns, so a refusing member is still retried with nothing lost.
/// Returns how many of `early` were sent.
async fn connect(addr: SocketAddr, early: Option<&[u8]>) -> io::Result<(TcpStream, usize)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    // A kernel without the option dials as without `fast_open`.
    let early = early.filter(|_| set_fast_open_connect(&socket).is_ok());
    let mut sent = 0;
    match socket.connect(&addr.into()) {
        // Deferred by Fast Open: this send puts out the SYN with the bytes.
        Ok(()) => {
            if let Some(bytes) = early {
                sent = match socket.send_with_flags(bytes, libc::MSG_NOSIGNAL) {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => 0,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(e),
                };
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(socket.into())?;
    let ready = stream
        .ready(tokio::io::Interest::WRITABLE | tokio::io::Interest::ERROR)
        .await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused)));
    }
    Ok((stream, sent))
}

/// Turns on `TCP_FASTOPEN_CONNECT` (Linux 4.11+), which neither socket2
/// nor rustix wraps.
#[allow(unsafe_code)]
fn set_fast_open_connect(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is open for `socket`'s lifetime, and the
    // option value is a live `c_int` whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN_CONNECT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How one attempt of [`Pool::try_members`] on one member ended; `R` is
/// what the attempt was given (a request), handed back when unused.
pub enum Step<R, T, E> {
    /// Finished, well or not: the loop returns this.
    Done(Result<T, E>),
    /// The member could not be dialled; `R` was not sent.
    DialFailed(E, R),
    /// A reused connection turned out closed before `R` was sent: try
    /// again.
    Again(R),
}

/// A member in use: counted in flight until dropped.
#[derive(Debug)]
pub struct Lease {
    member: Arc<Member>,
}

// === impl Upstreams ===

impl Upstreams {
    /// A pool per backend of `config`. IP addresses are members at once;
    /// host names are resolved on first use and by [`Upstreams::spawn_maintenance`].
    pub fn new(config: &Config) -> Upstreams {
        let pools = config
            .backends
            .values()
            .map(|b| (b.name.clone(), Arc::new(Pool::new(b))))
            .collect();
        Upstreams { pools }
    }

    /// The pool of backend `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.get(name)
    }

    /// Starts the re-resolution and health-check tasks. Each ends by itself
    /// once its pool is dropped (a reload builds new pools). Outside a tokio
    /// runtime (`check`) nothing is started.
    pub fn spawn_maintenance(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for pool in self.pools.values() {
            let needs_task = pool.settings.health_check.is_some()
                || pool.addrs.iter().any(|a| a.host.parse::<IpAddr>().is_err());
            if needs_task {
                runtime.spawn(maintain(Arc::downgrade(pool)));
            }
        }
    }
}

/// Re-resolves names and runs health checks until the pool is gone.
async fn maintain(pool: Weak<Pool>) {
    let (resolve_every, check_every) = match pool.upgrade() {
        Some(p) => (
            p.settings.resolve_interval,
            p.settings.health_check.as_ref().map(|h| h.interval),
        ),
        None => return,
    };
    let tick = check_every.map_or(resolve_every, |c| c.min(resolve_every));
    let mut last_resolve: Option<Instant> = None;
    loop {
        let Some(p) = pool.upgrade() else { return };
        if last_resolve.is_none_or(|t| t.elapsed() >= resolve_every) {
            p.resolve().await;
            last_resolve = Some(Instant::now());
        }
        if let Some(check) = &p.settings.health_check {
            health::check_all(&p, check).await;
        }
        drop(p);
        tokio::time::sleep(tick).await;
    }
}

// === impl Pool ===

impl Pool {
    /// The pool of `backend`; IP literal members are known at once.
    pub fn new(backend: &Backend) -> Pool {
        let members: Vec<Arc<Member>> = backend
            .addrs
            .iter()
            .filter_map(|a| {
                let ip: IpAddr = a.host.parse().ok()?;
                Some(Arc::new(Member::new(SocketAddr::new(ip, a.port), &a.host)))
            })
            .collect();
        Pool {
            name: backend.name.clone(),
            addrs: backend.addrs.clone(),
            settings: backend.pool.clone(),
            members: RwLock::new(Arc::new(members)),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            fast_open: backend.fast_open,
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The current members.
    pub fn members(&self) -> Arc<Vec<Arc<Member>>> {
        read(&self.members).clone()
    }

    /// Looks every configured address up again. Members whose address is
    /// still there keep their state; a name that fails to resolve keeps its
    /// previous members.
    pub async fn resolve(&self) {
        let old = self.members();
        let mut fresh: Vec<Arc<Member>> = Vec::new();
        for a in &self.addrs {
            let found: Vec<SocketAddr> = match a.host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, a.port)],
                Err(_) => match tokio::net::lookup_host((a.host.as_str(), a.port)).await {
                    Ok(addrs) => addrs.collect(),
                    Err(error) => {
                        warn!(backend = %self.name, host = %a.host, error = %error, "backend name did not resolve");
                        old.iter()
                            .filter(|m| m.host == a.host && m.addr.port() == a.port)
                            .map(|m| m.addr)
                            .collect()
                    }
                },
            };
            for addr in found {
                if fresh.iter().any(|m| m.addr == addr) {
                    continue;
                }
                let member = old
                    .iter()
                    .find(|m| m.addr == addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Member::new(addr, &a.host)));
                fresh.push(member);
            }
        }
        *write(&self.members) = Arc::new(fresh);
    }

    /// Picks a member not in `tried`: an available one (healthy, not
    /// ejected) by the pool's balance; when no member at all is available,
    /// any untried one.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Member>> {
        let members = self.members();
        // The clock matters only once a member has been ejected.
        let now = if members
            .iter()
            .any(|m| m.ejected_until_ms.load(Ordering::Relaxed) != 0)
        {
            self.now_ms()
        } else {
            0
        };
        // Untried members that are up; when none at all is up, any
        // untried one (a pool that is all down still gets tried).
        let any_up = members.iter().any(|m| m.is_up(now));
        let eligible = |m: &&Arc<Member>| !tried.contains(&m.addr) && (!any_up || m.is_up(now));
        let count = members.iter().filter(eligible).count();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let chosen = match self.settings.balance {
            Balance::RoundRobin => members.iter().filter(eligible).nth(start),
            Balance::LeastConn => {
                // Fewest in flight; ties go round robin from `start`.
                members
                    .iter()
                    .filter(eligible)
                    .enumerate()
                    .min_by_key(|(i, m)| {
                        (
                            m.in_flight.load(Ordering::Relaxed),
                            (i + count - start) % count,
                        )
                    })
                    .map(|(_, m)| m)
            }
        };
        chosen.cloned()
    }

    /// Connects to `member` within `timeout`, counting only a failure: the
    /// HTTP mode counts the exchange that follows (a member that accepts
    /// connections and answers 503 is failing).
    pub async fn dial_only(
        &self,
        member: &Member,
        timeout: Duration,
    ) -> Result<TcpStream, ConnError> {
        self.dial_sending(member, timeout, None)
            .await
            .map(|(stream, _)| stream)
    }

    /// [`Pool::dial_only`], with `early` bytes offered to Fast Open;
    /// returns how many of them were sent.
    async fn dial_sending(
        &self,
        member: &Member,
        timeout: Duration,
        early: Option<&[u8]>,
    ) -> Result<(TcpStream, usize), ConnError> {
        let result = match tokio::time::timeout(timeout, connect(member.addr, early)).await {
            Ok(Ok(dialled)) => Ok(dialled),
            Ok(Err(source)) => Err(ConnError::Dial {
                addr: member.addr.to_string(),
                source,
            }),
            Err(_) => Err(ConnError::DialTimeout {
                addr: member.addr.to_string(),
                timeout,
            }),
        };
        if result.is_err() {
            self.failed(member);
        }
        result
    }

    /// Picks and dials, trying the next member when a connect fails (nothing
    /// has been sent yet), until one connects or every member was tried; a
    /// connect is the member's success (for a relay). `early` is what the
    /// caller writes first: with the backend's `fast_open` it may go in the
    /// SYN, and how much of it did is returned.
    pub async fn connect(
        &self,
        timeout: Duration,
        early: &[u8],
    ) -> Result<(TcpStream, Lease, usize), ConnError> {
        let early = (self.fast_open && !early.is_empty()).then_some(early);
        self.try_members(true, (), |member, lease, ()| async move {
            match self.dial_sending(&member, timeout, early).await {
                Ok((stream, sent)) => {
                    self.succeeded(&member);
                    Step::Done(Ok((stream, lease, sent)))
                }
                Err(error) => Step::DialFailed(error, ()),
            }
        })
        .await
    }

    /// The one pick → dial → retry loop of every mode: picks a member,
    /// leases it and hands it to `attempt` with `input`, until an attempt
    /// is [`Step::Done`]. A member that could not be dialled is logged and,
    /// when `retry` (nothing was sent), left out of the next picks; an
    /// attempt that gave `input` back unsent ([`Step::Again`]) is tried
    /// again. Ends with the last dial error once every member was tried,
    /// or the pool's "no address resolved" when there was none.
    pub async fn try_members<R, T, E, F, Fut>(
        &self,
        retry: bool,
        input: R,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display + From<ConnError>,
        F: FnMut(Arc<Member>, Lease, R) -> Fut,
        Fut: std::future::Future<Output = Step<R, T, E>>,
    {
        if self.members().is_empty() {
            self.resolve().await;
        }
        let mut input = input;
        // Members whose dial failed (allocated only then).
        let mut tried = Vec::new();
        let mut last = None;
        while let Some(member) = self.pick(&tried) {
            let lease = Lease::new(member.clone());
            match attempt(member.clone(), lease, input).await {
                Step::Done(result) => return result,
                Step::Again(unsent) => input = unsent,
                Step::DialFailed(error, unsent) => {
                    warn!(backend = %self.name, member = %member.addr, error = %error, "backend member dial failed");
                    last = Some(error);
                    if !retry {
                        break;
                    }
                    tried.push(member.addr);
                    input = unsent;
                }
            }
        }
        Err(last.unwrap_or_else(|| self.unresolved().into()))
    }

    /// The error for a pool with no member.
    pub fn unresolved(&self) -> ConnError {
        let addrs: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        ConnError::Dial {
            addr: addrs.join(","),
            source: io::Error::new(io::ErrorKind::NotFound, "no address resolved"),
        }
    }

    /// A request or connection through `member` worked.
    pub fn succeeded(&self, member: &Member) {
        member.failures.store(0, Ordering::Relaxed);
    }

    /// A connect or request through `member` failed: counts toward ejection.
    pub fn failed(&self, member: &Member) {
        let failures = member.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let eject = self.settings.eject;
        if failures >= eject.failures {
            member.failures.store(0, Ordering::Relaxed);
            let until =
                self.now_ms() + u64::try_from(eject.cooldown.as_millis()).unwrap_or(u64::MAX);
            member.ejected_until_ms.store(until, Ordering::Relaxed);
            warn!(backend = %self.name, member = %member.addr, failures, cooldown_ms = eject.cooldown.as_millis() as u64, "backend member ejected");
        }
    }

    /// Records an active check's verdict, logging changes.
    fn set_healthy(&self, member: &Member, healthy: bool) {
        let was = member.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            let state = if healthy { "up" } else { "down" };
            info!(backend = %self.name, member = %member.addr, state = %state, "backend member health changed");
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

// === impl Member ===

impl Member {
    fn new(addr: SocketAddr, host: &str) -> Member {
        Member {
            addr,
            host: host.to_owned(),
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        }
    }

    /// Healthy and not ejected at `now_ms`.
    fn is_up(&self, now_ms: u64) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Connections or requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

// === impl Lease ===

impl Lease {
    /// Counts one more in flight on `member` until dropped.
    pub fn new(member: Arc<Member>) -> Lease {
        member.in_flight.fetch_add(1, Ordering::Relaxed);
        Lease { member }
    }

    /// The member leased.
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
