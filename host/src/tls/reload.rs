//! Hot reload of `tls.certificates`: the files are checked every
//! [`POLL_INTERVAL`] (size, modification time and inode, following
//! symlinks, so a Kubernetes Secret volume's symlink swap is seen like an
//! in-place write). A changed pair is read again (`tls/files.rs`); if it is
//! broken the change is refused with a log line and the old certificate
//! stays in use, until the files change again.
//!
//! The store it updates is built by `cli/serve.rs`.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::sign::CertifiedKey;
use tracing::{info, warn};

use super::CertStore;
use crate::metrics::Metrics;
use crate::pem::{self as files, LoadedCertificate};

/// How often certificate files are checked: a `stat` per file, cheap, and
/// well inside what a certificate rotation needs.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// The file certificates in use, and the other entries of their store.
pub struct FileCerts {
    store: Arc<CertStore>,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

/// What [`FileCerts`] serves and watches.
struct State {
    current: Vec<LoadedCertificate>,
    /// Entries that do not come from files (the local CA's leaf).
    other: Vec<(String, Arc<CertifiedKey>)>,
    stamps: Vec<(Option<Stamp>, Option<Stamp>)>,
}

// === impl FileCerts ===

impl FileCerts {
    /// Fills `store` with `certificates` and `other`, and remembers the
    /// files' state.
    pub fn new(
        store: Arc<CertStore>,
        certificates: Vec<LoadedCertificate>,
        other: Vec<(String, Arc<CertifiedKey>)>,
        metrics: Arc<Metrics>,
    ) -> FileCerts {
        let certs = FileCerts {
            store,
            state: Mutex::new(State {
                current: Vec::new(),
                other: Vec::new(),
                stamps: Vec::new(),
            }),
            metrics,
        };
        certs.set(certificates, other);
        certs
    }

    /// Replaces everything (a config reload): serves and watches
    /// `certificates` and `other` from now on.
    pub fn set(
        &self,
        certificates: Vec<LoadedCertificate>,
        other: Vec<(String, Arc<CertifiedKey>)>,
    ) {
        let mut state = self.lock();
        state.stamps = certificates.iter().map(stamps_of).collect();
        state.current = certificates;
        state.other = other;
        self.publish(&state);
    }

    /// Checks the files every [`POLL_INTERVAL`], forever (run it as a task).
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check();
        }
    }

    /// Reloads every pair whose files changed since the last check; returns
    /// how many were swapped in.
    pub fn check(&self) -> usize {
        let mut state = self.lock();
        let mut swapped = 0;
        for i in 0..state.current.len() {
            let now = stamps_of(&state.current[i]);
            if now == state.stamps[i] {
                continue;
            }
            state.stamps[i] = now;
            match files::reload(&state.current[i]) {
                Ok(new) => {
                    info!(cert = %new.cert_path.display(), names = ?new.names, "certificate reloaded");
                    self.metrics.cert_reloads.fetch_add(1, Ordering::Relaxed);
                    state.current[i] = new;
                    swapped += 1;
                }
                Err(error) => {
                    self.metrics
                        .cert_reload_failures
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(cert = %state.current[i].cert_path.display(), error = %error,
                        "certificate reload refused; the previous certificate stays in use");
                }
            }
        }
        if swapped > 0 {
            self.publish(&state);
        }
        swapped
    }

    /// Replaces the store's entries with the current certificates (first
    /// listed wins on a shared name), then the other entries.
    fn publish(&self, state: &State) {
        let files = state
            .current
            .iter()
            .flat_map(|c| c.names.iter().map(|n| (n.clone(), c.key.clone())));
        self.store.replace(files.chain(state.other.iter().cloned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

fn stamps_of(loaded: &LoadedCertificate) -> (Option<Stamp>, Option<Stamp>) {
    (stamp(&loaded.cert_path), stamp(&loaded.key_path))
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write_pair(dir: &Path, name: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        // Write elsewhere and rename, so each file changes in one step.
        for (file, text) in [("tls.key", key.serialize_pem()), ("tls.crt", cert.pem())] {
            let temp = dir.join(format!("{file}.new"));
            std::fs::write(&temp, text).unwrap();
            std::fs::rename(&temp, dir.join(file)).unwrap();
        }
    }

    fn temp_dir(label: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hearth-reload-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_changed_pair_is_swapped_in_and_a_broken_one_refused() {
        let dir = temp_dir("swap");
        write_pair(&dir, "a.example");
        let loaded = files::load(&dir.join("tls.crt"), &dir.join("tls.key"), None).unwrap();
        let store = Arc::new(CertStore::new());
        let metrics = Arc::new(Metrics::default());
        let certs = FileCerts::new(store.clone(), vec![loaded], Vec::new(), metrics.clone());
        let first = store.lookup("a.example").unwrap();
        assert_eq!(certs.check(), 0, "nothing changed");

        write_pair(&dir, "a.example");
        assert_eq!(certs.check(), 1);
        let second = store.lookup("a.example").unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_ne!(first.cert, second.cert);

        // A truncated certificate is refused; the second one stays.
        std::fs::write(dir.join("tls.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        assert_eq!(certs.check(), 0);
        assert!(Arc::ptr_eq(&store.lookup("a.example").unwrap(), &second));
        assert_eq!(metrics.cert_reload_failures.load(Ordering::Relaxed), 1);
        // Checked once per change, not on every tick.
        assert_eq!(certs.check(), 0);
        assert_eq!(metrics.cert_reload_failures.load(Ordering::Relaxed), 1);

        // Repaired: swapped in again, with the names from the new SANs.
        write_pair(&dir, "b.example");
        assert_eq!(certs.check(), 1);
        assert!(store.lookup("b.example").is_some());
        assert!(store.lookup("a.example").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
