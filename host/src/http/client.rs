//! The HTTP mode's side toward backends: per backend, reusable connections
//! per pool member (HTTP/1.1: one request at a time each, kept for the
//! next request once its answer has ended; h2c: one shared connection per
//! member). Members come from the backend's pool (`upstream.rs`), picked
//! per request. A connect failure of an idempotent request is retried on
//! the next member; once a request has been written it is never retried.
//!
//! An HTTP/1.1 backend connection has no task of its own: whoever uses it
//! drives it — the request's task while the request is sent and the head
//! awaited, then the client connection's task while it pulls the answer's
//! body (`Body::Upstream` in `http/body.rs` calls [`Return::drive`]). One
//! request then runs in one task, with no hand-off between threads per
//! request. Only a connection switching protocols (101) gets a task, to
//! finish handing its socket over. h2c connections, shared by many
//! requests, run in their own task. Idle connections are swept every
//! [`IDLE_SWEEP_INTERVAL`]: polled once, so one the backend closed is
//! closed here too, and dropped after [`MAX_IDLE_SWEEPS`] sweeps unused.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::{debug, warn};

use super::body::Body;
use super::error::HttpError;
use crate::config::UpstreamProtocol;
use crate::upstream::{Lease, Member, Pool};

/// Idle HTTP/1.1 connections kept per member. It must cover the requests a
/// busy edge has in flight to one member at once: below that, every burst
/// closes the surplus connections and dials new ones (with 32 and 50
/// concurrent clients, a third of the edge's CPU went to connect and
/// shutdown). Idle connections cost a socket and a parked task each, and
/// the backend closes them at its own keep-alive timeout.
const MAX_IDLE_PER_MEMBER: usize = 256;
/// How often idle connections are looked at. Nothing else polls them, so
/// this is how a close by the backend is noticed (and its socket released)
/// while traffic is quiet.
const IDLE_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Idle connections are closed after this many sweeps unused: 90 s, like
/// Go's and Caddy's transports. Counted in sweeps, so giving a connection
/// back reads no clock.
const MAX_IDLE_SWEEPS: u64 = 90;

/// One backend as the HTTP mode uses it.
#[derive(Debug)]
pub struct Upstream {
    pool: Arc<Pool>,
    idle: Mutex<HashMap<SocketAddr, Vec<Sender>>>,
    /// Sweeps run so far: the idle clock of [`H1::idle_since_sweep`].
    sweeps: AtomicU64,
}

/// A connection ready for a request.
enum Sender {
    H1(H1),
    H2(http2::SendRequest<Body>),
}

/// The I/O of one HTTP/1.1 backend connection (hyper's connection future
/// with upgrades, whose type hyper does not name).
type ConnFuture = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// An HTTP/1.1 backend connection and the future that does its I/O, which
/// its current user polls ([`H1::drive`]).
struct H1 {
    sender: http1::SendRequest<Body>,
    conn: ConnFuture,
    /// The connection future has finished: the connection is closed (or
    /// was handed over after a 101).
    done: bool,
    /// The upstream's sweep count when it last went back to the idle list.
    idle_since_sweep: u64,
}

/// Held by a streamed answer: releases the member's in-flight count, and
/// gives the connection back when [`Return::finished`] is called.
#[derive(Debug)]
pub struct Return {
    upstream: Arc<Upstream>,
    sender: Option<Sender>,
    _lease: Lease,
}

/// What a sent request came back with.
pub struct Sent {
    /// The backend's answer; its body holds the connection until it ends.
    pub response: Response<Body>,
    /// The member that answered.
    pub member: SocketAddr,
}

// === impl Upstream ===

impl Upstream {
    /// The HTTP side of `pool`.
    pub fn new(pool: Arc<Pool>) -> Arc<Upstream> {
        let upstream = Arc::new(Upstream {
            pool,
            idle: Mutex::new(HashMap::new()),
            sweeps: AtomicU64::new(0),
        });
        // Outside a runtime (some unit tests) there is nothing to sweep.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_idle(Arc::downgrade(&upstream)));
        }
        upstream
    }

    /// Polls each idle HTTP/1.1 connection once (without a task to wake:
    /// its next user polls it again) and drops those that have closed or
    /// have sat idle for [`MAX_IDLE_SWEEPS`] sweeps.
    fn sweep(&self) {
        let now = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        let mut cx = Context::from_waker(Waker::noop());
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for list in idle.values_mut() {
            list.retain_mut(|sender| match sender {
                Sender::H1(h1) => {
                    h1.drive(&mut cx);
                    !h1.done
                        && !h1.sender.is_closed()
                        && now.saturating_sub(h1.idle_since_sweep) < MAX_IDLE_SWEEPS
                }
                Sender::H2(s) => !s.is_closed(),
            });
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        self.pool.name()
    }

    /// What the backend speaks.
    pub fn protocol(&self) -> UpstreamProtocol {
        self.pool.settings().protocol
    }

    /// Sends `request` to a member. Connect failures move on to the next
    /// member when the method is idempotent (nothing was sent).
    pub async fn send(
        self: &Arc<Self>,
        request: Request<Body>,
        dial_timeout: Duration,
    ) -> Result<Sent, HttpError> {
        let retry = is_idempotent(request.method());
        if self.pool.members().is_empty() {
            self.pool.resolve().await;
        }
        let mut tried = Vec::new();
        let mut last = None;
        let mut request = request;
        while let Some(member) = self.pool.pick(&tried) {
            tried.push(member.addr);
            let lease = Lease::new(member.clone());
            let mut sender = match self.take_idle(member.addr).await {
                Some(sender) => sender,
                None => match self.connect(&member, dial_timeout).await {
                    Ok(sender) => sender,
                    Err(error) => {
                        warn!(backend = %self.name(), member = %member.addr, error = %error, "backend member dial failed");
                        last = Some(error);
                        if retry {
                            continue;
                        }
                        break;
                    }
                },
            };
            let result = match &mut sender {
                Sender::H1(h1) => h1.send(request).await,
                Sender::H2(s) => s.try_send_request(request).await,
            };
            match result {
                Ok(response) => {
                    if is_member_failure(response.status(), self.pool.settings().eject.all_5xx) {
                        self.pool.failed(&member);
                    } else {
                        self.pool.succeeded(&member);
                    }
                    let response = self.guard(response, sender, lease);
                    return Ok(Sent {
                        response,
                        member: member.addr,
                    });
                }
                Err(mut error) => {
                    // A connection that closed before the request was
                    // written gives it back: that is safe to send again.
                    match error.take_message() {
                        Some(unsent) => {
                            debug!(backend = %self.name(), member = %member.addr, "idle connection closed; retrying");
                            request = unsent;
                            tried.pop();
                            continue;
                        }
                        None => {
                            self.pool.failed(&member);
                            return Err(HttpError::Upstream {
                                backend: self.name().to_owned(),
                                error: error.into_error(),
                            });
                        }
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| HttpError::Dial {
            backend: self.name().to_owned(),
            error: self.pool.unresolved(),
        }))
    }

    /// An idle connection to `member` that is still open, if any.
    async fn take_idle(&self, member: SocketAddr) -> Option<Sender> {
        loop {
            let sender = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let list = idle.get_mut(&member)?;
                match list.last() {
                    // h2c connections are shared: hand out a clone.
                    Some(Sender::H2(s)) if !s.is_closed() => return Some(Sender::H2(s.clone())),
                    _ => list.pop()?,
                }
            };
            match sender {
                Sender::H1(mut h1) => {
                    if h1.ready().await {
                        return Some(Sender::H1(h1));
                    }
                }
                Sender::H2(_) => {}
            }
        }
    }

    /// Dials `member` and runs the HTTP handshake.
    async fn connect(&self, member: &Member, timeout: Duration) -> Result<Sender, HttpError> {
        let dial_error = |error| HttpError::Dial {
            backend: self.name().to_owned(),
            error,
        };
        let stream = self.pool.dial(member, timeout).await.map_err(dial_error)?;
        let io = TokioIo::new(stream);
        let handshake_error = |error| HttpError::Upstream {
            backend: self.name().to_owned(),
            error,
        };
        match self.pool.settings().protocol {
            UpstreamProtocol::Http1 => {
                let (sender, conn) = http1::handshake(io).await.map_err(handshake_error)?;
                Ok(Sender::H1(H1 {
                    sender,
                    conn: Box::pin(conn.with_upgrades()),
                    done: false,
                    idle_since_sweep: 0,
                }))
            }
            UpstreamProtocol::H2c => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(handshake_error)?;
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        debug!(error = %error, "backend connection ended");
                    }
                });
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.insert(member.addr, vec![Sender::H2(sender.clone())]);
                Ok(Sender::H2(sender))
            }
        }
    }

    /// Wraps the answer's body so the connection comes back when it ends.
    fn guard(
        self: &Arc<Self>,
        response: Response<hyper::body::Incoming>,
        sender: Sender,
        lease: Lease,
    ) -> Response<Body> {
        let guard = Return {
            upstream: self.clone(),
            sender: Some(sender),
            _lease: lease,
        };
        // A switched protocol (101) takes the connection over: never reused.
        let switching = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        response.map(|inner| {
            if switching {
                guard.hand_over();
                Body::Incoming(inner)
            } else if http_body::Body::is_end_stream(&inner) {
                guard.finished();
                Body::Incoming(inner)
            } else {
                Body::Upstream {
                    inner,
                    guard: Some(guard),
                }
            }
        })
    }

    fn put_idle(&self, member: SocketAddr, mut sender: Sender) {
        if let Sender::H1(h1) = &mut sender {
            if h1.done || h1.sender.is_closed() {
                return;
            }
            h1.idle_since_sweep = self.sweeps.load(Ordering::Relaxed);
        }
        if matches!(sender, Sender::H2(_)) {
            // Already kept at connect time.
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(member).or_default();
        if list.len() < MAX_IDLE_PER_MEMBER {
            list.push(sender);
        }
    }
}

/// Sweeps `upstream`'s idle connections until it is dropped (a reload
/// replaced its generation).
async fn sweep_idle(upstream: Weak<Upstream>) {
    let mut tick = tokio::time::interval(IDLE_SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        upstream.sweep();
    }
}

// === impl H1 ===

impl H1 {
    /// Polls the connection's I/O once; notes when it has finished.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if self.done {
            return;
        }
        if let Poll::Ready(result) = self.conn.as_mut().poll(cx) {
            self.done = true;
            if let Err(error) = result {
                debug!(error = %error, "backend connection ended");
            }
        }
    }

    /// Waits until the connection can take a request, driving it (an idle
    /// connection is not polled, so a close by the backend shows only
    /// now). False when it is closed.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            self.drive(cx);
            if self.done {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }

    /// Sends `request` and waits for the answer's head, driving the
    /// connection meanwhile.
    async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, hyper::client::conn::TrySendError<Request<Body>>>
    {
        let H1 {
            sender, conn, done, ..
        } = self;
        let mut response = std::pin::pin!(sender.try_send_request(request));
        let mut drive = H1Drive { conn, done };
        poll_fn(|cx| {
            drive.poll(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// [`H1::drive`] on borrowed fields, for use beside the borrowed sender.
struct H1Drive<'a> {
    conn: &'a mut ConnFuture,
    done: &'a mut bool,
}

impl H1Drive<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) {
        if *self.done {
            return;
        }
        if let Poll::Ready(result) = self.conn.as_mut().poll(cx) {
            *self.done = true;
            if let Err(error) = result {
                debug!(error = %error, "backend connection ended");
            }
        }
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sender::H1(h1) => f.debug_struct("H1").field("done", &h1.done).finish(),
            Sender::H2(s) => f.debug_tuple("H2").field(s).finish(),
        }
    }
}

// === impl Return ===

impl Return {
    /// Drives the backend connection the answer's body comes from; called
    /// before each poll of that body.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(Sender::H1(h1)) = &mut self.sender {
            h1.drive(cx);
        }
    }

    /// The backend switched protocols: its connection future must run to
    /// the end to hand the socket to the upgrade, so it gets a task.
    fn hand_over(mut self) {
        if let Some(Sender::H1(h1)) = self.sender.take()
            && !h1.done
        {
            let H1 { sender, conn, .. } = h1;
            tokio::spawn(async move {
                let _sender = sender;
                if let Err(error) = conn.await {
                    debug!(error = %error, "backend connection ended");
                }
            });
        }
    }

    /// The answer ended cleanly: the connection may carry another request.
    pub fn finished(mut self) {
        if let Some(sender) = self.sender.take() {
            let member = self._lease.member().addr;
            self.upstream.put_idle(member, sender);
        }
    }
}

/// Whether an answer counts toward ejecting the member that gave it: 502,
/// 503 and 504 say the member cannot serve (it is a gateway whose own
/// backend failed, overloaded, or timed out); other 5xx only with
/// `eject.all_5xx`, since an application's 500 is often about one request.
fn is_member_failure(status: http::StatusCode, all_5xx: bool) -> bool {
    use http::StatusCode;
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    ) || (all_5xx && status.is_server_error())
}

/// Methods that may be sent again (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn gateway_failures_count_and_other_5xx_only_when_asked() {
        for status in [502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(is_member_failure(status, false), "{status}");
        }
        assert!(!is_member_failure(StatusCode::INTERNAL_SERVER_ERROR, false));
        assert!(is_member_failure(StatusCode::INTERNAL_SERVER_ERROR, true));
        assert!(!is_member_failure(StatusCode::NOT_FOUND, true));
        assert!(!is_member_failure(StatusCode::OK, true));
    }
}
