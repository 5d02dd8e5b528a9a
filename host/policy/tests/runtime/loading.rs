//! Loading names the file and the cause, for every kind of bad policy.

use std::path::Path;

use hearth_edge_policy::guests::{TRAP, guest};
use hearth_edge_policy::{Limits, LoadError, Policy};

use super::support::{ScratchDir, runtime};

fn load_bytes(name: &str, bytes: &[u8]) -> (LoadError, std::path::PathBuf) {
    let dir = ScratchDir::new("load");
    let path = dir.0.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = Policy::load(&runtime(), &path, vec![], Limits::default()).unwrap_err();
    (err, path)
}

fn assert_invalid(err: &LoadError, path: &Path, needle: &str) {
    assert!(matches!(err, LoadError::Invalid { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "file not named: {text}"
    );
    assert!(text.contains(needle), "expected {needle:?} in: {text}");
}

#[test]
fn init_refusal_carries_the_policy_message() {
    let path = guest(TRAP);
    let config = vec![("refuse".to_string(), "yes".to_string())];
    let err = Policy::load(&runtime(), &path, config, Limits::default()).unwrap_err();
    match &err {
        LoadError::InitRefused { path: p, message } => {
            assert_eq!(p, &path);
            assert_eq!(message, "trap guest refuses this config");
        }
        other => panic!("expected InitRefused, got {other:?}"),
    }
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let err = Policy::load(
        &runtime(),
        Path::new("/nonexistent/p.wasm"),
        vec![],
        Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/p.wasm"), "{err}");
}

#[test]
fn garbage_bytes_are_refused() {
    let (err, path) = load_bytes("garbage.wasm", b"this is not wasm at all");
    assert_invalid(&err, &path, "");
}

#[test]
fn a_core_module_is_not_a_policy() {
    // The smallest valid core module: magic + version 1, no sections.
    let (err, path) = load_bytes("core.wasm", b"\0asm\x01\0\0\0");
    assert_invalid(&err, &path, "");
}

#[test]
fn a_component_without_the_policy_exports_is_refused() {
    // The smallest valid component: magic + component version/layer, no
    // sections, so no `init` or `decide` export.
    let (err, path) = load_bytes("empty-component.wasm", b"\0asm\x0d\0\x01\0");
    assert_invalid(&err, &path, "not a hearth:edge policy");
}

#[test]
fn a_component_for_another_world_is_refused() {
    // A component importing an interface the edge does not provide.
    let wasm = std::fs::read(guest(TRAP)).unwrap();
    let tampered = String::from_utf8_lossy(&wasm).contains("hearth:edge/host@0.1.1");
    assert!(tampered, "the trap guest imports hearth:edge/host@0.1.1");
    let renamed = replace_all(&wasm, b"hearth:edge/host@0.1.1", b"hearth:edge/xost@0.1.1");
    let (err, path) = load_bytes("other-world.wasm", &renamed);
    assert_invalid(&err, &path, "not a hearth:edge policy");
}

#[test]
fn a_memory_limit_over_the_ceiling_is_refused() {
    let limits = Limits {
        max_memory: hearth_edge_policy::MAX_POLICY_MEMORY + 1,
        ..Limits::default()
    };
    let err = Policy::load(&runtime(), &guest(TRAP), vec![], limits).unwrap_err();
    assert!(err.to_string().contains("ceiling"), "{err}");
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(
        from.len(),
        to.len(),
        "same length keeps the binary well-formed"
    );
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn an_exhausted_instance_pool_is_an_error_not_a_crash() {
    use hearth_edge_policy::{POOL_INSTANCES, PolicyError};
    let rt = runtime();
    let path = guest(TRAP);
    // Each loaded policy keeps one initialised instance.
    let mut held: Vec<Policy> = (0..POOL_INSTANCES)
        .map(|i| {
            Policy::load(&rt, &path, vec![], Limits::default())
                .unwrap_or_else(|e| panic!("policy {i}: {e}"))
        })
        .collect();
    let err = Policy::load(&rt, &path, vec![], Limits::default()).unwrap_err();
    match &err {
        LoadError::InitFailed {
            source: PolicyError::Unavailable(_),
            ..
        } => {}
        other => panic!("expected an unavailable instance, got {other:?}"),
    }
    // A busy policy asked for a second, concurrent instance gets the same
    // answer as an error, and keeps serving with the one it has.
    held.truncate(POOL_INSTANCES as usize - 1);
    let extra = Policy::load(&rt, &path, vec![], Limits::default()).expect("a slot was freed");
    assert_eq!(
        extra
            .decide_with_fresh_instance(&super::support::hello(None))
            .unwrap_err()
            .kind(),
        "unavailable"
    );
    extra
        .decide(&super::support::hello(None))
        .expect("the pooled instance still serves");
}

#[test]
fn a_policy_whose_initial_memory_exceeds_the_cap_fails_to_load() {
    use hearth_edge_policy::PolicyError;
    // A Rust component starts with more than 64 KiB of linear memory.
    let limits = Limits {
        max_memory: 64 << 10,
        ..Limits::default()
    };
    let err = Policy::load(&runtime(), &guest(TRAP), vec![], limits).unwrap_err();
    match &err {
        LoadError::InitFailed {
            source: PolicyError::Memory,
            ..
        } => {}
        other => panic!("expected InitFailed(Memory), got {other:?}"),
    }
    assert!(err.to_string().contains("guest_trap.wasm"), "{err}");
}
