//! `hearth-wasm-edge dev [--config dev.yaml]`: the policy author's loop. The
//! crate is the config file's directory. `dev` builds it for
//! `wasm32-wasip2`, runs the config's `policy.cases`, starts the edge on
//! the config with the built component, then on every saved change builds,
//! runs the cases and reloads, one line per step. A failed build or case
//! keeps the running policy. The development backends (`echo`, `sink`,
//! `cli/dev_backends.rs`) stand in for real services.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use hearth_edge_policy::Runtime;
use tokio::sync::{mpsc, oneshot};

use super::dev_backends::{self, say};
use super::{policy_cmds, serve};
use crate::config::Config;

/// How often the crate's files are looked at.
const POLL: Duration = Duration::from_millis(250);

/// Arguments of `dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The development config (as written by `new`); the crate to build is
    /// the directory that holds it.
    #[arg(long, value_name = "FILE", default_value = "dev.yaml")]
    pub config: PathBuf,
    /// Where the `echo` backend listens, or `off`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    pub echo: String,
    /// Where the `sink` backend listens, or `off`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3001")]
    pub sink: String,
}

/// Runs the loop until Ctrl-C.
pub fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let config = std::fs::canonicalize(&args.config)
        .with_context(|| format!("{}: no such config", args.config.display()))?;
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    anyhow::ensure!(
        dir.join("Cargo.toml").is_file(),
        "{}: no Cargo.toml beside the config (dev builds the crate that holds it; `hearth-wasm-edge new DIR` makes one)",
        dir.display()
    );
    dev_backends::start(
        backend_addr(&args.echo, "echo")?,
        backend_addr(&args.sink, "sink")?,
    )?;
    let crate_ = Crate {
        policy: built_policy(&config)?,
        dir,
        config,
        runtime: serve::policy_runtime()?,
    };
    let mut files = Files::new(&crate_.dir);
    // The edge needs a policy that builds and passes its cases.
    while !crate_.build_and_test() {
        say(
            "wait",
            "fix the error and save; the edge starts once the policy builds and passes",
        );
        files.wait_change();
    }
    let (config, policy) = (crate_.config.clone(), crate_.policy.clone());
    let (requests, received) = mpsc::channel(1);
    let watcher = move || {
        loop {
            let changed = files.wait_change();
            say("change", &changed);
            if !crate_.build_and_test() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            if requests.blocking_send(reply).is_err() {
                return;
            }
            match answer.blocking_recv() {
                Ok(Ok(policy)) => say("reload", &format!("ok, serving {policy}")),
                Ok(Err(error)) => say(
                    "reload",
                    &format!("refused, the running policy stays: {error}"),
                ),
                Err(_) => return,
            }
        }
    };
    std::thread::Builder::new()
        .name("dev-watch".into())
        .spawn(watcher)?;
    serve::run_dev(config, policy, received)
}

/// `ADDR` or `off`.
fn backend_addr(text: &str, what: &str) -> anyhow::Result<Option<SocketAddr>> {
    if text == "off" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("--{what} {text:?}: expected ADDR:PORT or off"))
}

/// With `CARGO_TARGET_DIR` set, cargo writes the component there rather
/// than where the config's `policy.path` (`target/...`) says: the policy
/// is then taken from there.
fn built_policy(config: &Path) -> anyhow::Result<Option<PathBuf>> {
    let Some(target) = std::env::var_os("CARGO_TARGET_DIR") else {
        return Ok(None);
    };
    let loaded = Config::load(config, None)?;
    let file = loaded
        .policy
        .path
        .file_name()
        .with_context(|| format!("{}: policy.path names no file", config.display()))?
        .to_owned();
    Ok(Some(
        PathBuf::from(target)
            .join("wasm32-wasip2/release")
            .join(file),
    ))
}

/// The crate being developed.
struct Crate {
    dir: PathBuf,
    config: PathBuf,
    /// The built component when not at the config's `policy.path`.
    policy: Option<PathBuf>,
    runtime: Runtime,
}

impl Crate {
    /// Builds, then runs the cases; prints one line per step. True when
    /// the new component may go live.
    fn build_and_test(&self) -> bool {
        let start = Instant::now();
        let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&self.dir)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--message-format",
                "short",
            ])
            .output();
        let output = match output {
            Ok(output) => output,
            Err(error) => {
                say("build", &format!("cannot run cargo: {error}"));
                return false;
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            say(
                "build",
                &format!("failed, the running policy stays: {}", first_error(&stderr)),
            );
            return false;
        }
        say(
            "build",
            &format!("ok in {:.1} s", start.elapsed().as_secs_f64()),
        );
        self.cases()
    }

    /// Runs `policy.cases` the way a reload will.
    fn cases(&self) -> bool {
        let report = Config::load(&self.config, self.policy.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|config| {
                policy_cmds::config_cases_report(&config, &self.config, &self.runtime)
            });
        match report {
            Ok(None) => {
                say(
                    "cases",
                    "none (set policy.cases in the config to run a case file)",
                );
                true
            }
            Ok(Some(report)) if report.failures.is_empty() => {
                say("cases", &report.summary());
                true
            }
            Ok(Some(report)) => {
                say(
                    "cases",
                    &format!(
                        "{}, the running policy stays; first: {}",
                        report.summary(),
                        report.failures[0]
                    ),
                );
                false
            }
            Err(error) => {
                say(
                    "cases",
                    &format!("cannot run, the running policy stays: {error:#}"),
                );
                false
            }
        }
    }
}

/// The compiler's first error, on one line.
fn first_error(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("error:") || l.contains("error["))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("cargo failed")
        .trim()
        .to_owned()
}

/// The crate's sources as last seen: what a change is.
struct Files {
    dir: PathBuf,
    seen: Vec<(PathBuf, serve::FileStamp)>,
}

impl Files {
    fn new(dir: &Path) -> Files {
        let mut files = Files {
            dir: dir.to_owned(),
            seen: Vec::new(),
        };
        files.seen = files.stamp();
        files
    }

    /// `src/` and `Cargo.toml`, `build.rs` and the YAML files (config and
    /// cases) at the top; not `Cargo.lock` or `target/`, which builds write.
    fn stamp(&self) -> Vec<(PathBuf, serve::FileStamp)> {
        let mut paths = Vec::new();
        collect(&self.dir.join("src"), &mut paths);
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name == "Cargo.toml"
                    || name == "build.rs"
                    || name.ends_with(".yaml")
                    || name.ends_with(".yml")
                {
                    paths.push(path);
                }
            }
        }
        paths.sort();
        let stamps = serve::fingerprint(&paths);
        paths.into_iter().zip(stamps).collect()
    }

    /// Blocks until a file changes and has stayed the same for one poll
    /// (editors write in steps); names the first changed file.
    fn wait_change(&mut self) -> String {
        loop {
            std::thread::sleep(POLL);
            let now = self.stamp();
            if now == self.seen {
                continue;
            }
            let mut settled = now;
            loop {
                std::thread::sleep(POLL);
                let again = self.stamp();
                if again == settled {
                    break;
                }
                settled = again;
            }
            let changed = settled
                .iter()
                .find(|s| !self.seen.contains(s))
                .or_else(|| self.seen.iter().find(|s| !settled.contains(s)))
                .map(|(p, _)| p.strip_prefix(&self.dir).unwrap_or(p).display().to_string())
                .unwrap_or_default();
            self.seen = settled;
            return changed;
        }
    }
}

/// Every file below `dir`.
fn collect(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, into);
        } else {
            into.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_compiler_error_is_picked() {
        let stderr = "   Compiling p v0.1.0 (/x)\nwarning: unused variable\nsrc/lib.rs:12:5: error[E0308]: mismatched types\nerror: could not compile `p`\n";
        assert_eq!(
            first_error(stderr),
            "src/lib.rs:12:5: error[E0308]: mismatched types"
        );
        assert_eq!(first_error("something else\n\n"), "something else");
    }

    #[test]
    fn backend_addresses() {
        assert_eq!(backend_addr("off", "echo").unwrap(), None);
        assert!(backend_addr("127.0.0.1:3000", "echo").unwrap().is_some());
        assert!(backend_addr("localhost", "echo").is_err());
    }
}
