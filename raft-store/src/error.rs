//! The crate's error type: what a caller of `ClusterNode` can get back. RPC-level
//! errors that stay inside openraft's network layer are mapped in `network`.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid cluster options: {0}")]
    InvalidOptions(String),

    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("storage: {0}")]
    Storage(String),

    #[error("binding cluster listener {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("raft: {0}")]
    Raft(String),

    /// This node is not the leader (only for operations that must run on the leader).
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },

    /// No leader could be found or reached before the deadline.
    #[error("no reachable leader within {waited:?} (last problem: {last})")]
    NoLeader { waited: Duration, last: String },

    /// The leader could not confirm that a quorum still follows it.
    #[error("leadership not confirmed by a quorum: {0}")]
    NoQuorum(String),

    /// A peer answered a cluster RPC with an error.
    #[error("cluster rpc to {peer}: {message}")]
    Rpc { peer: String, message: String },

    #[error("cluster node is shut down")]
    Shutdown,
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
