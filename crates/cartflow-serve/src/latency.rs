//! Prediction latency for the dashboard: a lock-free log-scale histogram
//! (four buckets per doubling, 1 µs to 16 s), so recording costs one atomic
//! add on the hot path. Prometheus gets the same timings through `metrics`;
//! this keeps quantiles the dashboard can show without a Prometheus server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const PER_DOUBLING: f64 = 4.0;
const BUCKETS: usize = 96;

pub struct Latency {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Latency {
    fn default() -> Self {
        Self { buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl Latency {
    pub fn record(&self, elapsed: Duration) {
        let micros = elapsed.as_secs_f64() * 1e6;
        let bucket = (micros.max(1.0).log2() * PER_DOUBLING) as usize;
        self.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile in milliseconds (the upper edge of its bucket, so
    /// at most 19 % high), or `None` before the first request.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        let bucket = counts.iter().position(|&c| {
            seen += c;
            seen >= rank
        })?;
        Some(2f64.powf((bucket + 1) as f64 / PER_DOUBLING) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_within_a_bucket_of_the_truth() {
        let l = Latency::default();
        assert_eq!(l.quantile_ms(0.5), None);
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        let p50 = l.quantile_ms(0.5).unwrap();
        let p99 = l.quantile_ms(0.99).unwrap();
        assert!((0.5..=0.5 * 1.19).contains(&p50), "p50 {p50}");
        assert!((0.99..=0.99 * 1.19).contains(&p99), "p99 {p99}");
        assert_eq!(l.count(), 1000);
    }
}
