//! Test guest `trap`: a policy that panics on demand, for the runtime tests in
//! `host/policy/tests/`. Its neighbours `spin`, `hog` and `wasi-probe` misbehave
//! in other ways.
//!
//! - `decide` panics with the message [`PANIC_MESSAGE`] when the server name
//!   is `trap.test`; any other hello is passed through to backend `ok`.
//! - `init` refuses a config with `refuse=yes`, with the message
//!   [`REFUSAL_MESSAGE`], and logs one line at info level otherwise.
//! - The server name `log.test` makes `decide` log one line before deciding;
//!   `flood.test` makes it log [`FLOOD_LINES`] lines.

// The generated bindings carry no docs, and their export glue is `unsafe`
// FFI (`export_name`, raw pointers); this crate adds no unsafe code of its own.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({ path: "../../../wit", world: "policy" });

use hearth::edge::host::log;
use hearth::edge::types::{Level, ProxyProtocol, Route};

/// What `decide` panics with for `trap.test`.
pub const PANIC_MESSAGE: &str = "trap guest asked to panic";
/// How many lines `decide` logs for `flood.test`.
pub const FLOOD_LINES: u32 = 1000;
/// What `init` refuses a `refuse=yes` config with.
pub const REFUSAL_MESSAGE: &str = "trap guest refuses this config";

struct Trap;

impl Guest for Trap {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        if config.iter().any(|(k, v)| k == "refuse" && v == "yes") {
            return Err(REFUSAL_MESSAGE.to_string());
        }
        log(Level::Info, "trap guest initialised");
        Ok(())
    }

    fn decide(hello: ClientHello) -> Decision {
        match hello.server_name.as_deref() {
            Some("trap.test") => panic!("{PANIC_MESSAGE}"),
            Some("log.test") => log(Level::Warn, "decide called for log.test"),
            Some("flood.test") => {
                for i in 0..FLOOD_LINES {
                    log(Level::Debug, &format!("flood line {i}"));
                }
            }
            _ => {}
        }
        Decision::Passthrough(Route {
            backend: "ok".to_string(),
            proxy_protocol: ProxyProtocol::BackendDefault,
        })
    }
}

export!(Trap);
