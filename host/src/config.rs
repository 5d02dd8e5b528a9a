//! The edge configuration: YAML in, an immutable, validated [`Config`] out.
//!
//! - `config/raw.rs`: the file as written (serde, `deny_unknown_fields`).
//! - `config/values.rs`, `config/duration.rs`: validating value newtypes.
//! - `config/validate.rs`: cross-field checks, defaults, path resolution.
//! - `config/locate.rs`: field path → line, so every error names
//!   `file:line:column: field: message`.
//!
//! The embedded local profile (no `--config`) is [`EMBEDDED_PROFILE`], read
//! through the same path. The format is described in the README.

mod duration;
mod field;
mod handlers;
mod http;
mod locate;
mod raw;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use handlers::HandlerConfig;
pub use http::{
    Balance, Cidr, Eject, ForwardAuth, HealthCheck, HttpRoute, PlainListener, PoolSettings,
    RouteSet, RouteTarget, UpstreamProtocol,
};
pub use raw::LogFormat;
pub use values::BackendAddr;

use crate::pem::LoadedCertificate;
use locate::{Locations, Position};

/// A validated configuration. Immutable once built.
#[derive(Debug)]
#[non_exhaustive]
pub struct Config {
    /// Addresses to accept TLS on.
    pub listen: Vec<SocketAddr>,
    /// Threads serving connections, each with its own listening socket
    /// per address (`proxy/workers.rs`); 1 serves on the caller's runtime.
    pub workers: usize,
    /// Where the admin endpoints are served, if anywhere.
    pub admin_listen: Option<SocketAddr>,
    /// Address of the plain HTTP listener (ACME HTTP-01, redirect to https).
    pub http_listen: Option<SocketAddr>,
    /// The routing policy.
    pub policy: PolicySettings,
    /// A policy run after each live decision for comparison only.
    pub shadow: Option<ShadowSettings>,
    /// Per-connection limits.
    pub limits: ConnLimits,
    /// Backends by name.
    pub backends: BTreeMap<String, Backend>,
    /// HTTP route sets by name (a terminate decision may name one).
    pub http_routes: BTreeMap<String, RouteSet>,
    /// Plain-HTTP listeners (no TLS) into a route set.
    pub plain_listen: Vec<PlainListener>,
    /// `wasi:http` components by name (a route may name one).
    pub handlers: BTreeMap<String, HandlerConfig>,
    /// Certificates for terminated connections.
    pub tls: TlsSettings,
    /// Logging.
    pub log: LogSettings,
    /// How often changed files trigger a reload, if at all.
    pub reload_watch_interval: Option<Duration>,
    /// Peers (load balancers) whose connections begin with a PROXY
    /// protocol header carrying the client's address.
    pub accept_proxy: Option<AcceptProxy>,
}

/// `accept_proxy`: which peers must send a PROXY protocol v1 or v2 header
/// on every listener, and how long and large it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptProxy {
    /// The peers (never empty).
    pub from: Vec<Cidr>,
    /// The whole header must arrive within this.
    pub timeout: Duration,
    /// The largest v2 header, in bytes.
    pub max_v2_bytes: usize,
}

/// Default `accept_proxy.timeout`.
pub const DEFAULT_ACCEPT_PROXY_TIMEOUT: Duration = Duration::from_secs(3);
/// Default `accept_proxy.max_v2_bytes`: the receive buffer the PROXY
/// protocol specification recommends (section 2.2).
pub const DEFAULT_MAX_V2_BYTES: usize = 536;

impl AcceptProxy {
    /// Whether a connection from `peer` must begin with a header.
    pub fn requires(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.from.iter().any(|c| c.contains(peer))
    }
}

/// `policy`.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The component file (resolved).
    pub path: PathBuf,
    /// Handed to the policy's `init`, in file order.
    pub config: Vec<(String, String)>,
    /// What happens when the policy fails.
    pub on_error: OnError,
    /// Memory and time limits of each call.
    pub limits: hearth_edge_policy::Limits,
    /// A case file the policy must pass with this config at load and
    /// reload (`policy.cases`, resolved).
    pub cases: Option<PathBuf>,
}

/// `shadow`.
#[derive(Debug, Clone)]
pub struct ShadowSettings {
    /// The component file (resolved).
    pub path: PathBuf,
    /// Handed to the shadow's `init`, in file order.
    pub config: Vec<(String, String)>,
    /// Memory and time limits of each call.
    pub limits: hearth_edge_policy::Limits,
}

/// What to do with a connection whose policy call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnError {
    /// Close it (fail closed).
    Reject,
    /// Pass it through to this backend (fail open).
    Backend(String),
}

/// `limits`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// The whole ClientHello must arrive within this.
    pub client_hello_timeout: Duration,
    /// Largest ClientHello accepted (all its records).
    pub client_hello_max_bytes: usize,
    /// Time allowed to connect to a backend.
    pub backend_dial_timeout: Duration,
    /// No bytes either way for this long closes the connection.
    pub idle_timeout: Duration,
    /// HTTP mode: an HTTP/1.1 request head must arrive within this.
    pub http_header_timeout: Duration,
    /// Connections handled at once.
    pub max_concurrent_conns: usize,
    /// On shutdown, how long established connections may go on before
    /// they are closed.
    pub drain_timeout: Duration,
}

/// One backend.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Its name in `backends:`.
    pub name: String,
    /// Every address of its pool (one for a plain `addr`).
    pub addrs: Vec<BackendAddr>,
    /// How the pool's members are picked, checked and ejected.
    pub pool: PoolSettings,
    /// Send a PROXY v2 header unless the decision says otherwise.
    pub proxy_protocol_v2: bool,
    /// ALPN offered to clients when terminating for this backend.
    pub alpn: Vec<String>,
    /// Passthrough: the PROXY header and hello ride in the SYN (TCP Fast
    /// Open) once the kernel holds the backend's cookie.
    pub fast_open: bool,
}

/// `tls`.
#[derive(Debug, Default)]
pub struct TlsSettings {
    /// Certificates read from files.
    pub certificates: Vec<LoadedCertificate>,
    /// The local CA, when configured.
    pub local_ca: Option<LocalCaSettings>,
    /// ACME, when `tls.names` is not empty.
    pub acme: Option<AcmeSettings>,
    /// Certificates written to files.
    pub export: Vec<ExportSettings>,
}

/// `tls.names` and `tls.acme`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names managed by ACME, one certificate each.
    pub names: Vec<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// Account contacts.
    pub contact: Vec<String>,
    /// Account key and certificates.
    pub cache_dir: PathBuf,
    /// The challenge the CA validates.
    pub challenge: Challenge,
    /// Roots trusted for the directory (DER); the Web PKI when empty.
    pub ca_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// `tls.acme.challenge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01, answered on the TLS listener.
    TlsAlpn01,
    /// HTTP-01, answered on `http_listen`.
    Http01,
}

/// One `tls.export` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// The ACME name.
    pub name: String,
    /// Chain file.
    pub cert: PathBuf,
    /// Key file.
    pub key: PathBuf,
    /// Run after each write that changed the files.
    pub on_renew: Option<OnRenew>,
}

/// `tls.export[].on_renew`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnRenew {
    /// Send `signal` to the pid read from `pid_file`.
    Signal {
        /// The signal number.
        signal: i32,
        /// Its name as configured, for logs.
        name: String,
        /// The pid file.
        pid_file: PathBuf,
    },
    /// Run `argv` (no shell), killed after `timeout`.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// Longest run.
        timeout: Duration,
    },
}

/// `tls.local_ca`.
#[derive(Debug, Clone)]
pub struct LocalCaSettings {
    /// Where `ca.crt` and `ca.key` are kept.
    pub dir: PathBuf,
    /// Names of the leaf certificate issued at start.
    pub names: Vec<String>,
}

/// `log`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Default level; `RUST_LOG` overrides it.
    pub level: tracing::Level,
    /// Text or JSON lines.
    pub format: LogFormat,
    /// `log.capture`, when set.
    pub capture: Option<CaptureSettings>,
}

/// `log.capture`: live ClientHellos and their decisions appended to a case
/// file that `test` reads.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSettings {
    /// The case file (resolved against the config's directory).
    pub file: PathBuf,
    /// The share of connections captured, in (0, 1].
    pub sample: f64,
    /// Whether the source address is written as its network, port 0.
    pub mask_source: bool,
}

/// A config could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file as given.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid YAML, or a field is invalid.
    #[error("{}", format_invalid(file, position, field, message))]
    Invalid {
        /// The file as given.
        file: String,
        /// Where, when known.
        position: Option<Position>,
        /// The field path (`limits.idle_timeout`); empty for syntax errors.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn format_invalid(file: &str, position: &Option<Position>, field: &str, message: &str) -> String {
    let mut out = file.to_owned();
    if let Some(p) = position {
        out.push_str(&format!(":{}:{}", p.line, p.column));
    }
    out.push_str(": ");
    if !field.is_empty() {
        out.push_str(field);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}

/// Default `limits.client_hello_timeout`: generous for slow mobile links,
/// short enough that idle sockets do not pile up.
pub const DEFAULT_CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `limits.client_hello_max_bytes`: a post-quantum hello is ~1.8 KiB;
/// 16 KiB leaves room for big PSK and padding extensions.
pub const DEFAULT_CLIENT_HELLO_MAX_BYTES: u64 = 16 * 1024;
/// Smallest allowed `client_hello_max_bytes`: below this real hellos fail.
pub const MIN_CLIENT_HELLO_MAX_BYTES: u64 = 512;
/// Largest allowed `client_hello_max_bytes`: a hello needs no more than this.
pub const MAX_CLIENT_HELLO_MAX_BYTES: u64 = 1 << 20;
/// Default `limits.backend_dial_timeout`.
pub const DEFAULT_BACKEND_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `limits.idle_timeout`: long-lived WebSockets and TURN sessions
/// send keep-alives well within this.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Default `limits.http_header_timeout`: generous for a slow mobile client,
/// short enough that a slowloris client holds a connection briefly.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `limits.max_concurrent_conns`.
pub const DEFAULT_MAX_CONCURRENT_CONNS: u64 = 10_000;
/// Default `limits.drain_timeout`: long enough for requests in flight to
/// finish, shorter than the usual 30 s before an orchestrator kills.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(25);
/// ALPN offered for a backend that does not list its own.
pub const DEFAULT_ALPN: &[&str] = &["http/1.1"];
/// Default `tls.acme.directory`: Let's Encrypt's production CA.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Default `tls.export[].on_renew.timeout`: a service restart fits in it.
pub const DEFAULT_ON_RENEW_TIMEOUT: Duration = Duration::from_secs(30);
/// Smallest `policy.limits.max_memory`: one 64 KiB wasm page.
pub const MIN_POLICY_MEMORY: u64 = 64 * 1024;

/// The embedded local profile, used when no `--config` is given. The policy
/// path and the local CA directory are filled in by [`Config::embedded`].
pub const EMBEDDED_PROFILE: &str = "\
listen: \"127.0.0.1:8443\"
admin_listen: \"127.0.0.1:9180\"
http_listen: \"127.0.0.1:8080\"
policy:
  config: { domain: hearth.localhost }
  on_error: reject
backends:
  turn:       { addr: \"127.0.0.1:5349\" }
  livekit:    { addr: \"127.0.0.1:7880\" }
  pocketbase: { addr: \"127.0.0.1:8090\" }
tls:
  local_ca:
    names: [hearth.localhost, lk.hearth.localhost, turn.hearth.localhost]
log: { level: info, format: text }
";

/// The name errors in the embedded profile are reported under.
const EMBEDDED_NAME: &str = "<embedded profile>";

// === impl Config ===

impl Config {
    /// Reads and validates the file at `path`; `policy` replaces
    /// `policy.path`.
    pub fn load(path: &Path, policy: Option<&Path>) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::from_yaml(&text, &file, &base_dir, policy)
    }

    /// The embedded local profile with the given policy file.
    pub fn embedded(policy: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml(
            EMBEDDED_PROFILE,
            EMBEDDED_NAME,
            Path::new("."),
            Some(policy),
        )
    }

    /// Validates YAML `text`; `file` names it in errors, `base_dir` anchors
    /// relative paths.
    pub fn from_yaml(
        text: &str,
        file: &str,
        base_dir: &Path,
        policy: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let invalid = |position, field: String, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            position,
            field,
            message,
        };
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            let position = e.location().map(|l| Position {
                line: l.line(),
                column: l.column(),
            });
            invalid(position, String::new(), yaml_message(&e))
        })?;
        if value.is_null() {
            return Err(invalid(None, String::new(), "the file is empty".to_owned()));
        }
        let locations = Locations::scan(text);
        let raw: raw::RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            let (field, position) = if path == "." {
                (String::new(), None)
            } else {
                (path.clone(), locations.find(&path))
            };
            invalid(position, field, message)
        })?;
        let cx = validate::Context {
            base_dir,
            policy_override: policy,
            default_data_dir: default_data_dir(),
        };
        let mut config = validate::validate(raw, &cx)
            .map_err(|e| invalid(locations.find(&e.path), e.path, e.message))?;
        for handler in config.handlers.values_mut() {
            let field = std::mem::take(&mut handler.component_at);
            let position = locations.find(&field);
            let mut at = file.to_owned();
            if let Some(p) = position {
                at.push_str(&format!(":{}:{}", p.line, p.column));
            }
            handler.component_at = format!("{at}: {field}");
        }
        Ok(config)
    }
}

/// Where the edge keeps its own files (the local CA) unless told:
/// `$XDG_DATA_HOME/hearth-wasm-edge`, else
/// `~/.local/share/hearth-wasm-edge`.
pub fn default_data_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".local/share")
        }
    };
    Some(base.join(DATA_DIR_NAME))
}

/// The directory name under the data home.
const DATA_DIR_NAME: &str = "hearth-wasm-edge";

/// serde_yaml's message without its trailing ` at line L column C`, which
/// the error repeats in its own `file:line:column` prefix.
fn yaml_message(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    match error.location() {
        Some(l) => text.replacen(
            &format!(" at line {} column {}", l.line(), l.column()),
            "",
            1,
        ),
        None => text,
    }
}

impl fmt::Display for OnError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            OnError::Reject => f.write_str("reject"),
            OnError::Backend(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/config");

    /// Loads `dir/name` with the path spelled relative to the crate, as the
    /// golden `.err` files spell it.
    fn load_relative(dir: &str, name: &str) -> Result<Config, ConfigError> {
        // cargo runs tests in the crate directory, so relative paths in
        // messages come out as the golden files spell them.
        let base = format!("testdata/config/{dir}");
        let shown = format!("{base}/{name}");
        let text = std::fs::read_to_string(&shown).unwrap();
        Config::from_yaml(&text, &shown, Path::new(&base), None)
    }

    fn yaml_files(dir: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(Path::new(TESTDATA).join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_invalid_config_fails_with_its_golden_error() {
        let names = yaml_files("invalid");
        assert!(
            names.len() >= 10,
            "expected the golden set, found {names:?}"
        );
        let mut mismatches = Vec::new();
        for name in names {
            let expected_file = Path::new(TESTDATA)
                .join("invalid")
                .join(name.replace(".yaml", ".err"));
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                // Regenerate, then review the diff by eye before committing.
                let actual = load_relative("invalid", &name)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                std::fs::write(&expected_file, format!("{actual}\n")).unwrap();
            }
            let expected = std::fs::read_to_string(&expected_file)
                .unwrap_or_else(|_| panic!("{} has no .err file", name));
            match load_relative("invalid", &name) {
                Ok(_) => mismatches.push(format!("{name}: loaded, expected an error")),
                Err(e) if e.to_string() != expected.trim_end() => mismatches.push(format!(
                    "{name}:\n  expected: {}\n  actual:   {e}",
                    expected.trim_end()
                )),
                Err(_) => {}
            }
        }
        for entry in std::fs::read_dir(Path::new(TESTDATA).join("invalid")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".err") {
                let yaml = Path::new(TESTDATA)
                    .join("invalid")
                    .join(format!("{stem}.yaml"));
                if !yaml.exists() {
                    mismatches.push(format!("{name}: no {stem}.yaml beside it"));
                }
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    #[test]
    fn a_route_set_names_its_stun_backend() {
        let config = load_relative("valid", "http.yaml").unwrap();
        let set = &config.http_routes["pocketbase"];
        assert_eq!(set.stun_backend.as_deref(), Some("turn-tcp"));
        assert!(config.backends["turn-tcp"].proxy_protocol_v2);
    }

    #[test]
    fn every_valid_config_loads() {
        let names = yaml_files("valid");
        assert!(!names.is_empty());
        for name in names {
            if let Err(e) = load_relative("valid", &name) {
                panic!("{name}: {e}");
            }
        }
    }

    #[test]
    fn full_example_has_every_field_and_its_defaults() {
        let config = load_relative("valid", "full.yaml").unwrap();
        assert_eq!(config.listen.len(), 2);
        let policy_config: Vec<(&str, &str)> = config
            .policy
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            policy_config,
            [
                ("domain", "hearth.example"),
                ("turn_aliases", "cdn.hearth.example"),
                ("max_per_second", "20"),
                ("strict", "true")
            ]
        );
        assert_eq!(
            config.policy.on_error,
            OnError::Backend("pocketbase".to_owned())
        );
        assert_eq!(config.policy.limits.max_time, Duration::from_millis(5));
        assert_eq!(config.limits.client_hello_max_bytes, 16 * 1024);
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(600));
        let turn = &config.backends["turn"];
        assert!(turn.proxy_protocol_v2);
        assert_eq!(turn.alpn, ["http/1.1"]);
        assert_eq!(config.backends["livekit"].alpn, ["h2", "http/1.1"]);
        assert_eq!(
            config.backends["pocketbase"].addrs[0].to_string(),
            "localhost:8090"
        );
        assert_eq!(config.tls.certificates.len(), 2);
        assert_eq!(config.tls.certificates[1].names, ["lk.hearth.example"]);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(
            config.admin_listen,
            Some("127.0.0.1:9180".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(config.policy.limits.init_timeout, Duration::from_secs(1));
        let shadow = config.shadow.as_ref().unwrap();
        assert!(shadow.path.ends_with("policies/hearth.wasm"));
        assert_eq!(
            shadow.config,
            [("domain".to_owned(), "hearth.example".to_owned())]
        );
        assert_eq!(config.limits.drain_timeout, Duration::from_secs(25));
        assert_eq!(config.reload_watch_interval, Some(Duration::from_secs(5)));
        assert_eq!(config.workers, 3);
        assert_eq!(config.http_listen, Some("0.0.0.0:8080".parse().unwrap()));
        let acme = config.tls.acme.as_ref().unwrap();
        assert_eq!(acme.names, ["media.hearth.example", "cdn.hearth.example"]);
        assert_eq!(acme.challenge, Challenge::Http01);
        assert_eq!(acme.ca_roots.len(), 1);
        assert!(acme.cache_dir.ends_with("target-acme-unused"));
        let export = &config.tls.export;
        assert_eq!(
            export[0].on_renew,
            Some(OnRenew::Signal {
                signal: libc::SIGHUP,
                name: "SIGHUP".to_owned(),
                pid_file: PathBuf::from("/run/livekit.pid"),
            })
        );
        assert_eq!(
            export[1].on_renew,
            Some(OnRenew::Command {
                argv: vec!["systemctl".into(), "restart".into(), "livekit".into()],
                timeout: Duration::from_secs(60),
            })
        );
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let config = load_relative("valid", "minimal.yaml").unwrap();
        assert_eq!(
            config.limits.client_hello_timeout,
            DEFAULT_CLIENT_HELLO_TIMEOUT
        );
        assert_eq!(
            config.limits.backend_dial_timeout,
            DEFAULT_BACKEND_DIAL_TIMEOUT
        );
        assert_eq!(config.limits.max_concurrent_conns, 10_000);
        assert_eq!(config.policy.on_error, OnError::Reject);
        assert_eq!(config.log.level, tracing::Level::INFO);
        assert_eq!(config.admin_listen, None);
        assert!(config.shadow.is_none());
        assert_eq!(config.reload_watch_interval, None);
        assert_eq!(
            config.workers,
            validate::auto_workers(std::thread::available_parallelism().map_or(1, usize::from))
        );
        assert_eq!(
            [1, 2, 3, 4, 8, 64].map(validate::auto_workers),
            [1, 1, 1, 2, 4, 32],
            "one worker per two CPUs, at least one"
        );
        assert_eq!(config.limits.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
        assert_eq!(
            config.policy.limits.init_timeout,
            hearth_edge_policy::DEFAULT_INIT_TIMEOUT
        );
        assert!(config.http_listen.is_none());
        assert!(config.tls.acme.is_none());
    }

    #[test]
    fn acme_defaults_to_lets_encrypt_with_tls_alpn_01_in_the_data_dir() {
        let text =
            "listen: \"127.0.0.1:0\"\npolicy: { path: p.wasm }\ntls: { names: [a.example] }\n";
        let cx_dir = PathBuf::from("/var/lib/edge");
        let raw = serde_yaml::from_str(text).unwrap();
        let config = validate::validate(
            raw,
            &validate::Context {
                base_dir: Path::new("/etc"),
                policy_override: Some(Path::new("/p.wasm")),
                default_data_dir: Some(cx_dir.clone()),
            },
        )
        .unwrap();
        let acme = config.tls.acme.unwrap();
        assert_eq!(acme.directory, DEFAULT_ACME_DIRECTORY);
        assert_eq!(acme.challenge, Challenge::TlsAlpn01);
        assert_eq!(acme.cache_dir, cx_dir.join("acme"));
        assert!(acme.ca_roots.is_empty() && acme.contact.is_empty());
    }

    #[test]
    fn policy_override_replaces_the_configured_path() {
        let text = "listen: \"127.0.0.1:0\"\npolicy: { path: missing.wasm }\n";
        let config = Config::from_yaml(
            text,
            "x.yaml",
            Path::new("/nonexistent"),
            Some(Path::new("/p.wasm")),
        )
        .unwrap();
        assert_eq!(config.policy.path, Path::new("/p.wasm"));
        let err = Config::from_yaml(text, "x.yaml", Path::new("/nonexistent"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.yaml:2:11: policy.path: no such file /nonexistent/missing.wasm"
        );
    }

    #[test]
    fn embedded_profile_is_valid() {
        let config = Config::embedded(Path::new("policies/hearth.wasm")).unwrap();
        assert_eq!(
            config.listen,
            ["127.0.0.1:8443".parse::<SocketAddr>().unwrap()]
        );
        // Plain HTTP redirects to https, as on a server's :80.
        assert_eq!(
            config.http_listen,
            Some("127.0.0.1:8080".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(config.backends.len(), 3);
        assert_eq!(
            config.admin_listen,
            Some("127.0.0.1:9180".parse::<SocketAddr>().unwrap())
        );
        let ca = config.tls.local_ca.as_ref().unwrap();
        assert_eq!(
            ca.names,
            [
                "hearth.localhost",
                "lk.hearth.localhost",
                "turn.hearth.localhost"
            ]
        );
    }

    #[test]
    fn missing_file_names_the_file() {
        let err = Config::load(Path::new("/nonexistent/edge.yaml"), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/edge.yaml: cannot read:"),
            "{err}"
        );
    }
}
