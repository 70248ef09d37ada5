//! Three real nodes (two proxies + witness): a config change sent to a follower's
//! admin API is applied on every proxy within a second; after kill -9 of the
//! leader a new leader is elected and accepts writes that the surviving proxy serves.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use tests::client::{self, get};
use tests::{NodeProcess, TestBackend, free_port, quorumlb_bin};

fn pool_cfg(backend: SocketAddr) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:1\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{backend}\"\n"
    )
}

async fn answers(addr: SocketAddr) -> Option<String> {
    let c = client::http1();
    let url = format!("http://{addr}/");
    tokio::time::timeout(Duration::from_secs(1), get(&c, &url)).await.ok()?.ok().map(|r| r.text())
}

async fn wait_all(addrs: &[SocketAddr], want: &str, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < within {
        let mut all = true;
        for a in addrs {
            all &= answers(*a).await.as_deref() == Some(want);
        }
        if all {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn ctl(admin: SocketAddr, auth: &[&str], args: &[&str]) -> (bool, String) {
    let o = Command::new(quorumlb_bin())
        .args(["ctl", "--admin", &admin.to_string()])
        .args(auth)
        .args(args)
        .output()
        .expect("ctl");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_admin_writes_reach_every_proxy_and_survive_leader_loss() {
    let (a, b, c) = (TestBackend::start("a").await, TestBackend::start("b").await, TestBackend::start("c").await);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("key");
    std::fs::write(&secret, "follower-test-secret-0123456789abcdef").unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "follower-admin-pw-31415").unwrap();
    let cl = [free_port(), free_port(), free_port()];
    let web = [free_port(), free_port()];
    let adm = [free_port(), free_port()];
    let peers = format!(
        "peers = [ {{ id = 1, address = \"127.0.0.1:{}\" }}, {{ id = 2, address = \"127.0.0.1:{}\" }}, {{ id = 3, address = \"127.0.0.1:{}\", role = \"witness\" }} ]",
        cl[0], cl[1], cl[2]
    );
    let file = |id: usize, extra: &str| {
        let role = if id == 3 { "witness" } else { "proxy" };
        let bind =
            if id < 3 { format!("  [node.bind]\n  web = \"127.0.0.1:{}\"\n", web[id - 1]) } else { String::new() };
        let admin = if id < 3 {
            format!("[admin]\nlisten = \"127.0.0.1:{}\"\nbootstrap_password_file = \"{}\"\n", adm[id - 1], pw.display())
        } else {
            String::new()
        };
        format!(
            "[node]\nid = {id}\nrole = \"{role}\"\ndata_dir = \"{}\"\ncluster_listen = \"127.0.0.1:{}\"\n{bind}\n[cluster]\nsecret_file = \"{}\"\n{peers}\n\n{admin}\n{extra}",
            dir.path().join(format!("n{id}")).display(),
            cl[id - 1],
            secret.display()
        )
    };
    let mut n1 = NodeProcess::start(&file(1, &pool_cfg(a.addr)));
    let mut n2 = NodeProcess::start(&file(2, ""));
    let mut n3 = NodeProcess::start(&file(3, ""));
    let proxies: Vec<SocketAddr> = web.iter().map(|p| format!("127.0.0.1:{p}").parse().unwrap()).collect();
    let admins: Vec<SocketAddr> = adm.iter().map(|p| format!("127.0.0.1:{p}").parse().unwrap()).collect();
    assert!(wait_all(&proxies, "a", Duration::from_secs(30)).await.is_some(), "n1:\n{}\nn2:\n{}", n1.log(), n2.log());

    // A token made through node 1 (the leader) works on node 2: tokens are replicated.
    let pw_s = pw.display().to_string();
    let (ok, token) = ctl(admins[0], &["--user", "admin", "--password-file", &pw_s], &["token", "create", "t"]);
    assert!(ok, "{token}");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token.lines().next().unwrap_or_default()).unwrap();
    let tf = token_file.display().to_string();
    let bearer = ["--token-file", tf.as_str()];

    // Config change through the follower's admin API: every proxy serves it within a second.
    let (ok, status) = ctl(admins[1], &bearer, &["status", "-o", "json"]);
    assert!(ok && status.contains("\"leader\": 1"), "{status}");
    let next = dir.path().join("next.toml");
    std::fs::write(&next, pool_cfg(b.addr)).unwrap();
    let (ok, out) = ctl(admins[1], &bearer, &["config", "apply", next.to_str().unwrap()]);
    assert!(ok, "{out}");
    let took = wait_all(&proxies, "b", Duration::from_secs(1)).await;
    assert!(took.is_some(), "not applied everywhere within 1 s");
    eprintln!("config change via follower applied on both proxies after {:?}", took.unwrap_or_default());

    // kill -9 the leader: nodes 2 and 3 elect a new one, which accepts writes.
    n1.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = n1.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    std::fs::write(&next, pool_cfg(c.addr)).unwrap();
    let mut accepted = false;
    for _ in 0..50 {
        if ctl(admins[1], &bearer, &["config", "apply", next.to_str().unwrap()]).0 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(accepted, "no write accepted after the leader died; n2:\n{}", n2.log());
    eprintln!("write accepted {:?} after kill -9 of the leader", killed.elapsed());
    assert!(wait_all(&proxies[1..], "c", Duration::from_secs(2)).await.is_some());
    let (ok, status) = ctl(admins[1], &bearer, &["status", "-o", "json"]);
    assert!(ok && status.contains("\"leader\": ") && !status.contains("\"leader\": 1"), "{status}");
    let _ = (&mut n2, &mut n3);
}
