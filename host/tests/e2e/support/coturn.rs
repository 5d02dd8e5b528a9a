//! coturn (`turnserver`, Debian package `coturn`) as the TURN-over-TLS
//! backend the edge passes `turn.<domain>` through to. It presents its own
//! certificate (`tests/peers/certs/turn.crt`) and accepts one long-term user;
//! for TURN on the apex it listens on plain TCP instead, optionally behind a
//! PROXY protocol header.
//!
//! The TURN client that talks to it is `turn.rs`.

use std::net::SocketAddr;
use std::process::Command;

use super::process::{PORT_ATTEMPTS, Peer, TempDir, free_port, require_binary};
use super::{DOMAIN, cert_path};

/// The long-term credential coturn accepts (RFC 5389 §10.2).
pub const TURN_USER: &str = "alice";
/// Its password.
pub const TURN_PASSWORD: &str = "correct horse battery staple";
/// The realm coturn announces in its 401 challenge.
pub const TURN_REALM: &str = DOMAIN;

/// A running coturn listening for TLS on loopback; stopped on drop.
pub struct Coturn {
    /// The process (its log is `peer.logs`).
    pub peer: Peer,
    /// Where it accepts TURN over TLS.
    pub addr: SocketAddr,
    _dir: TempDir,
}

/// Which listener the tests talk to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// TURN over TLS with coturn's own certificate.
    Tls,
    /// Plain TCP (`listening-port`): what the edge relays STUN to after
    /// terminating TLS itself.
    PlainTcp,
    /// Plain TCP expecting a PROXY protocol header first
    /// (`tcp-proxy-port`), so coturn sees the client's address.
    ProxyTcp,
}

impl Coturn {
    /// Starts coturn with TURN over TLS only (no plain TCP, UDP or DTLS
    /// listeners), relay addresses on 127.0.0.1, no CLI, log to stdout.
    pub fn start() -> Coturn {
        Coturn::start_with(Listener::Tls)
    }

    /// Starts coturn answering on `listener` (no UDP or DTLS).
    pub fn start_with(listener: Listener) -> Coturn {
        let turnserver = require_binary("turnserver", "coturn");
        let dir = TempDir::new("coturn");
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let tls_port = free_port();
            let plain_port = free_port();
            let proxy_port = free_port();
            let mut command = Command::new(&turnserver);
            command
                .args(["-n", "--no-cli", "--simple-log", "--log-file", "stdout"])
                .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
                .args(["--tls-listening-port", &tls_port.to_string()])
                .args(["--listening-port", &plain_port.to_string()])
                .args(["--no-udp", "--no-dtls"])
                .arg("--cert")
                .arg(cert_path("turn.crt"))
                .arg("--pkey")
                .arg(cert_path("turn.key"))
                .args(["--lt-cred-mech", "--realm", TURN_REALM])
                .args(["--user", &format!("{TURN_USER}:{TURN_PASSWORD}")])
                .arg("--pidfile")
                .arg(dir.join("turnserver.pid"))
                .arg("--userdb")
                .arg(dir.join("turndb"));
            let port = match listener {
                Listener::Tls => {
                    command.arg("--no-tcp");
                    tls_port
                }
                Listener::PlainTcp => {
                    command.arg("--no-tls");
                    plain_port
                }
                Listener::ProxyTcp => {
                    command
                        .arg("--no-tls")
                        .args(["--tcp-proxy-port", &proxy_port.to_string()]);
                    proxy_port
                }
            };
            let mut peer = Peer::spawn("coturn", command);
            match peer.wait_listening(port) {
                Ok(()) => {
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    return Coturn {
                        peer,
                        addr,
                        _dir: dir,
                    };
                }
                Err(error) => last_error = error,
            }
        }
        panic!("coturn did not start: {last_error}");
    }
}
