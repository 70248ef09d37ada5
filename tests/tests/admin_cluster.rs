//! The admin API served by a real single-node cluster (the `quorumlb` binary):
//! unauthenticated /healthz, 401 without credentials, login as the bootstrap admin,
//! cluster view, config replacement (422 with line numbers, then a new pool served by
//! the proxy listener), drain through the API, and the bootstrap password never in
//! the log. Also: per-backend latency percentiles from real traffic (a slow and a
//! fast backend, in the pool view and the SSE stats), and the admin listener over
//! https with `[admin] tls` (plain http refused, the session cookie `Secure`).

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
    match tokio::time::timeout(Duration::from_secs(15), send(c, req)).await {
        Ok(r) => r.expect("admin request"),
        Err(_) => panic!("{method} {url}: no answer within 15 s"),
    }
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

/// A one-node cluster file: `[admin]` gets `admin_extra` lines, then `cluster` text.
fn single_node_file(
    dir: &std::path::Path,
    cluster_port: u16,
    admin_port: u16,
    admin_extra: &str,
    cluster: &str,
) -> String {
    let secret = dir.join("secret");
    std::fs::write(&secret, "an-admin-test-cluster-secret-of-enough-length-0123456789").expect("secret");
    let pw_file = dir.join("admin-password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("password file");
    format!(
        "[node]\nid = 1\nname = \"lb-one\"\ndata_dir = \"{}\"\ncluster_listen = \"127.0.0.1:{cluster_port}\"\n\n\
         [cluster]\nsecret_file = \"{}\"\npeers = [ {{ id = 1, address = \"127.0.0.1:{cluster_port}\" }} ]\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\nbootstrap_password_file = \"{}\"\n{admin_extra}\n\n{cluster}",
        dir.join("n1").display(),
        secret.display(),
        pw_file.display(),
    )
}

/// Logs in as the bootstrap admin over plain http; returns cookie and CSRF headers.
async fn login(c: &Http, base: &str) -> Vec<(String, String)> {
    let body = serde_json::json!({"username": "admin", "password": PASSWORD}).to_string();
    let mut last = String::new();
    // The leader may still be settling right after start: bounded retries.
    for _ in 0..50 {
        let r = request(c, "POST", &format!("{base}/api/v1/session"), &[], Some(body.clone())).await;
        if r.status == 200 {
            let cookie = r.header("set-cookie").expect("session cookie");
            let cookie = cookie.split(';').next().expect("cookie pair").to_string();
            let info: serde_json::Value = serde_json::from_slice(&r.body).expect("session json");
            let csrf = info["csrf_token"].as_str().expect("csrf").to_string();
            return vec![("cookie".into(), cookie), ("x-csrf-token".into(), csrf)];
        }
        last = format!("{} {}", r.status, r.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("login never succeeded: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_view_shows_real_latency_percentiles_per_backend() {
    let slow = TestBackend::start("slow").await;
    slow.set_delay(Duration::from_millis(50));
    let fast = TestBackend::start("fast").await;
    let (cluster_port, admin_port, web_port) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{web_port}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\nalgorithm = \"round_robin\"\n  [[pool.backend]]\n  address = \"{}\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        slow.addr, fast.addr
    );
    let mut node = NodeProcess::start(&single_node_file(dir.path(), cluster_port, admin_port, "", &cluster));
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let web: SocketAddr = format!("127.0.0.1:{web_port}").parse().expect("addr");
    node.wait_listening(admin, Duration::from_secs(20));
    node.wait_listening(web, Duration::from_secs(20));

    // 40 requests, round robin: 20 to each backend.
    let c = client::http1();
    for i in 0..40 {
        let r = get(&c, &format!("http://{web}/r{i}")).await.expect("proxied request");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(slow.hits() >= 15 && fast.hits() >= 15, "slow {} fast {}", slow.hits(), fast.hits());

    let base = format!("http://{admin}");
    let auth = login(&c, &base).await;
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = request(&c, "GET", &format!("{base}/api/v1/pools/p"), &auth, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pool: serde_json::Value = serde_json::from_slice(&r.body).expect("pool json");
    let lat = |addr: SocketAddr, q: &str| -> f64 {
        let b = pool["backends"].as_array().expect("backends").iter().find(|b| b["address"] == addr.to_string());
        b.and_then(|b| b["latency"][q].as_f64()).unwrap_or_else(|| panic!("no {q} for {addr}: {pool}"))
    };
    let (slow_p50, slow_p99, fast_p50, fast_p99) =
        (lat(slow.addr, "p50_ms"), lat(slow.addr, "p99_ms"), lat(fast.addr, "p50_ms"), lat(fast.addr, "p99_ms"));
    println!(
        "slow backend p50 {slow_p50:.2} ms p99 {slow_p99:.2} ms; fast backend p50 {fast_p50:.2} ms p99 {fast_p99:.2} ms"
    );
    assert!(slow_p50 >= 40.0, "slow backend p50 {slow_p50} ms: {pool}");
    assert!(slow_p99 >= slow_p50, "{pool}");
    assert!(fast_p50 > 0.0 && fast_p50 < 10.0, "fast backend p50 {fast_p50} ms: {pool}");
    let samples = |addr: SocketAddr| {
        pool["backends"].as_array().expect("backends").iter().find(|b| b["address"] == addr.to_string()).expect("b")
            ["latency"]["samples"]
            .as_u64()
            .expect("samples")
    };
    assert_eq!(samples(slow.addr) + samples(fast.addr), 40, "{pool}");
    // The pool's own percentiles mix both: half the requests are slow.
    let pool_p99 = pool["latency"]["p99_ms"].as_f64().expect("pool p99");
    assert!(pool_p99 >= 40.0, "pool p99 {pool_p99}: {pool}");

    // The SSE stats stream carries the same pool p99 (the dashboard's chart).
    let mut b = Request::get(format!("{base}/api/v1/events"));
    for (k, v) in &auth {
        b = b.header(*k, *v);
    }
    let resp = c.request(b.body(Full::new(Bytes::new())).expect("request")).await.expect("events");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let sse_p99 = loop {
        let frame = tokio::time::timeout_at(deadline, http_body_util::BodyExt::frame(&mut body)).await;
        let Ok(Some(Ok(frame))) = frame else { panic!("no stats event within 10 s; got:\n{text}") };
        if let Some(d) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(d));
        }
        let found = text.lines().filter_map(|l| l.strip_prefix("data:")).find_map(|d| {
            let v: serde_json::Value = serde_json::from_str(d.trim()).ok()?;
            v["pools"].as_array()?.iter().find(|p| p["pool"] == "p")?["p99_ms"].as_f64()
        });
        if let Some(p99) = found {
            break p99;
        }
    };
    println!("SSE stats: pool p99 {sse_p99:.2} ms");
    assert!(sse_p99 >= 40.0, "SSE p99 {sse_p99}; stream:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_with_tls_serves_https_only() {
    let b1 = TestBackend::start("b1").await;
    let (cluster_port, admin_port, web_port) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = tests::tls::TestCa::new();
    let (cert, key) = ca.issue(&["admin.lb.test", "127.0.0.1"]).write(dir.path(), "admin");
    let tls_line = format!("tls = {{ cert_file = \"{}\", key_file = \"{}\" }}", cert.display(), key.display());
    let file = single_node_file(dir.path(), cluster_port, admin_port, &tls_line, &cluster_cfg(web_port, b1.addr));
    let mut node = NodeProcess::start(&file);
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    node.wait_listening(admin, Duration::from_secs(20));

    // One https request on a fresh TLS connection trusting the test CA.
    let https = |method: &'static str, path: String, headers: Vec<(String, String)>, body: String| {
        let cfg = ca.client_config();
        async move {
            let tls = tests::tls::connect(cfg, admin, "admin.lb.test").await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            let mut b = Request::builder().method(method).uri(path).header("host", "admin.lb.test");
            for (k, v) in &headers {
                b = b.header(k.as_str(), v.as_str());
            }
            if !body.is_empty() {
                b = b.header("content-type", "application/json");
            }
            let resp = sender.send_request(b.body(Full::new(Bytes::from(body)))?).await?;
            let (parts, body) = resp.into_parts();
            let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
            anyhow::Ok(Reply { status: parts.status, headers: parts.headers, body })
        }
    };
    let mut healthy = false;
    for _ in 0..100 {
        if https("GET", "/healthz".into(), vec![], String::new()).await.is_ok_and(|r| r.status == 200) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "https /healthz never 200; log:\n{}", node.log());

    let login_body = serde_json::json!({"username": "admin", "password": PASSWORD}).to_string();
    let r = https("POST", "/api/v1/session".into(), vec![], login_body).await.expect("https login");
    assert_eq!(r.status, 200, "{}", r.text());
    let set_cookie = r.header("set-cookie").expect("session cookie");
    println!("Set-Cookie over https: {}", set_cookie.split(';').skip(1).collect::<Vec<_>>().join(";"));
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().expect("cookie pair").to_string();
    let r = https("GET", "/api/v1/cluster".into(), vec![("cookie".into(), cookie)], String::new())
        .await
        .expect("https cluster");
    assert_eq!(r.status, 200, "{}", r.text());
    let view: serde_json::Value = serde_json::from_slice(&r.body).expect("cluster json");
    assert_eq!(view["leader"], 1, "{view}");

    // Plain http to the same port gets no HTTP answer.
    let plain = tokio::time::timeout(Duration::from_secs(5), get(&client::http1(), &format!("http://{admin}/healthz")))
        .await
        .expect("plain http request finished");
    assert!(plain.is_err(), "plain http was answered: {:?}", plain.map(|r| r.status));
    // Nor does a client that does not trust the certificate.
    let stranger = tests::tls::TestCa::new().client_config();
    assert!(tests::tls::connect(stranger, admin, "admin.lb.test").await.is_err(), "untrusted handshake succeeded");

    // ctl over https: trusts only --ca-file, checks the name (here the IP SAN).
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("ca file");
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, tests::tls::TestCa::new().cert_pem()).expect("other ca file");
    let pw = dir.path().join("admin-password");
    let ctl = |url: String, ca: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(tests::quorumlb_bin());
        cmd.args(["ctl", "--admin", &url, "--user", "admin", "--password-file"]).arg(&pw);
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        let t = std::time::Instant::now();
        let o = cmd.arg("status").output().expect("run ctl");
        println!("ctl --admin {url} (ca {}): exit {:?} after {:?}", ca.is_some(), o.status.code(), t.elapsed());
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let (ok, out) = ctl(format!("https://{admin}"), Some(&ca_file));
    assert!(ok && out.contains("lb-one"), "ctl over https: {out}");
    let (ok, out) = ctl(format!("https://{admin}"), None);
    assert!(!ok && out.contains("--ca-file"), "https without --ca-file: {out}");
    let (ok, out) = ctl(format!("https://{admin}"), Some(&other_ca));
    assert!(!ok && out.contains("TLS handshake"), "https with the wrong CA: {out}");
    let (ok, out) = ctl(format!("http://{admin}"), None);
    assert!(!ok, "plain http ctl succeeded: {out}");
}
