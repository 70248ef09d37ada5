//! `quorumlb demo`: the appliance in one command, without root. Three demo
//! backends run in this process; three real cluster nodes (child processes of this
//! same binary, `quorumlb run`) listen on 127.0.0.1, 127.0.0.2 and 127.0.0.3, form
//! a Raft cluster, serve the same replicated config and each serve the admin panel.
//! VIP handling is off: it needs root and network namespaces (deploy/lab).
//!
//! Everything lives in one temporary directory (configs, secrets, data dirs, logs)
//! that is removed on exit; the children are stopped by their exact PIDs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;

/// Ports of the demo; node N uses them on 127.0.0.N.
#[derive(Debug, Clone, Copy)]
pub struct DemoPorts {
    /// HTTP listener; the TCP (L4) listener is the next port.
    pub http: u16,
    pub admin: u16,
    pub cluster: u16,
}

impl Default for DemoPorts {
    fn default() -> Self {
        DemoPorts { http: 18080, admin: 19090, cluster: 17000 }
    }
}

const NODES: u8 = 3;

fn node_ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A random printable secret of `bytes` random bytes.
fn random_secret(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The node-local part of node `n`'s file: identity, cluster, admin, bind overrides.
fn node_file(n: u8, dir: &Path, ports: DemoPorts, cluster_text: &str) -> String {
    let ip = node_ip(n);
    let peers: Vec<String> =
        (1..=NODES).map(|p| format!("{{ id = {p}, address = \"{}:{}\" }}", node_ip(p), ports.cluster)).collect();
    let mut s = format!(
        "[node]\nid = {n}\nname = \"lb{n}\"\nrole = \"proxy\"\ndata_dir = \"{data}\"\ncluster_listen = \"{ip}:{cp}\"\n\n\
         [node.bind]\nweb = \"{ip}:{hp}\"\ntcp = \"{ip}:{tp}\"\n\n\
         [cluster]\nsecret_file = \"{secret}\"\npeers = [ {peers} ]\n\n\
         [admin]\nlisten = \"{ip}:{ap}\"\nbootstrap_password_file = \"{pw}\"\n\n",
        data = dir.join(format!("data{n}")).display(),
        cp = ports.cluster,
        hp = ports.http,
        tp = ports.http + 1,
        secret = dir.join("cluster.secret").display(),
        peers = peers.join(", "),
        ap = ports.admin,
        pw = dir.join("admin.password").display(),
    );
    // Only the first node's file seeds the cluster config; the others get it over Raft.
    if n == 1 {
        s.push_str(cluster_text);
    }
    s
}

struct Node {
    n: u8,
    child: Child,
    log: PathBuf,
}

/// The running demo: children and the directory to remove.
struct Demo {
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl Demo {
    /// SIGTERM to each child by PID, then SIGKILL to any still running after
    /// `grace`; finally the temporary directory goes.
    fn stop(&mut self, grace: Duration) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        for node in &self.nodes {
            let _ = kill(Pid::from_raw(node.child.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        for node in &mut self.nodes {
            while Instant::now() < deadline {
                if !matches!(node.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(node.child.try_wait(), Ok(None)) {
                let _ = node.child.kill();
                let _ = node.child.wait();
            }
        }
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Waits (bounded) until `/healthz` of an admin listener answers 200 (a leader
/// exists); gives up at once if the node's process exits.
async fn wait_ready(addr: SocketAddr, child: &mut Child, within: Duration) -> bool {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let uri: http::Uri = match format!("http://{addr}/healthz").parse() {
            Ok(u) => u,
            Err(_) => return false,
        };
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), client.get(uri)).await
            && r.status() == http::StatusCode::OK
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs the demo until SIGINT/SIGTERM, or until a node fails to start. A signal
/// during start-up stops everything started so far, too.
pub async fn run(ports: DemoPorts) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let dir = std::env::temp_dir().join(format!("quorumlb-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut demo = Demo { dir: dir.clone(), nodes: Vec::new() };
    let started = tokio::select! {
        r = start(&mut demo, ports) => r,
        _ = term.recv() => Ok(false),
        _ = int.recv() => Ok(false),
    };
    if started? {
        wait_for_stop(&mut demo, &mut term, &mut int).await;
    }
    demo.stop(Duration::from_secs(10));
    println!("demo stopped");
    Ok(())
}

/// Starts backends and nodes and prints how to use them; false if interrupted.
async fn start(demo: &mut Demo, ports: DemoPorts) -> anyhow::Result<bool> {
    let exe = std::env::current_exe().context("finding this program's path to start the demo nodes")?;
    let dir = demo.dir.clone();

    let mut backends = Vec::new();
    for i in 1..=3 {
        let addr = crate::demo::spawn_backend(format!("backend-{i}"), "127.0.0.1:0".parse()?)
            .await
            .context("starting a demo backend")?;
        backends.push(addr);
    }
    let first_http = SocketAddr::new(node_ip(1), ports.http);
    let cluster_text = crate::demo::config_text(first_http, &backends);
    let password = random_secret(12);
    write_private(&dir.join("cluster.secret"), &random_secret(36))?;
    write_private(&dir.join("admin.password"), &format!("{password}\n"))?;

    for n in 1..=NODES {
        let file = dir.join(format!("lb{n}.toml"));
        std::fs::write(&file, node_file(n, &dir, ports, &cluster_text))
            .with_context(|| format!("writing {}", file.display()))?;
        let log = dir.join(format!("lb{n}.log"));
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(&exe)
            .args(["run", "--config"])
            .arg(&file)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting demo node lb{n}"))?;
        demo.nodes.push(Node { n, child, log });
    }
    for i in 0..demo.nodes.len() {
        let n = demo.nodes[i].n;
        let admin = SocketAddr::new(node_ip(n), ports.admin);
        let node = &mut demo.nodes[i];
        if !wait_ready(admin, &mut node.child, Duration::from_secs(30)).await {
            let why = match node.child.try_wait() {
                Ok(Some(status)) => format!("it exited ({status})"),
                _ => "its admin API did not report a leader within 30 s".into(),
            };
            bail!("demo node lb{n} is not ready: {why}; last log lines:\n{}", tail(&node.log, 15));
        }
    }

    let pids: Vec<String> = demo.nodes.iter().map(|n| format!("lb{}={}", n.n, n.child.id())).collect();
    println!("quorumlb demo: a three-node cluster is running ({}).", pids.join(", "));
    println!();
    println!("  Admin panel:  http://{}:{}/   (also on 127.0.0.2 and 127.0.0.3)", node_ip(1), ports.admin);
    println!("  User:         admin");
    println!("  Password:     {password}   (one-time demo password; gone when the demo stops)");
    println!();
    println!("  Backends:     {}", backends.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", "));
    for n in 1..=NODES {
        println!(
            "  curl http://{}:{}/          # node lb{n}: weighted round robin, same config on every node",
            node_ip(n),
            ports.http
        );
    }
    println!("  curl http://{}:{}/api/x     # route /api -> least_conn pool", node_ip(1), ports.http);
    println!("  curl http://{}:{}/          # L4 TCP listener (splice)", node_ip(1), ports.http + 1);
    println!("  curl http://{}/toggle-health   # fail backend-1's health checks and watch the panel", backends[0]);
    println!("  kill -9 {}                  # kill lb1: the others elect a new leader", demo.nodes[0].child.id());
    println!(
        "  quorumlb ctl --admin {}:{} --user admin --password-file <(echo {password}) status",
        node_ip(2),
        ports.admin
    );
    println!();
    println!("VIP handling is off in this demo: owning a virtual IP needs root and network namespaces");
    println!("(see deploy/lab/up.sh). Logs and data: {}", dir.display());
    println!("Ctrl-C to stop (the directory is removed).");
    Ok(true)
}

/// Returns on SIGINT/SIGTERM; reports a node that exits by itself (and keeps going).
async fn wait_for_stop(demo: &mut Demo, term: &mut tokio::signal::unix::Signal, int: &mut tokio::signal::unix::Signal) {
    let mut reported = vec![false; demo.nodes.len()];
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (i, node) in demo.nodes.iter_mut().enumerate() {
                    if let (false, Ok(Some(status))) = (reported[i], node.child.try_wait()) {
                        reported[i] = true;
                        println!("node lb{} exited ({status}); the other two keep serving. Log: {}", node.n, node.log.display());
                    }
                }
            }
        }
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_node_file_is_a_valid_cluster_member() {
        let backends: Vec<SocketAddr> =
            ["127.0.0.1:9001", "127.0.0.1:9002"].iter().map(|a| a.parse().unwrap()).collect();
        let dir = tempfile::tempdir().unwrap();
        let text = crate::demo::config_text("127.0.0.1:18080".parse().unwrap(), &backends);
        for n in 1..=NODES {
            let file = node_file(n, dir.path(), DemoPorts::default(), &text);
            let c = crate::config::Config::parse(&file, "<demo>").unwrap_or_else(|e| panic!("lb{n}: {e}\n{file}"));
            let node = c.node.as_ref().expect("[node]");
            assert_eq!(node.id, u64::from(n));
            assert_eq!(c.admin.listen, Some(SocketAddr::new(node_ip(n), 19090)));
        }
    }
}
