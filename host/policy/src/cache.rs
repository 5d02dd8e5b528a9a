//! Precompiled policies on disk, so a restart does not recompile: one file
//! per (policy content, engine) pair, named by the SHA-256 of the `.wasm`
//! and of wasmtime's compatibility hash for this engine's settings.
//!
//! This is the one module of the crate with `unsafe` code: loading native
//! code produced by [`wasmtime::Engine::precompile_component`] is `unsafe`
//! because wasmtime cannot verify the code it maps. `policy.rs` calls
//! [`load`] and [`store`]; everything else compiles from the `.wasm`.
//!
//! # Entry format
//! `SHA-256(artifact) ‖ artifact`. The checksum is verified before the
//! artifact is handed to wasmtime, so a truncated or bit-flipped entry is
//! detected and recompiled instead of being trusted; entries are written to
//! a temporary file and renamed into place, so readers never see a partial
//! entry.

#![allow(unsafe_code)]

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes of the checksum that prefixes every entry.
const CHECKSUM_BYTES: usize = 32;

/// File extension of cache entries.
const EXTENSION: &str = "cwasm";

/// Why a cache entry was not used (it is then recompiled and rewritten).
#[derive(Debug, thiserror::Error)]
pub enum Miss {
    /// No entry for this policy and engine yet.
    #[error("no entry")]
    Absent,
    /// The entry could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The entry.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The entry's checksum does not match its contents.
    #[error("{path} is corrupt (checksum mismatch)")]
    Corrupt {
        /// The entry.
        path: PathBuf,
    },
    /// wasmtime refused the entry (e.g. another wasmtime version wrote it).
    #[error("{path} was rejected by wasmtime: {message}")]
    Rejected {
        /// The entry.
        path: PathBuf,
        /// wasmtime's reason.
        message: String,
    },
}

/// The file holding the precompiled form of `wasm` for `engine` in `dir`.
pub fn entry_path(dir: &Path, engine: &Engine, wasm: &[u8]) -> PathBuf {
    let content = Sha256::digest(wasm);
    let mut engine_hash = Sha256Hasher(Sha256::new());
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let engine_hash = engine_hash.0.finalize();
    dir.join(format!(
        "{}-{}.{EXTENSION}",
        hex(&content),
        &hex(&engine_hash)[..16]
    ))
}

/// Loads the entry at `path`, verifying its checksum first.
pub fn load(engine: &Engine, path: &Path) -> Result<Component, Miss> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
        Err(source) => {
            return Err(Miss::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let corrupt = || Miss::Corrupt {
        path: path.to_owned(),
    };
    if bytes.len() < CHECKSUM_BYTES {
        return Err(corrupt());
    }
    let (checksum, artifact) = bytes.split_at(CHECKSUM_BYTES);
    if Sha256::digest(artifact).as_slice() != checksum {
        return Err(corrupt());
    }
    // SAFETY: `Component::deserialize` requires bytes produced by
    // `Engine::precompile_component` (or `Component::serialize`) of a
    // compatible wasmtime, unmodified. The bytes come from our own cache
    // directory, written only by `store` below from
    // `precompile_component` output, and the checksum just verified shows
    // they are exactly what was written; wasmtime itself checks the
    // version and engine settings in the header and rejects a mismatch.
    // Whoever can write the cache directory can run native code in this
    // process; the directory is the operator's, like the binary itself.
    unsafe { Component::deserialize(engine, artifact) }.map_err(|e| Miss::Rejected {
        path: path.to_owned(),
        message: format!("{e:#}"),
    })
}

/// Writes `artifact` as the entry at `path`, atomically (temporary file +
/// rename). Creates the directory if needed, readable and writable by the
/// owner only: whoever can write an entry can run code in the edge.
pub fn store(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Unique per process and per call, so concurrent writers of the same
    // entry (two runtimes, two processes) never share a temporary file.
    static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&Sha256::digest(artifact))?;
        f.write_all(artifact)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash
/// becomes a stable file name component.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Only `finalize` is used; `finish` exists to satisfy the trait.
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
