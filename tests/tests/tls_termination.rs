//! https listeners on the real binary: the certificate is chosen by SNI (exact and
//! wildcard) and h2 is negotiated; a certificate replaced on disk is served after
//! SIGHUP on the next handshake while a connection opened before keeps working;
//! a broken certificate file keeps the previous certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::Signal;
use tests::tls::{TestCa, alpn, connect, peer_cert};
use tests::{NodeProcess, TestBackend, free_port};

fn https_config(bind: SocketAddr, certs: &[(&Path, &Path)], backend: SocketAddr) -> String {
    let mut s =
        format!("[[listener]]\nname = \"tls\"\nbind = \"{bind}\"\nprotocol = \"https\"\ndefault_pool = \"p\"\n");
    for (c, k) in certs {
        s.push_str(&format!(
            "  [[listener.certificate]]\n  cert_file = \"{}\"\n  key_file = \"{}\"\n",
            c.display(),
            k.display()
        ));
    }
    s.push_str(&format!("[[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{backend}\"\n"));
    s
}

async fn h1_get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, host: &str) -> (u16, String) {
    let req = http::Request::get("/").header("host", host).body(Empty::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned())
}

fn wait_log(node: &NodeProcess, needle: &str, count: usize) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if node.log().matches(needle).count() >= count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

#[tokio::test]
async fn sni_picks_exact_and_wildcard_certificates_and_h2_is_negotiated() {
    let backend = TestBackend::start("b1").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let default = ca.issue(&["default.test"]);
    let exact = ca.issue(&["a.test"]);
    let wild = ca.issue(&["*.w.test"]);
    let (dc, dk) = default.write(dir.path(), "default");
    let (ec, ek) = exact.write(dir.path(), "exact");
    let (wc, wk) = wild.write(dir.path(), "wild");
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut node = NodeProcess::start(&https_config(bind, &[(&dc, &dk), (&ec, &ek), (&wc, &wk)], backend.addr));
    node.wait_listening(bind, Duration::from_secs(20));
    let client = ca.client_config();

    for (sni, want) in [("a.test", &exact.der), ("x.w.test", &wild.der), ("default.test", &default.der)] {
        let s = connect(client.clone(), bind, sni).await.unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(peer_cert(&s).as_ref(), Some(want), "certificate served for {sni}");
        assert_eq!(alpn(&s).as_deref(), Some(&b"h2"[..]), "ALPN for {sni}");
    }
    // A wildcard covers one label only: y.x.w.test is not covered, so the default
    // is served and the client (correctly) refuses it.
    assert!(connect(client.clone(), bind, "y.x.w.test").await.is_err());

    // A request over h2 reaches the backend and says it came over https.
    let s = connect(client.clone(), bind, "a.test").await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://a.test/headers").body(Empty::<Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["x-forwarded-proto"], "https");
    assert_eq!(v["_backend"], "b1");
}

#[tokio::test]
async fn certificate_swapped_on_disk_is_served_after_sighup_while_an_open_connection_keeps_working() {
    let backend = TestBackend::start("b1").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let first = ca.issue(&["a.test"]);
    let (c, k) = first.write(dir.path(), "site");
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut node = NodeProcess::start(&https_config(bind, &[(&c, &k)], backend.addr));
    node.wait_listening(bind, Duration::from_secs(20));
    let client = ca.client_config();

    // A connection opened before the swap, speaking HTTP/1.1.
    let mut h1 = (*client).clone();
    h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let old = connect(std::sync::Arc::new(h1), bind, "a.test").await.unwrap();
    assert_eq!(peer_cert(&old).as_ref(), Some(&first.der));
    let (mut old_sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(old)).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(h1_get(&mut old_sender, "a.test").await, (200, "b1".to_string()));

    let second = ca.issue(&["a.test"]);
    second.write(dir.path(), "site");
    node.signal(Signal::SIGHUP);
    assert!(wait_log(&node, "configuration reloaded", 1), "{}", node.log());

    // A new client (no session to resume) makes a full handshake.
    let fresh = connect(ca.client_config(), bind, "a.test").await.unwrap();
    assert_eq!(peer_cert(&fresh).as_ref(), Some(&second.der), "next handshake gets the new certificate");
    assert_ne!(first.der, second.der);
    // The connection opened before the reload still serves requests.
    for _ in 0..3 {
        assert_eq!(h1_get(&mut old_sender, "a.test").await, (200, "b1".to_string()));
    }
}

#[tokio::test]
async fn broken_certificate_file_keeps_the_previous_certificate() {
    let backend = TestBackend::start("b1").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let good = ca.issue(&["a.test"]);
    let (c, k) = good.write(dir.path(), "site");
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut node = NodeProcess::start(&https_config(bind, &[(&c, &k)], backend.addr));
    node.wait_listening(bind, Duration::from_secs(20));

    std::fs::write(&c, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n").unwrap();
    node.signal(Signal::SIGHUP);
    assert!(wait_log(&node, "keeping the previous certificates", 1), "{}", node.log());
    let log = node.log();
    assert!(log.contains(&c.display().to_string()), "the log names the broken file: {log}");
    assert!(!log.contains("PRIVATE KEY"), "no key material in the log");

    let s = connect(ca.client_config(), bind, "a.test").await.unwrap();
    assert_eq!(peer_cert(&s).as_ref(), Some(&good.der), "the old certificate is still served");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(http::Request::get("https://a.test/").body(Empty::<Bytes>::new()).unwrap()).await;
    assert_eq!(resp.unwrap().status(), 200);

    // A key that does not match the certificate is refused the same way.
    let other = ca.issue(&["a.test"]);
    std::fs::write(&c, &good.cert_pem).unwrap();
    std::fs::write(&k, &other.key_pem).unwrap();
    node.signal(Signal::SIGHUP);
    assert!(wait_log(&node, "keeping the previous certificates", 2), "{}", node.log());
    let s = connect(ca.client_config(), bind, "a.test").await.unwrap();
    assert_eq!(peer_cert(&s).as_ref(), Some(&good.der));
}
