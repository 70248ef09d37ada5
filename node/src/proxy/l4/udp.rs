//! UDP listeners (`protocol = "udp"`): a flow table keyed by client address. The
//! first datagram of a client picks a backend with the pool's algorithm (source IP
//! as the hash key) and opens a connected upstream socket for the flow; datagrams go
//! out through it, and its replies go back to that client from the listener's
//! address. Flows idle for `udp_idle_timeout_ms` are forgotten; the table holds at
//! most `udp_max_flows`. Health checks, drain and limits of other kinds are not
//! here; the pools are the shared ones.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::ListenerStats;
use crate::balance::{AdminState, BackendState, source_ip_key};
use crate::clock;
use crate::runtime::{ListenerRuntime, Tried};

/// Opens a UDP listening socket: SO_REUSEADDR, IP_FREEBIND (a VIP this node does
/// not hold yet), non-blocking.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        let _ = socket.set_freebind_v6(true);
    } else {
        let _ = socket.set_freebind_v4(true);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

thread_local! {
    /// Reply buffer shared by every flow on this worker thread: used only between
    /// a readiness wakeup and the synchronous send, never across an await, so one
    /// per thread serves any number of flows.
    static REPLY_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; MAX_DATAGRAM]);
}

/// One client's flow.
struct Flow {
    state: Arc<BackendState>,
    upstream: Arc<UdpSocket>,
    /// Datagrams moved either way; the sweep compares it with `seen`.
    activity: Arc<AtomicU64>,
    seen: u64,
    last_change: Instant,
    replies: JoinHandle<()>,
    stats: Arc<ListenerStats>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.replies.abort();
        self.state.release();
        self.stats.udp_flows_active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Flow {
    /// An open flow stays on its backend while it is draining, but not once the
    /// backend is down or disabled: the client is then moved to another one.
    fn backend_usable(&self, now_ms: u64) -> bool {
        self.state.is_healthy() && !self.state.is_ejected(now_ms) && self.state.admin() != AdminState::Disabled
    }
}

/// Rate-limits the "table full" warning: one line per interval, with the count of
/// datagrams dropped since the previous line.
struct FullLog {
    last: Option<Instant>,
    dropped: u64,
}

impl FullLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn hit(&mut self, listener: &str, max: usize) {
        self.dropped += 1;
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return;
        }
        tracing::warn!(
            %listener,
            udp_max_flows = max,
            dropped = self.dropped,
            "UDP flow table full: datagrams from new clients are dropped (raise udp_max_flows or lower udp_idle_timeout_ms)"
        );
        self.last = Some(Instant::now());
        self.dropped = 0;
    }
}

/// Serves a UDP listener until `cancel`. `snapshot` returns the listener's current
/// config (None once it is gone from the config).
pub async fn serve<F>(sock: UdpSocket, name: String, snapshot: F, stats: Arc<ListenerStats>, cancel: CancellationToken)
where
    F: Fn() -> Option<Arc<ListenerRuntime>> + Send + 'static,
{
    let sock = Arc::new(sock);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut full_log = FullLog { last: None, dropped: 0 };
    let Some(initial) = snapshot() else { return };
    let mut period = sweep_period(initial.cfg.udp_idle_timeout);
    let mut sweep = tokio::time::interval(period);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (n, client) = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sweep.tick() => {
                if let Some(l) = snapshot() {
                    expire(&mut flows, l.cfg.udp_idle_timeout, &stats);
                    // A reload may have changed the timeout.
                    if sweep_period(l.cfg.udp_idle_timeout) != period {
                        period = sweep_period(l.cfg.udp_idle_timeout);
                        sweep = tokio::time::interval(period);
                        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                continue;
            }
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors for earlier sends can surface here; nothing to do
                    // but go on.
                    tracing::debug!(listener = %name, error = %e, "udp receive error");
                    continue;
                }
            },
        };
        let datagram = &buf[..n];
        let now_ms = clock::now_ms();
        if let Some(flow) = flows.get(&client) {
            if flow.backend_usable(now_ms) {
                forward(flow, datagram, &stats);
                continue;
            }
            flows.remove(&client);
        }
        let Some(listener) = snapshot() else { break };
        if flows.len() >= listener.cfg.udp_max_flows {
            expire(&mut flows, listener.cfg.udp_idle_timeout, &stats);
            if flows.len() >= listener.cfg.udp_max_flows {
                ListenerStats::add(&stats.udp_flows_refused, 1);
                full_log.hit(&name, listener.cfg.udp_max_flows);
                continue;
            }
        }
        let Some(flow) = open_flow(&listener, client, &sock, &stats, now_ms) else {
            ListenerStats::add(&stats.no_backend, 1);
            continue;
        };
        forward(&flow, datagram, &stats);
        flows.insert(client, flow);
    }
}

/// How often idle flows are looked for: often enough that a flow outlives its
/// timeout by at most a quarter of it (and at most a second).
fn sweep_period(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

fn expire(flows: &mut HashMap<SocketAddr, Flow>, idle: Duration, stats: &ListenerStats) {
    let now = Instant::now();
    let before = flows.len();
    flows.retain(|_, f| {
        let count = f.activity.load(Ordering::Relaxed);
        if count != f.seen {
            f.seen = count;
            f.last_change = now;
            return true;
        }
        now.duration_since(f.last_change) < idle
    });
    ListenerStats::add(&stats.udp_flows_expired, (before - flows.len()) as u64);
}

fn forward(flow: &Flow, datagram: &[u8], stats: &ListenerStats) {
    flow.activity.fetch_add(1, Ordering::Relaxed);
    // UDP semantics: a datagram that cannot go out now is dropped, never queued.
    // Sent straight on the non-blocking socket: tokio's `try_send` refuses until
    // the reactor has reported the socket writable once, which a flow's first
    // datagram, on a socket opened a moment ago, would always hit.
    match socket2::SockRef::from(&*flow.upstream).send(datagram) {
        Ok(n) => ListenerStats::add(&stats.bytes_in, n as u64),
        Err(e) => {
            ListenerStats::add(&stats.udp_datagrams_dropped, 1);
            tracing::debug!(error = %e, "udp datagram to backend dropped");
        }
    }
}

/// Picks a backend for a new client and opens the flow's upstream socket; a
/// backend whose socket cannot be opened is skipped for another (up to `retries`).
fn open_flow(
    listener: &ListenerRuntime,
    client: SocketAddr,
    sock: &Arc<UdpSocket>,
    stats: &Arc<ListenerStats>,
    now_ms: u64,
) -> Option<Flow> {
    let pool = listener.default_pool.as_ref()?;
    let key = if pool.uses_key() { source_ip_key(client.ip()) } else { 0 };
    let mut tried = Tried::default();
    for _attempt in 0..=pool.cfg.retries {
        let i = pool.choose(key, &tried, now_ms)?;
        tried.insert(i);
        let backend = &pool.backends[i];
        let upstream = match connect_upstream(backend.addr) {
            Ok(u) => Arc::new(u),
            Err(e) => {
                ListenerStats::add(&stats.connect_failures, 1);
                tracing::warn!(pool = %pool.cfg.name, backend = %backend.addr, error = %e, "udp upstream socket failed");
                continue;
            }
        };
        backend.state.acquire();
        backend.state.stats.connections.fetch_add(1, Ordering::Relaxed);
        ListenerStats::add(&stats.udp_flows_created, 1);
        ListenerStats::add(&stats.udp_flows_active, 1);
        let activity = Arc::new(AtomicU64::new(0));
        let replies = tokio::spawn(relay_replies(
            Arc::clone(&upstream),
            Arc::clone(sock),
            client,
            Arc::clone(&activity),
            Arc::clone(&backend.state),
            pool.cfg.passive.as_ref().map(|p| (p.max_fails, p.fail_timeout.as_millis() as u64)),
            Arc::clone(stats),
        ));
        return Some(Flow {
            state: Arc::clone(&backend.state),
            upstream,
            activity,
            seen: 0,
            last_change: Instant::now(),
            replies,
            stats: Arc::clone(stats),
        });
    }
    None
}

fn connect_upstream(backend: SocketAddr) -> io::Result<UdpSocket> {
    let any: IpAddr = if backend.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let std_sock = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    std_sock.connect(backend)?;
    std_sock.set_nonblocking(true)?;
    UdpSocket::from_std(std_sock)
}

/// Backend -> client for one flow, until the flow is dropped (which aborts this).
async fn relay_replies(
    upstream: Arc<UdpSocket>,
    listen: Arc<UdpSocket>,
    client: SocketAddr,
    activity: Arc<AtomicU64>,
    state: Arc<BackendState>,
    passive: Option<(u32, u64)>,
    stats: Arc<ListenerStats>,
) {
    loop {
        if upstream.readable().await.is_err() {
            return;
        }
        // Drain everything queued, without awaiting while the buffer is borrowed.
        let keep_going = REPLY_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            loop {
                match upstream.try_recv(&mut buf) {
                    Ok(n) => {
                        activity.fetch_add(1, Ordering::Relaxed);
                        match socket2::SockRef::from(&*listen).send_to(&buf[..n], &client.into()) {
                            Ok(n) => ListenerStats::add(&stats.bytes_out, n as u64),
                            Err(_) => ListenerStats::add(&stats.udp_datagrams_dropped, 1),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    // ICMP port unreachable: nothing listens on the backend port.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        ListenerStats::add(&stats.connect_failures, 1);
                        match passive {
                            Some((max_fails, fail_timeout_ms)) => {
                                state.record_failure(clock::now_ms(), max_fails, fail_timeout_ms);
                            }
                            None => {
                                state.stats.failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%client, error = %e, "udp receive from backend failed");
                        return false;
                    }
                }
            }
        });
        if !keep_going {
            return;
        }
    }
}
