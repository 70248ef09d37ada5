//! The local stick table of one pool: key -> backend id with an absolute expiry in
//! wall-clock ms (the same clock the replicated log stamps, so entries applied
//! from a replicator and entries learned here expire alike). Sharded, each shard a
//! short `Mutex` never held across `.await`; bounded, evicting expired entries
//! first and then the entries closest to expiry (with refresh-on-use that is
//! least-recently-used order).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

const SHARDS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub backend: std::sync::Arc<str>,
    pub expires_at_ms: u64,
}

pub struct StickTable {
    shards: Vec<Mutex<HashMap<Box<str>, Entry>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl StickTable {
    /// A table holding at most about `max_entries` keys.
    pub fn new(max_entries: usize) -> Self {
        StickTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A panic cannot leave a shard half-written (single map operations).
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live entry of `key` at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Entry> {
        let shard = self.shard(key);
        shard.get(key).filter(|e| e.expires_at_ms > now_ms).cloned()
    }

    /// Pushes the expiry of a live entry to `expires_at_ms` (refresh on use).
    pub fn touch(&self, key: &str, expires_at_ms: u64) {
        if let Some(e) = self.shard(key).get_mut(key) {
            e.expires_at_ms = e.expires_at_ms.max(expires_at_ms);
        }
    }

    /// Inserts or replaces a mapping, evicting if the shard is full.
    pub fn upsert(&self, key: &str, backend: std::sync::Arc<str>, expires_at_ms: u64, now_ms: u64) {
        let mut shard = self.shard(key);
        if let Some(e) = shard.get_mut(key) {
            *e = Entry { backend, expires_at_ms };
            return;
        }
        if shard.len() >= self.per_shard {
            evict(&mut shard, self.per_shard, now_ms);
        }
        shard.insert(key.into(), Entry { backend, expires_at_ms });
    }

    pub fn remove(&self, key: &str) {
        self.shard(key).remove(key);
    }

    pub fn clear(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// Live entries (for replication snapshots and tests).
    pub fn entries(&self, now_ms: u64) -> Vec<(String, Entry)> {
        let mut out = Vec::new();
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(s.iter().filter(|(_, e)| e.expires_at_ms > now_ms).map(|(k, e)| (k.to_string(), e.clone())));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops expired entries; if that frees less than an eighth of the shard, also the
/// entries closest to expiry, so a full table costs one O(n) pass per n/8 inserts.
fn evict(shard: &mut HashMap<Box<str>, Entry>, cap: usize, now_ms: u64) {
    shard.retain(|_, e| e.expires_at_ms > now_ms);
    let target = cap - (cap / 8).max(1);
    if shard.len() <= target {
        return;
    }
    let mut expiries: Vec<u64> = shard.values().map(|e| e.expires_at_ms).collect();
    let cut_index = shard.len() - target - 1;
    let (_, cut, _) = expiries.select_nth_unstable(cut_index);
    let cut = *cut;
    let mut to_drop = shard.len() - target;
    shard.retain(|_, e| {
        if to_drop > 0 && e.expires_at_ms <= cut {
            to_drop -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_not_returned() {
        let t = StickTable::new(100);
        t.upsert("k", "b1".into(), 1_000, 0);
        assert_eq!(t.get("k", 999).unwrap().backend.as_ref(), "b1");
        assert!(t.get("k", 1_000).is_none());
    }

    #[test]
    fn size_is_bounded_and_oldest_go_first() {
        let t = StickTable::new(160);
        for i in 0..10_000u64 {
            t.upsert(&format!("key-{i}"), "b".into(), 1_000_000 + i, 0);
        }
        assert!(t.len() <= 160, "{}", t.len());
        // The most recent keys survive.
        assert!(t.get("key-9999", 0).is_some());
        assert!(t.get("key-0", 0).is_none());
    }

    #[test]
    fn touch_extends_but_never_shortens() {
        let t = StickTable::new(100);
        t.upsert("k", "b".into(), 500, 0);
        t.touch("k", 2_000);
        assert!(t.get("k", 1_500).is_some());
        t.touch("k", 10);
        assert!(t.get("k", 1_500).is_some());
    }
}
