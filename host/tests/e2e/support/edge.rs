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
#[derive(Clone)]
pub struct EdgeBuilder {
    policy: PathBuf,
    policy_config: BTreeMap<String, String>,
    policy_lines: BTreeMap<String, String>,
    backends: BTreeMap<String, String>,
    limits: BTreeMap<String, String>,
    log_level: &'static str,
    admin: bool,
    extra_yaml: String,
    log_format: &'static str,
    /// `log.capture` as a YAML flow mapping.
    log_capture: Option<String>,
    env: Vec<(String, String)>,
    /// Replaces the default `tls:` section (the edge's test certificate).
    tls_yaml: Option<String>,
    /// `RLIMIT_AS` of the edge process, in bytes (`ulimit -v`).
    address_space: Option<u64>,
}

/// A running edge; killed on drop.
pub struct Edge {
    /// The process; `peer.logs` holds its log lines.
    pub peer: Peer,
    /// Its listener.
    pub addr: SocketAddr,
    /// Its admin listener, when the builder asked for one.
    pub admin_addr: Option<SocketAddr>,
    /// The config file it was started with.
    pub config_path: PathBuf,
    _dir: TempDir,
}

/// Sets `RLIMIT_AS` to `bytes` in the child before it runs.
fn limit_address_space(command: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: between fork and exec the closure only calls setrlimit, which
    // is async-signal-safe, on a struct it owns.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

// === impl EdgeBuilder ===

impl EdgeBuilder {
    /// The Hearth policy with `domain: hearth.test`, every backend dead,
    /// the edge's test certificate, default limits.
    pub fn hearth() -> EdgeBuilder {
        let mut builder =
            EdgeBuilder::with_policy(&hearth_policy()).policy_config("domain", DOMAIN);
        for name in HEARTH_BACKENDS {
            builder = builder.backend(name, dead_addr());
        }
        builder
    }

    /// The policy component at `path` with an empty `policy.config`, no
    /// backends, the edge's test certificate, default limits.
    pub fn with_policy(path: &Path) -> EdgeBuilder {
        EdgeBuilder {
            policy: path.to_path_buf(),
            policy_config: BTreeMap::new(),
            policy_lines: BTreeMap::new(),
            backends: BTreeMap::new(),
            limits: BTreeMap::new(),
            log_level: "info",
            admin: false,
            extra_yaml: String::new(),
            log_format: "text",
            log_capture: None,
            env: Vec::new(),
            tls_yaml: None,
            address_space: None,
        }
    }

    /// Runs the edge with at most `bytes` of address space (`RLIMIT_AS`,
    /// what `ulimit -v` and systemd's `LimitAS=` set).
    pub fn address_space_limit(mut self, bytes: u64) -> EdgeBuilder {
        self.address_space = Some(bytes);
        self
    }

    /// Sets a `policy:` key other than `path` and `config` (e.g. `on_error`,
    /// `limits`) to a YAML value.
    pub fn policy_yaml(mut self, key: &str, yaml: &str) -> EdgeBuilder {
        self.policy_lines.insert(key.to_owned(), yaml.to_owned());
        self
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

    /// Removes backend `name` (e.g. to give its name to an HTTP route set).
    pub fn without_backend(mut self, name: &str) -> EdgeBuilder {
        self.backends.remove(name);
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

    /// Sets `log.capture` (a YAML flow mapping such as `{ file: x.yaml }`).
    pub fn log_capture(mut self, yaml: &str) -> EdgeBuilder {
        self.log_capture = Some(yaml.to_owned());
        self
    }

    /// Sets a `policy.config` entry.
    pub fn policy_config(mut self, key: &str, value: &str) -> EdgeBuilder {
        self.policy_config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Removes a `policy.config` entry (e.g. when swapping policies).
    pub fn without_policy_config(mut self, key: &str) -> EdgeBuilder {
        self.policy_config.remove(key);
        self
    }

    /// Logs JSON lines instead of text.
    pub fn json_logs(mut self) -> EdgeBuilder {
        self.log_format = "json";
        self
    }

    /// Sets an environment variable of the edge process (e.g. `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> EdgeBuilder {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Serves the admin endpoints on a free loopback port.
    pub fn admin(mut self) -> EdgeBuilder {
        self.admin = true;
        self
    }

    /// Replaces the policy component.
    pub fn policy(mut self, path: PathBuf) -> EdgeBuilder {
        self.policy = path;
        self
    }

    /// Appends top-level YAML (e.g. a `shadow:` section) to the config.
    pub fn yaml(mut self, text: &str) -> EdgeBuilder {
        self.extra_yaml += text;
        self
    }

    /// Replaces the `tls:` section (the whole section, `tls:` line included).
    pub fn tls_yaml(mut self, yaml: &str) -> EdgeBuilder {
        self.tls_yaml = Some(yaml.to_owned());
        self
    }

    /// The config YAML for an edge listening on `listen` (and `admin`).
    pub fn config_yaml(&self, listen: SocketAddr, admin: Option<SocketAddr>) -> String {
        self.config_yaml_with_http(listen, admin, None)
    }

    /// [`EdgeBuilder::config_yaml`], with plain HTTP on `http` when given.
    pub fn config_yaml_with_http(
        &self,
        listen: SocketAddr,
        admin: Option<SocketAddr>,
        http: Option<SocketAddr>,
    ) -> String {
        let quote = |p: &Path| format!("\"{}\"", p.display());
        let mut yaml = format!("listen: \"{listen}\"\n");
        if let Some(admin) = admin {
            yaml += &format!("admin_listen: \"{admin}\"\n");
        }
        if let Some(http) = http {
            yaml += &format!("http_listen: \"{http}\"\n");
        }
        let empty = if self.policy_config.is_empty() {
            " {}"
        } else {
            ""
        };
        yaml += &format!(
            "policy:\n  path: {}\n  config:{empty}\n",
            quote(&self.policy)
        );
        for (key, value) in &self.policy_config {
            yaml += &format!("    {key}: \"{value}\"\n");
        }
        for (key, value) in &self.policy_lines {
            yaml += &format!("  {key}: {value}\n");
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
        match &self.tls_yaml {
            Some(tls) => yaml += tls,
            None => {
                yaml += &format!(
                    "tls:\n  certificates:\n    - {{ cert: {}, key: {} }}\n",
                    quote(&cert_path("edge.crt")),
                    quote(&cert_path("edge.key")),
                )
            }
        }
        let capture = self
            .log_capture
            .as_ref()
            .map(|c| format!(", capture: {c}"))
            .unwrap_or_default();
        yaml += &format!(
            "log: {{ level: {}, format: {}{capture} }}\n",
            self.log_level, self.log_format
        );
        yaml += &self.extra_yaml;
        yaml
    }

    /// Writes the config and runs the edge until its listener is up.
    /// Retries on a new port if the picked one was taken meanwhile.
    pub fn start(self) -> Edge {
        let dir = TempDir::new("edge");
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let admin = self
                .admin
                .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
            let config_path = dir.join("edge.yaml");
            std::fs::write(&config_path, self.config_yaml(addr, admin)).expect("write edge config");
            let mut command = Command::new(EDGE_BIN);
            command.arg("--config").arg(&config_path);
            command.env("NO_COLOR", "1").env_remove("RUST_LOG");
            command.envs(self.env.iter().map(|(k, v)| (k, v)));
            if let Some(bytes) = self.address_space {
                limit_address_space(&mut command, bytes);
            }
            let mut peer = Peer::spawn("edge", command);
            let listening = peer.wait_listening(addr.port()).and_then(|()| match admin {
                Some(admin) => peer.wait_listening(admin.port()),
                None => Ok(()),
            });
            match listening {
                Ok(()) => {
                    return Edge {
                        peer,
                        addr,
                        admin_addr: admin,
                        config_path,
                        _dir: dir,
                    };
                }
                Err(error) if error.to_lowercase().contains("in use") => last_error = error,
                Err(error) => panic!("{error}\n--- config:\n{}", self.config_yaml(addr, admin)),
            }
        }
        panic!("edge did not start: {last_error}");
    }

    /// Writes the config and runs the edge on exactly `listen` and `http`
    /// (ports another peer was told about), until both listeners are up.
    pub fn start_on(&self, listen: SocketAddr, http: Option<SocketAddr>) -> Edge {
        let dir = TempDir::new("edge");
        let config_path = dir.join("edge.yaml");
        let yaml = self.config_yaml_with_http(listen, None, http);
        std::fs::write(&config_path, &yaml).expect("write edge config");
        let mut command = Command::new(EDGE_BIN);
        command.arg("--config").arg(&config_path);
        command.env("NO_COLOR", "1").env_remove("RUST_LOG");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut peer = Peer::spawn("edge", command);
        let ready = peer
            .wait_listening(listen.port())
            .and_then(|()| match http {
                Some(http) => peer.wait_listening(http.port()),
                None => Ok(()),
            });
        if let Err(error) = ready {
            panic!("{error}\n--- config:\n{yaml}");
        }
        Edge {
            peer,
            addr: listen,
            admin_addr: None,
            config_path,
            _dir: dir,
        }
    }
}

// === impl Edge ===

impl Edge {
    /// Rewrites the config file from `builder`, keeping this edge's
    /// addresses (for reload tests).
    pub fn rewrite_config(&self, builder: &EdgeBuilder) {
        let yaml = builder.config_yaml(self.addr, self.admin_addr);
        self.write_config(&yaml);
    }

    /// Replaces the config file with `yaml` as is.
    pub fn write_config(&self, yaml: &str) {
        // Write then rename, as an operator's tooling would: the edge never
        // reads half a file.
        let tmp = self.config_path.with_extension("yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, &self.config_path).expect("rename config");
    }

    /// Sends `signal` (`HUP`, `TERM`, `INT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.peer.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// `GET http://<admin><path>` with curl: the status code and the body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let admin = self.admin_addr.expect("edge started with .admin()");
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"]);
        command.arg(format!("http://{admin}{path}"));
        let out = super::process::run_tool(command, b"", Duration::from_secs(15));
        assert!(out.status.success(), "curl {path}: {}", out.stderr);
        let (body, code) = out
            .stdout
            .rsplit_once('\n')
            .expect("curl wrote the status code");
        (code.parse().expect("status code"), body.to_owned())
    }

    /// The value of the sample `name` (with its labels, exactly as
    /// rendered, e.g. `hearth_edge_rejects_total{reason="x"}`) in a fresh
    /// scrape of `/metrics`; `None` when absent.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (status, body) = self.admin_get("/metrics");
        assert_eq!(status, 200, "{body}");
        metric_value(&body, name)
    }

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

/// The value of sample `name` (labels included) in a metrics text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}
