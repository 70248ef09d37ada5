//! The TOML schema exactly as written by operators: serde types with source spans
//! on every value that later checks may need to point at. Nothing here is checked
//! beyond what serde does; `validate.rs` turns it into `Config`.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub node: Option<toml::Value>,
    #[serde(default)]
    pub cluster: Option<toml::Value>,
    #[serde(default)]
    pub admin: Option<toml::Value>,
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
    #[serde(default)]
    pub route: Vec<RawRoute>,
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
    pub health: Option<RawHealth>,
    pub passive: Option<RawPassive>,
    #[serde(default)]
    pub backend: Vec<RawBackend>,
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
