//! Certificate choice by SNI: exact name first, then a wildcard one label up, then
//! the listener's default (its first certificate). The set is swapped atomically,
//! so a reload affects the next handshake and never an open connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::LoadedCert;

/// Every certificate of one listener, indexed by the names it serves.
pub struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertSet {
    /// Earlier certificates win a name claimed twice; the first is the default.
    pub fn new(certs: Vec<LoadedCert>) -> Self {
        let mut set = CertSet { exact: HashMap::new(), wildcard: HashMap::new(), default: None };
        for c in certs {
            if set.default.is_none() {
                set.default = Some(Arc::clone(&c.key));
            }
            for name in c.names {
                match name.strip_prefix("*.") {
                    Some(parent) => set.wildcard.entry(parent.to_string()).or_insert_with(|| Arc::clone(&c.key)),
                    None => set.exact.entry(name).or_insert_with(|| Arc::clone(&c.key)),
                };
            }
        }
        set
    }

    /// The certificate for `server_name` (already lower-case or not).
    pub fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.');
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                lower.as_str()
            } else {
                name
            };
            if let Some(k) = self.exact.get(name) {
                return Some(Arc::clone(k));
            }
            // A wildcard covers exactly one label.
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return Some(Arc::clone(k));
                }
            }
        }
        self.default.clone()
    }
}

/// The rustls resolver of one listener; `swap` installs a reloaded set.
pub struct SniResolver {
    set: ArcSwap<CertSet>,
}

impl SniResolver {
    pub fn new(set: CertSet) -> Self {
        SniResolver { set: ArcSwap::from_pointee(set) }
    }

    pub fn swap(&self, set: CertSet) {
        self.set.store(Arc::new(set));
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.set.load();
        f.debug_struct("SniResolver").field("exact", &set.exact.len()).field("wildcard", &set.wildcard.len()).finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.set.load().choose(hello.server_name())
    }
}
