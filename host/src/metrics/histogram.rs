//! A fixed-bucket histogram of atomics, cumulative as Prometheus wants it
//! at render time (`metrics/prometheus.rs`). Observations are whole units:
//! nanoseconds for durations, bytes for sizes; [`Buckets`] says which, so
//! the bounds and the sum can be rendered in base units (seconds, bytes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in the metric's base unit, and what one observed
/// unit is.
#[derive(Debug, Clone, Copy)]
pub enum Buckets {
    /// Bounds in seconds; observations in nanoseconds.
    Seconds(&'static [f64]),
    /// Bounds in bytes; observations in bytes.
    Bytes(&'static [f64]),
}

/// Observations counted per bucket, with their count and sum.
#[derive(Debug)]
pub struct Histogram {
    buckets: Buckets,
    /// Upper bounds in observed units.
    bounds: Vec<u64>,
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

/// A histogram's state, cumulative, in base units.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations at or below it)`, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations, in base units.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

const NANOS_PER_SECOND: f64 = 1e9;

// === impl Buckets ===

impl Buckets {
    fn bounds(self) -> &'static [f64] {
        match self {
            Buckets::Seconds(b) | Buckets::Bytes(b) => b,
        }
    }

    /// Observed units per base unit.
    fn scale(self) -> f64 {
        match self {
            Buckets::Seconds(_) => NANOS_PER_SECOND,
            Buckets::Bytes(_) => 1.0,
        }
    }
}

// === impl Histogram ===

impl Histogram {
    /// An empty histogram with these buckets.
    pub fn new(buckets: Buckets) -> Histogram {
        let scale = buckets.scale();
        let bounds: Vec<u64> = buckets
            .bounds()
            .iter()
            .map(|b| (b * scale).round() as u64)
            .collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            buckets,
            bounds,
            counts,
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `value` units.
    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a duration (for [`Buckets::Seconds`] histograms).
    pub fn observe_duration(&self, took: Duration) {
        self.observe(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The cumulative counts, in base units.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        let bounds = self.buckets.bounds().iter().copied().chain([f64::INFINITY]);
        for (bound, count) in bounds.zip(&self.counts) {
            running += count.load(Ordering::Relaxed);
            buckets.push((bound, running));
        }
        HistogramSnapshot {
            buckets,
            sum: self.sum.load(Ordering::Relaxed) as f64 / self.buckets.scale(),
            // The `+Inf` bucket, so count and buckets agree even while
            // observations land concurrently.
            count: running,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new(Buckets::Bytes(&[10.0, 100.0]));
        for v in [1, 10, 11, 100, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, [(10.0, 2), (100.0, 4), (f64::INFINITY, 5)]);
        assert_eq!((s.count, s.sum), (5, 1122.0));
    }

    #[test]
    fn durations_are_rendered_in_seconds() {
        let h = Histogram::new(Buckets::Seconds(&[0.001, 0.01]));
        h.observe_duration(Duration::from_micros(500));
        h.observe_duration(Duration::from_millis(5));
        let s = h.snapshot();
        assert_eq!(s.buckets, [(0.001, 1), (0.01, 2), (f64::INFINITY, 2)]);
        assert!((s.sum - 0.0055).abs() < 1e-12, "{}", s.sum);
    }
}
