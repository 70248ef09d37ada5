//! Consistent hashing on a ketama ring: each backend owns 160 points per unit of
//! weight, placed by hashing its id, and a key goes to the owner of the first point
//! at or after it. Adding, removing or downing a backend moves only the keys it
//! gains or loses; a down backend's keys walk on to the next usable owner.

use super::{Backend, Selector, hash_key};

/// Points per unit of weight (ketama's 160: about ±10% load spread between backends).
const POINTS_PER_WEIGHT: u32 = 160;
/// Weights above this count as this much (HAProxy's maximum), bounding the ring at
/// 40,960 points (640 KiB) per backend.
const MAX_WEIGHT: u32 = 256;

pub struct ConsistentHash {
    /// (position, backend index), sorted by position.
    ring: Vec<(u64, usize)>,
}

impl ConsistentHash {
    pub fn new(backends: &[Backend]) -> Self {
        let total = backends.iter().map(|b| points_for(b) as usize).sum();
        let mut ring = Vec::with_capacity(total);
        let mut buf = Vec::new();
        for (i, backend) in backends.iter().enumerate() {
            // Positions depend on the id and the point number only, so every node
            // builds the same ring and a weight change keeps the lower points in place.
            for point in 0..points_for(backend) {
                buf.clear();
                buf.extend_from_slice(backend.id.as_bytes());
                buf.extend_from_slice(&point.to_le_bytes());
                ring.push((hash_key(&buf), i));
            }
        }
        // Break (astronomically rare) position ties by id, not list order, so the
        // ring does not depend on where a backend sits in the config.
        ring.sort_unstable_by(|(pa, ia), (pb, ib)| pa.cmp(pb).then_with(|| backends[*ia].id.cmp(&backends[*ib].id)));
        ConsistentHash { ring }
    }
}

fn points_for(backend: &Backend) -> u32 {
    POINTS_PER_WEIGHT * backend.weight.clamp(1, MAX_WEIGHT)
}

impl Selector for ConsistentHash {
    fn pick(&self, backends: &[Backend], key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = backends.len();
        let len = self.ring.len();
        if n == 0 || len == 0 {
            return None;
        }
        let start = self.ring.partition_point(|&(pos, _)| pos < key);
        // Walk a bounded stretch of the ring (runs of one owner are cheap); if most
        // backends are down and the walk finds nothing, scan the list instead.
        let walk = len.min(16 * n + 64);
        let mut last = usize::MAX;
        for step in 0..walk {
            let owner = self.ring[(start + step) % len].1;
            if owner != last && owner < n && usable(owner) {
                return Some(owner);
            }
            last = owner;
        }
        let home = self.ring[start % len].1;
        (0..n).map(|step| (home + step) % n).find(|&i| usable(i))
    }

    fn uses_key(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::backend::test_backends;

    const KEYS: u64 = 10_000;

    fn key(k: u64) -> u64 {
        hash_key(format!("client-{k}").as_bytes())
    }

    /// The id of the backend each key lands on.
    fn assign(b: &[Backend], usable: &dyn Fn(usize) -> bool) -> Vec<std::sync::Arc<str>> {
        let sel = ConsistentHash::new(b);
        (0..KEYS).map(|k| b[sel.pick(b, key(k), usable).unwrap()].id.clone()).collect()
    }

    fn moved(before: &[std::sync::Arc<str>], after: &[std::sync::Arc<str>]) -> Vec<usize> {
        (0..before.len()).filter(|&k| before[k] != after[k]).collect()
    }

    #[test]
    fn same_list_gives_same_mapping_across_builds() {
        let b = test_backends(&[1, 1, 1, 1]);
        let again = test_backends(&[1, 1, 1, 1]);
        assert!(ConsistentHash::new(&b).uses_key());
        assert_eq!(assign(&b, &|_| true), assign(&again, &|_| true));
    }

    #[test]
    fn keys_spread_evenly_over_equal_backends() {
        let b = test_backends(&[1, 1, 1, 1]);
        let ids = assign(&b, &|_| true);
        for backend in &b {
            let share = ids.iter().filter(|id| **id == backend.id).count() as f64 / KEYS as f64;
            eprintln!("share of {}: {share:.3}", backend.addr);
            assert!((0.15..0.35).contains(&share), "{share}");
        }
    }

    #[test]
    fn weight_sets_the_share() {
        let b = test_backends(&[1, 3]);
        let ids = assign(&b, &|_| true);
        let share = ids.iter().filter(|id| **id == b[0].id).count() as f64 / KEYS as f64;
        eprintln!("share of weight 1 against weight 3: {share:.3}");
        assert!((0.18..0.32).contains(&share), "{share}");
    }

    #[test]
    fn adding_a_fifth_backend_moves_only_keys_it_takes() {
        let five = test_backends(&[1; 5]);
        let before = assign(&five[..4], &|_| true);
        let after = assign(&five, &|_| true);
        let moved = moved(&before, &after);
        let fraction = moved.len() as f64 / KEYS as f64;
        eprintln!("adding 1 to 4 moved {fraction:.3} of keys");
        assert!(fraction < 0.25, "{fraction}");
        assert!(moved.iter().all(|&k| after[k] == five[4].id));
    }

    #[test]
    fn removing_one_of_five_moves_only_its_keys() {
        let five = test_backends(&[1; 5]);
        let before = assign(&five, &|_| true);
        let four: Vec<_> = five.iter().filter(|b| b.id != five[2].id).cloned().collect();
        let after = assign(&four, &|_| true);
        let moved = moved(&before, &after);
        eprintln!("removing 1 of 5 moved {:.3} of keys", moved.len() as f64 / KEYS as f64);
        assert!(moved.iter().all(|&k| before[k] == five[2].id));
        assert_eq!(moved.len(), before.iter().filter(|id| **id == five[2].id).count());
    }

    #[test]
    fn down_backend_sends_its_keys_where_removing_it_would() {
        let five = test_backends(&[1; 5]);
        five[2].state.set_healthy(false);
        let down = assign(&five, &|i| five[i].state.is_available(0));
        let four: Vec<_> = five.iter().filter(|b| b.id != five[2].id).cloned().collect();
        assert_eq!(down, assign(&four, &|_| true));
    }

    #[test]
    fn finds_the_last_usable_backend_and_none_when_all_are_down() {
        let b = test_backends(&[1; 16]);
        let sel = ConsistentHash::new(&b);
        for k in 0..500 {
            assert_eq!(sel.pick(&b, key(k), &|i| i == 11), Some(11));
        }
        assert_eq!(sel.pick(&b, 1, &|_| false), None);
        assert_eq!(ConsistentHash::new(&[]).pick(&[], 1, &|_| true), None);
    }
}
