//! Generates the SDK's bindings (`guest-sdk/src/bindings/`) from
//! `guest-sdk/wit/edge.wit` ahead of time, so that a policy crate never
//! compiles wit-bindgen's code generator.
//!
//! `cargo run -p hearth-edge-sdk-bindgen` writes them; its test (part of the
//! test command) fails if the committed files differ from what the WIT
//! generates, or if the SDK's copy of the WIT differs from the edge's
//! (`wit/edge.wit`).

use std::path::{Path, PathBuf};

use wit_bindgen_core::wit_parser::Resolve;
use wit_bindgen_core::{Files, WorldGenerator};

/// One generated file: its world and the types that derive `Default`.
struct Target {
    world: &'static str,
    file: &'static str,
    default_types: &'static [&'static str],
}

const TARGETS: [Target; 2] = [
    Target {
        world: "policy",
        file: "policy.rs",
        // A hello with every field empty is the starting point of test hellos.
        default_types: &["hearth:edge/types@0.1.1/client-hello"],
    },
    Target {
        world: "http-policy",
        file: "http_policy.rs",
        // Requests start from an empty one in tests too.
        default_types: &[
            "hearth:edge/types@0.1.1/client-hello",
            "hearth:edge/http-types@0.1.1/http-request",
        ],
    },
];

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the SDK directory")
}

fn generate(wit: &Path, target: &Target) -> String {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(wit).expect("the WIT parses");
    let world = resolve
        .select_world(&[package], Some(target.world))
        .expect("the world exists");
    let opts = wit_bindgen_rust::Opts {
        format: true,
        // `export_policy!` is invoked from policy crates: the export macro
        // must be public and find the types in this crate.
        pub_export_macro: true,
        default_bindings_module: Some("hearth_edge_sdk::bindings".into()),
        // Lets policies and their tests compare and copy decisions and hellos.
        additional_derive_attributes: vec!["PartialEq".into(), "Eq".into(), "Clone".into()],
        additional_type_attributes: target
            .default_types
            .iter()
            .map(|t| (t.to_string(), "#[derive(Default)]".to_string()))
            .collect(),
        ..Default::default()
    };
    let mut files = Files::default();
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .expect("bindings generate");
    let (_, source) = files.iter().next().expect("one generated file");
    String::from_utf8(source.to_vec()).expect("generated source is UTF-8")
}

fn main() {
    let dir = sdk_dir();
    for target in &TARGETS {
        let path = dir.join("src/bindings").join(target.file);
        std::fs::write(&path, generate(&dir.join("wit"), target))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!("wrote {}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_bindings_match_the_wit() {
        let dir = sdk_dir();
        let stale: Vec<String> = TARGETS
            .iter()
            .filter(|target| {
                let path = dir.join("src/bindings").join(target.file);
                let committed = std::fs::read_to_string(&path).unwrap_or_default();
                committed != generate(&dir.join("wit"), target)
            })
            .map(|target| target.file.to_string())
            .collect();
        assert!(
            stale.is_empty(),
            "stale bindings {stale:?} in guest-sdk/src/bindings: run cargo run -p hearth-edge-sdk-bindgen"
        );
    }

    #[test]
    fn the_sdk_carries_the_edges_wit() {
        let edge =
            std::fs::read_to_string(sdk_dir().join("../wit/edge.wit")).expect("wit/edge.wit");
        let sdk = std::fs::read_to_string(sdk_dir().join("wit/edge.wit")).expect("the SDK's WIT");
        assert!(
            sdk == edge,
            "guest-sdk/wit/edge.wit differs from wit/edge.wit: copy it, then run cargo run -p hearth-edge-sdk-bindgen"
        );
    }
}
