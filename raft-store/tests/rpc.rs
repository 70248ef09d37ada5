//! Cluster RPC at the wire: authentication, bad bodies, and the VIP lease endpoint
//! (fencing by epoch, owner confirmation through the leader, no answer without quorum).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, SECRET, bounded, init_tracing};
use raft_store::auth;
use raft_store::network::{PATH_APPEND, PATH_LEASE, PATH_WRITE, PeerClient, WriteRequest};
use raft_store::{Command, Outcome};

const LIMIT: Duration = Duration::from_secs(40);
const SOON: Duration = Duration::from_secs(5);
const RPC: Duration = Duration::from_secs(2);

fn write_body() -> Vec<u8> {
    serde_json::to_vec(&WriteRequest {
        cmd: Command::ReplaceConfig {
            toml: "evil = true".into(),
            author: "intruder".into(),
            comment: None,
            expected_version: None,
        },
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_valid_mac_get_401_and_change_nothing() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::new(3, |_| {});
        c.start_all().await;
        let leader = c.wait_leader(SOON).await;
        let addr = c.nodes[leader].opts.advertise.clone();
        let body = write_body();

        let wrong = PeerClient::new(9, Arc::new(b"not-the-cluster-secret".to_vec()));
        let (status, answer) = wrong.post_raw(&addr, PATH_WRITE, body.clone(), RPC).await.unwrap();
        assert_eq!(status, 401);
        assert!(String::from_utf8_lossy(&answer).contains("bad MAC"));

        let right = PeerClient::new(9, Arc::new(SECRET.to_vec()));
        let (status, _) = right.send(&addr, PATH_WRITE, body.clone(), &[], RPC).await.unwrap();
        assert_eq!(status, 401, "no MAC at all");

        let stale = auth::sign(SECRET, "POST", PATH_WRITE, auth::now_ms() - 120_000, 9, &body);
        let (status, answer) = right.send(&addr, PATH_WRITE, body.clone(), &stale, RPC).await.unwrap();
        assert_eq!(status, 401, "timestamp too old");
        assert!(String::from_utf8_lossy(&answer).contains("timestamp"));

        // A MAC made for another body does not carry over.
        let other = auth::sign(SECRET, "POST", PATH_WRITE, auth::now_ms(), 9, b"{}");
        let (status, _) = right.send(&addr, PATH_WRITE, body.clone(), &other, RPC).await.unwrap();
        assert_eq!(status, 401);

        // A captured, valid request cannot be sent twice.
        let noop = serde_json::to_vec(&WriteRequest { cmd: Command::Noop }).unwrap();
        let signed = auth::sign(SECRET, "POST", PATH_WRITE, auth::now_ms(), 9, &noop);
        let (status, _) = right.send(&addr, PATH_WRITE, noop.clone(), &signed, RPC).await.unwrap();
        assert_eq!(status, 200);
        let (status, answer) = right.send(&addr, PATH_WRITE, noop, &signed, RPC).await.unwrap();
        assert_eq!(status, 401);
        assert!(String::from_utf8_lossy(&answer).contains("replayed"));

        // Raft endpoints and unknown paths are guarded the same way.
        let (status, _) = wrong.post_raw(&addr, PATH_APPEND, b"{}".to_vec(), RPC).await.unwrap();
        assert_eq!(status, 401);
        let (status, _) = wrong.post_raw(&addr, "/nope", b"{}".to_vec(), RPC).await.unwrap();
        assert_eq!(status, 401);

        // Nothing was applied; a properly signed write is.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for n in &c.nodes {
            let st = n.node().state().borrow().clone();
            assert!(st.config.is_none());
            assert_eq!(st.config_version, 0);
        }
        let (status, _) = right.post_raw(&addr, PATH_WRITE, body, RPC).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(c.nodes[leader].node().state().borrow().config_version, 1);
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_get_400_naming_the_problem_and_node_keeps_working() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::new(3, |_| {});
        c.start_all().await;
        let leader = c.wait_leader(SOON).await;
        let right = PeerClient::new(9, Arc::new(SECRET.to_vec()));
        for (i, n) in c.nodes.iter().enumerate() {
            let addr = &n.opts.advertise;
            for (path, body) in [
                (PATH_APPEND, b"\x00\xffnot json".to_vec()),
                ("/raft/vote", b"{\"vote\": 17}".to_vec()),
                ("/raft/snapshot", b"[]".to_vec()),
                (PATH_WRITE, b"{\"cmd\": {\"type\": \"format_disks\"}}".to_vec()),
                (PATH_LEASE, b"{\"vip\": 1}".to_vec()),
                ("/cluster/membership", Vec::new()),
            ] {
                let (status, answer) = right.post_raw(addr, path, body, RPC).await.unwrap();
                let text = String::from_utf8_lossy(&answer).to_string();
                assert_eq!(status, 400, "node {i} {path}: {text}");
                let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert!(json["error"].as_str().unwrap().starts_with("invalid "), "{text}");
            }
        }
        let r = c.nodes[leader].node().write(Command::Noop).await.unwrap();
        assert!(r.is_applied(), "cluster still works after garbage");
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_epoch_fencing_and_owner_confirmation_through_leader() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::new(3, |o| o.request_timeout_ms = 2000);
        c.start_all().await;
        let leader = c.wait_leader(SOON).await;
        let f = c.follower(leader);
        let vip = "192.0.2.10";
        let assign = |owner, epoch| Command::VipAssign { vip: vip.into(), owner: Some(owner), epoch };
        assert!(c.nodes[f].node().write(assign(2, 1)).await.unwrap().is_applied());
        assert!(c.nodes[f].node().write(assign(1, 2)).await.unwrap().is_applied());
        let stale = c.nodes[f].node().write(assign(3, 2)).await.unwrap();
        match stale.outcome {
            Outcome::Rejected { reason } => assert!(reason.contains("stale epoch"), "{reason}"),
            other => panic!("stale epoch must be rejected, got {other:?}"),
        }
        let older = c.nodes[leader].node().write(assign(3, 1)).await.unwrap();
        assert!(!older.is_applied());

        for n in &c.nodes {
            let node = n.node();
            assert!(node.confirm_vip_owner(vip, 2, 1).await.unwrap(), "owner at current epoch");
            assert!(!node.confirm_vip_owner(vip, 2, 3).await.unwrap(), "not the owner");
            assert!(!node.confirm_vip_owner(vip, 1, 2).await.unwrap(), "superseded epoch");
            assert!(!node.confirm_vip_owner("198.51.100.1", 1, 1).await.unwrap(), "unknown vip");
        }
        c.nodes[leader].node().ensure_linearizable().await.unwrap();
        assert!(c.nodes[f].node().ensure_linearizable().await.is_err(), "a follower cannot");

        // Stop two of three: the survivor cannot confirm anything, as leader or not.
        let survivor = c.follower(leader);
        let t0 = Instant::now();
        for i in 0..3 {
            if i != survivor {
                c.nodes[i].stop().await;
            }
        }
        let res = c.nodes[survivor].node().confirm_vip_owner(vip, 2, 1).await;
        println!("confirm without quorum failed after {:?}: {res:?}", t0.elapsed());
        assert!(res.is_err(), "no quorum, no answer: {res:?}");
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_cut_off_from_quorum_refuses_lease_confirmation() {
    init_tracing();
    bounded(LIMIT, async {
        let mut c = Cluster::new(3, |o| o.request_timeout_ms = 2000);
        c.start_all().await;
        let leader = c.wait_leader(SOON).await;
        c.nodes[leader]
            .node()
            .write(Command::VipAssign { vip: "192.0.2.20".into(), owner: Some(c.nodes[leader].opts.node_id), epoch: 1 })
            .await
            .unwrap();
        // Stop both followers: the leader still believes it leads for a moment, but
        // ensure_linearizable must fail because no quorum acknowledges it.
        for i in 0..3 {
            if i != leader {
                c.nodes[i].stop().await;
            }
        }
        let node = c.nodes[leader].node();
        let err = node.ensure_linearizable().await;
        assert!(err.is_err(), "{err:?}");
        let res = node.confirm_vip_owner("192.0.2.20", 1, c.nodes[leader].opts.node_id).await;
        assert!(res.is_err(), "{res:?}");
        c.stop_all().await;
    })
    .await;
}
