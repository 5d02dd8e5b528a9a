//! Handlers: standard `wasi:http/proxy` components (WASI 0.2) that answer
//! HTTP requests at the edge, built with any of the ecosystem's tools
//! (wstd, the `wasi` crates, componentize-py, jco) and run unchanged.
//!
//! - [`HandlerRuntime`]: the async wasmtime engine handlers run on (its own
//!   pooling allocator and epoch ticker), the linker (WASI 0.2 without
//!   preopens or sockets, plus `wasi:http`), and [`HandlerRuntime::load`].
//! - [`Handler`]: one loaded component, pre-instantiated; [`Handler::serve`]
//!   answers one request with a fresh instance.
//! - `handler/outbound.rs`: outgoing requests, default deny.
//! - `handler/allow.rs`: the allow patterns and the address rule.
//!
//! # What a request may do, and what happens when it misbehaves
//! - A fresh instance per request, from the pooling allocator; nothing
//!   survives between requests.
//! - Linear memory is capped at `max_memory`; growing past it traps
//!   ([`Failure::Memory`], answered 500).
//! - `request_timeout` bounds the whole request, body included. Running
//!   wasm yields to the executor every epoch tick (10 ms), so a spinning
//!   handler holds no thread, and is stopped at the limit
//!   ([`Failure::Timeout`], answered 504 when no answer was sent yet).
//! - A trap is [`Failure::Trap`] (500) with the guest's stderr in the log.
//! - Request bodies past `max_request_body` fail the guest's read (and the
//!   host answers 413 up front when `Content-Length` says so); response
//!   bodies past `max_response_body` are cut.
//! - Environment: `env` and `env_files` only. No arguments, no preopened
//!   directories, no sockets, no name lookups: outgoing `wasi:http` only.

mod allow;
mod outbound;

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{
    Error as WasiError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

pub use allow::{AllowPattern, Destination, is_public};
pub use outbound::{DEFAULT_MAX_CONCURRENT, DEFAULT_OUTBOUND_TIMEOUT, OutboundSettings};
/// The error a request body given to [`Handler::serve`] converts into
/// (`hyper::Error` does).
pub use wasmtime_wasi_http::Error as BodyError;

use crate::cache;
use crate::runtime::{Calls, Ticker, one_line};
use outbound::Outbound;

/// Default `limits.max_memory`.
pub const DEFAULT_MAX_MEMORY: u64 = 32 << 20;
/// The largest `limits.max_memory` (the pool's slot size).
pub const MAX_HANDLER_MEMORY: u64 = 1 << 30;
/// Default `limits.request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `limits.max_request_body`.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 1 << 20;
/// Default `limits.max_response_body`.
pub const DEFAULT_MAX_RESPONSE_BODY: u64 = 16 << 20;

/// Handler instances alive at once, all handlers together; a request that
/// finds the pool full is answered 503.
pub const POOL_INSTANCES: u32 = 512;
/// How often running handler code yields and has its deadline checked.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// stderr kept per request, for the log line of a trap.
const STDERR_BYTES: usize = 4096;

/// `handlers.<name>`, validated.
#[derive(Clone)]
pub struct HandlerSettings {
    /// The component file (resolved).
    pub component: PathBuf,
    /// The guest's environment: `env`, then `env_files`' contents.
    pub env: Vec<(String, Secret)>,
    /// What it may reach.
    pub outbound: OutboundSettings,
    /// Per-request limits.
    pub limits: HandlerLimits,
}

/// A value that is never printed (env values read from files).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

/// `handlers.<name>.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerLimits {
    /// Linear memory per request.
    pub max_memory: u64,
    /// The whole request, body included.
    pub request_timeout: Duration,
    /// Request body bytes the guest may read.
    pub max_request_body: u64,
    /// Response body bytes sent before the answer is cut.
    pub max_response_body: u64,
}

/// Outgoing requests by result, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundResult {
    /// Answered (any status).
    Ok,
    /// Not allowed: no connection made.
    Refused,
    /// No answer in time.
    Timeout,
    /// Failed (DNS, connect, TLS, protocol).
    Error,
}

/// Told about what handlers do (the edge's metrics).
pub trait HandlerObserver: Send + Sync {
    /// One outgoing request of handler `handler` ended with `result`.
    fn outbound(&self, handler: &str, result: OutboundResult);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl HandlerObserver for NoObserver {
    fn outbound(&self, _: &str, _: OutboundResult) {}
}

/// Why a handler gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The guest trapped (panic, `unreachable`, ...); its stderr.
    Trap(String),
    /// `request_timeout` ran out.
    Timeout,
    /// The guest grew its memory past `max_memory`.
    Memory,
    /// Every instance slot is in use.
    Busy,
    /// The guest returned without answering, or answered with an error.
    NoAnswer(String),
}

impl Failure {
    /// The metric label: `trap`, `timeout`, `memory`, `busy`, `no_answer`.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Trap(_) => "trap",
            Failure::Timeout => "timeout",
            Failure::Memory => "memory",
            Failure::Busy => "busy",
            Failure::NoAnswer(_) => "no_answer",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Trap(text) => write!(f, "trapped: {text}"),
            Failure::Timeout => f.write_str("request_timeout reached"),
            Failure::Memory => f.write_str("max_memory reached"),
            Failure::Busy => f.write_str("every handler instance is in use"),
            Failure::NoAnswer(text) => write!(f, "no answer: {text}"),
        }
    }
}

/// A handler's answer: the response, whose body may still be streaming
/// from the guest.
pub type Answer = http::Response<ResponseBody>;

/// A loaded handler component. Cheap to share; each request gets a fresh
/// instance.
pub struct Handler {
    name: Arc<str>,
    pre: ProxyPre<HandlerState>,
    env: Arc<[(String, String)]>,
    limits: HandlerLimits,
    outbound: Arc<Outbound>,
    runtime: HandlerRuntime,
}

/// Why a handler could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerLoadError {
    /// What is wrong, naming the file.
    pub message: String,
}

/// The engine handlers run on. Cheap to clone.
#[derive(Clone)]
pub struct HandlerRuntime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HandlerState>,
    cache_dir: Option<PathBuf>,
    calls: Arc<Calls>,
    _ticker: Ticker,
}

/// One request's store data.
struct HandlerState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    memory: MemoryCap,
}

/// `wasi:http` hooks: outgoing requests go to the handler's [`Outbound`].
struct Hooks {
    outbound: Arc<Outbound>,
}

/// Caps linear memory; remembers that it refused.
struct MemoryCap {
    max: usize,
    hit: Arc<AtomicBool>,
}

// === impl HandlerRuntime ===

impl HandlerRuntime {
    /// Builds the engine and linker and starts the epoch ticker;
    /// `cache_dir` keeps precompiled components like the policies'.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<HandlerRuntime, HandlerLoadError> {
        let fail = |e: wasmtime::Error| HandlerLoadError {
            message: format!("handler runtime: {}", one_line(&e)),
        };
        let engine = handler_engine().map_err(fail)?;
        let mut linker = Linker::<HandlerState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(fail)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(fail)?;
        let calls = Calls::new();
        let ticker = Ticker::start(engine.clone(), EPOCH_TICK, "handler-epoch", calls.clone())
            .map_err(|e| HandlerLoadError {
                message: format!("cannot start the handler epoch thread: {e}"),
            })?;
        Ok(HandlerRuntime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache_dir,
                calls,
                _ticker: ticker,
            }),
        })
    }

    /// Compiles (or loads from the cache) and pre-instantiates the component
    /// of `settings`; refuses one that is not a `wasi:http/proxy`
    /// component. Needs a Tokio runtime for the outbound client's tasks
    /// only when requests are served.
    pub fn load(
        &self,
        name: &str,
        settings: &HandlerSettings,
        observer: Arc<dyn HandlerObserver>,
    ) -> Result<Handler, HandlerLoadError> {
        let path = &settings.component;
        let fail = |message: String| HandlerLoadError {
            message: format!("{}: {message}", path.display()),
        };
        let wasm = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let component = self.component(path, &wasm).map_err(fail)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .and_then(ProxyPre::new)
            .map_err(|e| {
                fail(format!(
                    "not a wasi:http/proxy component (0.2): {}",
                    one_line(&e)
                ))
            })?;
        if settings.limits.max_memory > MAX_HANDLER_MEMORY {
            return Err(fail(format!(
                "max_memory is above {MAX_HANDLER_MEMORY} bytes"
            )));
        }
        let name: Arc<str> = name.into();
        let outbound = Outbound::new(name.clone(), &settings.outbound, observer).map_err(fail)?;
        Ok(Handler {
            name,
            pre,
            env: settings
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            limits: settings.limits,
            outbound: Arc::new(outbound),
            runtime: self.clone(),
        })
    }

    fn component(&self, path: &Path, wasm: &[u8]) -> Result<Component, String> {
        let engine = &self.inner.engine;
        let entry = self
            .inner
            .cache_dir
            .as_deref()
            .map(|dir| cache::entry_path(dir, engine, wasm));
        if let Some(entry) = &entry {
            match cache::load(engine, entry) {
                Ok(component) => return Ok(component),
                Err(cache::Miss::Absent) => {}
                Err(miss) => {
                    tracing::warn!(handler = %path.display(), "handler cache entry unusable, recompiling: {miss}")
                }
            }
        }
        let component = Component::new(engine, wasm).map_err(|e| one_line(&e))?;
        if let Some(entry) = &entry {
            let written = component
                .serialize()
                .map_err(|e| e.to_string())
                .and_then(|artifact| cache::store(entry, &artifact).map_err(|e| e.to_string()));
            if let Err(e) = written {
                tracing::warn!(handler = %path.display(), entry = %entry.display(), "cannot write handler cache entry: {e}");
            }
        }
        Ok(component)
    }
}

/// Epoch interruption and a pool of [`POOL_INSTANCES`] instances, or
/// instances on demand where the pool cannot be reserved (async calls are
/// always on in this wasmtime).
fn handler_engine() -> Result<Engine, wasmtime::Error> {
    crate::runtime::engine("handler", POOL_INSTANCES, MAX_HANDLER_MEMORY, |pool| {
        pool.total_stacks(POOL_INSTANCES);
    })
}

// === impl Handler ===

impl Handler {
    /// The handler's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its limits.
    pub fn limits(&self) -> HandlerLimits {
        self.limits
    }

    /// Answers `request` (`https`: the scheme the client used) with a fresh
    /// instance. The answer's body may still stream from the guest, until
    /// `request_timeout` from now.
    pub async fn serve<B>(&self, request: http::Request<B>, https: bool) -> Result<Answer, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<WasiError>,
    {
        let started = Instant::now();
        let deadline = started + self.limits.request_timeout;
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        let memory_hit = Arc::new(AtomicBool::new(false));
        let mut store = self.store(stderr.clone(), memory_hit.clone());
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let (parts, body) = request.into_parts();
        let body = Capped::new(
            body.map_err(Into::into).boxed_unsync(),
            self.limits.max_request_body,
            |limit| WasiError::HttpRequestBodySize(Some(limit)),
        );
        let request = http::Request::from_parts(parts, body);
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, request)
            .and_then(|req| {
                let out = store.data_mut().http().new_response_outparam(sender)?;
                Ok((req, out))
            });
        let (req, out) = prepared.map_err(|e| Failure::NoAnswer(one_line(&e)))?;
        let pre = self.pre.clone();
        let in_flight = self.runtime.inner.calls.start();
        let task = tokio::spawn(async move {
            let _in_flight = in_flight;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            match tokio::time::timeout_at(deadline.into(), run).await {
                Ok(result) => result.map_err(Some),
                Err(_) => Err(None),
            }
        });
        let answer = match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(Failure::NoAnswer(format!("answered with error {code:?}"))),
            Err(_) => Err(match task.await {
                Ok(Ok(())) => Failure::NoAnswer("returned without an answer".to_owned()),
                Ok(Err(None)) => Failure::Timeout,
                Ok(Err(Some(e))) => self.classify(&e, &memory_hit, &stderr),
                Err(join) => Failure::Trap(format!("task failed: {join}")),
            }),
        };
        let response = answer?;
        let limit = self.limits.max_response_body;
        Ok(response.map(|body| Capped::new(body, limit, ResponseBodyError::TooLong)))
    }

    /// A fresh store for one request: the environment, stderr captured,
    /// no sockets, memory capped (`memory_hit` set when the cap refuses).
    fn store(&self, stderr: MemoryOutputPipe, memory_hit: Arc<AtomicBool>) -> Store<HandlerState> {
        let wasi = WasiCtx::builder()
            .envs(&self.env)
            .stderr(stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HandlerState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks {
                outbound: self.outbound.clone(),
            },
            memory: MemoryCap {
                max: usize::try_from(self.limits.max_memory).unwrap_or(usize::MAX),
                hit: memory_hit,
            },
        };
        let mut store = Store::new(&self.runtime.inner.engine, state);
        store.limiter(|s| &mut s.memory);
        store
    }

    /// Creates a store and instantiates the component without calling
    /// it, as [`Handler::serve`] does first; for the benches (the cost of
    /// a fresh instance per request).
    #[doc(hidden)]
    pub async fn instantiate_only(&self) -> Result<(), String> {
        let mut store = self.store(
            MemoryOutputPipe::new(STDERR_BYTES),
            Arc::new(AtomicBool::new(false)),
        );
        store.set_epoch_deadline(u64::MAX / 2);
        self.pre
            .instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(|e| one_line(&e))
    }

    fn classify(
        &self,
        error: &wasmtime::Error,
        memory_hit: &AtomicBool,
        stderr: &MemoryOutputPipe,
    ) -> Failure {
        if memory_hit.load(Ordering::Relaxed) {
            return Failure::Memory;
        }
        if error.is::<wasmtime::PoolConcurrencyLimitError>() {
            return Failure::Busy;
        }
        if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            return Failure::Timeout;
        }
        let output = String::from_utf8_lossy(&stderr.contents())
            .trim()
            .to_owned();
        // The trap's cause, without wasmtime's backtrace.
        let mut text = match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => one_line(error),
        };
        if !output.is_empty() {
            text.push_str("; stderr: ");
            text.push_str(&output.replace('\n', " | "));
        }
        Failure::Trap(text)
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

// === store data ===

impl WasiView for HandlerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HandlerState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), WasiError>> + Send>,
                ),
                WasiError,
            >,
        > + Send,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), WasiError>> + Send>,
    ) -> SendFuture {
        let _ = fut;
        let outbound = self.outbound.clone();
        Box::new(async move {
            let response = outbound.send(request, options).await?;
            let done: Box<dyn Future<Output = Result<(), WasiError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit.store(true, Ordering::Relaxed);
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes reached",
                self.max
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

// === bodies ===

/// A body passed on frame by frame until `limit` bytes, then failed with
/// `over(limit)`: the request body the guest reads, and the response body
/// it writes ([`ResponseBody`]).
pub struct Capped<E> {
    inner: WasiBody,
    left: u64,
    limit: u64,
    over: fn(u64) -> E,
}

/// A handler's response body: streamed from the guest, cut after
/// `max_response_body` bytes.
pub type ResponseBody = Capped<ResponseBodyError>;

/// Why a response body ended early.
#[derive(Debug, thiserror::Error)]
pub enum ResponseBodyError {
    /// Longer than `max_response_body`.
    #[error("response body longer than max_response_body ({0} bytes)")]
    TooLong(u64),
    /// The guest failed while writing it (trap, time-out).
    #[error("handler failed while writing the body: {0}")]
    Guest(#[from] WasiError),
}

impl<E> Capped<E> {
    fn new(inner: WasiBody, limit: u64, over: fn(u64) -> E) -> Capped<E> {
        Capped {
            inner,
            left: limit,
            limit,
            over,
        }
    }
}

impl<E> fmt::Debug for Capped<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capped")
            .field("left", &self.left)
            .field("limit", &self.limit)
            .finish()
    }
}

impl<E: From<WasiError>> http_body::Body for Capped<E> {
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.left {
                        return Poll::Ready(Some(Err((this.over)(this.limit))));
                    }
                    this.left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl fmt::Debug for HandlerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerSettings")
            .field("component", &self.component)
            .field("env", &self.env)
            .field("outbound.allow", &self.outbound.allow)
            .field("limits", &self.limits)
            .finish()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl Default for HandlerLimits {
    fn default() -> Self {
        HandlerLimits {
            max_memory: DEFAULT_MAX_MEMORY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
        }
    }
}
