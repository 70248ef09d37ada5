//! `quorumlb demo`: three small HTTP backends and a proxy in front of them, all on
//! 127.0.0.1, so a new user can see balancing, health checks and failover with
//! nothing but curl. Needs no root, no file and no network.
//!
//! `quorumlb demo --lab` (root only) instead runs `deploy/lab/up.sh` with this very
//! binary: an active/standby pair, a witness, three backends and a client, each in
//! its own network namespace, with a VIP that fails over for real. The lab scripts
//! own the topology; this file only finds them, runs them and says how to use the
//! result. `quorumlb demo --lab-down` runs `deploy/lab/down.sh`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
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

/// Where the lab scripts are: `explicit` (`--lab-scripts`), else
/// `$QUORUMLB_LAB_DIR`, else `deploy/lab` of the source tree this binary was built
/// in (`<repo>/target/<profile>/quorumlb`), else `./deploy/lab`. The first that
/// holds both `up.sh` and `down.sh` wins.
pub fn find_lab_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let has_scripts = |d: &Path| d.join("up.sh").is_file() && d.join("down.sh").is_file();
    if let Some(d) = explicit {
        anyhow::ensure!(has_scripts(d), "--lab-scripts {}: no up.sh and down.sh there", d.display());
        return Ok(d.to_path_buf());
    }
    let mut tried = Vec::new();
    if let Some(d) = std::env::var_os("QUORUMLB_LAB_DIR") {
        tried.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/quorumlb -> <repo>/deploy/lab
        if let Some(repo) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            tried.push(repo.join("deploy/lab"));
        }
    }
    tried.push(PathBuf::from("deploy/lab"));
    tried.iter().find(|d| has_scripts(d)).cloned().ok_or_else(|| {
        let list = tried.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
        anyhow::anyhow!(
            "cannot find the lab scripts (deploy/lab/up.sh and down.sh); looked in: {list}. \
             Run from a source checkout or pass --lab-scripts DIR (or set QUORUMLB_LAB_DIR)"
        )
    })
}

/// The lab's namespace prefix and state directory, as deploy/lab/lib.sh computes them.
pub fn lab_names() -> (String, String) {
    let prefix = std::env::var("QLAB_PREFIX").unwrap_or_else(|_| "qlab".to_string());
    let dir = std::env::var("QLAB_DIR").unwrap_or_else(|_| format!("/run/{prefix}"));
    (prefix, dir)
}

/// What to type once the lab is up.
pub fn lab_instructions(prefix: &str, dir: &str, scripts: &Path) -> String {
    let down = scripts.join("down.sh");
    let chaos = scripts.parent().map(|p| p.join("chaos")).unwrap_or_else(|| PathBuf::from("deploy/chaos"));
    let env = if prefix == "qlab" { String::new() } else { format!("QLAB_PREFIX={prefix} QLAB_DIR={dir} ") };
    format!(
        "quorumlb lab is up: lb1 (10.10.0.11, preferred) and lb2 (10.10.0.12) share VIP 10.10.0.100,
witness 10.10.0.13, backends 10.10.0.21-23, client 10.10.0.2; everything inside the
network namespaces {prefix}-*, nothing in this host's own network.

  ip netns exec {prefix}-client curl -s http://10.10.0.100/          # HTTP through the VIP (x-backend tells who answered)
  ip netns exec {prefix}-client curl -s http://10.10.0.100/c/x -c /tmp/jar -b /tmp/jar   # cookie-sticky pool
  ip netns exec {prefix}-client python3 {chaos}/admin.py --dir {dir} cluster   # GET /api/v1/cluster on every node
  admin panel and API: http://10.10.0.11:9090/ from inside {prefix}-client (user admin, password in {dir}/etc/admin.pass)
  ip -n {prefix}-lb1 -br addr show eth0                                # which node holds the VIP
  {env}{chaos}/kill-active.sh        # kill -9 the owner under load, one report line
  {env}{chaos}/run-all.sh            # every chaos scenario, summary table

Logs: {dir}/log/. Tear it all down (processes, namespaces) with:
  {env}quorumlb demo --lab-down      # or: {env}{down}
",
        chaos = chaos.display(),
        down = down.display(),
    )
}

/// Runs `up.sh` (action `up`) or `down.sh` with this binary; root only.
pub fn lab(down: bool, scripts: Option<&Path>) -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::Uid::effective().is_root(),
        "the lab creates network namespaces and needs root; run `quorumlb demo` without --lab for the \
         unprivileged demo on 127.0.0.1"
    );
    let dir = find_lab_dir(scripts)?;
    let script = dir.join(if down { "down.sh" } else { "up.sh" });
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script);
    if !down && std::env::var_os("QUORUMLB_BIN").is_none() {
        let exe = std::env::current_exe().context("finding this binary's path for the lab")?;
        cmd.env("QUORUMLB_BIN", exe);
    }
    let status = cmd.status().with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(status.success(), "{} failed ({status})", script.display());
    if !down {
        let (prefix, state) = lab_names();
        println!("{}", lab_instructions(&prefix, &state, &dir));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_scripts_are_found_only_where_both_exist() {
        let d = tempfile::tempdir().unwrap();
        let err = find_lab_dir(Some(d.path())).unwrap_err().to_string();
        assert!(err.contains("no up.sh and down.sh"), "{err}");
        std::fs::write(d.path().join("up.sh"), "").unwrap();
        assert!(find_lab_dir(Some(d.path())).is_err(), "down.sh missing");
        std::fs::write(d.path().join("down.sh"), "").unwrap();
        assert_eq!(find_lab_dir(Some(d.path())).unwrap(), d.path());
    }

    #[test]
    fn lab_instructions_name_the_prefix_and_the_teardown() {
        let text = lab_instructions("qv", "/tmp/qv", Path::new("/src/deploy/lab"));
        assert!(text.contains("ip netns exec qv-client curl -s http://10.10.0.100/"), "{text}");
        assert!(text.contains("QLAB_PREFIX=qv QLAB_DIR=/tmp/qv /src/deploy/lab/down.sh"), "{text}");
        assert!(text.contains("/src/deploy/chaos/run-all.sh"), "{text}");
        let default = lab_instructions("qlab", "/run/qlab", Path::new("deploy/lab"));
        assert!(default.contains("  quorumlb demo --lab-down"), "{default}");
    }

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
