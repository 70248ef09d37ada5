//! `ClusterNode`: the handle the node binary and admin-web use. It opens the sled
//! data dir, starts openraft and the cluster RPC server, bootstraps a brand-new
//! cluster from the lowest-id peer, and routes leader-only operations (writes,
//! membership changes, VIP lease checks) to the leader, locally or over RPC.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, oneshot, watch};
use tokio::task::JoinHandle;

use crate::auth;
use crate::error::{Error, Result};
use crate::log_store::LogStore;
use crate::network::{
    ClusterReply, LeaseRequest, MembershipRequest, NetworkFactory, NodeReport, PATH_LEASE, PATH_MEMBERSHIP, PATH_PROBE,
    PATH_REPORT, PATH_WRITE, PeerClient, ProbeAnswer, TransportError, WriteRequest,
};
use crate::state::ClusterState;
use crate::state_machine::{SnapshotStats, StateMachineStore};
use crate::sticky::StickySink;
use crate::types::{Command, Member, NodeId, Raft, RaftMetrics, Request, Response, Role};

/// One entry of `[cluster] peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub id: NodeId,
    /// `host:port` of that node's cluster listener.
    pub address: String,
    /// Only used when this node bootstraps the cluster; defaults to proxy.
    #[serde(default)]
    pub role: Role,
}

/// What the application does on the leader when a VIP owner renews its lease or a
/// node reports in. Both run only on the node that is leader at that moment.
pub trait LeaderHooks: Send + Sync + 'static {
    /// Called after a quorum confirmed this node's leadership and the applied state
    /// names `node` the owner of `vip` at `epoch`. The renewal is granted only if
    /// this returns true; the implementation records when it said yes.
    fn grant_lease(&self, vip: &str, epoch: u64, node: NodeId) -> bool;
    /// A node's periodic report (see [`ClusterNode::report`]).
    fn node_report(&self, report: NodeReport);
}

/// Everything a node needs to join the cluster (from its own `[node]`/`[cluster]`).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub node_id: NodeId,
    pub role: Role,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `host:port` other nodes use to reach `listen`.
    pub advertise: String,
    /// All nodes of a new cluster (this one may be included).
    pub peers: Vec<Peer>,
    pub secret: Vec<u8>,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and compact the log) after this many applied entries.
    pub snapshot_logs_since_last: u64,
    /// Entries already in a snapshot that are kept anyway, so a briefly lagging
    /// follower catches up from the log instead of a snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Overall deadline for a write, membership change or lease check, including
    /// finding the leader while one is being elected.
    pub request_timeout_ms: u64,
    /// Application hooks run on the leader (VIP lease grants, node reports).
    pub hooks: Option<Arc<dyn LeaderHooks>>,
}

impl std::fmt::Debug for dyn LeaderHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaderHooks")
    }
}

impl ClusterOptions {
    /// Options with LAN defaults: 50 ms heartbeats, 150–300 ms elections.
    pub fn new(
        node_id: NodeId,
        data_dir: impl Into<PathBuf>,
        listen: SocketAddr,
        advertise: impl Into<String>,
        secret: Vec<u8>,
    ) -> Self {
        Self {
            node_id,
            role: Role::Proxy,
            data_dir: data_dir.into(),
            listen,
            advertise: advertise.into(),
            peers: Vec::new(),
            secret,
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_logs_since_last: 5000,
            logs_kept_after_snapshot: 1000,
            request_timeout_ms: 5000,
            hooks: None,
        }
    }

    /// Smallest secret accepted, in bytes.
    pub const MIN_SECRET_LEN: usize = 16;

    fn raft_config(&self) -> Result<openraft::Config> {
        if self.secret.len() < Self::MIN_SECRET_LEN {
            return Err(Error::InvalidOptions(format!(
                "cluster secret must be at least {} bytes, got {}",
                Self::MIN_SECRET_LEN,
                self.secret.len()
            )));
        }
        if self.advertise.is_empty() {
            return Err(Error::InvalidOptions("advertise address is empty".into()));
        }
        if let Some(p) = self.peers.iter().find(|p| p.address.is_empty()) {
            return Err(Error::InvalidOptions(format!("peer {} has no address", p.id)));
        }
        let config = openraft::Config {
            cluster_name: "quorumlb".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            snapshot_max_chunk_size: 1024 * 1024,
            install_snapshot_timeout: 2000,
            ..Default::default()
        };
        config.validate().map_err(|e| Error::InvalidOptions(e.to_string()))
    }

    /// Members of a brand-new cluster: all peers, this node described by itself.
    fn initial_members(&self) -> BTreeMap<NodeId, Member> {
        let mut m: BTreeMap<NodeId, Member> =
            self.peers.iter().map(|p| (p.id, Member { addr: p.address.clone(), role: p.role })).collect();
        m.insert(self.node_id, Member { addr: self.advertise.clone(), role: self.role });
        m
    }
}

/// Asks every peer (once, briefly) whether it already holds Raft state; returns the
/// first that does. Unreachable peers count as "no": on a first start they may
/// simply not be up yet.
async fn existing_cluster(client: &PeerClient, opts: &ClusterOptions) -> Option<ProbeAnswer> {
    let mut asks = tokio::task::JoinSet::new();
    for p in opts.peers.iter().filter(|p| p.id != opts.node_id) {
        let (client, addr) = (client.clone(), p.address.clone());
        asks.spawn(async move { client.post::<(), ProbeAnswer>(&addr, PATH_PROBE, &(), Duration::from_secs(1)).await });
    }
    while let Some(answer) = asks.join_next().await {
        match answer {
            Ok(Ok(a)) if a.has_cluster_state() => return Some(a),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "peer did not answer the cluster probe"),
            Err(e) => tracing::debug!(error = %e, "cluster probe task failed"),
        }
    }
    None
}

/// State shared by the handle and the RPC server.
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) sm: StateMachineStore,
    pub(crate) state_rx: watch::Receiver<Arc<ClusterState>>,
    pub(crate) client: PeerClient,
    pub(crate) secret: Arc<Vec<u8>>,
    pub(crate) replay: auth::ReplayGuard,
    pub(crate) db: sled::Db,
    request_timeout: Duration,
    /// Bound on one leadership confirmation (a few heartbeats).
    confirm_timeout: Duration,
    hooks: Option<Arc<dyn LeaderHooks>>,
}

/// An operation that only the leader may carry out. The same code runs it locally on
/// the leader and behind the RPC endpoint a follower forwards it to.
pub(crate) trait LeaderOp: Serialize + DeserializeOwned + Send + Sync + 'static {
    type Out: Serialize + DeserializeOwned + Send + 'static;
    const PATH: &'static str;
    /// Name used in error messages about a bad body.
    const WHAT: &'static str;
    /// Whether a request that may have reached the leader can be sent again.
    const IDEMPOTENT: bool;
    fn run_local(&self, s: &Shared) -> impl Future<Output = ClusterReply<Self::Out>> + Send;
}

fn reply_from_write_error<T>(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ClusterReply<T> {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterReply::NotLeader { leader: f.leader_id },
        other => ClusterReply::Failed { message: other.to_string() },
    }
}

impl LeaderOp for WriteRequest {
    type Out = Response;
    const PATH: &'static str = PATH_WRITE;
    const WHAT: &'static str = "write";
    const IDEMPOTENT: bool = false;

    async fn run_local(&self, s: &Shared) -> ClusterReply<Response> {
        // The leader stamps the time: every node applies with this same clock value.
        let req = Request { cmd: self.cmd.clone(), stamped_ms: auth::now_ms() };
        match s.raft.client_write(req).await {
            Ok(r) => ClusterReply::Ok { value: r.data },
            Err(e) => reply_from_write_error(e),
        }
    }
}

impl LeaderOp for MembershipRequest {
    type Out = u64;
    const PATH: &'static str = PATH_MEMBERSHIP;
    const WHAT: &'static str = "membership";
    const IDEMPOTENT: bool = true;

    async fn run_local(&self, s: &Shared) -> ClusterReply<u64> {
        let result = match self {
            MembershipRequest::AddLearner { id, member } => s.raft.add_learner(*id, member.clone(), false).await,
            MembershipRequest::ChangeVoters { voters } => {
                if voters.is_empty() {
                    return ClusterReply::Failed { message: "voter set must not be empty".into() };
                }
                s.raft.change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), true).await
            }
            MembershipRequest::RemoveNode { id } => {
                let membership = s.raft.metrics().borrow().membership_config.clone();
                let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
                if voters.contains(id) {
                    let rest: BTreeSet<NodeId> = voters.iter().copied().filter(|v| v != id).collect();
                    if rest.is_empty() {
                        return ClusterReply::Failed { message: format!("node {id} is the last voter") };
                    }
                    s.raft.change_membership(ChangeMembers::ReplaceAllVoters(rest), false).await
                } else if membership.membership().get_node(id).is_some() {
                    s.raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([*id])), false).await
                } else {
                    return ClusterReply::Failed { message: format!("node {id} is not a member") };
                }
            }
        };
        match result {
            Ok(r) => ClusterReply::Ok { value: r.log_id.index },
            Err(e) => reply_from_write_error(e),
        }
    }
}

impl LeaderOp for LeaseRequest {
    type Out = bool;
    const PATH: &'static str = PATH_LEASE;
    const WHAT: &'static str = "lease";
    const IDEMPOTENT: bool = true;

    async fn run_local(&self, s: &Shared) -> ClusterReply<bool> {
        match s.confirm_leadership().await {
            Ok(()) => {
                let owner = s.state_rx.borrow().is_vip_owner(&self.vip, self.epoch, self.node);
                let granted = match (&s.hooks, owner) {
                    (Some(h), true) => h.grant_lease(&self.vip, self.epoch, self.node),
                    (_, owner) => owner,
                };
                ClusterReply::Ok { value: granted }
            }
            Err(Error::NotLeader { leader }) => ClusterReply::NotLeader { leader },
            Err(Error::NoQuorum(message)) => ClusterReply::NoQuorum { message },
            Err(e) => ClusterReply::Failed { message: e.to_string() },
        }
    }
}

impl LeaderOp for NodeReport {
    type Out = bool;
    const PATH: &'static str = PATH_REPORT;
    const WHAT: &'static str = "report";
    const IDEMPOTENT: bool = true;

    async fn run_local(&self, s: &Shared) -> ClusterReply<bool> {
        let leader = s.raft.metrics().borrow().current_leader;
        if leader != Some(s.id) {
            return ClusterReply::NotLeader { leader };
        }
        if let Some(h) = &s.hooks {
            h.node_report(*self);
        }
        ClusterReply::Ok { value: true }
    }
}

impl Shared {
    /// openraft's `ensure_linearizable`, bounded in time: Ok means a quorum confirmed
    /// this node as leader after the call began and everything it committed is applied.
    async fn confirm_leadership(&self) -> Result<()> {
        match tokio::time::timeout(self.confirm_timeout, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(Error::NotLeader { leader: f.leader_id })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => Err(Error::NoQuorum(q.to_string())),
            Ok(Err(RaftError::Fatal(f))) => Err(Error::Raft(f.to_string())),
            Err(_) => Err(Error::NoQuorum(format!("no quorum answered within {:?}", self.confirm_timeout))),
        }
    }

    fn leader_addr(&self, leader: NodeId) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
    }
}

/// A one-line view of this node's Raft state, for status pages and `ctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// On the leader: ms since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    pub members: Vec<MemberStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub addr: String,
    pub role: Role,
    pub voter: bool,
    /// On the leader: highest log index known replicated to this member.
    pub matched_index: Option<u64>,
}

fn state_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

struct ServerTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

/// Handle to the local cluster member. Cheap to clone.
#[derive(Clone)]
pub struct ClusterNode {
    shared: Arc<Shared>,
    /// This start initialised a brand-new cluster (so the caller seeds its config).
    created: bool,
    server: Arc<Mutex<Option<ServerTask>>>,
    stopped: Arc<AtomicBool>,
}

/// sled refuses to open a directory another handle still holds; a node restarting
/// right after its predecessor stopped waits briefly for the lock instead of failing.
async fn open_db(path: PathBuf) -> Result<sled::Db> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sled::Config::new().path(&path).open() {
            Ok(db) => return Ok(db),
            Err(e) if e.to_string().contains("could not acquire lock") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(Error::Storage(format!("opening {}: {e}", path.display()))),
        }
    }
}

impl ClusterNode {
    /// Opens `data_dir`, starts Raft and the RPC server on `listen`. A node whose store
    /// is brand new and whose id is the lowest among `peers` (itself included)
    /// initialises the cluster with all peers as voters; every other node waits to be
    /// contacted, and a restarted node recovers from its own data dir.
    pub async fn start(opts: ClusterOptions, sticky: Arc<dyn StickySink>) -> Result<ClusterNode> {
        let config = Arc::new(opts.raft_config()?);
        std::fs::create_dir_all(&opts.data_dir)
            .map_err(|source| Error::DataDir { path: opts.data_dir.clone(), source })?;
        let db = open_db(opts.data_dir.join("raft.sled")).await?;
        let log_store = LogStore::open(&db)?;
        let pristine = log_store.is_pristine()?;
        let sm = StateMachineStore::open(&db, sticky)?;
        let state_rx = sm.subscribe();

        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| Error::Bind { addr: opts.listen, source })?;
        let secret = Arc::new(opts.secret.clone());
        let client = PeerClient::new(opts.node_id, secret.clone());
        let raft = Raft::new(opts.node_id, config, NetworkFactory::new(client.clone()), log_store, sm.clone())
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;

        let shared = Arc::new(Shared {
            id: opts.node_id,
            raft,
            sm,
            state_rx,
            client,
            secret,
            replay: auth::ReplayGuard::new(),
            db,
            request_timeout: Duration::from_millis(opts.request_timeout_ms),
            confirm_timeout: Duration::from_millis(opts.election_timeout_max_ms.max(4 * opts.heartbeat_ms)),
            hooks: opts.hooks.clone(),
        });

        let app = crate::rpc::router(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "cluster rpc server failed");
            }
        });
        let lowest = opts.peers.iter().map(|p| p.id).chain([opts.node_id]).min();
        let created = pristine && lowest == Some(opts.node_id);
        let mut node = ClusterNode {
            shared,
            created,
            server: Arc::new(Mutex::new(Some(ServerTask { stop: stop_tx, handle }))),
            stopped: Arc::new(AtomicBool::new(false)),
        };

        if node.created {
            if let Some(peer) = existing_cluster(&node.shared.client, &opts).await {
                // Our data dir is empty but the cluster exists: the dir was wiped or
                // replaced. Creating a second cluster would fork the history; instead
                // this node waits, and the leader (which still lists it) sends it the
                // log or a snapshot.
                tracing::error!(
                    node = opts.node_id,
                    peer = peer.node,
                    peer_term = peer.term,
                    peer_last_log_index = ?peer.last_log_index,
                    "data dir {} holds no Raft state but peer {} already belongs to a cluster; \
                     not creating a new one, waiting to be caught up by the leader",
                    opts.data_dir.display(),
                    peer.node
                );
                node.created = false;
            }
        }
        if node.created {
            let members = opts.initial_members();
            tracing::info!(node = opts.node_id, members = ?members.keys().collect::<Vec<_>>(), "initialising new cluster");
            if let Err(e) = node.shared.raft.initialize(members).await {
                let _ = node.shutdown().await;
                return Err(Error::Raft(format!("initialising cluster: {e}")));
            }
        } else {
            tracing::info!(node = opts.node_id, pristine, "starting; waiting for the cluster");
        }
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// True when this start created a new cluster (first start of the lowest-id
    /// node); false on every restart and on every other node.
    pub fn created_cluster(&self) -> bool {
        self.created
    }

    /// The replicated state, republished after every applied batch.
    pub fn state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.shared.state_rx.clone()
    }

    /// openraft's own metrics (term, leader, log indexes, membership with roles).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.shared.raft.metrics()
    }

    pub fn status(&self) -> ClusterStatus {
        let m = self.shared.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| MemberStatus {
                id: *id,
                addr: n.addr.clone(),
                role: n.role,
                voter: voters.contains(id),
                matched_index: m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index),
            })
            .collect();
        ClusterStatus {
            node_id: self.shared.id,
            state: state_name(m.state).to_string(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            members,
        }
    }

    pub fn snapshot_stats(&self) -> SnapshotStats {
        self.shared.sm.snapshot_stats()
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.shared.raft.metrics().borrow().current_leader
    }

    /// Whether this node believes it is the leader (not quorum-confirmed; see
    /// `ensure_linearizable`).
    pub fn is_leader(&self) -> bool {
        let m = self.shared.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.shared.id)
    }

    /// Proposes `cmd` through the leader (stamping the leader's time) and waits until
    /// it is applied. Retries while a leader is being elected, until the request
    /// timeout; a forward is retried only when it certainly never reached the leader.
    pub async fn write(&self, cmd: Command) -> Result<Response> {
        self.leader_call(WriteRequest { cmd }).await
    }

    /// Adds a non-voting member that starts receiving the log (or a snapshot).
    pub async fn add_learner(&self, id: NodeId, addr: impl Into<String>, role: Role) -> Result<()> {
        let member = Member { addr: addr.into(), role };
        self.leader_call(MembershipRequest::AddLearner { id, member }).await.map(|_| ())
    }

    /// Makes exactly `voters` the voting members; voters left out stay as learners
    /// (use `remove_node` to drop a node entirely).
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<()> {
        self.leader_call(MembershipRequest::ChangeVoters { voters }).await.map(|_| ())
    }

    /// Removes a voter or learner from the cluster.
    pub async fn remove_node(&self, id: NodeId) -> Result<()> {
        self.leader_call(MembershipRequest::RemoveNode { id }).await.map(|_| ())
    }

    /// Asks the leader, after it re-confirmed its quorum, whether `node` owns `vip` at
    /// `epoch`. Errors when no leader with a quorum can answer in time.
    pub async fn confirm_vip_owner(&self, vip: &str, epoch: u64, node: NodeId) -> Result<bool> {
        self.leader_call(LeaseRequest { vip: vip.to_string(), epoch, node }).await
    }

    /// Confirms, on this node, that it is the leader backed by a quorum right now and
    /// that its state has applied everything committed before the call.
    /// Sends this node's report to the leader (forwarded like a write).
    pub async fn report(&self, report: NodeReport) -> Result<()> {
        self.leader_call(report).await.map(|_| ())
    }

    pub async fn ensure_linearizable(&self) -> Result<()> {
        self.shared.confirm_leadership().await
    }

    /// Builds a snapshot now (it also compacts the log per the policy).
    pub async fn trigger_snapshot(&self) -> Result<()> {
        self.shared.raft.trigger().snapshot().await.map_err(|e| Error::Raft(e.to_string()))
    }

    /// Stops Raft and the RPC server and flushes the data dir. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(task) = self.server.lock().await.take() {
            let _ = task.stop.send(());
            let mut handle = task.handle;
            if tokio::time::timeout(Duration::from_secs(2), &mut handle).await.is_err() {
                handle.abort();
                let _ = handle.await;
            }
        }
        let raft_result = self.shared.raft.shutdown().await;
        self.shared.db.flush_async().await?;
        raft_result.map_err(|e| Error::Raft(format!("stopping raft: {e}")))
    }

    async fn leader_call<Op: LeaderOp>(&self, op: Op) -> Result<Op::Out> {
        let s = &self.shared;
        let deadline = Instant::now() + s.request_timeout;
        let mut metrics = s.raft.metrics();
        let mut last_problem = String::from("no leader known");
        // Set when the last answer was a leader that could not confirm its quorum.
        let mut no_quorum = false;
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return Err(Error::Shutdown);
            }
            let now = Instant::now();
            if now >= deadline {
                if no_quorum {
                    return Err(Error::NoQuorum(last_problem));
                }
                return Err(Error::NoLeader { waited: s.request_timeout, last: last_problem });
            }
            let remaining = deadline - now;
            let leader = metrics.borrow().current_leader;
            no_quorum = false;
            let reply = match leader {
                Some(l) if l == s.id => op.run_local(s).await,
                Some(l) => {
                    let Some(addr) = s.leader_addr(l) else {
                        last_problem = format!("leader {l} has no address in the membership");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    match s.client.post::<Op, ClusterReply<Op::Out>>(&addr, Op::PATH, &op, remaining).await {
                        Ok(r) => r,
                        Err(e @ TransportError::Connect { .. }) => {
                            last_problem = e.to_string();
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        Err(e) if Op::IDEMPOTENT => {
                            last_problem = e.to_string();
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        Err(e) => {
                            return Err(Error::Rpc { peer: addr, message: e.to_string() });
                        }
                    }
                }
                None => {
                    // Wake on the next metrics change (e.g. a leader elected), or soon.
                    let _ = tokio::time::timeout(Duration::from_millis(50).min(remaining), metrics.changed()).await;
                    continue;
                }
            };
            match reply {
                ClusterReply::Ok { value } => return Ok(value),
                ClusterReply::NotLeader { leader } => {
                    last_problem = format!("asked node is not the leader (it names {leader:?})");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ClusterReply::NoQuorum { message } => {
                    // One slow heartbeat round is not a lost quorum: ask again until
                    // the deadline, then report it.
                    last_problem = message;
                    no_quorum = true;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ClusterReply::Failed { message } => {
                    return Err(Error::Rpc { peer: format!("node {}", leader.unwrap_or_default()), message });
                }
            }
        }
    }
}
