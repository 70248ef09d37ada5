//! A node in a cluster: starts Raft (raft-store) from the node-local `[node]` and
//! `[cluster]` sections, seeds a brand-new cluster with this file's cluster config,
//! keeps the data plane on the replicated config, reports to the leader, and runs
//! VIP ownership (see `vip`). A witness runs Raft only. With `[admin] listen` it also
//! serves the admin API and panel (see `admin`).

pub mod admin;
pub mod effective;
pub mod sticky;
pub mod vip;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use raft_store::{ClusterNode, ClusterOptions, ClusterState, Command, NodeReport, Peer, Role};
use tokio::sync::watch;
use vrrp::lease::SystemClock;

use crate::config::{Config, NodeRole};
use crate::proxy::DataPlane;

/// A running cluster member.
pub struct Member {
    pub raft: ClusterNode,
    pub local: Arc<Config>,
    pub dataplane: Option<Arc<DataPlane>>,
    pub owners: Option<Arc<vip::Owners>>,
    /// Admin session key, derived from the cluster secret (the same on every node).
    session_key: Arc<[u8]>,
    shutting_down: Arc<AtomicBool>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading cluster secret_file {}", path.display()))?;
    let trimmed: Vec<u8> = raw.trim_ascii().to_vec();
    if trimmed.len() < ClusterOptions::MIN_SECRET_LEN {
        anyhow::bail!(
            "cluster secret_file {} holds {} bytes; at least {} are required",
            path.display(),
            trimmed.len(),
            ClusterOptions::MIN_SECRET_LEN
        );
    }
    Ok(trimmed)
}

impl Member {
    /// Starts Raft, the data plane (proxy role) and the VIP machinery.
    pub async fn start(local: Config, file_text: &str, origin: &str) -> anyhow::Result<Member> {
        let node = local.node.clone().context("[node] section missing")?;
        let cluster = local.cluster.clone().context("[cluster] section missing (a [node] needs its peers)")?;
        let secret = read_secret(&cluster.secret_file)?;
        let session_key: Arc<[u8]> = admin::session_key(&secret).into();
        let clock = Arc::new(SystemClock::new());
        let leader_vips = vip::LeaderVips::new(Arc::clone(&clock));

        let mut opts =
            ClusterOptions::new(node.id, &node.data_dir, node.cluster_listen, node.cluster_advertise.clone(), secret);
        opts.role = if node.role == NodeRole::Witness { Role::Witness } else { Role::Proxy };
        opts.peers = cluster
            .peers
            .iter()
            .map(|p| Peer {
                id: p.id,
                address: p.address.clone(),
                role: if p.role == NodeRole::Witness { Role::Witness } else { Role::Proxy },
            })
            .collect();
        opts.heartbeat_ms = cluster.heartbeat.as_millis() as u64;
        opts.election_timeout_min_ms = cluster.election_timeout_min.as_millis() as u64;
        opts.election_timeout_max_ms = cluster.election_timeout_max.as_millis() as u64;
        opts.hooks = Some(leader_vips.clone());
        let replicated = Arc::new(sticky::ReplicatedSticky::default());
        let sink: Arc<dyn raft_store::StickySink> = replicated.clone();
        let raft = ClusterNode::start(opts, sink).await.context("starting the cluster member")?;
        warn_short_leases(&local, &cluster);
        tracing::info!(node = node.id, role = ?node.role, listen = %node.cluster_listen, "cluster member started");

        if raft.created_cluster() {
            seed(&raft, file_text, origin).await?;
            bootstrap_admin(&raft, local.admin.bootstrap_password_file.as_deref()).await?;
        }

        let local = Arc::new(local);
        let (stop_tx, stop_rx) = watch::channel(false);
        let shutting_down = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(vip::controller_loop(leader_vips.clone(), raft.clone(), stop_rx.clone())));

        let (dataplane, owners) = if node.role == NodeRole::Proxy {
            let initial = effective::build(&raft.state().borrow(), &local).map_err(|e| anyhow::anyhow!("{e}"))?;
            let dp = DataPlane::start(Arc::new(initial)).await.context("starting the data plane")?;
            replicated.attach(Arc::clone(dp.sticky()));
            let updates = dp.sticky().subscribe(65_536);
            tasks.push(tokio::spawn(sticky::replicate(raft.clone(), updates, stop_rx.clone())));
            let owners = Arc::new(vip::Owners::new(node.id, raft.clone(), clock));
            (Some(dp), Some(owners))
        } else {
            (None, None)
        };
        tasks.push(tokio::spawn(follow_state(
            raft.clone(),
            Arc::clone(&local),
            dataplane.clone(),
            owners.clone(),
            Arc::clone(&leader_vips),
            replicated,
            stop_rx.clone(),
        )));
        if let Some(addr) = local.admin.listen {
            let tls = match &local.admin.tls {
                Some(files) => Some(crate::tls::admin_server_config(files).context("[admin] tls")?),
                None => None,
            };
            let backend = admin::NodeAdmin::new(
                raft.clone(),
                Arc::clone(&local),
                dataplane.clone(),
                admin::VipViews { leader: Arc::clone(&leader_vips), owners: owners.clone() },
                session_key.to_vec(),
            )?;
            tasks.push(start_admin(addr, backend, tls, stop_rx.clone()).await?);
        }
        tasks.push(tokio::spawn(report_loop(raft.clone(), dataplane.is_some(), Arc::clone(&shutting_down), stop_rx)));
        Ok(Member { raft, local, dataplane, owners, session_key, shutting_down, stop_tx, tasks })
    }

    /// The admin session key (HMAC of the cluster secret; never log it).
    pub fn session_key(&self) -> &[u8] {
        &self.session_key
    }

    /// Planned stop. An owner first drains (see [`drain_before_handover`]), so no
    /// client request fails when its VIPs move; then it asks the leader to move its
    /// VIPs away and waits for them to go (bounded), then stops the data plane
    /// (finishing whatever is left) and Raft.
    pub async fn shutdown(self, grace: Duration) {
        let held = self.owners.as_ref().map(|o| o.held()).unwrap_or_default();
        let mut blocked = Vec::new();
        if let (Some(owners), Some(dp)) = (&self.owners, &self.dataplane)
            && !held.is_empty()
        {
            blocked = drain_before_handover(owners, dp, &held, grace.min(DRAIN_BOUND)).await;
        }
        // 1. Tell the leader we are leaving, so it assigns nothing to us (and gives
        // us a moment to release what we hold ourselves).
        self.shutting_down.store(true, Ordering::Relaxed);
        let report = NodeReport { node: self.raft.id(), proxy_healthy: false, shutting_down: true };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(1), self.raft.report(report)).await {
            tracing::warn!(error = %e, "could not tell the leader that this node is leaving");
        }
        if let Some(owners) = &self.owners {
            // 2. Planned handover (VIP-LEASE rule 5): remove our addresses ourselves
            // and confirm through the log, which lets the leader hand each VIP to
            // the standby at once instead of waiting a lease out.
            let held: Vec<String> = owners.statuses().iter().filter(|s| s.owned).map(|s| s.vip.to_string()).collect();
            owners.stop_all(Duration::from_secs(2)).await;
            // 3. Stay in the cluster until the new assignments are committed (we may
            // be the leader that has to commit them), bounded.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            let me = self.raft.id();
            while tokio::time::Instant::now() < deadline {
                let st = self.raft.state().borrow().clone();
                let settled = held.iter().all(|v| st.vips.get(v).is_some_and(|a| a.owner.is_some_and(|o| o != me)));
                if settled {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The address is gone: the SYN block has nothing left to guard.
            owners.unblock_new_connections(&blocked).await;
        }
        let _ = self.stop_tx.send(true);
        if let Some(dp) = &self.dataplane {
            dp.shutdown(grace).await;
        }
        for t in self.tasks {
            t.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Longest a leaving owner waits for its HTTP connections to close before it
/// hands its VIPs over anyway (also capped by `shutdown_grace_ms`).
const DRAIN_BOUND: Duration = Duration::from_secs(3);
/// After the SYN block is in, connections whose handshake had already completed
/// are still in the accept queue or about to send their first request; this long
/// is left for them to be accepted and read before the graceful close begins.
const ACCEPT_SETTLE: Duration = Duration::from_millis(100);

/// Drain-then-move, the first half of a planned handover, on the owner:
/// (a) new TCP connections to the held VIPs are dropped silently in the kernel
/// (clients retransmit their SYN about a second later and reach the next owner);
/// (b) every HTTP client connection is closed gracefully: idle keep-alive ones at
/// once, busy ones after the current response, sent with `Connection: close`;
/// (c) until none is left or `bound` passes. Only then (the caller) is the VIP
/// released, so the next owner never sees a packet of a connection it does not
/// know and never has to answer it with a RST. L4 streams cannot be closed at a
/// request boundary; they break when the VIP moves, as in any failover. Returns
/// the VIPs whose SYN block must be removed once they are released.
async fn drain_before_handover(
    owners: &vip::Owners,
    dp: &DataPlane,
    held: &[vrrp::VipAddress],
    bound: Duration,
) -> Vec<vrrp::VipAddress> {
    let started = tokio::time::Instant::now();
    let blocked = owners.block_new_connections(held).await;
    tokio::time::sleep(ACCEPT_SETTLE).await;
    let before = dp.http_connections();
    let left = dp.drain(bound).await;
    let ms = started.elapsed().as_millis() as u64;
    if left == 0 {
        tracing::info!(connections = before, ms, "HTTP connections closed before handing the VIPs over");
    } else {
        tracing::warn!(connections = before, left, ms, "drain bound reached; handing the VIPs over anyway");
    }
    blocked
}

/// A lease shorter than a leader election makes every leader change drop the VIPs
/// (the owner cannot renew while there is no leader). Safe, but an outage.
fn warn_short_leases(cfg: &Config, cluster: &crate::config::ClusterSettings) {
    let election = cluster.election_timeout_max * 2 + cluster.heartbeat * 2;
    for v in &cfg.vips {
        if v.lease < election {
            tracing::warn!(
                vip = %v.address,
                lease_ms = v.lease.as_millis() as u64,
                election_ms = election.as_millis() as u64,
                "lease_ms is shorter than a leader election: the VIP will go dark whenever the Raft leader changes"
            );
        }
    }
}

/// A brand-new cluster takes its config from the first node's file.
async fn seed(raft: &ClusterNode, file_text: &str, origin: &str) -> anyhow::Result<()> {
    let text = effective::cluster_part(file_text, origin).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cmd = Command::ReplaceConfig {
        toml: text,
        author: "bootstrap".into(),
        comment: Some(format!("seeded from {origin}")),
        expected_version: None,
    };
    let r = raft.write(cmd).await.context("seeding the new cluster with this file's config")?;
    tracing::info!(version = r.config_version, "new cluster seeded with this node's config");
    Ok(())
}

/// On a brand-new cluster: user `admin` with the password from
/// `[admin] bootstrap_password_file` (trailing newline dropped). The password is
/// hashed here and never logged.
async fn bootstrap_admin(raft: &ClusterNode, file: Option<&Path>) -> anyhow::Result<()> {
    let Some(file) = file else {
        tracing::warn!("new cluster without [admin] bootstrap_password_file: no admin user exists yet");
        return Ok(());
    };
    let raw = std::fs::read_to_string(file)
        .with_context(|| format!("reading [admin] bootstrap_password_file {}", file.display()))?;
    let password = raw.trim_end_matches(['\r', '\n']).to_string();
    let hash = tokio::task::spawn_blocking(move || admin_web::hash_password(&password))
        .await
        .context("hashing the bootstrap password")?
        .map_err(|e| anyhow::anyhow!("[admin] bootstrap_password_file {}: {e}", file.display()))?;
    let cmd = Command::UserUpsert { username: "admin".into(), password_hash: hash, author: "bootstrap".into() };
    let r = raft.write(cmd).await.context("creating the bootstrap admin user")?;
    if let raft_store::Outcome::Rejected { reason } | raft_store::Outcome::Conflict { reason } = r.outcome {
        anyhow::bail!("creating the bootstrap admin user: {reason}");
    }
    tracing::info!("bootstrap admin user created");
    Ok(())
}

/// Binds `[admin] listen` and serves the admin router until `stop` fires; https
/// (with `Secure` session cookies) when `tls` is given.
async fn start_admin(
    addr: std::net::SocketAddr,
    backend: admin::NodeAdmin,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the admin listener on {addr}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let options = admin_web::AdminOptions { secure_cookies: tls.is_some(), ..Default::default() };
    let router = admin_web::router(Arc::new(backend), options);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %bound, scheme, "admin listening: /api/v1, panel, /metrics, /healthz");
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        if let Err(e) = admin_web::serve(listener, router, tls, shutdown).await {
            tracing::error!(error = %e, "admin server failed");
        }
    }))
}

/// Keeps the data plane and the VIP owners on the replicated state.
async fn follow_state(
    raft: ClusterNode,
    local: Arc<Config>,
    dp: Option<Arc<DataPlane>>,
    owners: Option<Arc<vip::Owners>>,
    leader_vips: Arc<vip::LeaderVips>,
    replicated: Arc<sticky::ReplicatedSticky>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = raft.state();
    let mut applied: Option<(u64, u64)> = None;
    let mut vips = Vec::new();
    loop {
        let state: Arc<ClusterState> = rx.borrow_and_update().clone();
        let version = (state.config_version, state.config.as_ref().map(|c| c.version).unwrap_or(0));
        if applied != Some(version) {
            match effective::build(&state, &local) {
                Ok(cfg) => {
                    vips = cfg.vips.clone();
                    leader_vips.set_vips(&vips);
                    if let Some(dp) = &dp {
                        match dp.apply(Arc::new(cfg)).await {
                            Ok(()) => {
                                // New sticky pools get their tables now: fill them.
                                replicated.sync_store();
                                tracing::info!(version = state.config_version, "cluster config applied")
                            }
                            Err(e) => tracing::error!(
                                version = state.config_version,
                                "cluster config applied with errors: {e:#}"
                            ),
                        }
                    }
                }
                Err(e) => tracing::error!(version = state.config_version, "replicated config rejected locally:\n{e}"),
            }
            applied = Some(version);
        }
        if let Some(o) = &owners {
            o.reconcile(&vips, &state);
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// Tells the leader every tick that this node is alive, whether it can serve and
/// whether it is leaving.
async fn report_loop(raft: ClusterNode, proxy: bool, leaving: Arc<AtomicBool>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(vip::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let leaving_now = leaving.load(Ordering::Relaxed);
        let report = NodeReport { node: raft.id(), proxy_healthy: proxy && !leaving_now, shutting_down: leaving_now };
        let r = tokio::time::timeout(vip::TICK * 4, raft.report(report)).await;
        if let Ok(Err(e)) = r {
            tracing::debug!(error = %e, "report to leader failed");
        }
    }
}
