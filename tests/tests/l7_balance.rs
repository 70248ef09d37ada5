//! Balancing through the real proxy: exact sequences for round robin and smooth
//! weighted round robin, skew for least_time and least_conn, stability and
//! bounded movement for the hashes.

use std::collections::HashMap;
use std::time::Duration;

use tests::client::{self, get, get_with};
use tests::{Proxy, TestBackend, backend_blocks};

fn config(algorithm: &str, extra: &str, blocks: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\nalgorithm = \"{algorithm}\"\n{extra}\n{blocks}"
    )
}

async fn sequence(proxy: &Proxy, n: usize) -> Vec<String> {
    let c = client::http1();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(&c, &proxy.url("/")).await.unwrap().text());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_visits_backends_in_order() {
    let (a, b, c) = (TestBackend::start("a").await, TestBackend::start("b").await, TestBackend::start("c").await);
    let p = Proxy::start(&config("round_robin", "", &backend_blocks(&[&a, &b, &c], &[]))).await;
    assert_eq!(sequence(&p, 6).await, ["a", "b", "c", "a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_interleaves() {
    let (a, b, c) = (TestBackend::start("a").await, TestBackend::start("b").await, TestBackend::start("c").await);
    let p = Proxy::start(&config("weighted_round_robin", "", &backend_blocks(&[&a, &b, &c], &[5, 1, 1]))).await;
    assert_eq!(sequence(&p, 7).await, ["a", "a", "b", "a", "c", "a", "a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_time_prefers_the_fast_backend() {
    let (fast, slow) = (TestBackend::start("fast").await, TestBackend::start("slow").await);
    slow.set_delay(Duration::from_millis(40));
    let p = Proxy::start(&config("least_time", "", &backend_blocks(&[&fast, &slow], &[]))).await;
    let seq = sequence(&p, 60).await;
    let fast_n = seq.iter().filter(|s| *s == "fast").count();
    assert!(fast_n >= 45, "fast got {fast_n} of 60: {seq:?}");
    assert!(slow.hits() >= 1, "the slow backend was never measured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_avoids_the_busy_backend() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let p = Proxy::start(&config("least_conn", "", &backend_blocks(&[&a, &b], &[]))).await;
    // Four slow requests in flight: least_conn spreads them 2/2.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let url = p.url("/?sleep_ms=1500");
        slow.push(tokio::spawn(async move { get(&client::http1(), &url).await.unwrap().text() }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((a.hits(), b.hits()), (2, 2));
    // Now make a's requests finish quickly and b's hang: hold 3 more on b.
    let mut done = Vec::new();
    for s in slow {
        done.push(s.await.unwrap());
    }
    done.sort();
    assert_eq!(done, ["a", "a", "b", "b"]);
    // b turns slow: once one request is stuck there, every following quick
    // request must go to a (fewer active connections).
    b.set_delay(Duration::from_millis(1500));
    let (a0, b0) = (a.hits(), b.hits());
    let mut held = Vec::new();
    for _ in 0..6 {
        let url = p.url("/");
        held.push(tokio::spawn(async move { get(&client::http1(), &url).await.unwrap().text() }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.hits() - b0, 1, "b should hold exactly one request, a the rest");
    assert_eq!(a.hits() - a0, 5);
    for h in held {
        h.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reaches_every_backend() {
    let (a, b, c) = (TestBackend::start("a").await, TestBackend::start("b").await, TestBackend::start("c").await);
    let p = Proxy::start(&config("random", "", &backend_blocks(&[&a, &b, &c], &[]))).await;
    let seq = sequence(&p, 150).await;
    for name in ["a", "b", "c"] {
        let n = seq.iter().filter(|s| *s == name).count();
        assert!((20..=80).contains(&n), "{name} got {n} of 150");
    }
}

async fn key_map(p: &Proxy, keys: &[String]) -> HashMap<String, String> {
    let c = client::http1();
    let mut m = HashMap::new();
    for k in keys {
        let r = get_with(&c, &p.url("/"), &[("x-user", k)]).await.unwrap();
        m.insert(k.clone(), r.text());
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_is_stable_and_moves_about_one_nth() {
    let bs = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
        TestBackend::start("d").await,
    ];
    let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let three =
        config("consistent_hash", "hash_key = \"header:x-user\"", &backend_blocks(&[&bs[0], &bs[1], &bs[2]], &[]));
    let p = Proxy::start(&three).await;
    let before = key_map(&p, &keys).await;
    assert_eq!(before, key_map(&p, &keys).await, "same key must map to the same backend");
    for name in ["a", "b", "c"] {
        let n = before.values().filter(|v| *v == name).count();
        assert!(n > 60, "{name} got only {n} of 400 keys");
    }
    // Add a fourth backend: about 1/4 of the keys move, all of them to it.
    p.reload(&config(
        "consistent_hash",
        "hash_key = \"header:x-user\"",
        &backend_blocks(&bs.iter().collect::<Vec<_>>(), &[]),
    ))
    .await;
    let after = key_map(&p, &keys).await;
    let moved: Vec<_> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    let frac = moved.len() as f64 / keys.len() as f64;
    assert!(frac > 0.10 && frac < 0.40, "moved fraction {frac}");
    assert!(moved.iter().all(|k| after[*k] == "d"), "a moved key went somewhere other than the new backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_keeps_a_source_address_on_one_backend() {
    let (a, b, c) = (TestBackend::start("a").await, TestBackend::start("b").await, TestBackend::start("c").await);
    let p = Proxy::start(&config("ip_hash", "", &backend_blocks(&[&a, &b, &c], &[]))).await;
    // Connect from different loopback source addresses (all of 127/8 is local).
    let mut chosen = HashMap::new();
    for i in 2..40u8 {
        let src = std::net::IpAddr::from([127, 0, 0, i]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(raw_get_from(src, p.addr).await);
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "source {src} moved: {seen:?}");
        chosen.insert(src, seen[0].clone());
    }
    let distinct: std::collections::HashSet<_> = chosen.values().collect();
    assert_eq!(distinct.len(), 3, "38 sources should reach all 3 backends: {chosen:?}");
}

/// One HTTP/1.1 GET over a socket bound to `src`; returns the body.
async fn raw_get_from(src: std::net::IpAddr, to: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind((src, 0).into()).unwrap();
    let mut s = sock.connect(to).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf);
    text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}
