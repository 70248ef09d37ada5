//! Shared helpers for cross-crate integration tests: real HTTP backends on
//! 127.0.0.1, an HTTP client, and the `quorumlb` binary run as a child process
//! that is always stopped by its PID.

pub mod backend;
pub mod browser;
pub mod client;
pub mod cluster;
pub mod l4;
pub mod process;
pub mod tls;

pub use backend::TestBackend;
pub use process::{NodeProcess, quorumlb_bin};

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub async fn wait_until<F: FnMut() -> bool>(timeout: std::time::Duration, mut f: F) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests that
/// start a listener right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A data plane running inside the test process.
pub struct Proxy {
    pub dp: std::sync::Arc<quorumlb::proxy::DataPlane>,
    pub addr: std::net::SocketAddr,
}

impl Proxy {
    /// Starts a proxy from config text in which `{bind}` stands for a free
    /// 127.0.0.1 port (the first listener's address).
    pub async fn start(config: &str) -> Proxy {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let text = config.replace("{bind}", &addr.to_string());
        let cfg = quorumlb::config::Config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        let dp = quorumlb::proxy::DataPlane::start(std::sync::Arc::new(cfg)).await.expect("start data plane");
        Proxy { dp, addr }
    }

    /// Applies new config text (same `{bind}` substitution, same address).
    pub async fn reload(&self, config: &str) {
        let text = config.replace("{bind}", &self.addr.to_string());
        let cfg = quorumlb::config::Config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        self.dp.apply(std::sync::Arc::new(cfg)).await.expect("apply");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// `[[pool.backend]]` blocks for the given backends, with optional weights.
pub fn backend_blocks(backends: &[&TestBackend], weights: &[u32]) -> String {
    let mut s = String::new();
    for (i, b) in backends.iter().enumerate() {
        s.push_str(&format!("  [[pool.backend]]\n  address = \"{}\"\n", b.addr));
        if let Some(w) = weights.get(i) {
            s.push_str(&format!("  weight = {w}\n"));
        }
    }
    s
}
