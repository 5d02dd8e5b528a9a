//! The host imports — `log`, `now-ms`, `take-token` — as plain functions,
//! and their native stand-ins.
//!
//! On `wasm32` every function calls the edge. On any other target (unit
//! tests of a policy with `cargo test`) the generated imports cannot be
//! called, so the functions here use [`native`] instead: log lines go to
//! stderr and to a per-thread capture, the clock is a per-thread test clock,
//! and token buckets are kept per thread on that clock. The logging macros
//! are in [`log`](mod@crate::log).

use crate::Level;

#[cfg(target_arch = "wasm32")]
use crate::bindings::hearth::edge::host as imports;
#[cfg(not(target_arch = "wasm32"))]
use native as imports;

/// Writes a line to the edge's log at `level`, tagged with the policy's name.
pub fn log(level: Level, message: &str) {
    imports::log(level, message);
}

/// Milliseconds on the edge's monotonic clock (it starts when the edge
/// starts).
pub fn now_ms() -> u64 {
    imports::now_ms()
}

/// Takes one token from the bucket `key` of the group `bucket` (e.g. bucket
/// `per-ip`, key the source address), refilled at `per_second` tokens per
/// second up to `burst`. Returns false when the bucket is empty: the caller
/// is over its rate. Buckets are shared by all instances of the policy.
pub fn take_token(bucket: &str, key: &str, per_second: u32, burst: u32) -> bool {
    imports::take_token(bucket, key, per_second, burst)
}

/// Native stand-ins for the host imports, used on non-`wasm32` targets so
/// that policy logic can be unit-tested. Everything is per thread, and each
/// test runs on its own thread, so tests do not see each other's state.
#[cfg(not(target_arch = "wasm32"))]
pub mod native {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use crate::Level;

    /// Milliseconds per second, for token refill.
    const MS_PER_SECOND: f64 = 1000.0;

    /// One token bucket: tokens left and when they were last counted.
    struct Bucket {
        tokens: f64,
        at_ms: u64,
    }

    thread_local! {
        static NOW_MS: Cell<u64> = const { Cell::new(0) };
        static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
        static BUCKETS: RefCell<HashMap<(String, String), Bucket>> = RefCell::new(HashMap::new());
    }

    /// Prints the line to stderr and keeps it for [`take_logs`].
    pub fn log(level: Level, message: &str) {
        eprintln!("[{level}] {message}");
        LOGS.with(|logs| logs.borrow_mut().push((level, message.to_owned())));
    }

    /// The test clock; starts at 0 and moves only by [`advance_ms`] and
    /// [`set_now_ms`].
    pub fn now_ms() -> u64 {
        NOW_MS.with(Cell::get)
    }

    /// Sets the test clock.
    pub fn set_now_ms(ms: u64) {
        NOW_MS.with(|now| now.set(ms));
    }

    /// Moves the test clock forward.
    pub fn advance_ms(ms: u64) {
        NOW_MS.with(|now| now.set(now.get().saturating_add(ms)));
    }

    /// The log lines written so far on this thread, oldest first; clears them.
    pub fn take_logs() -> Vec<(Level, String)> {
        LOGS.with(|logs| std::mem::take(&mut *logs.borrow_mut()))
    }

    /// A token bucket on the test clock: a new bucket starts full (`burst`
    /// tokens) and refills at `per_second`.
    pub fn take_token(bucket: &str, key: &str, per_second: u32, burst: u32) -> bool {
        let now = now_ms();
        BUCKETS.with(|buckets| {
            let mut buckets = buckets.borrow_mut();
            let state = buckets
                .entry((bucket.to_owned(), key.to_owned()))
                .or_insert(Bucket {
                    tokens: f64::from(burst),
                    at_ms: now,
                });
            let elapsed = now.saturating_sub(state.at_ms) as f64;
            state.tokens = (state.tokens + elapsed * f64::from(per_second) / MS_PER_SECOND)
                .min(f64::from(burst));
            state.at_ms = now;
            if state.tokens >= 1.0 {
                state.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Forgets the clock, logs and buckets of this thread.
    pub fn reset() {
        set_now_ms(0);
        take_logs();
        BUCKETS.with(|buckets| buckets.borrow_mut().clear());
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_empties_and_refills_on_the_test_clock() {
        native::reset();
        for _ in 0..3 {
            assert!(take_token("per-ip", "a", 2, 3));
        }
        assert!(!take_token("per-ip", "a", 2, 3), "burst of 3 spent");
        assert!(
            take_token("per-ip", "b", 2, 3),
            "other keys have their own bucket"
        );
        native::advance_ms(499);
        assert!(!take_token("per-ip", "a", 2, 3), "not yet a whole token");
        native::advance_ms(1);
        assert!(
            take_token("per-ip", "a", 2, 3),
            "2/s refills one token in 500ms"
        );
        native::advance_ms(60_000);
        for _ in 0..3 {
            assert!(take_token("per-ip", "a", 2, 3));
        }
        assert!(
            !take_token("per-ip", "a", 2, 3),
            "refill is capped at burst"
        );
    }

    #[test]
    fn clock_and_logs() {
        native::reset();
        assert_eq!(now_ms(), 0);
        native::set_now_ms(42);
        assert_eq!(now_ms(), 42);
        log(Level::Warn, "careful");
        assert_eq!(native::take_logs(), [(Level::Warn, "careful".to_owned())]);
        assert!(native::take_logs().is_empty());
    }
}
