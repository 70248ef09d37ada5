//! Runs the real `quorumlb` binary as a child process with a config written to a
//! temporary directory. The child is stopped by its exact PID when the handle is
//! dropped, even if the test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Path of the `quorumlb` binary of this workspace, built once if needed
/// (`QUORUMLB_BIN` names a prebuilt one instead, e.g. for the cluster benchmark).
pub fn quorumlb_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("QUORUMLB_BIN") {
            return PathBuf::from(bin);
        }
        // target/<profile>/deps/<test-exe> -> target/<profile>/quorumlb
        let exe = std::env::current_exe().expect("current exe");
        // (a binary of this crate, like the cluster benchmark, sits in target/<profile>).
        let exe_dir = exe.parent().expect("exe dir");
        let profile_dir =
            if exe_dir.ends_with("deps") { exe_dir.parent().expect("target dir") } else { exe_dir }.to_path_buf();
        let bin = profile_dir.join("quorumlb");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "quorumlb", "--bin", "quorumlb"]);
        if release {
            cmd.arg("--release");
        }
        // Always (re)build: cargo makes this a no-op when it is fresh, and a stale
        // binary would test old code.
        let status = cmd.status().expect("running cargo build for the quorumlb binary");
        assert!(status.success(), "building the quorumlb binary failed");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

pub struct NodeProcess {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl NodeProcess {
    /// Writes `config` and starts `quorumlb run`; stderr goes to a file in the
    /// temp dir (read it with `log()`).
    pub fn start(config: &str) -> NodeProcess {
        Self::start_args(config, &[])
    }

    pub fn start_args(config: &str, extra: &[&str]) -> NodeProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("quorumlb.toml");
        std::fs::write(&config_path, config).expect("write config");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = Command::new(quorumlb_bin())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(extra)
            .env("RUST_LOG", std::env::var("QLB_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn quorumlb");
        NodeProcess { child, dir, config_path, stderr_path }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), sig);
    }

    /// Resident memory of the process in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until a TCP connect to `addr` succeeds (the listener is up).
    pub fn wait_listening(&mut self, addr: std::net::SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("quorumlb exited early with {status}; log:\n{}", self.log());
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("quorumlb did not listen on {addr} within {timeout:?}; log:\n{}", self.log());
    }

    /// Waits for the process to exit (bounded) and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}
