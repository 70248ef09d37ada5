//! The admin API's view of a running cluster member: `NodeAdmin` implements
//! admin-web's `AdminBackend` on top of Raft (reads from the replicated state, writes
//! as Raft commands forwarded to the leader), the data plane (live backend numbers,
//! metrics) and the config validator of `quorumlb validate`.
//!
//! Nothing here logs or returns a secret: password and token hashes only travel to the
//! auth layer through `StoredUser`/`StoredToken`, which are not serializable.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use admin_web::backend::{AdminBackend, BackendError, ConfigWrite};
use admin_web::model::{
    AdminState, AuditEntry, BackendStatus, CertificateReload, ClusterView, ConfigDocument, ConfigProblem, Health,
    HealthState, Latency, NodeAdd, NodeRole, NodeStatus, PoolStats, PoolStatus, RaftState, StatsSnapshot, StoredToken,
    StoredUser, TokenInfo, UserInfo, VipStatus, WriteAck,
};
use hmac::{Hmac, Mac};
use raft_store::{BackendAdminState, ClusterNode, ClusterState, Command, Outcome, Role};
use sha2::Sha256;

use crate::balance::BackendState;
use crate::config::{Algorithm, Config};
use crate::metrics::latency::LatencySnapshot;
use crate::proxy::DataPlane;

use super::effective;

/// Context string of the session-key derivation (changing it logs everyone out).
const SESSION_KEY_CONTEXT: &[u8] = b"quorumlb admin session key";
/// How long `add_node` waits for a learner to catch up before promoting it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// HMAC-SHA256(cluster secret, context): the same 32-byte key on every node, so a
/// session cookie is valid whichever node answers.
pub fn session_key(cluster_secret: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(cluster_secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(SESSION_KEY_CONTEXT);
    mac.finalize().into_bytes().to_vec()
}

/// Per-backend counters at the previous sample, for rates.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    requests: u64,
    failures: u64,
}

/// Rates since the previous call, per (pool, backend address).
#[derive(Default)]
struct Rates {
    last: HashMap<(String, SocketAddr), Sample>,
}

impl Rates {
    /// (requests/s, failures/s) since the previous sample of this backend.
    fn rate(&mut self, pool: &str, addr: SocketAddr, st: &BackendState) -> (f64, f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Sample {
            at: Instant::now(),
            requests: st.stats.requests.load(Relaxed),
            failures: st.stats.failures.load(Relaxed),
        };
        let prev = self.last.insert((pool.to_string(), addr), now);
        let Some(prev) = prev else { return (0.0, 0.0) };
        let secs = now.at.duration_since(prev.at).as_secs_f64();
        if secs < 0.05 {
            // Too close to the previous sample to mean anything: keep the old baseline.
            self.last.insert((pool.to_string(), addr), prev);
            return (0.0, 0.0);
        }
        let req = now.requests.saturating_sub(prev.requests) as f64 / secs;
        let fail = now.failures.saturating_sub(prev.failures) as f64 / secs;
        (req, fail)
    }
}

/// What this node knows about VIPs and members beyond the replicated state.
pub struct VipViews {
    /// The leader side: when each member last reported (only while leading).
    pub leader: Arc<super::vip::LeaderVips>,
    /// This proxy's owner tasks: whether it holds each address, its lease, errors.
    pub owners: Option<Arc<super::vip::Owners>>,
}

/// The node as admin-web sees it.
pub struct NodeAdmin {
    raft: ClusterNode,
    local: Arc<Config>,
    dataplane: Option<Arc<DataPlane>>,
    vips: VipViews,
    session_key: Vec<u8>,
    rates: Mutex<Rates>,
    /// `[admin] token_file`: (id, SHA-256) of a node-local bearer token.
    file_token: Option<(String, String)>,
}

impl NodeAdmin {
    pub fn new(
        raft: ClusterNode,
        local: Arc<Config>,
        dataplane: Option<Arc<DataPlane>>,
        vips: VipViews,
        session_key: Vec<u8>,
    ) -> anyhow::Result<NodeAdmin> {
        let file_token = match &local.admin.token_file {
            Some(path) => {
                let token = crate::config::read_token_file(path).map_err(|e| anyhow::anyhow!("[admin] {e}"))?;
                let id = admin_web::auth::token::id_of(&token).unwrap_or_default().to_string();
                Some((id, admin_web::auth::token::hash(&token)))
            }
            None => None,
        };
        Ok(NodeAdmin { raft, local, dataplane, vips, session_key, rates: Mutex::new(Rates::default()), file_token })
    }

    fn state(&self) -> Arc<ClusterState> {
        self.raft.state().borrow().clone()
    }

    /// The config this node runs (replicated config + local sections + overrides).
    fn effective(&self, state: &ClusterState) -> Result<Config, BackendError> {
        effective::build(state, &self.local)
            .map_err(|e| BackendError::Internal(format!("the replicated config does not validate here: {e}")))
    }

    /// Proposes `cmd` and turns a state-machine refusal into `Rejected`.
    async fn write(&self, cmd: Command) -> Result<WriteAck, BackendError> {
        let r = self.raft.write(cmd).await.map_err(raft_error)?;
        match r.outcome {
            Outcome::Applied => Ok(WriteAck { log_index: r.log_index, config_version: r.config_version }),
            Outcome::Rejected { reason } => Err(BackendError::Rejected(reason)),
            Outcome::Conflict { reason } => Err(BackendError::Conflict(reason)),
        }
    }

    /// Checks that `pool` has a backend `address` (or backend id) in the running
    /// config, returning the canonical address.
    fn backend_address(&self, pool: &str, address: &str) -> Result<String, BackendError> {
        let cfg = self.effective(&self.state())?;
        let p = cfg
            .pools
            .iter()
            .find(|p| p.name == pool)
            .ok_or_else(|| BackendError::NotFound(format!("no pool {pool:?}")))?;
        p.backends
            .iter()
            .map(|b| b.address)
            .find(|a| a.to_string() == address || backend_id(pool, *a) == address)
            .map(|a| a.to_string())
            .ok_or_else(|| BackendError::NotFound(format!("pool {pool:?} has no backend {address:?}")))
    }

    async fn write_ok(&self, cmd: Command) -> Result<(), BackendError> {
        self.write(cmd).await.map(|_| ())
    }
}

/// How this node names member `id`: the `name` of that peer in this node's
/// `[cluster] peers`, else for itself its `[node] name`, else `node-<id>`. Names
/// are not replicated (raft-store has no place for them), so each node's file is
/// the source for the others' names.
fn node_name(local: &Config, id: u64) -> String {
    let peer = local.cluster.as_ref().and_then(|c| c.peers.iter().find(|p| p.id == id));
    if let Some(name) = peer.and_then(|p| p.name.clone()) {
        return name;
    }
    match local.node.as_ref() {
        Some(n) if n.id == id => n.name.clone(),
        _ => format!("node-{id}"),
    }
}

/// The backend id the data plane uses in sticky cookies (see `balance::Backend::new`).
fn backend_id(pool: &str, addr: SocketAddr) -> String {
    format!("{:016x}", crate::balance::hash_key(format!("{pool}/{addr}").as_bytes()))
}

fn raft_error(e: raft_store::Error) -> BackendError {
    use raft_store::Error as E;
    match e {
        E::NotLeader { .. } | E::NoLeader { .. } | E::NoQuorum(_) | E::Shutdown | E::Rpc { .. } => {
            BackendError::Unavailable(e.to_string())
        }
        other => BackendError::Internal(other.to_string()),
    }
}

fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RoundRobin => "round_robin",
        Algorithm::WeightedRoundRobin => "weighted_round_robin",
        Algorithm::LeastConn => "least_conn",
        Algorithm::LeastTime => "least_time",
        Algorithm::Random => "random",
        Algorithm::IpHash => "ip_hash",
        Algorithm::ConsistentHash => "consistent_hash",
    }
}

fn admin_state(s: crate::balance::AdminState) -> AdminState {
    match s {
        crate::balance::AdminState::Enabled => AdminState::Enabled,
        crate::balance::AdminState::Draining => AdminState::Draining,
        crate::balance::AdminState::Disabled => AdminState::Disabled,
    }
}

fn node_role(r: Role) -> NodeRole {
    match r {
        Role::Proxy => NodeRole::Proxy,
        Role::Witness => NodeRole::Witness,
    }
}

fn raft_state(s: &str) -> RaftState {
    match s {
        "leader" => RaftState::Leader,
        "follower" => RaftState::Follower,
        "candidate" => RaftState::Candidate,
        "learner" => RaftState::Learner,
        "shutdown" => RaftState::Shutdown,
        _ => RaftState::Unknown,
    }
}

/// Percentiles of recent response times (all 0 without samples).
fn latency(snap: &LatencySnapshot) -> Latency {
    let ms = |q| snap.quantile_us(q).unwrap_or(0.0) / 1000.0;
    Latency { p50_ms: ms(0.5), p95_ms: ms(0.95), p99_ms: ms(0.99), samples: snap.count }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Maps `quorumlb validate` findings to the API's problems (line/column kept).
pub fn problems(errors: crate::config::ConfigErrors) -> Vec<ConfigProblem> {
    errors.0.into_iter().map(|e| ConfigProblem { line: e.line, column: e.column, message: e.message }).collect()
}

impl AdminBackend for NodeAdmin {
    async fn cluster(&self) -> Result<ClusterView, BackendError> {
        let status = self.raft.status();
        let state = self.state();
        let me = status.node_id;
        let ages = self.vips.leader.report_ages();
        let nodes = status
            .members
            .iter()
            .map(|m| {
                let raft_state = if m.id == me {
                    raft_state(&status.state)
                } else if Some(m.id) == status.leader {
                    RaftState::Leader
                } else if !m.voter {
                    RaftState::Learner
                } else if status.leader.is_some() {
                    RaftState::Follower
                } else {
                    RaftState::Unknown
                };
                NodeStatus {
                    id: m.id,
                    name: node_name(&self.local, m.id),
                    address: m.addr.clone(),
                    role: node_role(m.role),
                    raft_state,
                    voter: m.voter,
                    last_contact_ms: if m.id == me { None } else { ages.get(&m.id).map(|d| d.as_millis() as u64) },
                }
            })
            .collect();
        let leases: HashMap<String, u64> = self
            .effective(&state)
            .map(|c| c.vips.iter().map(|v| (v.address.clone(), v.lease.as_millis() as u64)).collect())
            .unwrap_or_default();
        let local: HashMap<String, vrrp::owner::OwnerStatus> = self
            .vips
            .owners
            .as_ref()
            .map(|o| o.statuses().into_iter().map(|s| (s.vip.to_string(), s)).collect())
            .unwrap_or_default();
        let vips = state
            .vips
            .values()
            .map(|a| {
                let here = local.get(&a.vip).filter(|_| a.owner == Some(me));
                VipStatus {
                    address: a.vip.clone(),
                    owner: a.owner,
                    epoch: a.epoch,
                    lease_ms: leases.get(&a.vip).copied(),
                    lease_remaining_ms: here
                        .filter(|s| s.owned)
                        .and_then(|s| s.lease_remaining)
                        .map(|d| d.as_millis() as u64),
                    // Only while the address is not held: vrrp keeps the last error
                    // after a later success, so it explains a missing address only.
                    owner_error: here.filter(|s| !s.owned).and_then(|s| s.last_error.clone()),
                }
            })
            .collect();
        let owned_vips = local.values().filter(|s| s.owned).map(|s| s.vip.to_string()).collect();
        Ok(ClusterView {
            node_id: me,
            leader: status.leader,
            term: status.term,
            commit_index: status.applied_index,
            config_version: state.config_version,
            nodes,
            vips,
            owned_vips,
            sticky_entries: state.sticky_entries as u64,
        })
    }

    async fn pools(&self) -> Result<Vec<PoolStatus>, BackendError> {
        // Admin state and weight come from the replicated state (what was just written
        // is visible at once); live numbers from the data plane's current snapshot.
        let cfg = self.effective(&self.state())?;
        let runtime = self.dataplane.as_ref().map(|dp| dp.runtime());
        let now = crate::clock::now_ms();
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(cfg.pools.len());
        for pool in &cfg.pools {
            let live = runtime.as_ref().and_then(|rt| rt.pools.get(&pool.name));
            let mut pool_latency = LatencySnapshot::empty();
            let backends = pool
                .backends
                .iter()
                .map(|b| {
                    let st = live.and_then(|p| p.backends.iter().find(|x| x.addr == b.address)).map(|x| &x.state);
                    let (health, active, rps, err_rate, latency) = match st {
                        Some(st) => {
                            let up = st.is_healthy() && !st.is_ejected(now);
                            let (rps, fps) = rates.rate(&pool.name, b.address, st);
                            let err = if rps > 0.0 { (fps / rps).clamp(0.0, 1.0) } else { 0.0 };
                            let h = if up { HealthState::Up } else { HealthState::Down };
                            let snap = st.latency();
                            pool_latency.merge(&snap);
                            (h, u64::from(st.in_flight()), rps, err, latency(&snap))
                        }
                        None => (HealthState::Unknown, 0, 0.0, 0.0, Latency::default()),
                    };
                    BackendStatus {
                        id: b.address.to_string(),
                        address: b.address.to_string(),
                        health,
                        admin_state: admin_state(b.state),
                        weight: b.weight,
                        active_connections: active,
                        requests_per_sec: rps,
                        error_rate: err_rate,
                        latency,
                    }
                })
                .collect();
            out.push(PoolStatus {
                name: pool.name.clone(),
                algorithm: algorithm_name(pool.algorithm).into(),
                latency: latency(&pool_latency),
                backends,
            });
        }
        Ok(out)
    }

    async fn config(&self) -> Result<ConfigDocument, BackendError> {
        let state = self.state();
        let toml = state.config.as_ref().map(|c| c.toml.clone()).unwrap_or_default();
        Ok(ConfigDocument { version: state.config_version, toml })
    }

    fn validate_config(&self, toml: &str) -> Result<(), Vec<ConfigProblem>> {
        effective::validate_cluster_text(toml, "config").map(|_| ()).map_err(problems)
    }

    async fn replace_config(&self, write: ConfigWrite) -> Result<WriteAck, BackendError> {
        if let Err(e) = effective::validate_cluster_text(&write.toml, "config") {
            return Err(BackendError::Rejected(e.to_string()));
        }
        // The version check happens where the entry is applied, so it is atomic
        // with the replacement (two concurrent writers on one base: one wins).
        let cmd = Command::ReplaceConfig {
            toml: write.toml,
            author: write.author,
            comment: write.comment,
            expected_version: write.expected_version,
        };
        self.write(cmd).await
    }

    async fn set_backend_state(
        &self,
        pool: &str,
        address: &str,
        state: AdminState,
        author: &str,
    ) -> Result<WriteAck, BackendError> {
        let address = self.backend_address(pool, address)?;
        let state = match state {
            AdminState::Enabled => BackendAdminState::Enabled,
            AdminState::Draining => BackendAdminState::Draining,
            AdminState::Disabled => BackendAdminState::Disabled,
        };
        self.write(Command::SetBackendState { pool: pool.to_string(), address, state, author: author.to_string() })
            .await
    }

    async fn set_backend_weight(
        &self,
        pool: &str,
        address: &str,
        weight: u32,
        author: &str,
    ) -> Result<WriteAck, BackendError> {
        if !(1..=1000).contains(&weight) {
            return Err(BackendError::Rejected(format!("weight must be between 1 and 1000, got {weight}")));
        }
        let address = self.backend_address(pool, address)?;
        self.write(Command::SetBackendWeight { pool: pool.to_string(), address, weight, author: author.to_string() })
            .await
    }

    async fn reload_certificates(&self, author: &str) -> Result<CertificateReload, BackendError> {
        let Some(dp) = &self.dataplane else {
            return Ok(CertificateReload { loaded: Vec::new() });
        };
        let rt = dp.runtime();
        tracing::info!(author, "certificate reload requested through the admin API");
        dp.apply(Arc::clone(&rt.config)).await.map_err(|e| BackendError::Internal(format!("{e:#}")))?;
        let loaded = rt
            .config
            .listeners
            .iter()
            .flat_map(|l| l.http.certificates.iter().map(|c| c.cert_file.display().to_string()))
            .collect();
        Ok(CertificateReload { loaded })
    }

    async fn add_node(&self, node: NodeAdd, author: &str) -> Result<(), BackendError> {
        let role = match node.role {
            NodeRole::Proxy => Role::Proxy,
            NodeRole::Witness => Role::Witness,
        };
        tracing::info!(author, id = node.id, address = %node.address, "adding cluster member");
        self.raft.add_learner(node.id, node.address.clone(), role).await.map_err(raft_error)?;
        // Promote once the learner has the log (bounded wait; the leader knows best).
        let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            let s = self.raft.status();
            let target = s.last_log_index.unwrap_or(0);
            let matched = s.members.iter().find(|m| m.id == node.id).and_then(|m| m.matched_index);
            if matched.is_some_and(|m| m + 1 >= target) || !self.raft.is_leader() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::Unavailable(format!(
                    "node {} was added as a learner but did not catch up within {CATCH_UP_TIMEOUT:?}",
                    node.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut voters: BTreeSet<u64> = self.raft.status().members.iter().filter(|m| m.voter).map(|m| m.id).collect();
        voters.insert(node.id);
        self.raft.change_membership(voters).await.map_err(raft_error)?;
        let role_name = if role == Role::Witness { "witness" } else { "proxy" };
        let summary = format!("node {} ({role_name}, {}) added as a voter", node.id, node.address);
        self.write_ok(Command::MembershipNote { author: author.to_string(), summary }).await
    }

    async fn remove_node(&self, id: u64, author: &str) -> Result<(), BackendError> {
        if !self.raft.status().members.iter().any(|m| m.id == id) {
            return Err(BackendError::NotFound(format!("no cluster member {id}")));
        }
        tracing::info!(author, id, "removing cluster member");
        self.raft.remove_node(id).await.map_err(raft_error)?;
        self.write_ok(Command::MembershipNote { author: author.to_string(), summary: format!("node {id} removed") })
            .await
    }

    async fn audit(&self) -> Result<Vec<AuditEntry>, BackendError> {
        Ok(self
            .state()
            .audit
            .iter()
            .map(|a| AuditEntry {
                log_index: a.log_index,
                time_ms: a.time_ms,
                author: a.author.clone(),
                action: a.action.clone(),
                summary: a.summary.clone(),
            })
            .collect())
    }

    async fn users(&self) -> Result<Vec<UserInfo>, BackendError> {
        Ok(self
            .state()
            .users
            .values()
            .map(|u| UserInfo { username: u.username.clone(), updated_ms: u.updated_ms })
            .collect())
    }

    async fn user(&self, username: &str) -> Result<Option<StoredUser>, BackendError> {
        Ok(self
            .state()
            .users
            .get(username)
            .map(|u| StoredUser { username: u.username.clone(), password_hash: u.password_hash.clone() }))
    }

    async fn upsert_user(&self, username: &str, password_hash: &str, author: &str) -> Result<(), BackendError> {
        self.write_ok(Command::UserUpsert {
            username: username.to_string(),
            password_hash: password_hash.to_string(),
            author: author.to_string(),
        })
        .await
    }

    async fn delete_user(&self, username: &str, author: &str) -> Result<(), BackendError> {
        if !self.state().users.contains_key(username) {
            return Err(BackendError::NotFound(format!("no user {username:?}")));
        }
        self.write_ok(Command::UserDelete { username: username.to_string(), author: author.to_string() }).await
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, BackendError> {
        Ok(self.state().tokens.values().map(token_info).collect())
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>, BackendError> {
        if let Some((file_id, hash)) = self.file_token.as_ref().filter(|(file_id, _)| file_id == id) {
            let info = TokenInfo {
                id: file_id.clone(),
                name: "token-file".into(),
                created_ms: 0,
                author: "[admin] token_file".into(),
            };
            return Ok(Some(StoredToken { info, token_hash: hash.clone() }));
        }
        Ok(self.state().tokens.get(id).map(|t| StoredToken { info: token_info(t), token_hash: t.token_hash.clone() }))
    }

    async fn create_token(&self, id: &str, name: &str, token_hash: &str, author: &str) -> Result<(), BackendError> {
        if self.state().tokens.contains_key(id) {
            return Err(BackendError::Conflict(format!("token id {id:?} exists")));
        }
        self.write_ok(Command::TokenCreate {
            id: id.to_string(),
            name: name.to_string(),
            token_hash: token_hash.to_string(),
            author: author.to_string(),
        })
        .await
    }

    async fn revoke_token(&self, id: &str, author: &str) -> Result<(), BackendError> {
        if !self.state().tokens.contains_key(id) {
            return Err(BackendError::NotFound(format!("no token {id:?}")));
        }
        self.write_ok(Command::TokenRevoke { id: id.to_string(), author: author.to_string() }).await
    }

    async fn stats(&self) -> Result<StatsSnapshot, BackendError> {
        let pools = self
            .pools()
            .await?
            .into_iter()
            .map(|p| {
                let rps: f64 = p.backends.iter().map(|b| b.requests_per_sec).sum();
                let eps: f64 = p.backends.iter().map(|b| b.requests_per_sec * b.error_rate).sum();
                PoolStats { pool: p.name, requests_per_sec: rps, p99_ms: p.latency.p99_ms, errors_per_sec: eps }
            })
            .collect();
        Ok(StatsSnapshot { time_ms: now_ms(), pools })
    }

    async fn metrics_text(&self) -> Result<String, BackendError> {
        Ok(self.dataplane.as_ref().map(|dp| dp.metrics().render()).unwrap_or_default())
    }

    async fn health(&self) -> Health {
        match self.raft.leader() {
            Some(_) => Health { ready: true, status: "ok".into() },
            None => Health { ready: false, status: "no leader".into() },
        }
    }

    fn session_key(&self) -> Vec<u8> {
        self.session_key.clone()
    }
}

fn token_info(t: &raft_store::TokenRecord) -> TokenInfo {
    TokenInfo { id: t.id.clone(), name: t.name.clone(), created_ms: t.created_ms, author: t.author.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_is_deterministic_and_secret_dependent() {
        let a = session_key(b"0123456789abcdef0123456789abcdef");
        assert_eq!(a.len(), 32);
        assert_eq!(a, session_key(b"0123456789abcdef0123456789abcdef"));
        assert_ne!(a, session_key(b"0123456789abcdef0123456789abcdeX"));
    }

    #[test]
    fn members_are_named_from_peers_then_node_then_id() {
        let file = "[node]\nid = 1\nname = \"lb-own\"\ndata_dir = \"/d\"\ncluster_listen = \"127.0.0.1:7400\"\n\
                    [cluster]\nsecret_file = \"/s\"\npeers = [ { id = 1, address = \"127.0.0.1:7400\" }, \
                    { id = 2, address = \"127.0.0.1:7401\", name = \"lb-west\" }, { id = 3, address = \"127.0.0.1:7402\" } ]\n";
        let cfg = Config::parse(file, "n.toml").expect("config");
        assert_eq!(node_name(&cfg, 1), "lb-own");
        assert_eq!(node_name(&cfg, 2), "lb-west");
        assert_eq!(node_name(&cfg, 3), "node-3");
        assert_eq!(node_name(&cfg, 9), "node-9");
        let bad = file.replace("name = \"lb-west\"", "name = \" \"");
        let e = Config::parse(&bad, "n.toml").expect_err("blank peer name").to_string();
        assert!(e.contains("peer name must be"), "{e}");
    }

    #[test]
    fn validator_problems_keep_lines() {
        let err = effective::validate_cluster_text("[[pool]]\nname = \"p\"\nalgorithm = \"nope\"\n", "c").unwrap_err();
        let p = problems(err);
        assert!(p.iter().any(|p| p.line == 3), "{p:?}");
    }
}
