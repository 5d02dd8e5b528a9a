//! The config file as written: serde structs with `deny_unknown_fields`,
//! defaults, and validating value types. Nothing here looks at more than one
//! field; cross-field checks are in `config/validate.rs`, which turns a
//! [`RawConfig`] into the immutable `Config` (`config.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::duration::{ByteSize, ConfigDuration};
use super::http::{
    Balance, RawEject, RawHealthCheck, RawPlainListener, RawRouteSet, UpstreamProtocol,
};
use super::values::{Alpn, BackendAddr, BackendName, Hostname, ListenAddr, ListenList, Workers};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `listen`: one address or a list.
    pub listen: ListenList,
    /// `admin_listen`: where `/healthz`, `/readyz` and `/metrics` are
    /// served; no admin listener when absent.
    pub admin_listen: Option<ListenAddr>,
    /// `http_listen`: ACME HTTP-01 and the redirect to https; off when absent.
    pub http_listen: Option<ListenAddr>,
    /// `policy`.
    pub policy: RawPolicy,
    /// `shadow`: a second policy run after each live decision, for
    /// comparison only.
    pub shadow: Option<RawShadow>,
    /// `limits`.
    #[serde(default)]
    pub limits: RawLimits,
    /// `backends`, by name.
    #[serde(default)]
    pub backends: BTreeMap<BackendName, RawBackend>,
    /// `http_routes`: named HTTP route sets (HTTP mode, `config/http.rs`).
    #[serde(default)]
    pub http_routes: BTreeMap<BackendName, RawRouteSet>,
    /// `handlers`: `wasi:http/proxy` components answering routes
    /// (`config/handlers.rs`).
    #[serde(default)]
    pub handlers: BTreeMap<BackendName, super::handlers::RawHandler>,
    /// `plain_listen`: plain-HTTP listeners into a route set.
    #[serde(default)]
    pub plain_listen: Vec<RawPlainListener>,
    /// `tls`.
    #[serde(default)]
    pub tls: RawTls,
    /// `log`.
    #[serde(default)]
    pub log: RawLog,
    /// `reload`.
    #[serde(default)]
    pub reload: RawReload,
    /// `workers`: threads serving connections; one per two CPUs when absent.
    pub workers: Option<Workers>,
    /// `accept_proxy`: peers (load balancers) that must send a PROXY header.
    pub accept_proxy: Option<RawAcceptProxy>,
}

/// `accept_proxy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcceptProxy {
    /// Address ranges of the peers that must send a header.
    pub from: Vec<String>,
    /// The whole header must arrive within this.
    pub timeout: Option<ConfigDuration>,
    /// The largest v2 header accepted (fixed part, addresses and TLVs).
    pub max_v2_bytes: Option<ByteSize>,
}

/// `reload`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    /// How often to look for changed config, policy and certificate files;
    /// no watching when absent.
    pub watch_interval: Option<ConfigDuration>,
}

/// `policy`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// The component; may be left out when `--policy` gives it.
    pub path: Option<PathBuf>,
    /// Handed to the policy's `init` (scalars as text; checked in
    /// `validate.rs` by the policy crate's own conversion, `hearth_edge_policy::config`).
    #[serde(default)]
    pub config: serde_yaml::Value,
    /// `reject` or a backend name.
    pub on_error: Option<String>,
    /// Resource limits of each call.
    #[serde(default)]
    pub limits: RawPolicyLimits,
    /// A case file run at load and reload, against this config's
    /// backends and route sets.
    pub cases: Option<PathBuf>,
}

/// `shadow`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShadow {
    /// The component.
    pub path: PathBuf,
    /// Handed to the shadow's `init`.
    #[serde(default)]
    pub config: serde_yaml::Value,
    /// Resource limits of each call.
    #[serde(default)]
    pub limits: RawPolicyLimits,
}

/// `policy.limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyLimits {
    /// Largest linear memory of an instance.
    pub max_memory: Option<ByteSize>,
    /// Longest a single `decide` may run.
    pub max_time: Option<ConfigDuration>,
    /// Longest instantiation plus `init` may run.
    pub init_timeout: Option<ConfigDuration>,
}

/// `limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Time allowed for the whole ClientHello to arrive.
    pub client_hello_timeout: Option<ConfigDuration>,
    /// Largest ClientHello (all records) accepted.
    pub client_hello_max_bytes: Option<ByteSize>,
    /// Time allowed to connect to a backend.
    pub backend_dial_timeout: Option<ConfigDuration>,
    /// No bytes either way for this long closes the connection.
    pub idle_timeout: Option<ConfigDuration>,
    /// HTTP mode: time allowed for an HTTP/1.1 request head.
    pub http_header_timeout: Option<ConfigDuration>,
    /// Connections handled at once; more are closed on accept.
    pub max_concurrent_conns: Option<u64>,
    /// On shutdown, how long established connections may go on.
    pub drain_timeout: Option<ConfigDuration>,
}

/// One entry of `backends`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// Where to dial (or `addrs`).
    pub addr: Option<BackendAddr>,
    /// A pool of addresses instead of `addr`.
    pub addrs: Option<Vec<BackendAddr>>,
    /// How a pool member is picked.
    pub balance: Option<Balance>,
    /// Active health checks of the members.
    pub health_check: Option<RawHealthCheck>,
    /// Passive ejection of failing members.
    pub eject: Option<RawEject>,
    /// How often host names are resolved again.
    pub resolve_interval: Option<ConfigDuration>,
    /// HTTP protocol spoken to it in HTTP mode.
    pub protocol: Option<UpstreamProtocol>,
    /// Whether a PROXY header precedes the bytes by default.
    #[serde(default)]
    pub proxy_protocol: RawProxyProtocol,
    /// ALPN offered when the edge terminates TLS for this backend.
    pub alpn: Option<Vec<Alpn>>,
    /// Send a passthrough connection's first bytes in the SYN (TCP Fast
    /// Open); only where the backend's listener enables it.
    #[serde(default)]
    pub fast_open: bool,
}

/// `backends.*.proxy_protocol`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProxyProtocol {
    /// No PROXY header.
    #[default]
    Off,
    /// A PROXY protocol v2 header.
    V2,
}

/// `tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Certificate files.
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    /// A local CA that issues a leaf for the given names.
    pub local_ca: Option<RawLocalCa>,
    /// Names whose certificates the edge gets by ACME.
    #[serde(default)]
    pub names: Vec<Hostname>,
    /// The ACME account and CA.
    pub acme: Option<RawAcme>,
    /// ACME certificates written to files for backends.
    #[serde(default)]
    pub export: Vec<RawExport>,
}

/// `tls.acme`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// The CA's directory URL.
    pub directory: Option<String>,
    /// Account contacts (`mailto:ops@example.com`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// Where the account key and certificates are kept.
    pub cache_dir: Option<PathBuf>,
    /// Which challenge the CA is asked to validate.
    pub challenge: Option<RawChallenge>,
    /// PEM root(s) to trust for the directory instead of the Web PKI.
    pub ca_root: Option<PathBuf>,
}

/// `tls.acme.challenge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RawChallenge {
    /// TLS-ALPN-01 on the TLS listener.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// HTTP-01 on `http_listen`.
    #[serde(rename = "http-01")]
    Http01,
}

/// One entry of `tls.export`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    /// The ACME name whose certificate is written.
    pub name: Hostname,
    /// PEM chain file, leaf first.
    pub cert: PathBuf,
    /// PEM private key file (mode 0600).
    pub key: PathBuf,
    /// What to do after the files were rewritten.
    pub on_renew: Option<RawOnRenew>,
}

/// `tls.export[].on_renew`: a signal to a process or a command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnRenew {
    /// Signal name (`HUP`, `USR1`...), sent to the pid in `pid_file`.
    pub signal: Option<String>,
    /// File holding the pid to signal.
    pub pid_file: Option<PathBuf>,
    /// A command to run, as an argv list (no shell).
    pub command: Option<Vec<String>>,
    /// Longest the command may run before it is killed.
    pub timeout: Option<ConfigDuration>,
}

/// One entry of `tls.certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Names served with it; the certificate's SANs when absent.
    pub names: Option<Vec<Hostname>>,
}

/// `tls.local_ca`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocalCa {
    /// Where `ca.crt` and `ca.key` live; the user data dir when absent.
    pub dir: Option<PathBuf>,
    /// Names of the leaf certificate.
    pub names: Vec<Hostname>,
}

/// `log`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: Option<RawLevel>,
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// Live ClientHellos written as test cases.
    pub capture: Option<RawCapture>,
}

/// `log.capture`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    /// The case file appended to.
    pub file: PathBuf,
    /// The share of connections captured, more than 0 and at most 1.
    pub sample: Option<f64>,
    /// Write the source address as its network (/24, /48), port 0.
    pub mask_source: Option<bool>,
}

/// `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLevel {
    /// Failures only.
    Error,
    /// Failures and anomalies.
    Warn,
    /// One line per connection.
    Info,
    /// Details.
    Debug,
    /// Everything.
    Trace,
}

/// `log.format`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
