//! A real HTTP backend for tests: answers with its name, echoes headers and
//! bodies, streams large bodies, sleeps on request, and can be made unhealthy or
//! stopped. Every request is counted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub healthy: Arc<AtomicBool>,
    pub health_checks: Arc<AtomicU64>,
    /// Added before answering every non-health request, in ms.
    pub delay_ms: Arc<AtomicU64>,
    task: JoinHandle<()>,
    stop_tx: tokio::sync::watch::Sender<bool>,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

impl TestBackend {
    /// Starts a backend on an ephemeral 127.0.0.1 port.
    pub async fn start(name: &str) -> TestBackend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> TestBackend {
        let listener = TcpListener::bind(addr).await.expect("bind test backend");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let health_checks = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let st = State {
            name: name.to_string(),
            hits: hits.clone(),
            healthy: healthy.clone(),
            health_checks: health_checks.clone(),
            delay_ms: delay_ms.clone(),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { continue };
                let st = st.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| serve(req, st.clone(), peer));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    // Stopping the backend closes its open connections too, like a
                    // process that exits.
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
        TestBackend { name: name.to_string(), addr, hits, healthy, health_checks, delay_ms, task, stop_tx }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_healthy(&self, up: bool) {
        self.healthy.store(up, Ordering::Relaxed);
    }

    /// Stops accepting, closes the listening socket and every open connection.
    pub fn stop(&self) {
        self.task.abort();
        let _ = self.stop_tx.send(true);
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn query_u64(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key)?.1.parse().ok()
}

#[derive(Clone)]
struct State {
    name: String,
    hits: Arc<AtomicU64>,
    healthy: Arc<AtomicBool>,
    health_checks: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
}

async fn serve(mut req: Request<Incoming>, st: State, peer: SocketAddr) -> Result<Response<Body>, Infallible> {
    let name = st.name.clone();
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        st.health_checks.fetch_add(1, Ordering::Relaxed);
        let up = st.healthy.load(Ordering::Relaxed);
        let mut r = Response::new(full(if up { "ok" } else { "down" }));
        *r.status_mut() = if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        return Ok(r);
    }
    st.hits.fetch_add(1, Ordering::Relaxed);
    let delay = st.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(ms) = query_u64(&req, "sleep_ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let resp = match path.as_str() {
        // WebSocket-style upgrade: answers 101 and echoes raw bytes afterwards.
        "/ws" if req.headers().contains_key(http::header::UPGRADE) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let mut io = TokioIo::new(up);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
            r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("upgrade"));
            return Ok(r);
        }
        // Request headers as JSON, plus who connected.
        "/headers" => {
            let mut map = serde_json::Map::new();
            for (k, v) in req.headers() {
                map.insert(k.to_string(), serde_json::Value::String(v.to_str().unwrap_or("").to_string()));
            }
            map.insert("_peer".into(), serde_json::Value::String(peer.to_string()));
            map.insert("_backend".into(), serde_json::Value::String(name.clone()));
            map.insert("_uri".into(), serde_json::Value::String(req.uri().to_string()));
            map.insert("_version".into(), serde_json::Value::String(format!("{:?}", req.version())));
            Response::new(full(serde_json::Value::Object(map).to_string()))
        }
        // Streams the request body back as it arrives.
        "/echo" => {
            let body = req.into_body().map_err(std::io::Error::other).boxed();
            Response::new(body)
        }
        // Reads the whole body and answers its length and sha256.
        "/sink" => {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            let mut len = 0u64;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(d) = frame.data_ref() {
                    len += d.len() as u64;
                    hasher.update(d);
                }
            }
            Response::new(full(format!("{len} {}", hex::encode(hasher.finalize()))))
        }
        // Streams `bytes` deterministic bytes in 64 KiB chunks.
        "/big" => {
            let total = query_u64(&req, "bytes").unwrap_or(1 << 20);
            Response::new(stream_pattern(total))
        }
        "/status" => {
            let code = query_u64(&req, "code").unwrap_or(200) as u16;
            let mut r = Response::new(full(format!("{name} status {code}")));
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            r
        }
        _ => Response::new(full(name.clone())),
    };
    let mut resp = resp;
    resp.headers_mut().insert("x-backend", http::HeaderValue::from_str(&name).unwrap());
    Ok(resp)
}

/// The deterministic byte pattern `/big` serves: byte i = (i * 31 + 7) mod 251.
pub fn pattern_chunk(offset: u64, len: usize) -> Bytes {
    (0..len as u64).map(|i| ((offset + i) * 31 + 7) as u8 % 251).collect::<Vec<u8>>().into()
}

fn stream_pattern(total: u64) -> Body {
    let chunk = 64 * 1024u64;
    let stream = futures_util::stream::unfold(0u64, move |off| async move {
        if off >= total {
            return None;
        }
        let n = chunk.min(total - off) as usize;
        Some((Ok::<_, std::io::Error>(Frame::data(pattern_chunk(off, n))), off + n as u64))
    });
    BodyExt::boxed(StreamBody::new(stream))
}
