//! Token buckets behind the `take-token` host function: one table per loaded
//! policy, shared by all of its instances, bounded in keys and key length.
//! The host function itself lives in `host_api.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Most keys (bucket name + key pairs) one policy may hold. At 65,536 keys
/// of at most [`MAX_KEY_BYTES`] each the table stays under ~20 MiB.
pub const MAX_KEYS: usize = 65_536;

/// Longer keys are replaced by their SHA-256 (64 hex digits), so a policy
/// that keys on something large cannot make each entry large.
pub const MAX_KEY_BYTES: usize = 128;

/// When the table is full and sweeping full (idle) buckets frees fewer than
/// `1 / EVICT_FRACTION` of it, the least recently used buckets are evicted
/// down to that much free room, so the next evictions are far apart.
const EVICT_FRACTION: usize = 8;

/// One bucket's state.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left, at `updated`.
    tokens: f64,
    /// When `tokens` was computed, as time since the table was created.
    updated: Duration,
}

/// The buckets of one policy, keyed by (bucket name, key).
#[derive(Debug)]
pub struct TokenBuckets {
    inner: Mutex<Table>,
    max_keys: usize,
}

#[derive(Debug, Default)]
struct Table {
    /// Bucket name → key → bucket.
    groups: HashMap<String, HashMap<String, Bucket>>,
    /// Total buckets over all groups.
    len: usize,
}

// === impl TokenBuckets ===

impl Default for TokenBuckets {
    fn default() -> Self {
        TokenBuckets::with_max_keys(MAX_KEYS)
    }
}

impl TokenBuckets {
    /// A table that holds at most `max_keys` buckets.
    pub fn with_max_keys(max_keys: usize) -> TokenBuckets {
        TokenBuckets {
            inner: Mutex::new(Table::default()),
            max_keys: max_keys.max(1),
        }
    }

    /// How many buckets are held now.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Takes one token from bucket `key` of group `bucket` at time `now`
    /// (monotonic, since the runtime started). A new bucket starts full
    /// (`burst` tokens). Returns false when no whole token is left.
    pub fn take(
        &self,
        bucket: &str,
        key: &str,
        per_second: u32,
        burst: u32,
        now: Duration,
    ) -> bool {
        if burst == 0 {
            return false;
        }
        let hashed;
        let key = if key.len() > MAX_KEY_BYTES {
            hashed = hex(&Sha256::digest(key.as_bytes()));
            hashed.as_str()
        } else {
            key
        };
        let hashed_group;
        let bucket = if bucket.len() > MAX_KEY_BYTES {
            hashed_group = hex(&Sha256::digest(bucket.as_bytes()));
            hashed_group.as_str()
        } else {
            bucket
        };

        let mut table = self.lock();
        if let Some(b) = table.groups.get_mut(bucket).and_then(|g| g.get_mut(key)) {
            refill(b, per_second, burst, now);
            return spend(b);
        }
        if table.len >= self.max_keys {
            table.evict(self.max_keys, now, per_second, burst);
        }
        let mut fresh = Bucket {
            tokens: f64::from(burst),
            updated: now,
        };
        let taken = spend(&mut fresh);
        table
            .groups
            .entry(bucket.to_owned())
            .or_default()
            .insert(key.to_owned(), fresh);
        table.len += 1;
        taken
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a consistent table (every
        // update is a single assignment), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// === impl Table ===

impl Table {
    /// Makes room for at least one bucket: drops buckets that have refilled
    /// completely (forgetting them changes nothing), then, if that freed
    /// too little, the least recently updated ones.
    fn evict(&mut self, max_keys: usize, now: Duration, per_second: u32, burst: u32) {
        // Buckets do not remember their own rate, so "full" is judged with
        // the rate of the current call: a bucket untouched for longer than it
        // takes to refill `burst` tokens at that rate is considered idle.
        let idle_after = if per_second == 0 {
            Duration::MAX
        } else {
            Duration::from_secs_f64(f64::from(burst) / f64::from(per_second))
        };
        let mut removed = 0;
        for group in self.groups.values_mut() {
            group.retain(|_, b| {
                let idle = now.saturating_sub(b.updated) >= idle_after;
                removed += usize::from(idle);
                !idle
            });
        }
        self.len -= removed;

        let target = max_keys - max_keys / EVICT_FRACTION;
        if self.len > target.min(max_keys - 1) {
            let mut ages: Vec<Duration> = self
                .groups
                .values()
                .flat_map(|g| g.values().map(|b| b.updated))
                .collect();
            let excess = self.len - target.min(max_keys - 1);
            let (_, cutoff, _) = ages.select_nth_unstable(excess - 1);
            let cutoff = *cutoff;
            let mut left = excess;
            for group in self.groups.values_mut() {
                group.retain(|_, b| {
                    if left > 0 && b.updated <= cutoff {
                        left -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
            self.len -= excess - left;
        }
        self.groups.retain(|_, g| !g.is_empty());
    }
}

/// Adds the tokens earned since the last update, capped at `burst`.
fn refill(b: &mut Bucket, per_second: u32, burst: u32, now: Duration) {
    let elapsed = now.saturating_sub(b.updated).as_secs_f64();
    b.tokens = (b.tokens + elapsed * f64::from(per_second)).min(f64::from(burst));
    b.updated = now.max(b.updated);
}

/// Takes a whole token if there is one.
fn spend(b: &mut Bucket) -> bool {
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        true
    } else {
        false
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_new_bucket_allows_a_burst_then_refuses() {
        let t = TokenBuckets::default();
        for i in 0..3 {
            assert!(t.take("ip", "a", 1, 3, ms(0)), "token {i} of the burst");
        }
        assert!(!t.take("ip", "a", 1, 3, ms(0)));
    }

    #[test]
    fn tokens_come_back_at_the_given_rate() {
        let t = TokenBuckets::default();
        assert!(t.take("ip", "a", 10, 1, ms(0)));
        assert!(
            !t.take("ip", "a", 10, 1, ms(50)),
            "half a token after 50 ms at 10/s"
        );
        assert!(t.take("ip", "a", 10, 1, ms(100)), "one token after 100 ms");
        assert!(!t.take("ip", "a", 10, 1, ms(100)));
    }

    #[test]
    fn refill_stops_at_burst() {
        let t = TokenBuckets::default();
        assert!(t.take("ip", "a", 100, 2, ms(0)));
        // An hour idle earns 360,000 tokens at 100/s, but only 2 are kept.
        let later = Duration::from_secs(3600);
        assert!(t.take("ip", "a", 100, 2, later));
        assert!(t.take("ip", "a", 100, 2, later));
        assert!(!t.take("ip", "a", 100, 2, later));
    }

    #[test]
    fn keys_and_groups_are_independent() {
        let t = TokenBuckets::default();
        assert!(t.take("ip", "a", 0, 1, ms(0)));
        assert!(!t.take("ip", "a", 0, 1, ms(0)));
        assert!(t.take("ip", "b", 0, 1, ms(0)), "another key");
        assert!(
            t.take("sni", "a", 0, 1, ms(0)),
            "same key, another bucket group"
        );
    }

    #[test]
    fn zero_burst_never_allows() {
        let t = TokenBuckets::default();
        assert!(!t.take("ip", "a", 1000, 0, ms(0)));
        assert_eq!(t.len(), 0, "a refused zero-burst call keeps no state");
    }

    #[test]
    fn the_table_never_exceeds_its_bound() {
        let t = TokenBuckets::with_max_keys(64);
        for i in 0..10_000u64 {
            t.take("ip", &format!("10.0.{}.{}", i / 256, i % 256), 1, 5, ms(i));
            assert!(t.len() <= 64, "{} keys after {} inserts", t.len(), i + 1);
        }
    }

    #[test]
    fn idle_full_buckets_are_evicted_before_active_ones() {
        let t = TokenBuckets::with_max_keys(4);
        // Four keys spend their only token at t=0 (refill 1/s).
        for k in ["a", "b", "c", "d"] {
            assert!(t.take("ip", k, 1, 1, ms(0)));
        }
        // "a" is used again at 0.5 s; b, c and d stay idle.
        assert!(!t.take("ip", "a", 1, 1, ms(500)));
        // At 1 s b, c and d are full again: forgetting them is harmless.
        assert!(t.take("ip", "e", 1, 1, ms(1_000)));
        let table = t.lock();
        let mut kept: Vec<&str> = table.groups["ip"].keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["a", "e"]);
        assert_eq!(table.len, 2);
    }

    #[test]
    fn when_nothing_is_idle_the_oldest_buckets_go_first() {
        let t = TokenBuckets::with_max_keys(8);
        // A slow rate: nothing refills within the test.
        for i in 0..8u64 {
            assert!(t.take("ip", &format!("k{i}"), 0, 1, ms(i)));
        }
        // k7 is the newest; inserting k8 evicts the oldest (k0 first).
        assert!(t.take("ip", "k8", 0, 1, ms(100)));
        assert!(
            !t.take("ip", "k7", 0, 1, ms(101)),
            "newest key still remembered"
        );
        assert!(
            t.take("ip", "k0", 0, 1, ms(102)),
            "oldest key was forgotten"
        );
        assert!(t.len() <= 8);
    }

    #[test]
    fn long_keys_are_hashed_and_still_distinct() {
        let t = TokenBuckets::default();
        let long_a = "a".repeat(10_000);
        let long_b = format!("{}b", "a".repeat(9_999));
        assert!(t.take("ip", &long_a, 0, 1, ms(0)));
        assert!(
            !t.take("ip", &long_a, 0, 1, ms(0)),
            "same long key, same bucket"
        );
        assert!(
            t.take("ip", &long_b, 0, 1, ms(0)),
            "different long key, different bucket"
        );
        let table = t.lock();
        let stored_max = table
            .groups
            .values()
            .flat_map(|g| g.keys())
            .map(String::len)
            .max();
        assert_eq!(stored_max, Some(64), "stored as a SHA-256 hex digest");
    }
}
