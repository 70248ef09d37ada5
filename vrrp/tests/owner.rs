//! Root tests of the owner runtime in network namespaces built by the test, driven
//! by a scripted `Renewer` (the boundary to the Raft crate): lease expiry removes the
//! address, a frozen owner removes it before anything else on waking, assignment
//! changes and shutdown release it. Each prints "SKIPPED: ..." where namespaces
//! cannot be created.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Lab, ok, run};
use tokio::sync::watch;
use vrrp::VipAddress;
use vrrp::addr::AddrHandle;
use vrrp::fence::Fence;
use vrrp::lease::SystemClock;
use vrrp::owner::{Assignment, OwnerConfig, OwnerTask, Renewer};

const VIP: &str = "198.51.100.100/24";
const STALE_MAC: &str = "02:00:00:00:00:99";
const LEASE: Duration = Duration::from_millis(300);

struct Call {
    at: Instant,
    epoch: u64,
    yes: bool,
    address_present: bool,
    after_wake: bool,
}

/// Answers yes `yes_left` times (or forever when `None`), then never answers.
/// Records every call and whether the address was configured when it came in.
struct ScriptedRenewer {
    ifname: String,
    vip: VipAddress,
    yes_left: Option<AtomicU32>,
    refuse: AtomicBool,
    woke: AtomicBool,
    calls: Mutex<Vec<Call>>,
    released: Mutex<Vec<u64>>,
}

impl ScriptedRenewer {
    fn new(ifname: &str, yes_count: Option<u32>) -> Arc<Self> {
        Arc::new(Self {
            ifname: ifname.to_string(),
            vip: VIP.parse().unwrap(),
            yes_left: yes_count.map(AtomicU32::new),
            refuse: AtomicBool::new(false),
            woke: AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
            released: Mutex::new(Vec::new()),
        })
    }

    fn last_yes(&self) -> Option<Instant> {
        self.calls.lock().unwrap().iter().rev().find(|c| c.yes).map(|c| c.at)
    }
}

impl Renewer for ScriptedRenewer {
    type Error = String;

    async fn renew(&self, _vip: VipAddress, epoch: u64) -> Result<bool, String> {
        let at = Instant::now();
        let after_wake = self.woke.load(Ordering::SeqCst);
        // A fresh handle per call: the test's netlink view, not the owner's.
        let address_present = AddrHandle::new().unwrap().contains(&self.ifname, &self.vip).await.unwrap();
        let yes = match &self.yes_left {
            None => true,
            Some(left) => left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok(),
        };
        let refuse = self.refuse.load(Ordering::SeqCst);
        self.calls.lock().unwrap().push(Call { at, epoch, yes: yes && !refuse, address_present, after_wake });
        if refuse {
            return Ok(false);
        }
        if !yes {
            // the leader is unreachable: this request never gets an answer
            std::future::pending::<()>().await;
        }
        Ok(true)
    }

    async fn released(&self, _vip: VipAddress, epoch: u64) -> Result<(), String> {
        self.released.lock().unwrap().push(epoch);
        Ok(())
    }
}

fn config(lab: &Lab, instance: &str) -> OwnerConfig {
    let mut cfg = OwnerConfig::new(1, VIP.parse().unwrap(), lab.if_a.clone(), LEASE);
    cfg.fence_instance = Some(instance.to_string());
    cfg.announce_interval = Duration::from_millis(50);
    cfg
}

/// Polls (async, so the owner task keeps running) until `cond` or `limit`.
async fn until(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> Option<Instant> {
    let start = Instant::now();
    for _ in 0..100_000 {
        if cond().await {
            return Some(Instant::now());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// An owner task started with the VIP assigned to node 1 at `epoch`, once it
/// holds the address.
struct Started {
    assign: watch::Sender<Assignment>,
    shut: watch::Sender<bool>,
    owner: tokio::task::JoinHandle<vrrp::Result<Option<u64>>>,
    status: watch::Receiver<vrrp::owner::OwnerStatus>,
    h: AddrHandle,
}

async fn start_owner(lab: &Lab, cfg: OwnerConfig, renewer: &Arc<ScriptedRenewer>, epoch: u64) -> Started {
    let vip = cfg.vip;
    let task = OwnerTask::new(cfg, renewer.clone(), Arc::new(SystemClock::new())).unwrap();
    let status = task.status();
    let (assign, assign_rx) = watch::channel(Some((1u64, epoch)));
    let (shut, shut_rx) = watch::channel(false);
    let owner = tokio::spawn(task.run(assign_rx, shut_rx));
    let h = AddrHandle::new().unwrap();
    until(Duration::from_secs(2), async || h.contains(&lab.if_a, &vip).await.unwrap())
        .await
        .expect("owner never took the VIP");
    Started { assign, shut, owner, status, h }
}

#[test]
fn owner_takes_vip_announces_and_drops_it_when_renewals_stop() {
    let Some(lab) = Lab::new(7, &["ip", "nft", "ping"]) else { return };
    let vip: VipAddress = VIP.parse().unwrap();
    let ip = vip.ip().to_string();
    ok(&["ip", "-n", &lab.b, "neigh", "replace", &ip, "lladdr", STALE_MAC, "dev", &lab.if_b, "nud", "stale"]);
    let mac_a = lab.mac(&lab.a, &lab.if_a);
    let lab = Arc::new(lab);
    let lab2 = lab.clone();
    lab.in_ns(&lab.a, || async move {
        let lab = lab2;
        let renewer = ScriptedRenewer::new(&lab.if_a, Some(8));
        let task = OwnerTask::new(config(&lab, "qvown"), renewer.clone(), Arc::new(SystemClock::new())).unwrap();
        let mut status = task.status();
        let (_assign_tx, assign_rx) = watch::channel(Some((1u64, 5u64)));
        let (shut_tx, shut_rx) = watch::channel(false);
        let owner = tokio::spawn(task.run(assign_rx, shut_rx));
        let h = AddrHandle::new().unwrap();

        let taken = until(Duration::from_secs(2), async || h.contains(&lab.if_a, &vip).await.unwrap()).await;
        assert!(taken.is_some(), "owner never took the VIP");
        // takeover announced: the peer's stale entry now points at us; ping works
        let (lab_b, ip_b, mac) = (lab.clone(), ip.clone(), mac_a.clone());
        let (moved, pinged) = tokio::task::spawn_blocking(move || {
            let moved = common::wait_for(Duration::from_secs(1), Duration::from_millis(10), || {
                lab_b.neigh(&lab_b.b, &lab_b.if_b, &ip_b).contains(&mac)
            });
            (moved, lab_b.ping_answers(&ip_b))
        })
        .await
        .unwrap();
        assert!(moved.is_some(), "GARP did not update the peer's neighbour entry");
        assert!(pinged, "VIP must answer while the lease is fresh");
        status.changed().await.unwrap();
        let s = status.borrow().clone();
        assert_eq!((s.owned, s.epoch, s.assigned_epoch), (true, Some(5), Some(5)));
        assert!(s.lease_remaining.is_some_and(|r| r <= LEASE));

        // after 8 yeses the leader is unreachable; the address must go at lease end
        let removed = until(Duration::from_secs(3), async || !h.contains(&lab.if_a, &vip).await.unwrap())
            .await
            .expect("address never removed");
        let last_yes = renewer.last_yes().unwrap();
        let after = removed - last_yes;
        eprintln!("measured: address removed {after:?} after the last confirmed renewal was sent (lease {LEASE:?})");
        assert!(after >= LEASE - Duration::from_millis(5), "dropped early: {after:?}");
        assert!(after <= LEASE + Duration::from_millis(60), "dropped late: {after:?}");
        let fence = Fence::new("qvown", vip.ip()).unwrap();
        assert!(!fence.is_open().await.unwrap(), "fence must be closed once the lease is over");
        assert!(renewer.released.lock().unwrap().is_empty(), "expiry is not a confirmed release");
        assert!(until(Duration::from_millis(200), async || !status.borrow().owned).await.is_some());

        shut_tx.send(true).unwrap();
        let released = owner.await.unwrap().unwrap();
        assert_eq!(released, None, "nothing was held at shutdown");
        assert!(fence.is_open().await.is_err(), "fence tables removed at shutdown");
    });
}

#[test]
fn frozen_owner_goes_silent_and_removes_the_address_first_on_waking() {
    let Some(lab) = Lab::new(8, &["ip", "nft", "arping"]) else { return };
    let vip: VipAddress = VIP.parse().unwrap();
    let lab = Arc::new(lab);
    let lab2 = lab.clone();
    lab.in_ns(&lab.a, || async move {
        let lab = lab2;
        let renewer = ScriptedRenewer::new(&lab.if_a, None);
        let Started { assign: _assign, shut: shut_tx, owner, h, .. } =
            start_owner(&lab, config(&lab, "qvfrz"), &renewer, 9).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(h.contains(&lab.if_a, &vip).await.unwrap(), "steady renewals keep the VIP");

        // Freeze the whole runtime (the owner task cannot run), like SIGSTOP would.
        // Meanwhile another thread checks, from the peer, that the VIP went silent.
        let lab_c = lab.clone();
        let ip = vip.ip().to_string();
        let checker = std::thread::spawn(move || {
            std::thread::sleep(LEASE + Duration::from_millis(150));
            let shown = run(&["ip", "-n", &lab_c.a, "addr", "show", "dev", &lab_c.if_a]);
            let still_configured = String::from_utf8_lossy(&shown.stdout).contains("198.51.100.100/24");
            run(&["ip", "-n", &lab_c.b, "neigh", "flush", "dev", &lab_c.if_b]);
            (still_configured, lab_c.arp_answers(&ip))
        });
        let frozen_at = Instant::now();
        std::thread::sleep(Duration::from_millis(1700));
        renewer.woke.store(true, Ordering::SeqCst);
        let woke_at = Instant::now();
        let (still_configured, answered) = checker.join().unwrap();
        assert!(still_configured, "the frozen owner could not have removed the address");
        assert!(!answered, "the kernel fence must silence a frozen owner after its lease");

        let removed = until(Duration::from_secs(1), async || !h.contains(&lab.if_a, &vip).await.unwrap())
            .await
            .expect("stale address not removed after waking");
        eprintln!(
            "measured: frozen {:?}; stale address removed {:?} after waking",
            woke_at - frozen_at,
            removed - woke_at
        );
        // the first thing the owner did after waking was the removal: its first
        // renewal request afterwards found the address gone
        let retaken = until(Duration::from_secs(2), async || h.contains(&lab.if_a, &vip).await.unwrap()).await;
        assert!(retaken.is_some(), "owner should take the VIP again once renewed");
        {
            let calls = renewer.calls.lock().unwrap();
            let first = calls.iter().find(|c| c.after_wake).expect("no renewal after waking");
            assert!(!first.address_present, "renewed before removing the stale address");
            assert_eq!(first.epoch, 9);
            assert!(calls.iter().filter(|c| !c.after_wake).all(|c| c.yes));
        }

        shut_tx.send(true).unwrap();
        assert_eq!(owner.await.unwrap().unwrap(), Some(9));
        assert_eq!(*renewer.released.lock().unwrap(), vec![9]);
        assert!(!h.contains(&lab.if_a, &vip).await.unwrap());
    });
}

#[test]
fn assignment_moving_away_or_a_refusal_removes_the_vip_at_once() {
    let Some(lab) = Lab::new(9, &["ip", "nft"]) else { return };
    let vip: VipAddress = VIP.parse().unwrap();
    lab.in_ns(&lab.a, || async {
        let renewer = ScriptedRenewer::new(&lab.if_a, None);
        let Started { assign: assign_tx, shut: shut_tx, owner, status, h } =
            start_owner(&lab, config(&lab, "qvmov"), &renewer, 5).await;

        let moved_at = Instant::now();
        assign_tx.send(Some((2, 6))).unwrap();
        let removed = until(Duration::from_secs(1), async || !h.contains(&lab.if_a, &vip).await.unwrap())
            .await
            .expect("not removed after the assignment moved");
        eprintln!("measured: assignment moved away -> address removed in {:?}", removed - moved_at);
        assert!(removed - moved_at < Duration::from_millis(100), "not at once: {:?}", removed - moved_at);
        until(Duration::from_secs(1), async || !renewer.released.lock().unwrap().is_empty()).await;
        assert_eq!(*renewer.released.lock().unwrap(), vec![5], "release of epoch 5 reported");
        assert_eq!(status.borrow().assigned_epoch, None);

        // back to us at a new epoch: taken again under epoch 7
        assign_tx.send(Some((1, 7))).unwrap();
        until(Duration::from_secs(2), async || status.borrow().epoch == Some(7))
            .await
            .expect("not re-taken at epoch 7");
        assert!(h.contains(&lab.if_a, &vip).await.unwrap());

        // the leader refuses a renewal (we are not the owner any more): drop at once
        renewer.refuse.store(true, Ordering::SeqCst);
        let refused_at = Instant::now();
        let removed = until(Duration::from_secs(1), async || !h.contains(&lab.if_a, &vip).await.unwrap())
            .await
            .expect("not removed after a refusal");
        assert!(removed - refused_at < LEASE, "a refusal must not wait for the lease");

        renewer.refuse.store(false, Ordering::SeqCst);
        until(Duration::from_secs(2), async || h.contains(&lab.if_a, &vip).await.unwrap()).await.expect("not re-taken");
        shut_tx.send(true).unwrap();
        assert_eq!(owner.await.unwrap().unwrap(), Some(7));
        assert_eq!(*renewer.released.lock().unwrap(), vec![5, 7]);
        assert!(!h.contains(&lab.if_a, &vip).await.unwrap(), "graceful shutdown removes the VIP");
        let rules = ok(&["nft", "list", "ruleset"]);
        assert!(!rules.contains("qvmov"), "fence tables left behind: {rules}");
    });
}

/// One fence refresh that stalls for 1.2 s (here its `nft` sleeps first, as when
/// the owner is frozen by SIGSTOP in the middle of one, or starved) must not
/// poison the allowance for later ones. It once did: the allowance grew past the
/// lease, every refresh after set a zero TTL, and at its next takeover the owner
/// held the VIP with its fence closed, answering neither ARP nor ping, for about
/// 4 s (chaos_short partition-active, "no good HTTP answer").
#[test]
fn a_stalled_fence_refresh_does_not_keep_the_fence_closed_afterwards() {
    let Some(lab) = Lab::new(10, &["ip", "nft", "ping"]) else { return };
    let vip: VipAddress = VIP.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("stall-next-refresh");
    let nft = dir.path().join("slow-nft");
    std::fs::write(
        &nft,
        format!(
            "#!/bin/sh\ncase \"$*\" in *'flush set'*) if [ -e '{m}' ]; then rm -f '{m}'; sleep 1.2; fi ;; esac\nexec nft \"$@\"\n",
            m = mark.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&nft, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lab = Arc::new(lab);
    let lab2 = lab.clone();
    lab.in_ns(&lab.a, || async move {
        let lab = lab2;
        let renewer = ScriptedRenewer::new(&lab.if_a, None);
        let mut cfg = config(&lab, "qvstl");
        cfg.fence_nft = nft.display().to_string();
        let Started { assign: _assign, shut: shut_tx, owner, h, .. } = start_owner(&lab, cfg, &renewer, 4).await;
        let answers = |lab: Arc<Lab>| async move {
            let ip = vip.ip().to_string();
            tokio::task::spawn_blocking(move || lab.ping_answers(&ip)).await.unwrap()
        };
        assert!(answers(lab.clone()).await, "VIP must answer while the lease is fresh");

        std::fs::write(&mark, b"").unwrap();
        until(Duration::from_secs(2), async || !mark.exists()).await.expect("no fence refresh picked up the stall");
        let stalled_at = Instant::now();
        // The stall outlasts the lease: the address goes, then comes back with
        // the next renewal, and the VIP must answer again soon after.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let mut answered = None;
        for _ in 0..20 {
            if h.contains(&lab.if_a, &vip).await.unwrap() && answers(lab.clone()).await {
                answered = Some(stalled_at.elapsed());
                break;
            }
            if stalled_at.elapsed() > Duration::from_millis(3300) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("measured: VIP answered again {answered:?} after a 1.2 s fence refresh stall began");
        assert!(answered.is_some(), "the owner holds the VIP but its fence stays closed after one stalled refresh");

        shut_tx.send(true).unwrap();
        owner.await.unwrap().unwrap();
        let rules = ok(&["nft", "list", "ruleset"]);
        assert!(!rules.contains("qvstl"), "fence tables left behind: {rules}");
    });
}
