//! Raft type configuration for quorumlb: node id, member description, log payload
//! (`Request`/`Command`) and apply result (`Response`). Pure data, no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// Cluster-wide node identifier (the `[node] id` of each node's own file).
pub type NodeId = u64;

/// What a cluster member does. A witness votes and stores the log but runs no proxy
/// and never owns a VIP; the VIP controller reads this from the membership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Proxy,
    Witness,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Proxy => f.write_str("proxy"),
            Role::Witness => f.write_str("witness"),
        }
    }
}

/// The node type stored in Raft membership: where to reach a member and its role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `host:port` of the member's cluster listener.
    pub addr: String,
    pub role: Role,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.addr, self.role)
    }
}

/// Administrative state of one backend, as HAProxy operators know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendAdminState {
    Enabled,
    /// Finish open connections and sticky sessions, take no new ones.
    Draining,
    Disabled,
}

/// One sticky mapping as proposed by a node's proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickyEntry {
    pub table: String,
    pub key: String,
    pub backend: String,
    pub ttl_ms: u64,
}

/// A replicated command. Secrets arrive already hashed by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Replace the whole cluster config (TOML text, not parsed here). Bumps `config_version`.
    ReplaceConfig {
        toml: String,
        author: String,
        comment: Option<String>,
        /// Compare-and-set: applied only if `config_version` still equals this, so
        /// two admins editing the same base cannot overwrite each other.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_version: Option<u64>,
    },
    SetBackendState {
        pool: String,
        address: String,
        state: BackendAdminState,
        author: String,
    },
    SetBackendWeight {
        pool: String,
        address: String,
        weight: u32,
        author: String,
    },
    /// A batch of sticky mappings; `expires_at = stamped_ms + ttl_ms`.
    StickyUpsert {
        entries: Vec<StickyEntry>,
    },
    StickyRemove {
        table: String,
        keys: Vec<String>,
    },
    /// Applied only when `epoch` is greater than the VIP's current epoch (fencing).
    VipAssign {
        vip: String,
        owner: Option<NodeId>,
        epoch: u64,
    },
    /// The owner of `vip` at `epoch` confirms it removed the address (planned handover).
    VipReleased {
        vip: String,
        epoch: u64,
        node: NodeId,
    },
    UserUpsert {
        username: String,
        password_hash: String,
        author: String,
    },
    UserDelete {
        username: String,
        author: String,
    },
    TokenCreate {
        id: String,
        name: String,
        token_hash: String,
        author: String,
    },
    TokenRevoke {
        id: String,
        author: String,
    },
    /// A membership change (made through openraft, not through this log's
    /// commands) recorded in the audit trail by the node that made it.
    MembershipNote {
        author: String,
        summary: String,
    },
    /// Changes nothing but advances the replicated clock (sticky expiry).
    Noop,
}

impl Command {
    /// Short name used in logs and the audit trail.
    pub fn action(&self) -> &'static str {
        match self {
            Command::ReplaceConfig { .. } => "replace_config",
            Command::SetBackendState { .. } => "set_backend_state",
            Command::SetBackendWeight { .. } => "set_backend_weight",
            Command::StickyUpsert { .. } => "sticky_upsert",
            Command::StickyRemove { .. } => "sticky_remove",
            Command::VipAssign { .. } => "vip_assign",
            Command::VipReleased { .. } => "vip_released",
            Command::UserUpsert { .. } => "user_upsert",
            Command::UserDelete { .. } => "user_delete",
            Command::TokenCreate { .. } => "token_create",
            Command::TokenRevoke { .. } => "token_revoke",
            Command::MembershipNote { .. } => "membership",
            Command::Noop => "noop",
        }
    }
}

/// The Raft log payload: a command plus the leader's wall-clock time when it was
/// proposed. Every time-based effect uses `stamped_ms`, so all nodes apply identically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub cmd: Command,
    pub stamped_ms: u64,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.cmd.action(), self.stamped_ms)
    }
}

/// Whether a command took effect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Applied,
    Rejected {
        reason: String,
    },
    /// A compare-and-set lost: the state moved on since the writer read it.
    Conflict {
        reason: String,
    },
}

/// The result of applying one log entry, returned to the writer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    /// Index of the log entry that carried the command.
    pub log_index: u64,
    /// `config_version` after the entry was applied.
    pub config_version: u64,
    pub outcome: Outcome,
}

impl Response {
    pub fn is_applied(&self) -> bool {
        matches!(self.outcome, Outcome::Applied)
    }
}

openraft::declare_raft_types!(
    /// openraft type configuration of the quorumlb cluster.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Member>;
/// Members by id, as passed to `initialize`.
pub type Members = BTreeMap<NodeId, Member>;
