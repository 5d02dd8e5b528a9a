//! `hearth-wasm-edge [--config FILE] [--policy FILE]` and `check`: load the
//! config (or the embedded local profile), the policy and the certificates,
//! then serve until Ctrl-C / SIGTERM.
//!
//! The data path itself is `proxy.rs`; config loading is `config.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use hearth_edge_policy::{Policy, Runtime, RuntimeOptions};
use tracing::info;

use crate::config::Config;
use crate::proxy::Edge;
use crate::tls::local_ca::{self, LocalCa};
use crate::tls::{CertSource, CertStore};

/// The shipped default policy, relative to the current directory.
const DEFAULT_POLICY_PATH: &str = "policies/hearth.wasm";
/// The same policy, built into the binary (empty if it was not built).
const EMBEDDED_POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embedded-hearth.wasm"));
/// Where the embedded policy is written so the runtime can load it by path.
const EMBEDDED_POLICY_FILE: &str = "hearth.wasm";

/// Runs the edge until it is told to stop.
pub fn run(config: Option<PathBuf>, policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load_config(config.as_deref(), policy)?);
    crate::logging::init(&config.log);
    let policy = load_policy(&config)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    tokio.block_on(serve(config, policy))?;
    Ok(ExitCode::SUCCESS)
}

/// Validates a config, loads and inits its policy, and reports.
pub fn check(config: Option<PathBuf>, policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = load_config(config.as_deref(), policy)?;
    load_policy(&config)?;
    println!("configuration ok");
    Ok(ExitCode::SUCCESS)
}

/// The config file, or the embedded profile with the default policy.
fn load_config(config: Option<&Path>, policy: Option<PathBuf>) -> anyhow::Result<Config> {
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
    let dir = local_ca::default_dir()
        .context("no data directory (set XDG_DATA_HOME or HOME), pass --policy FILE")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(EMBEDDED_POLICY_FILE);
    if std::fs::read(&path).ok().as_deref() != Some(EMBEDDED_POLICY) {
        std::fs::write(&path, EMBEDDED_POLICY)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// Compiles (or loads from cache) and inits the policy.
fn load_policy(config: &Config) -> anyhow::Result<Policy> {
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: RuntimeOptions::default_cache_dir(),
        ..RuntimeOptions::default()
    })?;
    let settings = &config.policy;
    Ok(Policy::load(
        &runtime,
        &settings.path,
        settings.config.clone(),
        settings.limits,
    )?)
}

/// Certificates from files, then the local CA's leaf (files win on a shared
/// name).
fn cert_store(config: &Config) -> anyhow::Result<(Arc<CertStore>, Option<LocalCa>)> {
    let mut entries = Vec::new();
    for loaded in &config.tls.certificates {
        entries.extend(
            loaded
                .names
                .iter()
                .map(|name| (name.clone(), loaded.key.clone())),
        );
    }
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
    let store = Arc::new(CertStore::new());
    store.replace(entries);
    Ok((store, local))
}

async fn serve(config: Arc<Config>, policy: Policy) -> anyhow::Result<()> {
    let (store, local_ca) = cert_store(&config)?;
    let names = store.names();
    let policy_name = policy.name().to_owned();
    let edge = Edge::bind(
        config.clone(),
        Arc::new(policy),
        store as Arc<dyn CertSource>,
    )?;
    let addrs = edge.local_addrs();
    info!(
        listen = ?addrs,
        policy = %policy_name,
        certificates = ?names,
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
    edge.run(shutdown_signal()).await;
    info!("edge stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(error = %error, "cannot watch SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down");
}
