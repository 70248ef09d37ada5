//! The `quorumlb` command: run a node, validate a config, run the demo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use quorumlb::config::Config;
use quorumlb::logging::{self, LogFormat};
use quorumlb::proxy::DataPlane;

/// mimalloc: size-segregated pages, so memory freed when connections go idle
/// (their tasks, buffers, socket registrations) is reused exactly and whole free
/// pages go back to the system, instead of staying as holes between the objects
/// that live on; and 128-byte-aligned allocations (tokio's tasks and socket
/// state) cost no padding.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "quorumlb", version, about = "Highly available L4/L7 load balancer")]
struct Cli {
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node with the given configuration.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file; prints OK or every problem with its place.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Operate a running cluster through its admin API.
    Ctl(quorumlb::ctl::CtlArgs),
    /// Print a new random API token for `[admin] token_file` (node-local; cluster-wide
    /// tokens come from `ctl token create`).
    GenToken,
    /// The appliance in one command, no root, no file: three demo backends and a
    /// three-node cluster on 127.0.0.1-127.0.0.3 with the admin panel. With --lab
    /// (root), a whole active/standby pair with a VIP in network namespaces instead.
    Demo {
        /// HTTP port of every node (the L4 TCP listener takes the next one). With
        /// --single, the proxy's whole listen address.
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: SocketAddr,
        /// Admin API and panel port of every node.
        #[arg(long, default_value_t = 19090)]
        admin_port: u16,
        /// Cluster RPC port of every node.
        #[arg(long, default_value_t = 17000)]
        cluster_port: u16,
        /// Just one proxy process in front of the backends, no cluster.
        #[arg(long)]
        single: bool,
        /// Root only: build the netns lab (deploy/lab/up.sh) with this binary: two
        /// proxies sharing a VIP, a witness, three backends and a client. Honours
        /// QLAB_PREFIX and QLAB_DIR.
        #[arg(long, conflicts_with = "lab_down")]
        lab: bool,
        /// Remove the lab again (deploy/lab/down.sh).
        #[arg(long)]
        lab_down: bool,
        /// Where up.sh and down.sh are, if not in this binary's source tree or ./deploy/lab.
        #[arg(long)]
        lab_scripts: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // No transparent huge pages: mimalloc asks for them on its arena, and then
    // memory is taken 2 MiB at a time, so a few thousand idle connections cost
    // whole huge pages, and the kernel's compaction to make them can stall the
    // data plane (the advice Redis and most databases give). A kernel without
    // the flag just keeps its default.
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("note: could not turn transparent huge pages off ({e}); memory is taken as the kernel decides");
    }
    let cli = Cli::parse();
    logging::init(cli.log_format);
    // One TLS crypto provider for the process (aws-lc-rs).
    quorumlb::tls::install_default_provider();
    match cli.command {
        Command::Validate { config } => match Config::load(&config) {
            Ok(_) => {
                println!("OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("refusing to start: the configuration has errors");
                    return ExitCode::from(2);
                }
            };
            exit(block_on(cfg.runtime.workers, run(config, cfg)))
        }
        Command::Demo { lab: true, lab_scripts, .. } => exit(quorumlb::demo::lab(false, lab_scripts.as_deref())),
        Command::Demo { lab_down: true, lab_scripts, .. } => exit(quorumlb::demo::lab(true, lab_scripts.as_deref())),
        Command::Demo { listen, single: true, .. } => exit(block_on(0, demo(listen))),
        Command::Demo { listen, admin_port, cluster_port, .. } => {
            let ports =
                quorumlb::demo_cluster::DemoPorts { http: listen.port(), admin: admin_port, cluster: cluster_port };
            exit(block_on(0, quorumlb::demo_cluster::run(ports)))
        }
        Command::Ctl(args) => exit(block_on(1, quorumlb::ctl::run(args))),
        Command::GenToken => {
            println!("{}", admin_web::auth::token::generate().plaintext);
            ExitCode::SUCCESS
        }
    }
}

fn exit(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One worker runs on a current-thread runtime (no cross-thread wakeups at all);
/// more run on the multi-thread scheduler.
fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(workers: usize, f: F) -> anyhow::Result<()> {
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if workers > 1 {
            b.worker_threads(workers);
        }
        b.enable_all().build()
    }
    .context("starting the async runtime")?;
    rt.block_on(f)
}

async fn run(path: PathBuf, cfg: Config) -> anyhow::Result<()> {
    if cfg.node.is_some() {
        return run_cluster(path, cfg).await;
    }
    let grace = cfg.runtime.shutdown_grace;
    let admin = cfg.admin.listen;
    let dp = DataPlane::start(Arc::new(cfg)).await.context("starting the data plane")?;
    if let Some(addr) = admin {
        let cancel = tokio_util::sync::CancellationToken::new();
        let bound = quorumlb::metrics::server::start(addr, Arc::clone(dp.metrics()), cancel)
            .await
            .with_context(|| format!("starting the admin listener on {addr}"))?;
        tracing::info!(listen = %bound, "admin listening: /metrics, /healthz");
    }
    tracing::info!(config = %path.display(), "quorumlb running");
    serve_until_signal(&dp, Some(&path), grace).await
}

/// A cluster member: the config comes from Raft; this file gives the node-local
/// sections and, for the node that creates the cluster, the first cluster config.
async fn run_cluster(path: PathBuf, cfg: Config) -> anyhow::Result<()> {
    let grace = cfg.runtime.shutdown_grace;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let member = quorumlb::cluster::Member::start(cfg, &text, &path.display().to_string()).await?;
    tracing::info!(config = %path.display(), "quorumlb cluster member running");
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => tracing::info!(
                "SIGHUP: in a cluster the config is changed through the admin API (PUT /api/v1/config), not the file"
            ),
        }
    }
    tracing::info!("shutting down: handing over VIPs, then finishing in-flight requests");
    member.shutdown(grace).await;
    Ok(())
}

/// Handles signals until SIGTERM/SIGINT: SIGHUP reloads the config file and the
/// certificates (a bad file is refused and the running config stays; a bad
/// certificate keeps the previous one); SIGUSR1 reopens the access log.
async fn serve_until_signal(dp: &Arc<DataPlane>, path: Option<&Path>, grace: Duration) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing SIGUSR1 handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => {
                dp.reopen_access_log();
                tracing::info!("access log reopened");
            }
            _ = hup.recv() => {
                let Some(path) = path else { continue };
                match Config::load(path) {
                    Ok(c) => match dp.apply(Arc::new(c)).await {
                        Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded"),
                        Err(e) => tracing::error!("configuration reloaded with errors: {e:#}"),
                    },
                    Err(e) => tracing::error!("reload refused, keeping the running configuration:\n{e}"),
                }
            }
        }
    }
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections, finishing in-flight requests"
    );
    if dp.shutdown(grace).await {
        tracing::info!("all connections finished");
    } else {
        tracing::warn!("grace period over, closing remaining connections");
    }
    Ok(())
}

async fn demo(listen: SocketAddr) -> anyhow::Result<()> {
    let mut backends = Vec::new();
    for i in 1..=3 {
        let addr = quorumlb::demo::spawn_backend(format!("backend-{i}"), "127.0.0.1:0".parse()?)
            .await
            .context("starting a demo backend")?;
        backends.push(addr);
    }
    let text = quorumlb::demo::config_text(listen, &backends);
    let cfg = Config::parse(&text, "<demo>").map_err(|e| anyhow::anyhow!("{e}"))?;
    let grace = cfg.runtime.shutdown_grace;
    let dp = DataPlane::start(Arc::new(cfg)).await.with_context(|| format!("starting the demo proxy on {listen}"))?;
    println!(
        "quorumlb demo is running. Backends: {}",
        backends.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")
    );
    println!();
    println!("  curl http://{listen}/                 # weighted round robin over 3 backends (2:1:1)");
    println!("  curl http://{listen}/api/x            # route /api -> least_conn pool");
    println!("  curl --http2-prior-knowledge http://{listen}/   # HTTP/2 cleartext");
    println!("  curl http://{}/toggle-health   # make backend-1 fail its health checks; watch it leave", backends[0]);
    println!();
    println!("Configuration in use:\n{text}");
    if nix::unistd::Uid::effective().is_root() {
        println!("Running as root: `quorumlb demo --lab` builds a real active/standby pair with a failing-over VIP");
        println!("in network namespaces instead (deploy/lab/up.sh).");
    }
    println!("Ctrl-C to stop.");
    serve_until_signal(&dp, None, grace).await
}
