//! The config a node actually runs: the replicated cluster config (TOML text in the
//! Raft state), this node's own `[node]`/`[cluster]`/`[admin]` sections, its
//! `[node.bind]` listener overrides, and the operators' backend overrides (drain,
//! disable, weight) from the state machine.

use std::collections::BTreeMap;

use raft_store::{BackendAdminState, BackendOverride, ClusterState};

use crate::balance::AdminState;
use crate::config::{Config, ConfigErrors};

/// Sections that belong to one node and are never replicated.
pub const LOCAL_SECTIONS: [&str; 3] = ["node", "cluster", "admin"];

/// The cluster part of a config file: everything but the node-local sections, as
/// TOML text (comments are not kept).
pub fn cluster_part(text: &str, origin: &str) -> Result<String, ConfigErrors> {
    let mut table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| ConfigErrors::single(origin, e.message().to_string()))?;
    for s in LOCAL_SECTIONS {
        table.remove(s);
    }
    toml::to_string(&table).map_err(|e| ConfigErrors::single(origin, format!("cannot re-encode config: {e}")))
}

/// Checks a cluster config proposed through the admin API or `ctl`: the same
/// validator as `quorumlb validate`, and no node-local sections (those would be
/// silently ignored, which hides mistakes).
pub fn validate_cluster_text(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let cfg = Config::parse(text, origin)?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigErrors::single(origin, e.to_string()))?;
    for s in LOCAL_SECTIONS {
        if table.contains_key(s) {
            return Err(ConfigErrors::single(
                origin,
                format!("[{s}] is node-local and is read from each node's own file; remove it from the cluster config"),
            ));
        }
    }
    Ok(cfg)
}

/// Builds the running config from the replicated state and the local file.
pub fn build(state: &ClusterState, local: &Config) -> Result<Config, ConfigErrors> {
    let Some(record) = &state.config else {
        // No cluster config yet: nothing to serve.
        let mut empty = Config::parse("", "<cluster>")?;
        copy_local(&mut empty, local);
        return Ok(empty);
    };
    let mut cfg = Config::parse(&record.toml, &format!("<cluster config v{}>", record.version))?;
    copy_local(&mut cfg, local);
    apply_overrides(&mut cfg, &state.backend_overrides);
    Ok(cfg)
}

fn copy_local(cfg: &mut Config, local: &Config) {
    cfg.node = local.node.clone();
    cfg.cluster = local.cluster.clone();
    cfg.admin = local.admin.clone();
    cfg.runtime = local.runtime.clone();
    if let Some(n) = &local.node {
        for l in &mut cfg.listeners {
            if let Some(addr) = n.bind.get(&l.name) {
                l.bind = *addr;
            }
        }
    }
}

fn apply_overrides(cfg: &mut Config, overrides: &BTreeMap<String, BTreeMap<String, BackendOverride>>) {
    for pool in &mut cfg.pools {
        let Some(o) = overrides.get(&pool.name) else { continue };
        for b in &mut pool.backends {
            let Some(ov) = o.get(&b.address.to_string()) else { continue };
            if let Some(s) = ov.state {
                b.state = match s {
                    BackendAdminState::Enabled => AdminState::Enabled,
                    BackendAdminState::Draining => AdminState::Draining,
                    BackendAdminState::Disabled => AdminState::Disabled,
                };
            }
            if let Some(w) = ov.weight {
                b.weight = w.clamp(1, 1000);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[node]
id = 1
data_dir = "/tmp/x"
cluster_listen = "127.0.0.1:7400"
  [node.bind]
  web = "127.0.0.1:28080"
[cluster]
peers = [ { id = 1, address = "127.0.0.1:7400" } ]
secret_file = "/tmp/secret"

[[listener]]
name = "web"
bind = "0.0.0.0:80"
protocol = "http"
default_pool = "p"
[[pool]]
name = "p"
  [[pool.backend]]
  address = "127.0.0.1:9001"
"#;

    #[test]
    fn local_sections_stay_local_and_bind_overrides_apply() {
        let text = cluster_part(FILE, "f").unwrap();
        assert!(!text.contains("[node]") && !text.contains("secret_file"), "{text}");
        validate_cluster_text(&text, "c").unwrap();
        assert!(validate_cluster_text(FILE, "c").unwrap_err().to_string().contains("[node] is node-local"));

        let local = Config::parse(FILE, "f").unwrap();
        let mut state = ClusterState {
            config: Some(raft_store::ConfigRecord {
                version: 1,
                toml: text,
                author: "t".into(),
                comment: None,
                time_ms: 0,
            }),
            ..Default::default()
        };
        state.backend_overrides.entry("p".into()).or_default().insert(
            "127.0.0.1:9001".into(),
            BackendOverride { state: Some(BackendAdminState::Draining), weight: Some(7) },
        );
        let cfg = build(&state, &local).unwrap();
        assert_eq!(cfg.listeners[0].bind.to_string(), "127.0.0.1:28080");
        assert_eq!(cfg.pools[0].backends[0].state, AdminState::Draining);
        assert_eq!(cfg.pools[0].backends[0].weight, 7);
        assert_eq!(cfg.node.unwrap().id, 1);
    }
}
