//! Test support shared by every e2e module: the peers (coturn, nginx, the
//! WebSocket echo server, an in-process recording backend), the edge process,
//! and the clients the tests drive (rustls, TURN, WebSocket, curl, openssl).
//!
//! Every child process is killed when its handle drops; every wait is bounded
//! by a deadline and polls a real condition (a socket in LISTEN, a log line).

#![allow(dead_code)] // each test module uses a different subset

pub mod coturn;
pub mod edge;
pub mod hello;
pub mod http_echo;
pub mod nginx;
pub mod pebble;
pub mod process;
pub mod recorder;
pub mod tls;
pub mod turn;
pub mod websocket;

use std::path::PathBuf;
use std::time::Duration;

/// The `domain` the Hearth policy is configured with in every test.
pub const DOMAIN: &str = "hearth.test";
/// Passed through to the `turn` backend by the Hearth policy.
pub const TURN_NAME: &str = "turn.hearth.test";
/// Terminated by the edge and forwarded to `livekit`.
pub const LK_NAME: &str = "lk.hearth.test";
/// Terminated by the edge and forwarded to `pocketbase` (the apex).
pub const APEX_NAME: &str = "hearth.test";

/// How long any single network step of a test may take before it fails.
/// Generous: the machine has two cores and the suite runs tests in parallel.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The repository root (the workspace), from the host crate's manifest dir.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A file under `tests/peers/certs/` (see `tests/peers/gen-certs.sh`).
pub fn cert_path(name: &str) -> PathBuf {
    repo_root().join("tests/peers/certs").join(name)
}

/// The committed Hearth policy component.
pub fn hearth_policy() -> PathBuf {
    repo_root().join("policies/hearth.wasm")
}

/// Polls `probe` every few milliseconds until it returns `Some` or `timeout`
/// passes. The wait is for a condition, never a fixed sleep.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    const POLL_INTERVAL: Duration = Duration::from_millis(10);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
