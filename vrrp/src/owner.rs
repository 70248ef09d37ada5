//! The owner-side runtime for one VIP on this node: renews the lease with the
//! leader through [`Renewer`], holds the address (fence open, address added,
//! announced) only while the lease is valid and the committed assignment names this
//! node, and gives it up at once otherwise. It decides nothing about who should
//! own the VIP; that is `controller`'s job on the leader.
//!
//! Rule 1 of the lease is enforced at the top of every wake-up, before anything
//! else happens for the VIP: if `now >= lease_until`, the address goes first. A
//! process that was frozen (SIGSTOP, a stalled VM) therefore removes a stale address
//! before it renews, announces or serves; while it was frozen the kernel fence had
//! already closed at the lease's end, because each refresh sets the fence's timeout
//! to the lease's remaining time.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::addr::AddrHandle;
use crate::announce::{self, Announcer};
use crate::fence::Fence;
use crate::lease::{Clock, Lease};
use crate::{NodeId, Result, VipAddress};

/// The committed assignment of this VIP as applied on this node: owner and epoch.
pub type Assignment = Option<(NodeId, u64)>;

/// The owner's one question to the cluster, implemented by the node on top of Raft.
pub trait Renewer: Send + Sync + 'static {
    type Error: Display + Send + 'static;

    /// "Am I still the owner of `vip` at `epoch`?" Resolves to `Ok(true)` only after
    /// the leader confirmed it still leads with a quorum (a linearizable read) and
    /// recorded the grant; `Ok(false)` when the leader says this node is not the
    /// owner at that epoch.
    fn renew(&self, vip: VipAddress, epoch: u64)
    -> impl Future<Output = std::result::Result<bool, Self::Error>> + Send;

    /// Tell the cluster (through the log) that this node removed the address it held
    /// at `epoch`, so the leader may hand the VIP over without waiting the lease out.
    fn released(
        &self,
        vip: VipAddress,
        epoch: u64,
    ) -> impl Future<Output = std::result::Result<(), Self::Error>> + Send;
}

/// The fence instance name owner tasks use by default (see [`crate::fence::Fence::new`]).
pub const FENCE_INSTANCE: &str = "quorumlb";

/// Settings of one owner task.
#[derive(Debug, Clone)]
pub struct OwnerConfig {
    pub node: NodeId,
    pub vip: VipAddress,
    pub interface: String,
    /// Must equal the leader's `LeasePolicy::lease`.
    pub lease: Duration,
    /// How often to renew; `lease / 3` by default.
    pub renew_interval: Duration,
    /// Gratuitous ARP / NA rounds on takeover, and their spacing.
    pub announce_count: u32,
    pub announce_interval: Duration,
    /// nftables fence instance name; `None` runs without a kernel fence.
    pub fence_instance: Option<String>,
    /// The `nft` binary the fence runs (`nft` from `PATH` by default).
    pub fence_nft: String,
    /// Set `arp_announce=2` and `arp_ignore=1` on the interface when taking an IPv4 VIP.
    pub set_arp_sysctls: bool,
    /// Pause before retrying a failed OS operation.
    pub retry_interval: Duration,
}

impl OwnerConfig {
    pub fn new(node: NodeId, vip: VipAddress, interface: impl Into<String>, lease: Duration) -> Self {
        Self {
            node,
            vip,
            interface: interface.into(),
            lease,
            renew_interval: lease / 3,
            announce_count: 5,
            announce_interval: Duration::from_millis(100),
            fence_instance: Some(FENCE_INSTANCE.to_string()),
            fence_nft: "nft".to_string(),
            set_arp_sysctls: true,
            retry_interval: Duration::from_millis(20),
        }
    }
}

/// What the admin API shows about this VIP on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerStatus {
    pub vip: VipAddress,
    /// The epoch at which the committed assignment names this node, if it does.
    pub assigned_epoch: Option<u64>,
    /// The address is configured here right now.
    pub owned: bool,
    /// The epoch under which the address is held.
    pub epoch: Option<u64>,
    pub lease_remaining: Option<Duration>,
    /// When the lease ends, on the task's [`Clock`]: lets a reader with the same
    /// clock compute the time left now rather than at the last publish.
    pub lease_until: Option<Duration>,
    /// Age of the newest confirmed renewal, from when it was sent.
    pub lease_age: Option<Duration>,
    pub last_error: Option<String>,
}

type RenewOutcome<E> = (u64, Duration, Option<std::result::Result<bool, E>>);
type Renewal<E> = Pin<Box<dyn Future<Output = RenewOutcome<E>> + Send>>;

/// The runtime for one VIP. Create it in the network namespace that holds the
/// interface (the netlink socket is opened in the calling thread's namespace).
pub struct OwnerTask<R: Renewer, C: Clock + 'static> {
    cfg: OwnerConfig,
    renewer: Arc<R>,
    clock: Arc<C>,
    addr: AddrHandle,
    fence: Option<Fence>,
    lease: Lease,
    /// Slowest recent fence refresh (decaying), see `refresh_fence`.
    fence_latency: Duration,
    /// The epoch under which the address is held; `None` when not held.
    held: Option<u64>,
    /// The address may be configured although `held` is `None` (start-up, or a
    /// removal that failed): remove it before anything else.
    dirty: bool,
    announcer: Option<Announcer>,
    announce_left: u32,
    next_announce: Duration,
    next_renew: Duration,
    retry_at: Option<Duration>,
    last_error: Option<String>,
    status: watch::Sender<OwnerStatus>,
}

impl<R: Renewer, C: Clock + 'static> OwnerTask<R, C> {
    /// Needs a tokio runtime (for the netlink socket's driver).
    pub fn new(cfg: OwnerConfig, renewer: Arc<R>, clock: Arc<C>) -> Result<Self> {
        let fence = match &cfg.fence_instance {
            Some(instance) => Some(Fence::new(instance, cfg.vip.ip())?.with_nft_binary(cfg.fence_nft.clone())),
            None => None,
        };
        let (status, _) = watch::channel(OwnerStatus {
            vip: cfg.vip,
            assigned_epoch: None,
            owned: false,
            epoch: None,
            lease_remaining: None,
            lease_until: None,
            lease_age: None,
            last_error: None,
        });
        Ok(Self {
            lease: Lease::new(cfg.lease),
            fence_latency: Duration::from_millis(20),
            addr: AddrHandle::new()?,
            cfg,
            renewer,
            clock,
            fence,
            held: None,
            dirty: true,
            announcer: None,
            announce_left: 0,
            next_announce: Duration::ZERO,
            next_renew: Duration::ZERO,
            retry_at: None,
            last_error: None,
            status,
        })
    }

    /// Status updates for the admin API.
    pub fn status(&self) -> watch::Receiver<OwnerStatus> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` becomes true (or its sender is dropped). Then removes
    /// the address, reports the release and deletes the fence; returns the epoch
    /// that was released, if the VIP was held.
    pub async fn run(
        mut self,
        mut assignment: watch::Receiver<Assignment>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Option<u64>> {
        if let Some(fence) = &self.fence {
            fence.install().await?;
        }
        let mut renewal: Option<Renewal<R::Error>> = None;
        let mut assignment_open = true;
        let mut last_mine: Option<u64> = None;
        loop {
            // Rule 1, before anything else on every wake-up.
            self.enforce_expiry().await;

            let stop = *shutdown.borrow();
            if stop || !assignment_open {
                return self.shut_down().await;
            }
            let mine = assignment.borrow().and_then(|(owner, epoch)| (owner == self.cfg.node).then_some(epoch));
            if mine != last_mine {
                // Newly assigned (or at a new epoch): ask at once.
                self.next_renew = Duration::ZERO;
                last_mine = mine;
            }
            if mine.is_none() {
                renewal = None;
                self.lease.revoke();
                if let Some(epoch) = self.held {
                    self.give_up("assignment moved away").await;
                    self.report_released(epoch).await;
                }
            }
            if self.dirty {
                self.give_up("clearing a stale address").await;
            }

            let now = self.clock.now();
            if let Some(epoch) = mine
                && self.lease.is_valid(now)
                && !self.dirty
                && self.retry_at.is_none_or(|at| now >= at)
            {
                match self.held {
                    None => self.take(epoch).await,
                    // Re-assigned to us at a newer epoch: the lease still covers us.
                    Some(held) if held != epoch => self.held = Some(epoch),
                    Some(_) => {}
                }
            }
            self.announce_if_due(now);

            if let Some(epoch) = mine
                && renewal.is_none()
                && now >= self.next_renew
            {
                renewal = Some(self.start_renewal(epoch, now));
                self.next_renew = now + self.cfg.renew_interval;
            }
            self.publish(mine, now);

            let wake = self.next_wake(mine.is_some() && renewal.is_none(), now);
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return self.shut_down().await;
                    }
                }
                changed = assignment.changed() => {
                    if changed.is_err() {
                        assignment_open = false;
                    }
                }
                outcome = poll_renewal(&mut renewal) => {
                    self.enforce_expiry().await;
                    let current = *assignment.borrow();
                    self.on_renewal(outcome, current).await;
                }
                _ = tokio::time::sleep(wake) => {}
            }
        }
    }

    fn start_renewal(&self, epoch: u64, now: Duration) -> Renewal<R::Error> {
        let renewer = self.renewer.clone();
        let vip = self.cfg.vip;
        let limit = self.cfg.renew_interval;
        // `now` was read before the request is sent: the lease counts from here.
        let t_sent = now;
        Box::pin(async move {
            let result = tokio::time::timeout(limit, renewer.renew(vip, epoch)).await.ok();
            (epoch, t_sent, result)
        })
    }

    async fn on_renewal(&mut self, outcome: RenewOutcome<R::Error>, current: Assignment) {
        let (epoch, t_sent, result) = outcome;
        let still_mine = current == Some((self.cfg.node, epoch));
        match result {
            Some(Ok(true)) if still_mine => {
                self.lease.confirm(t_sent);
                let now = self.clock.now();
                if self.held.is_some() {
                    self.refresh_fence(now).await;
                }
            }
            Some(Ok(true)) => {}
            Some(Ok(false)) => {
                tracing::info!(vip = %self.cfg.vip, epoch, "leader refused renewal; dropping the VIP");
                self.lease.revoke();
                self.enforce_expiry().await;
            }
            Some(Err(e)) => {
                tracing::warn!(vip = %self.cfg.vip, epoch, error = %e, "lease renewal failed");
                self.last_error = Some(format!("renewal failed: {e}"));
            }
            None => {
                tracing::warn!(vip = %self.cfg.vip, epoch, "lease renewal timed out");
                self.last_error = Some("renewal timed out".to_string());
            }
        }
    }

    /// Rule 1: drop the address the moment the lease is over.
    async fn enforce_expiry(&mut self) {
        if self.held.is_some() && !self.lease.is_valid(self.clock.now()) {
            self.give_up("lease expired").await;
        }
    }

    /// Removes the address (first: it is the fast and decisive step) and closes the
    /// fence. A failed removal leaves `dirty` set so it is retried before anything else.
    async fn give_up(&mut self, why: &str) {
        if self.held.is_some() {
            tracing::info!(vip = %self.cfg.vip, interface = %self.cfg.interface, why, "removing VIP");
        }
        self.held = None;
        self.announcer = None;
        self.announce_left = 0;
        let removed = self.addr.remove(&self.cfg.interface, &self.cfg.vip).await;
        self.status.send_modify(|s| {
            s.owned = false;
            s.epoch = None;
        });
        match removed {
            Ok(_) => self.dirty = false,
            Err(e) => {
                tracing::error!(vip = %self.cfg.vip, error = %e, "removing VIP failed; will retry");
                self.last_error = Some(format!("removing address: {e}"));
                self.dirty = true;
                self.retry_at = Some(self.clock.now() + self.cfg.retry_interval);
            }
        }
        if let Some(fence) = &self.fence
            && let Err(e) = fence.revoke().await
        {
            tracing::warn!(vip = %self.cfg.vip, error = %e, "closing fence failed; it expires by itself");
        }
    }

    /// Takeover: open the fence for the rest of the lease, add the address, set the
    /// ARP sysctls, start announcing.
    async fn take(&mut self, epoch: u64) {
        let now = self.clock.now();
        if !self.refresh_fence(now).await {
            self.retry_at = Some(now + self.cfg.retry_interval);
            return;
        }
        if let Err(e) = self.addr.add(&self.cfg.interface, &self.cfg.vip).await {
            tracing::error!(vip = %self.cfg.vip, error = %e, "adding VIP failed; will retry");
            self.last_error = Some(format!("adding address: {e}"));
            self.retry_at = Some(now + self.cfg.retry_interval);
            // It may be half there; make sure it is gone before the next try.
            self.dirty = true;
            return;
        }
        self.retry_at = None;
        self.held = Some(epoch);
        self.status.send_modify(|s| {
            s.owned = true;
            s.epoch = Some(epoch);
        });
        tracing::info!(vip = %self.cfg.vip, interface = %self.cfg.interface, epoch, "VIP taken");
        if self.cfg.set_arp_sysctls
            && self.cfg.vip.ip().is_ipv4()
            && let Err(e) = announce::set_owner_arp_sysctls(&self.cfg.interface)
        {
            tracing::warn!(interface = %self.cfg.interface, error = %e, "setting ARP sysctls failed");
            self.last_error = Some(e.to_string());
        }
        match Announcer::open(&self.cfg.interface) {
            Ok(a) => {
                self.announcer = Some(a);
                self.announce_left = self.cfg.announce_count;
                self.next_announce = now;
            }
            Err(e) => {
                tracing::warn!(interface = %self.cfg.interface, error = %e, "cannot announce VIP");
                self.last_error = Some(e.to_string());
            }
        }
    }

    /// Opens the fence until the lease's end. Returns false if that failed, or if
    /// the lease ran out meanwhile (the VIP is then given up: address, then fence).
    ///
    /// The kernel starts the element's timeout when it applies the update, some
    /// time after `now` (an `nft` process under load can take tens of ms), so the
    /// TTL is shortened by twice the slowest recent refresh: the fence must never
    /// outlive the lease, or a dead owner keeps answering after the leader
    /// reassigned the VIP.
    ///
    /// A refresh that took longer than that allowance (the process was frozen or
    /// starved between computing the TTL and `nft` applying it) may have set an
    /// element that outlives the lease; it is corrected at once from the time
    /// actually left. Such a stall says nothing about the next `nft` run, so a
    /// sample counts for at most [`Self::fence_latency_cap`]: uncapped, one refresh
    /// caught by a SIGSTOP or a paused VM made the allowance longer than the lease,
    /// every later refresh (at the next takeover too: the estimate decays only
    /// while refreshing) set a zero TTL, and the node held the VIP with its fence
    /// closed, answering neither ARP nor IP, for seconds.
    async fn refresh_fence(&mut self, now: Duration) -> bool {
        let Some(fence) = self.fence.clone() else {
            return true;
        };
        let cap = self.fence_latency_cap();
        let mut now = now;
        for attempt in 0..3 {
            let allowance = self.fence_latency * 2 + Duration::from_millis(10);
            let ttl = self.lease.remaining(now).unwrap_or_default().saturating_sub(allowance);
            let started = self.clock.now();
            let result = fence.refresh(ttl).await;
            let finished = self.clock.now();
            let took = finished.saturating_sub(started);
            // Remember the slowest refresh, decaying slowly so one spike is not forever.
            self.fence_latency = took.min(cap).max(self.fence_latency.mul_f64(0.95));
            if let Err(e) = result {
                tracing::error!(vip = %self.cfg.vip, error = %e, "refreshing fence failed");
                self.last_error = Some(format!("fence: {e}"));
                return false;
            }
            // The element was applied at `finished` at the latest: within the lease?
            if finished.saturating_sub(now) <= allowance {
                return true;
            }
            if !self.lease.is_valid(finished) {
                // Stalled past the lease's end: `nft` may just have opened the
                // fence with the stale TTL. The address goes first, as in Rule 1.
                self.give_up("lease expired during a fence refresh").await;
                return false;
            }
            tracing::warn!(vip = %self.cfg.vip, took_ms = took.as_millis() as u64, attempt, "slow fence refresh; setting it again");
            now = finished;
        }
        // Three stalled refreshes in a row: the fence cannot be shown to end
        // within the lease, so the VIP goes rather than risk a second owner.
        self.give_up("fence refreshes keep stalling past their allowance").await;
        false
    }

    /// The most one refresh's duration counts in the TTL allowance: with it the
    /// allowance stays under a third of the lease, so the fence of a renewing owner
    /// never closes between renewals (every `lease / 3`).
    fn fence_latency_cap(&self) -> Duration {
        self.cfg.lease / 8
    }

    fn announce_if_due(&mut self, now: Duration) {
        if self.held.is_none() || self.announce_left == 0 || now < self.next_announce {
            return;
        }
        if let Some(a) = &mut self.announcer
            && let Err(e) = a.announce_once(self.cfg.vip.ip())
        {
            tracing::warn!(vip = %self.cfg.vip, error = %e, "announcement failed");
            self.last_error = Some(e.to_string());
        }
        self.announce_left -= 1;
        self.next_announce = now + self.cfg.announce_interval;
        if self.announce_left == 0 {
            self.announcer = None;
        }
    }

    async fn report_released(&mut self, epoch: u64) {
        let limit = self.cfg.lease.max(Duration::from_millis(100));
        match tokio::time::timeout(limit, self.renewer.released(self.cfg.vip, epoch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(vip = %self.cfg.vip, epoch, error = %e, "reporting release failed"),
            Err(_) => tracing::warn!(vip = %self.cfg.vip, epoch, "reporting release timed out"),
        }
    }

    async fn shut_down(mut self) -> Result<Option<u64>> {
        let held = self.held;
        self.lease.revoke();
        self.give_up("shutting down").await;
        if self.dirty {
            // One more try; the fence stays installed (and closed) if this fails too.
            self.give_up("shutting down").await;
        }
        if let Some(epoch) = held {
            self.report_released(epoch).await;
        }
        self.publish(None, self.clock.now());
        if !self.dirty
            && let Some(fence) = &self.fence
        {
            fence.remove().await?;
        }
        Ok(held)
    }

    fn next_wake(&self, renew_pending: bool, now: Duration) -> Duration {
        let mut at = now + Duration::from_secs(1);
        if renew_pending {
            at = at.min(self.next_renew);
        }
        if self.held.is_some()
            && let Some(until) = self.lease.until()
        {
            at = at.min(until);
        }
        if self.held.is_some() && self.announce_left > 0 {
            at = at.min(self.next_announce);
        }
        let retry = self.retry_at.filter(|r| *r > now);
        if let Some(r) = retry {
            at = at.min(r);
        } else if self.dirty {
            at = at.min(now + self.cfg.retry_interval);
        }
        at.saturating_sub(now)
    }

    fn publish(&self, mine: Option<u64>, now: Duration) {
        self.status.send_replace(OwnerStatus {
            vip: self.cfg.vip,
            assigned_epoch: mine,
            owned: self.held.is_some(),
            epoch: self.held,
            lease_remaining: self.lease.remaining(now),
            lease_until: self.lease.until(),
            lease_age: self.lease.age(now),
            last_error: self.last_error.clone(),
        });
    }
}

/// Resolves when the in-flight renewal finishes; never while there is none.
async fn poll_renewal<E>(renewal: &mut Option<Renewal<E>>) -> RenewOutcome<E> {
    match renewal.as_mut() {
        Some(r) => {
            let out = r.as_mut().await;
            *renewal = None;
            out
        }
        None => std::future::pending().await,
    }
}
