//! TLS towards backends (`[pool.tls]`: verification against a CA file, SNI, and
//! `verify = false`) and `redirect_https` on an http listener.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tests::Proxy;
use tests::client::{self, get, get_with};
use tests::tls::TestCa;

/// An HTTPS backend answering `tls-backend sni=<name the client sent>`.
async fn tls_backend(ca: &TestCa, name: &str) -> SocketAddr {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let leaf = ca.issue(&[name]);
    let certs = vec![leaf.der.clone()];
    let key =
        <rustls_pki_types::PrivateKeyDer as rustls_pki_types::pem::PemObject>::from_pem_slice(leaf.key_pem.as_bytes())
            .unwrap();
    let cfg = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let svc = hyper::service::service_fn(move |_req| {
                    let body = format!("tls-backend sni={sni}");
                    async move { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn config(backend: SocketAddr, tls: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         [[pool]]\nname = \"p\"\nretries = 0\n  [pool.tls]\n{tls}\n  [[pool.backend]]\n  address = \"{backend}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_over_tls_are_verified_against_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let other = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    std::fs::write(&other_file, other.cert_pem()).unwrap();
    let backend = tls_backend(&ca, "backend.test").await;
    let c = client::http1();

    let ok = format!("  verify = true\n  ca_file = \"{}\"\n  sni = \"backend.test\"", ca_file.display());
    let p = Proxy::start(&config(backend, &ok)).await;
    let r = get(&c, &p.url("/")).await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "tls-backend sni=backend.test"));

    // A backend whose certificate the CA file does not vouch for is refused.
    let untrusted = format!("  verify = true\n  ca_file = \"{}\"\n  sni = \"backend.test\"", other_file.display());
    let p2 = Proxy::start(&config(backend, &untrusted)).await;
    assert_eq!(get(&c, &p2.url("/")).await.unwrap().status, 502);

    // The wrong name is refused too.
    let wrong_name = format!("  verify = true\n  ca_file = \"{}\"\n  sni = \"elsewhere.test\"", ca_file.display());
    let p3 = Proxy::start(&config(backend, &wrong_name)).await;
    assert_eq!(get(&c, &p3.url("/")).await.unwrap().status, 502);

    // verify = false accepts any certificate (lab setups), still encrypted.
    let p4 = Proxy::start(&config(backend, "  verify = false\n  sni = \"backend.test\"")).await;
    let r = get(&c, &p4.url("/")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_https_answers_308_to_the_same_url() {
    let b = tests::TestBackend::start("b").await;
    let base = format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\nredirect_https = true\n{{port}}\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        b.addr
    );
    let c = client::http1();
    let p = Proxy::start(&base.replace("{port}", "")).await;
    let r = get_with(&c, &p.url("/shop/cart?id=7"), &[("host", "shop.test:8080")]).await.unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location").as_deref(), Some("https://shop.test/shop/cart?id=7"));
    assert_eq!(b.hits(), 0, "a redirected request must not reach the backend");

    let p2 = Proxy::start(&base.replace("{port}", "redirect_https_port = 8443\n")).await;
    let r = get_with(&c, &p2.url("/x"), &[("host", "shop.test")]).await.unwrap();
    assert_eq!(r.header("location").as_deref(), Some("https://shop.test:8443/x"));
}
