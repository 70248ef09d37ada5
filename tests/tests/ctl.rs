//! `quorumlb ctl` against a real cluster member: status, tokens, config validate
//! and apply (errors with their lines), backend drain, users, and membership
//! (a second node added as learner then voter, then removed).

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use tests::{NodeProcess, TestBackend, free_port, quorumlb_bin};

fn ctl(admin: SocketAddr, auth: &[&str], args: &[&str]) -> Output {
    Command::new(quorumlb_bin())
        .arg("ctl")
        .arg("--admin")
        .arg(admin.to_string())
        .args(auth)
        .args(args)
        .env_remove("QUORUMLB_TOKEN")
        .output()
        .expect("run ctl")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "ctl failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn pool_cfg(web: u16, backend: SocketAddr) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{web}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{backend}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_drives_the_cluster_through_the_admin_api() {
    let b = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "ctl-test-cluster-secret-0123456789abcdef").unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "ctl-admin-password-9876\n").unwrap();
    let (c1, c2, admin_port, web) = (free_port(), free_port(), free_port(), free_port());
    let peers = format!("peers = [ {{ id = 1, address = \"127.0.0.1:{c1}\" }} ]");
    let f1 = format!(
        "[node]\nid = 1\ndata_dir = \"{}\"\ncluster_listen = \"127.0.0.1:{c1}\"\n\n[cluster]\nsecret_file = \"{}\"\n{peers}\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\nbootstrap_password_file = \"{}\"\n\n{}",
        dir.path().join("n1").display(),
        secret.display(),
        pw.display(),
        pool_cfg(web, b.addr)
    );
    let mut n1 = NodeProcess::start(&f1);
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    n1.wait_listening(admin, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pw_s = pw.display().to_string();
    let login = ["--user", "admin", "--password-file", pw_s.as_str()];
    let status = ok(&ctl(admin, &login, &["status"]));
    assert!(status.contains("\"leader\": 1"), "{status}");

    // A token for scripts; the plaintext is printed once.
    let token = ok(&ctl(admin, &login, &["token", "create", "ci"])).trim().to_string();
    assert!(token.len() >= 20, "{token}");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let tf = token_file.display().to_string();
    let bearer = ["--token-file", tf.as_str()];

    // Bad config: refused with its line; nothing changes.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, pool_cfg(web, b.addr).replace("default_pool = \"p\"", "default_pool = \"nope\"")).unwrap();
    let o = ctl(admin, &bearer, &["config", "validate", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 5") && err.contains("nope"), "{err}");

    // Good config applied: the version moves on.
    let before = ok(&ctl(admin, &bearer, &["config", "get"]));
    let good = dir.path().join("good.toml");
    std::fs::write(&good, pool_cfg(web, b.addr).replace("name = \"p\"\n  [[", "name = \"p\"\nretries = 2\n  [["))
        .unwrap();
    ok(&ctl(admin, &bearer, &["config", "apply", good.to_str().unwrap(), "--comment", "from ctl"]));
    let after = ok(&ctl(admin, &bearer, &["config", "get"]));
    assert_ne!(before.lines().next(), after.lines().next(), "version did not change:\n{before}\n{after}");
    assert!(after.contains("retries = 2"), "{after}");

    ok(&ctl(admin, &bearer, &["backend", "drain", "p", &b.addr.to_string()]));
    let pw2 = dir.path().join("pw2");
    std::fs::write(&pw2, "another-user-password-1").unwrap();
    ok(&ctl(admin, &bearer, &["user", "add", "bob", "--password-file", pw2.to_str().unwrap()]));
    assert!(ok(&ctl(admin, &bearer, &["user", "list"])).contains("bob"));

    // Membership: node 2 starts empty and waits; ctl adds it, then removes it.
    let f2 = format!(
        "[node]\nid = 2\ndata_dir = \"{}\"\ncluster_listen = \"127.0.0.1:{c2}\"\n\n[cluster]\nsecret_file = \"{}\"\n\
         peers = [ {{ id = 1, address = \"127.0.0.1:{c1}\" }}, {{ id = 2, address = \"127.0.0.1:{c2}\" }} ]\n",
        dir.path().join("n2").display(),
        secret.display(),
    );
    let mut n2 = NodeProcess::start(&f2);
    n2.wait_listening(format!("127.0.0.1:{c2}").parse().unwrap(), Duration::from_secs(20));
    ok(&ctl(admin, &bearer, &["node", "add", "--id", "2", "--address", &format!("127.0.0.1:{c2}")]));
    let mut voters = false;
    for _ in 0..50 {
        let s = ok(&ctl(admin, &bearer, &["status"]));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        if nodes.len() == 2 && nodes.iter().all(|n| n["voter"].as_bool().unwrap_or(true)) {
            voters = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(voters, "node 2 did not become a voter; n1 log:\n{}", n1.log());
    ok(&ctl(admin, &bearer, &["node", "remove", "--id", "2"]));
    let s = ok(&ctl(admin, &bearer, &["status"]));
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["nodes"].as_array().map(|a| a.len()), Some(1), "{s}");

    // Wrong credentials are refused.
    let o = ctl(admin, &["--token-file", pw_s.as_str()], &["status"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"));
    assert!(!n1.log().contains("ctl-admin-password-9876") && !n1.log().contains(&token), "secret in log");
}
