//! `hearth-wasm-edge [--config FILE] [--policy FILE]` and `check`: load the
//! config (or the embedded local profile), the policy (and shadow) and the
//! certificates, then serve: SIGHUP reloads all of them, SIGTERM / Ctrl-C
//! drains and stops. The admin listener is `admin.rs`.
//!
//! The data path itself is `proxy.rs`; config loading is `config.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hearth_edge_policy::handler::HandlerRuntime;
use hearth_edge_policy::{Policy, Runtime, RuntimeOptions};
use rustls::sign::CertifiedKey;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::admin::{self, AdminState, Health};
use crate::config::Config;
use crate::http::Handlers;
use crate::metrics::Metrics;
use crate::proxy::{Decide, Edge, Reloader};
use crate::sync::lock;
use crate::tls::acme::Acme;
use crate::tls::local_ca::LocalCa;
use crate::tls::reload::FileCerts;
use crate::tls::{CertSource, CertStore, Challenges, Layered};

/// The shipped default policy, relative to the current directory.
const DEFAULT_POLICY_PATH: &str = "policies/hearth.wasm";
/// The same policy, built into the binary (empty if it was not built).
const EMBEDDED_POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embedded-hearth.wasm"));
/// Where the embedded policy is written so the runtime can load it by path.
const EMBEDDED_POLICY_FILE: &str = "hearth.wasm";

/// Runs the edge until it is told to stop.
pub fn run(config: Option<PathBuf>, policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let source = ConfigSource {
        path: config,
        policy,
    };
    run_source(source, None)
}

/// Reload requests from `dev` (`cli/dev.rs`): each is answered with the
/// reload's result, the policy's name or the reason it was refused.
pub(super) type ReloadRequests = mpsc::Receiver<oneshot::Sender<Result<String, String>>>;

/// Runs the edge on `config`, reloading when `dev` asks (instead of on
/// `reload.watch_interval`); SIGHUP still reloads.
pub(super) fn run_dev(
    config: PathBuf,
    policy: Option<PathBuf>,
    requests: ReloadRequests,
) -> anyhow::Result<ExitCode> {
    let source = ConfigSource {
        path: Some(config),
        policy,
    };
    run_source(source, Some(requests))
}

fn run_source(source: ConfigSource, requests: Option<ReloadRequests>) -> anyhow::Result<ExitCode> {
    let config = Arc::new(source.load()?);
    crate::logging::init(&config.log);
    let runtime = policy_runtime()?;
    let metrics = Arc::new(Metrics::default());
    let policies = load_policies(&config, source.name(), &runtime, &metrics)?;
    // Connections run on the worker threads (`workers`, `proxy/workers.rs`);
    // this runtime keeps reloads, signals, the admin listener, ACME and
    // health checks (and the connections too with `workers: 1`). Like the
    // workers' runtimes it is single-threaded: on this thread, tasks cost
    // less to wake and poll than on a multi-thread scheduler with one worker
    // (benches/RESULTS.md, "Per connection: the gap is user time").
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    tokio.block_on(serve(source, config, runtime, policies, metrics, requests))?;
    Ok(ExitCode::SUCCESS)
}

/// Validates a config, loads and inits its policy (and shadow), loads its
/// handlers, and reports.
pub fn check(config: Option<PathBuf>, policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let source = ConfigSource {
        path: config,
        policy,
    };
    let config = source.load()?;
    load_policies(
        &config,
        source.name(),
        &policy_runtime()?,
        &Arc::new(Metrics::default()),
    )?;
    println!("configuration ok");
    Ok(ExitCode::SUCCESS)
}

/// Where the config comes from, kept to read it again on reload.
#[derive(Debug, Clone)]
struct ConfigSource {
    path: Option<PathBuf>,
    policy: Option<PathBuf>,
}

impl ConfigSource {
    fn load(&self) -> anyhow::Result<Config> {
        load_config(self.path.as_deref(), self.policy.clone())
    }

    /// The config file, for messages.
    fn name(&self) -> &Path {
        self.path
            .as_deref()
            .unwrap_or(Path::new("the embedded profile"))
    }
}

/// The live policy and the optional shadow, loaded and initialised, and
/// the handler components.
struct Policies {
    live: Policy,
    shadow: Option<Policy>,
    handlers: Handlers,
}

/// The config file, or the embedded profile with the default policy.
pub(super) fn load_config(
    config: Option<&Path>,
    policy: Option<PathBuf>,
) -> anyhow::Result<Config> {
    Ok(match config {
        Some(path) => Config::load(path, policy.as_deref())?,
        None => {
            let policy = match policy {
                Some(path) => path,
                None => default_policy()?,
            };
            Config::embedded(&policy)?
        }
    })
}

/// `policies/hearth.wasm` when run from a checkout, else the embedded copy
/// written to the data directory.
fn default_policy() -> anyhow::Result<PathBuf> {
    let local = PathBuf::from(DEFAULT_POLICY_PATH);
    if local.is_file() {
        return Ok(local);
    }
    anyhow::ensure!(
        !EMBEDDED_POLICY.is_empty(),
        "no {DEFAULT_POLICY_PATH} here and none built in: pass --policy FILE"
    );
    let dir = crate::config::default_data_dir()
        .context("no data directory (set XDG_DATA_HOME or HOME), pass --policy FILE")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(EMBEDDED_POLICY_FILE);
    if std::fs::read(&path).ok().as_deref() != Some(EMBEDDED_POLICY) {
        std::fs::write(&path, EMBEDDED_POLICY)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// The wasm runtime, shared by every policy loaded in this process.
pub(super) fn policy_runtime() -> anyhow::Result<Runtime> {
    Ok(Runtime::new(RuntimeOptions {
        cache_dir: RuntimeOptions::default_cache_dir(),
        ..RuntimeOptions::default()
    })?)
}

/// The engine handlers run on, started when a config first names one.
pub(super) fn handler_runtime() -> anyhow::Result<&'static HandlerRuntime> {
    static RUNTIME: OnceLock<HandlerRuntime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = HandlerRuntime::new(RuntimeOptions::default_cache_dir())?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// Compiles (or loads from cache) every handler of `config`; the first
/// that fails is named with its file, line and field.
fn load_handlers(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Handlers> {
    let mut handlers = Handlers::new();
    if config.handlers.is_empty() {
        return Ok(handlers);
    }
    let runtime = handler_runtime()?;
    for handler in config.handlers.values() {
        let loaded = runtime
            .load(&handler.name, &handler.settings, metrics.clone())
            .map_err(|e| anyhow::anyhow!("{}: {}", handler.component_at, e.message))?;
        handlers.insert(handler.name.clone(), Arc::new(loaded));
    }
    Ok(handlers)
}

/// Compiles (or loads from cache) and inits the policy and the shadow, and
/// loads the handlers.
fn load_policies(
    config: &Config,
    config_file: &Path,
    runtime: &Runtime,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Policies> {
    let settings = &config.policy;
    let live = Policy::load(
        runtime,
        &settings.path,
        settings.config.clone(),
        settings.limits,
    )?;
    super::config_cases(config, config_file, runtime)?;
    let shadow = match &config.shadow {
        None => None,
        Some(s) => Some(
            Policy::load(runtime, &s.path, s.config.clone(), s.limits).context("shadow policy")?,
        ),
    };
    let handlers = load_handlers(config, metrics)?;
    Ok(Policies {
        live,
        shadow,
        handlers,
    })
}

/// A certificate for one name.
type CertEntry = (String, Arc<CertifiedKey>);

/// The local CA's leaf for its names (certificate files, watched by
/// `tls/reload.rs`, win on a shared name).
fn local_entries(config: &Config) -> anyhow::Result<(Vec<CertEntry>, Option<LocalCa>)> {
    let mut entries = Vec::new();
    let mut local = None;
    if let Some(settings) = &config.tls.local_ca {
        let ca = LocalCa::load_or_create(&settings.dir)?;
        let leaf = ca.issue(&settings.names)?;
        entries.extend(
            settings
                .names
                .iter()
                .map(|name| (name.clone(), leaf.clone())),
        );
        local = Some(ca);
    }
    Ok((entries, local))
}

async fn serve(
    source: ConfigSource,
    config: Arc<Config>,
    runtime: Runtime,
    policies: Policies,
    metrics: Arc<Metrics>,
    requests: Option<ReloadRequests>,
) -> anyhow::Result<()> {
    let (entries, local_ca) = local_entries(&config)?;
    let store = Arc::new(CertStore::new());
    let files = Arc::new(FileCerts::new(
        store.clone(),
        config.tls.certificates.clone(),
        entries,
        metrics.clone(),
    ));
    tokio::spawn(files.clone().watch());
    let names = store.names();
    // ACME certificates first: a name is either ACME's or a file's
    // (validation refuses both).
    let mut stores = vec![store.clone()];
    let mut acme = None;
    if let Some(settings) = &config.tls.acme {
        let manager = Arc::new(Acme::new(settings, &config.tls.export, metrics.clone())?);
        stores.insert(0, manager.certificates());
        acme = Some(manager);
    }
    let challenges = acme.clone().map(|a| a as Arc<dyn Challenges>);
    let certs: Arc<dyn CertSource> = Arc::new(Layered(
        stores
            .iter()
            .map(|s| s.clone() as Arc<dyn CertSource>)
            .collect(),
    ));
    let policy_name = policies.live.name().to_owned();
    let shadow_name = policies.shadow.as_ref().map(|p| p.name().to_owned());
    let edge = Edge::bind_full(
        config.clone(),
        Arc::new(policies.live),
        policies.shadow.map(|p| Arc::new(p) as Arc<dyn Decide>),
        Arc::new(policies.handlers),
        certs.clone(),
        challenges,
        metrics.clone(),
    )?;
    // Validations can be answered from now on.
    if let Some(acme) = &acme {
        acme.run();
    }
    metrics.loaded(unix_now());
    let health = Arc::new(Health::default());
    let (stop_admin, admin_stopped) = watch::channel(false);
    let admin_addr = match config.admin_listen {
        None => None,
        Some(addr) => {
            let listener = crate::proxy::bind_listener(addr)
                .with_context(|| format!("cannot listen on {addr} (admin_listen)"))?;
            let local = listener.local_addr()?;
            let state = Arc::new(AdminState {
                health: health.clone(),
                metrics: metrics.clone(),
                certs: stores,
                start_time: unix_now(),
            });
            tokio::spawn(admin::serve(listener, state, admin_stopped));
            Some(local)
        }
    };
    let addrs = edge.local_addrs();
    info!(
        listen = ?addrs,
        admin = ?admin_addr,
        plain_listen = ?edge.plain_addrs(),
        http_listen = ?edge.http_addr(),
        policy = %policy_name,
        shadow = %shadow_name.as_deref().unwrap_or("-"),
        certificates = ?names,
        acme_names = ?config.tls.acme.as_ref().map(|a| &a.names),
        "edge started"
    );
    if let (Some(ca), Some(settings)) = (&local_ca, &config.tls.local_ca) {
        let port = addrs.first().map_or(0, |a| a.port());
        let host = settings.names.first().map_or("localhost", String::as_str);
        println!(
            "try it: curl --cacert {} https://{host}:{port}/",
            ca.cert_path().display()
        );
    }
    health.set_ready();
    let watched = Mutex::new(fingerprint(&watched_files(&source, &config)));
    let reload = Reload {
        source,
        started: config,
        runtime,
        reloader: edge.reloader(),
        files,
        certs,
        metrics,
        watched,
    };
    let drained = edge
        .run_until(signals(reload, health, requests), second_signal())
        .await;
    let _ = stop_admin.send(true);
    info!(closed_at_drain_timeout = drained.closed, "edge stopped");
    Ok(())
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a reload needs.
struct Reload {
    source: ConfigSource,
    /// The config at start: listeners and limits that a reload cannot move.
    started: Arc<Config>,
    runtime: Runtime,
    reloader: Reloader,
    /// Certificate files and the local CA's leaf.
    files: Arc<FileCerts>,
    /// Every certificate source (ACME's does not change on reload).
    certs: Arc<dyn CertSource>,
    metrics: Arc<Metrics>,
    /// The watched files as of the last load or reload attempt.
    watched: Mutex<Vec<FileStamp>>,
}

/// What identifies a file's version without reading it: device, inode,
/// size and modification time (a Kubernetes secret or config map update
/// swaps a symlink, which changes the inode the path resolves to).
pub(super) type FileStamp = Option<(u64, u64, u64, i64, i64)>;

/// The files whose change triggers a reload when `reload.watch_interval`
/// is set: the config file, the policy and shadow, the certificates.
fn watched_files(source: &ConfigSource, config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = source.path.iter().cloned().collect();
    files.push(config.policy.path.clone());
    files.extend(config.shadow.iter().map(|s| s.path.clone()));
    files.extend(config.tls.certificates.iter().map(|c| c.cert_path.clone()));
    files.extend(
        config
            .handlers
            .values()
            .map(|h| h.settings.component.clone()),
    );
    files
}

pub(super) fn fingerprint(files: &[PathBuf]) -> Vec<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

impl Reload {
    /// Whether a watched file changed since the last reload attempt.
    fn files_changed(&self) -> bool {
        let now = fingerprint(&watched_files(&self.source, &self.reloader.config()));
        *lock(&self.watched) != now
    }

    /// Remembers the watched files as they are now, so a failed reload is
    /// retried on the next change, not on every tick.
    fn remember_files(&self) {
        let now = fingerprint(&watched_files(&self.source, &self.reloader.config()));
        *lock(&self.watched) = now;
    }

    /// Reads the config and policies again and swaps them in; on any error
    /// the running ones stay. Returns the policy's name, or why the reload
    /// was refused.
    async fn run(&self) -> Result<String, String> {
        info!("reloading");
        let source = self.source.clone();
        let runtime = self.runtime.clone();
        let metrics = self.metrics.clone();
        // Reading files, compiling and `init` happen on the blocking pool,
        // away from the threads that serve connections.
        let loaded = tokio::task::spawn_blocking(move || {
            let config = source.load()?;
            let policies = load_policies(&config, source.name(), &runtime, &metrics)?;
            let (entries, _) = local_entries(&config)?;
            anyhow::Ok((config, policies, entries))
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        let result =
            loaded.and_then(|(config, policies, entries)| self.swap(config, policies, entries));
        self.remember_files();
        match result {
            Ok(policy) => {
                self.metrics.reload(true, unix_now());
                Ok(policy)
            }
            Err(e) => {
                self.metrics.reload(false, unix_now());
                let error = format!("{e:#}");
                error!(error = %error, "reload failed; the running config and policy stay");
                Err(error)
            }
        }
    }

    fn swap(
        &self,
        config: Config,
        policies: Policies,
        entries: Vec<CertEntry>,
    ) -> anyhow::Result<String> {
        self.warn_fixed(&config);
        let policy = policies.live.name().to_owned();
        let shadow = policies.shadow.as_ref().map(|p| p.name().to_owned());
        let certificates = config.tls.certificates.clone();
        self.reloader.swap(
            Arc::new(config),
            Arc::new(policies.live),
            policies.shadow.map(|p| Arc::new(p) as Arc<dyn Decide>),
            Arc::new(policies.handlers),
            self.certs.clone(),
        )?;
        // New certificates for every generation: a name keeps one
        // certificate, the newest.
        self.files.set(certificates, entries);
        info!(
            policy = %policy,
            shadow = %shadow.as_deref().unwrap_or("-"),
            "reloaded"
        );
        Ok(policy)
    }

    /// Logs the changes a reload does not apply.
    fn warn_fixed(&self, next: &Config) {
        let started = &self.started;
        if next.listen != started.listen || next.admin_listen != started.admin_listen {
            warn!(
                "listen and admin_listen changes take effect at restart; keeping the bound addresses"
            );
        }
        if next.workers != started.workers {
            warn!("workers changes take effect at restart");
        }
        if next.limits.max_concurrent_conns != started.limits.max_concurrent_conns {
            warn!("limits.max_concurrent_conns changes take effect at restart");
        }
        if next.log.level != started.log.level || next.log.format != started.log.format {
            warn!("log settings change at restart");
        }
        if next.reload_watch_interval != started.reload_watch_interval {
            warn!("reload.watch_interval changes take effect at restart");
        }
        if next.http_listen != started.http_listen
            || next.tls.acme != started.tls.acme
            || next.tls.export != started.tls.export
        {
            warn!("http_listen, tls.names, tls.acme and tls.export changes take effect at restart");
        }
    }
}

/// SIGTERM or Ctrl-C again, during the drain: close what is left now.
async fn second_signal() {
    // Registered only now, so the signal that started the drain is not
    // seen again here.
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The tick of the (disabled) watch timer when nothing is watched.
const UNWATCHED_TICK: Duration = Duration::from_secs(24 * 60 * 60);

/// Reloads on SIGHUP, and on changed files with `reload.watch_interval` or
/// on each of `requests` when `dev` drives the edge, until SIGTERM or
/// Ctrl-C; then marks the edge not ready and returns, which starts the
/// drain.
async fn signals(reload: Reload, health: Arc<Health>, mut requests: Option<ReloadRequests>) {
    let (mut hup, mut term) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(hup), Ok(term)) => (hup, term),
        (Err(error), _) | (_, Err(error)) => {
            warn!(error = %error, "cannot watch SIGHUP/SIGTERM; Ctrl-C only, no reload");
            let _ = tokio::signal::ctrl_c().await;
            health.set_draining();
            return;
        }
    };
    let watch = reload
        .started
        .reload_watch_interval
        .filter(|_| requests.is_none());
    let mut tick = tokio::time::interval(watch.unwrap_or(UNWATCHED_TICK));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = reload.run().await;
            }
            Some(reply) = next_request(&mut requests) => {
                let _ = reply.send(reload.run().await);
            }
            _ = tick.tick(), if watch.is_some() => {
                if reload.files_changed() {
                    info!("watched files changed");
                    let _ = reload.run().await;
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    health.set_draining();
    info!("shutting down");
}

/// The next reload request, or never without a `dev` driving the edge.
async fn next_request(
    requests: &mut Option<ReloadRequests>,
) -> Option<oneshot::Sender<Result<String, String>>> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}
