//! Active health checks: one task per (pool, backend) with a check configured,
//! started and stopped to match the current snapshot. Passive checks live with the
//! backend state (`BackendState::record_failure`), fed by the proxies.

mod check;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use check::{CheckError, run_check};

use crate::balance::BackendState;
use crate::config::{HealthCheck, HealthKind};
use crate::runtime::RuntimeConfig;

type Key = (String, SocketAddr);

struct Task {
    kind: HealthKind,
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
    state: Arc<BackendState>,
    handle: JoinHandle<()>,
}

#[derive(Default)]
pub struct HealthManager {
    tasks: Mutex<HashMap<Key, Task>>,
}

impl HealthManager {
    /// Starts checks that the snapshot adds or changes and stops the ones it drops.
    /// A backend whose checks are removed is marked healthy again.
    pub fn reconcile(&self, rt: &RuntimeConfig) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let mut wanted: HashMap<Key, (HealthCheck, Arc<BackendState>)> = HashMap::new();
        for pool in rt.pools.values() {
            for b in &pool.backends {
                let key = (pool.cfg.name.clone(), b.addr);
                match &pool.cfg.health {
                    Some(h) => {
                        wanted.insert(key, (h.clone(), Arc::clone(&b.state)));
                    }
                    None => b.state.set_healthy(true),
                }
            }
        }
        tasks.retain(|key, t| {
            let keep = wanted.get(key).is_some_and(|(h, s)| {
                h.kind == t.kind
                    && h.interval == t.interval
                    && h.timeout == t.timeout
                    && h.rise == t.rise
                    && h.fall == t.fall
                    && Arc::ptr_eq(s, &t.state)
            });
            if !keep {
                t.handle.abort();
                if !wanted.contains_key(key) {
                    t.state.set_healthy(true);
                }
            }
            keep
        });
        for (key, (h, state)) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let handle = tokio::spawn(check_loop(key.0.clone(), key.1, h.clone(), Arc::clone(&state)));
            tasks.insert(
                key,
                Task {
                    kind: h.kind,
                    interval: h.interval,
                    timeout: h.timeout,
                    rise: h.rise,
                    fall: h.fall,
                    state,
                    handle,
                },
            );
        }
    }

    pub fn stop(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for (_, t) in tasks.drain() {
            t.handle.abort();
        }
    }
}

impl Drop for HealthManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// HAProxy semantics: a backend starts up; `fall` consecutive failures take it
/// down, `rise` consecutive successes bring it back.
async fn check_loop(pool: String, addr: SocketAddr, h: HealthCheck, state: Arc<BackendState>) {
    // Spread checks of many backends over the interval instead of bursting.
    let jitter = Duration::from_millis(rand::random_range(0..=h.interval.as_millis().min(1000) as u64 / 4));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + jitter, h.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut ok_streak, mut fail_streak) = (0u32, 0u32);
    loop {
        ticker.tick().await;
        match run_check(addr, &h.kind, h.timeout).await {
            Ok(()) => {
                fail_streak = 0;
                ok_streak = ok_streak.saturating_add(1);
                if !state.is_healthy() && ok_streak >= h.rise {
                    state.set_healthy(true);
                    tracing::info!(%pool, backend = %addr, rise = h.rise, "backend is UP (health check)");
                }
            }
            Err(e) => {
                ok_streak = 0;
                fail_streak = fail_streak.saturating_add(1);
                if state.is_healthy() && fail_streak >= h.fall {
                    state.set_healthy(false);
                    tracing::warn!(%pool, backend = %addr, fall = h.fall, reason = %e, "backend is DOWN (health check)");
                } else {
                    tracing::debug!(%pool, backend = %addr, reason = %e, "health check failed");
                }
            }
        }
    }
}
