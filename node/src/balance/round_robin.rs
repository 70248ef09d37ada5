//! Round robin: a shared counter walks the list one step per pick, skipping
//! backends that are not usable. Weights are ignored (see `weighted_round_robin`).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Backend, Selector};

pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(_backends: &[Backend]) -> Self {
        RoundRobin { next: AtomicUsize::new(0) }
    }
}

impl Selector for RoundRobin {
    fn pick(&self, backends: &[Backend], _key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for step in 0..n {
            let i = start.wrapping_add(step) % n;
            if usable(i) {
                // Move the counter past what we skipped, so the backend after a down
                // one is not picked twice in a row.
                if step > 0 {
                    self.next.fetch_add(step, Ordering::Relaxed);
                }
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::backend::test_backends;

    fn picks(sel: &RoundRobin, b: &[Backend], count: usize) -> Vec<usize> {
        let usable = |i: usize| b[i].state.is_available(0);
        (0..count).map(|_| sel.pick(b, 0, &usable).unwrap()).collect()
    }

    #[test]
    fn cycles_in_list_order() {
        let b = test_backends(&[1, 1, 1]);
        let sel = RoundRobin::new(&b);
        assert_eq!(picks(&sel, &b, 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn down_backend_is_skipped_and_the_rest_alternate() {
        let b = test_backends(&[1, 1, 1]);
        b[1].state.set_healthy(false);
        let sel = RoundRobin::new(&b);
        assert_eq!(picks(&sel, &b, 6), [0, 2, 0, 2, 0, 2]);
    }

    #[test]
    fn none_when_nothing_is_usable_or_list_is_empty() {
        let b = test_backends(&[1, 1]);
        let sel = RoundRobin::new(&b);
        assert_eq!(sel.pick(&b, 0, &|_| false), None);
        assert_eq!(sel.pick(&[], 0, &|_| true), None);
    }
}
