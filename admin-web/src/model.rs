//! The data the admin API exchanges: every request and response body, with serde and
//! OpenAPI schemas. Pure data; nothing here talks to the node or holds a secret that
//! could be serialized (the two credential records at the end are not `Serialize`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The Raft role a member currently plays, as seen by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RaftState {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
    /// This node cannot tell (e.g. a member it has no recent contact with).
    Unknown,
}

/// What a member does: a proxy runs the data plane and may own VIPs; a witness only votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Proxy,
    Witness,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    pub id: u64,
    pub name: String,
    /// `host:port` of the member's cluster listener.
    pub address: String,
    pub role: NodeRole,
    pub raft_state: RaftState,
    /// Voter (true) or learner (false) in the current membership.
    pub voter: bool,
    /// Milliseconds since the leader last heard from this member; `None` when unknown
    /// (on a follower, or for the leader itself).
    pub last_contact_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VipStatus {
    pub address: String,
    /// Node id of the owner; `None` while the VIP is unassigned (e.g. during a handover).
    pub owner: Option<u64>,
    /// Fencing epoch of the current assignment.
    pub epoch: u64,
    /// Lease length in ms, from the `[cluster]` settings.
    pub lease_ms: Option<u64>,
    /// On the owner: ms left on its lease; `None` on other nodes.
    pub lease_remaining_ms: Option<u64>,
    /// On the owner: why it does not hold the address as assigned (e.g. adding it
    /// failed); `None` when all is well and on other nodes.
    #[serde(default)]
    pub owner_error: Option<String>,
}

/// `GET /api/v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    /// The node answering this request.
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub config_version: u64,
    pub nodes: Vec<NodeStatus>,
    pub vips: Vec<VipStatus>,
    /// VIPs whose address this node has configured right now.
    pub owned_vips: Vec<String>,
    /// Sticky-table entries in the replicated state as applied on this node.
    #[serde(default)]
    pub sticky_entries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Up,
    Down,
    /// Not checked yet since the config was applied.
    Unknown,
}

/// Administrative state of a backend (HAProxy's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    Enabled,
    /// Finishes open connections and sticky sessions, takes no new ones.
    Draining,
    Disabled,
}

/// Response-time percentiles of the last 10-15 seconds (time to the response
/// head for HTTP, to the connect for TCP), within about 6 %; all 0 without samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Samples the percentiles are computed from.
    #[serde(default)]
    pub samples: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackendStatus {
    /// Stable identifier inside the pool (the config's `name`, else the address).
    pub id: String,
    pub address: String,
    pub health: HealthState,
    pub admin_state: AdminState,
    pub weight: u32,
    pub active_connections: u64,
    pub requests_per_sec: f64,
    /// Share of requests answered with an error (0.0 ..= 1.0) over the last interval.
    pub error_rate: f64,
    pub latency: Latency,
}

/// `GET /api/v1/pools/{name}`; the list endpoint returns an array of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolStatus {
    pub name: String,
    /// Balancing algorithm, as named in the config.
    pub algorithm: String,
    /// Percentiles over every backend's recent samples together.
    #[serde(default)]
    pub latency: Latency,
    pub backends: Vec<BackendStatus>,
}

/// `GET /api/v1/config`: the replicated config text and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigDocument {
    pub version: u64,
    pub toml: String,
}

/// `PUT /api/v1/config` and `POST /api/v1/config/validate` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigReplace {
    pub toml: String,
    /// Shown in the audit trail.
    #[serde(default)]
    pub comment: Option<String>,
    /// Apply only if the current version is still this one (else 409). The
    /// `If-Match: "<version>"` header does the same.
    #[serde(default)]
    pub base_version: Option<u64>,
}

/// One validator finding; `line`/`column` are 1-based, 0 when the problem has no place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigProblem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// `POST /api/v1/config/validate` answer (always 200; `valid` says the verdict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValidationReport {
    pub valid: bool,
    pub errors: Vec<ConfigProblem>,
}

/// A replicated write went through: the Raft log entry and the config version after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WriteAck {
    pub log_index: u64,
    pub config_version: u64,
}

/// `PUT /api/v1/pools/{pool}/backends/{address}/weight` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightChange {
    pub weight: u32,
}

/// `POST /api/v1/certificates/reload` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateReload {
    /// Certificates loaded (by name or SNI list) on this node.
    pub loaded: Vec<String>,
}

/// `POST /api/v1/nodes` body: add a member (as learner, then promoted to voter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeAdd {
    pub id: u64,
    /// `host:port` of its cluster listener.
    pub address: String,
    pub role: NodeRole,
}

/// One line of the replicated audit trail. Never holds a secret or a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub log_index: u64,
    /// Leader-stamped wall clock, ms since the Unix epoch.
    pub time_ms: u64,
    pub author: String,
    pub action: String,
    pub summary: String,
}

/// `GET /api/v1/users` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub username: String,
    pub updated_ms: u64,
}

/// `POST /api/v1/users` body (creates, or sets a new password for an existing user).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub username: String,
    pub password: String,
}

/// `GET /api/v1/tokens` item: everything about a token except the token and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub created_ms: u64,
    pub author: String,
}

/// `POST /api/v1/tokens` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// What the token is for ("ci", "prometheus").
    pub name: String,
}

/// `POST /api/v1/tokens` answer: the only time the plaintext token is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenCreated {
    pub id: String,
    pub name: String,
    /// Send as `Authorization: Bearer <token>`. Not stored; cannot be shown again.
    pub token: String,
}

/// `POST /api/v1/session` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// `POST /api/v1/session` and `GET /api/v1/session` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    pub username: String,
    /// Send as `X-CSRF-Token` on every write made with the session cookie.
    pub csrf_token: String,
    /// Unix seconds when the session cookie stops being accepted.
    pub expires_at: u64,
}

/// Live numbers of one pool in an SSE `stats` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolStats {
    pub pool: String,
    pub requests_per_sec: f64,
    pub p99_ms: f64,
    pub errors_per_sec: f64,
}

/// Data of one SSE `stats` event on `GET /api/v1/events` (sent once a second).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsSnapshot {
    /// Wall clock of the sample, ms since the Unix epoch.
    pub time_ms: u64,
    pub pools: Vec<PoolStats>,
}

/// `GET /healthz` answer: 200 when `ready`, else 503 with the same body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub ready: bool,
    /// Short human-readable state ("ok", "no leader", "starting").
    pub status: String,
}

/// A stored user as the auth layer needs it. Deliberately not `Serialize`: the hash
/// must never reach a response.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub username: String,
    /// PHC string (`$argon2id$...`).
    pub password_hash: String,
}

impl std::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser").field("username", &self.username).finish_non_exhaustive()
    }
}

/// A stored API token as the auth layer needs it. Not `Serialize`, for the same reason.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub info: TokenInfo,
    /// Lowercase hex SHA-256 of the plaintext token.
    pub token_hash: String,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken").field("info", &self.info).finish_non_exhaustive()
    }
}
