//! The HTTP proxy: client connections (plain http through our own HTTP/1.1 fast
//! path in `h1`, which hands anything else to hyper; hyper for HTTP/2 and after a
//! TLS handshake), then per request: https redirect, rate limits, route
//! selection, body size limit, sticky lookup, the backend choice with retry on
//! connect failure, header rewriting, streaming in both directions and WebSocket
//! upgrades. Counting and the access log happen when the response body is done
//! (`body::Done`). The per-snapshot state a request reads lives in `plan`.

mod body;
mod h1;
mod headers;
pub mod lot;
pub mod plan;
mod raw;
pub mod route;
mod slot;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub use body::ProxyBody;
use body::{ClientBody, Done, Finish, RequestBody};
pub use plan::{ListenerPlan, Plane};

use crate::balance::hash_key;
use crate::clock;
use crate::config::HashKey;
use crate::limits::conn::ConnPermit;
use crate::limits::rate::retry_after_secs;
use crate::metrics::access_log::AccessRecord;
use crate::runtime::{PoolRuntime, Tried};
use upstream::{HostPool, Sender};

/// What every request on one client connection shares.
pub struct ConnCtx {
    /// The listener's plan as of this connection's last request: a keep-alive
    /// connection moves to the newest plan at its next request (`current`), so a
    /// config change reaches open connections too.
    plan: ArcSwap<ListenerPlan>,
    pub client: SocketAddr,
    pub proto: &'static str,
}

impl ConnCtx {
    pub fn new(plan: Arc<ListenerPlan>, client: SocketAddr, proto: &'static str) -> ConnCtx {
        ConnCtx { plan: ArcSwap::new(plan), client, proto }
    }

    /// The newest plan of this listener (one atomic load when nothing changed).
    pub fn current(&self) -> Arc<ListenerPlan> {
        let mut p = self.plan.load_full();
        if p.next.load().is_none() {
            return p;
        }
        while let Some(n) = p.next.load_full() {
            p = n;
        }
        self.plan.store(Arc::clone(&p));
        p
    }

    /// The plan the connection started with or last moved to, for connection-level
    /// settings (timeouts, TLS, counters) that a request does not change.
    pub fn plan(&self) -> arc_swap::Guard<Arc<ListenerPlan>> {
        self.plan.load()
    }
}

/// What a client connection holds for its whole life, wherever it waits (a task
/// or the idle lot): its admission slot and its place in the open-connection count.
pub struct Hold {
    _permit: ConnPermit,
    _counted: Counted,
}

impl Hold {
    pub fn new(permit: ConnPermit, open: &Arc<AtomicUsize>) -> Hold {
        open.fetch_add(1, Ordering::Relaxed);
        Hold { _permit: permit, _counted: Counted(Arc::clone(open)) }
    }
}

/// One open http connection in the data plane's count.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the request handler keeps per connection: its context and what the
/// connection holds until it closes. Kept small: a connection in the idle lot
/// holds exactly this (by value) and its socket.
struct Conn {
    ctx: ConnCtx,
    /// The listener's idle lot (plain http only).
    lot: Option<Arc<lot::IdleLot>>,
    _active: ActiveConn,
    _hold: Hold,
}

impl Conn {
    fn new(ctx: ConnCtx, hold: Hold, lot: Option<Arc<lot::IdleLot>>) -> Arc<Conn> {
        let active = ActiveConn::new(&ctx.plan());
        Arc::new(Conn { ctx, lot, _active: active, _hold: hold })
    }
}

/// The hyper server settings of a listener, built once per configuration
/// snapshot and shared by its connections.
pub fn server_builder(cfg: &crate::config::Listener) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.client_header_timeout)
        .max_buf_size(cfg.http.max_header_bytes.max(8192))
        .max_headers(cfg.http.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(cfg.http.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Counts a client connection as active for as long as it lives.
struct ActiveConn(Arc<ListenerPlan>);

impl ActiveConn {
    fn new(plan: &Arc<ListenerPlan>) -> Self {
        plan.metrics.connections.inc();
        plan.metrics.active.inc();
        ActiveConn(Arc::clone(plan))
    }
}

impl Drop for ActiveConn {
    fn drop(&mut self) {
        self.0.metrics.active.dec();
    }
}

/// Serves one accepted client connection with hyper (HTTP/1.1 or HTTP/2) until it
/// closes or `cancel` fires, in which case in-flight requests finish and the
/// connection then closes.
///
/// Slow clients: `client_header_timeout` bounds the time to receive a request
/// head (and, in hyper, the idle time between keep-alive requests). That is how a
/// minimum header rate is enforced: a client trickling a head byte by byte is cut
/// when the timeout passes, whatever its rate.
pub async fn serve_connection<I>(io: I, ctx: ConnCtx, hold: Hold, cancel: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    serve_hyper(io, Conn::new(ctx, hold, None), cancel).await;
}

/// Serves a plain-TCP http connection: the HTTP/1.1 fast path, which gives the
/// connection to hyper when it meets something it does not serve itself, and
/// parks it in `lot` when it idles.
pub async fn serve_http(
    stream: TcpStream,
    ctx: ConnCtx,
    hold: Hold,
    lot: Option<Arc<lot::IdleLot>>,
    cancel: CancellationToken,
) {
    h1::serve(stream, Conn::new(ctx, hold, lot), cancel).await;
}

async fn serve_hyper<I>(io: I, conn: Arc<Conn>, cancel: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let this = Arc::clone(&conn);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let conn = Arc::clone(&this);
        async move {
            let mut resp = handle(req.map(ClientBody::from), &conn).await;
            // hyper writes only the map: the backend's fields go into it.
            if let Some(fields) = resp.body_mut().take_fields() {
                let added = std::mem::take(resp.headers_mut());
                fields.append_to(resp.headers_mut());
                // Fields added here (a sticky cookie) come after the backend's.
                let mut name = None;
                for (n, value) in added {
                    name = n.or(name);
                    if let Some(n) = &name {
                        resp.headers_mut().append(n.clone(), value);
                    }
                }
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let ctx = &conn.ctx;
    let plan = ctx.current();
    let conn = plan.server.serve_connection_with_upgrades(TokioIo::new(io), service);
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

/// Serves an https connection: the TLS handshake (bounded by the header timeout,
/// so a silent client cannot hold a slot), then HTTP as usual.
pub async fn serve_tls(stream: TcpStream, ctx: ConnCtx, hold: Hold, cancel: CancellationToken) {
    let Some(tls) = ctx.plan().tls.clone() else {
        tracing::warn!(listener = %ctx.plan().name, "https listener has no usable certificate; connection closed");
        return;
    };
    let timeout = ctx.plan().rt.cfg.client_header_timeout;
    let stream = tokio::select! {
        r = tokio::time::timeout(timeout, tls.acceptor.accept(stream)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                ctx.plan().metrics.tls_failures.inc();
                tracing::debug!(client = %ctx.client, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                ctx.plan().metrics.tls_failures.inc();
                tracing::debug!(client = %ctx.client, "TLS handshake timed out");
                return;
            }
        },
        _ = cancel.cancelled() => return,
    };
    serve_connection(stream, ctx, hold, cancel).await;
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

fn request_key<B>(pool: &PoolRuntime, req: &Request<B>, client: SocketAddr) -> u64 {
    let ip_key = || crate::balance::source_ip_key(client.ip());
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

fn too_many(wait: std::time::Duration) -> Response<ProxyBody> {
    let mut r = local(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests\n");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
    r
}

/// 308 to the same URL on https (`redirect_https`).
fn redirect_https<B>(req: &Request<B>, port: u16) -> Response<ProxyBody> {
    let Some(host) = route::request_host(req.uri(), req.headers()) else {
        return local(StatusCode::BAD_REQUEST, "400 Bad Request: no Host\n");
    };
    let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = if port == 443 { format!("https://{host}{pq}") } else { format!("https://{host}:{port}{pq}") };
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            let mut r = local(StatusCode::PERMANENT_REDIRECT, "308 Permanent Redirect\n");
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => local(StatusCode::BAD_REQUEST, "400 Bad Request: bad Host\n"),
    }
}

/// The request handler of both connection servers: never fails; problems become
/// 4xx/5xx responses. Every response, local or proxied, is counted and logged when
/// its body is done.
async fn handle(req: Request<ClientBody>, conn: &Conn) -> Response<ProxyBody> {
    let ctx = &conn.ctx;
    let plan = &ctx.current();
    let log = plan.access_log.as_ref().map(|l| {
        let host = match req.headers().get(header::HOST) {
            Some(h) => Some(h.clone()),
            None => req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        let rec = AccessRecord {
            time: SystemTime::now(),
            listener: Arc::clone(&plan.name),
            client: ctx.client,
            method: req.method().clone(),
            host,
            path: req.uri().path_and_query().cloned(),
            status: 0,
            bytes: 0,
            upstream: None,
            upstream_time: None,
            total_time: std::time::Duration::ZERO,
        };
        (Arc::clone(l), Box::new(rec))
    });
    let mut done = Done {
        started: Instant::now(),
        status: 0,
        target: Arc::clone(&plan.metrics.local),
        bytes_out: plan.metrics.bytes_out.clone(),
        sent: 0,
        log,
    };
    let resp = proxy(req, ctx, plan, &mut done).await;
    done.status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.with_done(done))
}

async fn proxy(
    mut req: Request<ClientBody>,
    ctx: &ConnCtx,
    plan: &ListenerPlan,
    done: &mut Done,
) -> Response<ProxyBody> {
    if let Some(port) = plan.rt.cfg.http.redirect_https {
        return redirect_https(&req, port);
    }
    if let Some(limiter) = &plan.rate {
        if let Err(wait) = limiter.check(req.headers(), ctx.client.ip()) {
            plan.metrics.rate_limited.inc();
            return too_many(wait);
        }
    }
    let Some(route) = plan.route(req.method(), req.uri(), req.headers()) else {
        return local(StatusCode::NOT_FOUND, "404 Not Found: no route for this request\n");
    };
    if let Some(limiter) = &route.rate {
        if let Err(wait) = limiter.check(req.headers(), ctx.client.ip()) {
            plan.metrics.rate_limited.inc();
            return too_many(wait);
        }
    }
    if route.max_body > 0 {
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > route.max_body) {
            plan.metrics.body_too_large.inc();
            return local(StatusCode::PAYLOAD_TOO_LARGE, "413 Content Too Large\n");
        }
    }
    let pp = &route.pool;
    let pool = &pp.rt;
    let sticky = pp.sticky.as_ref().map(|s| (s, s.lookup(req.headers(), ctx.client.ip())));
    let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let key = if pool.uses_key() { request_key(pool, &req, ctx.client) } else { 0 };

    let (mut parts, body) = req.into_parts();
    // Only a Host that is text is forwarded in X-Forwarded-Host (and put back
    // as Host when the request named it in the URI only).
    let host_value = match parts.headers.get(header::HOST) {
        Some(h) => h.to_str().is_ok().then(|| h.clone()),
        None => parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if !parts.headers.contains_key(header::HOST) {
        if let Some(v) = &host_value {
            parts.headers.insert(header::HOST, v.clone());
        }
    }
    let ip = headers::client_ip_value(ctx.client.ip());
    let fwd = headers::Forwarding::take(&mut parts.headers, &ip, ctx.proto, host_value);
    parts.uri = match parts.uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };
    parts.version = Version::HTTP_11;
    // Without a body (and no upgrade) our own HTTP/1.1 client serves plain-TCP
    // backends: the request head is written once here for every attempt.
    let raw_head = (!upgrade && body.is_end_stream()).then(|| {
        let mut head = raw::HeadBuf::new();
        raw::write_request(&mut head, &parts.method, &parts.uri, &parts.headers, &fwd);
        head
    });
    let mut fwd = Some(fwd);
    let method = parts.method.clone();
    let body = RequestBody::new(body, route.max_body, plan.metrics.bytes_in.clone());
    let over = body.over_flag();
    let mut req = Some(Request::from_parts(parts, body));

    // The clock as the request came in: close enough for health windows and
    // latency buckets, and one clock read fewer per request.
    let now = clock::ms_at(done.started);
    let mut tried = Tried::default();
    let mut last_status = None;
    for attempt in 0..=pool.cfg.retries {
        // The sticky backend first, if it can take the request; else the algorithm.
        let preferred = sticky
            .as_ref()
            .and_then(|(_, d)| d.preferred)
            .filter(|&i| !tried.contains(i) && pool.backends.get(i).is_some_and(|b| b.state.is_available(now)));
        let Some(i) = preferred.or_else(|| pool.choose(key, &tried, now)) else { break };
        if attempt > 0 {
            pp.retries.inc();
        }
        tried.insert(i);
        let backend = &pool.backends[i];
        let host = &pool.hosts[i];
        backend.state.acquire();
        backend.state.stats.requests.fetch_add(1, Ordering::Relaxed);

        let started = Instant::now();
        let result = match &raw_head {
            Some(head) if host.is_plain() => {
                raw_attempt(host, head, &method, &pool.cfg, started).await.map(Upstream::Raw)
            }
            // Boxed: hyper's client future is most of the size of a request's
            // state, and this path (bodies, upgrades, TLS backends) the rarer one.
            _ => {
                // hyper's client sends the map: the forwarding fields go into it.
                if let (Some(f), Some(r)) = (fwd.take(), req.as_mut()) {
                    f.insert_into(r.headers_mut());
                }
                Box::pin(hyper_attempt(host, &mut req, upgrade, &pool.cfg)).await.map(|(r, s)| Upstream::Hyper(r, s))
            }
        };
        match result {
            Ok(up) => {
                let upstream_time = started.elapsed();
                backend.state.observe_latency_us_at(now, upstream_time.as_micros() as u64);
                backend.state.record_success();
                if let Some(t) = pp.targets.get(i) {
                    t.upstream_time(upstream_time.as_secs_f64());
                    done.target = Arc::clone(t);
                }
                if let Some((_, rec)) = &mut done.log {
                    rec.upstream = Some(backend.addr);
                    rec.upstream_time = Some(upstream_time);
                }
                let state = Arc::clone(&backend.state);
                let (mut rparts, body) = match up {
                    Upstream::Raw(resp) => {
                        let (p, b) = resp.into_parts();
                        (p, ProxyBody::raw(b, Finish { state, conn: None }))
                    }
                    Upstream::Hyper(mut resp, sender) => {
                        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                            if let Some(client_upgrade) = client_upgrade {
                                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                                tokio::spawn(tunnel(client_upgrade, upstream_upgrade, backend.addr));
                            }
                        }
                        let (p, b) = resp.into_parts();
                        let conn = (!upgrade).then(|| (Arc::clone(host), sender));
                        (p, ProxyBody::upstream(b, Finish { state, conn }))
                    }
                };
                let keep_upgrade = rparts.status == StatusCode::SWITCHING_PROTOCOLS;
                headers::strip_hop_by_hop(&mut rparts.headers, keep_upgrade);
                if let Some((s, d)) = &sticky {
                    if let Some(cookie) = s.record(d, i, ctx.proto == "https") {
                        rparts.headers.append(header::SET_COOKIE, cookie);
                    }
                }
                return Response::from_parts(rparts, body);
            }
            Err((why, status, connect_failed)) => {
                backend.state.release();
                if over.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
                    plan.metrics.body_too_large.inc();
                    return local(StatusCode::PAYLOAD_TOO_LARGE, "413 Content Too Large\n");
                }
                tracing::warn!(pool = %pool.cfg.name, backend = %backend.addr, error = %why, "upstream attempt failed");
                if let Some(p) = &pool.cfg.passive {
                    if backend.state.record_failure(clock::now_ms(), p.max_fails, p.fail_timeout.as_millis() as u64) {
                        tracing::warn!(pool = %pool.cfg.name, backend = %backend.addr, "backend ejected by passive health check");
                    }
                } else {
                    backend.state.stats.failures.fetch_add(1, Ordering::Relaxed);
                }
                last_status = Some(status);
                // Only a failed connect is safe to retry: the request was not sent.
                if !connect_failed || req.is_none() {
                    break;
                }
            }
        }
    }
    match last_status {
        Some(StatusCode::GATEWAY_TIMEOUT) => local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"),
        Some(_) => local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
        None => local(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable: no backend available\n"),
    }
}

/// A backend's answer, from hyper's client or our own.
enum Upstream {
    Hyper(Response<Incoming>, Sender),
    Raw(Response<raw::RawBody>),
}

/// What failed in an attempt: the message, the status to answer with, and
/// whether the connect failed (the request was not sent, so another backend may
/// take it).
type AttemptError = (String, StatusCode, bool);

/// One attempt through our own client. A pooled connection that turns out closed
/// before any response byte is replaced by a fresh one, for idempotent methods.
async fn raw_attempt(
    host: &Arc<HostPool>,
    head: &[u8],
    method: &http::Method,
    cfg: &crate::config::Pool,
    started: Instant,
) -> Result<Response<raw::RawBody>, AttemptError> {
    let mut pooled = host.checkout_raw();
    loop {
        let reused = pooled.is_some();
        let (stream, sent) = match pooled.take() {
            // A pooled connection: the exchange starts about when the attempt did.
            Some(s) => (s, started),
            None => {
                let s = host
                    .connect_raw(cfg.connect_timeout)
                    .await
                    .map_err(|e| (e.to_string(), StatusCode::BAD_GATEWAY, true))?;
                (s, Instant::now())
            }
        };
        let deadline = tokio::time::Instant::from_std(sent + cfg.response_timeout);
        let exchange = raw::exchange(stream, head, method == http::Method::HEAD, host);
        match tokio::time::timeout_at(deadline, exchange).await {
            Err(_) => return Err(("timed out waiting for response".into(), StatusCode::GATEWAY_TIMEOUT, false)),
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(raw::RawError::NoResponse(_))) if reused && raw::idempotent(method) => continue,
            Ok(Err(e)) => return Err((e.to_string(), StatusCode::BAD_GATEWAY, false)),
        }
    }
}

/// One attempt through hyper's client. A pooled connection may turn out closed
/// before the request was written; then the request comes back and one fresh
/// connection is tried.
async fn hyper_attempt(
    host: &Arc<HostPool>,
    req: &mut Option<Request<RequestBody>>,
    upgrade: bool,
    cfg: &crate::config::Pool,
) -> Result<(Response<Incoming>, Sender), AttemptError> {
    let mut pooled = if upgrade { None } else { host.checkout().await };
    loop {
        let reused = pooled.is_some();
        let mut sender = match pooled.take() {
            Some(s) => s,
            None => match host.connect(cfg.connect_timeout, upgrade).await {
                Ok(s) => s,
                Err(e) => return Err((e.to_string(), StatusCode::BAD_GATEWAY, true)),
            },
        };
        let Some(r) = req.take() else {
            return Err(("request body already consumed".into(), StatusCode::BAD_GATEWAY, false));
        };
        match tokio::time::timeout(cfg.response_timeout, sender.try_send_request(r)).await {
            Err(_) => return Err(("timed out waiting for response".into(), StatusCode::GATEWAY_TIMEOUT, false)),
            Ok(Ok(resp)) => return Ok((resp, sender)),
            Ok(Err(mut e)) => {
                if let (true, Some(r)) = (reused, e.take_message()) {
                    *req = Some(r);
                    continue;
                }
                return Err((e.into_error().to_string(), StatusCode::BAD_GATEWAY, false));
            }
        }
    }
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
