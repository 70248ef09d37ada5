//! The L4 data plane: TCP connections relayed byte for byte (`tcp`, zero-copy with
//! `splice`), UDP datagrams relayed per client flow (`udp`), and the PROXY protocol
//! (`proxy_protocol`). Pools, balancing, health and drain are the shared ones of
//! `crate::runtime`; connection limits are `crate::limits::conn`. HTTP is `l7`'s.
//! Also here: the per-listener event counters, and the admission step every TCP
//! listener (tcp or http) runs before its protocol starts.

pub mod proxy_protocol;
pub mod splice;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpStream;

use crate::limits::conn::{ConnPermit, Refused};
use crate::runtime::ListenerRuntime;

/// Event counters of one listener, kept while the listener stays open (a reload
/// that keeps its address and protocol keeps them). Plain atomics: the data path
/// only adds; exporters read.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections admitted (tcp and http listeners).
    pub accepted: AtomicU64,
    /// Connections closed at once because the listener's `maxconn` was reached.
    pub refused_maxconn: AtomicU64,
    /// Connections closed at once because their client IP hit `maxconn_per_source`.
    pub refused_per_source: AtomicU64,
    /// Connections closed because the PROXY header was malformed, too long,
    /// truncated or late (`accept_proxy`).
    pub proxy_header_errors: AtomicU64,
    /// Single backend connect attempts that failed or timed out.
    pub connect_failures: AtomicU64,
    /// Connections (or UDP flows) dropped because no backend could be reached.
    pub no_backend: AtomicU64,
    /// TCP connections ended by `idle_timeout_ms`.
    pub idle_timeouts: AtomicU64,
    /// Payload bytes relayed client -> backend and backend -> client (L4 only).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// UDP flows open now, created, and expired by `udp_idle_timeout_ms`.
    pub udp_flows_active: AtomicU64,
    pub udp_flows_created: AtomicU64,
    pub udp_flows_expired: AtomicU64,
    /// Datagrams of new clients dropped because the flow table was full.
    pub udp_flows_refused: AtomicU64,
    /// Datagrams dropped for any other reason (socket buffer full, send error).
    pub udp_datagrams_dropped: AtomicU64,
}

impl ListenerStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a refusal by its reason.
    pub fn refused(&self, why: Refused) {
        match why {
            Refused::Maxconn => Self::add(&self.refused_maxconn, 1),
            Refused::PerSource => Self::add(&self.refused_per_source, 1),
        }
    }
}

/// Who is on the other end of an accepted connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddrs {
    /// The client: the peer, or the source a PROXY header named.
    pub client: SocketAddr,
    /// The address the client connected to as a PROXY header named it; `None`:
    /// the socket's own (see [`ClientAddrs::local`]).
    pub proxied_local: Option<SocketAddr>,
}

impl ClientAddrs {
    /// The address the client connected to: the one a PROXY header named, or
    /// ours (read from the socket only here: most connections never need it, and
    /// it is a system call per connection).
    pub fn local(&self, stream: &TcpStream, bind: SocketAddr) -> SocketAddr {
        self.proxied_local.or_else(|| stream.local_addr().ok()).unwrap_or(bind)
    }
}

/// Reads the PROXY header when the listener expects one, then counts the client
/// against `maxconn_per_source` (a no-op when the accept loop did so already).
/// `None` means the connection is to be closed; the event is counted and logged.
pub async fn identify_client(
    stream: &TcpStream,
    peer: SocketAddr,
    listener: &ListenerRuntime,
    stats: &ListenerStats,
    permit: &mut ConnPermit,
) -> Option<ClientAddrs> {
    let mut addrs = ClientAddrs { client: peer, proxied_local: None };
    if listener.cfg.accept_proxy {
        // Boxed: the header reader's state lives only while it runs, instead of
        // adding to the size of every connection's task for its whole life.
        match Box::pin(proxy_protocol::read_header(stream, listener.cfg.client_header_timeout)).await {
            Ok(Some(p)) => addrs = ClientAddrs { client: p.source, proxied_local: Some(p.destination) },
            Ok(None) => {}
            Err(e) => {
                ListenerStats::add(&stats.proxy_header_errors, 1);
                tracing::debug!(listener = %listener.cfg.name, %peer, error = %e, "PROXY header rejected, closing");
                return None;
            }
        }
    }
    if let Err(why) = permit.bind_source(addrs.client.ip(), listener.cfg.maxconn_per_source) {
        stats.refused(why);
        tracing::debug!(listener = %listener.cfg.name, client = %addrs.client, "{why}, connection refused");
        return None;
    }
    Some(addrs)
}
