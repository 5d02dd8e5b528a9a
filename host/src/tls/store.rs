//! Certificates by server name, and the rustls resolver that serves them.
//!
//! [`CertSource`] is the seam: [`CertStore`] (files and the local CA) is one
//! source; an ACME manager can be another. [`Resolver`] adapts any source to
//! rustls. Neighbours: `tls/files.rs` and `tls/local_ca.rs` fill the store,
//! `tls.rs` builds server configs around the resolver.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::sync::{read, write};

/// Where the certificate for a server name comes from.
pub trait CertSource: Send + Sync + fmt::Debug {
    /// The certificate for `server_name` (lowercase, no trailing dot), or
    /// `None` when there is none (the handshake then fails).
    fn certificate(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>>;
}

/// Certificates by exact name and by `*.` wildcard. The whole map is
/// replaced at once, so readers never see half an update.
#[derive(Default)]
pub struct CertStore {
    by_name: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
}

/// Several sources asked in order; the first with a certificate wins.
#[derive(Debug)]
pub struct Layered(pub Vec<Arc<dyn CertSource>>);

/// Adapts a [`CertSource`] to rustls.
#[derive(Debug)]
pub struct Resolver {
    source: Arc<dyn CertSource>,
}

// === impl CertStore ===

impl CertStore {
    /// An empty store.
    pub fn new() -> CertStore {
        CertStore::default()
    }

    /// Replaces every entry; `names` may contain `*.example` wildcards. When
    /// a name appears twice, the first entry wins.
    pub fn replace(&self, entries: impl IntoIterator<Item = (String, Arc<CertifiedKey>)>) {
        let mut map = HashMap::new();
        for (name, key) in entries {
            map.entry(name.to_ascii_lowercase()).or_insert(key);
        }
        let map = Arc::new(map);
        *write(&self.by_name) = map;
    }

    /// Adds or replaces the entry for one `name`, keeping the others.
    pub fn insert(&self, name: &str, key: Arc<CertifiedKey>) {
        let mut guard = write(&self.by_name);
        let mut map = HashMap::clone(&guard);
        map.insert(name.to_ascii_lowercase(), key);
        *guard = Arc::new(map);
    }

    /// Exact name first, then the wildcard one label up
    /// (`a.example` → `*.example`; wildcards cover exactly one label).
    pub fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let map = self.snapshot();
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            &lowered
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(key) = map.get(name) {
            return Some(key.clone());
        }
        let (_, parent) = name.split_once('.')?;
        if parent.is_empty() {
            return None;
        }
        map.get(&format!("*.{parent}")).cloned()
    }

    /// The names held, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.snapshot().keys().cloned().collect();
        names.sort();
        names
    }

    /// `(name, notAfter as Unix seconds)` of the leaf served for each name,
    /// sorted by name; names whose certificate cannot be read are left out.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = self
            .snapshot()
            .iter()
            .filter_map(|(name, key)| {
                let leaf = key.cert.first()?;
                Some((name.clone(), super::expiry::not_after(leaf)?))
            })
            .collect();
        out.sort();
        out
    }

    fn snapshot(&self) -> Arc<HashMap<String, Arc<CertifiedKey>>> {
        read(&self.by_name).clone()
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // Names only: never key material.
        f.debug_struct("CertStore")
            .field("names", &self.names())
            .finish()
    }
}

impl CertSource for CertStore {
    fn certificate(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.lookup(server_name?)
    }
}

impl CertSource for Layered {
    fn certificate(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.0.iter().find_map(|s| s.certificate(server_name))
    }
}

// === impl Resolver ===

impl Resolver {
    /// Serves certificates from `source`.
    pub fn new(source: Arc<dyn CertSource>) -> Resolver {
        Resolver { source }
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.source.certificate(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::local_ca::tests::self_signed;

    #[test]
    fn exact_names_win_over_wildcards() {
        let exact = self_signed(&["a.example"]);
        let wild = self_signed(&["*.example"]);
        let store = CertStore::new();
        store.replace([
            ("a.example".to_owned(), exact.clone()),
            ("*.example".to_owned(), wild.clone()),
        ]);
        assert!(Arc::ptr_eq(&store.lookup("a.example").unwrap(), &exact));
        assert!(Arc::ptr_eq(&store.lookup("B.example").unwrap(), &wild));
        assert!(Arc::ptr_eq(&store.lookup("b.example.").unwrap(), &wild));
        // A wildcard covers one label only, and not the bare parent.
        assert!(store.lookup("x.b.example").is_none());
        assert!(store.lookup("example").is_none());
        assert!(store.certificate(None).is_none());
    }

    #[test]
    fn replace_swaps_the_whole_set() {
        let one = self_signed(&["one.example"]);
        let two = self_signed(&["two.example"]);
        let store = CertStore::new();
        store.replace([("one.example".to_owned(), one)]);
        store.replace([("two.example".to_owned(), two)]);
        assert!(store.lookup("one.example").is_none());
        assert!(store.lookup("two.example").is_some());
        assert_eq!(store.names(), ["two.example"]);
        store.insert("One.example", self_signed(&["one.example"]));
        assert_eq!(store.names(), ["one.example", "two.example"]);
    }

    #[test]
    fn layered_asks_each_source_in_order() {
        let first = CertStore::new();
        let second = CertStore::new();
        let a1 = self_signed(&["a.example"]);
        first.insert("a.example", a1.clone());
        second.insert("a.example", self_signed(&["a.example"]));
        second.insert("b.example", self_signed(&["b.example"]));
        let layered = Layered(vec![Arc::new(first), Arc::new(second)]);
        assert!(Arc::ptr_eq(
            &layered.certificate(Some("a.example")).unwrap(),
            &a1
        ));
        assert!(layered.certificate(Some("b.example")).is_some());
        assert!(layered.certificate(Some("c.example")).is_none());
    }
}
