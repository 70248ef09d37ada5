//! The L7 plane: what the HTTP proxy needs besides the config snapshot, built once
//! per snapshot into a `ListenerPlan` per listener (TLS acceptor, rate limiters,
//! sticky lookups, resolved metric handles, access log) so a request does no
//! lookups by name. State that must outlive a snapshot (certificates, stick
//! tables, limiter buckets, cookie keys, upstream TLS) is kept here across
//! rebuilds; a file that fails to load keeps the previous good value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::{HeaderMap, Method, Uri};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use tokio_rustls::TlsAcceptor;

use super::route;
use crate::balance::BackendState;
use crate::config::{CertificateFiles, StickyMode, UpstreamTls, route_body_limit};
use crate::limits::rate::{RateRegistry, RequestLimiter};
use crate::metrics::access_log::AccessLog;
use crate::metrics::{BackendLabels, ListenerMetrics, Metrics, TargetMetrics};
use crate::runtime::{ListenerRuntime, PoolRuntime, RuntimeConfig};
use crate::sticky::{CookieKey, PoolSticky, StickyStore};
use crate::tls::{self, SniResolver, UpstreamConnector};

/// The TLS side of one https listener; the resolver is swapped on reload.
pub struct TlsListener {
    pub acceptor: TlsAcceptor,
    resolver: Arc<SniResolver>,
}

pub struct PoolPlan {
    pub rt: Arc<PoolRuntime>,
    pub sticky: Option<PoolSticky>,
    /// Metric handles per backend (index-aligned with `rt.backends`).
    pub targets: Vec<Arc<TargetMetrics>>,
    pub retries: Counter,
}

pub struct RoutePlan {
    pub pool: Arc<PoolPlan>,
    pub rate: Option<Arc<RequestLimiter>>,
    /// 0 = no limit.
    pub max_body: u64,
}

pub struct ListenerPlan {
    pub rt: Arc<ListenerRuntime>,
    pub name: Arc<str>,
    pub tls: Option<Arc<TlsListener>>,
    pub metrics: Arc<ListenerMetrics>,
    pub rate: Option<Arc<RequestLimiter>>,
    /// Index-aligned with `rt.routes`.
    pub routes: Vec<RoutePlan>,
    pub default: Option<RoutePlan>,
    pub access_log: Option<Arc<AccessLog>>,
    /// The hyper server settings, built once here rather than per connection.
    pub server: auto::Builder<TokioExecutor>,
    /// Set when a new build replaces this plan: open connections follow it.
    pub next: ArcSwapOption<ListenerPlan>,
}

impl ListenerPlan {
    /// The route a request takes (first match, else the default pool).
    pub fn route(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<&RoutePlan> {
        match route::select_index(&self.rt, method, uri, headers) {
            Some(i) => self.routes.get(i),
            None => self.default.as_ref(),
        }
    }
}

/// A backend's metric labels and the state its gauges are read from.
type BackendGauge = (BackendLabels, Arc<BackendState>);

#[derive(Default)]
struct Kept {
    tls: HashMap<String, Arc<TlsListener>>,
    cookie_keys: HashMap<String, CookieKey>,
    upstream_tls: HashMap<String, (UpstreamTls, Arc<UpstreamConnector>)>,
}

pub struct Plane {
    plans: ArcSwap<HashMap<String, Arc<ListenerPlan>>>,
    pub metrics: Arc<Metrics>,
    pub sticky: Arc<StickyStore>,
    rates: Arc<RateRegistry>,
    access_log: ArcSwapOption<AccessLog>,
    kept: Mutex<Kept>,
    /// Every backend of the current build, for the scrape-time health gauges.
    backends: Arc<ArcSwap<Vec<BackendGauge>>>,
}

impl Plane {
    /// A plane with nothing built yet; starts the limiter housekeeping task.
    pub fn new(metrics: Arc<Metrics>) -> Plane {
        let rates = Arc::new(RateRegistry::default());
        let weak: Weak<RateRegistry> = Arc::downgrade(&rates);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(r) = weak.upgrade() else { return };
                r.housekeep();
            }
        });
        let sticky = StickyStore::new();
        let s = Arc::clone(&sticky);
        metrics.add_hook(move |m| {
            let dropped = s.dropped_updates();
            let now = m.sticky_updates_dropped.get();
            if dropped > now {
                m.sticky_updates_dropped.inc_by(dropped - now);
            }
        });
        let backends: Arc<ArcSwap<Vec<BackendGauge>>> = Default::default();
        let b = Arc::clone(&backends);
        metrics.add_hook(move |m| {
            let now = crate::clock::now_ms();
            // Backends removed by a reload disappear from the exposition.
            m.backend_up.clear();
            m.backend_in_flight.clear();
            for (labels, state) in b.load().iter() {
                m.backend_up.get_or_create(labels).set(i64::from(state.is_available(now)));
                m.backend_in_flight.get_or_create(labels).set(i64::from(state.in_flight()));
            }
        });
        Plane {
            backends,
            plans: ArcSwap::from_pointee(HashMap::new()),
            metrics,
            sticky,
            rates,
            access_log: ArcSwapOption::empty(),
            kept: Mutex::new(Kept::default()),
        }
    }

    /// The plan of listener `name` in the current build.
    pub fn listener(&self, name: &str) -> Option<Arc<ListenerPlan>> {
        self.plans.load().get(name).cloned()
    }

    /// Reopens the access log file (SIGUSR1).
    pub fn reopen_access_log(&self) {
        if let Some(l) = self.access_log.load().as_ref() {
            l.reopen();
        }
    }

    /// Builds the plans for `rt` (call before publishing `rt`). Certificates and
    /// keys are re-read from disk every time; one that fails keeps the previous
    /// good one and is reported. Returns every problem found.
    pub fn rebuild(&self, rt: &RuntimeConfig) -> Vec<String> {
        let mut errors = Vec::new();
        let cfg = &rt.config;
        // Access log: restarted only when its settings change.
        let current = self.access_log.load_full();
        let log = match (&cfg.access_log, current) {
            (None, _) => None,
            (Some(s), Some(cur)) if cur.settings() == s => Some(cur),
            (Some(s), cur) => match AccessLog::start(s.clone(), self.metrics.access_log_dropped.clone()) {
                Ok(l) => Some(l),
                Err(e) => {
                    let place = s.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "stdout".into());
                    errors.push(format!("access log {place}: {e}"));
                    cur
                }
            },
        };
        self.access_log.store(log.clone());

        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        // Per pool: cookie keys and upstream TLS.
        let mut keys = HashMap::new();
        let mut upstream = HashMap::new();
        for p in rt.pools.values() {
            let name = &p.cfg.name;
            if let Some(s) = p.cfg.sticky.as_ref().filter(|s| s.mode == StickyMode::Cookie) {
                let loaded = s.secret_file.as_ref().map(|f| (f, std::fs::read(f)));
                match loaded {
                    Some((_, Ok(raw))) => match CookieKey::new(&raw) {
                        Some(k) => {
                            keys.insert(name.clone(), k);
                        }
                        None => errors.push(format!(
                            "pool {name:?}: sticky secret_file holds fewer than 16 bytes; keeping the previous key"
                        )),
                    },
                    Some((f, Err(e))) => {
                        errors.push(format!("pool {name:?}: cannot read sticky secret_file {}: {e}", f.display()))
                    }
                    None => {}
                }
                if !keys.contains_key(name) {
                    if let Some(old) = kept.cookie_keys.get(name) {
                        keys.insert(name.clone(), old.clone());
                    }
                }
            }
            let conn = match &p.cfg.tls {
                None => None,
                Some(t) => match kept.upstream_tls.get(name) {
                    Some((old_cfg, c)) if old_cfg == t => Some(Arc::clone(c)),
                    old => match tls::build_connector(t) {
                        Ok(c) => Some(Arc::new(c)),
                        Err(e) => {
                            errors.push(format!("pool {name:?}: upstream TLS: {e}"));
                            old.map(|(_, c)| Arc::clone(c))
                        }
                    },
                },
            };
            if let (Some(t), Some(c)) = (&p.cfg.tls, &conn) {
                upstream.insert(name.clone(), (t.clone(), Arc::clone(c)));
            }
            for h in &p.hosts {
                h.set_tls(conn.clone());
            }
        }
        self.backends.store(Arc::new(
            rt.pools
                .values()
                .flat_map(|p| {
                    p.backends.iter().map(|b| {
                        (BackendLabels { pool: p.cfg.name.clone(), backend: b.addr.to_string() }, Arc::clone(&b.state))
                    })
                })
                .collect(),
        ));
        kept.cookie_keys = keys;
        kept.upstream_tls = upstream;
        let table_pools: Vec<&str> = rt
            .pools
            .values()
            .filter(|p| p.cfg.sticky.as_ref().is_some_and(|s| s.mode != StickyMode::Cookie))
            .map(|p| p.cfg.name.as_str())
            .collect();
        self.sticky.retain(&table_pools);

        let mut plans = HashMap::new();
        let mut live_rates = Vec::new();
        let mut tls_kept = HashMap::new();
        for (lname, l) in &rt.listeners {
            let tls = if l.cfg.http.certificates.is_empty() {
                None
            } else {
                match self.listener_tls(lname, &l.cfg.http.certificates, kept.tls.get(lname)) {
                    Ok(t) => Some(t),
                    Err((e, old)) => {
                        errors.push(format!("listener {lname:?}: {e}; keeping the previous certificates"));
                        old
                    }
                }
            };
            if let Some(t) = &tls {
                tls_kept.insert(lname.clone(), Arc::clone(t));
            }
            let metrics = self.metrics.listener(lname);
            let mut pool_plans: HashMap<String, Arc<PoolPlan>> = HashMap::new();
            let mut pool_plan = |p: &Arc<PoolRuntime>| {
                Arc::clone(pool_plans.entry(p.cfg.name.clone()).or_insert_with(|| {
                    let sticky = p.cfg.sticky.as_ref().and_then(|s| {
                        let key = kept.cookie_keys.get(&p.cfg.name).cloned();
                        (s.mode != StickyMode::Cookie || key.is_some())
                            .then(|| PoolSticky::new(&p.cfg.name, s, &p.backends, &self.sticky, key))
                    });
                    let targets = p
                        .backends
                        .iter()
                        .map(|b| self.metrics.target(lname, &p.cfg.name, &b.addr.to_string()))
                        .collect();
                    Arc::new(PoolPlan {
                        rt: Arc::clone(p),
                        sticky,
                        targets,
                        retries: self.metrics.retries(&p.cfg.name),
                    })
                }))
            };
            let mut rate = |place: String, r: &Option<crate::config::RateLimit>| {
                r.as_ref().map(|r| {
                    let l = self.rates.get(&place, r);
                    live_rates.push(Arc::clone(&l));
                    l
                })
            };
            let routes = l
                .routes
                .iter()
                .enumerate()
                .map(|(i, (r, p))| RoutePlan {
                    pool: pool_plan(p),
                    rate: rate(format!("{lname}/route/{i}"), &r.limits.rate_limit),
                    max_body: route_body_limit(&l.cfg.http, Some(r)),
                })
                .collect();
            let default = l.default_pool.as_ref().map(|p| RoutePlan {
                pool: pool_plan(p),
                rate: None,
                max_body: route_body_limit(&l.cfg.http, None),
            });
            let listener_rate = rate(format!("{lname}/listener"), &l.cfg.http.rate_limit);
            plans.insert(
                lname.clone(),
                Arc::new(ListenerPlan {
                    rt: Arc::clone(l),
                    name: lname.as_str().into(),
                    tls,
                    metrics,
                    rate: listener_rate,
                    routes,
                    default,
                    access_log: log.clone(),
                    server: super::server_builder(&l.cfg),
                    next: ArcSwapOption::empty(),
                }),
            );
        }
        kept.tls = tls_kept;
        self.rates.retain(&live_rates);
        for (name, old) in self.plans.load().iter() {
            if let Some(new) = plans.get(name) {
                old.next.store(Some(Arc::clone(new)));
            }
        }
        self.plans.store(Arc::new(plans));
        errors
    }

    /// Loads a listener's certificates: into the existing resolver if there is
    /// one (open connections keep their session; new handshakes see the new set).
    fn listener_tls(
        &self,
        name: &str,
        files: &[CertificateFiles],
        old: Option<&Arc<TlsListener>>,
    ) -> Result<Arc<TlsListener>, (String, Option<Arc<TlsListener>>)> {
        let set = tls::load_set(files).map_err(|e| (e.to_string(), old.cloned()))?;
        if let Some(old) = old {
            old.resolver.swap(set);
            tracing::info!(listener = %name, certificates = files.len(), "certificates loaded");
            return Ok(Arc::clone(old));
        }
        let resolver = Arc::new(SniResolver::new(set));
        let config = tls::server_config(Arc::clone(&resolver)).map_err(|e| (e.to_string(), None))?;
        tracing::info!(listener = %name, certificates = files.len(), "certificates loaded");
        Ok(Arc::new(TlsListener { acceptor: TlsAcceptor::from(config), resolver }))
    }
}
