//! The precompiled cache: a restart loads without compiling; a bad entry is
//! recompiled and replaced.

use hearth_edge_policy::guests::{TRAP, guest};
use hearth_edge_policy::{ArtifactSource, CacheStats, Limits, Policy, Runtime, RuntimeOptions};

use super::support::{ScratchDir, hello};

fn runtime_with_cache(dir: &ScratchDir) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.0.clone()),
        ..RuntimeOptions::default()
    })
    .unwrap()
}

fn load(rt: &Runtime) -> Policy {
    let policy = Policy::load(rt, &guest(TRAP), vec![], Limits::default()).unwrap();
    policy
        .decide(&hello(Some("fine.test")))
        .expect("a cached policy decides");
    policy
}

#[test]
fn a_second_start_loads_from_the_cache() {
    let dir = ScratchDir::new("cache");
    let first = runtime_with_cache(&dir);
    assert_eq!(load(&first).artifact_source(), ArtifactSource::Compiled);
    assert_eq!(
        first.cache_stats(),
        CacheStats {
            hits: 0,
            compiled: 1,
            bad_entries: 0
        }
    );

    // A new runtime, as after a restart.
    let second = runtime_with_cache(&dir);
    assert_eq!(load(&second).artifact_source(), ArtifactSource::Cache);
    assert_eq!(
        second.cache_stats(),
        CacheStats {
            hits: 1,
            compiled: 0,
            bad_entries: 0
        }
    );
}

#[test]
fn a_new_cache_directory_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = ScratchDir::new("cache-mode");
    let dir = scratch.0.join("edge-cache");
    let rt = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.clone()),
        ..RuntimeOptions::default()
    })
    .unwrap();
    load(&rt);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "cache directory mode {mode:o}");
}

#[test]
fn a_corrupted_entry_is_recompiled_and_replaced() {
    let dir = ScratchDir::new("cache-corrupt");
    let rt = runtime_with_cache(&dir);
    load(&rt);
    let entry = rt
        .cache_entry(&std::fs::read(guest(TRAP)).unwrap())
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();

    let rt = runtime_with_cache(&dir);
    assert_eq!(load(&rt).artifact_source(), ArtifactSource::Compiled);
    assert_eq!(
        rt.cache_stats(),
        CacheStats {
            hits: 0,
            compiled: 1,
            bad_entries: 1
        }
    );

    let rt = runtime_with_cache(&dir);
    assert_eq!(
        load(&rt).artifact_source(),
        ArtifactSource::Cache,
        "the entry was rewritten"
    );
}

#[test]
fn an_entry_wasmtime_rejects_is_recompiled() {
    use sha2::{Digest, Sha256};
    let dir = ScratchDir::new("cache-rejected");
    let rt = runtime_with_cache(&dir);
    let entry = rt
        .cache_entry(&std::fs::read(guest(TRAP)).unwrap())
        .unwrap();
    // A well-formed entry (checksum matches) whose artifact is not one.
    let junk = b"not a precompiled component".to_vec();
    let mut bytes = Sha256::digest(&junk).to_vec();
    bytes.extend_from_slice(&junk);
    std::fs::write(&entry, &bytes).unwrap();

    assert_eq!(load(&rt).artifact_source(), ArtifactSource::Compiled);
    assert_eq!(rt.cache_stats().bad_entries, 1);
}

#[test]
fn a_truncated_entry_is_recompiled() {
    let dir = ScratchDir::new("cache-truncated");
    let rt = runtime_with_cache(&dir);
    load(&rt);
    let entry = rt
        .cache_entry(&std::fs::read(guest(TRAP)).unwrap())
        .unwrap();
    std::fs::write(&entry, b"short").unwrap();
    let rt = runtime_with_cache(&dir);
    assert_eq!(load(&rt).artifact_source(), ArtifactSource::Compiled);
    assert_eq!(rt.cache_stats().bad_entries, 1);
}

#[test]
fn loading_the_same_file_again_reuses_the_compiled_component() {
    let dir = ScratchDir::new("cache-memory");
    let rt = runtime_with_cache(&dir);
    assert_eq!(load(&rt).artifact_source(), ArtifactSource::Compiled);
    assert_eq!(load(&rt).artifact_source(), ArtifactSource::Memory);
    assert_eq!(
        rt.cache_stats(),
        CacheStats {
            hits: 0,
            compiled: 1,
            bad_entries: 0
        }
    );
}
