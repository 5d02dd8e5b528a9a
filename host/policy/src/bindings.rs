//! Host-side bindings generated from `wit/edge.wit`.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    // The WIT package lives at the workspace root, shared with the guest SDK.
    path: "../../wit",
    world: "policy",
});
