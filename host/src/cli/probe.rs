//! `hearth-wasm-edge probe [--admin ADDR] [PATH]`: asks a running edge's
//! admin listener (`admin.rs`) for `PATH` (default `/readyz`) and exits 0 on
//! `200`, 1 otherwise. For container health checks, where images carry no
//! curl (`deploy/Dockerfile`, `deploy/docker-compose.yaml`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// The embedded profile's admin address, the default target.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9180";
/// Connect, send and read must each finish within this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The status line is all that is read.
const MAX_STATUS_LINE: u64 = 256;

/// Probes `path` on `admin`.
pub fn probe(admin: SocketAddr, path: &str) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(path.starts_with('/'), "the path must start with /: {path}");
    let mut stream = TcpStream::connect_timeout(&admin, PROBE_TIMEOUT)
        .with_context(|| format!("connecting to {admin}"))?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("writing to {admin}"))?;
    let mut head = String::new();
    let _ = stream.take(MAX_STATUS_LINE).read_to_string(&mut head);
    let status = head.lines().next().unwrap_or_default();
    let ok = status.split(' ').nth(1) == Some("200");
    println!(
        "{path}: {}",
        if status.is_empty() {
            "no answer"
        } else {
            status
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
