//! TEST FIXTURE, not the product path: an in-memory `AdminBackend` so admin-web's own
//! tests exercise its HTTP, auth and panel semantics without Raft. Config validation
//! here is a small stand-in (TOML syntax with line numbers, pool/backend shape); the
//! node's real validator replaces it in the product.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use admin_web::model::*;
use admin_web::{AdminBackend, BackendError, ConfigWrite};

pub const FIXTURE_CONFIG: &str = r#"# fixture config
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
default_pool = "web"

[[pool]]
name = "web"
algorithm = "round_robin"

  [[pool.backend]]
  address = "127.0.0.1:9001"

  [[pool.backend]]
  address = "127.0.0.1:9002"
  weight = 2

[[pool]]
name = "api"
algorithm = "least_conn"

  [[pool.backend]]
  address = "127.0.0.1:9101"
"#;

#[derive(Default)]
struct Inner {
    version: u64,
    toml: String,
    log_index: u64,
    overrides: BTreeMap<(String, String), (Option<AdminState>, Option<u32>)>,
    users: BTreeMap<String, (String, u64)>,
    tokens: BTreeMap<String, StoredToken>,
    audit: Vec<AuditEntry>,
    nodes: Vec<NodeStatus>,
}

pub struct FixtureBackend {
    inner: Mutex<Inner>,
    key: Vec<u8>,
    ticks: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn node(id: u64, state: RaftState, role: NodeRole) -> NodeStatus {
    NodeStatus {
        id,
        name: format!("node{id}"),
        address: format!("127.0.0.{id}:7000"),
        role,
        raft_state: state,
        voter: true,
        last_contact_ms: if state == RaftState::Leader { None } else { Some(12) },
    }
}

/// (pool name, algorithm, [(address, weight)]).
type PoolSpec = (String, String, Vec<(String, u32)>);

/// The pools of fixture config text.
fn pools_of(text: &str) -> Vec<PoolSpec> {
    let Ok(doc) = toml::from_str::<toml::Table>(text) else { return Vec::new() };
    let pools = doc.get("pool").and_then(|p| p.as_array()).cloned().unwrap_or_default();
    pools
        .iter()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?.to_string();
            let algo = p.get("algorithm").and_then(|a| a.as_str()).unwrap_or("round_robin").to_string();
            let backends = p
                .get("backend")
                .and_then(|b| b.as_array())
                .map(|bs| {
                    bs.iter()
                        .filter_map(|b| {
                            let addr = b.get("address")?.as_str()?.to_string();
                            let w = b.get("weight").and_then(|w| w.as_integer()).unwrap_or(1) as u32;
                            Some((addr, w))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some((name, algo, backends))
        })
        .collect()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
    (line, col)
}

/// The stand-in validator: TOML syntax, known top-level keys, pool names, backend addresses.
pub fn fixture_validate(text: &str) -> Result<(), Vec<ConfigProblem>> {
    let doc = match toml::from_str::<toml::Table>(text) {
        Ok(d) => d,
        Err(e) => {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            return Err(vec![ConfigProblem { line, column, message: e.message().to_string() }]);
        }
    };
    let mut problems = Vec::new();
    let line_of = |needle: &str| text.find(needle).map(|o| line_col(text, o)).unwrap_or((0, 0));
    for key in doc.keys() {
        if !["listener", "pool", "runtime", "node", "cluster", "admin", "vip", "access_log"].contains(&key.as_str()) {
            let (line, column) = line_of(key);
            problems.push(ConfigProblem { line, column, message: format!("unknown key `{key}`") });
        }
    }
    for (name, _, backends) in pools_of(text) {
        if name.is_empty() {
            problems.push(ConfigProblem { line: 0, column: 0, message: "pool name must not be empty".into() });
        }
        for (addr, _) in backends {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                let (line, column) = line_of(&format!("\"{addr}\""));
                problems.push(ConfigProblem { line, column, message: format!("invalid backend address `{addr}`") });
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

impl FixtureBackend {
    pub fn new() -> FixtureBackend {
        let inner = Inner {
            version: 1,
            toml: FIXTURE_CONFIG.to_string(),
            log_index: 1,
            nodes: vec![
                node(1, RaftState::Leader, NodeRole::Proxy),
                node(2, RaftState::Follower, NodeRole::Proxy),
                node(3, RaftState::Follower, NodeRole::Witness),
            ],
            ..Default::default()
        };
        FixtureBackend {
            inner: Mutex::new(inner),
            key: b"fixture-session-key-0123456789abcdef".to_vec(),
            ticks: AtomicU64::new(0),
        }
    }

    /// Adds a user with an already hashed password (tests hash with `hash_password`).
    pub fn add_user(&self, name: &str, hash: &str) {
        self.lock().users.insert(name.to_string(), (hash.to_string(), now_ms()));
    }

    /// Every stored password hash and token hash, to check none leaks into responses.
    pub fn stored_hashes(&self) -> Vec<String> {
        let g = self.lock();
        g.users.values().map(|(h, _)| h.clone()).chain(g.tokens.values().map(|t| t.token_hash.clone())).collect()
    }

    pub fn session_key_bytes(&self) -> Vec<u8> {
        self.key.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(g: &mut Inner, author: &str, action: &str, summary: String) -> WriteAck {
        g.log_index += 1;
        let e = AuditEntry {
            log_index: g.log_index,
            time_ms: now_ms(),
            author: author.into(),
            action: action.into(),
            summary,
        };
        g.audit.push(e);
        WriteAck { log_index: g.log_index, config_version: g.version }
    }
}

impl AdminBackend for FixtureBackend {
    async fn cluster(&self) -> Result<ClusterView, BackendError> {
        let g = self.lock();
        Ok(ClusterView {
            node_id: 1,
            leader: Some(1),
            term: 3,
            commit_index: Some(g.log_index),
            config_version: g.version,
            nodes: g.nodes.clone(),
            vips: vec![VipStatus {
                address: "192.0.2.10".into(),
                owner: Some(1),
                epoch: 4,
                lease_ms: Some(3000),
                lease_remaining_ms: Some(2500),
                owner_error: None,
            }],
            owned_vips: vec!["192.0.2.10".into()],
            sticky_entries: 0,
        })
    }

    async fn pools(&self) -> Result<Vec<PoolStatus>, BackendError> {
        let g = self.lock();
        Ok(pools_of(&g.toml)
            .into_iter()
            .map(|(name, algorithm, backends)| {
                let backends: Vec<BackendStatus> = backends
                    .into_iter()
                    .enumerate()
                    .map(|(i, (address, weight))| {
                        let (st, w) = g.overrides.get(&(name.clone(), address.clone())).cloned().unwrap_or_default();
                        BackendStatus {
                            id: address.clone(),
                            address,
                            health: if i == 0 { HealthState::Up } else { HealthState::Unknown },
                            admin_state: st.unwrap_or(AdminState::Enabled),
                            weight: w.unwrap_or(weight),
                            active_connections: 3,
                            requests_per_sec: 10.0,
                            error_rate: 0.01,
                            latency: Latency { p50_ms: 1.0, p95_ms: 4.0, p99_ms: 9.0, samples: 120 },
                        }
                    })
                    .collect();
                let latency = Latency { p50_ms: 1.0, p95_ms: 4.0, p99_ms: 9.0, samples: 120 * backends.len() as u64 };
                PoolStatus { name, algorithm, latency, backends }
            })
            .collect())
    }

    async fn config(&self) -> Result<ConfigDocument, BackendError> {
        let g = self.lock();
        Ok(ConfigDocument { version: g.version, toml: g.toml.clone() })
    }

    fn validate_config(&self, toml: &str) -> Result<(), Vec<ConfigProblem>> {
        fixture_validate(toml)
    }

    async fn replace_config(&self, w: ConfigWrite) -> Result<WriteAck, BackendError> {
        let mut g = self.lock();
        if let Some(v) = w.expected_version {
            if v != g.version {
                return Err(BackendError::Conflict(format!("version is {}, not {v}", g.version)));
            }
        }
        g.version += 1;
        g.toml = w.toml;
        let summary = format!("config version {}", g.version);
        Ok(Self::record(&mut g, &w.author, "replace_config", summary))
    }

    async fn set_backend_state(&self, p: &str, a: &str, s: AdminState, by: &str) -> Result<WriteAck, BackendError> {
        let mut g = self.lock();
        g.overrides.entry((p.into(), a.into())).or_default().0 = Some(s);
        g.version += 1;
        Ok(Self::record(&mut g, by, "set_backend_state", format!("backend {a} in pool {p} set to {s:?}")))
    }

    async fn set_backend_weight(&self, p: &str, a: &str, w: u32, by: &str) -> Result<WriteAck, BackendError> {
        let mut g = self.lock();
        g.overrides.entry((p.into(), a.into())).or_default().1 = Some(w);
        g.version += 1;
        Ok(Self::record(&mut g, by, "set_backend_weight", format!("backend {a} in pool {p} weight set to {w}")))
    }

    async fn reload_certificates(&self, by: &str) -> Result<CertificateReload, BackendError> {
        let mut g = self.lock();
        Self::record(&mut g, by, "reload_certificates", "certificates reloaded".into());
        Ok(CertificateReload { loaded: vec!["example.test".into()] })
    }

    async fn add_node(&self, n: NodeAdd, by: &str) -> Result<(), BackendError> {
        let mut g = self.lock();
        if g.nodes.iter().any(|x| x.id == n.id) {
            return Err(BackendError::Conflict(format!("node {} is already a member", n.id)));
        }
        let mut st = node(n.id, RaftState::Learner, n.role);
        st.address = n.address;
        g.nodes.push(st);
        Self::record(&mut g, by, "add_node", format!("node {} added", n.id));
        Ok(())
    }

    async fn remove_node(&self, id: u64, by: &str) -> Result<(), BackendError> {
        let mut g = self.lock();
        let before = g.nodes.len();
        g.nodes.retain(|n| n.id != id);
        if g.nodes.len() == before {
            return Err(BackendError::NotFound(format!("no node {id}")));
        }
        Self::record(&mut g, by, "remove_node", format!("node {id} removed"));
        Ok(())
    }

    async fn audit(&self) -> Result<Vec<AuditEntry>, BackendError> {
        Ok(self.lock().audit.clone())
    }

    async fn users(&self) -> Result<Vec<UserInfo>, BackendError> {
        Ok(self.lock().users.iter().map(|(u, (_, t))| UserInfo { username: u.clone(), updated_ms: *t }).collect())
    }

    async fn user(&self, username: &str) -> Result<Option<StoredUser>, BackendError> {
        Ok(self
            .lock()
            .users
            .get(username)
            .map(|(h, _)| StoredUser { username: username.into(), password_hash: h.clone() }))
    }

    async fn upsert_user(&self, username: &str, hash: &str, by: &str) -> Result<(), BackendError> {
        let mut g = self.lock();
        g.users.insert(username.into(), (hash.into(), now_ms()));
        Self::record(&mut g, by, "user_upsert", format!("user {username} updated"));
        Ok(())
    }

    async fn delete_user(&self, username: &str, by: &str) -> Result<(), BackendError> {
        let mut g = self.lock();
        g.users.remove(username).ok_or_else(|| BackendError::NotFound(format!("no user {username}")))?;
        Self::record(&mut g, by, "user_delete", format!("user {username} deleted"));
        Ok(())
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, BackendError> {
        Ok(self.lock().tokens.values().map(|t| t.info.clone()).collect())
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>, BackendError> {
        Ok(self.lock().tokens.get(id).cloned())
    }

    async fn create_token(&self, id: &str, name: &str, hash: &str, by: &str) -> Result<(), BackendError> {
        let mut g = self.lock();
        let info = TokenInfo { id: id.into(), name: name.into(), created_ms: now_ms(), author: by.into() };
        g.tokens.insert(id.into(), StoredToken { info, token_hash: hash.into() });
        Self::record(&mut g, by, "token_create", format!("token {id} ({name}) created"));
        Ok(())
    }

    async fn revoke_token(&self, id: &str, by: &str) -> Result<(), BackendError> {
        let mut g = self.lock();
        g.tokens.remove(id).ok_or_else(|| BackendError::NotFound(format!("no token {id}")))?;
        Self::record(&mut g, by, "token_revoke", format!("token {id} revoked"));
        Ok(())
    }

    async fn stats(&self) -> Result<StatsSnapshot, BackendError> {
        let t = self.ticks.fetch_add(1, Ordering::Relaxed) as f64;
        let pools = pools_of(&self.lock().toml)
            .into_iter()
            .enumerate()
            .map(|(i, (pool, _, _))| PoolStats {
                pool,
                requests_per_sec: 100.0 + 40.0 * ((t + i as f64) / 3.0).sin(),
                p99_ms: 20.0 + 5.0 * ((t + i as f64) / 5.0).cos(),
                errors_per_sec: (t as u64 % 4) as f64,
            })
            .collect();
        Ok(StatsSnapshot { time_ms: now_ms(), pools })
    }

    async fn metrics_text(&self) -> Result<String, BackendError> {
        Ok("# TYPE quorumlb_fixture_up gauge\nquorumlb_fixture_up 1\n".into())
    }

    async fn health(&self) -> Health {
        Health { ready: true, status: "ok".into() }
    }

    fn session_key(&self) -> Vec<u8> {
        self.key.clone()
    }
}
