//! Session affinity (`[pool.sticky]`): a signed cookie that names the backend, or a
//! local stick table keyed by client IP or a header, consulted before the pool's
//! algorithm. Tables live in `StickyStore`, outside the config snapshot, so a
//! reload that keeps a backend keeps its clients. New mappings are offered to an
//! optional observer (the Raft replicator) through a bounded queue; with no
//! observer attached that costs one atomic load. Replicated mappings come back in
//! through `StickyStore::{upsert, remove, replace_all}`.

mod cookie;
mod table;

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;

pub use cookie::CookieKey;
pub use table::{Entry, StickTable};

use crate::balance::Backend;
use crate::config::{StickyConfig, StickyMode};

/// Wall-clock milliseconds since the Unix epoch: the clock stick-table expiries use
/// on every node (the replicated log stamps the same kind of time).
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A new or refreshed mapping, as offered to the observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyUpdate {
    /// The table: the pool name.
    pub table: Arc<str>,
    pub key: String,
    /// `Backend::id`.
    pub backend: Arc<str>,
    pub expires_at_ms: u64,
}

/// Every pool's stick table, kept across config reloads.
#[derive(Default)]
pub struct StickyStore {
    tables: Mutex<HashMap<String, Arc<StickTable>>>,
    observer: ArcSwapOption<mpsc::Sender<StickyUpdate>>,
    /// Updates the observer's queue had no room for.
    dropped: AtomicU64,
}

impl StickyStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Attaches the (single) observer: every new mapping learned on this node is
    /// queued for it; when the queue is full updates are dropped and counted.
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<StickyUpdate> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.observer.store(Some(Arc::new(tx)));
        rx
    }

    pub fn dropped_updates(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn notify(&self, table: &Arc<str>, key: &str, backend: &Arc<str>, expires_at_ms: u64) {
        let guard = self.observer.load();
        let Some(tx) = guard.as_ref() else { return };
        let update = StickyUpdate {
            table: Arc::clone(table),
            key: key.to_string(),
            backend: Arc::clone(backend),
            expires_at_ms,
        };
        if tx.try_send(update).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The table of `pool`, created on first use; an existing one is kept (and so
    /// its mappings) whatever `max_entries` says until the pool disappears.
    pub fn table(&self, pool: &str, max_entries: usize) -> Arc<StickTable> {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(t.entry(pool.to_string()).or_insert_with(|| Arc::new(StickTable::new(max_entries))))
    }

    /// Forgets the tables of pools not in `keep`.
    pub fn retain(&self, keep: &[&str]) {
        self.tables.lock().unwrap_or_else(|e| e.into_inner()).retain(|name, _| keep.contains(&name.as_str()));
    }

    fn existing(&self, table: &str) -> Option<Arc<StickTable>> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner()).get(table).cloned()
    }

    /// Applies a replicated mapping (tables of pools without a stick table here
    /// are ignored).
    pub fn upsert(&self, table: &str, key: &str, backend: &str, expires_at_ms: u64) {
        if let Some(t) = self.existing(table) {
            t.upsert(key, backend.into(), expires_at_ms, wall_ms());
        }
    }

    pub fn remove(&self, table: &str, key: &str) {
        if let Some(t) = self.existing(table) {
            t.remove(key);
        }
    }

    /// Replaces every table's content with `entries` (table, key, backend, expiry).
    pub fn replace_all(&self, entries: impl IntoIterator<Item = (String, String, String, u64)>) {
        let tables: Vec<(String, Arc<StickTable>)> =
            self.tables.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (_, t) in &tables {
            t.clear();
        }
        let now = wall_ms();
        for (table, key, backend, exp) in entries {
            if let Some((_, t)) = tables.iter().find(|(n, _)| *n == table) {
                t.upsert(&key, backend.into(), exp, now);
            }
        }
    }
}

/// Where the key of a table mapping comes from for one request.
enum KeySource {
    Ip([u8; 48], usize),
    Header(HeaderValue),
}

impl KeySource {
    fn as_str(&self) -> Option<&str> {
        match self {
            KeySource::Ip(buf, n) => std::str::from_utf8(&buf[..*n]).ok(),
            KeySource::Header(v) => v.to_str().ok(),
        }
    }
}

/// The outcome of a sticky lookup, carried until the backend is known.
pub struct Decision {
    /// Backend index the affinity asks for (if any, and available or not).
    pub preferred: Option<usize>,
    key: Option<KeySource>,
    /// A table entry exists but is due for a refresh, or the cookie must be (re)issued.
    refresh: bool,
}

/// Affinity of one pool in one snapshot.
pub struct PoolSticky {
    pool: Arc<str>,
    mode: StickyMode,
    name: String,
    header: Option<HeaderName>,
    ttl: Duration,
    table: Option<Arc<StickTable>>,
    cookie_key: Option<CookieKey>,
    store: Arc<StickyStore>,
    /// Backend id -> index into the pool's backends.
    index: HashMap<Arc<str>, usize>,
    /// Index -> backend id.
    ids: Vec<Arc<str>>,
}

impl PoolSticky {
    pub fn new(
        pool: &str,
        cfg: &StickyConfig,
        backends: &[Backend],
        store: &Arc<StickyStore>,
        cookie_key: Option<CookieKey>,
    ) -> Self {
        let table = (cfg.mode != StickyMode::Cookie).then(|| store.table(pool, cfg.max_entries));
        let header = match cfg.mode {
            StickyMode::Header => HeaderName::from_bytes(cfg.name.as_bytes()).ok(),
            _ => None,
        };
        PoolSticky {
            pool: pool.into(),
            mode: cfg.mode,
            name: cfg.name.clone(),
            header,
            ttl: cfg.ttl,
            table,
            cookie_key,
            store: Arc::clone(store),
            index: backends.iter().enumerate().map(|(i, b)| (Arc::clone(&b.id), i)).collect(),
            ids: backends.iter().map(|b| Arc::clone(&b.id)).collect(),
        }
    }

    pub fn mode(&self) -> StickyMode {
        self.mode
    }

    /// Looks the request up; never allocates on a hit for table modes.
    pub fn lookup(&self, headers: &HeaderMap, client: IpAddr) -> Decision {
        let now = wall_ms();
        match self.mode {
            StickyMode::Cookie => {
                let Some(key) = &self.cookie_key else {
                    return Decision { preferred: None, key: None, refresh: false };
                };
                let found = crate::proxy::l7::cookie_value(headers, &self.name)
                    .and_then(|v| key.verify(&self.pool, v, now / 1000))
                    .and_then(|(id, exp_s)| self.index.get(id).map(|&i| (i, exp_s)));
                match found {
                    Some((i, exp_s)) => {
                        // Sliding expiry: re-issue once half the TTL is used.
                        let refresh = exp_s.saturating_mul(1000).saturating_sub(now) < self.ttl.as_millis() as u64 / 2;
                        Decision { preferred: Some(i), key: None, refresh }
                    }
                    None => Decision { preferred: None, key: None, refresh: true },
                }
            }
            StickyMode::SourceIp | StickyMode::Header => {
                let key = match self.mode {
                    StickyMode::SourceIp => {
                        let ip = match client {
                            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(client),
                            v4 => v4,
                        };
                        let mut buf = [0u8; 48];
                        let mut cur = std::io::Cursor::new(&mut buf[..]);
                        let _ = write!(cur, "{ip}");
                        let n = cur.position() as usize;
                        Some(KeySource::Ip(buf, n))
                    }
                    _ => self.header.as_ref().and_then(|h| headers.get(h)).map(|v| KeySource::Header(v.clone())),
                };
                let Some(k) = key.as_ref().and_then(KeySource::as_str) else {
                    return Decision { preferred: None, key: None, refresh: false };
                };
                let hit = self.table.as_ref().and_then(|t| t.get(k, now));
                match hit {
                    Some(e) => {
                        let refresh = e.expires_at_ms.saturating_sub(now) < self.ttl.as_millis() as u64 / 2;
                        Decision { preferred: self.index.get(&e.backend).copied(), key, refresh }
                    }
                    None => Decision { preferred: None, key, refresh: true },
                }
            }
        }
    }

    /// Records that backend `chosen` served the request. Returns the `Set-Cookie`
    /// value to add in cookie mode when one is due.
    pub fn record(&self, d: &Decision, chosen: usize, secure: bool) -> Option<HeaderValue> {
        let changed = d.preferred != Some(chosen);
        if !changed && !d.refresh {
            return None;
        }
        let id = self.ids.get(chosen)?;
        let now = wall_ms();
        let expires_at_ms = now + self.ttl.as_millis() as u64;
        match self.mode {
            StickyMode::Cookie => {
                let key = self.cookie_key.as_ref()?;
                let expires_s = expires_at_ms / 1000;
                let value = key.sign(&self.pool, id, expires_s);
                let cookie = format!(
                    "{}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
                    self.name,
                    self.ttl.as_secs(),
                    if secure { "; Secure" } else { "" }
                );
                HeaderValue::from_str(&cookie).ok()
            }
            StickyMode::SourceIp | StickyMode::Header => {
                let (Some(table), Some(key)) = (&self.table, d.key.as_ref().and_then(KeySource::as_str)) else {
                    return None;
                };
                if changed {
                    table.upsert(key, Arc::clone(id), expires_at_ms, now);
                } else {
                    table.touch(key, expires_at_ms);
                }
                self.store.notify(&self.pool, key, id, expires_at_ms);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::BackendState;

    fn backends() -> Vec<Backend> {
        (1..=3u16)
            .map(|p| Backend::new("web", ([127, 0, 0, 1], 9000 + p).into(), 1, Arc::new(BackendState::default())))
            .collect()
    }

    fn cfg(mode: StickyMode) -> StickyConfig {
        StickyConfig { mode, name: "x-user".into(), ttl: Duration::from_secs(60), secret_file: None, max_entries: 100 }
    }

    #[test]
    fn source_ip_mapping_is_learned_and_observed() {
        let store = StickyStore::new();
        let mut rx = store.subscribe(8);
        let b = backends();
        let s = PoolSticky::new("web", &cfg(StickyMode::SourceIp), &b, &store, None);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let d = s.lookup(&HeaderMap::new(), ip);
        assert_eq!(d.preferred, None);
        assert!(s.record(&d, 2, false).is_none());
        let d = s.lookup(&HeaderMap::new(), ip);
        assert_eq!(d.preferred, Some(2));
        let u = rx.try_recv().unwrap();
        assert_eq!((u.table.as_ref(), u.key.as_str(), &u.backend), ("web", "10.1.2.3", &b[2].id));
        // A second snapshot of the same pool sees the same table.
        let s2 = PoolSticky::new("web", &cfg(StickyMode::SourceIp), &b, &store, None);
        assert_eq!(s2.lookup(&HeaderMap::new(), ip).preferred, Some(2));
    }

    #[test]
    fn replicated_entries_are_honoured() {
        let store = StickyStore::new();
        let b = backends();
        let s = PoolSticky::new("web", &cfg(StickyMode::Header), &b, &store, None);
        store.upsert("web", "alice", &b[1].id, wall_ms() + 10_000);
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("alice"));
        assert_eq!(s.lookup(&h, "10.0.0.1".parse().unwrap()).preferred, Some(1));
        store.replace_all(Vec::new());
        assert_eq!(s.lookup(&h, "10.0.0.1".parse().unwrap()).preferred, None);
    }
}
