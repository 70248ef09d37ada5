//! Raft consensus for quorumlb: openraft type config, sled-backed log and state machine, authenticated cluster RPC.
//!
//! `ClusterNode` (in `node`) is the entry point; `ClusterState` is what it publishes;
//! sticky tables flow to the caller's `StickySink`. Nothing here parses the
//! load-balancer config: it is stored and replicated as text.

pub mod auth;
pub mod error;
pub mod log_store;
pub mod network;
pub mod node;
pub(crate) mod rpc;
pub mod state;
pub mod state_machine;
pub mod sticky;
pub mod types;

pub use error::{Error, Result};
pub use network::NodeReport;
pub use node::{ClusterNode, ClusterOptions, ClusterStatus, LeaderHooks, MemberStatus, Peer};
pub use state::{AuditEntry, BackendOverride, ClusterState, ConfigRecord, TokenRecord, UserRecord, VipAssignment};
pub use state_machine::SnapshotStats;
pub use sticky::{InMemoryStickySink, StickyRecord, StickySink};
pub use types::{
    BackendAdminState, Command, Member, NodeId, Outcome, Request, Response, Role, StickyEntry, TypeConfig,
};
