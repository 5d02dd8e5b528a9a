//! Active health checks of a pool's members: a TCP connect, or an HTTP/1.1
//! `GET <http_path>` that must answer 2xx, each within `timeout`. One failed
//! check marks a member down, one passed check brings it back. Run by the
//! pool's maintenance task (`upstream.rs`).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Member, Pool};
use crate::config::HealthCheck;

/// The most of a health check answer read: its status line fits.
const STATUS_LINE_MAX: usize = 1024;

/// Checks every member of `pool` at once and records the verdicts.
pub async fn check_all(pool: &Pool, check: &HealthCheck) {
    let members = pool.members();
    let mut checks = tokio::task::JoinSet::new();
    for member in members.iter().cloned() {
        let path = check.http_path.clone();
        let timeout = check.timeout;
        checks.spawn(async move {
            let ok = tokio::time::timeout(timeout, probe(&member, path.as_deref()))
                .await
                .unwrap_or(false);
            (member, ok)
        });
    }
    while let Some(result) = checks.join_next().await {
        if let Ok((member, ok)) = result {
            pool.set_healthy(&member, ok);
        }
    }
}

/// One check: connect, and when `path` is given, `GET` it.
async fn probe(member: &Member, path: Option<&str>) -> bool {
    let Ok(mut stream) = TcpStream::connect(member.addr).await else {
        return false;
    };
    let Some(path) = path else { return true };
    let host = if member.host.contains(':') {
        format!("[{}]:{}", member.host, member.addr.port())
    } else {
        format!("{}:{}", member.host, member.addr.port())
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hearth-wasm-edge health check\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < STATUS_LINE_MAX {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    status_is_success(&head)
}

/// `HTTP/1.x 2xx ...` at the start of `head`.
fn status_is_success(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    version.starts_with(b"HTTP/1.") && code.len() == 3 && code[0] == b'2'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2xx_status_lines_pass() {
        assert!(status_is_success(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_is_success(b"HTTP/1.0 204 No Content\r\n"));
        assert!(!status_is_success(b"HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!status_is_success(b"HTTP/1.1 301 Moved\r\n"));
        assert!(!status_is_success(b"SSH-2.0-OpenSSH\r\n"));
        assert!(!status_is_success(b""));
    }
}
