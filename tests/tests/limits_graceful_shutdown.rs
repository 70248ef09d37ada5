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
