//! Root tests in network namespaces built by the test itself: address add/remove,
//! gratuitous ARP and unsolicited NA reaching a peer, and the nftables fence.
//! Each prints "SKIPPED: ..." and passes where namespaces cannot be created.

mod common;

use std::time::{Duration, Instant};

use common::{Lab, ok, wait_for};
use vrrp::VipAddress;
use vrrp::addr::AddrHandle;
use vrrp::announce;
use vrrp::fence::Fence;

const VIP4: &str = "198.51.100.100/24";
const VIP6: &str = "2001:db8::100/64";
const STALE_MAC: &str = "02:00:00:00:00:99";

#[test]
fn address_add_and_remove_are_idempotent_v4_and_v6() {
    let Some(lab) = Lab::new(1, &["ip"]) else { return };
    let ifname = lab.if_a.clone();
    lab.in_ns(&lab.a, || async move {
        let h = AddrHandle::new().unwrap();
        for vip in [VIP4, VIP6] {
            let vip: VipAddress = vip.parse().unwrap();
            assert!(!h.contains(&ifname, &vip).await.unwrap());
            h.add(&ifname, &vip).await.unwrap();
            h.add(&ifname, &vip).await.unwrap(); // already there: fine
            assert!(h.contains(&ifname, &vip).await.unwrap());
            assert!(h.list(&ifname).await.unwrap().contains(&vip));
            assert!(h.remove(&ifname, &vip).await.unwrap());
            assert!(!h.remove(&ifname, &vip).await.unwrap()); // already gone: fine
            assert!(!h.contains(&ifname, &vip).await.unwrap());
        }
        assert!(h.add("qvnosuchif0", &VIP4.parse().unwrap()).await.is_err());
        assert!(!h.remove("qvnosuchif0", &VIP4.parse().unwrap()).await.unwrap());
    });
    // IPv6 with nodad: usable at once, never tentative
    lab.in_ns(&lab.a, || async {
        let h = AddrHandle::new().unwrap();
        h.add(&lab.if_a, &VIP6.parse().unwrap()).await.unwrap();
    });
    let shown = ok(&["ip", "-n", &lab.a, "-6", "addr", "show", "dev", &lab.if_a]);
    let line = shown.lines().find(|l| l.contains("2001:db8::100/64")).unwrap();
    assert!(!line.contains("tentative"), "{line}");
    assert!(lab.ping_answers("2001:db8::100"));
}

#[test]
fn gratuitous_arp_moves_the_peers_neighbour_entry() {
    let Some(lab) = Lab::new(2, &["ip"]) else { return };
    let vip: VipAddress = VIP4.parse().unwrap();
    let ip = vip.ip().to_string();
    ok(&["ip", "-n", &lab.b, "neigh", "replace", &ip, "lladdr", STALE_MAC, "dev", &lab.if_b, "nud", "stale"]);
    assert!(lab.neigh(&lab.b, &lab.if_b, &ip).contains(STALE_MAC));
    let mac_a = lab.mac(&lab.a, &lab.if_a);
    let sent = lab.in_ns(&lab.a, || async {
        let h = AddrHandle::new().unwrap();
        h.add(&lab.if_a, &vip).await.unwrap();
        let start = Instant::now();
        announce::announce(&lab.if_a, vip.ip(), 3, Duration::from_millis(50)).await.unwrap();
        start
    });
    let took = wait_for(Duration::from_secs(2), Duration::from_millis(10), || {
        lab.neigh(&lab.b, &lab.if_b, &ip).contains(&mac_a)
    });
    assert!(took.is_some(), "peer entry still {:?}", lab.neigh(&lab.b, &lab.if_b, &ip));
    eprintln!("measured: GARP burst to peer entry update {:?}", sent.elapsed());
}

#[test]
fn unsolicited_na_moves_the_peers_neighbour_entry() {
    let Some(lab) = Lab::new(3, &["ip"]) else { return };
    lab.wait_ipv6_ready();
    let vip: VipAddress = VIP6.parse().unwrap();
    let ip = vip.ip().to_string();
    ok(&["ip", "-n", &lab.b, "-6", "neigh", "replace", &ip, "lladdr", STALE_MAC, "dev", &lab.if_b, "nud", "stale"]);
    assert!(lab.neigh(&lab.b, &lab.if_b, &ip).contains(STALE_MAC));
    let mac_a = lab.mac(&lab.a, &lab.if_a);
    lab.in_ns(&lab.a, || async {
        let h = AddrHandle::new().unwrap();
        h.add(&lab.if_a, &vip).await.unwrap();
        announce::announce(&lab.if_a, vip.ip(), 3, Duration::from_millis(50)).await.unwrap();
    });
    let took = wait_for(Duration::from_secs(2), Duration::from_millis(10), || {
        lab.neigh(&lab.b, &lab.if_b, &ip).contains(&mac_a)
    });
    assert!(took.is_some(), "peer entry still {:?}", lab.neigh(&lab.b, &lab.if_b, &ip));
}

#[test]
fn owner_sysctls_are_set_in_the_namespace() {
    let Some(lab) = Lab::new(4, &["ip"]) else { return };
    lab.in_ns(&lab.a, || async { announce::set_owner_arp_sysctls(&lab.if_a).unwrap() });
    let get = |key: &str| {
        ok(&["ip", "netns", "exec", &lab.a, "cat", &format!("/proc/sys/net/ipv4/conf/{}/{key}", lab.if_a)])
            .trim()
            .to_string()
    };
    assert_eq!(get("arp_announce"), "2");
    assert_eq!(get("arp_ignore"), "1");
}

#[test]
fn fence_lets_the_vip_answer_only_while_refreshed() {
    let Some(lab) = Lab::new(5, &["ip", "nft", "arping", "ping"]) else { return };
    let vip: VipAddress = VIP4.parse().unwrap();
    let ip = vip.ip().to_string();
    let fence = Fence::new("qvtest", vip.ip()).unwrap();
    let ttl = Duration::from_millis(1500);
    let refreshed_at = lab.in_ns(&lab.a, || async {
        AddrHandle::new().unwrap().add(&lab.if_a, &vip).await.unwrap();
        fence.install().await.unwrap();
        fence.install().await.unwrap(); // re-install replaces, does not fail
        assert!(!fence.is_open().await.unwrap());
        fence.refresh(Duration::from_secs(30)).await.unwrap();
        fence.refresh(ttl).await.unwrap(); // a shorter timeout replaces the longer one
        let at = Instant::now();
        assert!(fence.is_open().await.unwrap());
        at
    });
    // fresh: answers ARP and ping from the peer
    assert!(lab.arp_answers(&ip), "fresh fence must let ARP through");
    assert!(lab.ping_answers(&ip), "fresh fence must let ping through");
    // from now on, nobody refreshes: the kernel closes the fence by itself
    let closed = wait_for(ttl + Duration::from_secs(1), Duration::from_millis(5), || {
        !lab.in_ns(&lab.a, || async { fence.is_open().await.unwrap() })
    });
    let closed_after = refreshed_at.elapsed();
    assert!(closed.is_some(), "lease element never expired");
    assert!(closed_after >= ttl - Duration::from_millis(50), "closed too early: {closed_after:?}");
    eprintln!("measured: fence closed {closed_after:?} after a refresh with ttl {ttl:?}");
    // the address is still configured, yet the VIP is silent
    let still = lab.in_ns(&lab.a, || async { AddrHandle::new().unwrap().contains(&lab.if_a, &vip).await.unwrap() });
    assert!(still);
    ok(&["ip", "-n", &lab.b, "neigh", "flush", "dev", &lab.if_b]);
    assert!(!lab.arp_answers(&ip), "expired fence must drop ARP for the VIP");
    // ping with a permanent neighbour entry tests the IP rules apart from ARP
    let mac_a = lab.mac(&lab.a, &lab.if_a);
    ok(&["ip", "-n", &lab.b, "neigh", "replace", &ip, "lladdr", &mac_a, "dev", &lab.if_b, "nud", "permanent"]);
    assert!(!lab.ping_answers(&ip), "expired fence must drop IP to the VIP");
    // the node's own address is not affected
    assert!(lab.ping_answers("198.51.100.1"));
    // refresh again: answers again; remove: tables gone, answers without fence
    lab.in_ns(&lab.a, || async { fence.refresh(Duration::from_secs(5)).await.unwrap() });
    assert!(lab.ping_answers(&ip));
    ok(&["ip", "-n", &lab.b, "neigh", "flush", "dev", &lab.if_b]);
    assert!(lab.arp_answers(&ip));
    lab.in_ns(&lab.a, || async {
        fence.revoke().await.unwrap();
        assert!(!fence.is_open().await.unwrap());
        fence.remove().await.unwrap();
        fence.remove().await.unwrap(); // gone already: fine
        assert!(fence.is_open().await.is_err(), "tables must be gone");
    });
    let rules = ok(&["ip", "netns", "exec", &lab.a, "nft", "list", "ruleset"]);
    assert!(!rules.contains(fence.table_name()), "{rules}");
}

#[test]
fn fence_v6_drops_ping_and_neighbour_discovery_when_expired() {
    let Some(lab) = Lab::new(6, &["ip", "nft", "ping"]) else { return };
    lab.wait_ipv6_ready();
    let vip: VipAddress = VIP6.parse().unwrap();
    let ip = vip.ip().to_string();
    let fence = Fence::new("qvtest", vip.ip()).unwrap();
    lab.in_ns(&lab.a, || async {
        AddrHandle::new().unwrap().add(&lab.if_a, &vip).await.unwrap();
        fence.install().await.unwrap();
        fence.refresh(Duration::from_millis(800)).await.unwrap();
    });
    assert!(lab.ping_answers(&ip));
    let closed = wait_for(Duration::from_secs(3), Duration::from_millis(10), || {
        !lab.in_ns(&lab.a, || async { fence.is_open().await.unwrap() })
    });
    assert!(closed.is_some());
    ok(&["ip", "-n", &lab.b, "-6", "neigh", "flush", "dev", &lab.if_b]);
    assert!(!lab.ping_answers(&ip), "neither NS nor echo may be answered");
    lab.in_ns(&lab.a, || async { fence.remove().await.unwrap() });
    // the failed resolution left an entry that is still probing on its own timer
    ok(&["ip", "-n", &lab.b, "-6", "neigh", "flush", "dev", &lab.if_b]);
    let answers = wait_for(Duration::from_secs(4), Duration::from_millis(10), || lab.ping_answers(&ip));
    assert!(answers.is_some(), "without the fence the VIP must answer again");
}
