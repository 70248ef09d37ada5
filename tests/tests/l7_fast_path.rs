//! The HTTP/1.1 fast path on plain http listeners, spoken to with raw sockets:
//! pipelining, HTTP/1.0 and HEAD semantics, chunked upstream bodies, the hand-off
//! to hyper for a request body in the middle of a connection, refusals of bad
//! heads, the keep-alive idle timeout, graceful shutdown, and the memory an idle
//! keep-alive connection holds.

use std::time::{Duration, Instant};

use tests::backend::pattern_chunk;
use tests::{Proxy, TestBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(listener_extra: &str, backend: std::net::SocketAddr) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n{listener_extra}\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{backend}\"\n"
    )
}

/// One response as read off the wire.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads HTTP/1.1 responses from a socket, keeping bytes past the current one.
struct Reader {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    fn new(s: TcpStream) -> Self {
        Reader { s, buf: Vec::new() }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.s.write_all(raw).await.unwrap();
    }

    /// More bytes into `buf`; false at EOF. Bounded by 5 s.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut chunk))
            .await
            .expect("response within 5 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..i].to_vec()).unwrap();
                self.buf.drain(..i + 2);
                return line;
            }
            assert!(self.fill().await, "EOF inside a response head or chunk line");
        }
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "EOF inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// The next response; `head` = the request was HEAD (no body follows).
    async fn response(&mut self, head: bool) -> Resp {
        let status_line = self.line().await;
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let mut headers = Vec::new();
        loop {
            let l = self.line().await;
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header line");
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut r = Resp { status, headers, body: Vec::new() };
        if head || status == 204 || status == 304 {
            return r;
        }
        if let Some(n) = r.header("content-length") {
            let n: usize = n.parse().unwrap();
            r.body = self.exact(n).await;
        } else if r.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).unwrap();
                let data = self.exact(size).await;
                assert_eq!(self.line().await, "", "CRLF after a chunk");
                if size == 0 {
                    break;
                }
                r.body.extend_from_slice(&data);
            }
        } else {
            while self.fill().await {}
            r.body = std::mem::take(&mut self.buf);
        }
        r
    }

    /// True if the peer closes within `within`.
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut b = [0u8; 64];
        matches!(tokio::time::timeout(within, self.s.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
    }
}

async fn connect(p: &Proxy) -> Reader {
    Reader::new(TcpStream::connect(p.addr).await.unwrap())
}

#[tokio::test]
async fn pipelined_requests_get_their_responses_in_order() {
    let b = TestBackend::start("b1").await;
    let p = Proxy::start(&config("", b.addr)).await;
    let mut c = connect(&p).await;
    c.send(
        b"GET /status?code=201 HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /status?code=202 HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /status?code=203 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    for code in [201, 202, 203] {
        let r = c.response(false).await;
        assert_eq!(r.status, code);
        assert_eq!(r.body, format!("b1 status {code}").as_bytes());
        assert_eq!(r.header("x-backend"), Some("b1"));
        assert!(r.header("date").is_some());
    }
    // The connection is still open for more.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.body, b"b1");
    assert_eq!(b.hits(), 4);
}

#[tokio::test]
async fn http10_gets_close_semantics_unless_it_asks_for_keep_alive() {
    let b = TestBackend::start("b1").await;
    let p = Proxy::start(&config("", b.addr)).await;

    let mut c = connect(&p).await;
    c.send(b"GET /big?bytes=1000 HTTP/1.0\r\nHost: t\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.header("transfer-encoding").is_none(), "no chunked encoding to an HTTP/1.0 client");
    assert_eq!(&r.body[..], &pattern_chunk(0, 1000)[..]);
    assert!(c.closed_within(Duration::from_secs(2)).await);

    // Keep-alive asked for, and a known length: the connection stays.
    let mut c = connect(&p).await;
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(r.body, b"b1");
    c.send(b"GET / HTTP/1.0\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn head_response_has_headers_but_no_body() {
    let b = TestBackend::start("b1").await;
    let p = Proxy::start(&config("", b.addr)).await;
    let mut c = connect(&p).await;
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = c.response(true).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("2"));
    // Had the HEAD response carried a body, this would read "b1" as a status line.
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"b1");
}

#[tokio::test]
async fn chunked_upstream_response_reaches_the_client_intact() {
    let b = TestBackend::start("b1").await;
    let p = Proxy::start(&config("", b.addr)).await;
    let mut c = connect(&p).await;
    let n = 300_000;
    c.send(format!("GET /big?bytes={n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), n);
    assert!(r.body[..] == pattern_chunk(0, n)[..], "body differs from the backend's pattern");
    // And the connection is reusable after the last chunk.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.body, b"b1");
}

#[tokio::test]
async fn request_body_after_gets_is_handed_to_hyper_on_the_same_connection() {
    let b = TestBackend::start("b1").await;
    let p = Proxy::start(&config("", b.addr)).await;
    let mut c = connect(&p).await;
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(c.response(false).await.body, b"b1");
    }
    // Head and body in two writes, a GET pipelined behind the body.
    c.send(b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b"helloGET /status?code=202 HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "5 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(c.response(false).await.status, 202);
    // Chunked upload on the same (now hyper) connection.
    c.send(b"POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").await;
    let r = c.response(false).await;
    assert!(String::from_utf8(r.body).unwrap().starts_with("3 ba7816bf"), "sha256 of abc");
}

#[tokio::test]
async fn malformed_request_line_gets_400_and_oversize_head_431() {
    let b = TestBackend::start("b1").await;
    let p = Proxy::start(&config("max_header_bytes = 8192", b.addr)).await;
    let mut c = connect(&p).await;
    c.send(b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(2)).await);

    let mut c = connect(&p).await;
    c.send(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(9000)).as_bytes()).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 431);
    assert!(c.closed_within(Duration::from_secs(2)).await);

    // A head that never ends, sent in pieces: refused once past the limit.
    let mut c = connect(&p).await;
    c.send(b"GET / HTTP/1.1\r\n").await;
    for _ in 0..20 {
        if c.s.write_all(format!("X-Pad: {}\r\n", "b".repeat(500)).as_bytes()).await.is_err() {
            break;
        }
    }
    assert_eq!(c.response(false).await.status, 431);
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_timeout() {
    let b = TestBackend::start("b1").await;
    let p = Proxy::start(&config("client_header_timeout_ms = 300", b.addr)).await;
    let mut c = connect(&p).await;
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.body, b"b1");
    let t0 = Instant::now();
    assert!(c.closed_within(Duration::from_secs(3)).await, "idle connection not closed");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(2), "closed after {waited:?}");
}

/// The keep-alive timeout bounds each idle gap, not the connection's life: a
/// client that speaks every 200 ms keeps a 500 ms connection for 1.6 s, with and
/// without the idle lot; then, silent, it is closed.
#[tokio::test]
async fn keep_alive_timeout_counts_from_the_last_request() {
    let b = TestBackend::start("b1").await;
    for park in [0, 100] {
        let extra = format!("client_header_timeout_ms = 500\nidle_park_ms = {park}");
        let p = Proxy::start(&config(&extra, b.addr)).await;
        let mut c = connect(&p).await;
        for i in 0..8 {
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
            let r = tokio::time::timeout(Duration::from_secs(5), c.response(false)).await;
            assert!(r.is_ok_and(|r| r.body == b"b1"), "park {park}: request {i} got no answer on the kept connection");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let t0 = Instant::now();
        assert!(c.closed_within(Duration::from_secs(3)).await, "park {park}: idle connection not closed");
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
            "park {park}: closed after {waited:?}"
        );
    }
}

#[tokio::test]
async fn graceful_shutdown_closes_idle_connections_and_finishes_requests_in_flight() {
    let b = TestBackend::start("b1").await;
    let p = Proxy::start(&config("", b.addr)).await;
    let mut idle = connect(&p).await;
    idle.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(idle.response(false).await.body, b"b1");
    let mut busy = connect(&p).await;
    busy.send(b"GET /slow?sleep_ms=500 HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(tests::wait_until(Duration::from_secs(3), || b.hits() == 2).await);

    let dp = std::sync::Arc::clone(&p.dp);
    let t0 = Instant::now();
    let shutdown = tokio::spawn(async move { dp.shutdown(Duration::from_secs(5)).await });
    assert!(idle.closed_within(Duration::from_millis(300)).await, "idle connection still open after shutdown");
    let r = busy.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(busy.closed_within(Duration::from_secs(1)).await);
    assert!(shutdown.await.unwrap(), "every connection finished within the grace time");
    assert!(t0.elapsed() < Duration::from_secs(2));
}

/// Opens `n` connections, 50 at a time, each answered once and then left open.
async fn open_idle(addr: std::net::SocketAddr, n: usize) -> Vec<Reader> {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let batch = (n - held.len()).min(50);
        let opened = futures_util::future::join_all((0..batch).map(|_| async move {
            let mut c = Reader::new(TcpStream::connect(addr).await.unwrap());
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
            assert_eq!(c.response(false).await.status, 200);
            c
        }))
        .await;
        held.extend(opened);
    }
    held
}

#[tokio::test]
async fn idle_keep_alive_connections_hold_little_memory() {
    let b = TestBackend::start("b1").await;
    let bind: std::net::SocketAddr = format!("127.0.0.1:{}", tests::free_port()).parse().unwrap();
    let cfg = format!("[runtime]\nworkers = 1\n{}", config("", b.addr).replace("{bind}", &bind.to_string()));
    let mut node = tests::NodeProcess::start(&cfg);
    node.wait_listening(bind, Duration::from_secs(20));
    // Warm up at the same concurrency (allocator arenas, upstream pool), not more:
    // memory freed by a larger warm-up would be reused and hide the cost.
    drop(open_idle(bind, 50).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = node.rss_kib();
    let n = 1000;
    let held = open_idle(bind, n).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per_conn = node.rss_kib().saturating_sub(base) as f64 / n as f64;
    eprintln!("proxy RSS {base} KiB before, {per_conn:.2} KiB per idle keep-alive connection ({n} open)");
    // hyper's server held ~19 KiB per idle connection.
    assert!(per_conn < 3.0, "{per_conn:.2} KiB per idle connection");
    drop(held);
}

/// A config change reaches a connection that was already open: its next request
/// takes the new pool (HTTP/1.1 on this codec, one socket throughout; and HTTP/2
/// through hyper).
#[tokio::test]
async fn an_open_keep_alive_connection_follows_a_config_change() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let p = Proxy::start(&config("", a.addr)).await;
    let mut c = connect(&p).await;
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    c.send(get).await;
    assert_eq!(c.response(false).await.body, b"a");
    let h2 = tests::client::http2();
    assert_eq!(tests::client::get(&h2, &p.url("/")).await.unwrap().text(), "a");

    p.reload(&config("", b.addr)).await;
    c.send(get).await;
    let r = c.response(false).await;
    assert_eq!(String::from_utf8_lossy(&r.body), "b", "same socket, new config");
    assert_eq!(tests::client::get(&h2, &p.url("/")).await.unwrap().text(), "b", "HTTP/2 connection");
    // And again after a second change (the plan chain is followed to its end).
    p.reload(&config("", a.addr)).await;
    p.reload(&config("", b.addr)).await;
    p.reload(&config("", a.addr)).await;
    c.send(get).await;
    assert_eq!(c.response(false).await.body, b"a");
}

#[tokio::test]
async fn long_idle_connections_wait_in_the_idle_lot_and_come_back_when_spoken_to() {
    let b = TestBackend::start("b1").await;
    let p = Proxy::start(&config("client_header_timeout_ms = 2500", b.addr)).await;
    let parked = |n: usize| {
        let dp = std::sync::Arc::clone(&p.dp);
        async move {
            for _ in 0..60 {
                if dp.parked_connections().await == n {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    // Idle past a second: parked, still open and counted.
    let mut c = connect(&p).await;
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.body, b"b1");
    assert!(parked(1).await, "not parked after 3 s idle");
    assert_eq!(p.dp.http_connections(), 1);
    // Spoken to again: served on the same socket, out of the lot.
    c.send(b"GET /status?code=202 HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.status, 202);
    assert_eq!(p.dp.parked_connections().await, 0);
    // Parked again, then the client closes: the lot lets it go.
    assert!(parked(1).await);
    drop(c);
    assert!(parked(0).await, "a closed client stays parked");
    assert!(tests::wait_until(Duration::from_secs(2), || p.dp.http_connections() == 0).await);

    // The keep-alive timeout still holds for a parked connection.
    let mut c = connect(&p).await;
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.body, b"b1");
    let t0 = Instant::now();
    assert!(c.closed_within(Duration::from_secs(5)).await, "parked connection never timed out");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(2400) && waited < Duration::from_millis(3800), "closed after {waited:?}");

    // A shutdown closes parked connections at once.
    let mut c = connect(&p).await;
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.body, b"b1");
    assert!(parked(1).await);
    let dp = std::sync::Arc::clone(&p.dp);
    let shutdown = tokio::spawn(async move { dp.shutdown(Duration::from_secs(5)).await });
    assert!(c.closed_within(Duration::from_millis(300)).await, "parked connection open after shutdown");
    assert!(shutdown.await.unwrap());
}
