//! Test guest `spin`: a policy that never returns from `decide` when the
//! server name is `spin.test` (the runtime must interrupt it at `max_time`),
//! and that sleeps for an hour for `sleep.test` (the runtime must refuse to
//! block); any other hello is passed through to backend `ok`. With the config
//! key `init_spin_ms`, `init` busy-waits that long (for `init_timeout`). Used by the runtime
//! tests in `host/policy/tests/`; see also `trap`, `hog`, `wasi-probe`.

// The generated bindings carry no docs, and their export glue is `unsafe`
// FFI (`export_name`, raw pointers); this crate adds no unsafe code of its own.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({ path: "../../../wit", world: "policy" });

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
            let mut n: u64 = 0;
            loop {
                // `black_box` keeps the optimiser from proving the loop empty.
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Decision::Passthrough(Route {
            backend: "ok".to_string(),
            proxy_protocol: ProxyProtocol::BackendDefault,
        })
    }
}

export!(Spin);
