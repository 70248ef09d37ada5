//! Sticky-session replication. New mappings learned by this node's proxy are
//! batched (many per log entry, every few ms) and proposed to Raft; every node
//! applies the batches to `ReplicatedSticky`, which keeps the full replicated
//! table and feeds the data plane's `StickyStore`, so a lookup never leaves
//! memory and a standby already knows every client when it takes the VIP.
//! Expiry times are the leader-stamped wall times from the log.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use raft_store::{ClusterNode, Command, StickyEntry, StickyRecord, StickySink};
use tokio::sync::{mpsc, watch};

use crate::sticky::{StickyStore, StickyUpdate, wall_ms};

/// key -> (backend id, expires_at_ms).
type Table = HashMap<String, (String, u64)>;

/// Every replicated stick table, by name (the pool name), plus the data plane's
/// store once it exists.
#[derive(Default)]
pub struct ReplicatedSticky {
    tables: RwLock<HashMap<String, Table>>,
    store: ArcSwapOption<StickyStore>,
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

    /// Connects the data plane's store and loads every replicated mapping into it.
    /// Call again after a config change creates new stick tables.
    pub fn attach(&self, store: Arc<StickyStore>) {
        self.store.store(Some(Arc::clone(&store)));
        self.sync_store();
    }

    /// Copies the whole replicated table into the data plane's store.
    pub fn sync_store(&self) {
        let guard = self.store.load();
        let Some(store) = guard.as_ref() else { return };
        let now = wall_ms();
        let entries: Vec<(String, String, String, u64)> = {
            let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
            t.iter()
                .flat_map(|(table, m)| {
                    m.iter()
                        .filter(|(_, (_, exp))| *exp > now)
                        .map(|(k, (b, exp))| (table.clone(), k.clone(), b.clone(), *exp))
                })
                .collect()
        };
        store.replace_all(entries);
    }
}

impl StickySink for ReplicatedSticky {
    fn upsert(&self, table: &str, key: &str, backend: &str, expires_at_ms: u64) {
        {
            let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
            t.entry(table.to_string()).or_default().insert(key.to_string(), (backend.to_string(), expires_at_ms));
        }
        if let Some(store) = self.store.load().as_ref() {
            store.upsert(table, key, backend, expires_at_ms);
        }
    }

    fn remove(&self, table: &str, key: &str) {
        {
            let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = t.get_mut(table) {
                m.remove(key);
            }
        }
        if let Some(store) = self.store.load().as_ref() {
            store.remove(table, key);
        }
    }

    fn replace_all(&self, entries: Vec<StickyRecord>) {
        let mut fresh: HashMap<String, Table> = HashMap::new();
        for e in entries {
            fresh.entry(e.table).or_default().insert(e.key, (e.backend, e.expires_at_ms));
        }
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.sync_store();
    }
}

/// Most mappings per log entry, and how long a mapping may wait for company.
const BATCH_MAX: usize = 512;
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// Proposes this node's new mappings to Raft in batches until `stop` fires.
pub async fn replicate(raft: ClusterNode, mut rx: mpsc::Receiver<StickyUpdate>, mut stop: watch::Receiver<bool>) {
    loop {
        let first = tokio::select! {
            u = rx.recv() => match u { Some(u) => u, None => return },
            _ = stop.changed() => return,
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(u)) => batch.push(u),
                Ok(None) | Err(_) => break,
            }
        }
        let now = wall_ms();
        let entries: Vec<StickyEntry> = batch
            .into_iter()
            .filter(|u| u.expires_at_ms > now)
            .map(|u| StickyEntry {
                table: u.table.to_string(),
                key: u.key,
                backend: u.backend.to_string(),
                ttl_ms: u.expires_at_ms - now,
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        let n = entries.len();
        if let Err(e) = raft.write(Command::StickyUpsert { entries }).await {
            // The mapping still works locally (and cookies carry their backend);
            // only its replication is lost.
            tracing::warn!(mappings = n, error = %e, "sticky batch not replicated");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicated_entries_reach_a_store_attached_later() {
        let r = ReplicatedSticky::default();
        let far = wall_ms() + 60_000;
        r.upsert("web", "10.0.0.1", "b1", far);
        r.upsert("web", "10.0.0.2", "b2", wall_ms().saturating_sub(1));
        assert_eq!(r.get("web", "10.0.0.1", wall_ms()).as_deref(), Some("b1"));
        assert_eq!(r.get("web", "10.0.0.2", wall_ms()), None, "expired");
        r.remove("web", "10.0.0.1");
        assert!(r.get("web", "10.0.0.1", wall_ms()).is_none());
        r.replace_all(vec![StickyRecord {
            table: "web".into(),
            key: "k".into(),
            backend: "b3".into(),
            expires_at_ms: far,
        }]);
        assert_eq!(r.len(), 1);
    }
}
