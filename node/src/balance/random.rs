//! Weighted random: each usable backend is chosen with probability weight / total
//! weight of the usable ones. Stateless, so it needs no coordination between workers.

use rand::Rng;

use super::{Backend, Selector};

pub struct Random;

impl Random {
    pub fn new(_backends: &[Backend]) -> Self {
        Random
    }
}

impl Selector for Random {
    fn pick(&self, backends: &[Backend], _key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = (0..backends.len()).filter(|&i| usable(i)).map(|i| u64::from(backends[i].weight)).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rand::rng().random_range(0..total);
        let mut last = None;
        for (i, backend) in backends.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            let weight = u64::from(backend.weight);
            if ticket < weight {
                return Some(i);
            }
            ticket -= weight;
            last = Some(i);
        }
        // Only reached when a backend went down between the two passes.
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::backend::{pick_counts, test_backends};

    fn counts(b: &[Backend], picks: usize) -> Vec<usize> {
        pick_counts(&Random::new(b), b, picks)
    }

    #[test]
    fn spreads_in_weight_proportion() {
        let b = test_backends(&[1, 1, 2]);
        let c = counts(&b, 10_000);
        // Expected 2500, 2500, 5000; bounds are > 8 standard deviations wide.
        assert!((2100..2900).contains(&c[0]), "{c:?}");
        assert!((2100..2900).contains(&c[1]), "{c:?}");
        assert!((4600..5400).contains(&c[2]), "{c:?}");
    }

    #[test]
    fn never_picks_unusable() {
        let b = test_backends(&[1, 5, 1]);
        b[1].state.set_healthy(false);
        let c = counts(&b, 2_000);
        assert_eq!(c[1], 0);
        assert!(c[0] > 800 && c[2] > 800, "{c:?}");
    }

    #[test]
    fn none_when_nothing_is_usable_or_list_is_empty() {
        let b = test_backends(&[1, 1]);
        let sel = Random::new(&b);
        assert_eq!(sel.pick(&b, 0, &|_| false), None);
        assert_eq!(sel.pick(&[], 0, &|_| true), None);
    }
}
