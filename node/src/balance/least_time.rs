//! Least time by power of two choices: two distinct usable backends are drawn at
//! random and the one with the lower ewma_response_time × (in_flight + 1) / weight
//! wins. A backend with no measurement yet scores best, so new backends get tried.

use rand::Rng;

use super::{Backend, Selector};

pub struct LeastTime;

impl LeastTime {
    pub fn new(_backends: &[Backend]) -> Self {
        LeastTime
    }
}

impl Selector for LeastTime {
    fn pick(&self, backends: &[Backend], _key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let count = (0..backends.len()).filter(|&i| usable(i)).count();
        if count <= 1 {
            return (0..backends.len()).find(|&i| usable(i));
        }
        let mut rng = rand::rng();
        let first = rng.random_range(0..count);
        // Draw the second from the other count - 1 ranks, so the two always differ.
        let mut second = rng.random_range(0..count - 1);
        if second >= first {
            second += 1;
        }
        let (a, b) = match (nth_usable(backends.len(), usable, first), nth_usable(backends.len(), usable, second)) {
            (Some(a), Some(b)) => (a, b),
            // Usability changed between passes: take whichever is still found.
            (a, b) => return a.or(b).or_else(|| (0..backends.len()).find(|&i| usable(i))),
        };
        Some(if better(&backends[b], &backends[a]) { b } else { a })
    }
}

/// Index of the `rank`-th usable backend.
fn nth_usable(n: usize, usable: &dyn Fn(usize) -> bool, rank: usize) -> Option<usize> {
    (0..n).filter(|&i| usable(i)).nth(rank)
}

/// Whether `x` should be preferred over `y`: lower latency × load, then lower load.
fn better(x: &Backend, y: &Backend) -> bool {
    let load = |b: &Backend| u128::from(b.state.in_flight()) + 1;
    let weight = |b: &Backend| u128::from(b.weight);
    let ewma = |b: &Backend| u128::from(b.state.ewma_us());
    // ewma × load / weight compared by cross-multiplying; 0 (unknown) is best.
    // Saturating: only an absurd ewma could reach u128::MAX, and then ties are fine.
    let sx = ewma(x).saturating_mul(load(x)).saturating_mul(weight(y));
    let sy = ewma(y).saturating_mul(load(y)).saturating_mul(weight(x));
    if sx != sy {
        return sx < sy;
    }
    load(x) * weight(y) < load(y) * weight(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::backend::{pick_counts, test_backends};

    fn counts(b: &[Backend], picks: usize) -> Vec<usize> {
        pick_counts(&LeastTime::new(b), b, picks)
    }

    #[test]
    fn fast_backend_gets_the_large_majority() {
        let b = test_backends(&[1, 1]);
        b[0].state.observe_latency_us(1_000);
        b[1].state.observe_latency_us(50_000);
        let c = counts(&b, 1_000);
        assert!(c[0] > 800, "{c:?}");
    }

    #[test]
    fn fast_backend_wins_most_among_several() {
        let b = test_backends(&[1, 1, 1, 1]);
        b[0].state.observe_latency_us(1_000);
        for s in &b[1..] {
            s.state.observe_latency_us(50_000);
        }
        // Backend 0 is in half of all pairs and wins each; the slow ones split the rest.
        let c = counts(&b, 4_000);
        assert!((1_700..2_300).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn in_flight_load_offsets_a_lower_latency() {
        let b = test_backends(&[1, 1]);
        b[0].state.observe_latency_us(1_000);
        b[1].state.observe_latency_us(4_000);
        for _ in 0..9 {
            b[0].state.acquire(); // 1000 × 10 > 4000 × 1
        }
        assert_eq!(counts(&b, 50), [0, 50]);
    }

    #[test]
    fn unmeasured_backend_is_tried() {
        let b = test_backends(&[1, 1]);
        b[0].state.observe_latency_us(1_000);
        assert_eq!(counts(&b, 50), [0, 50]);
    }

    #[test]
    fn skips_unusable_and_handles_one_or_none() {
        let b = test_backends(&[1, 1, 1]);
        b[0].state.observe_latency_us(10);
        b[0].state.set_healthy(false);
        b[2].state.set_healthy(false);
        assert_eq!(counts(&b, 20), [0, 20, 0]);
        let sel = LeastTime::new(&b);
        assert_eq!(sel.pick(&b, 0, &|_| false), None);
        assert_eq!(sel.pick(&[], 0, &|_| true), None);
    }
}
