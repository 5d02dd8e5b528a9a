//! Shared helpers: a runtime, hellos, scratch directories.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use hearth_edge_policy::{ClientHello, Runtime, RuntimeOptions};

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeOptions::default()).expect("runtime starts")
}

pub fn hello(sni: Option<&str>) -> ClientHello {
    ClientHello {
        server_name: sni.map(str::to_owned),
        alpn: vec!["h2".into()],
        source_addr: "203.0.113.7".into(),
        source_port: 40_000,
        local_port: 443,
        legacy_version: 0x0303,
        supported_versions: vec![0x0304],
        cipher_suites: vec![0x1301],
        extensions: vec![0, 16, 43],
        supported_groups: vec![0x001d],
        signature_algorithms: vec![0x0804],
        key_share_groups: vec![0x001d],
        ja4: String::new(),
        has_ech: false,
        hello_bytes: 512,
    }
}

/// A fresh, empty directory under the system temp dir, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("hearth-policy-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
