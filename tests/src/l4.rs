//! Helpers for the L4 tests: TCP backends (echo, named echo, PROXY-header reporter,
//! bulk streamer with sha256), a UDP echo backend, and the proxy run in-process on
//! 127.0.0.1. Every server is stopped when its handle drops.
//!
//! The PROXY header parser here is written by hand on purpose: it checks the bytes
//! on the wire independently of the `ppp` crate the proxy uses.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorumlb::config::Config;
use quorumlb::proxy::DataPlane;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{AbortHandle, JoinHandle};

/// What a `TcpBackend` does with each connection.
#[derive(Debug, Clone, Copy)]
pub enum Behavior {
    /// Echoes every byte; on the client's EOF finishes echoing and closes.
    Echo,
    /// Writes `"<name>\n"` first, then echoes.
    NamedEcho,
    /// Parses a PROXY header (v1 or v2) and answers one line describing it
    /// (`"v1 <src> <dst>"`, `"v2 <src> <dst>"`, `"none"` or `"bad: why"`), then echoes.
    ProxyReport,
    /// Reads to EOF hashing what arrives, and at the same time sends `send` bytes of
    /// `pattern(seed)` then closes its write side. Results go to `TcpBackend::streams`.
    Stream { send: u64, seed: u64 },
}

/// What a `Stream` backend saw on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamResult {
    pub received: u64,
    pub received_sha256: String,
    pub sent: u64,
    pub sent_sha256: String,
}

pub struct TcpBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    /// Connections open now.
    pub open: Arc<AtomicU64>,
    pub streams: Arc<Mutex<Vec<StreamResult>>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    task: JoinHandle<()>,
}

impl TcpBackend {
    pub async fn start(name: &str, behavior: Behavior) -> TcpBackend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap(), behavior).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr, behavior: Behavior) -> TcpBackend {
        let listener = TcpListener::bind(addr).await.expect("bind tcp backend");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicU64::new(0));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::new(Mutex::new(Vec::new()));
        let (a, o, s, c, n) = (accepted.clone(), open.clone(), streams.clone(), conns.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, s, n) = (o.clone(), s.clone(), n.clone());
                let h = tokio::spawn(async move {
                    let _ = serve(stream, behavior, &n, &s).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
                let mut c = c.lock().unwrap();
                c.retain(|h| !h.is_finished());
                c.push(h.abort_handle());
            }
        });
        TcpBackend { name: name.to_string(), addr, accepted, open, streams, conns, task }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    /// Like a crashed process: the port closes and every open connection drops.
    pub fn kill(&self) {
        self.task.abort();
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve(
    mut stream: TcpStream,
    behavior: Behavior,
    name: &str,
    streams: &Mutex<Vec<StreamResult>>,
) -> std::io::Result<()> {
    match behavior {
        Behavior::Echo => echo(stream, Vec::new()).await,
        Behavior::NamedEcho => {
            stream.write_all(format!("{name}\n").as_bytes()).await?;
            echo(stream, Vec::new()).await
        }
        Behavior::ProxyReport => {
            let (line, rest) = read_proxy_header(&mut stream).await?;
            stream.write_all(format!("{line}\n").as_bytes()).await?;
            echo(stream, rest).await
        }
        Behavior::Stream { send, seed } => {
            let (mut r, mut w) = stream.into_split();
            let reader = tokio::spawn(async move { hash_to_eof(&mut r).await });
            let (sent, sent_sha256) = send_pattern(&mut w, send, seed).await?;
            w.shutdown().await?;
            let (received, received_sha256) = reader.await.map_err(std::io::Error::other)??;
            streams.lock().unwrap().push(StreamResult { received, received_sha256, sent, sent_sha256 });
            Ok(())
        }
    }
}

async fn echo(stream: TcpStream, first: Vec<u8>) -> std::io::Result<()> {
    let (mut r, mut w) = stream.into_split();
    w.write_all(&first).await?;
    tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await
}

/// Reads a PROXY header by hand. Returns the description line and any payload
/// bytes read past the header.
async fn read_proxy_header(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if buf.len() >= 6 && buf.starts_with(b"PROXY ") {
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                let rest = buf[end + 2..].to_vec();
                let parts: Vec<&str> = line.split(' ').collect();
                let desc = match parts.as_slice() {
                    ["PROXY", "TCP4" | "TCP6", src, dst, sp, dp] => {
                        let v6 = parts[1] == "TCP6";
                        let fmt =
                            |ip: &str, port: &str| if v6 { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
                        format!("v1 {} {}", fmt(src, sp), fmt(dst, dp))
                    }
                    _ => format!("bad: {line}"),
                };
                return Ok((desc, rest));
            }
            if buf.len() > 107 {
                return Ok(("bad: v1 too long".into(), Vec::new()));
            }
        } else if buf.len() >= 16 && buf.starts_with(SIG) {
            let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
            if buf.len() >= 16 + len {
                let body = &buf[16..16 + len];
                let desc = match (buf[12], buf[13]) {
                    (0x21, 0x11) if len >= 12 => {
                        let ip = |o: usize| Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3]);
                        let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                        format!(
                            "v2 {} {}",
                            SocketAddr::new(ip(0).into(), port(8)),
                            SocketAddr::new(ip(4).into(), port(10))
                        )
                    }
                    (0x21, 0x21) if len >= 36 => {
                        let ip = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&body[o..o + 16]).unwrap());
                        let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                        format!(
                            "v2 {} {}",
                            SocketAddr::new(ip(0).into(), port(32)),
                            SocketAddr::new(ip(16).into(), port(34))
                        )
                    }
                    (vc, fam) => format!("bad: v2 version/command {vc:#x} family {fam:#x}"),
                };
                return Ok((desc, buf[16 + len..].to_vec()));
            }
        } else if buf.len() >= 16
            || (!buf.is_empty()
                && !b"PROXY ".starts_with(&buf[..buf.len().min(6)])
                && !SIG.starts_with(&buf[..buf.len().min(12)]))
        {
            return Ok(("none".into(), buf));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(("bad: eof".into(), buf));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A deterministic byte stream with a period (4 MiB + 7) that no power-of-two
/// chunking lines up with, so any lost, repeated or reordered chunk changes the hash.
pub struct Pattern {
    block: Arc<Vec<u8>>,
    pos: usize,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        let block = (0..(4 << 20) + 7)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Pattern { block: Arc::new(block), pos: 0 }
    }

    /// The next `n` bytes, at most up to the end of the period.
    pub fn next_chunk(&mut self, n: usize) -> &[u8] {
        let start = self.pos;
        let end = (start + n).min(self.block.len());
        self.pos = if end == self.block.len() { 0 } else { end };
        &self.block[start..end]
    }
}

/// Writes `total` bytes of `Pattern::new(seed)`; returns (bytes, sha256 hex).
pub async fn send_pattern<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    total: u64,
    seed: u64,
) -> std::io::Result<(u64, String)> {
    let mut pattern = Pattern::new(seed);
    let mut hasher = Sha256::new();
    let mut sent = 0u64;
    while sent < total {
        let want = (total - sent).min(256 * 1024) as usize;
        let chunk = pattern.next_chunk(want);
        w.write_all(chunk).await?;
        hasher.update(chunk);
        sent += chunk.len() as u64;
    }
    Ok((sent, hex::encode(hasher.finalize())))
}

/// Reads to EOF; returns (bytes, sha256 hex).
pub async fn hash_to_eof<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).await?;
        if k == 0 {
            return Ok((n, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
}

/// A UDP backend answering every datagram with `"<name>|<payload>"`.
pub struct UdpBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub datagrams: Arc<AtomicU64>,
    /// Distinct source addresses seen (one per flow the proxy opened).
    pub peers: Arc<Mutex<HashSet<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl UdpBackend {
    pub async fn start(name: &str) -> UdpBackend {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp backend");
        let addr = sock.local_addr().unwrap();
        let datagrams = Arc::new(AtomicU64::new(0));
        let peers = Arc::new(Mutex::new(HashSet::new()));
        let (d, p, n) = (datagrams.clone(), peers.clone(), name.to_string());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((len, from)) = sock.recv_from(&mut buf).await else { continue };
                d.fetch_add(1, Ordering::SeqCst);
                p.lock().unwrap().insert(from);
                let mut reply = format!("{n}|").into_bytes();
                reply.extend_from_slice(&buf[..len]);
                let _ = sock.send_to(&reply, from).await;
            }
        });
        UdpBackend { name: name.to_string(), addr, datagrams, peers, task }
    }

    pub fn datagrams(&self) -> u64 {
        self.datagrams.load(Ordering::SeqCst)
    }

    pub fn peer_count(&self) -> usize {
        self.peers.lock().unwrap().len()
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the data plane in this process from config text.
pub async fn start_proxy(config: &str) -> Arc<DataPlane> {
    let cfg = Config::parse(config, "test.toml").unwrap_or_else(|e| panic!("config:\n{e}\n{config}"));
    DataPlane::start(Arc::new(cfg)).await.expect("start data plane")
}

/// Applies new config text to a running data plane.
pub async fn reload(dp: &Arc<DataPlane>, config: &str) {
    let cfg = Config::parse(config, "test.toml").unwrap_or_else(|e| panic!("config:\n{e}\n{config}"));
    dp.apply(Arc::new(cfg)).await.expect("apply config");
}

/// A free UDP port on 127.0.0.1 (bound then released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// `[[pool.backend]]` entries for the given addresses.
pub fn backends_toml(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| format!("  [[pool.backend]]\n  address = \"{a}\"\n")).collect()
}

/// Reads one `\n`-terminated line (without the newline), bounded in time.
pub async fn read_line(stream: &mut TcpStream, timeout: Duration) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(timeout, async {
        loop {
            let n = stream.read(&mut byte).await?;
            if n == 0 || byte[0] == b'\n' {
                return Ok::<_, std::io::Error>(String::from_utf8_lossy(&line).into_owned());
            }
            line.push(byte[0]);
        }
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// True when the peer closed `stream` (EOF or reset) within `timeout`, reading and
/// discarding anything before that.
pub async fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(timeout, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}
