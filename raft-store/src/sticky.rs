//! The replicated sticky tables: the authoritative copy the state machine keeps for
//! snapshots, and the `StickySink` through which every change reaches the node's own
//! lookup table. Lookups never come here; they stay in the node's memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One stick-table mapping with its absolute expiry (leader-stamped clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickyRecord {
    pub table: String,
    pub key: String,
    pub backend: String,
    pub expires_at_ms: u64,
}

/// Receives every applied sticky change, in log order. Called while the state machine
/// applies a batch, so implementations must be quick and must not block on I/O.
pub trait StickySink: Send + Sync + 'static {
    fn upsert(&self, table: &str, key: &str, backend: &str, expires_at_ms: u64);
    fn remove(&self, table: &str, key: &str);
    /// The replicated clock passed `expires_at` of this entry. Defaults to `remove`.
    fn expired(&self, table: &str, key: &str) {
        self.remove(table, key);
    }
    /// Replace the whole table (startup from a snapshot, or a snapshot installed from
    /// the leader).
    fn replace_all(&self, entries: Vec<StickyRecord>);
}

/// A plain `Mutex<HashMap>` sink for tests and tools; the proxy has its own table.
#[derive(Debug, Default)]
pub struct InMemoryStickySink {
    map: Mutex<HashMap<(String, String), (String, u64)>>,
}

impl InMemoryStickySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// `(backend, expires_at_ms)` of one mapping.
    pub fn get(&self, table: &str, key: &str) -> Option<(String, u64)> {
        self.lock().get(&(table.to_string(), key.to_string())).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (String, u64)>> {
        // A panic while holding this lock cannot leave the map half-updated (each
        // operation is a single insert/remove), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StickySink for InMemoryStickySink {
    fn upsert(&self, table: &str, key: &str, backend: &str, expires_at_ms: u64) {
        self.lock().insert((table.to_string(), key.to_string()), (backend.to_string(), expires_at_ms));
    }

    fn remove(&self, table: &str, key: &str) {
        self.lock().remove(&(table.to_string(), key.to_string()));
    }

    fn replace_all(&self, entries: Vec<StickyRecord>) {
        let mut map = self.lock();
        map.clear();
        for e in entries {
            map.insert((e.table, e.key), (e.backend, e.expires_at_ms));
        }
    }
}

/// The state machine's copy of all stick tables, indexed by expiry so that dropping
/// expired entries costs only the entries dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct StickyTables {
    entries: BTreeMap<(String, String), (String, u64)>,
    by_expiry: BTreeSet<(u64, String, String)>,
}

impl StickyTables {
    pub(crate) fn from_records(records: Vec<StickyRecord>) -> Self {
        let mut t = Self::default();
        for r in records {
            t.insert(r.table, r.key, r.backend, r.expires_at_ms);
        }
        t
    }

    pub(crate) fn records(&self) -> Vec<StickyRecord> {
        self.entries
            .iter()
            .map(|((table, key), (backend, exp))| StickyRecord {
                table: table.clone(),
                key: key.clone(),
                backend: backend.clone(),
                expires_at_ms: *exp,
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn insert(&mut self, table: String, key: String, backend: String, exp: u64) {
        let k = (table, key);
        if let Some((_, old_exp)) = self.entries.get(&k) {
            self.by_expiry.remove(&(*old_exp, k.0.clone(), k.1.clone()));
        }
        self.by_expiry.insert((exp, k.0.clone(), k.1.clone()));
        self.entries.insert(k, (backend, exp));
    }

    /// Returns whether the mapping existed.
    pub(crate) fn remove(&mut self, table: &str, key: &str) -> bool {
        let k = (table.to_string(), key.to_string());
        match self.entries.remove(&k) {
            Some((_, exp)) => {
                self.by_expiry.remove(&(exp, k.0, k.1));
                true
            }
            None => false,
        }
    }

    /// Drops every mapping with `expires_at <= now_ms`; returns the dropped keys.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<(String, String)> {
        let mut dropped = Vec::new();
        while let Some(first) = self.by_expiry.first() {
            if first.0 > now_ms {
                break;
            }
            if let Some((_, table, key)) = self.by_expiry.pop_first() {
                self.entries.remove(&(table.clone(), key.clone()));
                dropped.push((table, key));
            }
        }
        dropped
    }

    #[cfg(test)]
    pub(crate) fn get(&self, table: &str, key: &str) -> Option<&(String, u64)> {
        self.entries.get(&(table.to_string(), key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_drops_only_due_entries_and_reinsert_moves_expiry() {
        let mut t = StickyTables::default();
        t.insert("web".into(), "a".into(), "b1".into(), 100);
        t.insert("web".into(), "b".into(), "b2".into(), 200);
        t.insert("web".into(), "a".into(), "b1".into(), 300);
        assert_eq!(t.expire(150), Vec::<(String, String)>::new());
        assert_eq!(t.expire(200), vec![("web".to_string(), "b".to_string())]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("web", "a"), Some(&("b1".to_string(), 300)));
        assert!(t.remove("web", "a"));
        assert!(!t.remove("web", "a"));
        assert!(t.expire(u64::MAX).is_empty());
    }

    #[test]
    fn in_memory_sink_replace_all_clears_previous_entries() {
        let s = InMemoryStickySink::new();
        s.upsert("t", "old", "x", 5);
        s.replace_all(vec![StickyRecord {
            table: "t".into(),
            key: "new".into(),
            backend: "y".into(),
            expires_at_ms: 9,
        }]);
        assert_eq!(s.get("t", "old"), None);
        assert_eq!(s.get("t", "new"), Some(("y".to_string(), 9)));
        assert_eq!(s.len(), 1);
    }
}
