//! A handler's outgoing HTTP (`wasi:http/outgoing-handler`), default deny:
//! the request's own URI (never the inbound `Host`) must match an
//! `outbound.allow` pattern (`handler/allow.rs`), and every address it
//! resolves to must be public or named literally by a pattern. A refused
//! request makes no connection and is logged with the handler's name.
//!
//! Allowed requests go through one pooled client per handler (hyper-util's,
//! HTTP/1.1, TLS by rustls against the Web PKI plus `outbound.ca_roots`),
//! so a handler calling the same server again reuses the connection. At
//! most `max_concurrent` requests per handler are in flight; the others
//! wait for a slot up to the request's time-out.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::{Error as WasiError, RequestOptions, WasiBody};

use super::allow::{self, AllowPattern, Destination};
use super::{HandlerObserver, OutboundResult};

/// Default `outbound.timeout`: connect plus the answer's head.
pub const DEFAULT_OUTBOUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `outbound.max_concurrent`.
pub const DEFAULT_MAX_CONCURRENT: usize = 32;
/// Idle connections kept per host, per handler.
const MAX_IDLE_PER_HOST: usize = 8;
/// Idle connections are closed after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `handlers.<name>.outbound`, validated.
#[derive(Debug, Clone, Default)]
pub struct OutboundSettings {
    /// What may be reached; empty: nothing.
    pub allow: Vec<AllowPattern>,
    /// Extra trust anchors (PEM), besides the Web PKI.
    pub ca_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Connect plus the answer's head, per request (`None`: the default).
    pub timeout: Option<Duration>,
    /// Requests in flight at once (`None`: the default).
    pub max_concurrent: Option<usize>,
}

/// One handler's outbound side, shared by all its requests.
pub(crate) struct Outbound {
    name: Arc<str>,
    allow: Arc<[AllowPattern]>,
    client: Client<Connector, WasiBody>,
    slots: Semaphore,
    timeout: Duration,
    observer: Arc<dyn HandlerObserver>,
}

/// Dials what the allow list let through, checking every address.
#[derive(Clone)]
struct Connector {
    name: Arc<str>,
    allow: Arc<[AllowPattern]>,
    tls: TlsConnector,
}

/// Why the connector made no connection.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("{0}: no public address (and no pattern names one literally)")]
    Prohibited(Destination),
    #[error("{0}: cannot resolve: {1}")]
    Dns(Destination, std::io::Error),
    #[error("{0}: {1}")]
    Connect(Destination, std::io::Error),
    #[error("{0}: tls: {1}")]
    Tls(Destination, std::io::Error),
    #[error("invalid destination")]
    Invalid,
}

// === impl Outbound ===

impl Outbound {
    pub(crate) fn new(
        name: Arc<str>,
        settings: &OutboundSettings,
        observer: Arc<dyn HandlerObserver>,
    ) -> Result<Outbound, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &settings.ca_roots {
            roots
                .add(cert.clone())
                .map_err(|e| format!("outbound.ca_roots: {e}"))?;
        }
        // The tree's one provider (aws-lc-rs), post-quantum first.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let allow: Arc<[AllowPattern]> = settings.allow.clone().into();
        let connector = Connector {
            name: name.clone(),
            allow: allow.clone(),
            tls: TlsConnector::from(Arc::new(tls)),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        Ok(Outbound {
            name,
            allow,
            client,
            slots: Semaphore::new(settings.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT)),
            timeout: settings.timeout.unwrap_or(DEFAULT_OUTBOUND_TIMEOUT),
            observer,
        })
    }

    /// Sends `request` if the allow list lets it through; the answer's
    /// body streams.
    pub(crate) async fn send(
        self: Arc<Self>,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, WasiError> {
        let result = self.try_send(request, options).await;
        let counted = match &result {
            Ok(_) => OutboundResult::Ok,
            Err(WasiError::HttpRequestDenied | WasiError::DestinationIpProhibited) => {
                OutboundResult::Refused
            }
            Err(WasiError::ConnectionTimeout | WasiError::HttpResponseTimeout) => {
                OutboundResult::Timeout
            }
            Err(_) => OutboundResult::Error,
        };
        self.observer.outbound(&self.name, counted);
        result
    }

    async fn try_send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, WasiError> {
        let Some(to) = Destination::of(request.uri()) else {
            tracing::warn!(handler = %self.name, uri = %redacted(request.uri()), "outbound request refused: no http(s) host");
            return Err(WasiError::HttpRequestUriInvalid);
        };
        if !allow::allowed(&self.allow, &to) {
            tracing::warn!(handler = %self.name, to = %to, "outbound request refused: not in outbound.allow");
            return Err(WasiError::HttpRequestDenied);
        }
        let limit = options
            .as_ref()
            .and_then(|o| o.first_byte_timeout)
            .map_or(self.timeout, |t| t.min(self.timeout));
        let work = async {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| WasiError::ConnectionLimitReached)?;
            self.client
                .request(request)
                .await
                .map_err(|e| self.client_error(&to, e))
        };
        let response = tokio::time::timeout(limit, work).await.map_err(|_| {
            tracing::warn!(handler = %self.name, to = %to, "outbound request timed out");
            WasiError::HttpResponseTimeout
        })??;
        Ok(response.map(|body| body.map_err(WasiError::from).boxed_unsync()))
    }

    fn client_error(
        &self,
        to: &Destination,
        error: hyper_util::client::legacy::Error,
    ) -> WasiError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(e) = source {
            if let Some(dial) = e.downcast_ref::<DialError>() {
                return match dial {
                    DialError::Prohibited(_) => WasiError::DestinationIpProhibited,
                    DialError::Dns(..) => WasiError::DnsError {
                        rcode: Some("lookup failed".into()),
                        info_code: None,
                    },
                    DialError::Connect(..) => WasiError::ConnectionRefused,
                    DialError::Tls(..) => WasiError::TlsCertificateError,
                    DialError::Invalid => WasiError::HttpRequestUriInvalid,
                };
            }
            source = e.source();
        }
        tracing::warn!(handler = %self.name, to = %to, error = %error, "outbound request failed");
        WasiError::HttpProtocolError
    }
}

/// A URI without its query (access tokens travel there).
fn redacted(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("-"),
        uri.authority().map_or("-", |a| a.as_str()),
        uri.path()
    )
}

// === impl Connector ===

impl tower_service::Service<http::Uri> for Connector {
    type Response = Dialled;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Dialled, DialError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.dial(uri).await })
    }
}

impl Connector {
    async fn dial(self, uri: http::Uri) -> Result<Dialled, DialError> {
        let to = Destination::of(&uri).ok_or(DialError::Invalid)?;
        let candidates: Vec<SocketAddr> = match to.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, to.port)],
            Err(_) => tokio::net::lookup_host((to.host.as_str(), to.port))
                .await
                .map_err(|e| DialError::Dns(to.clone(), e))?
                .collect(),
        };
        let usable: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(|a| allow::address_allowed(&self.allow, &to, a.ip()))
            .collect();
        if usable.is_empty() {
            tracing::warn!(handler = %self.name, to = %to, "outbound request refused: address not public");
            return Err(DialError::Prohibited(to));
        }
        let mut last = None;
        let mut tcp = None;
        for addr in usable {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match tcp {
            Some(tcp) => tcp,
            None => {
                let e = last.unwrap_or_else(|| std::io::Error::other("no address"));
                tracing::warn!(handler = %self.name, to = %to, error = %e, "outbound connect failed");
                return Err(DialError::Connect(to, e));
            }
        };
        let _ = tcp.set_nodelay(true);
        if !to.https {
            return Ok(Dialled::Plain(TokioIo::new(tcp)));
        }
        let name = match to.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(to.host.clone()).map_err(|_| DialError::Invalid)?,
        };
        match self.tls.connect(name, tcp).await {
            Ok(tls) => Ok(Dialled::Tls(TokioIo::new(Box::new(tls)))),
            Err(e) => {
                tracing::warn!(handler = %self.name, to = %to, error = %e, "outbound tls failed");
                Err(DialError::Tls(to, e))
            }
        }
    }
}

/// A dialled connection, plain or TLS.
pub(crate) enum Dialled {
    Plain(TokioIo<TcpStream>),
    Tls(TokioIo<Box<TlsStream<TcpStream>>>),
}

impl Connection for Dialled {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Dialled {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Dialled::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Dialled::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Dialled {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Dialled::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Dialled::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Dialled::Plain(io) => Pin::new(io).poll_flush(cx),
            Dialled::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Dialled::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Dialled::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
