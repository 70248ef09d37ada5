//! One proxied TCP connection (`protocol = "tcp"`): backend choice with the pool's
//! algorithm (source IP as the hash key), connect with timeout and retry on another
//! backend, the optional PROXY header to the backend, then the relay. Admission
//! (limits, the client's PROXY header) happened before; nothing here outlives the
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::net::TcpStream;

use super::splice::{self, End, Mode};
use super::{ClientAddrs, ListenerStats, proxy_protocol};
use crate::balance::{BackendState, source_ip_key};
use crate::clock;
use crate::limits::conn::ConnPermit;
use crate::runtime::{ListenerRuntime, PoolRuntime, Tried};

/// Holds a backend's in-flight count (what least_conn reads) for as long as the
/// connection lives, however it ends.
struct InFlight(Arc<BackendState>);

impl InFlight {
    fn new(state: &Arc<BackendState>) -> Self {
        state.acquire();
        InFlight(Arc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Serves one accepted connection of a tcp listener to its end.
pub async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerRuntime>,
    stats: Arc<ListenerStats>,
    mut permit: ConnPermit,
) {
    let Some(addrs) = super::identify_client(&client, peer, &listener, &stats, &mut permit).await else { return };
    let Some(pool) = listener.default_pool.clone() else {
        // Validation requires a default_pool on tcp listeners; a snapshot without
        // one gets the connection closed, not a panic.
        ListenerStats::add(&stats.no_backend, 1);
        return;
    };
    let Some((i, upstream, _in_flight)) = connect(&pool, &addrs, &listener, &stats).await else {
        ListenerStats::add(&stats.no_backend, 1);
        return;
    };
    let backend = &pool.backends[i];
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Some(version) = pool.cfg.send_proxy {
        let sent = match proxy_protocol::encode(version, addrs.client, addrs.local(&client, listener.cfg.bind)) {
            Ok(header) => splice::write_all(&upstream, &header).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::debug!(pool = %pool.cfg.name, backend = %backend.addr, error = %e, "sending the PROXY header failed");
            return;
        }
    }

    let out = splice::relay(&client, &upstream, listener.cfg.idle_timeout, Mode::Splice).await;
    ListenerStats::add(&stats.bytes_in, out.a_to_b);
    ListenerStats::add(&stats.bytes_out, out.b_to_a);
    backend.state.stats.bytes_in.fetch_add(out.a_to_b, Ordering::Relaxed);
    backend.state.stats.bytes_out.fetch_add(out.b_to_a, Ordering::Relaxed);
    let (name, client, backend) = (&listener.cfg.name, addrs.client, backend.addr);
    match out.end {
        End::Closed => {
            tracing::debug!(listener = %name, %client, %backend, up = out.a_to_b, down = out.b_to_a, "connection closed")
        }
        End::Idle => {
            ListenerStats::add(&stats.idle_timeouts, 1);
            tracing::debug!(listener = %name, %client, %backend, "idle timeout, connection closed");
        }
        End::Error(e) => tracing::debug!(listener = %name, %client, %backend, error = %e, "connection ended"),
    }
}

/// Picks and connects a backend: at most `1 + retries` attempts, each on a backend
/// not tried yet. A failed attempt feeds passive health like an L7 one.
async fn connect(
    pool: &PoolRuntime,
    addrs: &ClientAddrs,
    listener: &ListenerRuntime,
    stats: &ListenerStats,
) -> Option<(usize, TcpStream, InFlight)> {
    let key = if pool.uses_key() { source_ip_key(addrs.client.ip()) } else { 0 };
    let now = clock::now_ms();
    let mut tried = Tried::default();
    for _attempt in 0..=pool.cfg.retries {
        let Some(i) = pool.choose(key, &tried, now) else {
            tracing::warn!(listener = %listener.cfg.name, pool = %pool.cfg.name, client = %addrs.client, "no backend available");
            return None;
        };
        tried.insert(i);
        let backend = &pool.backends[i];
        let in_flight = InFlight::new(&backend.state);
        backend.state.stats.connections.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let why = match tokio::time::timeout(pool.cfg.connect_timeout, TcpStream::connect(backend.addr)).await {
            Ok(Ok(stream)) => {
                backend.state.observe_latency_us(started.elapsed().as_micros() as u64);
                backend.state.record_success();
                return Some((i, stream, in_flight));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("connect timed out after {:?}", pool.cfg.connect_timeout),
        };
        ListenerStats::add(&stats.connect_failures, 1);
        tracing::warn!(pool = %pool.cfg.name, backend = %backend.addr, error = %why, "backend connect failed");
        match &pool.cfg.passive {
            Some(p) => {
                if backend.state.record_failure(clock::now_ms(), p.max_fails, p.fail_timeout.as_millis() as u64) {
                    tracing::warn!(pool = %pool.cfg.name, backend = %backend.addr, "backend ejected by passive health check");
                }
            }
            None => {
                backend.state.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    None
}
