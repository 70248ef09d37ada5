//! `AdminBackend`: everything the admin API needs from the node, as one trait the node
//! implements (with raft-store underneath). admin-web never sees Raft or the data plane.
//!
//! Writes take the author (the authenticated user or token name) for the audit trail.
//! A node that is not the leader forwards writes to the leader inside its
//! implementation (raft-store's `ClusterNode::write` does), so handlers are the same on
//! every node. Implementors may write `async fn` for each method.

use std::future::Future;
use std::pin::Pin;

use crate::model::{
    AdminState, AuditEntry, CertificateReload, ClusterView, ConfigDocument, ConfigProblem, Health, NodeAdd, PoolStatus,
    StatsSnapshot, StoredToken, StoredUser, TokenInfo, UserInfo, WriteAck,
};

/// What went wrong inside the node. Messages must not contain secrets: they reach
/// API responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// A named thing (pool, backend, node, user, token) does not exist. -> 404
    #[error("{0}")]
    NotFound(String),
    /// The write lost a race or contradicts current state (stale base version,
    /// duplicate id). -> 409
    #[error("{0}")]
    Conflict(String),
    /// The state machine refused the command. -> 422
    #[error("{0}")]
    Rejected(String),
    /// No leader or no quorum right now; worth retrying. -> 503
    #[error("{0}")]
    Unavailable(String),
    /// Anything else. -> 500
    #[error("{0}")]
    Internal(String),
}

/// A config replacement, validated by admin-web before it is handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWrite {
    pub toml: String,
    pub comment: Option<String>,
    /// When set, the write must fail with `BackendError::Conflict` unless the current
    /// config version equals it. admin-web checks it too before writing; only a check
    /// inside the state machine closes the race between two writers completely.
    pub expected_version: Option<u64>,
    pub author: String,
}

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// The node as the admin API sees it. `Send + Sync + 'static`: one instance is shared by
/// every request.
pub trait AdminBackend: Send + Sync + 'static {
    /// Members, Raft state, VIP ownership, as known by this node.
    fn cluster(&self) -> impl Future<Output = Result<ClusterView, BackendError>> + Send;
    /// Every pool with its backends' health, admin state and live numbers.
    fn pools(&self) -> impl Future<Output = Result<Vec<PoolStatus>, BackendError>> + Send;
    /// The replicated config text and its version.
    fn config(&self) -> impl Future<Output = Result<ConfigDocument, BackendError>> + Send;
    /// Runs the node's config validator; `Err` holds every problem with its line.
    fn validate_config(&self, toml: &str) -> Result<(), Vec<ConfigProblem>>;
    /// Replaces the cluster config (a Raft command).
    fn replace_config(&self, write: ConfigWrite) -> impl Future<Output = Result<WriteAck, BackendError>> + Send;
    /// Drain, enable or disable one backend of a pool, cluster-wide.
    fn set_backend_state(
        &self,
        pool: &str,
        address: &str,
        state: AdminState,
        author: &str,
    ) -> impl Future<Output = Result<WriteAck, BackendError>> + Send;
    fn set_backend_weight(
        &self,
        pool: &str,
        address: &str,
        weight: u32,
        author: &str,
    ) -> impl Future<Output = Result<WriteAck, BackendError>> + Send;
    /// Re-reads certificate files on this node.
    fn reload_certificates(&self, author: &str)
    -> impl Future<Output = Result<CertificateReload, BackendError>> + Send;
    /// Adds a member as learner, waits for it to catch up, then makes it a voter.
    fn add_node(&self, node: NodeAdd, author: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
    fn remove_node(&self, id: u64, author: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// The replicated audit trail, oldest first.
    fn audit(&self) -> impl Future<Output = Result<Vec<AuditEntry>, BackendError>> + Send;
    fn users(&self) -> impl Future<Output = Result<Vec<UserInfo>, BackendError>> + Send;
    /// A user with its argon2 hash, for login.
    fn user(&self, username: &str) -> impl Future<Output = Result<Option<StoredUser>, BackendError>> + Send;
    /// Creates the user or replaces its hash. `password_hash` is a PHC string.
    fn upsert_user(
        &self,
        username: &str,
        password_hash: &str,
        author: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    fn delete_user(&self, username: &str, author: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenInfo>, BackendError>> + Send;
    /// The token with this id (the id is the public part of every token).
    fn token(&self, id: &str) -> impl Future<Output = Result<Option<StoredToken>, BackendError>> + Send;
    /// Stores a token's hash; the plaintext never reaches the backend.
    fn create_token(
        &self,
        id: &str,
        name: &str,
        token_hash: &str,
        author: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    fn revoke_token(&self, id: &str, author: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Per-pool live numbers for the SSE stream.
    fn stats(&self) -> impl Future<Output = Result<StatsSnapshot, BackendError>> + Send;
    /// Prometheus text exposition of this node.
    fn metrics_text(&self) -> impl Future<Output = Result<String, BackendError>> + Send;
    /// Liveness/readiness of this node for `/healthz` (no auth: keep it free of detail
    /// an outsider should not see).
    fn health(&self) -> impl Future<Output = Health> + Send;
    /// Key for signing session cookies; the same on every node of the cluster (derive
    /// it from the cluster secret) so a session is valid whichever node answers. At
    /// least 32 bytes.
    fn session_key(&self) -> Vec<u8>;
}

/// Object-safe twin of `AdminBackend`, so the router holds `Arc<dyn DynBackend>` and
/// handlers are not generic.
pub(crate) trait DynBackend: Send + Sync + 'static {
    fn cluster(&self) -> Fut<'_, ClusterView>;
    fn pools(&self) -> Fut<'_, Vec<PoolStatus>>;
    fn config(&self) -> Fut<'_, ConfigDocument>;
    fn validate_config(&self, toml: &str) -> Result<(), Vec<ConfigProblem>>;
    fn replace_config(&self, write: ConfigWrite) -> Fut<'_, WriteAck>;
    fn set_backend_state<'a>(&'a self, p: &'a str, a: &'a str, s: AdminState, by: &'a str) -> Fut<'a, WriteAck>;
    fn set_backend_weight<'a>(&'a self, p: &'a str, a: &'a str, w: u32, by: &'a str) -> Fut<'a, WriteAck>;
    fn reload_certificates<'a>(&'a self, by: &'a str) -> Fut<'a, CertificateReload>;
    fn add_node<'a>(&'a self, node: NodeAdd, by: &'a str) -> Fut<'a, ()>;
    fn remove_node<'a>(&'a self, id: u64, by: &'a str) -> Fut<'a, ()>;
    fn audit(&self) -> Fut<'_, Vec<AuditEntry>>;
    fn users(&self) -> Fut<'_, Vec<UserInfo>>;
    fn user<'a>(&'a self, name: &'a str) -> Fut<'a, Option<StoredUser>>;
    fn upsert_user<'a>(&'a self, name: &'a str, hash: &'a str, by: &'a str) -> Fut<'a, ()>;
    fn delete_user<'a>(&'a self, name: &'a str, by: &'a str) -> Fut<'a, ()>;
    fn tokens(&self) -> Fut<'_, Vec<TokenInfo>>;
    fn token<'a>(&'a self, id: &'a str) -> Fut<'a, Option<StoredToken>>;
    fn create_token<'a>(&'a self, id: &'a str, name: &'a str, hash: &'a str, by: &'a str) -> Fut<'a, ()>;
    fn revoke_token<'a>(&'a self, id: &'a str, by: &'a str) -> Fut<'a, ()>;
    fn stats(&self) -> Fut<'_, StatsSnapshot>;
    fn metrics_text(&self) -> Fut<'_, String>;
    fn health(&self) -> Pin<Box<dyn Future<Output = Health> + Send + '_>>;
    fn session_key(&self) -> Vec<u8>;
}

impl<T: AdminBackend> DynBackend for T {
    fn cluster(&self) -> Fut<'_, ClusterView> {
        Box::pin(AdminBackend::cluster(self))
    }
    fn pools(&self) -> Fut<'_, Vec<PoolStatus>> {
        Box::pin(AdminBackend::pools(self))
    }
    fn config(&self) -> Fut<'_, ConfigDocument> {
        Box::pin(AdminBackend::config(self))
    }
    fn validate_config(&self, toml: &str) -> Result<(), Vec<ConfigProblem>> {
        AdminBackend::validate_config(self, toml)
    }
    fn replace_config(&self, write: ConfigWrite) -> Fut<'_, WriteAck> {
        Box::pin(AdminBackend::replace_config(self, write))
    }
    fn set_backend_state<'a>(&'a self, p: &'a str, a: &'a str, s: AdminState, by: &'a str) -> Fut<'a, WriteAck> {
        Box::pin(AdminBackend::set_backend_state(self, p, a, s, by))
    }
    fn set_backend_weight<'a>(&'a self, p: &'a str, a: &'a str, w: u32, by: &'a str) -> Fut<'a, WriteAck> {
        Box::pin(AdminBackend::set_backend_weight(self, p, a, w, by))
    }
    fn reload_certificates<'a>(&'a self, by: &'a str) -> Fut<'a, CertificateReload> {
        Box::pin(AdminBackend::reload_certificates(self, by))
    }
    fn add_node<'a>(&'a self, node: NodeAdd, by: &'a str) -> Fut<'a, ()> {
        Box::pin(AdminBackend::add_node(self, node, by))
    }
    fn remove_node<'a>(&'a self, id: u64, by: &'a str) -> Fut<'a, ()> {
        Box::pin(AdminBackend::remove_node(self, id, by))
    }
    fn audit(&self) -> Fut<'_, Vec<AuditEntry>> {
        Box::pin(AdminBackend::audit(self))
    }
    fn users(&self) -> Fut<'_, Vec<UserInfo>> {
        Box::pin(AdminBackend::users(self))
    }
    fn user<'a>(&'a self, name: &'a str) -> Fut<'a, Option<StoredUser>> {
        Box::pin(AdminBackend::user(self, name))
    }
    fn upsert_user<'a>(&'a self, name: &'a str, hash: &'a str, by: &'a str) -> Fut<'a, ()> {
        Box::pin(AdminBackend::upsert_user(self, name, hash, by))
    }
    fn delete_user<'a>(&'a self, name: &'a str, by: &'a str) -> Fut<'a, ()> {
        Box::pin(AdminBackend::delete_user(self, name, by))
    }
    fn tokens(&self) -> Fut<'_, Vec<TokenInfo>> {
        Box::pin(AdminBackend::tokens(self))
    }
    fn token<'a>(&'a self, id: &'a str) -> Fut<'a, Option<StoredToken>> {
        Box::pin(AdminBackend::token(self, id))
    }
    fn create_token<'a>(&'a self, id: &'a str, name: &'a str, hash: &'a str, by: &'a str) -> Fut<'a, ()> {
        Box::pin(AdminBackend::create_token(self, id, name, hash, by))
    }
    fn revoke_token<'a>(&'a self, id: &'a str, by: &'a str) -> Fut<'a, ()> {
        Box::pin(AdminBackend::revoke_token(self, id, by))
    }
    fn stats(&self) -> Fut<'_, StatsSnapshot> {
        Box::pin(AdminBackend::stats(self))
    }
    fn metrics_text(&self) -> Fut<'_, String> {
        Box::pin(AdminBackend::metrics_text(self))
    }
    fn health(&self) -> Pin<Box<dyn Future<Output = Health> + Send + '_>> {
        Box::pin(AdminBackend::health(self))
    }
    fn session_key(&self) -> Vec<u8> {
        AdminBackend::session_key(self)
    }
}
