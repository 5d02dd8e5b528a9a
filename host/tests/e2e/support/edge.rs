//! The edge under test: writes a config YAML (see the team's config format)
//! into a temp dir, spawns `hearth-wasm-edge --config`, waits for its
//! listener, and captures its log lines for assertions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{Logs, PORT_ATTEMPTS, Peer, TempDir, dead_addr, free_port};
use super::{DOMAIN, cert_path, hearth_policy};

/// The binary cargo built for this test run.
pub const EDGE_BIN: &str = env!("CARGO_BIN_EXE_hearth-wasm-edge");

/// The backends the Hearth policy routes to; each defaults to a dead address.
const HEARTH_BACKENDS: [&str; 3] = ["turn", "livekit", "pocketbase"];

/// How an edge is configured; `start` runs it.
pub struct EdgeBuilder {
    policy: PathBuf,
    policy_config: BTreeMap<String, String>,
    backends: BTreeMap<String, String>,
    limits: BTreeMap<String, String>,
    log_level: &'static str,
}

/// A running edge; killed on drop.
pub struct Edge {
    /// The process; `peer.logs` holds its log lines.
    pub peer: Peer,
    /// Its listener.
    pub addr: SocketAddr,
    /// The config file it was started with.
    pub config_path: PathBuf,
    _dir: TempDir,
}

// === impl EdgeBuilder ===

impl EdgeBuilder {
    /// The Hearth policy with `domain: hearth.test`, every backend dead,
    /// the edge's test certificate, default limits.
    pub fn hearth() -> EdgeBuilder {
        let mut builder = EdgeBuilder {
            policy: hearth_policy(),
            policy_config: BTreeMap::from([("domain".to_owned(), DOMAIN.to_owned())]),
            backends: BTreeMap::new(),
            limits: BTreeMap::new(),
            log_level: "info",
        };
        for name in HEARTH_BACKENDS {
            builder = builder.backend(name, dead_addr());
        }
        builder
    }

    /// Points backend `name` at `addr` (no PROXY protocol, default ALPN).
    pub fn backend(self, name: &str, addr: SocketAddr) -> EdgeBuilder {
        self.backend_yaml(name, &format!("{{ addr: \"{addr}\" }}"))
    }

    /// Sets backend `name` to a YAML flow mapping, e.g. `{ addr: "…", proxy_protocol: v2 }`.
    pub fn backend_yaml(mut self, name: &str, yaml: &str) -> EdgeBuilder {
        self.backends.insert(name.to_owned(), yaml.to_owned());
        self
    }

    /// Sets `limits.<key>` (e.g. `client_hello_timeout`, `300ms`).
    pub fn limit(mut self, key: &str, value: &str) -> EdgeBuilder {
        self.limits.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets `log.level` (default `info`).
    pub fn log_level(mut self, level: &'static str) -> EdgeBuilder {
        self.log_level = level;
        self
    }

    /// Sets a `policy.config` entry.
    pub fn policy_config(mut self, key: &str, value: &str) -> EdgeBuilder {
        self.policy_config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The config YAML for an edge listening on `listen`.
    pub fn config_yaml(&self, listen: SocketAddr) -> String {
        let quote = |p: &Path| format!("\"{}\"", p.display());
        let mut yaml = format!(
            "listen: \"{listen}\"\npolicy:\n  path: {}\n  config:\n",
            quote(&self.policy)
        );
        for (key, value) in &self.policy_config {
            yaml += &format!("    {key}: \"{value}\"\n");
        }
        if !self.limits.is_empty() {
            yaml += "limits:\n";
            for (key, value) in &self.limits {
                yaml += &format!("  {key}: {value}\n");
            }
        }
        yaml += "backends:\n";
        for (name, value) in &self.backends {
            yaml += &format!("  {name}: {value}\n");
        }
        yaml += &format!(
            "tls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nlog: {{ level: {}, format: text }}\n",
            quote(&cert_path("edge.crt")),
            quote(&cert_path("edge.key")),
            self.log_level,
        );
        yaml
    }

    /// Writes the config and runs the edge until its listener is up.
    /// Retries on a new port if the picked one was taken meanwhile.
    pub fn start(self) -> Edge {
        let dir = TempDir::new("edge");
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config_path = dir.join("edge.yaml");
            std::fs::write(&config_path, self.config_yaml(addr)).expect("write edge config");
            let mut command = Command::new(EDGE_BIN);
            command.arg("--config").arg(&config_path);
            command.env("NO_COLOR", "1").env_remove("RUST_LOG");
            let mut peer = Peer::spawn("edge", command);
            match peer.wait_listening(addr.port()) {
                Ok(()) => {
                    return Edge {
                        peer,
                        addr,
                        config_path,
                        _dir: dir,
                    };
                }
                Err(error) if error.to_lowercase().contains("in use") => last_error = error,
                Err(error) => panic!("{error}\n--- config:\n{}", self.config_yaml(addr)),
            }
        }
        panic!("edge did not start: {last_error}");
    }
}

// === impl Edge ===

impl Edge {
    /// The edge's log lines.
    pub fn logs(&self) -> &Logs {
        &self.peer.logs
    }

    /// Waits for a log line containing all of `needles`, or panics with the
    /// whole log.
    pub fn expect_log(&self, needles: &[&str], timeout: Duration) -> String {
        self.logs().wait_for(needles, timeout).unwrap_or_else(|| {
            panic!(
                "no edge log line with {needles:?} within {timeout:?}; log:\n{}",
                self.logs().dump()
            )
        })
    }
}
