//! nginx (Debian package `nginx`) as the plain-HTTP backends behind the
//! edge's terminated names: a `pocketbase` server and a `livekit` server that
//! identify themselves in the body, the latter proxying `/rtc` WebSocket
//! upgrades to the echo server (`ws_echo.py`) like LiveKit signaling would.
//!
//! Each server writes its own access log, so a test can count the requests
//! that reached it.

use std::net::SocketAddr;
use std::process::Command;

use super::process::{PORT_ATTEMPTS, Peer, TempDir, free_port, require_binary};

/// The body the `pocketbase` server answers every request with.
pub const POCKETBASE_BODY: &str = "pocketbase\n";
/// The body the `livekit` server answers outside `/rtc`.
pub const LIVEKIT_BODY: &str = "livekit\n";

/// A running nginx with the two backends; stopped on drop.
pub struct Nginx {
    /// The master process.
    pub peer: Peer,
    /// The `pocketbase` server.
    pub pocketbase: SocketAddr,
    /// The `livekit` server (`/rtc` → WebSocket echo).
    pub livekit: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx in the foreground with a generated config under a temp
    /// prefix. `ws_echo` is where `/rtc` on the livekit server is proxied.
    pub fn start(ws_echo: SocketAddr) -> Nginx {
        let nginx = require_binary("nginx", "nginx");
        let dir = TempDir::new("nginx");
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let (pb_port, lk_port) = (free_port(), free_port());
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config(&dir, pb_port, lk_port, ws_echo)).expect("write conf");
            let mut command = Command::new(&nginx);
            command.arg("-p").arg(dir.path()).arg("-c").arg(&conf);
            command.args(["-e", "stderr", "-g", "daemon off;"]);
            let mut peer = Peer::spawn("nginx", command);
            match peer
                .wait_listening(pb_port)
                .and_then(|()| peer.wait_listening(lk_port))
            {
                Ok(()) => {
                    return Nginx {
                        peer,
                        pocketbase: SocketAddr::from(([127, 0, 0, 1], pb_port)),
                        livekit: SocketAddr::from(([127, 0, 0, 1], lk_port)),
                        dir,
                    };
                }
                Err(error) => last_error = error,
            }
        }
        panic!("nginx did not start: {last_error}");
    }

    /// Requests logged so far by `server` (`"pocketbase"` or `"livekit"`).
    pub fn requests(&self, server: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(&format!("{server}.access.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The start of a test's nginx.conf: one process (killing it, the test's
/// `Peer` drop, leaves no orphaned workers), everything it writes under
/// `dir`, and the `http` block opened for the caller's servers.
pub fn conf_head(dir: &TempDir) -> String {
    let d = dir.path().display();
    format!(
        r#"master_process off;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type text/plain;
"#
    )
}

/// The generated nginx.conf: everything nginx writes stays under `dir`.
fn config(dir: &TempDir, pb_port: u16, lk_port: u16, ws_echo: SocketAddr) -> String {
    let d = dir.path().display();
    format!(
        r#"{head}    server {{
        listen 127.0.0.1:{pb_port};
        access_log {d}/pocketbase.access.log;
        location / {{ return 200 "{pb}"; }}
    }}
    server {{
        listen 127.0.0.1:{lk_port};
        access_log {d}/livekit.access.log;
        location / {{ return 200 "{lk}"; }}
        location /rtc {{
            proxy_pass http://{ws_echo};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 30s;
        }}
    }}
}}
"#,
        head = conf_head(dir),
        pb = POCKETBASE_BODY.escape_default(),
        lk = LIVEKIT_BODY.escape_default(),
    )
}

// === the WebSocket echo server ===

/// The system interpreter `python3-websockets` is installed for.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// `tests/peers/ws_echo.py` (Debian packages `python3`, `python3-websockets`):
/// echoes every message back; binds port 0 and prints the port it got.
pub struct WsEcho {
    /// The python process.
    pub peer: Peer,
    /// Where it accepts WebSocket connections.
    pub addr: SocketAddr,
}

impl WsEcho {
    /// Starts the echo server and waits for the port line it prints.
    pub fn start() -> WsEcho {
        // Debian's interpreter, where `python3-websockets` installs (a PATH
        // python from a version manager would not see it).
        let python = std::path::Path::new(DEBIAN_PYTHON);
        if !python.is_file() {
            panic!(
                "{DEBIAN_PYTHON} not found: install it with `apt-get install python3 python3-websockets`"
            );
        }
        let script = super::repo_root().join("tests/peers/ws_echo.py");
        let mut command = Command::new(python);
        command.arg("-u").arg(script);
        let mut peer = Peer::spawn("ws_echo", command);
        let line = peer
            .logs
            .wait_for(&["listening on 127.0.0.1:"], super::process::START_TIMEOUT);
        let Some(line) = line else {
            panic!(
                "ws_echo.py did not start (install `python3-websockets`?):\n{}",
                peer.logs.dump()
            );
        };
        let port: u16 = line
            .rsplit(':')
            .next()
            .unwrap()
            .trim()
            .parse()
            .expect("port");
        peer.wait_listening(port).expect("ws_echo listening");
        WsEcho {
            peer,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}
