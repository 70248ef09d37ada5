//! Request protection: a rate limit answers 429 with Retry-After past the burst
//! (per client); a slowloris client is cut after the header timeout while normal
//! clients are served; oversized heads get 431 and oversized bodies 413 (declared
//! length and chunked).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tests::client::{self, get};
use tests::{Proxy, TestBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(listener_extra: &str, route_extra: &str, backend: std::net::SocketAddr) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n{listener_extra}\n\
         [[listener.route]]\n  path_prefix = \"/sink\"\n  pool = \"p\"\n{route_extra}\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{backend}\"\n"
    )
}

#[tokio::test]
async fn requests_past_the_burst_get_429_with_retry_after() {
    let b = TestBackend::start("b1").await;
    let proxy = Proxy::start(&config(
        "client_header_timeout_ms = 5000\n  [listener.rate_limit]\n  requests_per_second = 1\n  burst = 5\n  key = \"header:x-api-key\"",
        "",
        b.addr,
    ))
    .await;
    let http = client::http1();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = client::get_with(&http, &proxy.url("/"), &[("x-api-key", "alice")]).await.unwrap();
        if r.status == 429 {
            let after: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
            assert!((1..=2).contains(&after), "Retry-After {after}");
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(&statuses[..5], &[200; 5], "the burst passes: {statuses:?}");
    assert!(statuses[5..].iter().all(|&s| s == 429), "past the burst: {statuses:?}");
    assert_eq!(b.hits(), 5, "refused requests never reach the backend");
    // Another key has its own bucket.
    let r = client::get_with(&http, &proxy.url("/"), &[("x-api-key", "bob")]).await.unwrap();
    assert_eq!(r.status, 200);
    // After a second, one more token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = client::get_with(&http, &proxy.url("/"), &[("x-api-key", "alice")]).await.unwrap();
    assert_eq!(r.status, 200);
    let text = proxy.dp.metrics().render();
    assert!(text.contains("quorumlb_http_rate_limited_total{listener=\"web\"} 3"), "{text}");
}

#[tokio::test]
async fn slowloris_is_cut_after_the_header_timeout_while_normal_clients_are_served() {
    let b = TestBackend::start("b1").await;
    let proxy = Proxy::start(&config("client_header_timeout_ms = 1000", "", b.addr)).await;
    let addr = proxy.addr;
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
        let start = Instant::now();
        // One header byte every 100 ms: never finishes the head.
        let line = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in line.iter().cycle().take(100) {
            if s.write_all(&[*byte]).await.is_err() {
                return start.elapsed();
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
                Ok(Ok(_)) => {
                    // A 408 answer; the close follows.
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                    return start.elapsed();
                }
                Err(_) => {}
            }
        }
        start.elapsed()
    });
    let http = client::http1();
    let mut served = 0;
    while !slow.is_finished() && served < 100 {
        let r = get(&http, &proxy.url("/")).await.unwrap();
        assert_eq!(r.status, 200);
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cut_after = slow.await.unwrap();
    assert!(
        cut_after >= Duration::from_millis(800) && cut_after < Duration::from_secs(3),
        "slow client cut after {cut_after:?}"
    );
    assert!(served >= 5, "normal clients were served meanwhile ({served})");
}

#[tokio::test]
async fn oversized_heads_get_431_and_oversized_bodies_get_413() {
    let b = TestBackend::start("b1").await;
    let proxy = Proxy::start(&config(
        "max_header_bytes = 8192\nmax_headers = 20\nmax_body_bytes = 100000",
        "  max_body_bytes = 1000",
        b.addr,
    ))
    .await;
    let http = client::http1();
    let big = "x".repeat(10_000);
    let r = client::get_with(&http, &proxy.url("/"), &[("x-big", &big)]).await.unwrap();
    assert_eq!(r.status, 431);
    let many: Vec<(String, String)> = (0..30).map(|i| (format!("x-h{i}"), "1".to_string())).collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = client::get_with(&http, &proxy.url("/"), &refs).await.unwrap();
    assert_eq!(r.status, 431);

    // Declared length over the route's limit: refused before the backend.
    let req =
        http::Request::post(proxy.url("/sink")).body(http_body_util::Full::new(Bytes::from(vec![b'a'; 2000]))).unwrap();
    assert_eq!(client::send(&http, req).await.unwrap().status, 413);
    // Under the limit passes.
    let req =
        http::Request::post(proxy.url("/sink")).body(http_body_util::Full::new(Bytes::from(vec![b'a'; 900]))).unwrap();
    let r = client::send(&http, req).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("900 "));
    // Other routes have the listener's larger limit.
    let req = http::Request::post(proxy.url("/echo"))
        .body(http_body_util::Full::new(Bytes::from(vec![b'a'; 50_000])))
        .unwrap();
    let r = client::send(&http, req).await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 50_000));

    // Chunked (no length): cut when the count passes the limit.
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let chunks =
        futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'z'; 500])))));
    let req = http::Request::post("/sink").header("host", "t").body(StreamBody::new(chunks)).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    let _ = resp.into_body().collect().await;
    let text = proxy.dp.metrics().render();
    assert!(text.contains("quorumlb_refused_total{listener=\"web\",reason=\"body_too_large\"} 2"), "{text}");
}
