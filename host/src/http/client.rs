//! The HTTP mode's side toward backends: per backend, reusable connections
//! per pool member (HTTP/1.1: one request at a time each, kept for the
//! next request once its answer has ended; h2c: one shared connection per
//! member). Members come from the backend's pool (`upstream.rs`), picked
//! per request. A connect failure of an idempotent request is retried on
//! the next member; once a request has been written it is never retried,
//! except when a reused connection turns out closed before anything was
//! answered to a request without a body.
//!
//! HTTP/1.1 connections (`http/h1.rs`) have no task: the request's task
//! writes the request and reads the answer's head, then the client
//! connection's task reads the answer's body from the socket as it sends
//! it on, and gives the connection back when it ends. h2c connections,
//! shared by many requests, run in their own task (hyper's client). Idle
//! connections are swept every [`IDLE_SWEEP_INTERVAL`]: one the backend
//! closed is closed here too, and one unused for [`MAX_IDLE_SWEEPS`]
//! sweeps is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::debug;

use super::body::{Body, BoxError};
use super::error::HttpError;
use super::h1;
use crate::config::UpstreamProtocol;
use crate::error::ConnError;
use crate::sync::lock;
use crate::upstream::{Lease, Member, Pool, Step};

/// Idle HTTP/1.1 connections kept per member. It must cover the requests a
/// busy edge has in flight to one member at once: below that, every burst
/// closes the surplus connections and dials new ones (with 32 and 50
/// concurrent clients, a third of the edge's CPU went to connect and
/// shutdown). Idle connections cost a socket and a buffer each, and the
/// backend closes them at its own keep-alive timeout.
const MAX_IDLE_PER_MEMBER: usize = 256;
/// How often idle connections are looked at. Nothing else reads them, so
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
    /// Idle connections per worker thread (`proxy/workers.rs`), by member:
    /// a connection is only reused on the thread that dialled it, whose
    /// I/O driver it is registered with.
    idle: Box<[IdleList]>,
    /// Sweeps run so far: the idle clock of [`H1::idle_since_sweep`].
    sweeps: AtomicU64,
}

/// One worker's idle connections, by member; on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct IdleList(Mutex<HashMap<SocketAddr, Vec<Sender>>>);

/// A connection ready for a request.
#[derive(Debug)]
enum Sender {
    H1(H1),
    H2(http2::SendRequest<Body>),
}

/// An idle HTTP/1.1 backend connection.
#[derive(Debug)]
struct H1 {
    conn: h1::Conn,
    /// It carried a request before.
    reused: bool,
    /// The upstream's sweep count when it last went back to the idle list.
    idle_since_sweep: u64,
}

/// Held by a streamed answer: releases the member's in-flight count when
/// dropped, and takes the connection back ([`Return::give_back`]).
#[derive(Debug)]
pub struct Return {
    upstream: Arc<Upstream>,
    lease: Lease,
}

/// What a sent request came back with.
pub struct Sent {
    /// The backend's answer; its body holds the connection until it ends.
    pub response: Response<Body>,
    /// The member that answered.
    pub member: SocketAddr,
    /// After a `101 Switching Protocols` from an HTTP/1.1 backend: its
    /// connection, now the other protocol's.
    pub switched: Option<h1::Upgraded>,
}

/// Why a send failed, as [`Pool::try_members`] carries it.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// The pool's own error (no member resolved).
    #[error("{0}")]
    Conn(#[from] ConnError),
    /// A failure of the exchange or of one member's dial.
    #[error("{0}")]
    Http(HttpError),
}

/// One try of a request on one connection.
enum Attempt {
    Answered(Response<Body>, Option<h1::Upgraded>),
    /// The connection was closed before the request was used: try again.
    Unsent(Request<Body>),
    Failed(BoxError),
}

// === impl Upstream ===

impl Upstream {
    /// The HTTP side of `pool`, used from `workers` worker threads.
    pub fn new(pool: Arc<Pool>, workers: usize) -> Arc<Upstream> {
        let upstream = Arc::new(Upstream {
            pool,
            // Worker numbers run from 1; 0 is the main runtime.
            idle: (0..=workers).map(|_| IdleList::default()).collect(),
            sweeps: AtomicU64::new(0),
        });
        // Outside a runtime (some unit tests) there is nothing to sweep.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_idle(Arc::downgrade(&upstream)));
        }
        upstream
    }

    /// Looks at each idle connection once and drops those that have closed
    /// or have sat idle for [`MAX_IDLE_SWEEPS`] sweeps.
    fn sweep(&self) {
        let now = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        let mut cx = Context::from_waker(Waker::noop());
        for shard in &self.idle {
            let mut idle = lock(&shard.0);
            for list in idle.values_mut() {
                list.retain_mut(|sender| match sender {
                    Sender::H1(h1) => {
                        h1.conn.is_usable(&mut cx)
                            && now.saturating_sub(h1.idle_since_sweep) < MAX_IDLE_SWEEPS
                    }
                    Sender::H2(s) => !s.is_closed(),
                });
            }
            idle.retain(|_, list| !list.is_empty());
        }
    }

    /// This worker thread's idle connections.
    fn idle_here(&self) -> MutexGuard<'_, HashMap<SocketAddr, Vec<Sender>>> {
        lock(&self.idle[crate::worker::current() % self.idle.len()].0)
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
        self.pool
            .try_members(retry, request, |member, lease, request| {
                self.attempt(member, lease, request, dial_timeout)
            })
            .await
            .map_err(|error| match error {
                // Only the pool's own "no address resolved" comes back bare.
                SendError::Conn(error) => HttpError::Dial {
                    backend: self.name().to_owned(),
                    error,
                },
                SendError::Http(error) => error,
            })
    }

    /// One try of `request` on `member`: an idle connection or a new one,
    /// then the exchange.
    async fn attempt(
        self: &Arc<Self>,
        member: Arc<Member>,
        lease: Lease,
        request: Request<Body>,
        dial_timeout: Duration,
    ) -> Step<Request<Body>, Sent, SendError> {
        let sender = match self.take_idle(member.addr) {
            Some(sender) => sender,
            None => match self.connect(&member, dial_timeout).await {
                Ok(sender) => sender,
                Err(error) => return Step::DialFailed(SendError::Http(error), request),
            },
        };
        let attempt = match sender {
            Sender::H1(h1) => self.send_h1(h1, request, lease).await,
            Sender::H2(s) => self.send_h2(s, request, lease).await,
        };
        match attempt {
            Attempt::Answered(response, switched) => {
                if is_member_failure(response.status(), self.pool.settings().eject.all_5xx) {
                    self.pool.failed(&member);
                } else {
                    self.pool.succeeded(&member);
                }
                Step::Done(Ok(Sent {
                    response,
                    member: member.addr,
                    switched,
                }))
            }
            // A connection that closed before the request was used gives
            // it back: that is safe to send again.
            Attempt::Unsent(unsent) => {
                debug!(backend = %self.name(), member = %member.addr, "idle connection closed; retrying");
                Step::Again(unsent)
            }
            Attempt::Failed(error) => {
                self.pool.failed(&member);
                Step::Done(Err(SendError::Http(HttpError::Upstream {
                    backend: self.name().to_owned(),
                    error,
                })))
            }
        }
    }

    async fn send_h1(self: &Arc<Self>, h1: H1, request: Request<Body>, lease: Lease) -> Attempt {
        match h1.conn.send(request, h1.reused).await {
            Ok((head, h1::Next::Body(reader))) => {
                let guard = Return {
                    upstream: self.clone(),
                    lease,
                };
                let body = if reader.is_end() {
                    let mut reader = reader;
                    guard.give_back(reader.take_reusable());
                    Body::Empty
                } else {
                    Body::H1 {
                        reader,
                        guard: Some(guard),
                    }
                };
                Attempt::Answered(head.map(|()| body), None)
            }
            Ok((head, h1::Next::Switched(upgraded))) => {
                Attempt::Answered(head.map(|()| Body::Empty), Some(upgraded))
            }
            Err(h1::SendError::Unsent(request, error)) => {
                debug!(backend = %self.name(), error = %error, "request not sent");
                Attempt::Unsent(*request)
            }
            Err(h1::SendError::Failed(error)) => Attempt::Failed(error.into()),
        }
    }

    async fn send_h2(
        self: &Arc<Self>,
        mut sender: http2::SendRequest<Body>,
        request: Request<Body>,
        lease: Lease,
    ) -> Attempt {
        match sender.try_send_request(request).await {
            Ok(response) => {
                let guard = Return {
                    upstream: self.clone(),
                    lease,
                };
                let response = response.map(|inner| {
                    if http_body::Body::is_end_stream(&inner) {
                        Body::Incoming(inner)
                    } else {
                        Body::Upstream {
                            inner,
                            guard: Some(guard),
                        }
                    }
                });
                Attempt::Answered(response, None)
            }
            Err(mut error) => match error.take_message() {
                Some(unsent) => Attempt::Unsent(unsent),
                None => Attempt::Failed(error.into_error().into()),
            },
        }
    }

    /// An idle connection to `member` that is still open, if any.
    fn take_idle(&self, member: SocketAddr) -> Option<Sender> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut idle = self.idle_here();
        let list = idle.get_mut(&member)?;
        loop {
            match list.last_mut()? {
                // h2c connections are shared: hand out a clone.
                Sender::H2(s) if !s.is_closed() => return Some(Sender::H2(s.clone())),
                Sender::H2(_) => {
                    list.pop();
                }
                Sender::H1(h1) => {
                    // Closed by the backend while idle: drop it.
                    if h1.conn.is_usable(&mut cx) {
                        return list.pop();
                    }
                    list.pop();
                }
            }
        }
    }

    /// Dials `member` (and runs the HTTP/2 handshake for h2c).
    async fn connect(&self, member: &Member, timeout: Duration) -> Result<Sender, HttpError> {
        let dial_error = |error| HttpError::Dial {
            backend: self.name().to_owned(),
            error,
        };
        let stream = self
            .pool
            .dial_only(member, timeout)
            .await
            .map_err(dial_error)?;
        match self.pool.settings().protocol {
            UpstreamProtocol::Http1 => Ok(Sender::H1(H1 {
                conn: h1::Conn::new(stream),
                reused: false,
                idle_since_sweep: 0,
            })),
            UpstreamProtocol::H2c => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(|error| HttpError::Upstream {
                        backend: self.name().to_owned(),
                        error: error.into(),
                    })?;
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        debug!(error = %error, "backend connection ended");
                    }
                });
                self.idle_here()
                    .insert(member.addr, vec![Sender::H2(sender.clone())]);
                Ok(Sender::H2(sender))
            }
        }
    }

    fn put_idle(&self, member: SocketAddr, conn: h1::Conn) {
        let sender = Sender::H1(H1 {
            conn,
            reused: true,
            idle_since_sweep: self.sweeps.load(Ordering::Relaxed),
        });
        let mut idle = self.idle_here();
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

// === impl Return ===

impl Return {
    /// The answer ended cleanly: `conn`, when it can carry another
    /// request, goes back to the idle list.
    pub fn give_back(self, conn: Option<h1::Conn>) {
        if let Some(conn) = conn {
            let member = self.lease.member().addr;
            self.upstream.put_idle(member, conn);
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
