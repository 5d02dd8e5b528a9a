//! Host-side bindings generated from `wit/edge.wit`, once per world.
//!
//! `http-policy` includes `policy`, so its bindings carry every type and the
//! `host` import; the `policy` world's bindings reuse those modules (`with`)
//! so both worlds share one set of Rust types. A component is linked as an
//! `http-policy` when it exports `on-request`, else as a `policy`
//! (`policy.rs`). Components built against `0.1.0` import
//! `hearth:edge/host@0.1.0`, which wasmtime's linker resolves to the `0.1.1`
//! definitions (semver-compatible names).

#![allow(missing_docs)]

/// The `http-policy` world: `init`, `decide` and `on-request`.
pub mod http {
    wasmtime::component::bindgen!({
        // The WIT package lives at the workspace root, shared with the guest SDK.
        path: "../../wit",
        world: "http-policy",
        // Decisions are compared in the harness and in tests.
        additional_derives: [PartialEq, Eq],
    });
}

/// The `policy` world: `init` and `decide`.
pub mod plain {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "policy",
        // One set of types and one `host` trait for both worlds.
        with: {
            "hearth:edge/types": super::http::hearth::edge::types,
            "hearth:edge/host": super::http::hearth::edge::host,
        },
    });
}

pub use http::hearth;
