//! The replicated stick table as applied on this node: every node applies the same
//! Raft entries, so every node holds the same key -> backend mappings and a lookup
//! never leaves memory. Expiry times are the leader-stamped times from the log.

use std::collections::HashMap;
use std::sync::RwLock;

use raft_store::{StickyRecord, StickySink};

/// key -> (backend id, expires_at_ms in leader-stamped wall time).
type Table = HashMap<String, (String, u64)>;

/// Every replicated stick table, by name.
#[derive(Default)]
pub struct ReplicatedSticky {
    tables: RwLock<HashMap<String, Table>>,
}

impl ReplicatedSticky {
    /// The backend id for `key` in `table`, if mapped and not expired at `now_ms`.
    pub fn get(&self, table: &str, key: &str, now_ms: u64) -> Option<String> {
        let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let (backend, expires) = t.get(table)?.get(key)?;
        (*expires > now_ms).then(|| backend.clone())
    }

    pub fn len(&self) -> usize {
        self.tables.read().unwrap_or_else(|e| e.into_inner()).values().map(|t| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StickySink for ReplicatedSticky {
    fn upsert(&self, table: &str, key: &str, backend: &str, expires_at_ms: u64) {
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        t.entry(table.to_string()).or_default().insert(key.to_string(), (backend.to_string(), expires_at_ms));
    }

    fn remove(&self, table: &str, key: &str) {
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = t.get_mut(table) {
            m.remove(key);
        }
    }

    fn replace_all(&self, entries: Vec<StickyRecord>) {
        let mut fresh: HashMap<String, Table> = HashMap::new();
        for e in entries {
            fresh.entry(e.table).or_default().insert(e.key, (e.backend, e.expires_at_ms));
        }
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }
}
