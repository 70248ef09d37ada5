//! A lock-free latency histogram over a sliding window, one per backend, for the
//! percentiles the admin API shows. Recording is one relaxed load and one relaxed
//! `fetch_add`; percentiles are computed by the reader. It does not feed Prometheus
//! (the cumulative histograms in `metrics` do that) and it does not drive balancing
//! (`least_time` keeps its moving average).
//!
//! Buckets are log-linear: values below 8 µs each have a bucket, then every power
//! of two is cut into 8 equal sub-buckets, so a reported percentile (the bucket's
//! midpoint) is within 1/16 (6.25 %) of the true value up to 2^32 µs (~72 min);
//! slower samples count in the last bucket.
//!
//! The window is `SLOTS` rotating bucket sets of `SLOT_MS` each; a read sums the
//! slots of the last `SLOTS` periods, i.e. between `(SLOTS-1)*SLOT_MS` and
//! `SLOTS*SLOT_MS` of history. The first writer of a new period clears the slot it
//! reuses; a sample racing that clear may be lost or kept, which a statistic can
//! afford and which keeps the hot path free of locks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Sub-buckets per power of two (as a power of two: 2^3 = 8).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Largest tracked exponent: values up to 2^MAX_EXP µs get their own bucket.
const MAX_EXP: u32 = 32;
/// 0..SUB linear buckets, then SUB per power of two from 2^SUB_BITS to 2^MAX_EXP.
pub const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS) as usize * SUB;
/// Length of one slot.
pub const SLOT_MS: u64 = 5_000;
/// Slots in the window (the current one included).
pub const SLOTS: usize = 3;

/// Bucket of a sample of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= SUB_BITS
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((us >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (exp - SUB_BITS) as usize * SUB + sub
}

/// The value range `[low, high)` of bucket `i`, in microseconds.
fn bucket_range(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, i as u64 + 1);
    }
    let exp = (i - SUB) / SUB + SUB_BITS as usize;
    let sub = ((i - SUB) % SUB) as u64;
    let width = 1u64 << (exp - SUB_BITS as usize);
    let low = (1u64 << exp) + sub * width;
    (low, low + width)
}

struct Slot {
    /// The period (`now_ms / SLOT_MS`) whose samples the counts hold.
    period: AtomicU64,
    counts: [AtomicU64; BUCKETS],
}

impl Slot {
    fn new() -> Slot {
        Slot { period: AtomicU64::new(0), counts: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

/// Sliding-window latency histogram (see the module docs).
pub struct LatencyWindow {
    slots: [Slot; SLOTS],
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow { slots: std::array::from_fn(|_| Slot::new()) }
    }
}

impl std::fmt::Debug for LatencyWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyWindow").field("window_samples", &self.snapshot(crate::clock::now_ms()).count).finish()
    }
}

/// The counts of a window at one moment, from which percentiles are read.
#[derive(Debug, Clone)]
pub struct LatencySnapshot {
    counts: Vec<u64>,
    pub count: u64,
}

impl LatencyWindow {
    /// Records one sample taken at `now_ms` (`crate::clock::now_ms`).
    pub fn record(&self, now_ms: u64, us: u64) {
        let period = now_ms / SLOT_MS + 1; // +1: period 0 means "never used"
        let slot = &self.slots[(period % SLOTS as u64) as usize];
        let seen = slot.period.load(Relaxed);
        if seen != period {
            if seen > period {
                // A late sample from a period this slot has moved past: drop it.
                return;
            }
            if slot.period.compare_exchange(seen, period, Relaxed, Relaxed).is_ok() {
                for c in &slot.counts {
                    c.store(0, Relaxed);
                }
            }
        }
        slot.counts[bucket(us)].fetch_add(1, Relaxed);
    }

    /// The samples of the last `SLOTS` periods as of `now_ms`.
    pub fn snapshot(&self, now_ms: u64) -> LatencySnapshot {
        let period = now_ms / SLOT_MS + 1;
        let oldest = period.saturating_sub(SLOTS as u64 - 1);
        let mut counts = vec![0u64; BUCKETS];
        for slot in &self.slots {
            let p = slot.period.load(Relaxed);
            if p == 0 || p < oldest || p > period {
                continue;
            }
            for (sum, c) in counts.iter_mut().zip(&slot.counts) {
                *sum += c.load(Relaxed);
            }
        }
        let count = counts.iter().sum();
        LatencySnapshot { counts, count }
    }
}

impl LatencySnapshot {
    /// An empty snapshot, to merge others into.
    pub fn empty() -> LatencySnapshot {
        LatencySnapshot { counts: vec![0; BUCKETS], count: 0 }
    }

    /// Adds `other`'s samples (e.g. every backend of a pool, for the pool's percentiles).
    pub fn merge(&mut self, other: &LatencySnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
    }

    /// The `q`-quantile (0.0..=1.0) in microseconds: the midpoint of the bucket that
    /// holds the sample of rank `ceil(q * count)`. `None` without samples.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bucket_range(i);
                return Some(if i < SUB { low as f64 } else { (low + high) as f64 / 2.0 });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want / 16.0 + 1.0
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut prev_high = 0;
        for i in 0..BUCKETS {
            let (low, high) = bucket_range(i);
            assert_eq!(low, prev_high, "bucket {i} leaves a gap");
            assert!(high > low);
            assert_eq!(bucket(low), i);
            assert_eq!(bucket(high - 1), i);
            prev_high = high;
        }
        assert_eq!(prev_high, 1u64 << MAX_EXP);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn uniform_distribution_percentiles() {
        let w = LatencyWindow::default();
        // 1..=10_000 µs, once each: p50 = 5 ms, p95 = 9.5 ms, p99 = 9.9 ms.
        for us in 1..=10_000 {
            w.record(1_000, us);
        }
        let s = w.snapshot(1_000);
        assert_eq!(s.count, 10_000);
        for (q, want) in [(0.5, 5_000.0), (0.95, 9_500.0), (0.99, 9_900.0)] {
            let got = s.quantile_us(q).expect("samples");
            assert!(close(got, want), "q{q}: {got} vs {want}");
        }
    }

    #[test]
    fn bimodal_distribution_separates_the_tail() {
        let w = LatencyWindow::default();
        // 90 % at 2 ms, 10 % at 200 ms: p50 is fast, p95 and p99 are the slow mode.
        for i in 0..1_000 {
            w.record(1, if i % 10 == 0 { 200_000 } else { 2_000 });
        }
        let s = w.snapshot(1);
        assert!(close(s.quantile_us(0.5).expect("p50"), 2_000.0));
        assert!(close(s.quantile_us(0.9).expect("p90"), 2_000.0));
        assert!(close(s.quantile_us(0.95).expect("p95"), 200_000.0));
        assert!(close(s.quantile_us(0.99).expect("p99"), 200_000.0));
    }

    #[test]
    fn small_values_are_exact_and_empty_has_none() {
        let w = LatencyWindow::default();
        assert_eq!(w.snapshot(1).quantile_us(0.5), None);
        for us in [0, 1, 2, 3] {
            w.record(1, us);
        }
        let s = w.snapshot(1);
        assert_eq!(s.quantile_us(0.0), Some(0.0));
        assert_eq!(s.quantile_us(0.5), Some(1.0));
        assert_eq!(s.quantile_us(1.0), Some(3.0));
    }

    #[test]
    fn old_samples_leave_the_window() {
        let w = LatencyWindow::default();
        w.record(0, 100_000);
        // Still inside the window one and two slots later.
        assert_eq!(w.snapshot(SLOT_MS).count, 1);
        assert_eq!(w.snapshot(2 * SLOT_MS).count, 1);
        // Gone once SLOTS periods have passed, even before its slot is reused.
        assert_eq!(w.snapshot(SLOTS as u64 * SLOT_MS).count, 0);
        // A new sample reusing the slot replaces the old counts.
        w.record(SLOTS as u64 * SLOT_MS, 1_000);
        let s = w.snapshot(SLOTS as u64 * SLOT_MS);
        assert_eq!(s.count, 1);
        assert!(close(s.quantile_us(0.99).expect("p99"), 1_000.0));
    }

    #[test]
    fn window_mixes_recent_slots() {
        let w = LatencyWindow::default();
        for _ in 0..99 {
            w.record(1, 1_000);
        }
        w.record(SLOT_MS + 1, 500_000);
        let s = w.snapshot(SLOT_MS + 1);
        assert_eq!(s.count, 100);
        assert!(close(s.quantile_us(0.5).expect("p50"), 1_000.0));
        assert!(close(s.quantile_us(1.0).expect("max"), 500_000.0));
    }

    #[test]
    fn merged_snapshots_weigh_backends_by_samples() {
        let (fast, slow) = (LatencyWindow::default(), LatencyWindow::default());
        for _ in 0..980 {
            fast.record(1, 1_000);
        }
        for _ in 0..20 {
            slow.record(1, 50_000);
        }
        let mut pool = LatencySnapshot::empty();
        pool.merge(&fast.snapshot(1));
        pool.merge(&slow.snapshot(1));
        assert_eq!(pool.count, 1_000);
        // 2 % of the pool's requests are slow: p95 is fast, p99 is slow.
        assert!(close(pool.quantile_us(0.95).expect("p95"), 1_000.0));
        assert!(close(pool.quantile_us(0.99).expect("p99"), 50_000.0));
    }

    #[test]
    fn concurrent_writers_lose_nothing_within_a_period() {
        let w = std::sync::Arc::new(LatencyWindow::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = std::sync::Arc::clone(&w);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        w.record(42, (t * 10_000 + i) % 50_000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer");
        }
        assert_eq!(w.snapshot(42).count, 40_000);
    }
}
