//! Tells the crate where the wasm test guests and the shipped policies are
//! built (`HEARTH_GUEST_DIR`, `HEARTH_POLICIES_DIR`), for `src/guests.rs`.
//! It does not build them: building wasm from here would wait forever on the
//! cargo lock held by this very build. `policies/build.sh` builds them.

use std::path::PathBuf;

/// `OUT_DIR` is `<target>/<profile>/build/<pkg>-<hash>/out`.
const OUT_DIR_DEPTH_BELOW_TARGET: usize = 4;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.join("../..");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let target = out
        .ancestors()
        .nth(OUT_DIR_DEPTH_BELOW_TARGET)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let guests = target.join("wasm32-wasip2").join("policy");
    println!("cargo:rustc-env=HEARTH_GUEST_DIR={}", guests.display());
    println!(
        "cargo:rustc-env=HEARTH_POLICIES_DIR={}",
        workspace.join("policies").display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
