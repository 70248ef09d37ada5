//! The TOML schema exactly as written by operators: serde types with source spans
//! on every value that later checks may need to point at. Nothing here is checked
//! beyond what serde does; `validate.rs` turns it into `Config`.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub node: Option<super::cluster::RawNode>,
    #[serde(default)]
    pub cluster: Option<super::cluster::RawCluster>,
    #[serde(default)]
    pub vip: Vec<super::cluster::RawVip>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub access_log: Option<RawAccessLog>,
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub listener: Vec<RawListener>,
    #[serde(default)]
    pub pool: Vec<RawPool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    /// Worker threads for the data plane; 0 = one per core.
    pub workers: Option<Spanned<i64>>,
    pub shutdown_grace_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Spanned<String>,
    pub bind: Spanned<String>,
    pub protocol: Spanned<String>,
    pub default_pool: Option<Spanned<String>>,
    pub client_header_timeout_ms: Option<Spanned<u64>>,
    pub idle_timeout_ms: Option<Spanned<u64>>,
    pub maxconn: Option<Spanned<u64>>,
    /// Most connections open at once from one client IP; 0 = unlimited.
    pub maxconn_per_source: Option<Spanned<u64>>,
    /// Expect a PROXY protocol v1/v2 header from an L4 tier in front.
    pub accept_proxy: Option<Spanned<bool>>,
    pub udp_idle_timeout_ms: Option<Spanned<u64>>,
    pub udp_max_flows: Option<Spanned<u64>>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    /// PEM certificate chain and key pairs of an https listener.
    #[serde(default)]
    pub certificate: Vec<RawCertificate>,
    /// On an http listener: answer every request with a 308 to the https URL.
    pub redirect_https: Option<bool>,
    /// Port put in the redirect URL; absent = the default 443.
    pub redirect_https_port: Option<Spanned<u16>>,
    pub rate_limit: Option<RawRateLimit>,
    /// Largest request head (request line and headers) in bytes, else 431.
    pub max_header_bytes: Option<Spanned<u64>>,
    /// Most request header fields, else 431.
    pub max_headers: Option<Spanned<u64>>,
    /// Largest request body in bytes for every route of the listener (0 = no limit), else 413.
    pub max_body_bytes: Option<Spanned<u64>>,
    /// Plain http: a keep-alive connection idle this long moves to the idle lot
    /// (0 = never).
    pub idle_park_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert_file: Spanned<String>,
    pub key_file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests_per_second: Spanned<u32>,
    pub burst: Option<Spanned<u32>>,
    pub key: Option<Spanned<String>>,
}

/// `[admin]`: the node's admin/metrics address. More keys come with the admin panel.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Spanned<String>>,
    /// File holding the first password of user `admin` (read once, when the node
    /// creates a new cluster).
    pub bootstrap_password_file: Option<String>,
    /// File holding a node-local API token (`quorumlb gen-token`), accepted as a
    /// bearer token on this node only; for scripts before any user exists.
    pub token_file: Option<Spanned<String>>,
    /// Serve the admin API and panel over https with this certificate and key.
    pub tls: Option<RawCertificate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    /// `"text"` (default) or `"json"`.
    pub format: Option<Spanned<String>>,
    /// File path, or `"-"` / absent for stdout.
    pub path: Option<String>,
    /// Lines queued for the writer before new ones are dropped (and counted).
    pub buffer: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub path_exact: Option<Spanned<String>>,
    pub path_regex: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub header: Option<RawHeaderMatch>,
    pub pool: Spanned<String>,
    pub rate_limit: Option<RawRateLimit>,
    /// Overrides the listener's `max_body_bytes` for this route.
    pub max_body_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderMatch {
    pub name: Spanned<String>,
    /// Exact value; when absent the header only has to be present.
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: Spanned<String>,
    #[serde(default)]
    pub algorithm: Option<Spanned<String>>,
    pub hash_key: Option<Spanned<String>>,
    pub connect_timeout_ms: Option<Spanned<u64>>,
    pub response_timeout_ms: Option<Spanned<u64>>,
    pub keepalive: Option<u32>,
    pub keepalive_timeout_ms: Option<u64>,
    pub retries: Option<Spanned<u32>>,
    /// PROXY protocol header sent to backends: "v1" or "v2".
    pub send_proxy: Option<Spanned<String>>,
    pub health: Option<RawHealth>,
    pub passive: Option<RawPassive>,
    pub tls: Option<RawPoolTls>,
    pub sticky: Option<RawSticky>,
    #[serde(default)]
    pub backend: Vec<RawBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoolTls {
    pub verify: Option<bool>,
    pub ca_file: Option<Spanned<String>>,
    pub sni: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    pub mode: Spanned<String>,
    pub name: Option<Spanned<String>>,
    pub ttl_s: Option<Spanned<u64>>,
    /// File holding the cookie signing key (cookie mode).
    pub secret_file: Option<Spanned<String>>,
    /// Most entries kept in the stick table (source_ip and header modes).
    pub max_entries: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub kind: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub host: Option<String>,
    pub interval_ms: Option<Spanned<u64>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub expect_status: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassive {
    pub max_fails: Option<u32>,
    pub fail_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub state: Option<Spanned<String>>,
}
