//! The leader's VIP controller: from config, node health and the committed
//! assignments it decides which `VipAssign` entries to propose next. Pure logic;
//! proposing them to Raft, and feeding renewals and releases into the
//! [`GrantTable`], is the node's job.
//!
//! A move of a VIP from node A to node B always goes through a safe point: either
//! the leader's grant table says no lease of A can still be valid, or A confirmed
//! through the log that it removed the address. Until then the controller revokes
//! (assigns nobody at a new epoch), so A's renewals stop being granted and its lease
//! runs out on its own; only then is B assigned. Reassigning to the node that last
//! held the lease needs no wait: one node cannot collide with itself.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lease::GrantTable;
use crate::{NodeId, VipAddress};

/// One `[[vip]]` entry of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipConfig {
    pub address: VipAddress,
    pub interface: String,
    /// Only the nodes listed here, with a priority above 0, may own the VIP.
    pub priority: BTreeMap<NodeId, u8>,
    #[serde(default)]
    pub preempt: bool,
    #[serde(default)]
    pub preempt_delay_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Proxy,
    Witness,
}

/// A node as the leader sees it right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeState {
    pub role: NodeRole,
    /// Reachable from the leader (heartbeats answered recently).
    pub alive: bool,
    /// Its proxy reports itself able to serve.
    pub proxy_healthy: bool,
    /// It asked to be relieved (SIGTERM, drain).
    pub shutting_down: bool,
}

impl NodeState {
    fn can_own(&self) -> bool {
        self.role == NodeRole::Proxy && self.alive && self.proxy_healthy && !self.shutting_down
    }
}

/// The replicated assignment of one VIP (`VipAssignment` in the state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipAssign {
    pub vip: VipAddress,
    pub owner: Option<NodeId>,
    pub epoch: u64,
}

/// What the controller reads on each tick.
#[derive(Debug, Clone, Copy)]
pub struct ControllerInput<'a> {
    pub vips: &'a [VipConfig],
    pub nodes: &'a BTreeMap<NodeId, NodeState>,
    /// Committed assignments; a VIP missing here has never been assigned (epoch 0).
    pub assignments: &'a BTreeMap<VipAddress, VipAssign>,
}

/// The leader's VIP controller. Keeps only the preempt timers between ticks; all
/// lease knowledge is in the [`GrantTable`], which also carries the release
/// confirmations (`GrantTable::record_release`).
#[derive(Debug, Default)]
pub struct VipController {
    /// Per VIP: the better node waiting to preempt and since when (leader time).
    preempt_pending: BTreeMap<VipAddress, (NodeId, Duration)>,
}

impl VipController {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget timers, e.g. when leadership is lost.
    pub fn reset(&mut self) {
        self.preempt_pending.clear();
    }

    /// Forgets the preempt timers of VIPs no longer configured. Called with the
    /// whole VIP list, separately from `decide`: a caller that decides one VIP at a
    /// time (each VIP has its own grant table) must not have the other VIPs'
    /// timers reset on every call, or a preempt delay never runs out.
    pub fn retain_vips(&mut self, vips: &[VipConfig]) {
        self.preempt_pending.retain(|vip, _| vips.iter().any(|c| c.address == *vip));
    }

    /// The assignments to propose now, each at the committed epoch + 1. Call it on
    /// every change of input and periodically (a few times per lease), since waits
    /// end by the passage of time alone.
    pub fn decide(&mut self, input: &ControllerInput<'_>, grants: &GrantTable, now: Duration) -> Vec<VipAssign> {
        if !grants.is_leader() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for cfg in input.vips {
            let current = input.assignments.get(&cfg.address).copied().unwrap_or(VipAssign {
                vip: cfg.address,
                owner: None,
                epoch: 0,
            });
            if let Some(next) = self.decide_one(cfg, input.nodes, current, grants, now) {
                out.push(VipAssign { vip: cfg.address, owner: next, epoch: current.epoch + 1 });
            }
        }
        out
    }

    /// `Some(new_owner)` when the assignment should change.
    fn decide_one(
        &mut self,
        cfg: &VipConfig,
        nodes: &BTreeMap<NodeId, NodeState>,
        current: VipAssign,
        grants: &GrantTable,
        now: Duration,
    ) -> Option<Option<NodeId>> {
        let priority = |n: NodeId| cfg.priority.get(&n).copied().unwrap_or(0);
        let eligible = |n: NodeId| priority(n) > 0 && nodes.get(&n).is_some_and(NodeState::can_own);
        // Highest priority wins; the lower node id breaks ties so every leader agrees.
        let best = cfg.priority.keys().copied().filter(|n| eligible(*n)).max_by_key(|n| (priority(*n), Reverse(*n)));

        let want = match current.owner {
            Some(owner) if eligible(owner) => match best {
                Some(b) if cfg.preempt && priority(b) > priority(owner) => {
                    let since = match self.preempt_pending.get(&cfg.address) {
                        Some((n, since)) if *n == b => *since,
                        _ => {
                            self.preempt_pending.insert(cfg.address, (b, now));
                            now
                        }
                    };
                    if now.saturating_sub(since) < Duration::from_millis(cfg.preempt_delay_ms) {
                        return None;
                    }
                    Some(b)
                }
                _ => {
                    // nopreempt, or nobody better: a healthy owner keeps the VIP.
                    self.preempt_pending.remove(&cfg.address);
                    return None;
                }
            },
            // The owner is gone, unhealthy, a witness or shutting down: relieve it.
            _ => {
                self.preempt_pending.remove(&cfg.address);
                best
            }
        };
        if want == current.owner {
            return None;
        }
        let Some(new_owner) = want else {
            return Some(None);
        };
        let safe = grants.may_reassign(&cfg.address, now) || grants.holder(&cfg.address) == Some(new_owner);
        if safe {
            self.preempt_pending.remove(&cfg.address);
            Some(Some(new_owner))
        } else if current.owner.is_some() {
            // Stop renewals of the old owner; assign the new one once its lease is
            // certainly over or it confirmed the release.
            Some(None)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeasePolicy;

    const LEASE: u64 = 300;
    const WAIT: u64 = 316; // 300 * 1.02 + 10

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> LeasePolicy {
        LeasePolicy { lease: ms(LEASE), max_drift: 0.01, margin: ms(10) }
    }

    fn vipc(addr: &str, prio: &[(NodeId, u8)], preempt: bool, delay: u64) -> VipConfig {
        VipConfig {
            address: addr.parse().unwrap(),
            interface: "eth0".into(),
            priority: prio.iter().copied().collect(),
            preempt,
            preempt_delay_ms: delay,
        }
    }

    fn proxy() -> NodeState {
        NodeState { role: NodeRole::Proxy, alive: true, proxy_healthy: true, shutting_down: false }
    }

    /// A little cluster: applies decisions as if committed, and lets the current
    /// owner renew (granted) while it is alive, like the real node would.
    struct World {
        vips: Vec<VipConfig>,
        nodes: BTreeMap<NodeId, NodeState>,
        assignments: BTreeMap<VipAddress, VipAssign>,
        grants: GrantTable,
        ctl: VipController,
        now: Duration,
    }

    impl World {
        fn new(vips: Vec<VipConfig>, nodes: &[(NodeId, NodeState)]) -> Self {
            let mut grants = GrantTable::new(policy());
            grants.on_become_leader(ms(0));
            World {
                vips,
                nodes: nodes.iter().copied().collect(),
                assignments: BTreeMap::new(),
                grants,
                ctl: VipController::new(),
                now: ms(0),
            }
        }

        /// One VIP at a time, as the node's leader loop calls it.
        fn tick(&mut self) -> Vec<VipAssign> {
            self.ctl.retain_vips(&self.vips);
            let mut out = Vec::new();
            for v in &self.vips {
                let input = ControllerInput {
                    vips: std::slice::from_ref(v),
                    nodes: &self.nodes,
                    assignments: &self.assignments,
                };
                out.extend(self.ctl.decide(&input, &self.grants, self.now));
            }
            for a in &out {
                self.assignments.insert(a.vip, *a);
            }
            out
        }

        /// Advance time in 10 ms steps; owners that are alive renew each step.
        fn run(&mut self, for_ms: u64) {
            for _ in 0..for_ms / 10 {
                self.now += ms(10);
                for a in self.assignments.values() {
                    if let Some(o) = a.owner
                        && self.nodes.get(&o).is_some_and(|n| n.alive)
                    {
                        self.grants.grant(a.vip, o, a.epoch, a.owner, a.epoch, self.now);
                    }
                }
                self.tick();
            }
        }

        fn owner(&self, vip: &str) -> Option<NodeId> {
            self.assignments.get(&vip.parse().unwrap()).and_then(|a| a.owner)
        }

        fn set(&mut self, n: NodeId, f: impl FnOnce(&mut NodeState)) {
            f(self.nodes.get_mut(&n).unwrap());
        }
    }

    const V1: &str = "10.0.0.100/24";
    const V2: &str = "10.0.0.101/24";

    #[test]
    fn new_leader_waits_a_full_window_then_picks_highest_priority() {
        let mut w = World::new(vec![vipc(V1, &[(1, 150), (2, 100)], false, 0)], &[(1, proxy()), (2, proxy())]);
        w.now = ms(WAIT - 1);
        assert!(w.tick().is_empty(), "rule 3: nothing before the window ends");
        w.now = ms(WAIT);
        let out = w.tick();
        assert_eq!(out, vec![VipAssign { vip: V1.parse().unwrap(), owner: Some(1), epoch: 1 }]);
    }

    #[test]
    fn witness_never_owns_even_if_listed() {
        let mut witness = proxy();
        witness.role = NodeRole::Witness;
        let mut w = World::new(vec![vipc(V1, &[(3, 255), (2, 100)], true, 0)], &[(3, witness), (2, proxy())]);
        w.run(1000);
        assert_eq!(w.owner(V1), Some(2));
        w.set(2, |n| n.alive = false);
        w.run(2000);
        assert_eq!(w.owner(V1), None, "only the witness is left");
    }

    #[test]
    fn dead_owner_is_replaced_only_after_its_lease_window() {
        let mut w = World::new(vec![vipc(V1, &[(1, 150), (2, 100)], false, 0)], &[(1, proxy()), (2, proxy())]);
        w.run(1000);
        assert_eq!(w.owner(V1), Some(1));
        let last_yes = w.now;
        w.set(1, |n| n.alive = false);
        // the controller may revoke at once but must not name node 2 before the window
        while w.now < last_yes + ms(WAIT) - ms(10) {
            w.run(10);
            assert_ne!(w.owner(V1), Some(2), "at {:?}", w.now);
        }
        w.run(30);
        assert_eq!(w.owner(V1), Some(2));
    }

    #[test]
    fn nopreempt_keeps_a_healthy_owner_when_a_better_node_returns() {
        let mut w = World::new(vec![vipc(V1, &[(1, 150), (2, 100)], false, 0)], &[(1, proxy()), (2, proxy())]);
        w.set(1, |n| n.proxy_healthy = false);
        w.run(1000);
        assert_eq!(w.owner(V1), Some(2));
        w.set(1, |n| n.proxy_healthy = true);
        w.run(3000);
        assert_eq!(w.owner(V1), Some(2));
    }

    #[test]
    fn preempt_moves_after_delay_through_a_revoke_and_a_safe_point() {
        let mut w = World::new(vec![vipc(V1, &[(1, 150), (2, 100)], true, 500)], &[(1, proxy()), (2, proxy())]);
        w.set(1, |n| n.alive = false);
        w.run(1000);
        assert_eq!(w.owner(V1), Some(2));
        let epoch = w.assignments[&V1.parse().unwrap()].epoch;
        w.set(1, |n| n.alive = true);
        w.run(490);
        assert_eq!(w.owner(V1), Some(2), "still inside preempt_delay_ms");
        // after the delay: revoke first (node 2 still holds a lease)
        w.run(20);
        assert_eq!(w.owner(V1), None);
        let revoked_at = w.now;
        // node 2 confirms nothing: node 1 only after the full window
        while w.now < revoked_at + ms(WAIT) - ms(20) {
            w.run(10);
            assert_ne!(w.owner(V1), Some(1));
        }
        w.run(40);
        assert_eq!(w.owner(V1), Some(1));
        assert_eq!(w.assignments[&V1.parse().unwrap()].epoch, epoch + 2);
    }

    #[test]
    fn confirmed_release_skips_the_wait() {
        let mut w = World::new(vec![vipc(V1, &[(1, 150), (2, 100)], true, 0)], &[(1, proxy()), (2, proxy())]);
        w.set(1, |n| n.alive = false);
        w.run(1000);
        assert_eq!(w.owner(V1), Some(2));
        w.set(1, |n| n.alive = true);
        w.tick();
        assert_eq!(w.owner(V1), None, "revoked");
        let held = w.assignments[&V1.parse().unwrap()].epoch - 1;
        assert!(w.grants.record_release(V1.parse().unwrap(), 2, held));
        w.tick();
        assert_eq!(w.owner(V1), Some(1), "handover without waiting the lease out");
    }

    #[test]
    fn shutting_down_owner_is_relieved_and_its_release_hands_over_at_once() {
        let mut w = World::new(vec![vipc(V1, &[(1, 150), (2, 100)], false, 0)], &[(1, proxy()), (2, proxy())]);
        w.run(1000);
        assert_eq!(w.owner(V1), Some(1));
        let e = w.assignments[&V1.parse().unwrap()].epoch;
        // graceful shutdown: node 1 removes the address, logs the release, says so
        w.set(1, |n| n.shutting_down = true);
        assert!(w.grants.record_release(V1.parse().unwrap(), 1, e));
        let out = w.tick();
        assert_eq!(out, vec![VipAssign { vip: V1.parse().unwrap(), owner: Some(2), epoch: e + 1 }]);
    }

    #[test]
    fn unhealthy_owner_is_revoked_and_regains_at_once_if_it_recovers_first() {
        let mut w = World::new(vec![vipc(V1, &[(1, 150)], false, 0)], &[(1, proxy())]);
        w.run(1000);
        w.set(1, |n| n.proxy_healthy = false);
        w.tick();
        assert_eq!(w.owner(V1), None);
        w.set(1, |n| n.proxy_healthy = true);
        w.tick();
        assert_eq!(w.owner(V1), Some(1), "same node as the last holder: no wait");
    }

    #[test]
    fn several_vips_spread_active_active_by_priority() {
        let mut w = World::new(
            vec![vipc(V1, &[(1, 150), (2, 100)], true, 0), vipc(V2, &[(1, 100), (2, 150)], true, 0)],
            &[(1, proxy()), (2, proxy())],
        );
        w.run(1000);
        assert_eq!((w.owner(V1), w.owner(V2)), (Some(1), Some(2)));
        w.set(2, |n| n.alive = false);
        w.run(1000);
        assert_eq!((w.owner(V1), w.owner(V2)), (Some(1), Some(1)));
        w.set(2, |n| n.alive = true);
        w.run(1000);
        assert_eq!((w.owner(V1), w.owner(V2)), (Some(1), Some(2)), "failback with preempt");
    }

    #[test]
    fn preempt_delay_runs_out_for_each_of_several_vips_decided_one_at_a_time() {
        // Regression: deciding one VIP reset the other VIPs' preempt timers, so
        // with two VIPs and a delay the better node never took either back.
        let mut w = World::new(
            vec![vipc(V1, &[(1, 150), (2, 100)], true, 500), vipc(V2, &[(1, 150), (2, 100)], true, 500)],
            &[(1, proxy()), (2, proxy())],
        );
        w.set(1, |n| n.alive = false);
        w.run(1000);
        assert_eq!((w.owner(V1), w.owner(V2)), (Some(2), Some(2)));
        w.set(1, |n| n.alive = true);
        w.run(2000);
        assert_eq!((w.owner(V1), w.owner(V2)), (Some(1), Some(1)), "both fail back after the delay");
        // And a VIP dropped from the config loses its timer.
        w.vips.truncate(1);
        w.ctl.retain_vips(&w.vips);
        assert!(w.ctl.preempt_pending.keys().all(|v| *v == V1.parse().unwrap()));
    }

    /// Flap node 1 (preferred) every 150 ms for 6 s; model each node's lease as the
    /// leader's grants give it (from its last yes for LEASE ms) and check that
    /// whenever the assignment names a node, no other node's lease is still running.
    /// Returns the number of ownership changes.
    fn flap(preempt_delay_ms: u64, start_owner: NodeId) -> usize {
        let mut w =
            World::new(vec![vipc(V1, &[(1, 150), (2, 100)], true, preempt_delay_ms)], &[(1, proxy()), (2, proxy())]);
        let vip: VipAddress = V1.parse().unwrap();
        w.set(1, |n| n.proxy_healthy = start_owner == 1);
        w.run(1000);
        assert_eq!(w.owner(V1), Some(start_owner));
        let mut last_yes: BTreeMap<NodeId, Duration> = BTreeMap::new();
        let mut changes = 0;
        let mut prev = w.owner(V1);
        for step in 1..=600u64 {
            if step % 15 == 0 {
                w.set(1, |n| n.proxy_healthy = !n.proxy_healthy);
            }
            w.now += ms(10);
            if let Some(a) = w.assignments.get(&vip)
                && let Some(o) = a.owner
                && w.grants.grant(vip, o, a.epoch, a.owner, a.epoch, w.now)
            {
                last_yes.insert(o, w.now);
            }
            w.tick();
            let owner = w.owner(V1);
            if owner != prev {
                changes += 1;
                prev = owner;
            }
            if let Some(o) = owner {
                for (n, t) in &last_yes {
                    assert!(*n == o || w.now >= *t + ms(LEASE), "step {step}: {o} assigned while {n} may hold a lease");
                }
            }
        }
        changes
    }

    #[test]
    fn flapping_never_yields_two_lease_holders() {
        // the preferred owner itself flaps
        let changes = flap(0, 1);
        assert!(changes >= 20, "the owner should have moved often: {changes}");
        // a better node flaps while the other one owns, preempting at once
        let changes = flap(0, 2);
        assert!(changes >= 20, "the owner should have moved often: {changes}");
    }

    #[test]
    fn preempt_delay_damps_flapping() {
        // Node 1 is never healthy for a full second, so it never preempts node 2.
        assert_eq!(flap(1000, 2), 0);
    }

    #[test]
    fn not_leader_decides_nothing() {
        let mut ctl = VipController::new();
        let grants = GrantTable::new(policy());
        let vips = vec![vipc(V1, &[(1, 150)], false, 0)];
        let nodes: BTreeMap<_, _> = [(1, proxy())].into_iter().collect();
        let assignments = BTreeMap::new();
        let input = ControllerInput { vips: &vips, nodes: &nodes, assignments: &assignments };
        assert!(ctl.decide(&input, &grants, ms(10_000)).is_empty());
    }
}
