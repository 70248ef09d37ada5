//! SIGTERM on the real binary: new connections are refused at once, requests in
//! flight complete, and the process exits 0 within `shutdown_grace_ms`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tests::client::{self, get};
use tests::{NodeProcess, TestBackend, free_port};

#[tokio::test]
async fn sigterm_with_requests_in_flight_completes_them() {
    let b = TestBackend::start("b1").await;
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = format!(
        "[runtime]\nshutdown_grace_ms = 10000\n\
         [[listener]]\nname = \"web\"\nbind = \"{bind}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        b.addr
    );
    let mut node = NodeProcess::start(&cfg);
    node.wait_listening(bind, Duration::from_secs(20));

    let mut inflight = Vec::new();
    for _ in 0..6 {
        inflight.push(tokio::spawn(async move {
            // A fresh client per request: each its own connection.
            let http = client::http1();
            get(&http, &format!("http://{bind}/slow?sleep_ms=1500")).await
        }));
    }
    assert!(tests::wait_until(Duration::from_secs(5), || b.hits() == 6).await, "all requests reached the backend");
    let t0 = Instant::now();
    node.signal(Signal::SIGTERM);
    // New connections are no longer accepted.
    let refused = tests::wait_until(Duration::from_secs(2), || std::net::TcpStream::connect(bind).is_err()).await;
    assert!(refused, "listener still accepting after SIGTERM");

    for h in inflight {
        let r = h.await.unwrap().expect("in-flight request completed");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "b1");
    }
    let code = node.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "log:\n{}", node.log());
    assert!(t0.elapsed() < Duration::from_secs(8), "exited well within the grace period");
    assert!(node.log().contains("all connections finished"), "{}", node.log());
}

/// Reads one HTTP/1.1 response head and its content-length body from `s`; returns
/// the head (lower-cased) or None if the connection closed before any byte.
async fn read_response(s: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(head);
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The drain a leaving VIP owner runs before it hands the VIP over: an idle
/// keep-alive connection is closed at once, a busy one gets its response (with
/// `connection: close`) and is closed after it, and the drain returns when none
/// is left, not at its bound.
#[tokio::test]
async fn drain_closes_idle_connections_at_once_and_busy_ones_after_their_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = TestBackend::start("b1").await;
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = format!(
        "[[listener]]\nname = \"web\"\nbind = \"{bind}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        b.addr
    );
    let cfg = quorumlb::config::Config::parse(&cfg, "<test>").expect("config");
    let dp = quorumlb::proxy::DataPlane::start(std::sync::Arc::new(cfg)).await.expect("data plane");

    // Idle: one request answered, connection kept open.
    let mut idle = tokio::net::TcpStream::connect(bind).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let head = read_response(&mut idle).await.expect("first answer");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // Busy: a request the backend holds for 800 ms.
    let mut busy = tokio::net::TcpStream::connect(bind).await.unwrap();
    busy.write_all(b"GET /slow?sleep_ms=800 HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    assert!(tests::wait_until(Duration::from_secs(5), || b.hits() == 2).await, "slow request reached the backend");
    assert_eq!(dp.http_connections(), 2);

    let t0 = Instant::now();
    let drain = {
        let dp = std::sync::Arc::clone(&dp);
        tokio::spawn(async move { dp.drain(Duration::from_secs(5)).await })
    };
    // The idle one is closed without waiting for the busy one.
    let mut one = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_millis(500), idle.read(&mut one)).await;
    assert!(matches!(n, Ok(Ok(0))), "idle keep-alive connection not closed at once: {n:?}");
    // The busy one gets its full answer, marked as the last on this connection.
    let head = tokio::time::timeout(Duration::from_secs(3), read_response(&mut busy))
        .await
        .expect("busy answer in time")
        .expect("busy request answered, not cut");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "no `connection: close` on the last response: {head}");
    let n = tokio::time::timeout(Duration::from_millis(500), busy.read(&mut one)).await;
    assert!(matches!(n, Ok(Ok(0))), "busy connection not closed after its response: {n:?}");

    let left = drain.await.unwrap();
    assert_eq!(left, 0, "connections left after the drain");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(600), "drain returned before the busy response: {took:?}");
    assert!(took < Duration::from_secs(3), "drain waited for its bound instead of the last connection: {took:?}");
    assert!(std::net::TcpStream::connect(bind).is_err(), "still accepting new connections after the drain");
    dp.shutdown(Duration::from_secs(1)).await;
}
