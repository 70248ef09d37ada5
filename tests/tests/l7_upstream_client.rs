//! Our own HTTP/1.1 upstream client (requests without a body to plain-TCP
//! backends), against a scripted backend that writes exact bytes: chunked bodies
//! with extensions and trailers split across writes, interim 1xx responses,
//! close-delimited bodies, HEAD, bytes past the end of a message, truncated
//! bodies, malformed heads, a backend that closes idle keep-alive connections,
//! and one that closes a reused connection on the next request without answering
//! (retried for GET, 502 for POST).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tests::Proxy;
use tests::client::{get, http1, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The scripted backend: answers each request by its path and records
/// (connection number, request line) for every request it reads.
struct Scripted {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(usize, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start() -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            for conn in 0..1000 {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(serve(s, conn, Arc::clone(&log)));
            }
        });
        Scripted { addr, seen, task }
    }

    fn seen(&self) -> Vec<(usize, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// The backend connection that carried the request with this request line.
    fn conn_of(&self, line: &str) -> usize {
        let seen = self.seen();
        seen.iter().find(|(_, l)| l == line).unwrap_or_else(|| panic!("{line:?} not seen in {seen:?}")).0
    }
}

/// Writes `parts` with a short pause between them, so the proxy sees partial
/// heads, chunk lines and bodies.
async fn trickle(s: &mut TcpStream, parts: &[&[u8]]) -> std::io::Result<()> {
    for p in parts {
        s.write_all(p).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn serve(mut s: TcpStream, conn: usize, log: Arc<Mutex<Vec<(usize, String)>>>) {
    let mut buf = Vec::new();
    for nth in 0..100 {
        // One request head (the proxy sends no bodies here).
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        let head: Vec<u8> = buf.drain(..head_end).collect();
        let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
        log.lock().unwrap().push((conn, line.clone()));
        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
        let r = match path.as_str() {
            "/chunked" => {
                trickle(
                    &mut s,
                    &[
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-B: 1\r\n",
                        b"\r\n5;name=value\r\nhel",
                        b"lo\r\n",
                        b"7\r\n, world\r",
                        b"\n0\r\nX-Trailer: t\r\n",
                        b"\r\n",
                    ],
                )
                .await
            }
            "/early" => {
                s.write_all(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                )
                .await
            }
            "/head" => s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await,
            "/eof" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ").await;
                let _ = trickle(&mut s, &[b"the ", b"end"]).await;
                return;
            }
            "/extra" => s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokjunk").await,
            "/short" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
                return;
            }
            "/bad" => s.write_all(b"HTTP/1.1 2OO OK\r\n\r\n").await,
            "/fields" => {
                s.write_all(
                    b"HTTP/1.1 200 OK\r\nX-Backend-Case: Kept\r\nConnection: keep-alive, X-Private\r\n\
                      Keep-Alive: timeout=5\r\nSet-Cookie: a=1\r\nX-Private: secret\r\nset-cookie: b=2\r\n\
                      Proxy-Connection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
                )
                .await
            }
            "/idle-close" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                // A short keepalive_timeout on the backend's side.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            // The second request on a connection finds it closed, unanswered.
            "/race" if nth > 0 => return,
            _ => s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await,
        };
        if r.is_err() {
            return;
        }
    }
}

/// One request on a fresh connection and the response head as raw bytes
/// (the body is two bytes).
async fn raw_head(proxy: &Proxy, path: &str) -> String {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed before a full head: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(got).unwrap()
}

fn config(backend: SocketAddr) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{backend}\"\n"
    )
}

#[tokio::test]
async fn chunked_bodies_with_extensions_and_trailers_are_decoded_and_the_connection_reused() {
    let b = Scripted::start().await;
    let p = Proxy::start(&config(b.addr)).await;
    let c = http1();
    let r = get(&c, &p.url("/chunked")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello, world");
    assert_eq!(r.header("x-b").as_deref(), Some("1"));
    assert!(r.header("x-trailer").is_none(), "trailers are dropped");
    let r = get(&c, &p.url("/after")).await.unwrap();
    assert_eq!(r.text(), "ok");
    assert_eq!(b.conn_of("GET /chunked HTTP/1.1"), b.conn_of("GET /after HTTP/1.1"), "{:?}", b.seen());
}

#[tokio::test]
async fn interim_responses_are_skipped_and_head_reads_no_body() {
    let b = Scripted::start().await;
    let p = Proxy::start(&config(b.addr)).await;
    let c = http1();
    let r = get(&c, &p.url("/early")).await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    let req = Request::head(p.url("/head")).body(Full::new(Bytes::new())).unwrap();
    let r = send(&c, req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").as_deref(), Some("1000"));
    assert!(r.body.is_empty());
    // The HEAD response had no body to wait for: the connection is reused at once.
    let r = get(&c, &p.url("/after")).await.unwrap();
    assert_eq!(r.text(), "ok");
    let (early, head, after) =
        (b.conn_of("GET /early HTTP/1.1"), b.conn_of("HEAD /head HTTP/1.1"), b.conn_of("GET /after HTTP/1.1"));
    assert!(early == head && head == after, "{:?}", b.seen());
}

#[tokio::test]
async fn close_delimited_and_overlong_messages_are_passed_on_and_not_reused() {
    let b = Scripted::start().await;
    let p = Proxy::start(&config(b.addr)).await;
    let c = http1();
    let r = get(&c, &p.url("/eof")).await.unwrap();
    assert_eq!(r.text(), "until the end");
    let r = get(&c, &p.url("/extra")).await.unwrap();
    assert_eq!(r.text(), "ok", "only the declared length is passed on");
    let r = get(&c, &p.url("/after")).await.unwrap();
    assert_eq!(r.text(), "ok");
    let conns = [b.conn_of("GET /eof HTTP/1.1"), b.conn_of("GET /extra HTTP/1.1"), b.conn_of("GET /after HTTP/1.1")];
    assert!(conns[0] != conns[1] && conns[1] != conns[2], "a fresh connection after each: {:?}", b.seen());
}

#[tokio::test]
async fn truncated_bodies_cut_the_client_connection_and_malformed_heads_get_502() {
    let b = Scripted::start().await;
    let p = Proxy::start(&config(b.addr)).await;
    let c = http1();
    assert!(get(&c, &p.url("/short")).await.is_err(), "a body cut short must not look complete");
    let r = get(&c, &p.url("/bad")).await.unwrap();
    assert_eq!(r.status, 502);
    let r = get(&c, &p.url("/after")).await.unwrap();
    assert_eq!(r.text(), "ok");
}

#[tokio::test]
async fn connections_the_backend_closed_while_idle_are_not_used() {
    let b = Scripted::start().await;
    let p = Proxy::start(&config(b.addr)).await;
    let c = http1();
    for i in 0..3 {
        // POST: were a closed connection used, it would not be sent again (502).
        let req = Request::post(p.url("/idle-close")).body(Full::new(Bytes::new())).unwrap();
        let r = send(&c, req).await.unwrap();
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"), "round {i}");
        // The backend has closed the pooled connection by now.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let conns: Vec<usize> = b.seen().iter().map(|(c, _)| *c).collect();
    assert_eq!(conns.len(), 3, "each request sent once: {:?}", b.seen());
    assert!(conns[0] != conns[1] && conns[1] != conns[2], "{:?}", b.seen());
}

#[tokio::test]
async fn a_reused_connection_closed_unanswered_is_retried_for_get_only() {
    let b = Scripted::start().await;
    let p = Proxy::start(&config(b.addr)).await;
    let c = http1();
    // The first /race on a connection is answered; the second finds it closed.
    assert_eq!(get(&c, &p.url("/race")).await.unwrap().text(), "ok");
    let r = get(&c, &p.url("/race")).await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"), "GET is sent again on a new connection");
    let seen = b.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0].0 == seen[1].0 && seen[2].0 != seen[1].0, "{seen:?}");

    let post = |path: &str| Request::post(p.url(path)).body(Full::new(Bytes::new())).unwrap();
    // The third connection answered its first /race; a bodiless POST on it now is not repeated.
    let r = send(&c, post("/race")).await.unwrap();
    assert_eq!(r.status, 502, "a POST is not sent twice");
    assert_eq!(b.seen().iter().filter(|(_, l)| l == "POST /race HTTP/1.1").count(), 1, "{:?}", b.seen());
}

#[tokio::test]
async fn response_fields_pass_as_sent_without_hop_by_hop_ones_to_http1_and_http2_clients() {
    let b = Scripted::start().await;
    let p = Proxy::start(&config(b.addr)).await;
    // HTTP/1.1: the backend's spelling and order; hop-by-hop fields and the one
    // its Connection names are gone; our Date is added once.
    let head = raw_head(&p, "/fields").await;
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "HTTP/1.1 200 OK");
    assert_eq!(
        &lines[1..5],
        ["X-Backend-Case: Kept", "Set-Cookie: a=1", "set-cookie: b=2", "Content-Length: 2"],
        "{head}"
    );
    for gone in ["connection", "keep-alive", "x-private", "proxy-connection"] {
        assert!(!head.to_ascii_lowercase().contains(&format!("\r\n{gone}:")), "{gone} passed on: {head}");
    }
    assert_eq!(head.to_ascii_lowercase().matches("\r\ndate: ").count(), 1, "{head}");
    // HTTP/2 (hyper's server): the same fields, repeats kept.
    let r = get(&tests::client::http2(), &p.url("/fields")).await.unwrap();
    assert_eq!(r.text(), "ok");
    assert_eq!(r.header("x-backend-case").as_deref(), Some("Kept"));
    let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert!(r.headers.get("x-private").is_none() && r.headers.get("keep-alive").is_none(), "{:?}", r.headers);
    assert_eq!(r.header("content-length").as_deref(), Some("2"));
}

#[tokio::test]
async fn a_sticky_cookie_joins_the_backends_own_cookies() {
    let b = Scripted::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sticky.key");
    std::fs::write(&key, "a-test-cookie-signing-key-of-32b\n").unwrap();
    let cfg = config(b.addr).replace(
        "name = \"p\"\n",
        &format!(
            "name = \"p\"\n  [pool.sticky]\n  mode = \"cookie\"\n  name = \"SRV\"\n  secret_file = \"{}\"\n",
            key.display()
        ),
    );
    let p = Proxy::start(&cfg).await;
    let head = raw_head(&p, "/fields").await;
    let cookies: Vec<&str> = head.split("\r\n").filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).collect();
    assert_eq!(cookies.len(), 3, "{head}");
    assert_eq!(&cookies[..2], ["Set-Cookie: a=1", "set-cookie: b=2"]);
    assert!(cookies[2].to_ascii_lowercase().starts_with("set-cookie: srv="), "{head}");
    let r = get(&tests::client::http2(), &p.url("/fields")).await.unwrap();
    let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(&cookies[..2], ["a=1", "b=2"]);
    assert!(cookies.len() == 3 && cookies[2].starts_with("SRV="), "{cookies:?}");
}
