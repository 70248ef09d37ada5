//! The Raft log on sled: vote, entries, committed id and last purged id. Every write
//! that openraft must be able to rely on (vote, append, truncate, purge) is flushed to
//! disk before it is acknowledged. It does not hold the state machine (`state_machine`).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// sled-backed `RaftLogStorage`. Cheap to clone: clones share the same trees.
#[derive(Clone)]
pub struct LogStore {
    logs: sled::Tree,
    meta: sled::Tree,
}

/// What can go wrong below openraft's error types (kept small; mapped at the edge).
#[derive(Debug, thiserror::Error)]
enum IoError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, IoError> {
    Ok(serde_json::to_vec(v)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, IoError> {
    Ok(serde_json::from_slice(bytes)?)
}

fn bound_key(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(i.to_be_bytes()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl LogStore {
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self { logs: db.open_tree("raft_log")?, meta: db.open_tree("raft_meta")? })
    }

    /// True when nothing was ever stored: no vote, no log, nothing purged. Only such a
    /// node may initialise a new cluster.
    pub fn is_pristine(&self) -> Result<bool, sled::Error> {
        Ok(self.meta.get(KEY_VOTE)?.is_none() && self.meta.get(KEY_LAST_PURGED)?.is_none() && self.logs.is_empty())
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, IoError> {
        match self.meta.get(key)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        self.logs.flush_async().await.map(|_| ())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let r = (bound_key(range.start_bound()), bound_key(range.end_bound()));
        let mut out = Vec::new();
        for item in self.logs.range(r) {
            let (_, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(decode::<Entry>(&v).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_meta(KEY_LAST_PURGED).map_err(|e| StorageIOError::read_logs(&e))?;
        let last = match self.logs.last().map_err(|e| StorageIOError::read_logs(&e))? {
            Some((_, v)) => Some(decode::<Entry>(&v).map_err(|e| StorageIOError::read_logs(&e))?.log_id),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.meta
            .insert(KEY_VOTE, encode(vote).map_err(|e| StorageIOError::write_vote(&e))?)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.flush().await.map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: losing it only means re-learning the commit index
        // from the leader; the next flush (any append) persists it anyway.
        self.meta
            .insert(KEY_COMMITTED, encode(&committed).map_err(|e| StorageIOError::write(&e))?)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let c = self.read_meta::<Option<LogId>>(KEY_COMMITTED).map_err(|e| StorageIOError::read(&e))?;
        Ok(c.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        let res = match self.logs.apply_batch(batch) {
            Ok(()) => self.flush().await,
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index.to_be_bytes();
        let mut batch = sled::Batch::default();
        for item in self.logs.range(from..) {
            let (k, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.logs.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush().await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash in between leaves extra entries, never
        // a gap that the log state does not explain.
        self.meta
            .insert(KEY_LAST_PURGED, encode(&log_id).map_err(|e| StorageIOError::write(&e))?)
            .map_err(|e| StorageIOError::write(&e))?;
        let upto = log_id.index.to_be_bytes();
        let mut batch = sled::Batch::default();
        for item in self.logs.range(..=upto) {
            let (k, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.logs.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush().await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
    }

    #[tokio::test]
    async fn vote_log_and_purge_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let mut s = LogStore::open(&db).unwrap();
            assert!(s.is_pristine().unwrap());
            s.save_vote(&Vote::new(3, 1)).await.unwrap();
            let mut batch = sled::Batch::default();
            for i in 1..=10u64 {
                batch.insert(&i.to_be_bytes(), encode(&entry(i)).unwrap());
            }
            s.logs.apply_batch(batch).unwrap();
            s.truncate(entry(8).log_id).await.unwrap();
            s.purge(entry(3).log_id).await.unwrap();
            s.save_committed(Some(entry(5).log_id)).await.unwrap();
            s.flush().await.unwrap();
        }
        let db = sled::open(dir.path()).unwrap();
        let mut s = LogStore::open(&db).unwrap();
        assert!(!s.is_pristine().unwrap());
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(7));
        let got: Vec<u64> = s.try_get_log_entries(0..100).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(got, vec![4, 5, 6, 7]);
        assert_eq!(s.read_committed().await.unwrap().map(|l| l.index), Some(5));
    }
}
