//! The data plane: listeners opened and closed to match the current config
//! snapshot, and the L7 proxy behind them. A new snapshot is visible to new
//! connections at once; open connections finish under the snapshot they started
//! with.

pub mod l7;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Protocol};
use crate::health::HealthManager;
use crate::runtime::RuntimeConfig;

/// Opens a listening TCP socket the way a load balancer needs it: SO_REUSEADDR
/// (restart without TIME_WAIT trouble), IP_FREEBIND (listen on a VIP this node does
/// not hold yet), a deep accept backlog.
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
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
    TcpListener::from_std(socket.into())
}

struct Running {
    bind: SocketAddr,
    protocol: Protocol,
    cancel: CancellationToken,
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
}

impl DataPlane {
    /// Builds the data plane and opens every listener of `config`. Fails (opening
    /// nothing) if a listener cannot bind.
    pub async fn start(config: Arc<Config>) -> anyhow::Result<Arc<DataPlane>> {
        let runtime = RuntimeConfig::build(Arc::clone(&config), None);
        let dp = Arc::new(DataPlane {
            runtime: ArcSwap::from_pointee(runtime),
            listeners: tokio::sync::Mutex::new(HashMap::new()),
            health: HealthManager::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        dp.reconcile_listeners().await?;
        dp.health.reconcile(&dp.runtime.load());
        Ok(dp)
    }

    /// The current snapshot.
    pub fn runtime(&self) -> Arc<RuntimeConfig> {
        self.runtime.load_full()
    }

    /// Swaps in a new config: new connections use it at once; listeners are opened
    /// and closed to match. A listener that fails to bind is logged and skipped;
    /// the rest of the config still applies.
    pub async fn apply(self: &Arc<Self>, config: Arc<Config>) -> anyhow::Result<()> {
        let next = RuntimeConfig::build(config, Some(&self.runtime.load()));
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
            let sock = match bind_tcp(l.cfg.bind) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("listener {name:?} cannot bind {}: {e}", l.cfg.bind));
                    continue;
                }
            };
            let cancel = self.shutdown.child_token();
            tracing::info!(listener = %name, bind = %l.cfg.bind, protocol = ?l.cfg.protocol, "listening");
            let dp = Arc::clone(self);
            self.tasks.spawn(dp.accept_loop(name.clone(), sock, cancel.clone()));
            running.insert(name.clone(), Running { bind: l.cfg.bind, protocol: l.cfg.protocol, cancel });
        }
        if errors.is_empty() { Ok(()) } else { Err(anyhow::anyhow!(errors.join("; "))) }
    }

    async fn accept_loop(self: Arc<Self>, name: String, sock: TcpListener, cancel: CancellationToken) {
        let active = Arc::new(AtomicU64::new(0));
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
            let maxconn = listener.cfg.maxconn;
            if maxconn > 0 && active.load(Ordering::Relaxed) >= maxconn {
                tracing::debug!(listener = %name, %client, "maxconn reached, connection refused");
                drop(stream);
                continue;
            }
            active.fetch_add(1, Ordering::Relaxed);
            let guard = ActiveGuard(Arc::clone(&active));
            l7::tune(&stream);
            let ctx = Arc::new(l7::ConnCtx { listener, client, proto: "http" });
            let cancel = cancel.clone();
            self.tasks.spawn(async move {
                let _guard = guard;
                l7::serve_connection(stream, ctx, cancel).await;
            });
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

struct ActiveGuard(Arc<AtomicU64>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
