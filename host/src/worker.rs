//! The worker identity: which of the `workers` threads (`proxy/workers.rs`)
//! the running code is on. State a connection keeps for the next one (idle
//! backend connections, `http/client.rs`) is kept per worker: sockets are
//! registered with their thread's I/O driver, and a socket used from
//! another thread makes each of its readiness events a cross-thread
//! wake-up.

use std::cell::Cell;

thread_local! {
    /// This thread's worker number: 1 to `workers` on the worker threads,
    /// 0 elsewhere.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The worker thread this code runs on: 1 to `workers`, or 0 off the
/// worker threads (the main runtime, `workers: 1`).
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// Marks this thread as worker `index` (1 to `workers`).
pub(crate) fn set(index: usize) {
    WORKER.with(|w| w.set(index));
}
