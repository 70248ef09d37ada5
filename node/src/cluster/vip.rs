//! VIP ownership on a running node, wiring the `vrrp` crate to Raft:
//! - on the leader, `LeaderVips` answers lease renewals (recording each grant in
//!   the per-VIP `GrantTable`), collects node reports, and runs the controller that
//!   commits `VipAssign` entries;
//! - on every proxy node, one `OwnerTask` per VIP takes and releases the address
//!   as the committed assignment and its lease allow.
//!
//! The safety argument lives in `vrrp::lease` (never two owners: the leader
//! reassigns only after the old owner's lease has certainly run out on its own
//! clock, or after the owner confirmed through the log that it released).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_store::{ClusterNode, ClusterState, Command, LeaderHooks, NodeReport, Role};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vrrp::controller::{ControllerInput, NodeRole, NodeState, VipAssign, VipConfig, VipController};
use vrrp::lease::{Clock, GrantTable, LeasePolicy, SystemClock};
use vrrp::owner::{Assignment, OwnerConfig, OwnerStatus, OwnerTask, Renewer};
use vrrp::{NodeId, VipAddress};

use crate::config::VipSettings;

/// How often nodes report to the leader and the controller re-evaluates.
pub const TICK: Duration = Duration::from_millis(50);
/// A node that has not reported for this long is treated as gone.
const REPORT_STALE: Duration = Duration::from_millis(400);
/// A leaving owner gets this long to remove its address and confirm the release
/// through the log (a planned handover then needs no lease wait) before the
/// controller revokes its VIPs the slow way.
const HANDOVER_GRACE: Duration = Duration::from_millis(1500);

pub fn vip_address(v: &VipSettings) -> Option<VipAddress> {
    VipAddress::new(v.ip, v.prefix).ok()
}

fn vip_config(v: &VipSettings) -> Option<VipConfig> {
    Some(VipConfig {
        address: vip_address(v)?,
        interface: v.interface.clone(),
        priority: v.priority.clone(),
        preempt: v.preempt,
        preempt_delay_ms: v.preempt_delay.as_millis() as u64,
    })
}

fn policy(v: &VipSettings) -> LeasePolicy {
    LeasePolicy { lease: v.lease, max_drift: v.max_drift, margin: v.margin }
}

struct LeaderState {
    grants: HashMap<VipAddress, GrantTable>,
    reports: BTreeMap<NodeId, (NodeReport, Duration)>,
    controller: VipController,
    leader: bool,
    /// When this node last became leader; reports are only trusted after a full
    /// report window, so a new leader does not take a healthy owner for dead.
    leader_since: Duration,
    /// When each node first reported that it is shutting down.
    leaving_since: BTreeMap<NodeId, Duration>,
    vips: Vec<VipSettings>,
}

/// The leader's side: grants, reports and the controller. Lives on every node
/// (any node may become leader) and acts only while this node leads.
pub struct LeaderVips {
    clock: Arc<SystemClock>,
    inner: Mutex<LeaderState>,
}

impl LeaderVips {
    pub fn new(clock: Arc<SystemClock>) -> Arc<Self> {
        Arc::new(LeaderVips {
            clock,
            inner: Mutex::new(LeaderState {
                grants: HashMap::new(),
                reports: BTreeMap::new(),
                controller: VipController::new(),
                leader: false,
                leader_since: Duration::ZERO,
                leaving_since: BTreeMap::new(),
                vips: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaderState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The VIP list of the current config.
    pub fn set_vips(&self, vips: &[VipSettings]) {
        let mut st = self.lock();
        let now = self.clock.now();
        let leader = st.leader;
        for v in vips {
            let Some(addr) = vip_address(v) else { continue };
            let table = st.grants.entry(addr).or_insert_with(|| {
                let mut t = GrantTable::new(policy(v));
                if leader {
                    // A VIP new to this leader: nobody can hold a lease on it yet
                    // from this leader, but a predecessor might have; wait one window.
                    t.on_become_leader(now);
                }
                t
            });
            if table.policy() != policy(v) {
                // Policy changed: start over conservatively.
                let mut t = GrantTable::new(policy(v));
                if leader {
                    t.on_become_leader(now);
                }
                *table = t;
            }
        }
        st.vips = vips.to_vec();
    }

    /// On the leader: how long ago each node last reported; empty while not leading
    /// (followers hear no reports).
    pub fn report_ages(&self) -> BTreeMap<NodeId, Duration> {
        let now = self.clock.now();
        let st = self.lock();
        if !st.leader {
            return BTreeMap::new();
        }
        st.reports.iter().map(|(id, (_, at))| (*id, now.saturating_sub(*at))).collect()
    }

    /// Leadership changes (rule 3: a new leader trusts no earlier grant).
    fn set_leader(&self, is_leader: bool) {
        let mut st = self.lock();
        if st.leader == is_leader {
            return;
        }
        st.leader = is_leader;
        let now = self.clock.now();
        st.leader_since = now;
        for t in st.grants.values_mut() {
            if is_leader { t.on_become_leader(now) } else { t.on_lose_leadership() }
        }
        st.controller.reset();
        st.reports.clear();
        st.leaving_since.clear();
        tracing::info!(leader = is_leader, "VIP controller {}", if is_leader { "active" } else { "standing by" });
    }

    /// Marks releases that the log confirmed. A `VipReleased` entry leaves the
    /// epoch as it was and clears the owner; a revoke by the controller also clears
    /// the owner but bumps the epoch, and must NOT count as a release: the old
    /// owner's lease may still be running.
    fn note_releases(&self, state: &ClusterState) {
        let mut st = self.lock();
        for (vip, a) in &state.vips {
            let Ok(addr) = vip.parse::<VipAddress>() else { continue };
            if a.owner.is_some() {
                continue;
            }
            if let Some(t) = st.grants.get_mut(&addr) {
                if let Some(vrrp::lease::Grant::Held { node, epoch, .. }) = t.grant_for(&addr) {
                    if epoch == a.epoch {
                        t.record_release(addr, node, epoch);
                    }
                }
            }
        }
    }

    /// One controller pass; returns the assignments to commit.
    fn decide(&self, state: &ClusterState, members: &BTreeMap<NodeId, Role>) -> Vec<VipAssign> {
        let now = self.clock.now();
        let mut st = self.lock();
        if !st.leader || now.saturating_sub(st.leader_since) < REPORT_STALE {
            return Vec::new();
        }
        let mut nodes = BTreeMap::new();
        for (id, role) in members {
            let report = st.reports.get(id);
            let fresh = report.is_some_and(|(_, at)| now.saturating_sub(*at) < REPORT_STALE);
            let (healthy, leaving) = report.map(|(r, _)| (r.proxy_healthy, r.shutting_down)).unwrap_or((false, false));
            nodes.insert(
                *id,
                NodeState {
                    role: if *role == Role::Witness { NodeRole::Witness } else { NodeRole::Proxy },
                    alive: fresh,
                    proxy_healthy: healthy,
                    shutting_down: leaving,
                },
            );
        }
        let mut assignments = BTreeMap::new();
        for (vip, a) in &state.vips {
            if let Ok(addr) = vip.parse::<VipAddress>() {
                assignments.insert(addr, VipAssign { vip: addr, owner: a.owner, epoch: a.epoch });
            }
        }
        let vips: Vec<VipConfig> = st.vips.iter().filter_map(vip_config).collect();
        let mut out = Vec::new();
        let LeaderState { grants, controller, leaving_since, .. } = &mut *st;
        controller.retain_vips(&vips);
        for v in &vips {
            let Some(table) = grants.get(&v.address) else { continue };
            // A leaving node that still owns this VIP is left alone for a moment:
            // it is releasing it itself, which hands over without a lease wait.
            let mut nodes = nodes.clone();
            let owner = assignments.get(&v.address).and_then(|a| a.owner);
            if let Some(o) = owner {
                let grace = leaving_since.get(&o).is_some_and(|t| now.saturating_sub(*t) < HANDOVER_GRACE);
                if let (true, Some(n)) = (grace, nodes.get_mut(&o)) {
                    n.shutting_down = false;
                    n.proxy_healthy = true;
                    n.alive = true;
                }
            }
            let input = ControllerInput { vips: std::slice::from_ref(v), nodes: &nodes, assignments: &assignments };
            out.extend(controller.decide(&input, table, now));
        }
        out
    }
}

impl LeaderHooks for LeaderVips {
    fn grant_lease(&self, vip: &str, epoch: u64, node: NodeId) -> bool {
        let Ok(addr) = vip.parse::<VipAddress>() else { return false };
        let now = self.clock.now();
        let mut st = self.lock();
        match st.grants.get_mut(&addr) {
            // The caller checked the applied state: `node` owns `vip` at `epoch`.
            Some(t) => t.grant(addr, node, epoch, Some(node), epoch, now),
            None => false,
        }
    }

    fn node_report(&self, report: NodeReport) {
        let now = self.clock.now();
        let mut st = self.lock();
        if report.shutting_down {
            st.leaving_since.entry(report.node).or_insert(now);
        } else {
            st.leaving_since.remove(&report.node);
        }
        st.reports.insert(report.node, (report, now));
    }
}

/// Runs the leader side: tracks leadership, and while leading commits what the
/// controller decides. Ends when `stop` fires.
pub async fn controller_loop(leader: Arc<LeaderVips>, raft: ClusterNode, mut stop: watch::Receiver<bool>) {
    let mut state_rx = raft.state();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state_rx.changed() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        leader.set_leader(raft.is_leader());
        let state = state_rx.borrow_and_update().clone();
        leader.note_releases(&state);
        let members: BTreeMap<NodeId, Role> = raft.status().members.iter().map(|m| (m.id, m.role)).collect();
        for a in leader.decide(&state, &members) {
            tracing::info!(vip = %a.vip, owner = ?a.owner, epoch = a.epoch, "assigning VIP");
            let cmd = Command::VipAssign { vip: a.vip.to_string(), owner: a.owner, epoch: a.epoch };
            if let Err(e) = raft.write(cmd).await {
                tracing::warn!(vip = %a.vip, error = %e, "VIP assignment not committed");
            }
        }
    }
}

/// The owner's question to the cluster, over Raft.
pub struct RaftRenewer {
    pub raft: ClusterNode,
}

impl Renewer for RaftRenewer {
    type Error = raft_store::Error;

    async fn renew(&self, vip: VipAddress, epoch: u64) -> Result<bool, raft_store::Error> {
        self.raft.confirm_vip_owner(&vip.to_string(), epoch, self.raft.id()).await
    }

    async fn released(&self, vip: VipAddress, epoch: u64) -> Result<(), raft_store::Error> {
        let cmd = Command::VipReleased { vip: vip.to_string(), epoch, node: self.raft.id() };
        self.raft.write(cmd).await.map(|_| ())
    }
}

struct Owner {
    settings: VipSettings,
    assignment: watch::Sender<Assignment>,
    stop: watch::Sender<bool>,
    status: watch::Receiver<OwnerStatus>,
    task: JoinHandle<()>,
}

/// This node's owner tasks, one per VIP it could own.
pub struct Owners {
    node: NodeId,
    raft: ClusterNode,
    clock: Arc<SystemClock>,
    owners: Mutex<BTreeMap<VipAddress, Owner>>,
    /// Set by [`Self::stop_all`]: a leaving node starts no new owner task, even
    /// when the state changes while it waits for its VIPs to be reassigned.
    closed: std::sync::atomic::AtomicBool,
}

impl Owners {
    pub fn new(node: NodeId, raft: ClusterNode, clock: Arc<SystemClock>) -> Self {
        Owners { node, raft, clock, owners: Mutex::new(BTreeMap::new()), closed: Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<VipAddress, Owner>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts, stops and updates owner tasks to match the config and the state.
    pub fn reconcile(&self, vips: &[VipSettings], state: &ClusterState) {
        let mut owners = self.lock();
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let wanted: BTreeMap<VipAddress, &VipSettings> = vips
            .iter()
            .filter(|v| v.priority.get(&self.node).is_some_and(|p| *p > 0))
            .filter_map(|v| Some((vip_address(v)?, v)))
            .collect();
        owners.retain(|addr, o| {
            // Only what the owner task itself runs on restarts it (which drops the
            // address): a change of priority or preempt is the leader's business
            // and must not blink the VIP on its current owner.
            let keep =
                wanted.get(addr).is_some_and(|v| v.interface == o.settings.interface && v.lease == o.settings.lease);
            if !keep {
                let _ = o.stop.send(true);
            }
            keep
        });
        for (addr, v) in wanted {
            if owners.contains_key(&addr) {
                continue;
            }
            let cfg = OwnerConfig::new(self.node, addr, v.interface.clone(), v.lease);
            let renewer = Arc::new(RaftRenewer { raft: self.raft.clone() });
            let task = match OwnerTask::new(cfg, renewer, Arc::clone(&self.clock)) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(vip = %addr, error = %e, "cannot manage VIP on this node");
                    continue;
                }
            };
            let status = task.status();
            let (assignment, assignment_rx) = watch::channel(None);
            let (stop, stop_rx) = watch::channel(false);
            let handle = tokio::spawn(async move {
                match task.run(assignment_rx, stop_rx).await {
                    Ok(released) => tracing::info!(vip = %addr, ?released, "VIP owner task ended"),
                    Err(e) => tracing::error!(vip = %addr, error = %e, "VIP owner task failed"),
                }
            });
            tracing::info!(vip = %addr, interface = %v.interface, "managing VIP");
            owners.insert(addr, Owner { settings: v.clone(), assignment, stop, status, task: handle });
        }
        for (addr, o) in owners.iter() {
            let a = state.vips.get(&addr.to_string()).and_then(|a| a.owner.map(|n| (n, a.epoch)));
            o.assignment.send_if_modified(|cur| {
                let changed = *cur != a;
                *cur = a;
                changed
            });
        }
    }

    /// What this node holds, for status pages.
    pub fn statuses(&self) -> Vec<OwnerStatus> {
        self.lock().values().map(|o| o.status.borrow().clone()).collect()
    }

    pub fn owned_count(&self) -> usize {
        self.lock().values().filter(|o| o.status.borrow().owned).count()
    }

    /// The VIPs whose address this node holds right now.
    pub fn held(&self) -> Vec<VipAddress> {
        self.lock().values().filter(|o| o.status.borrow().owned).map(|o| o.status.borrow().vip).collect()
    }

    /// Planned handover, step one: new TCP connections to `vips` are dropped
    /// silently (SYN only, nothing answered) while this node still holds them, so
    /// its open connections can be closed without new ones arriving; clients
    /// retransmit the SYN and reach the next owner. Returns the VIPs blocked.
    pub async fn block_new_connections(&self, vips: &[VipAddress]) -> Vec<VipAddress> {
        let mut done = Vec::new();
        for v in vips {
            match vrrp::fence::Fence::new(vrrp::owner::FENCE_INSTANCE, v.ip()) {
                Ok(f) => match f.block_new_connections().await {
                    Ok(()) => done.push(*v),
                    Err(e) => tracing::warn!(vip = %v, error = %e, "cannot block new connections before handover"),
                },
                Err(e) => tracing::warn!(vip = %v, error = %e, "cannot block new connections before handover"),
            }
        }
        done
    }

    /// Removes what [`Self::block_new_connections`] added.
    pub async fn unblock_new_connections(&self, vips: &[VipAddress]) {
        for v in vips {
            let r = match vrrp::fence::Fence::new(vrrp::owner::FENCE_INSTANCE, v.ip()) {
                Ok(f) => f.unblock_new_connections().await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::warn!(vip = %v, error = %e, "removing the handover SYN block failed");
            }
        }
    }

    /// Stops every owner task (each removes its address and reports the release).
    pub async fn stop_all(&self, timeout: Duration) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut owners = self.lock();
            self.closed.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut v = Vec::new();
            for (_, o) in std::mem::take(&mut *owners) {
                let _ = o.stop.send(true);
                v.push(o.task);
            }
            v
        };
        for t in tasks {
            let _ = tokio::time::timeout(timeout, t).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> VipSettings {
        VipSettings {
            address: "192.0.2.10/24".into(),
            ip: "192.0.2.10".parse().unwrap(),
            prefix: 24,
            interface: "eth0".into(),
            priority: BTreeMap::from([(1, 150), (2, 100)]),
            preempt: false,
            preempt_delay: Duration::ZERO,
            lease: Duration::from_millis(1000),
            max_drift: 0.01,
            margin: Duration::from_millis(100),
        }
    }

    fn state(owner: Option<NodeId>, epoch: u64) -> ClusterState {
        let mut s = ClusterState::default();
        s.vips.insert("192.0.2.10/24".into(), raft_store::VipAssignment { vip: "192.0.2.10/24".into(), owner, epoch });
        s
    }

    #[test]
    fn a_revoke_is_not_mistaken_for_a_release() {
        let leader = LeaderVips::new(Arc::new(SystemClock::new()));
        leader.set_vips(&[settings()]);
        leader.set_leader(true);
        let addr: VipAddress = "192.0.2.10/24".parse().unwrap();
        assert!(leader.grant_lease("192.0.2.10/24", 1, 2));
        let may = |l: &LeaderVips| l.lock().grants[&addr].may_reassign(&addr, l.clock.now());
        // The controller revoked (owner None, epoch bumped): node 2's lease may
        // still run, so nobody else may get the VIP yet.
        leader.note_releases(&state(None, 2));
        assert!(!may(&leader), "revoke counted as a release");
        // Node 2 confirmed its release at its own epoch: the VIP is free at once.
        leader.note_releases(&state(None, 1));
        assert!(may(&leader));
    }
}
