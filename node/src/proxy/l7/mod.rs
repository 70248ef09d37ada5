//! The HTTP proxy: hyper server connections (HTTP/1.1 and HTTP/2 cleartext), route
//! selection, the backend choice with retry on connect failure, header rewriting,
//! streaming in both directions and WebSocket upgrades.

mod body;
mod headers;
pub mod route;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use body::Finish;
pub use body::ProxyBody;

use crate::balance::hash_key;
use crate::clock;
use crate::config::HashKey;
use crate::runtime::{ListenerRuntime, PoolRuntime, Tried};

/// What every request on one client connection shares.
pub struct ConnCtx {
    pub listener: Arc<ListenerRuntime>,
    pub client: SocketAddr,
    pub proto: &'static str,
}

/// Serves one accepted client connection until it closes or `cancel` fires, in
/// which case in-flight requests finish and the connection then closes.
pub async fn serve_connection<I>(io: I, ctx: Arc<ConnCtx>, cancel: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.listener.cfg.client_header_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let svc_ctx = Arc::clone(&ctx);
    let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&svc_ctx)));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(client = %ctx.client, error = %e, "client connection ended with an error");
            }
        }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Prepares an accepted TCP socket for HTTP.
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
}

fn local(status: StatusCode, msg: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn request_key(pool: &PoolRuntime, req: &Request<Incoming>, client: SocketAddr) -> u64 {
    let ip_key = || match client.ip() {
        std::net::IpAddr::V4(v4) => hash_key(&v4.octets()),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_key(&v4.octets()),
            None => hash_key(&v6.octets()),
        },
    };
    match pool.hash_key() {
        HashKey::SourceIp => ip_key(),
        HashKey::Uri => hash_key(req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").as_bytes()),
        HashKey::Header(name) => req.headers().get(name).map(|v| hash_key(v.as_bytes())).unwrap_or_else(ip_key),
        HashKey::Cookie(name) => {
            cookie_value(req.headers(), name).map(|v| hash_key(v.as_bytes())).unwrap_or_else(ip_key)
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request handler: never fails; problems become 4xx/5xx responses.
pub async fn handle(mut req: Request<Incoming>, ctx: Arc<ConnCtx>) -> Result<Response<ProxyBody>, Infallible> {
    let Some(pool) = route::select(&ctx.listener, req.method(), req.uri(), req.headers()).cloned() else {
        return Ok(local(StatusCode::NOT_FOUND, "404 Not Found: no route for this request\n"));
    };
    let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let key = if pool.uses_key() { request_key(&pool, &req, ctx.client) } else { 0 };

    let (mut parts, body) = req.into_parts();
    let host_value = match parts.headers.get(header::HOST) {
        Some(h) => h.to_str().ok().map(str::to_owned),
        None => parts.uri.authority().map(|a| a.as_str().to_owned()),
    };
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if !parts.headers.contains_key(header::HOST) {
        if let Some(v) = host_value.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
            parts.headers.insert(header::HOST, v);
        }
    }
    headers::add_forwarding(&mut parts.headers, ctx.client.ip(), ctx.proto, host_value.as_deref());
    parts.uri = match parts.uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };
    parts.version = Version::HTTP_11;
    let mut req = Some(Request::from_parts(parts, body));

    let now = clock::now_ms();
    let mut tried = Tried::default();
    let mut last_status = None;
    for _attempt in 0..=pool.cfg.retries {
        let Some(i) = pool.choose(key, &tried, now) else { break };
        tried.insert(i);
        let backend = &pool.backends[i];
        let host = &pool.hosts[i];
        backend.state.acquire();
        backend.state.stats.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        // A pooled connection may turn out closed before the request was written;
        // then the request comes back and one fresh connection is tried.
        let mut pooled = if upgrade { None } else { host.checkout().await };
        let started = Instant::now();
        let result = loop {
            let reused = pooled.is_some();
            let mut sender = match pooled.take() {
                Some(s) => s,
                None => match host.connect(pool.cfg.connect_timeout, upgrade).await {
                    Ok(s) => s,
                    Err(e) => break Err((e.to_string(), StatusCode::BAD_GATEWAY, true)),
                },
            };
            let Some(r) = req.take() else {
                break Err(("request body already consumed".into(), StatusCode::BAD_GATEWAY, false));
            };
            match tokio::time::timeout(pool.cfg.response_timeout, sender.try_send_request(r)).await {
                Err(_) => break Err(("timed out waiting for response".into(), StatusCode::GATEWAY_TIMEOUT, false)),
                Ok(Ok(resp)) => break Ok((resp, sender)),
                Ok(Err(mut e)) => {
                    if let (true, Some(r)) = (reused, e.take_message()) {
                        req = Some(r);
                        continue;
                    }
                    break Err((e.into_error().to_string(), StatusCode::BAD_GATEWAY, false));
                }
            }
        };
        match result {
            Ok((mut resp, sender)) => {
                backend.state.observe_latency_us(started.elapsed().as_micros() as u64);
                backend.state.record_success();
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(client_upgrade) = client_upgrade {
                        let upstream_upgrade = hyper::upgrade::on(&mut resp);
                        tokio::spawn(tunnel(client_upgrade, upstream_upgrade, backend.addr));
                    }
                }
                let (mut rparts, rbody) = resp.into_parts();
                let keep_upgrade = rparts.status == StatusCode::SWITCHING_PROTOCOLS;
                headers::strip_hop_by_hop(&mut rparts.headers, keep_upgrade);
                let conn = (!upgrade).then(|| (Arc::clone(host), sender));
                let finish = Finish { state: Arc::clone(&backend.state), conn };
                return Ok(Response::from_parts(rparts, ProxyBody::Upstream { body: rbody, finish: Some(finish) }));
            }
            Err((why, status, connect_failed)) => {
                backend.state.release();
                tracing::warn!(pool = %pool.cfg.name, backend = %backend.addr, error = %why, "upstream attempt failed");
                if let Some(p) = &pool.cfg.passive {
                    if backend.state.record_failure(clock::now_ms(), p.max_fails, p.fail_timeout.as_millis() as u64) {
                        tracing::warn!(pool = %pool.cfg.name, backend = %backend.addr, "backend ejected by passive health check");
                    }
                } else {
                    backend.state.stats.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                last_status = Some(status);
                // Only a failed connect is safe to retry: the request was not sent.
                if !connect_failed || req.is_none() {
                    break;
                }
            }
        }
    }
    Ok(match last_status {
        Some(StatusCode::GATEWAY_TIMEOUT) => local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"),
        Some(_) => local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
        None => local(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable: no backend available\n"),
    })
}

/// Relays bytes between an upgraded client connection and an upgraded upstream one.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade, backend: SocketAddr) {
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(%backend, error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%backend, error = %e, "upgraded connection ended");
    }
}
