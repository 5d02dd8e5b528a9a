//! Test guest `wasi-probe`: a policy that tries to reach the outside world
//! through WASI and reports what worked. The runtime tests in
//! `host/policy/tests/` assert that nothing did: a policy gets no files, no
//! environment, no arguments and no sockets. See also `trap`, `spin`, `hog`.
//!
//! `decide` always rejects; the reason lists each probe as `name=ok` or
//! `name=denied`, e.g. `file=denied env=denied args=denied tcp=denied
//! dns=denied`.

// The generated bindings carry no docs, and their export glue is `unsafe`
// FFI (`export_name`, raw pointers); this crate adds no unsafe code of its own.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({ path: "../../../wit", world: "policy" });

use hearth::edge::types::{Alert, Rejection};

/// A file that exists on every Linux host.
const PROBE_FILE: &str = "/etc/hostname";
/// A variable that is set in nearly every host environment.
const PROBE_ENV: &str = "PATH";
/// A loopback address: even this must be refused.
const PROBE_TCP: &str = "127.0.0.1:443";
/// A name that resolves on any host with a resolver.
const PROBE_DNS: &str = "localhost:443";

struct Probe;

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "denied" }
}

impl Guest for Probe {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn decide(_hello: ClientHello) -> Decision {
        let file = std::fs::read(PROBE_FILE).is_ok() || std::fs::read_dir("/").is_ok();
        let env = std::env::var_os(PROBE_ENV).is_some() || std::env::vars_os().next().is_some();
        let args = std::env::args_os().next().is_some();
        let tcp = std::net::TcpStream::connect(PROBE_TCP).is_ok();
        let dns = std::net::ToSocketAddrs::to_socket_addrs(PROBE_DNS).is_ok();
        let reason = format!(
            "file={} env={} args={} tcp={} dns={}",
            verdict(file),
            verdict(env),
            verdict(args),
            verdict(tcp),
            verdict(dns)
        );
        Decision::Reject(Rejection {
            reason,
            alert: Alert::Close,
        })
    }
}

export!(Probe);
