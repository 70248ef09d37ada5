//! Lease arithmetic for VIP ownership, free of any OS call: the owner's [`Lease`],
//! the leader's [`GrantTable`], and the [`Clock`] both read. Who sends renewals and
//! when lives in `owner`; who may be assigned lives in `controller`.
//!
//! # The invariant, and why these two rules give it
//!
//! At any instant at most one node may hold a VIP, provided every node's monotonic
//! clock runs at a rate within `max_drift` of true time (rate in `[1-d, 1+d]`). No
//! node ever compares its clock with another node's clock.
//!
//! * Owner: a yes to a renewal *sent* at owner time `t_sent` lets the owner hold
//!   the address until `t_sent + lease` on its own clock, and it must drop the
//!   address at that instant ([`Lease::is_valid`]). Measured in true time, that is
//!   at most `lease / (1-d)` after the true instant of sending.
//! * Leader: it answers yes only after it received the request, so its grant
//!   instant (`last_yes`) is no earlier in true time than the owner's `t_sent`. It
//!   assigns someone else only once its own clock has advanced by
//!   `lease * (1 + 2d) + margin` since the last yes, which is at least
//!   `(lease * (1 + 2d) + margin) / (1+d)` of true time.
//! * So the leader's wait is at least the owner's hold when
//!   `(lease*(1+2d) + margin)/(1+d) >= lease/(1-d)`, i.e. `margin >= 2d²·lease/(1-d)`
//!   (0.06 ms for 300 ms and 1%). `margin` therefore really pays for the owner's
//!   removal latency (waking up, the netlink call) and for rounding.
//! * A new leader cannot know its predecessor's grants, so it acts as if it had
//!   granted everything at the moment it took over ([`GrantTable::on_become_leader`]);
//!   a deposed leader cannot confirm a quorum and so grants nothing afterwards.
//!
//! The tests at the bottom simulate owner and leader clocks running at skewed rates
//! and show the invariant holds for every skew within `max_drift` and is visibly
//! broken beyond it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{NodeId, VipAddress};

/// A local monotonic clock. Readings are only ever compared with readings of the
/// same clock on the same node.
pub trait Clock: Send + Sync {
    /// Time since an arbitrary, fixed origin.
    fn now(&self) -> Duration;
}

/// The real clock: `CLOCK_BOOTTIME`, which keeps counting while the machine is
/// suspended, so a suspended owner sees its lease as expired when it resumes
/// (`CLOCK_MONOTONIC` would not count the suspension).
#[derive(Debug, Default)]
pub struct SystemClock {
    last: AtomicU64,
}

impl SystemClock {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
            Ok(ts) => {
                let nanos = (ts.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec() as u64);
                self.last.fetch_max(nanos, Ordering::Relaxed);
                Duration::from_nanos(nanos)
            }
            Err(e) => {
                // Linux never fails CLOCK_BOOTTIME; if it somehow did, time standing
                // still delays the leader (safe) and the kernel fence still bounds
                // an owner.
                tracing::error!(error = %e, "clock_gettime(CLOCK_BOOTTIME) failed");
                Duration::from_nanos(self.last.load(Ordering::Relaxed))
            }
        }
    }
}

/// Simulated true time for tests: advanced by hand, read through [`SkewedClock`]s.
#[derive(Debug, Default)]
pub struct SimTime {
    nanos: AtomicU64,
}

impl SimTime {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }

    pub fn true_now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// A node's clock in a simulation: runs at `rate` times true time (1.01 = 1% fast)
/// from its own `offset`.
#[derive(Debug, Clone)]
pub struct SkewedClock {
    time: Arc<SimTime>,
    rate: f64,
    offset: Duration,
}

impl SkewedClock {
    pub fn new(time: Arc<SimTime>, rate: f64, offset: Duration) -> Self {
        Self { time, rate, offset }
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Duration {
        self.offset + self.time.true_now().mul_f64(self.rate)
    }
}

/// The owner's side of a lease on one VIP.
#[derive(Debug, Clone)]
pub struct Lease {
    length: Duration,
    until: Option<Duration>,
    last_confirmed_sent: Option<Duration>,
}

impl Lease {
    pub fn new(length: Duration) -> Self {
        Self { length, until: None, last_confirmed_sent: None }
    }

    pub fn length(&self) -> Duration {
        self.length
    }

    /// The leader confirmed a renewal that this node sent at `t_sent` (its own clock,
    /// read *before* sending). Using the send time, never the arrival time of the
    /// answer, is what keeps the owner's hold inside the leader's wait. A late yes
    /// to an older request never shortens the lease.
    pub fn confirm(&mut self, t_sent: Duration) {
        let until = t_sent + self.length;
        self.until = Some(self.until.map_or(until, |u| u.max(until)));
        self.last_confirmed_sent = Some(self.last_confirmed_sent.map_or(t_sent, |s| s.max(t_sent)));
    }

    /// Forget the lease at once (assignment moved away, shutdown).
    pub fn revoke(&mut self) {
        self.until = None;
    }

    /// The owner may hold the address only while this is true.
    pub fn is_valid(&self, now: Duration) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    pub fn until(&self) -> Option<Duration> {
        self.until
    }

    /// Time left before the owner must drop the address, if the lease is valid.
    pub fn remaining(&self, now: Duration) -> Option<Duration> {
        self.until.and_then(|u| u.checked_sub(now)).filter(|d| !d.is_zero())
    }

    /// Age of the newest confirmed renewal, measured from when it was sent.
    pub fn age(&self, now: Duration) -> Option<Duration> {
        self.last_confirmed_sent.map(|s| now.saturating_sub(s))
    }
}

/// The timing parameters the leader reasons with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeasePolicy {
    /// How long one confirmed renewal lets the owner hold the address.
    pub lease: Duration,
    /// Bound on any node's clock rate error, as a fraction (0.01 = 1%).
    pub max_drift: f64,
    /// Extra wait covering the owner's removal latency and rounding.
    pub margin: Duration,
}

impl LeasePolicy {
    /// How long after its last yes the leader must wait before another node may be
    /// given the VIP: `lease * (1 + 2 * max_drift) + margin`.
    pub fn reassign_wait(&self) -> Duration {
        self.lease.mul_f64(1.0 + 2.0 * self.max_drift.max(0.0)) + self.margin
    }
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self { lease: Duration::from_millis(300), max_drift: 0.01, margin: Duration::from_millis(50) }
    }
}

/// What the leader knows about the lease on one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `node` was last told yes for `epoch` at leader time `last_yes`.
    Held { node: NodeId, epoch: u64, last_yes: Duration },
    /// `node` confirmed (through the log) that it removed the address it held at
    /// `epoch`; no lease on the VIP can be valid.
    Released { node: NodeId, epoch: u64 },
}

/// The leader's record of renewals it granted. Local to the leader; rebuilt from
/// nothing after each election (see [`GrantTable::on_become_leader`]).
#[derive(Debug, Clone)]
pub struct GrantTable {
    policy: LeasePolicy,
    leader_since: Option<Duration>,
    grants: BTreeMap<VipAddress, Grant>,
}

impl GrantTable {
    pub fn new(policy: LeasePolicy) -> Self {
        Self { policy, leader_since: None, grants: BTreeMap::new() }
    }

    pub fn policy(&self) -> LeasePolicy {
        self.policy
    }

    /// Rule 3: a new leader does not know what its predecessor granted, so it treats
    /// every VIP as renewed right now and waits a full reassign window.
    pub fn on_become_leader(&mut self, now: Duration) {
        self.leader_since = Some(now);
        self.grants.clear();
    }

    /// This node stopped being leader: it must not reassign anything.
    pub fn on_lose_leadership(&mut self) {
        self.leader_since = None;
        self.grants.clear();
    }

    pub fn is_leader(&self) -> bool {
        self.leader_since.is_some()
    }

    /// Answer a renewal: yes only if `node` is the committed owner at `epoch` (the
    /// caller has already confirmed leadership with a quorum). Records the yes at
    /// `now` and returns whether it was granted.
    pub fn grant(
        &mut self,
        vip: VipAddress,
        node: NodeId,
        epoch: u64,
        current_owner: Option<NodeId>,
        current_epoch: u64,
        now: Duration,
    ) -> bool {
        if !self.is_leader() || current_owner != Some(node) || current_epoch != epoch {
            return false;
        }
        self.grants.insert(vip, Grant::Held { node, epoch, last_yes: now });
        true
    }

    /// `node` confirmed it removed the address it held at `epoch`. Counts only if it
    /// is the node this leader last granted to, at that epoch or later; a release this
    /// leader cannot match (e.g. one granted by its predecessor) is ignored, which
    /// only costs a wait.
    pub fn record_release(&mut self, vip: VipAddress, node: NodeId, epoch: u64) -> bool {
        match self.grants.get(&vip) {
            Some(Grant::Held { node: n, epoch: e, .. }) if *n == node && epoch >= *e => {
                self.grants.insert(vip, Grant::Released { node, epoch });
                true
            }
            _ => false,
        }
    }

    pub fn grant_for(&self, vip: &VipAddress) -> Option<Grant> {
        self.grants.get(vip).copied()
    }

    /// The node that may still hold a lease on `vip`, as far as this leader knows.
    pub fn holder(&self, vip: &VipAddress) -> Option<NodeId> {
        match self.grants.get(vip) {
            Some(Grant::Held { node, .. }) => Some(*node),
            _ => None,
        }
    }

    /// Rule 2: a node other than the last holder may be given `vip` only when no lease
    /// on it can still be valid on any node's clock.
    pub fn may_reassign(&self, vip: &VipAddress, now: Duration) -> bool {
        let Some(leader_since) = self.leader_since else {
            return false;
        };
        let since = match self.grants.get(vip) {
            Some(Grant::Released { .. }) => return true,
            Some(Grant::Held { last_yes, .. }) => *last_yes,
            None => leader_since,
        };
        now.saturating_sub(since) >= self.policy.reassign_wait()
    }

    /// Leader time at which [`Self::may_reassign`] becomes true, for scheduling.
    pub fn reassign_at(&self, vip: &VipAddress) -> Option<Duration> {
        let leader_since = self.leader_since?;
        match self.grants.get(vip) {
            Some(Grant::Released { .. }) => Some(leader_since),
            Some(Grant::Held { last_yes, .. }) => Some(*last_yes + self.policy.reassign_wait()),
            None => Some(leader_since + self.policy.reassign_wait()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn vip() -> VipAddress {
        "10.0.0.100/24".parse().unwrap()
    }

    #[test]
    fn lease_runs_from_send_time_not_answer_time() {
        let mut l = Lease::new(ms(300));
        assert!(!l.is_valid(ms(0)));
        l.confirm(ms(1000)); // sent at 1000, answer arrived later
        assert!(l.is_valid(ms(1299)));
        assert!(!l.is_valid(ms(1300)));
        assert_eq!(l.remaining(ms(1100)), Some(ms(200)));
        assert_eq!(l.remaining(ms(1300)), None);
        // a late answer to an older request does not shorten it
        l.confirm(ms(900));
        assert_eq!(l.until(), Some(ms(1300)));
        assert_eq!(l.age(ms(1050)), Some(ms(50)));
        l.revoke();
        assert!(!l.is_valid(ms(1000)));
    }

    #[test]
    fn leader_waits_drift_adjusted_window_after_last_yes() {
        let policy = LeasePolicy { lease: ms(300), max_drift: 0.01, margin: ms(10) };
        assert_eq!(policy.reassign_wait(), ms(316));
        let mut g = GrantTable::new(policy);
        // not leader: never
        assert!(!g.may_reassign(&vip(), ms(1_000_000)));
        g.on_become_leader(ms(1000));
        assert!(!g.may_reassign(&vip(), ms(1315)), "rule 3: wait after election");
        assert!(g.may_reassign(&vip(), ms(1316)));
        assert!(g.grant(vip(), 1, 4, Some(1), 4, ms(2000)));
        assert!(!g.grant(vip(), 1, 3, Some(1), 4, ms(2000)), "stale epoch refused");
        assert!(!g.grant(vip(), 2, 4, Some(1), 4, ms(2000)), "non-owner refused");
        assert!(!g.may_reassign(&vip(), ms(2315)));
        assert!(g.may_reassign(&vip(), ms(2316)));
        assert_eq!(g.reassign_at(&vip()), Some(ms(2316)));
        assert_eq!(g.holder(&vip()), Some(1));
    }

    #[test]
    fn release_from_the_holder_skips_the_wait_and_others_do_not() {
        let mut g = GrantTable::new(LeasePolicy::default());
        g.on_become_leader(ms(0));
        g.grant(vip(), 1, 7, Some(1), 7, ms(500));
        assert!(!g.record_release(vip(), 2, 7), "not the holder");
        assert!(!g.record_release(vip(), 1, 6), "older epoch");
        assert!(!g.may_reassign(&vip(), ms(501)));
        assert!(g.record_release(vip(), 1, 7));
        assert!(g.may_reassign(&vip(), ms(501)));
        // a new leader does not trust releases it cannot match
        g.on_become_leader(ms(600));
        assert!(!g.record_release(vip(), 1, 7));
        assert!(!g.may_reassign(&vip(), ms(601)));
    }

    /// One run of the renew protocol between an owner and a leader whose clocks run
    /// at the given rates. The owner renews every lease/3 until it is cut off at
    /// `cut_at` (true time); requests take `d_req`, answers `d_ans`. Returns the
    /// overlap: how long (true time) the owner still held a valid lease after the
    /// leader decided it may reassign. Zero means the invariant held.
    fn overlap(owner_rate: f64, leader_rate: f64, d_req: u64, d_ans: u64, cut_at: u64) -> Duration {
        let policy = LeasePolicy { lease: ms(300), max_drift: 0.01, margin: ms(1) };
        let time = SimTime::new();
        let owner_clock = SkewedClock::new(time.clone(), owner_rate, ms(5_000));
        let leader_clock = SkewedClock::new(time.clone(), leader_rate, ms(77_000));
        let mut lease = Lease::new(policy.lease);
        let mut grants = GrantTable::new(policy);
        grants.on_become_leader(leader_clock.now());
        grants.grant(vip(), 1, 1, Some(1), 1, leader_clock.now());
        lease.confirm(owner_clock.now());

        // (true arrival time, owner t_sent) of requests and answers in flight
        let mut requests: Vec<(u64, Duration)> = Vec::new();
        let mut answers: Vec<(u64, Duration)> = Vec::new();
        let mut next_renew = owner_clock.now();
        let step = Duration::from_micros(100);
        let mut reassigned_at: Option<Duration> = None;
        let mut worst = Duration::ZERO;
        // bounded: 20 s of simulated time
        for _ in 0..200_000 {
            time.advance(step);
            let t = time.true_now();
            let t_ms = t.as_millis() as u64;
            let o_now = owner_clock.now();
            if t_ms < cut_at && o_now >= next_renew {
                requests.push((t_ms + d_req, o_now));
                next_renew = o_now + policy.lease / 3;
            }
            let (due, later): (Vec<_>, Vec<_>) = requests.drain(..).partition(|(at, _)| *at <= t_ms);
            requests = later;
            for (_, sent) in due {
                if reassigned_at.is_none() {
                    grants.grant(vip(), 1, 1, Some(1), 1, leader_clock.now());
                    answers.push((t_ms + d_ans, sent));
                }
            }
            let (due, later): (Vec<_>, Vec<_>) = answers.drain(..).partition(|(at, _)| *at <= t_ms);
            answers = later;
            for (_, sent) in due {
                lease.confirm(sent);
            }
            if reassigned_at.is_none() && grants.may_reassign(&vip(), leader_clock.now()) {
                reassigned_at = Some(t);
            }
            if let Some(r) = reassigned_at {
                if lease.is_valid(owner_clock.now()) {
                    worst = worst.max(t - r + step);
                } else if requests.is_empty() && answers.is_empty() {
                    return worst;
                }
            }
        }
        panic!("simulation did not settle");
    }

    #[test]
    fn invariant_holds_for_every_skew_within_max_drift() {
        for owner_rate in [0.99, 0.995, 1.0, 1.01] {
            for leader_rate in [0.99, 1.0, 1.005, 1.01] {
                for (d_req, d_ans) in [(0, 0), (0, 40), (40, 0), (3, 3)] {
                    for cut_at in [1000, 1033, 1234] {
                        let o = overlap(owner_rate, leader_rate, d_req, d_ans, cut_at);
                        assert_eq!(
                            o,
                            Duration::ZERO,
                            "owner x{owner_rate} leader x{leader_rate} req {d_req} ans {d_ans} cut {cut_at}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn invariant_breaks_detectably_beyond_max_drift() {
        // owner 3% slow, leader 3% fast: the owner still holds a valid lease for
        // milliseconds after the leader may reassign.
        let o = overlap(0.97, 1.03, 0, 0, 1000);
        assert!(o >= ms(2), "expected a visible overlap, got {o:?}");
    }

    #[test]
    fn skewed_clock_runs_at_its_rate() {
        let t = SimTime::new();
        let fast = SkewedClock::new(t.clone(), 1.01, ms(10));
        t.advance(ms(1000));
        assert_eq!(fast.now(), ms(1020));
        assert!(SystemClock::new().now() > Duration::ZERO);
    }
}
