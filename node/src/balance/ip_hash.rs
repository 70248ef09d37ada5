//! IP hash, nginx-style: the key (the caller's hash of the client address) modulo
//! the number of backends, over the full list so a client stays put while the list
//! does. A down backend's clients are rehashed; nobody else's move.

use super::{Backend, Selector, hash_key};

/// Rehash attempts before falling back to a scan (nginx gives up after 20 too).
const REHASH_TRIES: u64 = 20;

pub struct IpHash;

impl IpHash {
    pub fn new(_backends: &[Backend]) -> Self {
        IpHash
    }
}

impl Selector for IpHash {
    fn pick(&self, backends: &[Backend], key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = backends.len() as u64;
        if n == 0 {
            return None;
        }
        // Both casts are lossless: len fits in u64, and key % n < len fits in usize.
        let home = (key % n) as usize;
        if usable(home) {
            return Some(home);
        }
        for attempt in 1..=REHASH_TRIES {
            let i = (rehash(key, attempt) % n) as usize;
            if usable(i) {
                return Some(i);
            }
        }
        (0..backends.len()).map(|step| (home + step) % backends.len()).find(|&i| usable(i))
    }

    fn uses_key(&self) -> bool {
        true
    }
}

/// A deterministic new hash for the `attempt`-th retry of `key`, equal on every node.
fn rehash(key: u64, attempt: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&key.to_le_bytes());
    buf[8..].copy_from_slice(&attempt.to_le_bytes());
    hash_key(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::backend::test_backends;

    #[test]
    fn key_maps_to_key_mod_n() {
        let b = test_backends(&[1, 1, 1, 1]);
        let sel = IpHash::new(&b);
        assert!(sel.uses_key());
        for key in [0u64, 1, 7, 42, u64::MAX] {
            let expected = (key % 4) as usize;
            assert_eq!(sel.pick(&b, key, &|_| true), Some(expected));
        }
    }

    #[test]
    fn down_backend_moves_only_its_own_keys_and_deterministically() {
        let b = test_backends(&[1, 1, 1, 1]);
        let sel = IpHash::new(&b);
        let all = |_: usize| true;
        let before: Vec<_> = (0..1_000u64).map(|k| sel.pick(&b, hash_key(&k.to_le_bytes()), &all)).collect();
        b[2].state.set_healthy(false);
        let usable = |i: usize| b[i].state.is_available(0);
        let mut spread = [0usize; 4];
        for (k, old) in (0..1_000u64).zip(&before) {
            let key = hash_key(&k.to_le_bytes());
            let new = sel.pick(&b, key, &usable).unwrap();
            assert_ne!(new, 2);
            if *old != Some(2) {
                assert_eq!(Some(new), *old, "key {k} moved off a healthy backend");
            } else {
                spread[new] += 1;
            }
            assert_eq!(sel.pick(&b, key, &usable), Some(new), "not deterministic");
        }
        // The down backend's keys are rehashed across all three others.
        assert!(spread.iter().enumerate().all(|(i, &c)| i == 2 || c > 30), "{spread:?}");
    }

    #[test]
    fn falls_back_to_a_scan_when_rehashing_misses() {
        let b = test_backends(&[1; 8]);
        let sel = IpHash::new(&b);
        // Only backend 5 is usable; every key must still find it.
        for key in 0..200u64 {
            assert_eq!(sel.pick(&b, key, &|i| i == 5), Some(5));
        }
        assert_eq!(sel.pick(&b, 3, &|_| false), None);
        assert_eq!(sel.pick(&[], 3, &|_| true), None);
    }
}
