//! Weighted least connections: the usable backend with the fewest in-flight
//! requests per unit of weight wins, counting the request about to be sent
//! ((in_flight + 1) / weight). Ties go round robin, so idle equal backends share load.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Backend, Selector};

pub struct LeastConn {
    /// Where the scan starts; rotating it breaks ties in turn.
    next: AtomicUsize,
}

impl LeastConn {
    pub fn new(_backends: &[Backend]) -> Self {
        LeastConn { next: AtomicUsize::new(0) }
    }
}

impl Selector for LeastConn {
    fn pick(&self, backends: &[Backend], _key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // (index, in_flight + 1, weight) of the best so far.
        let mut best: Option<(usize, u64, u64)> = None;
        for step in 0..n {
            let i = start.wrapping_add(step) % n;
            if !usable(i) {
                continue;
            }
            let load = u64::from(backends[i].state.in_flight()) + 1;
            let weight = u64::from(backends[i].weight);
            // load/weight < best_load/best_weight, without division or floats.
            if best.is_none_or(|(_, bl, bw)| load * bw < bl * weight) {
                best = Some((i, load, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::backend::test_backends;

    fn set_in_flight(b: &Backend, n: u32) {
        for _ in 0..n {
            b.state.acquire();
        }
    }

    #[test]
    fn picks_the_backend_with_fewest_in_flight() {
        let b = test_backends(&[1, 1, 1]);
        set_in_flight(&b[0], 2);
        set_in_flight(&b[2], 1);
        let sel = LeastConn::new(&b);
        for _ in 0..5 {
            assert_eq!(sel.pick(&b, 0, &|_| true), Some(1));
        }
    }

    #[test]
    fn weight_scales_the_load() {
        // a: 3 in flight, weight 4 -> 4/4 = 1; b: 1 in flight, weight 1 -> 2/1 = 2.
        let b = test_backends(&[4, 1]);
        set_in_flight(&b[0], 3);
        set_in_flight(&b[1], 1);
        let sel = LeastConn::new(&b);
        assert_eq!(sel.pick(&b, 0, &|_| true), Some(0));
    }

    #[test]
    fn ties_rotate_so_equal_backends_share_load() {
        let b = test_backends(&[1, 1, 1]);
        let sel = LeastConn::new(&b);
        let seq: Vec<_> = (0..6).map(|_| sel.pick(&b, 0, &|_| true).unwrap()).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn held_connections_spread_in_weight_proportion() {
        let b = test_backends(&[2, 1]);
        let sel = LeastConn::new(&b);
        for _ in 0..30 {
            let i = sel.pick(&b, 0, &|_| true).unwrap();
            b[i].state.acquire();
        }
        assert_eq!((b[0].state.in_flight(), b[1].state.in_flight()), (20, 10));
    }

    #[test]
    fn skips_unusable_even_when_it_is_least_loaded() {
        let b = test_backends(&[1, 1]);
        set_in_flight(&b[1], 10);
        b[0].state.set_healthy(false);
        let sel = LeastConn::new(&b);
        let usable = |i: usize| b[i].state.is_available(0);
        assert_eq!(sel.pick(&b, 0, &usable), Some(1));
        assert_eq!(sel.pick(&b, 0, &|_| false), None);
        assert_eq!(sel.pick(&[], 0, &|_| true), None);
    }
}
