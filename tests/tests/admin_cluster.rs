//! The admin API served by a real single-node cluster (the `quorumlb` binary):
//! unauthenticated /healthz, 401 without credentials, login as the bootstrap admin,
//! cluster view, config replacement (422 with line numbers, then a new pool served by
//! the proxy listener), drain through the API, and the bootstrap password never in
//! the log.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tests::client::{self, Http, Reply, get, send};
use tests::{NodeProcess, TestBackend, free_port};

const PASSWORD: &str = "correct-horse-battery-staple-42";

fn cluster_cfg(web: u16, backend: SocketAddr) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{web}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{backend}\"\n"
    )
}

async fn request(c: &Http, method: &str, url: &str, headers: &[(&str, &str)], body: Option<String>) -> Reply {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.unwrap_or_default()))).expect("request");
    send(c, req).await.expect("admin request")
}

async fn wait_answer(addr: SocketAddr, want: &str, within: Duration) -> bool {
    let c = client::http1();
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let url = format!("http://{addr}/");
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), get(&c, &url)).await
            && r.text() == want
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_a_cluster_member() {
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let (cluster_port, admin_port, web_port) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "an-admin-test-cluster-secret-of-enough-length-0123456789").expect("secret");
    let pw_file = dir.path().join("admin-password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("password file");
    let file = format!(
        "[node]\nid = 1\nname = \"lb-one\"\ndata_dir = \"{}\"\ncluster_listen = \"127.0.0.1:{cluster_port}\"\n\n\
         [cluster]\nsecret_file = \"{}\"\npeers = [ {{ id = 1, address = \"127.0.0.1:{cluster_port}\" }} ]\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\nbootstrap_password_file = \"{}\"\n\n{}",
        dir.path().join("n1").display(),
        secret.display(),
        pw_file.display(),
        cluster_cfg(web_port, b1.addr)
    );
    let mut node = NodeProcess::start(&file);
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let web: SocketAddr = format!("127.0.0.1:{web_port}").parse().expect("addr");
    node.wait_listening(admin, Duration::from_secs(20));
    assert!(wait_answer(web, "b1", Duration::from_secs(10)).await, "seeded pool not served; log:\n{}", node.log());

    let c = client::http1();
    let base = format!("http://{admin}");

    // /healthz without auth (ready once a leader exists).
    let mut ok = false;
    for _ in 0..100 {
        if get(&c, &format!("{base}/healthz")).await.expect("healthz").status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "/healthz never 200; log:\n{}", node.log());

    // No credentials: 401.
    assert_eq!(get(&c, &format!("{base}/api/v1/cluster")).await.expect("cluster").status, 401);

    // Wrong password refused, right one accepted.
    let bad = request(
        &c,
        "POST",
        &format!("{base}/api/v1/session"),
        &[],
        Some(serde_json::json!({"username": "admin", "password": "wrong"}).to_string()),
    )
    .await;
    assert_eq!(bad.status, 401, "{}", bad.text());
    let login = request(
        &c,
        "POST",
        &format!("{base}/api/v1/session"),
        &[],
        Some(serde_json::json!({"username": "admin", "password": PASSWORD}).to_string()),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text());
    let cookie = login.header("set-cookie").expect("session cookie");
    let cookie = cookie.split(';').next().expect("cookie pair").to_string();
    let info: serde_json::Value = serde_json::from_slice(&login.body).expect("session json");
    let csrf = info["csrf_token"].as_str().expect("csrf").to_string();
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];

    // Cluster view: node 1 leads.
    let r = request(&c, "GET", &format!("{base}/api/v1/cluster"), &auth, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let view: serde_json::Value = serde_json::from_slice(&r.body).expect("cluster json");
    assert_eq!(view["node_id"], 1);
    assert_eq!(view["leader"], 1, "{view}");
    assert_eq!(view["nodes"][0]["raft_state"], "leader", "{view}");
    assert_eq!(view["nodes"][0]["name"], "lb-one", "{view}");

    let r = request(&c, "GET", &format!("{base}/api/v1/config"), &auth, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc: serde_json::Value = serde_json::from_slice(&r.body).expect("config json");
    let v1 = doc["version"].as_u64().expect("version");
    assert!(doc["toml"].as_str().expect("toml").contains("[[pool]]"));

    // A bad config: 422 with line numbers; nothing applied.
    let bad_cfg = format!("{}\n[[pool]]\nname = \"q\"\nalgorithm = \"bogus\"\n", cluster_cfg(web_port, b1.addr));
    let r = request(
        &c,
        "PUT",
        &format!("{base}/api/v1/config"),
        &auth,
        Some(serde_json::json!({"toml": bad_cfg}).to_string()),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("\"line\""), "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("error json");
    assert!(body.to_string().contains("bogus"), "{body}");
    assert!(
        body.to_string().contains("\"line\":") && !body.to_string().contains("\"line\":0"),
        "problems carry lines: {body}"
    );

    // A good one: version bumps, the listener serves the new pool.
    let good = cluster_cfg(web_port, b2.addr);
    let r = request(
        &c,
        "PUT",
        &format!("{base}/api/v1/config"),
        &auth,
        Some(serde_json::json!({"toml": good, "comment": "switch to b2"}).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ack: serde_json::Value = serde_json::from_slice(&r.body).expect("ack json");
    assert!(ack["config_version"].as_u64().expect("version") > v1, "{ack}");
    assert!(wait_answer(web, "b2", Duration::from_secs(10)).await, "new pool not served; log:\n{}", node.log());

    // Drain b2 through the API; the pool view shows it.
    let addr = b2.addr.to_string();
    let r = request(&c, "POST", &format!("{base}/api/v1/pools/p/backends/{addr}/drain"), &auth, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(&c, "GET", &format!("{base}/api/v1/pools"), &auth, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pools: serde_json::Value = serde_json::from_slice(&r.body).expect("pools json");
    let backend = &pools[0]["backends"][0];
    assert_eq!(backend["address"], addr.as_str(), "{pools}");
    assert_eq!(backend["admin_state"], "draining", "{pools}");

    // Writes with the cookie but no CSRF header are refused.
    let r = request(&c, "POST", &format!("{base}/api/v1/pools/p/backends/{addr}/enable"), &auth[..1], None).await;
    assert_eq!(r.status, 403, "{}", r.text());

    // Operational endpoints on the admin listener.
    let r = request(&c, "GET", &format!("{base}/metrics"), &auth, None).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let log = node.log();
    assert!(log.contains("bootstrap admin user created"), "{log}");
    assert!(!log.contains(PASSWORD), "the bootstrap password leaked into the log");
    assert!(!log.contains("$argon2"), "a password hash leaked into the log");
}
