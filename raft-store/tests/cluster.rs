//! Three-node clusters in one process over real loopback sockets and real sled dirs:
//! bootstrap, replication, forwarding, failover, restart, snapshot catch-up.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Cluster, bounded, init_tracing, wait_until};
use raft_store::{ClusterNode, Command, InMemoryStickySink, Role, StickyEntry};

const LIMIT: Duration = Duration::from_secs(40);
const SOON: Duration = Duration::from_secs(5);

fn config(toml: &str) -> Command {
    Command::ReplaceConfig { toml: toml.into(), author: "test".into(), comment: None, expected_version: None }
}

async fn wait_config_version(node: &ClusterNode, version: u64) -> bool {
    let mut rx = node.state();
    wait_until(SOON, || {
        let v = rx.borrow_and_update().config_version;
        async move { (v >= version).then_some(()) }
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_id_bootstraps_and_config_write_reaches_all_nodes() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::with_roles(&[Role::Proxy, Role::Proxy, Role::Witness], |_| {});
        // Nodes 2 and 3 are brand new but not the lowest id: they must wait.
        c.nodes[1].start().await;
        c.nodes[2].start().await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(c.nodes[1].node().leader(), None);
        assert_eq!(c.nodes[2].node().leader(), None);
        assert!(c.nodes[1].node().status().members.is_empty(), "node 2 must not initialise");

        let t0 = Instant::now();
        c.nodes[0].start().await;
        let leader = c.wait_leader(SOON).await;
        println!("cluster formed, leader elected in {:?}", t0.elapsed());

        let toml = "[[pool]]\nname = \"web\"\n";
        let r = c.nodes[leader].node().write(config(toml)).await.unwrap();
        assert!(r.is_applied());
        assert_eq!(r.config_version, 1);
        for n in &c.nodes {
            assert!(wait_config_version(n.node(), 1).await, "node {} got the config", n.opts.node_id);
            let st = n.node().state().borrow().clone();
            assert_eq!(st.config.as_ref().map(|c| c.toml.as_str()), Some(toml));
        }
        // Roles are visible in the membership, so the VIP controller can skip witnesses.
        let status = c.nodes[leader].node().status();
        let roles: Vec<(u64, Role, bool)> = status.members.iter().map(|m| (m.id, m.role, m.voter)).collect();
        assert_eq!(roles, vec![(1, Role::Proxy, true), (2, Role::Proxy, true), (3, Role::Witness, true)]);
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_follower_is_forwarded_to_leader() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::new(3, |_| {});
        c.start_all().await;
        let leader = c.wait_leader(SOON).await;
        let f = c.follower(leader);
        let r = c.nodes[f].node().write(config("a = 1")).await.unwrap();
        assert!(r.is_applied());
        assert!(r.log_index > 0);
        for n in &c.nodes {
            assert!(wait_config_version(n.node(), 1).await);
        }
        let audit = c.nodes[leader].node().state().borrow().audit.clone();
        assert_eq!(audit.back().map(|a| a.action.as_str()), Some("replace_config"));
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_shutdown_elects_new_leader_and_writes_continue() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::new(3, |_| {});
        c.start_all().await;
        let old = c.wait_leader(SOON).await;
        c.nodes[old].node().write(config("v1")).await.unwrap();
        let t0 = Instant::now();
        c.nodes[old].stop().await;
        let stopped = t0.elapsed();
        let new = c.wait_leader(SOON).await;
        println!("new leader {:?} after the old one stopped (stop itself took {stopped:?})", t0.elapsed() - stopped);
        assert_ne!(new, old);
        // A write through the surviving follower still lands.
        let f = c.follower(new);
        let r = c.nodes[f].node().write(config("v2")).await.unwrap();
        assert_eq!(r.config_version, 2);
        println!("first write after leader loss done {:?} after shutdown", t0.elapsed());
        // The old leader comes back from its own disk and catches up.
        c.nodes[old].start().await;
        assert!(wait_config_version(c.nodes[old].node(), 2).await);
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_committed_state_and_does_not_reinitialise() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::new(3, |_| {});
        c.start_all().await;
        let leader = c.wait_leader(SOON).await;
        for i in 0..5 {
            c.nodes[leader].node().write(config(&format!("v{i}"))).await.unwrap();
        }
        let vip = Command::VipAssign { vip: "192.0.2.1".into(), owner: Some(2), epoch: 7 };
        c.nodes[leader].node().write(vip).await.unwrap();
        for n in &c.nodes {
            assert!(wait_config_version(n.node(), 5).await);
        }
        let term_before = c.nodes[leader].node().status().term;
        c.stop_all().await;

        // Same data dirs, same ports. Node 1 is lowest but its store is not new:
        // `start` would fail if it tried to initialise again.
        c.start_all().await;
        let leader = c.wait_leader(SOON).await;
        for n in &c.nodes {
            // Entries committed before the stop are re-applied from each node's own log
            // (up to its persisted commit index at once, the rest when the new leader commits).
            let mut rx = n.node().state();
            let back = wait_until(SOON, || {
                let has = rx.borrow_and_update().vips.contains_key("192.0.2.1");
                async move { has.then_some(()) }
            })
            .await;
            assert!(back.is_some(), "committed state survives restart on node {}", n.opts.node_id);
            let st = n.node().state().borrow().clone();
            assert_eq!(st.config.as_ref().map(|c| c.toml.as_str()), Some("v4"));
            assert_eq!(st.vips.get("192.0.2.1").map(|a| (a.owner, a.epoch)), Some((Some(2), 7)));
        }
        // openraft may resume the same term when the old leader's vote was committed.
        assert!(c.nodes[leader].node().status().term >= term_before);
        let r = c.nodes[leader].node().write(config("after restart")).await.unwrap();
        assert_eq!(r.config_version, 6, "history continues, not a fresh cluster");
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_id_node_with_a_wiped_data_dir_rejoins_instead_of_creating_a_second_cluster() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::new(3, |_| {});
        c.start_all().await;
        let leader = c.wait_leader(SOON).await;
        for i in 0..4 {
            c.nodes[leader].node().write(config(&format!("v{i}"))).await.unwrap();
        }
        for n in &c.nodes {
            assert!(wait_config_version(n.node(), 4).await);
        }
        // Node 1 (the lowest id, the one that creates clusters) loses its disk.
        c.nodes[0].stop().await;
        let dir = c.nodes[0].opts.data_dir.clone();
        std::fs::remove_dir_all(&dir).unwrap();
        c.nodes[0].start().await;
        assert!(!c.nodes[0].node().created_cluster(), "a wiped node must not create a new cluster");
        // The surviving leader still lists node 1 and sends it the history.
        assert!(wait_config_version(c.nodes[0].node(), 4).await, "wiped node caught up from the leader");
        let st = c.nodes[0].node().state().borrow().clone();
        assert_eq!(st.config.as_ref().map(|c| c.toml.as_str()), Some("v3"));
        let leader = c.wait_leader(SOON).await;
        let r = c.nodes[leader].node().write(config("after wipe")).await.unwrap();
        assert_eq!(r.config_version, 5, "one history, continued");
        assert!(wait_config_version(c.nodes[0].node(), 5).await);
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_after_thousands_of_entries_catches_up_through_snapshot() {
    init_tracing();
    bounded(Duration::from_secs(90), async {
        let mut c = Cluster::new(4, |o| {
            o.snapshot_logs_since_last = 500;
            o.logs_kept_after_snapshot = 100;
        });
        // Node 4 is not part of the initial cluster: give the first three a 3-peer list.
        let three: Vec<_> = c.nodes[..3].iter().map(|n| n.opts.peers[n.opts.node_id as usize - 1].clone()).collect();
        for n in &mut c.nodes[..3] {
            n.opts.peers = three.clone();
        }
        for n in &mut c.nodes[..3] {
            n.start().await;
        }
        let leader = c.wait_leader(SOON).await;
        let t0 = Instant::now();
        let node = c.nodes[leader].node().clone();
        let mut writers = Vec::new();
        for w in 0..50 {
            let node = node.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..100 {
                    let e = StickyEntry {
                        table: "web".into(),
                        key: format!("client-{w}-{i}"),
                        backend: format!("10.0.0.{}:80", i % 4),
                        ttl_ms: 600_000,
                    };
                    node.write(Command::StickyUpsert { entries: vec![e] }).await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let last = node.status().last_log_index.unwrap();
        println!("5000 writes (50 concurrent writers) committed in {:?}, last log index {last}", t0.elapsed());
        assert!(last >= 5000);
        let purged = wait_until(SOON, || {
            let p = node.status().purged_index;
            async move { p.filter(|&p| p > 0) }
        })
        .await;
        assert!(purged.is_some(), "leader compacted its log");

        let t1 = Instant::now();
        c.nodes[3].start().await;
        let addr = c.nodes[3].opts.advertise.clone();
        node.add_learner(4, addr, Role::Proxy).await.unwrap();
        let learner = c.nodes[3].node().clone();
        let caught_up = wait_until(Duration::from_secs(30), || {
            let applied = learner.status().applied_index.unwrap_or(0);
            async move { (applied >= last).then_some(()) }
        })
        .await;
        assert!(caught_up.is_some(), "learner caught up");
        println!("learner caught up to index {last} in {:?}", t1.elapsed());
        let stats = learner.snapshot_stats();
        assert!(stats.installed >= 1, "learner installed a snapshot: {stats:?}");
        let ls = learner.status();
        assert!(ls.snapshot_index.is_some() && ls.purged_index.is_some(), "learner log starts at the snapshot: {ls:?}");
        assert_eq!(c.nodes[3].sink.len(), 5000, "every sticky entry reached the learner's sink");
        assert_eq!(c.nodes[3].sink.get("web", "client-7-9"), c.nodes[leader].sink.get("web", "client-7-9"));
        // Then promote it to a voter.
        node.change_membership(BTreeSet::from([1, 2, 3, 4])).await.unwrap();
        let voters = wait_until(SOON, || {
            let v = learner.status().members.iter().filter(|m| m.voter).count();
            async move { (v == 4).then_some(v) }
        })
        .await;
        assert_eq!(voters, Some(4));
        // And remove it again, through a follower (forwarded to the leader).
        let f = c.follower(leader);
        c.nodes[f].node().remove_node(4).await.unwrap();
        let members = wait_until(SOON, || {
            let ids: Vec<u64> = node.status().members.iter().map(|m| m.id).collect();
            async move { (ids == vec![1, 2, 3]).then_some(ids) }
        })
        .await;
        assert!(members.is_some(), "node 4 removed from the membership");
        assert!(c.nodes[f].node().remove_node(4).await.is_err(), "not a member any more");
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_upserts_reach_every_sink_and_expire_by_stamped_time() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::new(3, |_| {});
        c.start_all().await;
        let leader = c.wait_leader(SOON).await;
        let f = c.follower(leader);
        let entry = |key: &str, ttl_ms| StickyEntry {
            table: "web".into(),
            key: key.into(),
            backend: "10.0.0.9:443".into(),
            ttl_ms,
        };
        let r = c.nodes[f]
            .node()
            .write(Command::StickyUpsert { entries: vec![entry("short", 300), entry("long", 600_000)] })
            .await
            .unwrap();
        assert!(r.is_applied());
        let sinks: Vec<&InMemoryStickySink> = c.nodes.iter().map(|n| n.sink.as_ref()).collect();
        let all_have = wait_until(SOON, || {
            let ok = sinks.iter().all(|s| s.len() == 2);
            async move { ok.then_some(()) }
        })
        .await;
        assert!(all_have.is_some(), "every node's sink got both entries");
        let short = sinks[0].get("web", "short").unwrap();
        for s in &sinks {
            assert_eq!(s.get("web", "short"), Some(short.clone()), "same expiry on every node");
        }
        // Nothing expires by local wall clock alone...
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(sinks.iter().all(|s| s.get("web", "short").is_some()));
        // ...only when a later entry carries a stamp past the expiry.
        c.nodes[leader].node().write(Command::Noop).await.unwrap();
        let expired = wait_until(SOON, || {
            let ok = sinks.iter().all(|s| s.get("web", "short").is_none() && s.get("web", "long").is_some());
            async move { ok.then_some(()) }
        })
        .await;
        assert!(expired.is_some(), "short entry expired on every node, long one kept");
        c.stop_all().await;
    })
    .await;
}
