//! Configuration: the TOML schema (`raw`), its validation into typed values with
//! file:line:column errors (`validate`), and the typed `Config` the rest of the node
//! reads. Defaults follow what HAProxy and nginx operators expect.

mod cluster;
mod l7;
mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use cluster::{ClusterSettings, NodeRole, NodeSettings, PeerSettings, VipSettings};
pub use l7::{
    AccessLogFormat, AccessLogSettings, AdminSettings, CertificateFiles, HttpSettings, RateKey, RateLimit, RouteLimits,
    StickyConfig, StickyMode, UpstreamTls, read_token_file, route_body_limit,
};
pub use validate::{ConfigError, ConfigErrors};

/// A validated configuration. Every value here has been checked; building runtime
/// state from it cannot fail on input.
#[derive(Debug, Clone)]
pub struct Config {
    pub runtime: RuntimeSettings,
    pub listeners: Vec<Listener>,
    pub pools: Vec<Pool>,
    /// `[node]`: node-local, never replicated.
    pub node: Option<NodeSettings>,
    /// `[cluster]`: node-local, never replicated.
    pub cluster: Option<ClusterSettings>,
    /// `[[vip]]`: cluster config.
    pub vips: Vec<VipSettings>,
    /// `[admin]`: the metrics/admin address.
    pub admin: AdminSettings,
    /// `[access_log]`: absent = no access log.
    pub access_log: Option<AccessLogSettings>,
}

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Data-plane worker threads; 0 means one per core.
    pub workers: usize,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    /// HTTP over TLS, terminated here with the listener's certificates.
    Https,
    /// L4 TCP relay: bytes in, bytes out, no parsing.
    Tcp,
    /// L4 UDP: datagrams relayed per client flow.
    Udp,
}

impl Protocol {
    /// Whether listeners of this protocol accept TCP connections (and so share the
    /// stream address space: an http and a tcp listener cannot use one address).
    pub fn is_stream(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https | Protocol::Tcp)
    }

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    pub default_pool: Option<String>,
    /// Time allowed to receive a request's headers, and to wait idle for the next
    /// request on a keep-alive connection (HAProxy `timeout http-request` and
    /// `timeout http-keep-alive` together).
    pub client_header_timeout: Duration,
    /// Longest silence on an established connection (L4) before it is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once on this listener; 0 = unlimited.
    pub maxconn: u64,
    /// Most connections open at once from one client IP; 0 = unlimited. With
    /// `accept_proxy` the client IP is the one the PROXY header names.
    pub maxconn_per_source: u64,
    /// Read a PROXY protocol v1/v2 header first and take the client address from it.
    pub accept_proxy: bool,
    /// UDP: a flow with no datagram either way for this long is forgotten.
    pub udp_idle_timeout: Duration,
    /// UDP: most client flows tracked at once; datagrams of new clients beyond it are dropped.
    pub udp_max_flows: usize,
    pub routes: Vec<Route>,
    /// TLS, redirect, rate limit and request size limits (http and https).
    pub http: HttpSettings,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub host: Option<HostMatch>,
    pub path: Option<PathMatch>,
    pub method: Option<http::Method>,
    pub header: Option<HeaderMatch>,
    pub pool: String,
    pub limits: RouteLimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-case exact host name.
    Exact(String),
    /// `*.example.com`: stored as `.example.com`, matches any sub-domain.
    Suffix(String),
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: http::HeaderName,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    LeastConn,
    LeastTime,
    Random,
    IpHash,
    ConsistentHash,
}

impl Algorithm {
    pub const NAMES: &'static [&'static str] =
        &["round_robin", "weighted_round_robin", "least_conn", "least_time", "random", "ip_hash", "consistent_hash"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "round_robin" => Algorithm::RoundRobin,
            "weighted_round_robin" => Algorithm::WeightedRoundRobin,
            "least_conn" => Algorithm::LeastConn,
            "least_time" => Algorithm::LeastTime,
            "random" => Algorithm::Random,
            "ip_hash" => Algorithm::IpHash,
            "consistent_hash" => Algorithm::ConsistentHash,
            _ => return None,
        })
    }
}

/// What the hashing algorithms hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    SourceIp,
    Uri,
    Header(http::HeaderName),
    Cookie(String),
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub algorithm: Algorithm,
    pub hash_key: HashKey,
    pub connect_timeout: Duration,
    /// Time allowed for the backend to send response headers.
    pub response_timeout: Duration,
    /// Idle upstream connections kept per backend (nginx `keepalive`).
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    /// Extra attempts on another backend after a failed connect.
    pub retries: u32,
    /// PROXY protocol header written to each new backend connection (HAProxy `send-proxy`).
    pub send_proxy: Option<ProxyVersion>,
    pub health: Option<HealthCheck>,
    pub passive: Option<PassiveCheck>,
    pub backends: Vec<BackendConfig>,
    /// `[pool.tls]`: TLS towards the backends.
    pub tls: Option<UpstreamTls>,
    /// `[pool.sticky]`: session affinity.
    pub sticky: Option<StickyConfig>,
}

/// PROXY protocol version (HAProxy `send-proxy` / `send-proxy-v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// Text: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// Binary, with the 12-byte signature.
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthKind {
    Tcp,
    Http { path: String, host: Option<String>, expect: (u16, u16) },
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub kind: HealthKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone)]
pub struct PassiveCheck {
    pub max_fails: u32,
    pub fail_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub address: SocketAddr,
    pub weight: u32,
    pub state: crate::balance::AdminState,
}

impl Config {
    /// Parses and validates `text`; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        validate::parse(text, origin)
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::single(&origin, format!("cannot read file: {e}")))?;
        Self::parse(&text, &origin)
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
}
