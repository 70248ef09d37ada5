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
    // A node-local token from `quorumlb gen-token`, for scripts before any user exists.
    let generated = Command::new(quorumlb_bin()).arg("gen-token").output().unwrap();
    let local_token = ok(&generated).trim().to_string();
    let local_token_file = dir.path().join("local-token");
    std::fs::write(&local_token_file, format!("{local_token}\n")).unwrap();
    let peers = format!("peers = [ {{ id = 1, address = \"127.0.0.1:{c1}\" }} ]");
    let f1 = format!(
        "[node]\nid = 1\ndata_dir = \"{}\"\ncluster_listen = \"127.0.0.1:{c1}\"\n\n[cluster]\nsecret_file = \"{}\"\n{peers}\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\nbootstrap_password_file = \"{}\"\ntoken_file = \"{}\"\n\n{}",
        dir.path().join("n1").display(),
        secret.display(),
        pw.display(),
        local_token_file.display(),
        pool_cfg(web, b.addr)
    );
    let mut n1 = NodeProcess::start(&f1);
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    n1.wait_listening(admin, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ltf = local_token_file.display().to_string();
    let status = ok(&ctl(admin, &["--token-file", ltf.as_str()], &["status", "-o", "json"]));
    assert!(status.contains("\"node_id\": 1"), "the [admin] token_file token is accepted: {status}");
    let pw_s = pw.display().to_string();
    let login = ["--user", "admin", "--password-file", pw_s.as_str()];
    let status = ok(&ctl(admin, &login, &["status"]));
    assert!(status.starts_with("node 1  leader 1  term "), "table output by default:\n{status}");
    let status = ok(&ctl(admin, &login, &["status", "--output", "json"]));
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
        let s = ok(&ctl(admin, &bearer, &["-o", "json", "status"]));
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
    let s = ok(&ctl(admin, &bearer, &["status", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["nodes"].as_array().map(|a| a.len()), Some(1), "{s}");

    // Membership changes are in the replicated audit trail, with who made them.
    let audit = ok(&ctl(admin, &bearer, &["audit", "-o", "json"]));
    let entries: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let mut membership: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "membership")
        .map(|e| format!("{} {}", e["author"], e["summary"]))
        .collect();
    assert_eq!(membership.len(), 2, "{audit}");
    membership.sort_by_key(|m| m.contains("removed"));
    assert!(
        membership[0].contains("token:ci") && membership[0].contains("node 2") && membership[0].contains("voter"),
        "{membership:?}"
    );
    assert!(membership[1].contains("node 2 removed"), "{membership:?}");
    let table = ok(&ctl(admin, &bearer, &["audit"]));
    assert!(table.starts_with("INDEX") && table.contains("membership"), "{table}");

    // Pools as a table: the drained backend shows it.
    let pools = ok(&ctl(admin, &bearer, &["pools"]));
    let row = pools.lines().find(|l| l.contains(&b.addr.to_string())).unwrap_or_default().to_string();
    assert!(row.starts_with("p ") && row.contains("draining"), "{pools}");
    let one = ok(&ctl(admin, &bearer, &["pools", "p", "-o", "json"]));
    assert!(one.contains("\"admin_state\": \"draining\""), "{one}");

    // Two operators apply on the same base version at once: exactly one wins,
    // the other gets 409 and changes nothing.
    let doc = ok(&ctl(admin, &bearer, &["config", "get"]));
    let base = doc.lines().next().unwrap().trim_start_matches("# version ").to_string();
    let edits: Vec<_> = [3, 4]
        .iter()
        .map(|n| {
            let f = dir.path().join(format!("race{n}.toml"));
            let text =
                pool_cfg(web, b.addr).replace("name = \"p\"\n  [[", &format!("name = \"p\"\nretries = {n}\n  [["));
            std::fs::write(&f, text).unwrap();
            Command::new(quorumlb_bin())
                .args(["ctl", "--admin", &admin.to_string(), "--token-file", &tf, "config", "apply"])
                .arg(&f)
                .args(["--base-version", &base])
                .env_remove("QUORUMLB_TOKEN")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = edits.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let won: Vec<bool> = outs.iter().map(|o| o.status.success()).collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "exactly one apply on base {base} wins: {outs:?}");
    let loser = outs.iter().find(|o| !o.status.success()).unwrap();
    assert!(String::from_utf8_lossy(&loser.stderr).contains("409"), "{loser:?}");
    let now = ok(&ctl(admin, &bearer, &["config", "get"]));
    let winner = if won[0] { "retries = 3" } else { "retries = 4" };
    assert!(now.contains(winner), "the winner's config is in place: {now}");

    // Wrong credentials are refused.
    let o = ctl(admin, &["--token-file", pw_s.as_str()], &["status"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"));
    let log = n1.log();
    assert!(!log.contains("ctl-admin-password-9876") && !log.contains(&token), "secret in log");
    assert!(!log.contains(&local_token), "the token_file token in the log");
}

#[test]
fn a_token_file_that_holds_no_generated_token_is_a_config_error_that_does_not_quote_it() {
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("token");
    std::fs::write(&tf, "hunter2-not-a-token\n").unwrap();
    let cfg = dir.path().join("lb.toml");
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:{}\"\ntoken_file = \"{}\"\n\n{}",
        free_port(),
        tf.display(),
        pool_cfg(free_port(), "127.0.0.1:9".parse().unwrap())
    );
    std::fs::write(&cfg, text).unwrap();
    let o = Command::new(quorumlb_bin()).args(["validate", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("lb.toml:3:") && err.contains("token_file") && err.contains("gen-token"), "{err}");
    assert!(!err.contains("hunter2"), "the file's content must not be echoed: {err}");
    std::fs::remove_file(&tf).unwrap();
    let o = Command::new(quorumlb_bin()).args(["validate", "--config"]).arg(&cfg).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read token_file"), "{o:?}");
}
