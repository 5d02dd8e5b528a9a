//! Locking that survives a panicked holder. The edge's mutexes guard data
//! that stays valid if a holder panics (counters, idle connection lists,
//! cached header values, reload state): one panicked connection must not
//! take every later lock down with it.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the data over from a holder that panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
