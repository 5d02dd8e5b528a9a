//! Embeds the shipped default policy (`policies/hearth.wasm`) so the binary
//! runs its local profile from any directory. When the file is absent (a
//! partial checkout) an empty placeholder is embedded and the binary asks
//! for `--policy` instead.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let shipped = manifest.join("../policies/hearth.wasm");
    println!("cargo:rerun-if-changed={}", shipped.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("embedded-hearth.wasm");
    let bytes = std::fs::read(&shipped).unwrap_or_default();
    std::fs::write(&out, bytes).expect("write OUT_DIR/embedded-hearth.wasm");
}
