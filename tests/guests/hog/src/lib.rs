//! Test guest `hog`: a policy that allocates without bound in `decide` when
//! the server name is `hog.test` (the runtime must stop it at `max_memory`);
//! any other hello is passed through to backend `ok`. Used by the runtime
//! tests in `host/policy/tests/`; see also `trap`, `spin`, `wasi-probe`.

// The generated bindings carry no docs, and their export glue is `unsafe`
// FFI (`export_name`, raw pointers); this crate adds no unsafe code of its own.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({ path: "../../../wit", world: "policy" });

use hearth::edge::types::{ProxyProtocol, Route};

/// Bytes added per step: large enough to reach any limit quickly.
const CHUNK_BYTES: usize = 64 * 1024;

struct Hog;

impl Guest for Hog {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn decide(hello: ClientHello) -> Decision {
        if hello.server_name.as_deref() == Some("hog.test") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; CHUNK_BYTES]);
                std::hint::black_box(&hoard);
            }
        }
        Decision::Passthrough(Route {
            backend: "ok".to_string(),
            proxy_protocol: ProxyProtocol::BackendDefault,
        })
    }
}

export!(Hog);
