//! Smooth weighted round robin, as nginx does it: every usable backend's current
//! weight grows by its weight, the largest wins and gives back the total. Weights
//! 5,1,1 give a a b a c a a, spreading the light backends instead of bunching them.

use std::sync::{Mutex, PoisonError};

use super::{Backend, Selector};

pub struct WeightedRoundRobin {
    /// nginx's `current_weight`, one per backend, same order as the list.
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    pub fn new(backends: &[Backend]) -> Self {
        WeightedRoundRobin { current: Mutex::new(vec![0; backends.len()]) }
    }
}

impl Selector for WeightedRoundRobin {
    fn pick(&self, backends: &[Backend], _key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        // The state is a few integers that are valid after any partial update, so a
        // panic elsewhere while holding the lock leaves nothing to repair.
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, (backend, cw)) in backends.iter().zip(current.iter_mut()).enumerate() {
            if !usable(i) {
                continue;
            }
            let weight = i64::from(backend.weight);
            *cw += weight;
            total += weight;
            // Strictly greater: on a tie the earlier backend wins, as in nginx.
            if best.is_none_or(|(_, best_cw)| *cw > best_cw) {
                best = Some((i, *cw));
            }
        }
        let (best, _) = best?;
        current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::backend::test_backends;

    fn picks(sel: &WeightedRoundRobin, b: &[Backend], count: usize) -> Vec<usize> {
        let usable = |i: usize| b[i].state.is_available(0);
        (0..count).map(|_| sel.pick(b, 0, &usable).unwrap()).collect()
    }

    #[test]
    fn weights_5_1_1_give_the_smooth_nginx_sequence() {
        let b = test_backends(&[5, 1, 1]);
        let sel = WeightedRoundRobin::new(&b);
        let seq = picks(&sel, &b, 14);
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn down_backend_leaves_the_rest_in_weight_proportion() {
        let b = test_backends(&[5, 1, 1]);
        b[1].state.set_healthy(false);
        let sel = WeightedRoundRobin::new(&b);
        let seq = picks(&sel, &b, 60);
        // Every cycle of 6 picks holds exactly five a and one c.
        for cycle in seq.chunks(6) {
            assert_eq!(cycle.iter().filter(|&&i| i == 0).count(), 5, "{seq:?}");
            assert_eq!(cycle.iter().filter(|&&i| i == 2).count(), 1, "{seq:?}");
        }
    }

    #[test]
    fn equal_weights_alternate_when_one_of_three_is_down() {
        let b = test_backends(&[1, 1, 1]);
        b[0].state.set_healthy(false);
        let sel = WeightedRoundRobin::new(&b);
        assert_eq!(picks(&sel, &b, 6), [1, 2, 1, 2, 1, 2]);
    }

    #[test]
    fn none_when_nothing_is_usable_or_list_is_empty() {
        let b = test_backends(&[2, 1]);
        let sel = WeightedRoundRobin::new(&b);
        assert_eq!(sel.pick(&b, 0, &|_| false), None);
        assert_eq!(sel.pick(&[], 0, &|_| true), None);
    }
}
