//! The cluster parts of the configuration: the node-local `[node]` and `[cluster]`
//! sections (read from each node's own file, never replicated) and the `[[vip]]`
//! list (cluster config, replicated like listeners and pools).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::validate::Checker;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub id: Spanned<i64>,
    pub name: Option<String>,
    pub role: Option<Spanned<String>>,
    pub data_dir: Spanned<String>,
    pub cluster_listen: Spanned<String>,
    pub cluster_advertise: Option<Spanned<String>>,
    /// Per-node listener address overrides: `<listener name> = "addr:port"`.
    #[serde(default)]
    pub bind: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub peers: Spanned<Vec<RawPeer>>,
    pub secret_file: Spanned<String>,
    pub heartbeat_ms: Option<Spanned<u64>>,
    pub election_timeout_min_ms: Option<Spanned<u64>>,
    pub election_timeout_max_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub id: Spanned<i64>,
    pub address: Spanned<String>,
    /// Needed only by the node that creates the cluster; default "proxy".
    pub role: Option<Spanned<String>>,
    /// How the admin API and panel name that node (its own `[node] name` is not
    /// replicated, so other nodes learn it from here); default `node-<id>`.
    pub name: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVip {
    pub address: Spanned<String>,
    pub interface: Spanned<String>,
    /// Node id -> priority (1..255, higher wins). TOML keys are strings: `{ 1 = 150 }`.
    pub priority: Spanned<BTreeMap<String, i64>>,
    pub preempt: Option<bool>,
    pub preempt_delay_ms: Option<u64>,
    pub lease_ms: Option<Spanned<u64>>,
    /// Clock rate difference tolerated between nodes, in percent (default 1).
    pub max_drift_percent: Option<Spanned<f64>>,
    pub margin_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Proxy,
    Witness,
}

/// `[node]`: who this node is.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub id: u64,
    pub name: String,
    pub role: NodeRole,
    pub data_dir: PathBuf,
    pub cluster_listen: SocketAddr,
    /// Address the other nodes use to reach this one (defaults to cluster_listen).
    pub cluster_advertise: String,
    pub bind: BTreeMap<String, SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub id: u64,
    pub address: String,
    pub role: NodeRole,
    /// Display name of that node in the admin API, when the file gives one.
    pub name: Option<String>,
}

/// `[cluster]`: how to reach the others.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub peers: Vec<PeerSettings>,
    pub secret_file: PathBuf,
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
}

/// One virtual IP and who may own it.
#[derive(Debug, Clone, PartialEq)]
pub struct VipSettings {
    /// "10.0.0.100/24" or "fd00::100/64", as written (canonical form).
    pub address: String,
    pub ip: std::net::IpAddr,
    pub prefix: u8,
    pub interface: String,
    pub priority: BTreeMap<u64, u8>,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub lease: Duration,
    pub max_drift: f64,
    pub margin: Duration,
}

fn addr(c: &mut Checker<'_>, v: &Spanned<String>, key: &str) -> Option<SocketAddr> {
    match v.get_ref().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            c.err(v, format!("bad {key} {:?}: expected IP:port", v.get_ref()));
            None
        }
    }
}

fn positive_id(c: &mut Checker<'_>, v: &Spanned<i64>) -> u64 {
    if *v.get_ref() < 1 {
        c.err(v, format!("node id must be a positive integer, got {}", v.get_ref()));
        return 0;
    }
    *v.get_ref() as u64
}

pub(super) fn check_node(c: &mut Checker<'_>, n: &RawNode) -> Option<NodeSettings> {
    let id = positive_id(c, &n.id);
    let role = match n.role.as_ref().map(|r| r.get_ref().as_str()) {
        None | Some("proxy") => NodeRole::Proxy,
        Some("witness") => NodeRole::Witness,
        Some(other) => {
            c.err(n.role.as_ref()?, format!("unknown role {other:?}: expected \"proxy\" or \"witness\""));
            NodeRole::Proxy
        }
    };
    if n.data_dir.get_ref().is_empty() {
        c.err(&n.data_dir, "data_dir must not be empty");
    }
    let listen = addr(c, &n.cluster_listen, "cluster_listen");
    let advertise = match &n.cluster_advertise {
        Some(a) => {
            if a.get_ref().rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                c.err(a, format!("bad cluster_advertise {:?}: expected host:port", a.get_ref()));
            }
            a.get_ref().clone()
        }
        None => n.cluster_listen.get_ref().clone(),
    };
    let mut bind = BTreeMap::new();
    for (name, a) in &n.bind {
        if let Some(sa) = addr(c, a, "bind override") {
            bind.insert(name.clone(), sa);
        }
    }
    Some(NodeSettings {
        id,
        name: n.name.clone().unwrap_or_else(|| format!("node-{id}")),
        role,
        data_dir: PathBuf::from(n.data_dir.get_ref()),
        cluster_listen: listen?,
        cluster_advertise: advertise,
        bind,
    })
}

pub(super) fn check_cluster(c: &mut Checker<'_>, cl: &RawCluster, node: Option<&NodeSettings>) -> ClusterSettings {
    let mut ids = HashSet::new();
    let mut peers = Vec::new();
    for p in cl.peers.get_ref() {
        let id = positive_id(c, &p.id);
        if !ids.insert(id) {
            c.err(&p.id, format!("duplicate peer id {id}"));
        }
        if p.address.get_ref().rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
            c.err(&p.address, format!("bad peer address {:?}: expected host:port", p.address.get_ref()));
        }
        let role = match p.role.as_ref().map(|r| (r, r.get_ref().as_str())) {
            None | Some((_, "proxy")) => NodeRole::Proxy,
            Some((_, "witness")) => NodeRole::Witness,
            Some((r, other)) => {
                c.err(r, format!("unknown role {other:?}: expected \"proxy\" or \"witness\""));
                NodeRole::Proxy
            }
        };
        let name = p.name.as_ref().and_then(|n| {
            let v = n.get_ref().trim();
            if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
                c.err(n, "peer name must be 1 to 64 printable characters");
                return None;
            }
            Some(v.to_string())
        });
        peers.push(PeerSettings { id, address: p.address.get_ref().clone(), role, name });
    }
    if peers.is_empty() {
        c.err(&cl.peers, "peers must list every voting node, this one included");
    }
    if let Some(n) = node {
        if !peers.is_empty() && !ids.contains(&n.id) {
            c.err(&cl.peers, format!("peers must include this node (id {})", n.id));
        }
    }
    let heartbeat = c.ms(cl.heartbeat_ms.as_ref(), "heartbeat_ms", 50, 5);
    let emin = c.ms(cl.election_timeout_min_ms.as_ref(), "election_timeout_min_ms", 150, 10);
    let emax = c.ms(cl.election_timeout_max_ms.as_ref(), "election_timeout_max_ms", 300, 10);
    if emin <= heartbeat {
        if let Some(v) = &cl.election_timeout_min_ms {
            c.err(v, "election_timeout_min_ms must be longer than heartbeat_ms");
        }
    }
    if emax <= emin {
        if let Some(v) = cl.election_timeout_max_ms.as_ref().or(cl.election_timeout_min_ms.as_ref()) {
            c.err(v, "election_timeout_max_ms must be longer than election_timeout_min_ms");
        }
    }
    ClusterSettings {
        peers,
        secret_file: PathBuf::from(cl.secret_file.get_ref()),
        heartbeat,
        election_timeout_min: emin,
        election_timeout_max: emax,
    }
}

pub(super) fn check_vips(c: &mut Checker<'_>, vips: &[RawVip]) -> Vec<VipSettings> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for v in vips {
        let text = v.address.get_ref();
        let (ip_s, prefix_s) = text.split_once('/').unwrap_or((text.as_str(), ""));
        let Ok(ip) = ip_s.parse::<std::net::IpAddr>() else {
            c.err(&v.address, format!("bad VIP address {text:?}: expected e.g. \"10.0.0.100/24\" or \"fd00::100/64\""));
            continue;
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix_s.is_empty() { max } else { prefix_s.parse::<u8>().unwrap_or(255) };
        if prefix > max {
            c.err(&v.address, format!("bad prefix length in {text:?}: at most /{max}"));
            continue;
        }
        if !seen.insert(ip) {
            c.err(&v.address, format!("duplicate VIP {ip}"));
        }
        let iface = v.interface.get_ref();
        if iface.is_empty() || iface.len() > 15 || iface.contains('/') || iface.contains(char::is_whitespace) {
            c.err(&v.interface, format!("bad interface name {iface:?}"));
        }
        let mut priority = BTreeMap::new();
        for (k, p) in v.priority.get_ref() {
            match (k.parse::<u64>(), u8::try_from(*p)) {
                (Ok(id), Ok(p)) if id > 0 && p > 0 => {
                    priority.insert(id, p);
                }
                _ => c.err(
                    &v.priority,
                    format!("bad priority entry {k} = {p}: node ids are positive integers, priorities 1..255"),
                ),
            }
        }
        if priority.is_empty() {
            c.err(&v.priority, "priority must name at least one proxy node, e.g. priority = { 1 = 150, 2 = 100 }");
        }
        // The owner renews through the leader, so its lease must outlast a leader
        // election (openraft: election timeout plus the old leader's vote lease,
        // about 2 x election_timeout_max); 1 s covers the 150-300 ms defaults.
        let lease = c.ms(v.lease_ms.as_ref(), "lease_ms", 1000, 30);
        let drift = match &v.max_drift_percent {
            Some(d) if !(0.0..=10.0).contains(d.get_ref()) => {
                c.err(d, "max_drift_percent must be between 0 and 10");
                0.01
            }
            Some(d) => d.get_ref() / 100.0,
            None => 0.01,
        };
        out.push(VipSettings {
            address: format!("{ip}/{prefix}"),
            ip,
            prefix,
            interface: iface.clone(),
            priority,
            preempt: v.preempt.unwrap_or(false),
            preempt_delay: Duration::from_millis(v.preempt_delay_ms.unwrap_or(0)),
            lease,
            max_drift: drift,
            margin: Duration::from_millis(v.margin_ms.unwrap_or(100)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, NodeRole};

    const NODE: &str = r#"
[node]
id = 2
role = "witness"
data_dir = "/var/lib/quorumlb"
cluster_listen = "10.0.0.2:7400"
  [node.bind]
  web = "10.0.0.100:80"

[cluster]
peers = [ { id = 1, address = "10.0.0.1:7400" }, { id = 2, address = "10.0.0.2:7400" } ]
secret_file = "/etc/quorumlb/cluster.key"

[[vip]]
address = "10.0.0.100/24"
interface = "eth0"
priority = { 1 = 150, 3 = 100 }
preempt = true

[[listener]]
name = "web"
bind = "0.0.0.0:80"
protocol = "http"
default_pool = "p"
[[pool]]
name = "p"
  [[pool.backend]]
  address = "10.0.1.1:80"
"#;

    #[test]
    fn admin_tls_is_read_on_a_cluster_node_and_refused_elsewhere() {
        let with_tls = format!(
            "{NODE}\n[admin]\nlisten = \"127.0.0.1:9090\"\ntls = {{ cert_file = \"/etc/a.crt\", key_file = \"/etc/a.key\" }}\n"
        );
        let c = Config::parse(&with_tls, "n.toml").unwrap();
        let tls = c.admin.tls.expect("tls");
        assert_eq!((tls.cert_file.to_str(), tls.key_file.to_str()), (Some("/etc/a.crt"), Some("/etc/a.key")));

        let no_listen = "[node]\nid = 1\ndata_dir = \"/d\"\ncluster_listen = \"127.0.0.1:7400\"\n\
                         [cluster]\npeers = [ { id = 1, address = \"127.0.0.1:7400\" } ]\nsecret_file = \"/s\"\n\
                         [admin]\ntls = { cert_file = \"/a.crt\", key_file = \"/a.key\" }\n";
        let e = Config::parse(no_listen, "n.toml").unwrap_err().to_string();
        assert!(e.contains("[admin] tls needs [admin] listen"), "{e}");

        let standalone = "[admin]\nlisten = \"127.0.0.1:9090\"\ntls = { cert_file = \"/a.crt\", key_file = \"\" }\n";
        let e = Config::parse(standalone, "s.toml").unwrap_err().to_string();
        assert!(e.contains("certificate file path must not be empty"), "{e}");
        let standalone = standalone.replace("key_file = \"\"", "key_file = \"/a.key\"");
        let e = Config::parse(&standalone, "s.toml").unwrap_err().to_string();
        assert!(e.contains("applies to a cluster node's admin API"), "{e}");
    }

    #[test]
    fn node_cluster_and_vip_sections_parse() {
        let c = Config::parse(NODE, "n.toml").unwrap();
        let n = c.node.unwrap();
        assert_eq!((n.id, n.role, n.cluster_advertise.as_str()), (2, NodeRole::Witness, "10.0.0.2:7400"));
        assert_eq!(n.bind["web"], "10.0.0.100:80".parse().unwrap());
        assert_eq!(c.cluster.unwrap().peers.len(), 2);
        let v = &c.vips[0];
        assert_eq!((v.address.as_str(), v.prefix, v.preempt), ("10.0.0.100/24", 24, true));
        assert_eq!(v.priority[&1], 150);
        assert_eq!(v.lease.as_millis(), 1000);
    }

    #[test]
    fn cluster_mistakes_are_reported_in_place() {
        let bad = NODE
            .replace("id = 2\nrole", "id = 0\nrole")
            .replace("{ id = 2, address = \"10.0.0.2:7400\" }", "{ id = 1, address = \"nowhere\" }")
            .replace("10.0.0.100/24", "10.0.0.100/40")
            .replace("web = \"10.0.0.100:80\"", "webb = \"10.0.0.100:80\"");
        let e = Config::parse(&bad, "n.toml").unwrap_err().to_string();
        for needle in [
            "n.toml:3:6: node id must be a positive integer",
            "duplicate peer id 1",
            "bad peer address \"nowhere\"",
            "bad prefix length",
            "[node.bind] names listener \"webb\"",
        ] {
            assert!(e.contains(needle), "{needle} missing in:\n{e}");
        }
    }
}
