//! `tests/peers/http_echo.py` (Debian's `python3`, standard library only):
//! an HTTP/1.1 backend that echoes each request's method, path, headers and
//! body size, streams `/sse` events, and answers `/auth` forward-auth
//! checks; and curl runs against the edge's HTTP mode with any options.

use std::net::SocketAddr;
use std::process::Command;

use super::process::{Peer, START_TIMEOUT, require_binary};
use super::repo_root;

/// A running `http_echo.py`; killed on drop.
pub struct HttpEcho {
    /// The python process; its access log lines are in `peer.logs`.
    pub peer: Peer,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The name it starts every answer with.
    pub name: &'static str,
}

impl HttpEcho {
    /// Starts an instance answering as `name` and waits for its port line.
    pub fn start(name: &'static str) -> HttpEcho {
        HttpEcho::spawn(name, None, None)
    }

    /// Starts an instance that answers every request with `status`.
    pub fn failing(name: &'static str, status: u16) -> HttpEcho {
        HttpEcho::spawn(name, Some(status), None)
    }

    /// Starts an instance that closes keep-alive connections idle for
    /// `seconds`.
    pub fn with_idle_timeout(name: &'static str, seconds: u32) -> HttpEcho {
        HttpEcho::spawn(name, None, Some(seconds))
    }

    fn spawn(name: &'static str, status: Option<u16>, idle_timeout: Option<u32>) -> HttpEcho {
        let python = require_binary("python3", "python3");
        let mut command = Command::new(python);
        command
            .arg("-u")
            .arg(repo_root().join("tests/peers/http_echo.py"))
            .arg(name);
        if let Some(status) = status {
            command.arg(status.to_string());
        }
        if let Some(seconds) = idle_timeout {
            command.env("HTTP_ECHO_IDLE_TIMEOUT", seconds.to_string());
        }
        let mut peer = Peer::spawn("http_echo", command);
        let line = peer
            .logs
            .wait_for(&["listening on 127.0.0.1:"], START_TIMEOUT)
            .unwrap_or_else(|| panic!("http_echo.py did not start:\n{}", peer.logs.dump()));
        let port: u16 = line
            .rsplit(':')
            .next()
            .unwrap()
            .trim()
            .parse()
            .expect("port");
        peer.wait_listening(port).expect("http_echo listening");
        HttpEcho {
            peer,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            name,
        }
    }

    /// Requests it has logged for `path` (exact path match).
    pub fn hits(&self, path: &str) -> usize {
        self.peer
            .logs
            .lines()
            .iter()
            .filter(|l| l.starts_with(self.name) && l.contains(&format!(" {path} HTTP/")))
            .count()
    }
}

/// The value of header `name` (lowercase) in an echo answer.
pub fn echoed_header<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}
