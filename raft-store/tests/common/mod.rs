//! Test harness: several `ClusterNode`s in one process on 127.0.0.1 ephemeral ports,
//! each with its own temporary sled dir, plus bounded polling helpers.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_store::{ClusterNode, ClusterOptions, InMemoryStickySink, NodeId, Peer, Role};
use tempfile::TempDir;

pub const SECRET: &[u8] = b"test-cluster-secret-0123456789";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub struct TestNode {
    pub opts: ClusterOptions,
    pub sink: Arc<InMemoryStickySink>,
    pub node: Option<ClusterNode>,
    _dir: Arc<TempDir>,
}

impl TestNode {
    pub fn node(&self) -> &ClusterNode {
        self.node.as_ref().expect("node is running")
    }
    pub async fn start(&mut self) {
        self.sink = Arc::new(InMemoryStickySink::new());
        let n = ClusterNode::start(self.opts.clone(), self.sink.clone()).await.unwrap();
        self.node = Some(n);
    }
    pub async fn stop(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown().await.unwrap();
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<TestNode>,
}

/// Options for node `id` of a cluster whose peers are `peers`.
pub fn options(id: NodeId, dir: &TempDir, addr: SocketAddr, peers: &[Peer]) -> ClusterOptions {
    let mut o = ClusterOptions::new(id, dir.path().join(format!("node{id}")), addr, addr.to_string(), SECRET.to_vec());
    o.peers = peers.to_vec();
    o.role = peers.iter().find(|p| p.id == id).map_or(Role::Proxy, |p| p.role);
    o
}

impl Cluster {
    /// Prepares `n` nodes with ids 1..=n (not started). `tweak` adjusts every node's options.
    pub fn new(n: u64, tweak: impl Fn(&mut ClusterOptions)) -> Cluster {
        Self::with_roles(&vec![Role::Proxy; n as usize], tweak)
    }

    pub fn with_roles(roles: &[Role], tweak: impl Fn(&mut ClusterOptions)) -> Cluster {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let peers: Vec<Peer> = roles
            .iter()
            .enumerate()
            .map(|(i, role)| Peer { id: i as u64 + 1, address: free_addr().to_string(), role: *role })
            .collect();
        let nodes = peers
            .iter()
            .map(|p| {
                let mut opts = options(p.id, &dir, p.address.parse().unwrap(), &peers);
                tweak(&mut opts);
                TestNode { opts, sink: Arc::new(InMemoryStickySink::new()), node: None, _dir: dir.clone() }
            })
            .collect();
        Cluster { nodes }
    }

    pub async fn start_all(&mut self) {
        for n in &mut self.nodes {
            n.start().await;
        }
    }

    pub async fn stop_all(&mut self) {
        for n in &mut self.nodes {
            n.stop().await;
        }
    }

    /// Index (0-based) of the node that all running nodes agree is the leader.
    pub async fn wait_leader(&self, within: Duration) -> usize {
        let found = wait_until(within, move || async move {
            let running: Vec<&TestNode> = self.nodes.iter().filter(|n| n.node.is_some()).collect();
            let leader = running[0].node().leader()?;
            if !running.iter().all(|n| n.node().leader() == Some(leader)) {
                return None;
            }
            let idx = self.nodes.iter().position(|n| n.opts.node_id == leader)?;
            self.nodes[idx].node.as_ref().filter(|n| n.is_leader()).map(|_| idx)
        })
        .await;
        found.expect("a leader agreed by all running nodes")
    }

    pub fn follower(&self, leader: usize) -> usize {
        (0..self.nodes.len()).find(|&i| i != leader && self.nodes[i].node.is_some()).unwrap()
    }
}

/// Polls `f` every 20 ms until it yields `Some`, for at most `within`.
pub async fn wait_until<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a whole test body under a hard time limit.
pub async fn bounded<F: Future<Output = ()>>(limit: Duration, f: F) {
    tokio::time::timeout(limit, f).await.expect("test exceeded its time limit");
}
