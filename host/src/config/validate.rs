//! Cross-field checks that turn a [`RawConfig`] into the immutable
//! [`Config`]: defaults applied, `on_error` and backend references resolved,
//! relative paths resolved against the config file's directory, certificate
//! files read and parsed. Each failure names the field path; `config.rs`
//! adds the file, line and column.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hearth_edge_policy::Limits as PolicyLimits;
use hearth_edge_policy::config::{ConfigError as PolicyConfigError, config_map};

use super::duration::ConfigDuration;
use super::field::{FieldError, fail, nonzero};
use super::http::{self, RawPoolFields};
use super::raw::{
    RawAcceptProxy, RawAcme, RawBackend, RawChallenge, RawConfig, RawExport, RawLevel, RawLimits,
    RawLog, RawOnRenew, RawPolicy, RawPolicyLimits, RawProxyProtocol, RawShadow, RawTls,
};
use super::values::{BackendName, Hostname, ListenAddr, ListenList};
use super::{
    AcceptProxy, AcmeSettings, Backend, CaptureSettings, Challenge, Config, ConnLimits,
    DEFAULT_ACCEPT_PROXY_TIMEOUT, DEFAULT_ACME_DIRECTORY, DEFAULT_ALPN,
    DEFAULT_BACKEND_DIAL_TIMEOUT, DEFAULT_CLIENT_HELLO_MAX_BYTES, DEFAULT_CLIENT_HELLO_TIMEOUT,
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_HTTP_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_CONNS, DEFAULT_MAX_V2_BYTES, DEFAULT_ON_RENEW_TIMEOUT, ExportSettings,
    LocalCaSettings, LogSettings, MAX_CLIENT_HELLO_MAX_BYTES, MIN_CLIENT_HELLO_MAX_BYTES,
    MIN_POLICY_MEMORY, OnError, OnRenew, PolicySettings, ShadowSettings, TlsSettings,
};
use crate::pem as files;

/// Everything validation needs besides the raw config.
pub struct Context<'a> {
    /// Relative paths resolve against this directory.
    pub base_dir: &'a Path,
    /// `--policy`, which replaces `policy.path`.
    pub policy_override: Option<&'a Path>,
    /// The default local CA directory, when `tls.local_ca.dir` is absent.
    pub default_data_dir: Option<PathBuf>,
}

/// `workers: auto`: one worker per two CPUs this process may use (its
/// affinity and cgroup quota), at least one. The edge shares its machine
/// with its backends and clients (LiveKit, a web app): on two cores where
/// all of them run, one worker needed 0.78-0.81x the CPU per new
/// connection of two workers, with more connections and keep-alive
/// requests per second, because each worker of two sleeps and wakes around
/// the events of its own connections (`benches/RESULTS.md`, "Data path at
/// the default config").
pub fn auto_workers(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

/// Checks `raw` and builds the [`Config`], section by section.
pub fn validate(raw: RawConfig, cx: &Context<'_>) -> Result<Config, FieldError> {
    let listen = listen(&raw.listen)?;
    let admin_listen = admin_listen(raw.admin_listen, &listen)?;
    let http_listen = http_listen(raw.http_listen.as_ref(), &listen, admin_listen)?;
    let backends = backends(raw.backends)?;
    let handlers = super::handlers::handlers(raw.handlers, cx)?;
    let http_routes = http::route_sets(raw.http_routes, &backends, &handlers)?;
    let plain_listen = http::plain_listeners(raw.plain_listen, &http_routes, &listen)?;
    let policy = policy(raw.policy, &backends, cx)?;
    let shadow = raw.shadow.map(|s| shadow(s, cx)).transpose()?;
    let limits = limits(raw.limits)?;
    let tls = tls(raw.tls, http_listen.is_some(), cx)?;
    let log = log(&raw.log, cx)?;
    let reload_watch_interval = match raw.reload.watch_interval {
        Some(ConfigDuration(d)) if d.is_zero() => {
            return fail("reload.watch_interval", "must be more than 0");
        }
        other => other.map(|d| d.0),
    };
    let accept_proxy = raw.accept_proxy.map(accept_proxy).transpose()?;
    let workers = match raw.workers {
        Some(super::values::Workers(Some(n))) => n,
        _ => auto_workers(std::thread::available_parallelism().map_or(1, usize::from)),
    };
    Ok(Config {
        listen,
        workers,
        admin_listen,
        http_listen,
        policy,
        shadow,
        limits,
        backends,
        http_routes,
        plain_listen,
        handlers,
        tls,
        log,
        reload_watch_interval,
        accept_proxy,
    })
}

fn accept_proxy(raw: RawAcceptProxy) -> Result<AcceptProxy, FieldError> {
    if raw.from.is_empty() {
        return fail(
            "accept_proxy.from",
            "at least one address range is required (the balancers' addresses)",
        );
    }
    let mut from = Vec::new();
    for (i, text) in raw.from.iter().enumerate() {
        from.push(http::Cidr::parse(text).or_else(|m| fail(format!("accept_proxy.from[{i}]"), m))?);
    }
    let max_v2_bytes = match raw.max_v2_bytes {
        None => DEFAULT_MAX_V2_BYTES,
        Some(size) => match usize::try_from(size.0) {
            Ok(n @ 52..=65_551) => n,
            _ => {
                return fail(
                    "accept_proxy.max_v2_bytes",
                    "must be between 52 (an IPv6 header) and 65551 bytes",
                );
            }
        },
    };
    Ok(AcceptProxy {
        from,
        timeout: nonzero(
            "accept_proxy.timeout",
            raw.timeout,
            DEFAULT_ACCEPT_PROXY_TIMEOUT,
        )?,
        max_v2_bytes,
    })
}

fn listen(raw: &ListenList) -> Result<Vec<SocketAddr>, FieldError> {
    if raw.0.is_empty() {
        return fail("listen", "at least one address is required");
    }
    let mut seen = HashSet::new();
    for (i, addr) in raw.0.iter().enumerate() {
        if !seen.insert(addr.0) {
            return fail(
                format!("listen[{i}]"),
                format!("duplicate address {}", addr.0),
            );
        }
    }
    Ok(raw.0.iter().map(|a| a.0).collect())
}

fn admin_listen(
    raw: Option<ListenAddr>,
    listen: &[SocketAddr],
) -> Result<Option<SocketAddr>, FieldError> {
    let Some(ListenAddr(addr)) = raw else {
        return Ok(None);
    };
    if listen.contains(&addr) {
        return fail(
            "admin_listen",
            format!("{addr} is also in listen; give the admin endpoints their own port"),
        );
    }
    Ok(Some(addr))
}

fn http_listen(
    raw: Option<&ListenAddr>,
    listen: &[SocketAddr],
    admin: Option<SocketAddr>,
) -> Result<Option<SocketAddr>, FieldError> {
    let Some(ListenAddr(addr)) = raw else {
        return Ok(None);
    };
    if listen.contains(addr) {
        return fail(
            "http_listen",
            format!("{addr} is already a TLS listen address"),
        );
    }
    if admin == Some(*addr) {
        return fail("http_listen", format!("{addr} is also admin_listen"));
    }
    Ok(Some(*addr))
}

fn backends(
    raw: BTreeMap<BackendName, RawBackend>,
) -> Result<BTreeMap<String, Backend>, FieldError> {
    let mut backends = BTreeMap::new();
    for (BackendName(name), b) in raw {
        let alpn = match b.alpn {
            Some(list) if list.is_empty() => {
                return fail(
                    format!("backends.{name}.alpn"),
                    "must not be empty (leave it out for http/1.1)",
                );
            }
            Some(list) => list.into_iter().map(|a| a.0).collect(),
            None => DEFAULT_ALPN.iter().map(|s| s.to_string()).collect(),
        };
        let fields = RawPoolFields {
            addrs: b.addrs,
            balance: b.balance,
            health_check: b.health_check,
            eject: b.eject,
            resolve_interval: b.resolve_interval,
            protocol: b.protocol,
        };
        let (addrs, pool) = http::pool(&name, b.addr, fields)?;
        let backend = Backend {
            name: name.clone(),
            addrs,
            pool,
            proxy_protocol_v2: b.proxy_protocol == RawProxyProtocol::V2,
            alpn,
            fast_open: b.fast_open,
        };
        backends.insert(name, backend);
    }
    Ok(backends)
}

fn policy(
    raw: RawPolicy,
    backends: &BTreeMap<String, Backend>,
    cx: &Context<'_>,
) -> Result<PolicySettings, FieldError> {
    let path = match (cx.policy_override, raw.path) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(path)) => {
            let resolved = cx.base_dir.join(&path);
            if !resolved.is_file() {
                return fail(
                    "policy.path",
                    format!("no such file {}", resolved.display()),
                );
            }
            resolved
        }
        (None, None) => return fail("policy.path", "missing (set it here or pass --policy)"),
    };
    let on_error = match raw.on_error.as_deref() {
        None | Some("reject") => OnError::Reject,
        Some(name) if backends.contains_key(name) => OnError::Backend(name.to_owned()),
        Some(name) => {
            let known: Vec<&str> = backends.keys().map(String::as_str).collect();
            return fail(
                "policy.on_error",
                format!(
                    "unknown backend {name:?} (expected reject or one of: {})",
                    known.join(", ")
                ),
            );
        }
    };
    let limits = policy_limits(raw.limits, "policy")?;
    let config = policy_config(&raw.config, "policy")?;
    let cases = match raw.cases {
        None => None,
        Some(file) => {
            let resolved = cx.base_dir.join(&file);
            if !resolved.is_file() {
                return fail(
                    "policy.cases",
                    format!("no such file {}", resolved.display()),
                );
            }
            Some(resolved)
        }
    };
    Ok(PolicySettings {
        path,
        config,
        on_error,
        limits,
        cases,
    })
}

fn shadow(raw: RawShadow, cx: &Context<'_>) -> Result<ShadowSettings, FieldError> {
    let path = cx.base_dir.join(&raw.path);
    if !path.is_file() {
        return fail("shadow.path", format!("no such file {}", path.display()));
    }
    Ok(ShadowSettings {
        path,
        config: policy_config(&raw.config, "shadow")?,
        limits: policy_limits(raw.limits, "shadow")?,
    })
}

/// `<section>.limits` of `policy` or `shadow`.
fn policy_limits(raw: RawPolicyLimits, section: &str) -> Result<PolicyLimits, FieldError> {
    let defaults = PolicyLimits::default();
    let max_memory = raw.max_memory.map_or(defaults.max_memory, |s| s.0);
    if max_memory < MIN_POLICY_MEMORY {
        return fail(
            format!("{section}.limits.max_memory"),
            format!("must be at least {MIN_POLICY_MEMORY} bytes (one wasm page)"),
        );
    }
    let nonzero =
        |field: &str, value, default| nonzero(format!("{section}.limits.{field}"), value, default);
    Ok(PolicyLimits {
        max_memory,
        max_time: nonzero("max_time", raw.max_time, defaults.max_time)?,
        init_timeout: nonzero("init_timeout", raw.init_timeout, defaults.init_timeout)?,
    })
}

/// `<section>.config` of `policy` or `shadow`, as `init` receives it.
fn policy_config(
    raw: &serde_yaml::Value,
    section: &str,
) -> Result<Vec<(String, String)>, FieldError> {
    config_map(raw).map_err(|e| match e {
        PolicyConfigError::BadValue { ref key, .. } => FieldError {
            path: format!("{section}.config.{key}"),
            message: e.to_string(),
        },
        other => FieldError {
            path: format!("{section}.config"),
            message: other.to_string(),
        },
    })
}

fn limits(raw: RawLimits) -> Result<ConnLimits, FieldError> {
    let nonzero = |field: &str, value, default| nonzero(format!("limits.{field}"), value, default);
    let client_hello_max_bytes = raw
        .client_hello_max_bytes
        .map_or(DEFAULT_CLIENT_HELLO_MAX_BYTES, |s| s.0);
    if !(MIN_CLIENT_HELLO_MAX_BYTES..=MAX_CLIENT_HELLO_MAX_BYTES).contains(&client_hello_max_bytes)
    {
        return fail(
            "limits.client_hello_max_bytes",
            format!(
                "must be between {MIN_CLIENT_HELLO_MAX_BYTES} and {MAX_CLIENT_HELLO_MAX_BYTES} bytes"
            ),
        );
    }
    let max_concurrent_conns = raw
        .max_concurrent_conns
        .unwrap_or(DEFAULT_MAX_CONCURRENT_CONNS);
    if max_concurrent_conns == 0 {
        return fail("limits.max_concurrent_conns", "must be at least 1");
    }
    Ok(ConnLimits {
        client_hello_timeout: nonzero(
            "client_hello_timeout",
            raw.client_hello_timeout,
            DEFAULT_CLIENT_HELLO_TIMEOUT,
        )?,
        client_hello_max_bytes: usize::try_from(client_hello_max_bytes).unwrap_or(usize::MAX),
        backend_dial_timeout: nonzero(
            "backend_dial_timeout",
            raw.backend_dial_timeout,
            DEFAULT_BACKEND_DIAL_TIMEOUT,
        )?,
        idle_timeout: nonzero("idle_timeout", raw.idle_timeout, DEFAULT_IDLE_TIMEOUT)?,
        http_header_timeout: nonzero(
            "http_header_timeout",
            raw.http_header_timeout,
            DEFAULT_HTTP_HEADER_TIMEOUT,
        )?,
        max_concurrent_conns: usize::try_from(max_concurrent_conns).unwrap_or(usize::MAX),
        drain_timeout: raw.drain_timeout.map_or(DEFAULT_DRAIN_TIMEOUT, |d| d.0),
    })
}

fn tls(raw: RawTls, has_http: bool, cx: &Context<'_>) -> Result<TlsSettings, FieldError> {
    let mut certificates = Vec::new();
    for (i, c) in raw.certificates.into_iter().enumerate() {
        let cert_path = cx.base_dir.join(&c.cert);
        let key_path = cx.base_dir.join(&c.key);
        let names = c
            .names
            .map(|names| names.into_iter().map(|n| n.0).collect());
        match files::load(&cert_path, &key_path, names) {
            Ok(loaded) => certificates.push(loaded),
            Err(e) => {
                return fail(
                    format!("tls.certificates[{i}].{}", e.field()),
                    e.to_string(),
                );
            }
        }
    }
    let local_ca = match raw.local_ca {
        None => None,
        Some(ca) => {
            if ca.names.is_empty() {
                return fail("tls.local_ca.names", "at least one name is required");
            }
            let dir = match (ca.dir, &cx.default_data_dir) {
                (Some(dir), _) => cx.base_dir.join(dir),
                (None, Some(dir)) => dir.clone(),
                (None, None) => {
                    return fail(
                        "tls.local_ca.dir",
                        "no default data directory (set XDG_DATA_HOME or HOME, or give dir)",
                    );
                }
            };
            Some(LocalCaSettings {
                dir,
                names: ca.names.into_iter().map(|n| n.0).collect(),
            })
        }
    };
    let acme = acme(&raw.names, raw.acme, &certificates, has_http, cx)?;
    let export = export(raw.export, acme.as_ref(), cx)?;
    Ok(TlsSettings {
        certificates,
        local_ca,
        acme,
        export,
    })
}

/// `tls.names` and `tls.acme`: ACME is on when names are listed.
fn acme(
    names: &[Hostname],
    raw: Option<RawAcme>,
    certificates: &[files::LoadedCertificate],
    has_http: bool,
    cx: &Context<'_>,
) -> Result<Option<AcmeSettings>, FieldError> {
    if names.is_empty() {
        if raw.is_some() {
            return fail("tls.acme", "no tls.names to get certificates for");
        }
        return Ok(None);
    }
    let mut seen = HashSet::new();
    for (i, Hostname(name)) in names.iter().enumerate() {
        let field = format!("tls.names[{i}]");
        if name.starts_with("*.") {
            return fail(
                field,
                format!("{name}: wildcard names need DNS-01, which the edge does not answer"),
            );
        }
        if !seen.insert(name.as_str()) {
            return fail(field, format!("duplicate name {name}"));
        }
        if let Some(j) = certificates.iter().position(|c| c.names.contains(name)) {
            return fail(
                field,
                format!("{name} is also served from tls.certificates[{j}]"),
            );
        }
    }
    let raw = raw.unwrap_or_default();
    let directory = raw
        .directory
        .unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.to_owned());
    if !directory.starts_with("https://") {
        return fail(
            "tls.acme.directory",
            format!("{directory:?} is not an https:// URL"),
        );
    }
    for (i, contact) in raw.contact.iter().enumerate() {
        if !contact.starts_with("mailto:") || contact.len() <= "mailto:".len() {
            return fail(
                format!("tls.acme.contact[{i}]"),
                format!("{contact:?} is not a mailto: address"),
            );
        }
    }
    let challenge = match raw.challenge.unwrap_or(RawChallenge::TlsAlpn01) {
        RawChallenge::TlsAlpn01 => Challenge::TlsAlpn01,
        RawChallenge::Http01 if !has_http => {
            return fail(
                "tls.acme.challenge",
                "http-01 is answered on http_listen, which is not set",
            );
        }
        RawChallenge::Http01 => Challenge::Http01,
    };
    let cache_dir = match (raw.cache_dir, &cx.default_data_dir) {
        (Some(dir), _) => cx.base_dir.join(dir),
        (None, Some(dir)) => dir.join("acme"),
        (None, None) => {
            return fail(
                "tls.acme.cache_dir",
                "no default data directory (set XDG_DATA_HOME or HOME, or give cache_dir)",
            );
        }
    };
    let ca_roots = match raw.ca_root {
        None => Vec::new(),
        Some(path) => {
            let path = cx.base_dir.join(path);
            files::load_roots(&path).map_err(|e| FieldError {
                path: "tls.acme.ca_root".to_owned(),
                message: e.to_string(),
            })?
        }
    };
    Ok(Some(AcmeSettings {
        names: names.iter().map(|n| n.0.clone()).collect(),
        directory,
        contact: raw.contact,
        cache_dir,
        challenge,
        ca_roots,
    }))
}

/// `tls.export`: each entry names an ACME name.
fn export(
    raw: Vec<RawExport>,
    acme: Option<&AcmeSettings>,
    cx: &Context<'_>,
) -> Result<Vec<ExportSettings>, FieldError> {
    let mut out = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let name = e.name.0;
        if !acme.is_some_and(|a| a.names.contains(&name)) {
            return fail(
                format!("tls.export[{i}].name"),
                format!("{name} is not in tls.names"),
            );
        }
        let on_renew = match e.on_renew {
            None => None,
            Some(raw) => Some(on_renew(raw, &format!("tls.export[{i}].on_renew"), cx)?),
        };
        out.push(ExportSettings {
            name,
            cert: cx.base_dir.join(e.cert),
            key: cx.base_dir.join(e.key),
            on_renew,
        });
    }
    Ok(out)
}

/// Signals `on_renew` may send, by name.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
];

fn on_renew(raw: RawOnRenew, field: &str, cx: &Context<'_>) -> Result<OnRenew, FieldError> {
    match (raw.signal, raw.pid_file, raw.command) {
        (Some(signal), Some(pid_file), None) => {
            if raw.timeout.is_some() {
                return fail(format!("{field}.timeout"), "only a command has a timeout");
            }
            let upper = signal.to_ascii_uppercase();
            let short = upper.strip_prefix("SIG").unwrap_or(&upper);
            let Some(&(name, number)) = SIGNALS.iter().find(|(n, _)| *n == short) else {
                let known: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
                return fail(
                    format!("{field}.signal"),
                    format!(
                        "unknown signal {signal:?} (expected one of: {})",
                        known.join(", ")
                    ),
                );
            };
            Ok(OnRenew::Signal {
                signal: number,
                name: format!("SIG{name}"),
                pid_file: cx.base_dir.join(pid_file),
            })
        }
        (Some(_), None, None) => fail(format!("{field}.signal"), "needs pid_file"),
        (None, Some(_), None) => fail(format!("{field}.pid_file"), "needs signal"),
        (None, None, Some(argv)) => {
            if argv.is_empty() || argv[0].is_empty() {
                return fail(format!("{field}.command"), "must name a program");
            }
            let timeout = raw.timeout.map_or(DEFAULT_ON_RENEW_TIMEOUT, |d| d.0);
            if timeout.is_zero() {
                return fail(format!("{field}.timeout"), "must be more than 0");
            }
            Ok(OnRenew::Command { argv, timeout })
        }
        (None, None, None) => fail(field, "give either signal + pid_file or command"),
        _ => fail(field, "give either signal + pid_file or command, not both"),
    }
}

fn log(raw: &RawLog, cx: &Context<'_>) -> Result<LogSettings, FieldError> {
    let level = match raw.level.unwrap_or(RawLevel::Info) {
        RawLevel::Error => tracing::Level::ERROR,
        RawLevel::Warn => tracing::Level::WARN,
        RawLevel::Info => tracing::Level::INFO,
        RawLevel::Debug => tracing::Level::DEBUG,
        RawLevel::Trace => tracing::Level::TRACE,
    };
    let capture = match &raw.capture {
        None => None,
        Some(c) => {
            let sample = c.sample.unwrap_or(1.0);
            if !(sample > 0.0 && sample <= 1.0) {
                return fail(
                    "log.capture.sample",
                    format!("{sample} is not a share of connections: more than 0, at most 1"),
                );
            }
            let file = cx.base_dir.join(&c.file);
            let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                return fail(
                    "log.capture.file",
                    format!("no directory for {}", file.display()),
                );
            }
            Some(CaptureSettings {
                file,
                sample,
                mask_source: c.mask_source.unwrap_or(true),
            })
        }
    };
    Ok(LogSettings {
        level,
        format: raw.format,
        capture,
    })
}
