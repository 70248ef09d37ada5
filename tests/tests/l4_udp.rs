//! L4 UDP proxying with real sockets on 127.0.0.1: flows spread over backends,
//! replies reach the client that asked, idle flows expire, and a full flow table
//! drops new clients until room frees.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quorumlb::proxy::{DataPlane, ListenerStats};
use tests::l4::{self, UdpBackend};
use tests::wait_until;
use tokio::net::UdpSocket;

fn udp_config(port: u16, extra: &str, backends: &[SocketAddr]) -> String {
    format!(
        "[[listener]]\nname = \"udp\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"udp\"\ndefault_pool = \"p\"\n{extra}\n\
         [[pool]]\nname = \"p\"\n{}",
        l4::backends_toml(backends)
    )
}

async fn stats(dp: &Arc<DataPlane>) -> Arc<ListenerStats> {
    dp.listener_stats().await.into_iter().find(|(n, _)| n == "udp").map(|(_, s)| s).expect("listener stats")
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    ListenerStats::get(c)
}

/// Sends `msg` and waits for one reply (a few tries: UDP may drop). Returns the reply.
async fn ask(sock: &UdpSocket, port: u16, msg: &str) -> Option<String> {
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).await.ok()?;
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(400), sock.recv_from(&mut buf)).await {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

async fn clients(n: usize) -> Vec<UdpSocket> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    v
}

#[tokio::test]
async fn thirty_clients_spread_over_three_backends_and_each_gets_its_own_replies() {
    let bs = [UdpBackend::start("b1").await, UdpBackend::start("b2").await, UdpBackend::start("b3").await];
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let port = l4::free_udp_port();
    let dp = l4::start_proxy(&udp_config(port, "", &addrs)).await;
    let socks = clients(30).await;

    let mut backend_of: HashMap<usize, String> = HashMap::new();
    for round in 0..3 {
        for (i, s) in socks.iter().enumerate() {
            let msg = format!("client-{i}-round-{round}");
            let reply = ask(s, port, &msg).await.unwrap_or_else(|| panic!("no reply for {msg}"));
            let (backend, echoed) = reply.split_once('|').expect("reply format");
            assert_eq!(echoed, msg, "a reply reached the wrong client");
            let first = backend_of.entry(i).or_insert_with(|| backend.to_string());
            assert_eq!(first, backend, "client {i} moved to another backend");
        }
    }
    let mut per_backend: HashMap<&str, u32> = HashMap::new();
    for b in backend_of.values() {
        *per_backend.entry(b.as_str()).or_default() += 1;
    }
    assert_eq!(per_backend, HashMap::from([("b1", 10), ("b2", 10), ("b3", 10)]));
    // One upstream socket per flow: each backend saw 10 distinct sources.
    assert!(bs.iter().all(|b| b.peer_count() == 10));
    let s = stats(&dp).await;
    assert_eq!((get(&s.udp_flows_active), get(&s.udp_flows_created)), (30, 30));
    let rt = dp.runtime();
    assert!(rt.pools["p"].backends.iter().all(|b| b.state.in_flight() == 10), "flows hold in-flight counts");
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn idle_udp_flows_expire_and_come_back_as_new_flows() {
    let b = UdpBackend::start("b1").await;
    let port = l4::free_udp_port();
    let dp = l4::start_proxy(&udp_config(port, "udp_idle_timeout_ms = 200", &[b.addr])).await;
    let socks = clients(5).await;
    for (i, s) in socks.iter().enumerate() {
        assert!(ask(s, port, &format!("hello {i}")).await.is_some());
    }
    let s = stats(&dp).await;
    assert_eq!(get(&s.udp_flows_active), 5);
    assert!(wait_until(Duration::from_secs(2), || get(&s.udp_flows_active) == 0).await, "flows never expired");
    assert_eq!(get(&s.udp_flows_expired), 5);
    let rt = dp.runtime();
    assert_eq!(rt.pools["p"].backends[0].state.in_flight(), 0, "expired flows keep their backend count");

    for (i, s) in socks.iter().enumerate() {
        assert!(ask(s, port, &format!("again {i}")).await.is_some());
    }
    assert_eq!((get(&s.udp_flows_created), get(&s.udp_flows_active)), (10, 5));
    assert_eq!(b.peer_count(), 10, "expired flows' upstream sockets were reused");
    dp.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn full_flow_table_drops_new_clients_until_a_flow_expires() {
    let b = UdpBackend::start("b1").await;
    let port = l4::free_udp_port();
    let dp = l4::start_proxy(&udp_config(port, "udp_max_flows = 5\nudp_idle_timeout_ms = 400", &[b.addr])).await;
    let socks = clients(6).await;
    for (i, s) in socks[..5].iter().enumerate() {
        assert!(ask(s, port, &format!("in {i}")).await.is_some());
    }
    let late = &socks[5];
    late.send_to(b"let me in", ("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 64];
    let reply = tokio::time::timeout(Duration::from_millis(150), late.recv_from(&mut buf)).await;
    assert!(reply.is_err(), "a sixth flow got through a table of 5");
    let s = stats(&dp).await;
    assert!(get(&s.udp_flows_refused) >= 1);
    assert_eq!(get(&s.udp_flows_active), 5);
    // Existing flows still work while the table is full.
    assert!(ask(&socks[0], port, "still in").await.is_some());
    // Once the others go idle and expire, the new client gets a flow.
    let mut got_in = false;
    for _ in 0..20 {
        if ask(late, port, "now?").await.is_some() {
            got_in = true;
            break;
        }
    }
    assert!(got_in, "new client never admitted after flows expired");
    dp.shutdown(Duration::from_millis(100)).await;
}
