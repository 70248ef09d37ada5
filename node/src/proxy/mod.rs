//! The data plane: listeners opened and closed to match the current config
//! snapshot, and the proxies behind them (L7 for http, L4 for tcp and udp). A new
//! snapshot is visible to new connections at once; open connections finish under
//! the snapshot they started with.

pub mod l4;
pub mod l7;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Protocol};
use crate::health::HealthManager;
use crate::limits::conn::ConnLimiter;
use crate::runtime::RuntimeConfig;

pub use l4::ListenerStats;

/// Opens a listening TCP socket the way a load balancer needs it: SO_REUSEADDR
/// (restart without TIME_WAIT trouble), IP_FREEBIND (listen on a VIP this node does
/// not hold yet), a deep accept backlog. `answers` (HTTP): no quick ACK of a
/// client's first bytes, since the response carries the ACK: one packet fewer
/// per new connection, as HAProxy does on HTTP frontends. Accepted sockets
/// inherit it; a kernel without it keeps acking at once.
pub fn bind_tcp(addr: SocketAddr, answers: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        let _ = socket.set_freebind_v6(true);
    } else {
        let _ = socket.set_freebind_v4(true);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    if answers {
        // After listen(), which resets the listener's ACK state.
        let _ = socket.set_tcp_quickack(false);
    }
    TcpListener::from_std(socket.into())
}

struct Running {
    bind: SocketAddr,
    protocol: Protocol,
    cancel: CancellationToken,
    stats: Arc<ListenerStats>,
    lot: Option<Arc<l7::lot::IdleLot>>,
}

/// Owns the listeners, the current snapshot and the health checks.
pub struct DataPlane {
    runtime: ArcSwap<RuntimeConfig>,
    listeners: tokio::sync::Mutex<HashMap<String, Running>>,
    health: HealthManager,
    /// Every connection task, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Cancelled on shutdown: connections finish their current request and close.
    shutdown: CancellationToken,
    /// L7 state beside the snapshot: TLS, sticky tables, rate limits, metrics, access log.
    l7: l7::Plane,
    /// HTTP client connections open now (what a drain waits for).
    http_conns: Arc<AtomicUsize>,
}

/// Counts one HTTP client connection for as long as it lives.
impl DataPlane {
    /// Builds the data plane and opens every listener of `config`. Fails (opening
    /// nothing) if a listener cannot bind.
    pub async fn start(config: Arc<Config>) -> anyhow::Result<Arc<DataPlane>> {
        let runtime = RuntimeConfig::build(Arc::clone(&config), None);
        let plane = l7::Plane::new(crate::metrics::Metrics::new());
        let errors = plane.rebuild(&runtime);
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("; "));
        }
        let dp = Arc::new(DataPlane {
            runtime: ArcSwap::from_pointee(runtime),
            listeners: tokio::sync::Mutex::new(HashMap::new()),
            health: HealthManager::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            l7: plane,
            http_conns: Arc::new(AtomicUsize::new(0)),
        });
        let weak = Arc::downgrade(&dp);
        dp.l7.metrics.add_hook(move |m| {
            let Some(dp) = weak.upgrade() else { return };
            let Ok(running) = dp.listeners.try_lock() else { return };
            for (name, r) in running.iter() {
                for (reason, v) in
                    [("maxconn", &r.stats.refused_maxconn), ("maxconn_per_source", &r.stats.refused_per_source)]
                {
                    let c = m.refused.get_or_create(&crate::metrics::RefusedLabels { listener: name.clone(), reason });
                    let (want, have) = (ListenerStats::get(v), c.get());
                    if want > have {
                        c.inc_by(want - have);
                    }
                }
            }
        });
        dp.reconcile_listeners().await?;
        dp.health.reconcile(&dp.runtime.load());
        Ok(dp)
    }

    /// The current snapshot.
    pub fn runtime(&self) -> Arc<RuntimeConfig> {
        self.runtime.load_full()
    }

    /// Event counters of every open listener, by listener name.
    pub async fn listener_stats(&self) -> Vec<(String, Arc<ListenerStats>)> {
        let running = self.listeners.lock().await;
        running.iter().map(|(name, r)| (name.clone(), Arc::clone(&r.stats))).collect()
    }

    /// Swaps in a new config: new connections use it at once; listeners are opened
    /// and closed to match. A listener that fails to bind is logged and skipped;
    /// the rest of the config still applies.
    pub async fn apply(self: &Arc<Self>, config: Arc<Config>) -> anyhow::Result<()> {
        let next = RuntimeConfig::build(config, Some(&self.runtime.load()));
        for e in self.l7.rebuild(&next) {
            tracing::error!("reload: {e}");
        }
        self.runtime.store(Arc::new(next));
        self.health.reconcile(&self.runtime.load());
        self.reconcile_listeners().await
    }

    async fn reconcile_listeners(self: &Arc<Self>) -> anyhow::Result<()> {
        let rt = self.runtime.load_full();
        let mut running = self.listeners.lock().await;
        running.retain(|name, r| {
            let keep = rt.listeners.get(name).is_some_and(|l| l.cfg.bind == r.bind && l.cfg.protocol == r.protocol);
            if !keep {
                tracing::info!(listener = %name, bind = %r.bind, "closing listener");
                r.cancel.cancel();
            }
            keep
        });
        let mut errors = Vec::new();
        for (name, l) in &rt.listeners {
            if running.contains_key(name) {
                continue;
            }
            let cancel = self.shutdown.child_token();
            let stats = Arc::new(ListenerStats::default());
            // Long-idle keep-alive connections of a plain http listener wait here.
            let lot = match l.cfg.protocol {
                Protocol::Http => match l7::lot::IdleLot::start(cancel.clone(), &self.tasks) {
                    Ok(lot) => Some(lot),
                    Err(e) => {
                        tracing::warn!(listener = %name, error = %e, "no idle lot; idle connections keep their tasks");
                        None
                    }
                },
                _ => None,
            };
            let started = match l.cfg.protocol {
                Protocol::Udp => l4::udp::bind_udp(l.cfg.bind).map(|sock| {
                    let (dp, n) = (Arc::clone(self), name.clone());
                    let snapshot = move || dp.runtime.load().listeners.get(&n).cloned();
                    self.tasks.spawn(l4::udp::serve(sock, name.clone(), snapshot, Arc::clone(&stats), cancel.clone()));
                }),
                Protocol::Http | Protocol::Https | Protocol::Tcp => {
                    bind_tcp(l.cfg.bind, l.cfg.protocol != Protocol::Tcp).map(|sock| {
                        let dp = Arc::clone(self);
                        self.tasks.spawn(dp.accept_loop(
                            name.clone(),
                            sock,
                            Arc::clone(&stats),
                            lot.clone(),
                            cancel.clone(),
                        ));
                    })
                }
            };
            if let Err(e) = started {
                cancel.cancel();
                errors.push(format!("listener {name:?} cannot bind {}: {e}", l.cfg.bind));
                continue;
            }
            tracing::info!(listener = %name, bind = %l.cfg.bind, protocol = l.cfg.protocol.as_str(), "listening");
            running.insert(name.clone(), Running { bind: l.cfg.bind, protocol: l.cfg.protocol, cancel, stats, lot });
        }
        if errors.is_empty() { Ok(()) } else { Err(anyhow::anyhow!(errors.join("; "))) }
    }

    async fn accept_loop(
        self: Arc<Self>,
        name: String,
        sock: TcpListener,
        stats: Arc<ListenerStats>,
        lot: Option<Arc<l7::lot::IdleLot>>,
        cancel: CancellationToken,
    ) {
        let limiter = ConnLimiter::new();
        loop {
            let (stream, client) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = sock.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(listener = %name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Each connection runs under the snapshot current at accept time.
            let Some(listener) = self.runtime.load().listeners.get(&name).cloned() else { return };
            // Over a limit the connection is closed at once, never queued. With
            // accept_proxy the per-source count waits for the header to name the client.
            let mut permit = match limiter.admit(listener.cfg.maxconn) {
                Ok(p) => p,
                Err(why) => {
                    stats.refused(why);
                    tracing::debug!(listener = %name, %client, "{why}, connection refused");
                    continue;
                }
            };
            if !listener.cfg.accept_proxy {
                if let Err(why) = permit.bind_source(client.ip(), listener.cfg.maxconn_per_source) {
                    stats.refused(why);
                    tracing::debug!(listener = %name, %client, "{why}, connection refused");
                    continue;
                }
            }
            ListenerStats::add(&stats.accepted, 1);
            let stats = Arc::clone(&stats);
            if listener.cfg.protocol == Protocol::Tcp {
                self.tasks.spawn(l4::tcp::serve(stream, client, listener, stats, permit));
                continue;
            }
            let Some(plan) = self.l7.listener(&name) else { continue };
            l7::tune(&stream);
            let cancel = cancel.clone();
            let open = Arc::clone(&self.http_conns);
            let lot = lot.clone();
            self.tasks.spawn(async move {
                let Some(addrs) = l4::identify_client(&stream, client, &listener, &stats, &mut permit).await else {
                    return;
                };
                let hold = l7::Hold::new(permit, &open);
                if listener.cfg.protocol == Protocol::Https {
                    let ctx = l7::ConnCtx::new(plan, addrs.client, "https");
                    // Boxed: the TLS and hyper state is large, and this task's
                    // size is that of its largest branch, even on plain http.
                    Box::pin(l7::serve_tls(stream, ctx, hold, cancel)).await;
                } else {
                    let ctx = l7::ConnCtx::new(plan, addrs.client, "http");
                    l7::serve_http(stream, ctx, hold, lot, cancel).await;
                }
            });
        }
    }

    /// The node's metrics (rendered by the admin server and the admin panel).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.l7.metrics
    }

    /// The stick tables, for a replicator to feed (`upsert`, `remove`,
    /// `replace_all`) and observe (`subscribe`).
    pub fn sticky(&self) -> &Arc<crate::sticky::StickyStore> {
        &self.l7.sticky
    }

    /// Reopens the access log file (SIGUSR1, after logrotate).
    pub fn reopen_access_log(&self) {
        self.l7.reopen_access_log();
    }

    /// HTTP client connections open now (parked ones included).
    pub fn http_connections(&self) -> usize {
        self.http_conns.load(Ordering::Relaxed)
    }

    /// Keep-alive connections waiting in the listeners' idle lots now.
    pub async fn parked_connections(&self) -> usize {
        let running = self.listeners.lock().await;
        running.values().filter_map(|r| r.lot.as_ref()).map(|l| l.len()).sum()
    }

    /// The first half of a planned stop (used before a VIP moves away): stops
    /// accepting and asks every HTTP connection to close gracefully (hyper's
    /// graceful shutdown: an idle keep-alive connection closes at once, a busy one
    /// after its current response, which goes out with `Connection: close`), then
    /// waits until none is left or `bound` has passed. L4 (tcp) streams have no
    /// request boundary to close at and are not waited for. Returns the number of
    /// HTTP connections still open at the end. [`Self::shutdown`] finishes the stop.
    pub async fn drain(&self, bound: Duration) -> usize {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let open = self.http_connections();
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then
    /// returns. Returns true if everything finished in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.health.stop();
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HTTP listeners turn quick ACKs off, and the sockets they accept inherit
    /// it; a TCP listener keeps the kernel's default.
    #[tokio::test]
    async fn http_listeners_and_their_connections_do_not_quick_ack() {
        for answers in [true, false] {
            let l = bind_tcp("127.0.0.1:0".parse().unwrap(), answers).unwrap();
            assert_eq!(socket2::SockRef::from(&l).tcp_quickack().unwrap(), !answers, "listener, answers={answers}");
            let _client = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (accepted, _) = l.accept().await.unwrap();
            assert_eq!(
                socket2::SockRef::from(&accepted).tcp_quickack().unwrap(),
                !answers,
                "accepted, answers={answers}"
            );
        }
    }
}
