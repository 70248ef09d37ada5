//! L4 TCP proxying with real sockets on 127.0.0.1: bulk transfer integrity, half-
//! close, balancing, health checks, retry, drain, limits, idle timeout and source-IP
//! affinity. The proxy runs in-process; every server stops when its handle drops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumlb::proxy::{DataPlane, ListenerStats};
use tests::l4::{self, Behavior, TcpBackend};
use tests::{free_port, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const T: Duration = Duration::from_secs(5);

fn tcp_config(port: u16, listener_extra: &str, pool_extra: &str, backends: &[SocketAddr]) -> String {
    format!(
        "[[listener]]\nname = \"tcp\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"tcp\"\ndefault_pool = \"p\"\n{listener_extra}\n\
         [[pool]]\nname = \"p\"\n{pool_extra}\n{}",
        l4::backends_toml(backends)
    )
}

async fn stats(dp: &Arc<DataPlane>) -> Arc<ListenerStats> {
    dp.listener_stats().await.into_iter().find(|(n, _)| n == "tcp").map(|(_, s)| s).expect("listener stats")
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    ListenerStats::get(c)
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.expect("connect to proxy")
}

async fn connect_from(ip: &str, port: u16) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    sock.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.expect("connect to proxy")
}

/// Connects and reads the backend's name line (NamedEcho backends).
async fn name_via(stream: &mut TcpStream) -> String {
    l4::read_line(stream, T).await.expect("backend name line")
}

/// Echo round trip on an open connection.
async fn echoes(stream: &mut TcpStream, msg: &[u8]) -> bool {
    if stream.write_all(msg).await.is_err() {
        return false;
    }
    let mut back = vec![0u8; msg.len()];
    matches!(tokio::time::timeout(T, stream.read_exact(&mut back)).await, Ok(Ok(_))) && back == msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_of_256_mib_each_way_at_once_arrives_byte_identical() {
    const SIZE: u64 = 256 << 20;
    let backend = TcpBackend::start("bulk", Behavior::Stream { send: SIZE, seed: 2 }).await;
    let port = free_port();
    let dp = l4::start_proxy(&tcp_config(port, "", "", &[backend.addr])).await;

    let started = Instant::now();
    let (mut r, mut w) = connect(port).await.into_split();
    let sender = tokio::spawn(async move {
        let sent = l4::send_pattern(&mut w, SIZE, 1).await.expect("send");
        w.shutdown().await.expect("shutdown");
        sent
    });
    let received = tokio::time::timeout(Duration::from_secs(120), l4::hash_to_eof(&mut r)).await.expect("in time");
    let received = received.expect("receive");
    let sent = sender.await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(wait_until(T, || !backend.streams.lock().unwrap().is_empty()).await);
    let seen = backend.streams.lock().unwrap()[0].clone();
    assert_eq!((seen.received, &seen.received_sha256), (sent.0, &sent.1), "client -> backend differs");
    assert_eq!((received.0, &received.1), (seen.sent, &seen.sent_sha256), "backend -> client differs");
    assert_eq!((sent.0, received.0), (SIZE, SIZE));
    let s = stats(&dp).await;
    assert!(wait_until(T, || get(&s.bytes_in) == SIZE && get(&s.bytes_out) == SIZE).await);
    eprintln!(
        "256 MiB each way through the proxy in {secs:.2} s: {:.0} MB/s per direction, {:.0} MB/s total",
        SIZE as f64 / secs / 1e6,
        2.0 * SIZE as f64 / secs / 1e6
    );
    dp.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn client_half_close_still_receives_the_rest_and_backend_half_close_still_accepts_data() {
    let echo = TcpBackend::start("echo", Behavior::Echo).await;
    let port = free_port();
    let dp = l4::start_proxy(&tcp_config(port, "", "", &[echo.addr])).await;

    // Client sends, shuts its write side, and still gets every byte echoed back; the
    // echo server only ends after the client's EOF went through the proxy.
    let mut c = connect(port).await;
    let data: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    c.write_all(&data).await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(T, c.read_to_end(&mut back)).await.expect("echo ends").unwrap();
    assert!(back == data, "echoed {} of {} bytes", back.len(), data.len());
    dp.shutdown(Duration::from_millis(100)).await;

    // The other way: the backend sends and closes its write side first; the client
    // reads that EOF, then still sends its data, which the backend receives whole.
    let first = TcpBackend::start("first", Behavior::Stream { send: 100_000, seed: 7 }).await;
    let port = free_port();
    let dp = l4::start_proxy(&tcp_config(port, "", "", &[first.addr])).await;
    let (mut r, mut w) = connect(port).await.into_split();
    let (n, _) = tokio::time::timeout(T, l4::hash_to_eof(&mut r)).await.expect("backend EOF").unwrap();
    assert_eq!(n, 100_000);
    let sent = l4::send_pattern(&mut w, 300_000, 9).await.unwrap();
    w.shutdown().await.unwrap();
    assert!(wait_until(T, || !first.streams.lock().unwrap().is_empty()).await);
    let seen = first.streams.lock().unwrap()[0].clone();
    assert_eq!((seen.received, seen.received_sha256), sent);
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn connections_are_balanced_over_three_backends() {
    let bs = [
        TcpBackend::start("b1", Behavior::NamedEcho).await,
        TcpBackend::start("b2", Behavior::NamedEcho).await,
        TcpBackend::start("b3", Behavior::NamedEcho).await,
    ];
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();

    // Round robin: one connection after another, exactly 10 each.
    let port = free_port();
    let dp = l4::start_proxy(&tcp_config(port, "", "algorithm = \"round_robin\"", &addrs)).await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..30 {
        let mut c = connect(port).await;
        *seen.entry(name_via(&mut c).await).or_default() += 1;
    }
    assert_eq!(seen, HashMap::from([("b1".into(), 10), ("b2".into(), 10), ("b3".into(), 10)]));
    dp.shutdown(Duration::from_millis(100)).await;

    // Least connections: 30 connections held open at once end up 10 per backend,
    // which needs the in-flight count taken and given back per connection.
    let port = free_port();
    let dp = l4::start_proxy(&tcp_config(port, "", "algorithm = \"least_conn\"", &addrs)).await;
    let mut held = Vec::new();
    for _ in 0..30 {
        let mut c = connect(port).await;
        name_via(&mut c).await;
        held.push(c);
    }
    assert!(
        wait_until(T, || bs.iter().all(|b| b.open() == 10)).await,
        "{:?}",
        bs.iter().map(|b| b.open()).collect::<Vec<_>>()
    );
    let rt = dp.runtime();
    let pool = &rt.pools["p"];
    assert!(pool.backends.iter().all(|b| b.state.in_flight() == 10));
    drop(held);
    assert!(wait_until(T, || pool.backends.iter().all(|b| b.state.in_flight() == 0)).await, "in-flight released");
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn killed_backend_gets_no_new_connections_once_health_checks_fail() {
    let bs = [
        TcpBackend::start("b1", Behavior::NamedEcho).await,
        TcpBackend::start("b2", Behavior::NamedEcho).await,
        TcpBackend::start("b3", Behavior::NamedEcho).await,
    ];
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let port = free_port();
    let health = "[pool.health]\nkind = \"tcp\"\ninterval_ms = 100\ntimeout_ms = 100\nfall = 2\nrise = 2";
    let dp = l4::start_proxy(&tcp_config(port, "", health, &addrs)).await;
    let rt = dp.runtime();
    let dead = rt.pools["p"].backends.iter().find(|b| b.addr == bs[2].addr).unwrap().state.clone();

    bs[2].kill();
    assert!(wait_until(Duration::from_secs(3), || !dead.is_healthy()).await, "health checks never failed");
    let attempts_before = dead.stats.connections.load(std::sync::atomic::Ordering::Relaxed);
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..30 {
        let mut c = connect(port).await;
        *seen.entry(name_via(&mut c).await).or_default() += 1;
    }
    assert_eq!(seen, HashMap::from([("b1".into(), 15), ("b2".into(), 15)]));
    assert_eq!(
        dead.stats.connections.load(std::sync::atomic::Ordering::Relaxed),
        attempts_before,
        "dead backend was tried"
    );
    assert_eq!(get(&stats(&dp).await.connect_failures), 0);
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn failed_connect_is_retried_on_another_backend_and_ejects_it() {
    let live = TcpBackend::start("live", Behavior::NamedEcho).await;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let port = free_port();
    let pool = "algorithm = \"round_robin\"\nretries = 1\nconnect_timeout_ms = 500\n[pool.passive]\nmax_fails = 1\nfail_timeout_ms = 30000";
    let dp = l4::start_proxy(&tcp_config(port, "", pool, &[dead, live.addr])).await;
    for _ in 0..10 {
        let mut c = connect(port).await;
        assert_eq!(name_via(&mut c).await, "live");
    }
    let s = stats(&dp).await;
    // The first failure ejects the dead backend: it is not tried again.
    assert_eq!(get(&s.connect_failures), 1);
    assert_eq!(get(&s.no_backend), 0);
    assert_eq!(live.accepted(), 10);
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn draining_backend_keeps_its_open_connections_and_gets_no_new_ones() {
    let b1 = TcpBackend::start("b1", Behavior::NamedEcho).await;
    let b2 = TcpBackend::start("b2", Behavior::NamedEcho).await;
    let port = free_port();
    let config = |state: &str| {
        format!(
            "[[listener]]\nname = \"tcp\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"tcp\"\ndefault_pool = \"p\"\n\
             [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{}\"\n  state = \"{state}\"\n  [[pool.backend]]\n  address = \"{}\"\n",
            b1.addr, b2.addr
        )
    };
    let dp = l4::start_proxy(&config("enabled")).await;
    let mut on_b1 = Vec::new();
    for _ in 0..4 {
        let mut c = connect(port).await;
        if name_via(&mut c).await == "b1" {
            on_b1.push(c);
        }
    }
    assert_eq!(on_b1.len(), 2);

    l4::reload(&dp, &config("draining")).await;
    for _ in 0..10 {
        let mut c = connect(port).await;
        assert_eq!(name_via(&mut c).await, "b2");
    }
    assert_eq!(b1.accepted(), 2, "a draining backend took a new connection");
    for c in &mut on_b1 {
        assert!(echoes(c, b"still here").await, "open connection to the draining backend broke");
    }
    assert_eq!(b1.open(), 2);
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn maxconn_refuses_the_excess_at_once_and_admits_again_when_a_slot_frees() {
    let echo = TcpBackend::start("echo", Behavior::Echo).await;
    let port = free_port();
    let dp = l4::start_proxy(&tcp_config(port, "maxconn = 3", "", &[echo.addr])).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect(port).await;
        assert!(echoes(&mut c, b"in").await);
        held.push(c);
    }
    let mut fourth = connect(port).await;
    let _ = fourth.write_all(b"over").await;
    assert!(l4::closed_within(&mut fourth, Duration::from_secs(1)).await, "excess connection not closed at once");
    let s = stats(&dp).await;
    assert_eq!(get(&s.refused_maxconn), 1);
    assert_eq!(echo.accepted(), 3, "the refused connection reached a backend");

    drop(held.pop());
    let mut admitted = false;
    for _ in 0..50 {
        let mut c = connect(port).await;
        if echoes(&mut c, b"again").await {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed slot was not given back");
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn maxconn_per_source_counts_each_client_ip_apart() {
    let echo = TcpBackend::start("echo", Behavior::Echo).await;
    let port = free_port();
    let dp = l4::start_proxy(&tcp_config(port, "maxconn_per_source = 2", "", &[echo.addr])).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from("127.0.0.1", port).await;
        assert!(echoes(&mut c, b"ok").await);
        held.push(c);
    }
    let mut third = connect_from("127.0.0.1", port).await;
    let _ = third.write_all(b"over").await;
    assert!(l4::closed_within(&mut third, Duration::from_secs(1)).await, "third connection from one IP not refused");
    // Another client IP is not affected.
    let mut other = connect_from("127.0.0.2", port).await;
    assert!(echoes(&mut other, b"other ip").await);
    let s = stats(&dp).await;
    assert_eq!((get(&s.refused_per_source), get(&s.refused_maxconn)), (1, 0));
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn idle_connection_is_closed_after_idle_timeout_and_active_one_is_not() {
    let echo = TcpBackend::start("echo", Behavior::Echo).await;
    let port = free_port();
    let dp = l4::start_proxy(&tcp_config(port, "idle_timeout_ms = 300", "", &[echo.addr])).await;
    let mut idle = connect(port).await;
    let mut busy = connect(port).await;
    let started = Instant::now();
    for i in 0..10 {
        assert!(echoes(&mut busy, format!("tick {i}").as_bytes()).await, "active connection closed at {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(l4::closed_within(&mut idle, Duration::from_secs(2)).await, "idle connection kept open");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(get(&stats(&dp).await.idle_timeouts), 1);
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn ip_hash_keeps_each_client_ip_on_one_backend() {
    let bs = [
        TcpBackend::start("b1", Behavior::NamedEcho).await,
        TcpBackend::start("b2", Behavior::NamedEcho).await,
        TcpBackend::start("b3", Behavior::NamedEcho).await,
    ];
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    for algorithm in ["ip_hash", "consistent_hash"] {
        let port = free_port();
        let dp = l4::start_proxy(&tcp_config(port, "", &format!("algorithm = \"{algorithm}\""), &addrs)).await;
        let mut by_ip: HashMap<String, String> = HashMap::new();
        for round in 0..3 {
            for x in 1..=20 {
                let ip = format!("127.0.0.{x}");
                let mut c = connect_from(&ip, port).await;
                let name = name_via(&mut c).await;
                let first = by_ip.entry(ip.clone()).or_insert_with(|| name.clone());
                assert_eq!(*first, name, "{algorithm}: {ip} moved in round {round}");
            }
        }
        let used: std::collections::HashSet<_> = by_ip.values().collect();
        assert!(used.len() >= 2, "{algorithm}: 20 client IPs all hashed to one backend");
        dp.shutdown(Duration::from_millis(100)).await;
    }
}
