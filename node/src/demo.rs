//! `quorumlb demo`: three small HTTP backends and a proxy in front of them, all on
//! 127.0.0.1, so a new user can see balancing, health checks and failover with
//! nothing but curl. Needs no root, no file and no network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A demo backend: answers `hello from <name>` and `/healthz`; `/toggle-health`
/// flips its health answer so the user can watch the checks react.
pub async fn spawn_backend(name: String, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let healthy = Arc::new(AtomicBool::new(true));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let name = name.clone();
            let healthy = Arc::clone(&healthy);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let name = name.clone();
                    let healthy = Arc::clone(&healthy);
                    async move {
                        let (status, body) = match req.uri().path() {
                            "/healthz" if healthy.load(Ordering::Relaxed) => (StatusCode::OK, "ok\n".to_string()),
                            "/healthz" => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n".to_string()),
                            "/toggle-health" => {
                                let now = !healthy.fetch_xor(true, Ordering::Relaxed);
                                (StatusCode::OK, format!("{name} healthy={now}\n"))
                            }
                            path => (StatusCode::OK, format!("hello from {name} (path {path})\n")),
                        };
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

/// Where the demo's L4 TCP listener goes: the port after the HTTP one.
pub fn tcp_listen(listen: SocketAddr) -> Option<SocketAddr> {
    listen.port().checked_add(1).filter(|_| listen.port() != 0).map(|p| SocketAddr::new(listen.ip(), p))
}

/// The demo's config text, pointing at the given backend addresses.
pub fn config_text(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let mut s = format!(
        r#"# quorumlb demo configuration
[[listener]]
name = "web"
bind = "{listen}"
protocol = "http"
default_pool = "web"

  [[listener.route]]
  path_prefix = "/api"
  pool = "api"

[[pool]]
name = "web"
algorithm = "weighted_round_robin"
  [pool.health]
  kind = "http"
  path = "/healthz"
  interval_ms = 1000
  timeout_ms = 500
  rise = 2
  fall = 2
  [pool.passive]
  max_fails = 3
  fail_timeout_ms = 10000
"#
    );
    for (i, b) in backends.iter().enumerate() {
        let weight = if i == 0 { 2 } else { 1 };
        s.push_str(&format!("  [[pool.backend]]\n  address = \"{b}\"\n  weight = {weight}\n"));
    }
    s.push_str("\n[[pool]]\nname = \"api\"\nalgorithm = \"least_conn\"\n");
    for b in backends {
        s.push_str(&format!("  [[pool.backend]]\n  address = \"{b}\"\n"));
    }
    if let Some(tcp) = tcp_listen(listen) {
        s.push_str(&format!(
            r#"
# L4: bytes relayed as they are (splice), least connections, TCP health checks.
#   curl http://{tcp}/    goes through this listener without HTTP parsing.
[[listener]]
name = "tcp"
bind = "{tcp}"
protocol = "tcp"
default_pool = "tcp"
idle_timeout_ms = 60000
maxconn = 1000
maxconn_per_source = 100

[[pool]]
name = "tcp"
algorithm = "least_conn"
connect_timeout_ms = 1000
  [pool.health]
  kind = "tcp"
  interval_ms = 1000
  timeout_ms = 500
"#
        ));
        for b in backends {
            s.push_str(&format!("  [[pool.backend]]\n  address = \"{b}\"\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid_and_has_a_tcp_listener() {
        let backends: Vec<SocketAddr> =
            ["127.0.0.1:9001", "127.0.0.1:9002"].iter().map(|a| a.parse().unwrap()).collect();
        let text = config_text("127.0.0.1:18080".parse().unwrap(), &backends);
        let c = crate::config::Config::parse(&text, "<demo>").unwrap();
        let tcp = c.listeners.iter().find(|l| l.protocol == crate::config::Protocol::Tcp).unwrap();
        assert_eq!(tcp.bind, "127.0.0.1:18081".parse().unwrap());
        assert_eq!(c.pool("tcp").unwrap().backends.len(), 2);
    }
}
