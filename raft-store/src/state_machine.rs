//! openraft `RaftStateMachine` + `RaftSnapshotBuilder`: applies entries to
//! `ClusterData`, publishes `Arc<ClusterState>` on a watch channel, pushes sticky
//! changes to the node's `StickySink`, and keeps the latest snapshot on sled.
//! On start it restores from that snapshot; openraft then re-applies the committed
//! log after it, so restart never loses committed state.

use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::state::{ClusterData, ClusterState};
use crate::sticky::{StickyRecord, StickySink, StickyTables};
use crate::types::{Entry, LogId, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

/// What a snapshot's bytes hold.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    state: ClusterState,
    sticky: Vec<StickyRecord>,
}

struct Inner {
    data: ClusterData,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Latest built or installed snapshot (also on sled).
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    snapshots_built: u64,
    snapshots_installed: u64,
}

/// Counters about snapshots, for tests and the status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotStats {
    pub built: u64,
    pub installed: u64,
    /// Last log index covered by the current snapshot.
    pub last_index: Option<u64>,
}

/// The state machine store. Clones share the same state.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<Inner>>,
    tree: sled::Tree,
    sink: Arc<dyn StickySink>,
    state_tx: Arc<watch::Sender<Arc<ClusterState>>>,
}

fn decode_body(bytes: &[u8]) -> Result<SnapshotBody, serde_json::Error> {
    serde_json::from_slice(bytes)
}

impl StateMachineStore {
    /// Opens the state machine, restoring the latest persisted snapshot if any, and
    /// hands the sticky table of that snapshot to `sink`.
    pub fn open(db: &sled::Db, sink: Arc<dyn StickySink>) -> Result<Self, crate::Error> {
        let tree = db.open_tree("state_machine")?;
        let meta = tree.get(KEY_SNAPSHOT_META)?;
        let data = tree.get(KEY_SNAPSHOT_DATA)?;
        let mut inner = Inner {
            data: ClusterData::default(),
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
            snapshots_installed: 0,
        };
        if let (Some(meta), Some(data)) = (meta, data) {
            let meta: SnapshotMeta = serde_json::from_slice(&meta)
                .map_err(|e| crate::Error::Storage(format!("stored snapshot meta: {e}")))?;
            let body = decode_body(&data).map_err(|e| crate::Error::Storage(format!("stored snapshot data: {e}")))?;
            inner.last_applied = body.last_applied;
            inner.last_membership = body.last_membership;
            inner.data = ClusterData { state: body.state, sticky: StickyTables::from_records(body.sticky.clone()) };
            sink.replace_all(body.sticky);
            inner.snapshot = Some((meta, data.to_vec()));
        } else {
            sink.replace_all(Vec::new());
        }
        let (state_tx, _) = watch::channel(Arc::new(inner.data.state.clone()));
        Ok(Self { inner: Arc::new(Mutex::new(inner)), tree, sink, state_tx: Arc::new(state_tx) })
    }

    /// Receiver of the state published after every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state_tx.subscribe()
    }

    pub fn snapshot_stats(&self) -> SnapshotStats {
        let g = self.lock();
        SnapshotStats {
            built: g.snapshots_built,
            installed: g.snapshots_installed,
            last_index: g.snapshot.as_ref().and_then(|(m, _)| m.last_log_id.map(|l| l.index)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation under this lock either completes or leaves `Inner` as it was
        // before the entry (no await, no fallible step half-way), so poison is benign.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, state: ClusterState) {
        self.state_tx.send_replace(Arc::new(state));
    }

    async fn persist_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let sig = Some(meta.signature());
        let meta_bytes = serde_json::to_vec(meta).map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        let mut batch = sled::Batch::default();
        batch.insert(KEY_SNAPSHOT_META, meta_bytes);
        batch.insert(KEY_SNAPSHOT_DATA, data);
        self.tree.apply_batch(batch).map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        self.tree.flush_async().await.map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        // Copy under the lock, serialise outside it so applying is not held up.
        let (data, last_applied, last_membership, seq) = {
            let mut g = self.lock();
            g.snapshots_built += 1;
            (g.data.clone(), g.last_applied, g.last_membership.clone(), g.snapshots_built)
        };
        let body = SnapshotBody {
            last_applied,
            last_membership: last_membership.clone(),
            state: data.state,
            sticky: data.sticky.records(),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, seq),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id };
        self.persist_snapshot(&meta, &bytes).await?;
        self.lock().snapshot = Some((meta.clone(), bytes.clone()));
        tracing::info!(snapshot = %meta, bytes = bytes.len(), "built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let g = self.lock();
        Ok((g.last_applied, g.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let sink = Arc::clone(&self.sink);
        let published = {
            let mut g = self.lock();
            let mut out = Vec::new();
            for entry in entries {
                let index = entry.log_id.index;
                g.last_applied = Some(entry.log_id);
                let resp = match entry.payload {
                    EntryPayload::Blank => g.data.apply_marker(index),
                    EntryPayload::Normal(req) => g.data.apply(index, &req, sink.as_ref()),
                    EntryPayload::Membership(m) => {
                        g.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        g.data.apply_marker(index)
                    }
                };
                out.push(resp);
            }
            (out, g.data.state.clone())
        };
        let (responses, state) = published;
        self.publish(state);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let body = decode_body(&bytes).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.persist_snapshot(meta, &bytes).await?;
        let records = body.sticky;
        let state = {
            let mut g = self.lock();
            g.data = ClusterData { state: body.state, sticky: StickyTables::from_records(records.clone()) };
            g.last_applied = meta.last_log_id;
            g.last_membership = meta.last_membership.clone();
            g.snapshot = Some((meta.clone(), bytes));
            g.snapshots_installed += 1;
            g.data.state.clone()
        };
        self.sink.replace_all(records);
        self.publish(state);
        tracing::info!(snapshot = %meta, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let g = self.lock();
        Ok(g.snapshot
            .as_ref()
            .map(|(meta, bytes)| Snapshot { meta: meta.clone(), snapshot: Box::new(Cursor::new(bytes.clone())) }))
    }
}
