//! Child processes for the e2e suite: finding peer binaries (with the apt
//! package to install when missing), free loopback ports, waiting until a
//! child has a socket in LISTEN, capturing output line by line, and running
//! command-line clients (curl, openssl) under a deadline.
//!
//! The peers themselves are configured in `coturn.rs`, `nginx.rs`, `edge.rs`.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::poll_until;

/// How long a peer may take from spawn to listening. coturn and nginx start
/// in milliseconds; the edge compiles its policy first.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a peer is restarted on a new port when the picked port was
/// taken between picking and binding (tests run in parallel).
pub const PORT_ATTEMPTS: usize = 4;

/// Finds `binary` on PATH (and in the sbin directories, where Debian puts
/// daemons), or panics naming the Debian package that provides it.
pub fn require_binary(binary: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(binary);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{binary}` not found: install it with `apt-get install {package}`");
}

/// A loopback port that was free a moment ago (bound to :0 and released).
/// Peers that cannot report their own port are retried on conflict.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// An address on loopback where nothing listens: a port that was just free.
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

// === impl Logs ===

/// Lines a child printed (stdout and stderr interleaved), shared with the
/// threads that read them, with a condvar to wait for a line.
#[derive(Clone, Default)]
pub struct Logs {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Logs {
    /// Reads `pipe` line by line on a thread until EOF, appending each line
    /// with ANSI colour codes stripped.
    pub fn capture(&self, pipe: impl Read + Send + 'static) {
        let logs = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let (lines, changed) = &*logs.inner;
                lines.lock().unwrap().push(strip_ansi(&line));
                changed.notify_all();
            }
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().clone()
    }

    /// How many lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.inner
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `n` lines containing every string in `needles` exist, and
    /// returns them; `None` after `timeout`.
    pub fn wait_for_n(&self, needles: &[&str], n: usize, timeout: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.inner;
        let mut guard = lines.lock().unwrap();
        loop {
            let found: Vec<String> = guard
                .iter()
                .filter(|l| needles.iter().all(|needle| l.contains(needle)))
                .cloned()
                .collect();
            if found.len() >= n {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Waits for one line containing every string in `needles`.
    pub fn wait_for(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        self.wait_for_n(needles, 1, timeout)
            .map(|mut lines| lines.remove(0))
    }

    /// The whole log, for failure messages.
    pub fn dump(&self) -> String {
        self.lines().join("\n")
    }
}

/// Removes `ESC [ ... letter` sequences (colours) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `key=value` in a structured log line (quotes removed).
pub fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("{key}=");
    let start = line
        .match_indices(&pattern)
        .find(|(i, _)| *i == 0 || line.as_bytes()[i - 1] == b' ' || line.as_bytes()[i - 1] == b'{')?
        .0
        + pattern.len();
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.split('"').next();
    }
    rest.split([' ', ',', '}']).next()
}

// === impl Peer ===

/// A running child process, killed (and reaped) when dropped.
pub struct Peer {
    /// What it is, for messages ("coturn", "nginx", "edge").
    pub name: &'static str,
    child: Child,
    /// Its stdout and stderr.
    pub logs: Logs,
}

impl Peer {
    /// Spawns `command` with stdout and stderr captured into [`Peer::logs`].
    pub fn spawn(name: &'static str, mut command: Command) -> Peer {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let logs = Logs::default();
        logs.capture(child.stdout.take().expect("stdout piped"));
        logs.capture(child.stderr.take().expect("stderr piped"));
        Peer { name, child, logs }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits until this process holds a socket listening on 127.0.0.1:`port`
    /// (read from /proc, so nothing connects to it). Returns `Err` with the
    /// child's output if it exited first or the deadline passed.
    pub fn wait_listening(&mut self, port: u16) -> Result<(), String> {
        let pid = self.pid();
        let mut exited = None;
        let ready = poll_until(START_TIMEOUT, || {
            if let Some(status) = self.exited() {
                exited = Some(status);
                return Some(false);
            }
            listening_inode(pid, port).then_some(true)
        });
        match (ready, exited) {
            (Some(true), _) => Ok(()),
            (_, Some(status)) => Err(format!(
                "{} exited ({status}) before listening on {port}:\n{}",
                self.name,
                self.logs.dump()
            )),
            _ => Err(format!(
                "{} not listening on {port} after {START_TIMEOUT:?}:\n{}",
                self.name,
                self.logs.dump()
            )),
        }
    }

    /// The process's resident set size (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/pid/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS in /proc/pid/status")
    }

    /// How many file descriptors the process has open.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/pid/fd")
            .count()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` has an fd on a TCP socket in LISTEN on 127.0.0.1:`port`
/// (in `pid`'s network namespace, which may be a test's own).
fn listening_inode(pid: u32, port: u16) -> bool {
    const TCP_LISTEN: &str = "0A";
    let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return false;
    };
    let wanted = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            (cols.len() > 9 && cols[1] == wanted && cols[3] == TCP_LISTEN)
                .then(|| format!("socket:[{}]", cols[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|inode| Path::new(inode) == target))
            .unwrap_or(false)
    })
}

// === running clients ===

/// What a command-line client did.
pub struct ToolOutput {
    /// Exit status (killed ones report a signal).
    pub status: ExitStatus,
    /// Its stdout, lossily decoded.
    pub stdout: String,
    /// Its stderr, lossily decoded.
    pub stderr: String,
}

/// Runs `command` with `stdin` as its input, killing it after `timeout`
/// (then panicking: a client that hangs is a failure, not a skip).
pub fn run_tool(mut command: Command, stdin: &[u8], timeout: Duration) -> ToolOutput {
    use std::io::Write;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = format!("{:?}", command.get_program());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let mut input = child.stdin.take().expect("stdin piped");
    let _ = input.write_all(stdin);
    drop(input);
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));
    let status = poll_until(timeout, || child.try_wait().expect("try_wait"));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{program} did not finish within {timeout:?}");
    };
    ToolOutput {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

// === impl TempDir ===

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `/tmp/hearth-e2e-<pid>-<n>-<label>`.
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("hearth-e2e-{}-{n}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
