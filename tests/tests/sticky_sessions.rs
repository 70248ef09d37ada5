//! Session affinity through the proxy: a signed cookie keeps one client on one
//! backend while a cookieless client spreads; a tampered cookie is ignored and
//! replaced; a cookie for a backend that went down falls back and is re-issued;
//! source-IP stickiness holds per client address and across a config reload.

use std::collections::HashSet;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tests::client::{self, get, get_with};
use tests::{Proxy, TestBackend, backend_blocks};

fn config(sticky: &str, backends: &str, secret: &std::path::Path) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\nalgorithm = \"round_robin\"\n  [pool.sticky]\n{sticky}\n  secret_file = \"{}\"\n{backends}",
        secret.display()
    )
}

fn secret() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sticky.key");
    std::fs::write(&path, "a-test-cookie-signing-key-of-32b\n").unwrap();
    (dir, path)
}

/// `name=value` of the Set-Cookie for `name`, if any.
fn set_cookie(r: &client::Reply, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

#[tokio::test]
async fn cookie_keeps_fifty_requests_on_one_backend_while_a_cookieless_client_spreads() {
    let b: Vec<TestBackend> =
        vec![TestBackend::start("b1").await, TestBackend::start("b2").await, TestBackend::start("b3").await];
    let (_d, key) = secret();
    let blocks = backend_blocks(&b.iter().collect::<Vec<_>>(), &[]);
    let proxy = Proxy::start(&config("  mode = \"cookie\"\n  name = \"SRV\"\n  ttl_s = 600", &blocks, &key)).await;
    let http = client::http1();

    let first = get(&http, &proxy.url("/")).await.unwrap();
    let cookie = set_cookie(&first, "SRV").expect("first response sets the sticky cookie");
    let raw = first.header("set-cookie").unwrap();
    for attr in ["Path=/", "Max-Age=600", "HttpOnly", "SameSite=Lax"] {
        assert!(raw.contains(attr), "{attr} missing in {raw}");
    }
    assert!(!raw.contains("Secure"), "no Secure flag on plain http: {raw}");
    let home = first.text();

    let mut sticky_backends = HashSet::new();
    let mut spread = HashSet::new();
    for _ in 0..50 {
        let r = get_with(&http, &proxy.url("/"), &[("cookie", &format!("other=1; {cookie}"))]).await.unwrap();
        assert_eq!(r.status, 200);
        sticky_backends.insert(r.text());
        let r = get(&http, &proxy.url("/")).await.unwrap();
        spread.insert(r.text());
    }
    assert_eq!(sticky_backends, HashSet::from([home]), "all 50 cookie requests on one backend");
    assert_eq!(spread.len(), 3, "the cookieless client is spread over all backends: {spread:?}");
}

#[tokio::test]
async fn tampered_cookie_is_not_honoured_and_down_backend_cookie_is_reissued() {
    let b: Vec<TestBackend> =
        vec![TestBackend::start("b1").await, TestBackend::start("b2").await, TestBackend::start("b3").await];
    let (_d, key) = secret();
    let blocks = backend_blocks(&b.iter().collect::<Vec<_>>(), &[]);
    let cfg = config("  mode = \"cookie\"\n  name = \"SRV\"", &blocks, &key);
    let proxy = Proxy::start(&cfg).await;
    let http = client::http1();

    // Learn the cookie of each backend.
    let mut by_backend = std::collections::HashMap::new();
    for _ in 0..6 {
        let r = get(&http, &proxy.url("/")).await.unwrap();
        by_backend.insert(r.text(), set_cookie(&r, "SRV").unwrap());
    }
    assert_eq!(by_backend.len(), 3);
    let c1 = by_backend["b1"].clone();
    let c2 = by_backend["b2"].clone();
    // Forge: b2's backend id with b1's expiry and tag.
    let (id2, _) = c2["SRV=".len()..].split_once('.').unwrap();
    let (_, rest1) = c1["SRV=".len()..].split_once('.').unwrap();
    let forged = format!("SRV={id2}.{rest1}");
    let mut seen = HashSet::new();
    for _ in 0..9 {
        let r = get_with(&http, &proxy.url("/"), &[("cookie", &forged)]).await.unwrap();
        assert!(set_cookie(&r, "SRV").is_some(), "a forged cookie is replaced by a valid one");
        seen.insert(r.text());
    }
    assert_eq!(seen.len(), 3, "a forged cookie does not pin a backend: {seen:?}");
    // Changing one character of the tag is refused too.
    let mut flipped = c1.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    let r = get_with(&http, &proxy.url("/"), &[("cookie", &flipped)]).await.unwrap();
    assert!(set_cookie(&r, "SRV").is_some());

    // b1 goes away (disabled by the operator): its cookie falls back to another
    // backend and a new cookie is issued; a reload keeps b2's cookie valid.
    let disabled = cfg.replace(
        &format!("address = \"{}\"\n", b[0].addr),
        &format!("address = \"{}\"\n  state = \"disabled\"\n", b[0].addr),
    );
    proxy.reload(&disabled).await;
    let r = get_with(&http, &proxy.url("/"), &[("cookie", &c1)]).await.unwrap();
    assert_ne!(r.text(), "b1");
    let reissued = set_cookie(&r, "SRV").expect("re-issued cookie");
    assert_ne!(reissued, c1);
    for _ in 0..5 {
        let again = get_with(&http, &proxy.url("/"), &[("cookie", &reissued)]).await.unwrap();
        assert_eq!(again.text(), r.text(), "the re-issued cookie sticks");
        let still = get_with(&http, &proxy.url("/"), &[("cookie", &c2)]).await.unwrap();
        assert_eq!(still.text(), "b2", "a cookie for a kept backend survives the reload");
    }
}

fn client_from(ip: &str) -> Client<HttpConnector, Full<Bytes>> {
    let mut c = HttpConnector::new();
    c.set_local_address(Some(ip.parse().unwrap()));
    Client::builder(TokioExecutor::new()).build(c)
}

#[tokio::test]
async fn source_ip_stickiness_holds_per_client_and_across_a_reload() {
    let b: Vec<TestBackend> =
        vec![TestBackend::start("b1").await, TestBackend::start("b2").await, TestBackend::start("b3").await];
    let (_d, key) = secret();
    let blocks = backend_blocks(&b.iter().collect::<Vec<_>>(), &[]);
    let cfg = config("  mode = \"source_ip\"\n  ttl_s = 60", &blocks, &key);
    let proxy = Proxy::start(&cfg).await;

    let mut homes = Vec::new();
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let c = client_from(ip);
        let mut seen = HashSet::new();
        for _ in 0..20 {
            let r = get(&c, &proxy.url("/headers")).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["x-real-ip"], ip);
            seen.insert(v["_backend"].as_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), 1, "client {ip} stays on one backend: {seen:?}");
        homes.push(seen.into_iter().next().unwrap());
    }
    // Round robin hands the three first requests to three different backends.
    assert_eq!(homes.iter().collect::<HashSet<_>>().len(), 3, "{homes:?}");

    // A reload that keeps the backends (and adds one) keeps every mapping.
    let extra = TestBackend::start("b4").await;
    let all = backend_blocks(&[&b[0], &b[1], &b[2], &extra], &[]);
    proxy.reload(&config("  mode = \"source_ip\"\n  ttl_s = 60", &all, &key)).await;
    for (ip, home) in ["127.0.0.1", "127.0.0.2", "127.0.0.3"].iter().zip(&homes) {
        let c = client_from(ip);
        for _ in 0..5 {
            assert_eq!(&get(&c, &proxy.url("/")).await.unwrap().text(), home, "{ip} after reload");
        }
    }
    assert_eq!(extra.hits(), 0, "sticky clients did not move to the new backend");
}
