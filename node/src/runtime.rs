//! The immutable runtime snapshot the data plane reads: the validated config with
//! pools resolved into backends, selectors and upstream connection pools. A new
//! snapshot reuses the runtime state (health, counters, idle connections) of every
//! backend that it keeps, so a reload does not reset health or drop pooled
//! connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::balance::{self, Backend, BackendState, Selector};
use crate::config::{Config, HashKey, Listener, Pool, Route};
use crate::proxy::l7::upstream::HostPool;

pub struct RuntimeConfig {
    pub config: Arc<Config>,
    pub pools: HashMap<String, Arc<PoolRuntime>>,
    pub listeners: HashMap<String, Arc<ListenerRuntime>>,
}

pub struct ListenerRuntime {
    pub cfg: Listener,
    pub routes: Vec<(Route, Arc<PoolRuntime>)>,
    pub default_pool: Option<Arc<PoolRuntime>>,
}

pub struct PoolRuntime {
    pub cfg: Pool,
    pub backends: Vec<Backend>,
    /// Upstream HTTP connection pools, index-aligned with `backends`.
    pub hosts: Vec<Arc<HostPool>>,
    pub selector: Box<dyn Selector>,
}

impl PoolRuntime {
    /// Picks a backend that is available now and not in `tried`.
    pub fn choose(&self, key: u64, tried: &Tried, now_ms: u64) -> Option<usize> {
        self.selector.pick(&self.backends, key, &|i| !tried.contains(i) && self.backends[i].state.is_available(now_ms))
    }

    pub fn any_available(&self, now_ms: u64) -> bool {
        self.backends.iter().any(|b| b.state.is_available(now_ms))
    }

    pub fn uses_key(&self) -> bool {
        self.selector.uses_key()
    }

    pub fn hash_key(&self) -> &HashKey {
        &self.cfg.hash_key
    }
}

/// Backends already attempted for one request (bitset; pools beyond 128 backends
/// simply stop excluding, which at worst retries a backend twice).
#[derive(Default, Clone, Copy)]
pub struct Tried(u128);

impl Tried {
    pub fn contains(&self, i: usize) -> bool {
        i < 128 && self.0 & (1u128 << i) != 0
    }
    pub fn insert(&mut self, i: usize) {
        if i < 128 {
            self.0 |= 1u128 << i;
        }
    }
}

/// Runtime state of one backend carried from the previous snapshot.
type Carried<'a> = (&'a Arc<BackendState>, &'a Arc<HostPool>);

impl RuntimeConfig {
    /// Builds a snapshot, carrying over per-backend state from `previous`.
    pub fn build(config: Arc<Config>, previous: Option<&RuntimeConfig>) -> RuntimeConfig {
        let mut old: HashMap<(&str, SocketAddr), Carried<'_>> = HashMap::new();
        if let Some(prev) = previous {
            for p in prev.pools.values() {
                for (b, h) in p.backends.iter().zip(&p.hosts) {
                    old.insert((p.cfg.name.as_str(), b.addr), (&b.state, h));
                }
            }
        }
        let mut pools = HashMap::new();
        for p in &config.pools {
            let mut backends = Vec::with_capacity(p.backends.len());
            let mut hosts = Vec::with_capacity(p.backends.len());
            for b in &p.backends {
                let (state, host) = match old.get(&(p.name.as_str(), b.address)) {
                    Some((s, h)) => (Arc::clone(s), Arc::clone(h)),
                    None => (Arc::new(BackendState::default()), Arc::new(HostPool::new(b.address))),
                };
                state.set_admin(b.state);
                host.configure(p.keepalive, p.keepalive_timeout);
                backends.push(Backend::new(&p.name, b.address, b.weight, state));
                hosts.push(host);
            }
            let selector = balance::build(p.algorithm, &backends);
            pools.insert(p.name.clone(), Arc::new(PoolRuntime { cfg: p.clone(), backends, hosts, selector }));
        }
        let mut listeners = HashMap::new();
        for l in &config.listeners {
            // Validation guarantees every referenced pool exists; a missing one is
            // skipped rather than trusted.
            let routes =
                l.routes.iter().filter_map(|r| pools.get(&r.pool).map(|p| (r.clone(), Arc::clone(p)))).collect();
            let default_pool = l.default_pool.as_ref().and_then(|n| pools.get(n).cloned());
            listeners.insert(l.name.clone(), Arc::new(ListenerRuntime { cfg: l.clone(), routes, default_pool }));
        }
        RuntimeConfig { config, pools, listeners }
    }
}
