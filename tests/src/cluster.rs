//! Node files for a real cluster on 127.0.0.1: one shared secret, an admin
//! password and a node-local API token (`[admin] token_file`), per-node ports and
//! `[node.bind]` overrides, so tests and benchmarks describe a cluster in one line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{free_port, quorumlb_bin};

pub const ADMIN_PASSWORD: &str = "cluster-helper-admin-password-42";

/// One node of the cluster: ports on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    pub witness: bool,
    pub cluster: u16,
    pub admin: u16,
    /// Where this node's listener named `web` binds (proxies only).
    pub http: Option<u16>,
}

impl NodeSpec {
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin))
    }
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    }
}

/// Files shared by every node plus the node list.
pub struct ClusterFiles {
    pub dir: tempfile::TempDir,
    pub secret: PathBuf,
    pub password: PathBuf,
    pub token_file: PathBuf,
    /// The bearer token in `token_file` (accepted by every node's admin API).
    pub token: String,
    pub nodes: Vec<NodeSpec>,
}

impl ClusterFiles {
    /// `proxies` proxy nodes (ids 1..) then `witnesses` witness nodes.
    pub fn new(proxies: u64, witnesses: u64) -> ClusterFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("cluster.secret");
        std::fs::write(&secret, "cluster-helper-secret-0123456789abcdefghij").expect("secret");
        let password = dir.path().join("admin.password");
        std::fs::write(&password, format!("{ADMIN_PASSWORD}\n")).expect("password");
        let out = std::process::Command::new(quorumlb_bin()).arg("gen-token").output().expect("quorumlb gen-token");
        assert!(out.status.success(), "gen-token failed: {out:?}");
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let token_file = dir.path().join("admin.token");
        std::fs::write(&token_file, &token).expect("token file");
        let nodes = (1..=proxies + witnesses)
            .map(|id| NodeSpec {
                id,
                witness: id > proxies,
                cluster: free_port(),
                admin: free_port(),
                http: (id <= proxies).then(free_port),
            })
            .collect();
        ClusterFiles { dir, secret, password, token_file, token, nodes }
    }

    pub fn node(&self, id: u64) -> &NodeSpec {
        &self.nodes[id as usize - 1]
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("data{id}"))
    }

    /// Node `id`'s whole file: node-local sections, then `cluster_cfg` (only the
    /// first node's copy seeds the cluster; the others may pass it too).
    pub fn node_file(&self, id: u64, cluster_cfg: &str) -> String {
        let n = self.node(id);
        let peers: Vec<String> = self
            .nodes
            .iter()
            .map(|p| {
                let role = if p.witness { ", role = \"witness\"" } else { "" };
                format!("{{ id = {}, name = \"n{}\", address = \"127.0.0.1:{}\"{role} }}", p.id, p.id, p.cluster)
            })
            .collect();
        let bind = n.http.map(|p| format!("[node.bind]\nweb = \"127.0.0.1:{p}\"\n\n")).unwrap_or_default();
        format!(
            "[node]\nid = {id}\nname = \"n{id}\"\nrole = \"{role}\"\ndata_dir = \"{data}\"\ncluster_listen = \"127.0.0.1:{cp}\"\n\n\
             {bind}[cluster]\nsecret_file = \"{secret}\"\npeers = [ {peers} ]\n\n\
             [admin]\nlisten = \"127.0.0.1:{ap}\"\nbootstrap_password_file = \"{pw}\"\ntoken_file = \"{tf}\"\n\n{cluster_cfg}",
            role = if n.witness { "witness" } else { "proxy" },
            data = self.data_dir(id).display(),
            cp = n.cluster,
            secret = self.secret.display(),
            peers = peers.join(", "),
            ap = n.admin,
            pw = self.password.display(),
            tf = self.token_file.display(),
        )
    }

    pub fn data_path(&self, id: u64) -> PathBuf {
        self.data_dir(id)
    }

    pub fn dir_path(&self) -> &Path {
        self.dir.path()
    }
}
