//! PROXY protocol with real sockets on 127.0.0.1: `send_proxy` v1/v2 read by a
//! backend that parses the header by hand, `accept_proxy` on tcp and http
//! listeners with the client address carried through, and malformed headers
//! refused, counted and never reaching a backend.

use std::sync::Arc;
use std::time::Duration;

use quorumlb::proxy::{DataPlane, ListenerStats};
use tests::l4::{self, Behavior, TcpBackend};
use tests::{TestBackend, client, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(5);

async fn stats(dp: &Arc<DataPlane>, name: &str) -> Arc<ListenerStats> {
    dp.listener_stats().await.into_iter().find(|(n, _)| n == name).map(|(_, s)| s).expect("listener stats")
}

fn v2_header(src: std::net::SocketAddr, dst: std::net::SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match (src, dst) {
        (std::net::SocketAddr::V4(s), std::net::SocketAddr::V4(d)) => {
            h.extend_from_slice(&[0x21, 0x11, 0, 12]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        (std::net::SocketAddr::V6(s), std::net::SocketAddr::V6(d)) => {
            h.extend_from_slice(&[0x21, 0x21, 0, 36]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        _ => panic!("mixed families"),
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

#[tokio::test]
async fn send_proxy_v1_and_v2_tell_the_backend_the_client_address() {
    let reporter = TcpBackend::start("report", Behavior::ProxyReport).await;
    let (p1, p2, p0) = (free_port(), free_port(), free_port());
    let mut text = String::new();
    for (name, port, send) in [("v1", p1, "send_proxy = \"v1\""), ("v2", p2, "send_proxy = \"v2\""), ("none", p0, "")] {
        text.push_str(&format!(
            "[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"tcp\"\ndefault_pool = \"{name}\"\n\
             [[pool]]\nname = \"{name}\"\n{send}\n  [[pool.backend]]\n  address = \"{}\"\n",
            reporter.addr
        ));
    }
    let dp = l4::start_proxy(&text).await;
    for (version, port) in [("v1", p1), ("v2", p2)] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let me = c.local_addr().unwrap();
        let line = l4::read_line(&mut c, T).await.unwrap();
        assert_eq!(line, format!("{version} {me} 127.0.0.1:{port}"));
        // The payload after the header is intact.
        c.write_all(b"payload").await.unwrap();
        let mut back = [0u8; 7];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"payload");
    }
    let mut c = TcpStream::connect(("127.0.0.1", p0)).await.unwrap();
    c.write_all(b"plain bytes here").await.unwrap();
    assert_eq!(l4::read_line(&mut c, T).await.unwrap(), "none");
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn send_proxy_v2_over_ipv6() {
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        panic!("::1 is not available on this host; the IPv6 PROXY test needs it");
    };
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let reporter = TcpBackend::start("report", Behavior::ProxyReport).await;
    let text = format!(
        "[[listener]]\nname = \"v6\"\nbind = \"[::1]:{port}\"\nprotocol = \"tcp\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\nsend_proxy = \"v2\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        reporter.addr
    );
    let dp = l4::start_proxy(&text).await;
    let mut c = TcpStream::connect(("::1", port)).await.unwrap();
    let me = c.local_addr().unwrap();
    assert_eq!(l4::read_line(&mut c, T).await.unwrap(), format!("v2 {me} [::1]:{port}"));
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn accept_proxy_takes_the_client_from_the_header_on_tcp_and_http_listeners() {
    let reporter = TcpBackend::start("report", Behavior::ProxyReport).await;
    let web = TestBackend::start("web").await;
    let (tcp_port, http_port) = (free_port(), free_port());
    let text = format!(
        "[[listener]]\nname = \"tcp\"\nbind = \"127.0.0.1:{tcp_port}\"\nprotocol = \"tcp\"\ndefault_pool = \"report\"\n\
         accept_proxy = true\nmaxconn_per_source = 1\nclient_header_timeout_ms = 2000\n\
         [[listener]]\nname = \"http\"\nbind = \"127.0.0.1:{http_port}\"\nprotocol = \"http\"\ndefault_pool = \"web\"\naccept_proxy = true\n\
         [[pool]]\nname = \"report\"\nsend_proxy = \"v2\"\n  [[pool.backend]]\n  address = \"{}\"\n\
         [[pool]]\nname = \"web\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        reporter.addr, web.addr
    );
    let dp = l4::start_proxy(&text).await;

    // v1 from the client, in three pieces (a header split over segments), with the
    // first payload bytes right behind it: the backend learns 203.0.113.7 and the
    // payload is intact.
    let mut c = TcpStream::connect(("127.0.0.1", tcp_port)).await.unwrap();
    for piece in [&b"PROXY TCP4 203.0.113.7 19"[..], b"8.51.100.1 4242 44", b"3\r\nhello"] {
        c.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(l4::read_line(&mut c, T).await.unwrap(), "v2 203.0.113.7:4242 198.51.100.1:443");
    let mut back = [0u8; 5];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");

    // v2 from the client naming an IPv6 client.
    let mut c6 = TcpStream::connect(("127.0.0.1", tcp_port)).await.unwrap();
    let src: std::net::SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
    let dst: std::net::SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    c6.write_all(&v2_header(src, dst)).await.unwrap();
    assert_eq!(l4::read_line(&mut c6, T).await.unwrap(), format!("v2 {src} {dst}"));

    // maxconn_per_source = 1 counts the client the header names: a second
    // connection claiming 203.0.113.7 is refused while the first is open.
    let mut again = TcpStream::connect(("127.0.0.1", tcp_port)).await.unwrap();
    again.write_all(b"PROXY TCP4 203.0.113.7 198.51.100.1 4243 443\r\n").await.unwrap();
    assert!(l4::closed_within(&mut again, T).await);
    let s = stats(&dp, "tcp").await;
    assert_eq!(ListenerStats::get(&s.refused_per_source), 1);

    // The http listener: the client address from the header becomes X-Forwarded-For.
    let mut h = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    h.write_all(
        b"PROXY TCP4 192.0.2.9 127.0.0.1 1000 80\r\nGET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(T, h.read_to_end(&mut resp)).await.unwrap().unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"x-forwarded-for\":\"192.0.2.9\""), "{resp}");
    // And the plain http client without a header is refused on that listener.
    let http = client::http1();
    assert!(client::get(&http, &format!("http://127.0.0.1:{http_port}/")).await.is_err());
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn malformed_proxy_headers_are_refused_counted_and_never_reach_a_backend() {
    let echo = TcpBackend::start("echo", Behavior::Echo).await;
    let port = free_port();
    let text = format!(
        "[[listener]]\nname = \"tcp\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"tcp\"\ndefault_pool = \"p\"\n\
         accept_proxy = true\nclient_header_timeout_ms = 300\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        echo.addr
    );
    let dp = l4::start_proxy(&text).await;
    let mut bad_version = v2_header("1.2.3.4:5".parse().unwrap(), "5.6.7.8:9".parse().unwrap());
    bad_version[12] = 0x31;
    let mut bad_family = bad_version.clone();
    bad_family[12] = 0x21;
    bad_family[13] = 0x71;
    let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
    huge.extend(std::iter::repeat_n(0u8, 3000));
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("plain http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false),
        ("bad address", b"PROXY TCP4 1.2.3.nope 5.6.7.8 1 2\r\n".to_vec(), false),
        ("bad port", b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n".to_vec(), false),
        ("v1 without CRLF", [b"PROXY TCP4 ".as_slice(), &[b'1'; 150]].concat(), false),
        ("v2 bad version", bad_version, false),
        ("v2 bad family", bad_family, false),
        ("v2 too long", huge, false),
        ("truncated then closed", b"PROXY TCP4 1.2.3.4".to_vec(), true),
        ("silent after a partial header", b"PROXY TCP".to_vec(), false),
    ];
    let n = cases.len() as u64;
    for (what, bytes, half_close) in cases {
        let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _ = c.write_all(&bytes).await;
        if half_close {
            let _ = c.shutdown().await;
        }
        assert!(l4::closed_within(&mut c, Duration::from_secs(2)).await, "{what}: connection left open");
    }
    let s = stats(&dp, "tcp").await;
    assert_eq!(ListenerStats::get(&s.proxy_header_errors), n);
    assert_eq!(echo.accepted(), 0, "a connection with a bad header reached the backend");
    // A good header still works afterwards.
    let mut ok = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    ok.write_all(b"PROXY UNKNOWN\r\nping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(T, ok.read_exact(&mut back)).await.unwrap().unwrap();
    assert_eq!(&back, b"ping");
    dp.shutdown(Duration::from_millis(100)).await;
}
