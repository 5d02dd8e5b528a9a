//! Where the wasm files this crate's tests, benches and neighbours need are
//! expected: the runtime test guests of `tests/guests/` (built into
//! `target/wasm32-wasip2/policy/`) and the shipped policies in `policies/`.
//! `policies/build.sh` builds them all; `build.rs` supplies the directories.

use std::path::{Path, PathBuf};

/// Directory of the built test guests.
pub const GUEST_DIR: &str = env!("HEARTH_GUEST_DIR");
/// The workspace's `policies/` directory (shipped `.wasm` and case files).
pub const POLICIES_DIR: &str = env!("HEARTH_POLICIES_DIR");

/// Panics in `decide` for `trap.test`; refuses `init` with `refuse=yes`.
pub const TRAP: &str = "guest_trap.wasm";
/// Loops forever in `decide` (and `on-request`) for `spin.test`; an
/// `http-policy` whose `on-request` also returns invalid answers.
pub const SPIN: &str = "guest_spin.wasm";
/// Allocates without bound in `decide` for `hog.test`.
pub const HOG: &str = "guest_hog.wasm";
/// Reports which WASI capabilities worked in its reject reason.
pub const WASI_PROBE: &str = "guest_wasi_probe.wasm";
/// A `wasi:http/proxy` handler that echoes, fetches, traps, spins and
/// hogs memory by path (`tests/guests/http-probe`).
pub const HTTP_PROBE: &str = "guest_http_probe.wasm";
/// `handlers/py-hello`, a handler written in Python (componentize-py);
/// built by `handlers/py-hello/build.sh`, not by cargo.
pub const PY_HELLO: &str = "py_hello.wasm";
/// `policies/py-allow-list`, a routing policy written in Python
/// (componentize-py); built by `policies/py-allow-list/build.sh`.
pub const PY_ALLOW_LIST: &str = "py_allow_list.wasm";

/// The path of test guest `file` (one of the consts above). Panics with the
/// command to run when it has not been built.
pub fn guest(file: &str) -> PathBuf {
    let path = Path::new(GUEST_DIR).join(file);
    assert!(
        path.is_file(),
        "{} is missing: run policies/build.sh first (or `cargo build --profile policy \
         --target wasm32-wasip2 -p guest-trap -p guest-spin -p guest-hog -p guest-wasi-probe \
         -p guest-http-probe`)",
        path.display()
    );
    path
}

/// The path of shipped policy `file` (e.g. `hearth.wasm`) if it exists.
pub fn shipped_policy(file: &str) -> Option<PathBuf> {
    let path = Path::new(POLICIES_DIR).join(file);
    path.is_file().then_some(path)
}
