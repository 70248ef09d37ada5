//! The replicated cluster state (`ClusterState`) and the deterministic rules that apply
//! one `Request` to it. No I/O and no wall clock: the only time is `stamped_ms`.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::sticky::{StickySink, StickyTables};
use crate::types::{BackendAdminState, Command, NodeId, Outcome, Request, Response};

/// How many audit entries the state keeps (oldest dropped first).
pub const AUDIT_CAPACITY: usize = 1000;

/// The current cluster config, kept as the operator's TOML text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub version: u64,
    pub toml: String,
    pub author: String,
    pub comment: Option<String>,
    pub time_ms: u64,
}

/// Runtime overrides of one backend; `None` means "as in the config".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendOverride {
    pub state: Option<BackendAdminState>,
    pub weight: Option<u32>,
}

/// Who owns a VIP, fenced by a strictly increasing epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipAssignment {
    pub vip: String,
    pub owner: Option<NodeId>,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    pub password_hash: String,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub token_hash: String,
    pub created_ms: u64,
    pub author: String,
}

/// One line of the audit trail. Never holds a secret or a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub log_index: u64,
    pub time_ms: u64,
    pub author: String,
    pub action: String,
    pub summary: String,
}

/// Everything replicated except the sticky tables (which go to the `StickySink`).
/// Published as an immutable `Arc<ClusterState>` after every applied batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub config: Option<ConfigRecord>,
    /// Bumped by every config replacement and backend override.
    pub config_version: u64,
    /// pool -> backend address -> override.
    pub backend_overrides: BTreeMap<String, BTreeMap<String, BackendOverride>>,
    pub vips: BTreeMap<String, VipAssignment>,
    pub users: BTreeMap<String, UserRecord>,
    pub tokens: BTreeMap<String, TokenRecord>,
    pub audit: VecDeque<AuditEntry>,
    /// Index of the last applied log entry.
    pub last_applied: Option<u64>,
    /// The replicated clock: the greatest `stamped_ms` applied so far.
    pub clock_ms: u64,
    /// Number of sticky mappings held (the mappings themselves are in the sink).
    pub sticky_entries: usize,
}

impl ClusterState {
    /// Is `node` the owner of `vip` at exactly `epoch`?
    pub fn is_vip_owner(&self, vip: &str, epoch: u64, node: NodeId) -> bool {
        self.vips.get(vip).is_some_and(|a| a.epoch == epoch && a.owner == Some(node))
    }
}

/// Cluster state plus the sticky tables: exactly what a snapshot holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterData {
    pub(crate) state: ClusterState,
    pub(crate) sticky: StickyTables,
}

fn rejected(reason: String) -> Outcome {
    Outcome::Rejected { reason }
}

impl ClusterData {
    /// Applies one command carried by log entry `index`. Deterministic: same inputs,
    /// same result on every node.
    pub(crate) fn apply(&mut self, index: u64, req: &Request, sink: &dyn StickySink) -> Response {
        let now = req.stamped_ms;
        self.state.clock_ms = self.state.clock_ms.max(now);
        for (table, key) in self.sticky.expire(self.state.clock_ms) {
            sink.expired(&table, &key);
        }
        let outcome = self.apply_command(index, now, &req.cmd, sink);
        self.state.last_applied = Some(index);
        self.state.sticky_entries = self.sticky.len();
        Response { log_index: index, config_version: self.state.config_version, outcome }
    }

    /// An entry without a command (blank or membership) still advances `last_applied`.
    pub(crate) fn apply_marker(&mut self, index: u64) -> Response {
        self.state.last_applied = Some(index);
        Response { log_index: index, config_version: self.state.config_version, outcome: Outcome::Applied }
    }

    fn audit(&mut self, index: u64, now: u64, author: &str, action: &str, summary: String) {
        if self.state.audit.len() >= AUDIT_CAPACITY {
            self.state.audit.pop_front();
        }
        self.state.audit.push_back(AuditEntry {
            log_index: index,
            time_ms: now,
            author: author.to_string(),
            action: action.to_string(),
            summary,
        });
    }

    fn backend_override(&mut self, pool: &str, address: &str) -> &mut BackendOverride {
        self.state.backend_overrides.entry(pool.to_string()).or_default().entry(address.to_string()).or_default()
    }

    fn apply_command(&mut self, index: u64, now: u64, cmd: &Command, sink: &dyn StickySink) -> Outcome {
        let action = cmd.action();
        match cmd {
            Command::ReplaceConfig { toml, author, comment, expected_version } => {
                if let Some(expected) = expected_version.filter(|&v| v != self.state.config_version) {
                    let current = self.state.config_version;
                    return Outcome::Conflict {
                        reason: format!("config version is {current}, not {expected}; reload and retry"),
                    };
                }
                self.state.config_version += 1;
                let version = self.state.config_version;
                self.state.config = Some(ConfigRecord {
                    version,
                    toml: toml.clone(),
                    author: author.clone(),
                    comment: comment.clone(),
                    time_ms: now,
                });
                let summary = match comment {
                    Some(c) => format!("config version {version} ({} bytes): {c}", toml.len()),
                    None => format!("config version {version} ({} bytes)", toml.len()),
                };
                self.audit(index, now, author, action, summary);
                Outcome::Applied
            }
            Command::SetBackendState { pool, address, state, author } => {
                if pool.is_empty() || address.is_empty() {
                    return rejected("pool and address must not be empty".into());
                }
                self.backend_override(pool, address).state = Some(*state);
                self.state.config_version += 1;
                let summary = format!("backend {address} in pool {pool} set to {state:?}");
                self.audit(index, now, author, action, summary);
                Outcome::Applied
            }
            Command::SetBackendWeight { pool, address, weight, author } => {
                if pool.is_empty() || address.is_empty() {
                    return rejected("pool and address must not be empty".into());
                }
                self.backend_override(pool, address).weight = Some(*weight);
                self.state.config_version += 1;
                let summary = format!("backend {address} in pool {pool} weight set to {weight}");
                self.audit(index, now, author, action, summary);
                Outcome::Applied
            }
            Command::StickyUpsert { entries } => {
                for e in entries {
                    let exp = now.saturating_add(e.ttl_ms);
                    if exp <= self.state.clock_ms {
                        // Already expired by the replicated clock: it must not exist.
                        if self.sticky.remove(&e.table, &e.key) {
                            sink.expired(&e.table, &e.key);
                        }
                        continue;
                    }
                    self.sticky.insert(e.table.clone(), e.key.clone(), e.backend.clone(), exp);
                    sink.upsert(&e.table, &e.key, &e.backend, exp);
                }
                Outcome::Applied
            }
            Command::StickyRemove { table, keys } => {
                for key in keys {
                    if self.sticky.remove(table, key) {
                        sink.remove(table, key);
                    }
                }
                Outcome::Applied
            }
            Command::VipAssign { vip, owner, epoch } => {
                if vip.is_empty() {
                    return rejected("vip must not be empty".into());
                }
                let current = self.state.vips.get(vip).map(|a| a.epoch);
                if let Some(cur) = current {
                    if *epoch <= cur {
                        return rejected(format!("stale epoch {epoch} for vip {vip}: current epoch is {cur}"));
                    }
                }
                self.state.vips.insert(vip.clone(), VipAssignment { vip: vip.clone(), owner: *owner, epoch: *epoch });
                let who = owner.map_or_else(|| "nobody".to_string(), |n| format!("node {n}"));
                let summary = format!("vip {vip} assigned to {who} at epoch {epoch}");
                self.audit(index, now, "cluster", action, summary);
                Outcome::Applied
            }
            Command::VipReleased { vip, epoch, node } => {
                let Some(a) = self.state.vips.get_mut(vip) else {
                    return rejected(format!("vip {vip} has no assignment"));
                };
                if a.epoch != *epoch || a.owner != Some(*node) {
                    return rejected(format!(
                        "node {node} does not own vip {vip} at epoch {epoch} (epoch {}, owner {:?})",
                        a.epoch, a.owner
                    ));
                }
                a.owner = None;
                let summary = format!("node {node} released vip {vip} at epoch {epoch}");
                self.audit(index, now, "cluster", action, summary);
                Outcome::Applied
            }
            Command::UserUpsert { username, password_hash, author } => {
                if username.is_empty() || password_hash.is_empty() {
                    return rejected("username and password hash must not be empty".into());
                }
                let existed = self
                    .state
                    .users
                    .insert(
                        username.clone(),
                        UserRecord {
                            username: username.clone(),
                            password_hash: password_hash.clone(),
                            updated_ms: now,
                        },
                    )
                    .is_some();
                let verb = if existed { "updated" } else { "created" };
                self.audit(index, now, author, action, format!("user {username} {verb}"));
                Outcome::Applied
            }
            Command::UserDelete { username, author } => {
                if self.state.users.remove(username).is_none() {
                    return rejected(format!("no user named {username}"));
                }
                self.audit(index, now, author, action, format!("user {username} deleted"));
                Outcome::Applied
            }
            Command::TokenCreate { id, name, token_hash, author } => {
                if id.is_empty() || token_hash.is_empty() {
                    return rejected("token id and hash must not be empty".into());
                }
                if self.state.tokens.contains_key(id) {
                    return rejected(format!("token id {id} already exists"));
                }
                self.state.tokens.insert(
                    id.clone(),
                    TokenRecord {
                        id: id.clone(),
                        name: name.clone(),
                        token_hash: token_hash.clone(),
                        created_ms: now,
                        author: author.clone(),
                    },
                );
                self.audit(index, now, author, action, format!("token {id} ({name}) created"));
                Outcome::Applied
            }
            Command::TokenRevoke { id, author } => {
                if self.state.tokens.remove(id).is_none() {
                    return rejected(format!("no token with id {id}"));
                }
                self.audit(index, now, author, action, format!("token {id} revoked"));
                Outcome::Applied
            }
            Command::MembershipNote { author, summary } => {
                self.audit(index, now, author, action, summary.clone());
                Outcome::Applied
            }
            Command::Noop => Outcome::Applied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sticky::InMemoryStickySink;
    use crate::types::StickyEntry;

    fn req(cmd: Command, stamped_ms: u64) -> Request {
        Request { cmd, stamped_ms }
    }

    fn upsert(key: &str, ttl_ms: u64) -> Command {
        Command::StickyUpsert {
            entries: vec![StickyEntry { table: "web".into(), key: key.into(), backend: "10.0.0.1:80".into(), ttl_ms }],
        }
    }

    #[test]
    fn config_and_backend_overrides_bump_version_and_audit_without_secrets() {
        let sink = InMemoryStickySink::new();
        let mut d = ClusterData::default();
        let cfg = Command::ReplaceConfig {
            toml: "a = 1".into(),
            author: "alice".into(),
            comment: Some("first".into()),
            expected_version: None,
        };
        let r = d.apply(1, &req(cfg, 10), &sink);
        assert_eq!(r.config_version, 1);
        let st = Command::SetBackendState {
            pool: "web".into(),
            address: "10.0.0.1:80".into(),
            state: BackendAdminState::Draining,
            author: "bob".into(),
        };
        assert_eq!(d.apply(2, &req(st, 11), &sink).config_version, 2);
        let w = Command::SetBackendWeight {
            pool: "web".into(),
            address: "10.0.0.1:80".into(),
            weight: 7,
            author: "bob".into(),
        };
        assert_eq!(d.apply(3, &req(w, 12), &sink).config_version, 3);
        let o = &d.state.backend_overrides["web"]["10.0.0.1:80"];
        assert_eq!(o.state, Some(BackendAdminState::Draining));
        assert_eq!(o.weight, Some(7));
        let user = Command::UserUpsert {
            username: "carol".into(),
            password_hash: "$argon2id$secret-hash".into(),
            author: "alice".into(),
        };
        assert!(d.apply(4, &req(user, 13), &sink).is_applied());
        let audit = serde_json::to_string(&d.state.audit).unwrap();
        assert!(!audit.contains("secret-hash"));
        assert_eq!(d.state.audit.len(), 4);
        assert_eq!(d.state.last_applied, Some(4));
    }

    #[test]
    fn audit_trail_is_bounded() {
        let sink = InMemoryStickySink::new();
        let mut d = ClusterData::default();
        for i in 0..(AUDIT_CAPACITY as u64 + 5) {
            let cmd = Command::ReplaceConfig {
                toml: String::new(),
                author: "a".into(),
                comment: None,
                expected_version: None,
            };
            d.apply(i + 1, &req(cmd, i), &sink);
        }
        assert_eq!(d.state.audit.len(), AUDIT_CAPACITY);
        assert_eq!(d.state.audit.front().map(|a| a.log_index), Some(6));
    }

    #[test]
    fn config_replace_with_a_stale_base_version_conflicts_and_changes_nothing() {
        let sink = InMemoryStickySink::new();
        let mut d = ClusterData::default();
        let put = |toml: &str, expected| Command::ReplaceConfig {
            toml: toml.into(),
            author: "a".into(),
            comment: None,
            expected_version: expected,
        };
        assert!(d.apply(1, &req(put("v1", Some(0)), 1), &sink).is_applied());
        // Two writers both read version 1: the first applied entry wins.
        assert!(d.apply(2, &req(put("alice", Some(1)), 2), &sink).is_applied());
        let lost = d.apply(3, &req(put("bob", Some(1)), 3), &sink);
        match &lost.outcome {
            Outcome::Conflict { reason } => assert!(reason.contains("version is 2, not 1"), "{reason}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(lost.config_version, 2);
        assert_eq!(d.state.config.as_ref().map(|c| c.toml.as_str()), Some("alice"));
        assert_eq!(d.state.audit.len(), 2, "a lost race is not audited as a change");
    }

    #[test]
    fn sticky_expiry_follows_stamped_time_only() {
        let sink = InMemoryStickySink::new();
        let mut d = ClusterData::default();
        d.apply(1, &req(upsert("a", 100), 1_000), &sink);
        d.apply(2, &req(upsert("b", 500), 1_000), &sink);
        assert_eq!(sink.get("web", "a"), Some(("10.0.0.1:80".into(), 1_100)));
        d.apply(3, &req(Command::Noop, 1_099), &sink);
        assert_eq!(sink.len(), 2);
        d.apply(4, &req(Command::Noop, 1_100), &sink);
        assert_eq!(sink.get("web", "a"), None);
        assert_eq!(sink.len(), 1);
        // A stamp behind the replicated clock cannot resurrect time.
        d.apply(5, &req(upsert("c", 50), 1_000), &sink);
        assert_eq!(sink.get("web", "c"), None);
        assert_eq!(d.state.sticky_entries, 1);
        d.apply(
            6,
            &req(Command::StickyRemove { table: "web".into(), keys: vec!["b".into(), "zz".into()] }, 1_101),
            &sink,
        );
        assert!(sink.is_empty());
    }

    #[test]
    fn vip_assign_is_fenced_by_epoch_and_release_needs_the_owner() {
        let sink = InMemoryStickySink::new();
        let mut d = ClusterData::default();
        let assign = |owner, epoch| Command::VipAssign { vip: "192.0.2.10".into(), owner, epoch };
        assert!(d.apply(1, &req(assign(Some(1), 1), 0), &sink).is_applied());
        assert!(d.apply(2, &req(assign(Some(2), 2), 0), &sink).is_applied());
        let stale = d.apply(3, &req(assign(Some(1), 2), 0), &sink);
        assert!(matches!(stale.outcome, Outcome::Rejected { ref reason } if reason.contains("stale epoch")));
        assert!(d.state.is_vip_owner("192.0.2.10", 2, 2));
        assert!(!d.state.is_vip_owner("192.0.2.10", 2, 1));
        let wrong = Command::VipReleased { vip: "192.0.2.10".into(), epoch: 2, node: 1 };
        assert!(!d.apply(4, &req(wrong, 0), &sink).is_applied());
        let right = Command::VipReleased { vip: "192.0.2.10".into(), epoch: 2, node: 2 };
        assert!(d.apply(5, &req(right, 0), &sink).is_applied());
        assert_eq!(d.state.vips["192.0.2.10"].owner, None);
        assert!(!d.state.is_vip_owner("192.0.2.10", 2, 2));
    }

    #[test]
    fn users_and_tokens_reject_missing_or_duplicate_ids() {
        let sink = InMemoryStickySink::new();
        let mut d = ClusterData::default();
        let del = Command::UserDelete { username: "ghost".into(), author: "a".into() };
        assert!(!d.apply(1, &req(del, 0), &sink).is_applied());
        let mk =
            || Command::TokenCreate { id: "t1".into(), name: "ci".into(), token_hash: "h".into(), author: "a".into() };
        assert!(d.apply(2, &req(mk(), 0), &sink).is_applied());
        assert!(!d.apply(3, &req(mk(), 0), &sink).is_applied());
        let revoke = || Command::TokenRevoke { id: "t1".into(), author: "a".into() };
        assert!(d.apply(4, &req(revoke(), 0), &sink).is_applied());
        assert!(!d.apply(5, &req(revoke(), 0), &sink).is_applied());
        assert!(d.state.tokens.is_empty());
    }
}
