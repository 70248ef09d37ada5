//! Upstream HTTP/1.1 connections: connect with a timeout, and keep idle
//! keep-alive connections per backend (nginx `keepalive N`, `keepalive_timeout`).
//! A connection goes back to the idle list only after its response body was read
//! to the end, so a reused connection is always at a message boundary. With
//! `[pool.tls]` the connection is TLS (rustls); the connector is set per pool by
//! the L7 plane and swapping it empties the idle list.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::body::RequestBody;
use crate::tls::UpstreamConnector;

pub type Sender = SendRequest<RequestBody>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connect to {0} failed: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("HTTP handshake with {0} failed: {1}")]
    Handshake(SocketAddr, hyper::Error),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(SocketAddr, std::io::Error),
}

/// Idle connections to one backend address.
pub struct HostPool {
    addr: SocketAddr,
    idle: Mutex<Vec<(Sender, Instant)>>,
    max_idle: AtomicUsize,
    idle_timeout_ms: AtomicU64,
    tls: ArcSwapOption<UpstreamConnector>,
}

impl HostPool {
    pub fn new(addr: SocketAddr) -> Self {
        HostPool {
            addr,
            idle: Mutex::new(Vec::new()),
            max_idle: AtomicUsize::new(64),
            idle_timeout_ms: AtomicU64::new(60_000),
            tls: ArcSwapOption::empty(),
        }
    }

    /// Sets TLS towards this backend (`None` = plain TCP). A different setting
    /// drops the idle connections made under the old one.
    pub fn set_tls(&self, tls: Option<Arc<UpstreamConnector>>) {
        let old = self.tls.swap(tls.clone());
        let same = match (&old, &tls) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    pub fn configure(&self, max_idle: usize, idle_timeout: Duration) {
        self.max_idle.store(max_idle, Ordering::Relaxed);
        self.idle_timeout_ms.store(idle_timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// Takes a live idle connection, newest first (warm sockets; the oldest ones
    /// age out). A connection checked in a moment ago may still be finishing its
    /// previous exchange inside hyper, so this waits for it to be ready rather
    /// than discarding it; a closed one fails that wait and is dropped.
    pub async fn checkout(&self) -> Option<Sender> {
        let timeout = Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed));
        loop {
            let (mut sender, since) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if sender.is_closed() || since.elapsed() >= timeout {
                continue;
            }
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Returns a connection after a complete exchange.
    pub fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let max = self.max_idle.load(Ordering::Relaxed);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < max {
            idle.push((sender, Instant::now()));
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Opens a new connection. `upgrades` keeps the socket usable after a 101
    /// response (WebSocket); such connections are never pooled.
    pub async fn connect(&self, timeout: Duration, upgrades: bool) -> Result<Sender, ConnectError> {
        let addr = self.addr;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout(addr)),
            Ok(Err(e)) => return Err(ConnectError::Io(addr, e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let tls = self.tls.load_full();
        match tls {
            None => handshake(stream, addr, upgrades).await,
            Some(t) => {
                let name = t.sni.clone().unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                let stream = match tokio::time::timeout(timeout, t.connector.connect(name, stream)).await {
                    Err(_) => return Err(ConnectError::Timeout(addr)),
                    Ok(Err(e)) => return Err(ConnectError::Tls(addr, e)),
                    Ok(Ok(s)) => s,
                };
                handshake(stream, addr, upgrades).await
            }
        }
    }
}

async fn handshake<T>(io: T, addr: SocketAddr, upgrades: bool) -> Result<Sender, ConnectError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        http1::Builder::new().handshake(TokioIo::new(io)).await.map_err(|e| ConnectError::Handshake(addr, e))?;
    if upgrades {
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(backend = %addr, error = %e, "upstream connection ended");
            }
        });
    } else {
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(backend = %addr, error = %e, "upstream connection ended");
            }
        });
    }
    Ok(sender)
}
