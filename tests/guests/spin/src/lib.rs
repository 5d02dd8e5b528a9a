//! Test guest `spin`: a policy that never returns from `decide` when the
//! server name is `spin.test` (the runtime must interrupt it at `max_time`),
//! and that sleeps for an hour for `sleep.test` (the runtime must refuse to
//! block); any other hello is passed through to backend `ok`. With the config
//! key `init_spin_ms`, `init` busy-waits that long (for `init_timeout`).
//!
//! It targets the `http-policy` world and misbehaves in `on-request` too,
//! by the request's host: `spin.test` never returns, `bad-status.test`
//! answers status 99, `bad-redirect.test` redirects with status 200,
//! `bad-header.test` sets a header named `bad name`, `no-backend.test`
//! forwards to a backend no config has; any other request follows the
//! routes. Used by the runtime tests in `host/policy/tests/` and the HTTP
//! mode's end-to-end tests; see also `trap`, `hog`, `wasi-probe`.

// The generated bindings carry no docs, and their export glue is `unsafe`
// FFI (`export_name`, raw pointers); this crate adds no unsafe code of its own.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({ path: "../../../wit", world: "http-policy" });

use hearth::edge::http_types::{Forward, LocalResponse, Redirect};
use hearth::edge::types::{ProxyProtocol, Route};

struct Spin;

impl Guest for Spin {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let spin_ms = config
            .iter()
            .find(|(k, _)| k == "init_spin_ms")
            .map(|(_, v)| v.parse::<u64>().map_err(|e| format!("init_spin_ms: {e}")))
            .transpose()?;
        if let Some(ms) = spin_ms {
            let start = hearth::edge::host::now_ms();
            while hearth::edge::host::now_ms().saturating_sub(start) < ms {
                std::hint::black_box(());
            }
        }
        Ok(())
    }

    fn decide(hello: ClientHello) -> Decision {
        if hello.server_name.as_deref() == Some("sleep.test") {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        if hello.server_name.as_deref() == Some("spin.test") {
            spin();
        }
        Decision::Passthrough(Route {
            backend: "ok".to_string(),
            proxy_protocol: ProxyProtocol::BackendDefault,
        })
    }

    fn on_request(request: HttpRequest) -> HttpDecision {
        match request.host.as_str() {
            "spin.test" => spin(),
            "bad-status.test" => HttpDecision::Respond(LocalResponse {
                status: 99,
                headers: Vec::new(),
                body: String::new(),
            }),
            "bad-redirect.test" => HttpDecision::Redirect(Redirect {
                status: 200,
                location: "https://spin.test/".to_string(),
            }),
            "bad-header.test" => HttpDecision::Respond(LocalResponse {
                status: 200,
                headers: vec![("bad name".to_string(), "x".to_string())],
                body: String::new(),
            }),
            "no-backend.test" => HttpDecision::Forward(Forward {
                backend: "no-such-backend".to_string(),
                set_headers: Vec::new(),
            }),
            _ => HttpDecision::FollowRoutes,
        }
    }
}

/// Never returns.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        // `black_box` keeps the optimiser from proving the loop empty.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

export!(Spin);
