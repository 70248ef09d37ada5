//! The proxy's HTTP behaviour: streaming of large bodies in both directions without
//! buffering (checked on the real binary's memory), HTTP/2 cleartext clients,
//! forwarding headers, hop-by-hop removal, timeouts and WebSocket upgrades.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tests::backend::pattern_chunk;
use tests::client::{self, get, get_with};
use tests::{NodeProcess, Proxy, TestBackend, backend_blocks};

fn config(extra: &str, blocks: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\n{extra}\n{blocks}"
    )
}

const MIB: u64 = 1 << 20;

fn pattern_sha(total: u64) -> String {
    let mut h = Sha256::new();
    let mut off = 0;
    while off < total {
        let n = (64 * 1024).min(total - off);
        h.update(pattern_chunk(off, n as usize));
        off += n;
    }
    hex::encode(h.finalize())
}

/// Uploads `total` pattern bytes as a streamed (chunked) body to `/sink`.
async fn upload(addr: std::net::SocketAddr, total: u64) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let body = StreamBody::new(futures_util::stream::unfold(0u64, move |off| async move {
        if off >= total {
            return None;
        }
        let n = (64 * 1024).min(total - off);
        Some((Ok::<_, std::io::Error>(Frame::data(pattern_chunk(off, n as usize))), off + n))
    }));
    let req = http::Request::post("/sink").header("host", "t").body(body).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// Downloads `/big` and returns (length, sha256).
async fn download(addr: std::net::SocketAddr, total: u64) -> (u64, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("/big?bytes={total}"))
        .header("host", "t")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let mut body = resp.into_body();
    let mut h = Sha256::new();
    let mut len = 0u64;
    while let Some(f) = body.frame().await {
        if let Some(d) = f.unwrap().data_ref() {
            len += d.len() as u64;
            h.update(d);
        }
    }
    (len, hex::encode(h.finalize()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_streams_both_ways_without_growing_memory() {
    let b = TestBackend::start("big").await;
    let port = tests::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = config("", &backend_blocks(&[&b], &[])).replace("{bind}", &addr.to_string());
    let mut node = NodeProcess::start(&text);
    node.wait_listening(addr, Duration::from_secs(20));
    // Warm up (allocator arenas, connection pool) before the baseline.
    assert_eq!(download(addr, MIB).await.0, MIB);
    let base = node.rss_kib();

    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(base));
    let (pk, pid) = (peak.clone(), node.pid());
    let sampler = std::thread::spawn(move || {
        for _ in 0..3000 {
            let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rss = s
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            pk.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
            if STOP.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let total = 100 * MIB;
    let (up, down) = tokio::join!(upload(addr, total), download(addr, total));
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let want = pattern_sha(total);
    assert_eq!(up, format!("{total} {want}"), "upload arrived changed");
    assert_eq!(down, (total, want), "download arrived changed");
    let growth = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(base);
    eprintln!("proxy RSS baseline {base} KiB, peak growth {growth} KiB while moving 200 MiB");
    assert!(growth < 24 * 1024, "proxy memory grew by {growth} KiB while streaming 2 x 100 MiB");
}

/// Tells the memory sampler thread to stop.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_client_is_proxied_to_http1_backend() {
    let b = TestBackend::start("h2").await;
    let p = Proxy::start(&config("", &backend_blocks(&[&b], &[]))).await;
    let c = client::http2();
    let r = get(&c, &p.url("/headers?x=1")).await.unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["_version"], "HTTP/1.1");
    assert_eq!(v["_uri"], "/headers?x=1");
    assert_eq!(v["host"], p.addr.to_string());
    // Many concurrent streams on one connection.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (c, url) = (c.clone(), p.url(&format!("/n{i}")));
        tasks.push(tokio::spawn(async move { get(&c, &url).await.unwrap().status.as_u16() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_hop_by_hop_removed() {
    let b = TestBackend::start("hdr").await;
    let p = Proxy::start(&config("", &backend_blocks(&[&b], &[]))).await;
    let c = client::http1();
    let r = get_with(
        &c,
        &p.url("/headers"),
        &[
            ("host", "shop.example.com"),
            ("x-forwarded-for", "203.0.113.9"),
            ("connection", "x-drop-me"),
            ("x-drop-me", "secret"),
            ("te", "trailers"),
            ("x-keep", "yes"),
        ],
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(v["x-real-ip"], "127.0.0.1");
    assert_eq!(v["x-forwarded-proto"], "http");
    assert_eq!(v["x-forwarded-host"], "shop.example.com");
    assert_eq!(v["host"], "shop.example.com");
    assert_eq!(v["x-keep"], "yes");
    assert!(v.get("x-drop-me").is_none() && v.get("te").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_gets_504_and_keepalive_connections_are_reused() {
    let b = TestBackend::start("slow").await;
    let p = Proxy::start(&config("response_timeout_ms = 300", &backend_blocks(&[&b], &[]))).await;
    let c = client::http1();
    let t = std::time::Instant::now();
    let r = get(&c, &p.url("/?sleep_ms=2000")).await.unwrap();
    assert_eq!(r.status, 504);
    assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
    // Sequential requests reuse one upstream connection: the backend sees one peer.
    let mut peers = std::collections::HashSet::new();
    for _ in 0..5 {
        let r = get(&c, &p.url("/headers")).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        peers.insert(v["_peer"].as_str().unwrap().to_string());
    }
    assert_eq!(peers.len(), 1, "upstream keep-alive not reused: {peers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_gives_502_with_short_body() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let blocks = format!("  [[pool.backend]]\n  address = \"{dead_addr}\"\n");
    let p = Proxy::start(&config("", &blocks)).await;
    let r = get(&client::http1(), &p.url("/")).await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "502 Bad Gateway\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = TestBackend::start("ws").await;
    let p = Proxy::start(&config("", &backend_blocks(&[&b], &[]))).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte)).await.unwrap().unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    s.write_all(b"ping over the tunnel").await.unwrap();
    let mut buf = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"ping over the tunnel");
}
