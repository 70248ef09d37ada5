//! The small admin HTTP server on `[admin] listen`: `GET /metrics` (OpenMetrics
//! text) and `GET /healthz`. The admin panel will mount `Metrics::render` in its
//! own router; this server is what a node runs until then.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{CONTENT_TYPE, Metrics};

/// Binds `addr` and serves until `cancel`. Returns the bound address (useful with
/// port 0).
pub async fn start(addr: SocketAddr, metrics: Arc<Metrics>, cancel: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let m = Arc::clone(&metrics);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, Arc::clone(&m)));
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(local)
}

async fn handle(req: Request<Incoming>, metrics: Arc<Metrics>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, Bytes::from(metrics.render())),
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain; charset=utf-8", Bytes::from_static(b"ok\n")),
        (_, "/metrics" | "/healthz") => {
            (StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", Bytes::from_static(b"GET only\n"))
        }
        _ => (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", Bytes::from_static(b"not found\n")),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(r)
}
