//! Upstream HTTP/1.1 connections: connect with a timeout, and keep idle
//! keep-alive connections per backend (nginx `keepalive N`, `keepalive_timeout`).
//! A connection goes back to the idle list only after its response body was read
//! to the end, so a reused connection is always at a message boundary. With
//! `[pool.tls]` the connection is TLS (rustls); the connector is set per pool by
//! the L7 plane and swapping it empties the idle list.
//!
//! Two idle lists: hyper's client connections (requests with a body, TLS
//! backends) and bare sockets for our own client (`raw`, requests without a
//! body to plain-TCP backends). `keepalive N` bounds each list.

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
    raw_idle: Mutex<Vec<(TcpStream, Instant)>>,
    max_idle: AtomicUsize,
    idle_timeout_ms: AtomicU64,
    tls: ArcSwapOption<UpstreamConnector>,
}

impl HostPool {
    pub fn new(addr: SocketAddr) -> Self {
        HostPool {
            addr,
            idle: Mutex::new(Vec::new()),
            raw_idle: Mutex::new(Vec::new()),
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
            self.raw_idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
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
        self.idle.lock().map(|v| v.len()).unwrap_or(0) + self.raw_idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Plain TCP towards this backend: our own HTTP/1.1 client may serve it.
    pub fn is_plain(&self) -> bool {
        self.tls.load().is_none()
    }

    /// Takes an idle bare connection, newest first, skipping those past the idle
    /// timeout and those the backend closed or wrote to while idle.
    pub fn checkout_raw(&self) -> Option<TcpStream> {
        let timeout = Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed));
        let mut idle = self.raw_idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((stream, since)) = idle.pop() {
            if since.elapsed() < timeout && super::raw::is_clean(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Returns a bare connection after a complete exchange. Connections past the
    /// idle timeout at the old end of the list are closed on the way.
    pub fn checkin_raw(&self, stream: TcpStream) {
        let max = self.max_idle.load(Ordering::Relaxed);
        let timeout = Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed));
        let mut idle = self.raw_idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.first().is_some_and(|(_, since)| since.elapsed() >= timeout) {
            let stale = idle.iter().take_while(|(_, since)| since.elapsed() >= timeout).count();
            idle.drain(..stale);
        }
        if idle.len() < max {
            idle.push((stream, Instant::now()));
        }
    }

    /// Opens a bare connection for our own client.
    pub async fn connect_raw(&self, timeout: Duration) -> Result<TcpStream, ConnectError> {
        let addr = self.addr;
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => Err(ConnectError::Timeout(addr)),
            Ok(Err(e)) => Err(ConnectError::Io(addr, e)),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
        }
    }

    /// Opens a new connection. `upgrades` keeps the socket usable after a 101
    /// response (WebSocket); such connections are never pooled.
    pub async fn connect(&self, timeout: Duration, upgrades: bool) -> Result<Sender, ConnectError> {
        let addr = self.addr;
        let stream = self.connect_raw(timeout).await?;
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
