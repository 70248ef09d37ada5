//! A real three-node cluster (two proxies and a witness, each the `quorumlb`
//! binary) on 127.0.0.1: the first node seeds the cluster config, every proxy
//! serves it (with its own `[node.bind]`), the witness runs no proxy, a restart
//! recovers from the data dir without re-seeding, and losing one node keeps
//! the rest serving.

use std::net::SocketAddr;
use std::time::Duration;

use tests::client::{self, get};
use tests::{NodeProcess, TestBackend, free_port};

struct Ports {
    cluster: [u16; 3],
    http: [u16; 2],
}

fn node_file(id: u64, p: &Ports, dir: &std::path::Path, secret: &std::path::Path, cluster_cfg: &str) -> String {
    let role = if id == 3 { "witness" } else { "proxy" };
    let bind = if id <= 2 {
        format!("  [node.bind]\n  web = \"127.0.0.1:{}\"\n", p.http[id as usize - 1])
    } else {
        String::new()
    };
    format!(
        "[node]\nid = {id}\nrole = \"{role}\"\ndata_dir = \"{}\"\ncluster_listen = \"127.0.0.1:{}\"\n{bind}\n\
         [cluster]\nsecret_file = \"{}\"\npeers = [ {{ id = 1, address = \"127.0.0.1:{}\" }}, {{ id = 2, address = \"127.0.0.1:{}\" }}, {{ id = 3, address = \"127.0.0.1:{}\", role = \"witness\" }} ]\n\n{cluster_cfg}",
        dir.join(format!("n{id}")).display(),
        p.cluster[id as usize - 1],
        secret.display(),
        p.cluster[0],
        p.cluster[1],
        p.cluster[2],
    )
}

fn cluster_cfg(backend: &TestBackend) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:1\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        backend.addr
    )
}

async fn answer(addr: SocketAddr) -> Option<String> {
    let c = client::http1();
    let url = format!("http://{addr}/");
    tokio::time::timeout(Duration::from_secs(2), get(&c, &url)).await.ok()?.ok().map(|r| r.text())
}

async fn wait_answer(addr: SocketAddr, want: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if answer(addr).await.as_deref() == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_seeds_replicates_and_recovers_config() {
    let first = TestBackend::start("first").await;
    let second = TestBackend::start("second").await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.key");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    let p = Ports { cluster: [free_port(), free_port(), free_port()], http: [free_port(), free_port()] };
    let http: Vec<SocketAddr> = p.http.iter().map(|port| format!("127.0.0.1:{port}").parse().unwrap()).collect();

    // Node 1 carries the cluster config; nodes 2 and 3 only their own sections.
    let f1 = node_file(1, &p, dir.path(), &secret, &cluster_cfg(&first));
    let f2 = node_file(2, &p, dir.path(), &secret, "");
    let f3 = node_file(3, &p, dir.path(), &secret, "");
    let mut n2 = NodeProcess::start(&f2);
    let mut n3 = NodeProcess::start(&f3);
    let mut n1 = NodeProcess::start(&f1);

    assert!(wait_answer(http[0], "first", Duration::from_secs(20)).await, "node 1 log:\n{}", n1.log());
    assert!(wait_answer(http[1], "first", Duration::from_secs(20)).await, "node 2 log:\n{}", n2.log());
    assert!(n3.child.try_wait().unwrap().is_none(), "witness exited:\n{}", n3.log());
    assert!(!n3.log().contains("listening"), "the witness must not run a proxy:\n{}", n3.log());

    // Restart node 1 with a *different* cluster config in its file: the cluster
    // keeps its committed config (no re-seeding on restart).
    n1.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(n1.wait_exit(Duration::from_secs(15)), Some(0), "node 1 log:\n{}", n1.log());
    let f1b = node_file(1, &p, dir.path(), &secret, &cluster_cfg(&second));
    let mut n1b = NodeProcess::start(&f1b);
    n1b.wait_listening(http[0], Duration::from_secs(20));
    assert!(wait_answer(http[0], "first", Duration::from_secs(10)).await, "node 1 log:\n{}", n1b.log());
    assert!(!n1b.log().contains("seeded"), "a restarted node re-seeded the cluster:\n{}", n1b.log());

    // Losing one node (kill -9) leaves a quorum; the other proxy keeps serving.
    n1b.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = n1b.wait_exit(Duration::from_secs(5));
    assert!(wait_answer(http[1], "first", Duration::from_secs(5)).await, "node 2 log:\n{}", n2.log());
    let _ = (&mut n2, &mut n3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_secret_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("k");
    std::fs::write(&secret, "short").unwrap();
    let p = Ports { cluster: [free_port(), free_port(), free_port()], http: [free_port(), free_port()] };
    let mut n = NodeProcess::start(&node_file(1, &p, dir.path(), &secret, ""));
    assert_eq!(n.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(n.log().contains("at least 16 are required"), "{}", n.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_mappings_learned_on_one_proxy_are_honoured_by_the_other() {
    let backends = [TestBackend::start("a").await, TestBackend::start("b").await, TestBackend::start("c").await];
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.key");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    let p = Ports { cluster: [free_port(), free_port(), free_port()], http: [free_port(), free_port()] };
    let http: Vec<SocketAddr> = p.http.iter().map(|port| format!("127.0.0.1:{port}").parse().unwrap()).collect();
    let mut cfg = String::from(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:1\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\nalgorithm = \"round_robin\"\n  [pool.sticky]\n  mode = \"header\"\n  name = \"x-user\"\n  ttl_s = 600\n",
    );
    for b in &backends {
        cfg.push_str(&format!("  [[pool.backend]]\n  address = \"{}\"\n", b.addr));
    }
    let mut n1 = NodeProcess::start(&node_file(1, &p, dir.path(), &secret, &cfg));
    let mut n2 = NodeProcess::start(&node_file(2, &p, dir.path(), &secret, ""));
    let mut n3 = NodeProcess::start(&node_file(3, &p, dir.path(), &secret, ""));
    n1.wait_listening(http[0], Duration::from_secs(20));
    n2.wait_listening(http[1], Duration::from_secs(20));

    let c = client::http1();
    let mut learned = Vec::new();
    for i in 0..24 {
        let user = format!("user-{i}");
        let r = tests::client::get_with(&c, &format!("http://{}/", http[0]), &[("x-user", &user)]).await.unwrap();
        assert_eq!(r.status, 200);
        learned.push((user, r.text()));
    }
    // Replication is asynchronous (batched every few ms): allow a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut kept = 0;
    for (user, backend) in &learned {
        let r = tests::client::get_with(&c, &format!("http://{}/", http[1]), &[("x-user", user)]).await.unwrap();
        if r.text() == *backend {
            kept += 1;
        }
    }
    assert_eq!(kept, learned.len(), "every session must land on the same backend through the other proxy");
    let _ = (&mut n1, &mut n2, &mut n3);
}
