//! Health: active checks take a backend out after `fall` failures and back after
//! `rise` successes; passive checks eject after max_fails; a failed connect is
//! retried on another backend; with every backend down the answer is 503 at once.

use std::time::{Duration, Instant};

use tests::client::{self, get};
use tests::{Proxy, TestBackend, backend_blocks};

fn config(extra: &str, blocks: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\nalgorithm = \"round_robin\"\n{extra}\n{blocks}"
    )
}

const ACTIVE: &str = "  [pool.health]\n  kind = \"http\"\n  path = \"/healthz\"\n  interval_ms = 100\n  timeout_ms = 100\n  rise = 2\n  fall = 2\n  expect_status = \"200\"\n";

async fn names(p: &Proxy, n: usize) -> Vec<String> {
    let c = client::http1();
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(get(&c, &p.url("/")).await.unwrap().text());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_check_takes_backend_out_and_back() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let p = Proxy::start(&config(ACTIVE, &backend_blocks(&[&a, &b], &[]))).await;
    assert!(names(&p, 4).await.contains(&"b".to_string()));

    b.set_healthy(false);
    let checks_at_down = b.health_checks.load(std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let gone = tests::wait_until(Duration::from_secs(3), || {
        b.health_checks.load(std::sync::atomic::Ordering::Relaxed) >= checks_at_down + 2
    })
    .await;
    assert!(gone, "health checks did not run");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hits = b.hits();
    assert!(names(&p, 10).await.iter().all(|n| n == "a"), "b still served after fall=2 failed checks");
    assert_eq!(b.hits(), hits);
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?} to go down", t.elapsed());

    b.set_healthy(true);
    let back = Instant::now();
    let mut returned = false;
    for _ in 0..100 {
        if names(&p, 2).await.contains(&"b".to_string()) {
            returned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(returned, "b did not come back after rise=2 good checks");
    assert!(back.elapsed() >= Duration::from_millis(100), "came back before two checks could run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_answers_503_at_once() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let p = Proxy::start(&config(ACTIVE, &backend_blocks(&[&a, &b], &[]))).await;
    a.set_healthy(false);
    b.set_healthy(false);
    let c = client::http1();
    let mut status = 0;
    for _ in 0..100 {
        status = get(&c, &p.url("/")).await.unwrap().status.as_u16();
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(status, 503);
    let t = Instant::now();
    let r = get(&c, &p.url("/")).await.unwrap();
    assert_eq!(r.status, 503);
    assert!(t.elapsed() < Duration::from_millis(200), "503 took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connect_is_retried_on_another_backend() {
    let a = TestBackend::start("a").await;
    // A port nothing listens on: connects are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let blocks = format!("{}  [[pool.backend]]\n  address = \"{dead_addr}\"\n", backend_blocks(&[&a], &[]));
    let p = Proxy::start(&config("", &blocks)).await;
    let got = names(&p, 10).await;
    assert!(got.iter().all(|n| n == "a"), "{got:?}");
    assert_eq!(a.hits(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_check_ejects_after_max_fails() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let passive = "retries = 0\n  [pool.passive]\n  max_fails = 2\n  fail_timeout_ms = 1500\n";
    let p = Proxy::start(&config(passive, &backend_blocks(&[&a, &b], &[]))).await;
    assert_eq!(names(&p, 2).await, ["a", "b"]);
    b.stop();
    // With retries = 0 the failures show as 502s until b is ejected.
    let c = client::http1();
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(get(&c, &p.url("/")).await.unwrap().status.as_u16());
    }
    let errors = codes.iter().filter(|c| **c == 502).count();
    assert_eq!(errors, 2, "exactly max_fails requests fail before ejection: {codes:?}");
    assert!(codes[codes.len() - 4..].iter().all(|c| *c == 200), "{codes:?}");
    // After fail_timeout b is tried again (and fails again, since it is still down).
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let later: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get(&c, &p.url("/")).await.unwrap().status.as_u16());
        }
        v
    };
    assert!(later.contains(&502), "b should be retried after fail_timeout: {later:?}");
}
