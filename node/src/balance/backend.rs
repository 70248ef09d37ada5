//! A backend as the data plane sees it: static identity from the config plus shared
//! runtime state (health, admin state, in-flight count, response-time average and
//! recent-latency histogram) that survives config reloads which keep the backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::metrics::latency::{LatencySnapshot, LatencyWindow};

/// Operator-set state of a backend (HAProxy: ready / drain / maint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    Enabled,
    Draining,
    Disabled,
}

/// One backend of one pool in one config snapshot. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Stable id, used in sticky cookies and tables: the same address in the same
    /// pool always has the same id, on every node.
    pub id: Arc<str>,
    pub addr: SocketAddr,
    /// Effective weight (config, or an operator override). Always >= 1.
    pub weight: u32,
    pub state: Arc<BackendState>,
}

impl Backend {
    pub fn new(pool: &str, addr: SocketAddr, weight: u32, state: Arc<BackendState>) -> Self {
        let id = format!("{:016x}", crate::balance::hash_key(format!("{pool}/{addr}").as_bytes()));
        Backend { id: id.into(), addr, weight: weight.max(1), state }
    }
}

/// Runtime state shared by every snapshot that contains the backend.
#[derive(Debug)]
pub struct BackendState {
    /// Result of active health checks (true when no checks are configured).
    healthy: AtomicBool,
    /// Passive ejection: down until this many ms after `clock_origin`, 0 = not ejected.
    ejected_until_ms: AtomicU64,
    admin: AtomicU8,
    /// Requests or connections currently using the backend.
    in_flight: AtomicU32,
    /// Exponentially weighted moving average of response time, microseconds.
    ewma_us: AtomicU64,
    /// Response times of the last 10-15 s, for percentiles (admin API).
    latency: LatencyWindow,
    /// Passive check window: first failure time (ms) and failures since.
    fail_window_start_ms: AtomicU64,
    fails: AtomicU32,
    pub stats: BackendStats,
}

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub connections: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Default for BackendState {
    fn default() -> Self {
        BackendState {
            healthy: AtomicBool::new(true),
            ejected_until_ms: AtomicU64::new(0),
            admin: AtomicU8::new(AdminState::Enabled as u8),
            in_flight: AtomicU32::new(0),
            ewma_us: AtomicU64::new(0),
            latency: LatencyWindow::default(),
            fail_window_start_ms: AtomicU64::new(0),
            fails: AtomicU32::new(0),
            stats: BackendStats::default(),
        }
    }
}

impl BackendState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, up: bool) {
        self.healthy.store(up, Ordering::Relaxed);
    }

    pub fn admin(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            x if x == AdminState::Draining as u8 => AdminState::Draining,
            x if x == AdminState::Disabled as u8 => AdminState::Disabled,
            _ => AdminState::Enabled,
        }
    }

    pub fn set_admin(&self, s: AdminState) {
        self.admin.store(s as u8, Ordering::Relaxed);
    }

    /// Passively ejected at `now_ms` (see `crate::clock::now_ms`).
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms < until
    }

    /// May take new requests or connections: healthy, not ejected, enabled.
    pub fn is_available(&self, now_ms: u64) -> bool {
        self.is_healthy() && !self.is_ejected(now_ms) && self.admin() == AdminState::Enabled
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn acquire(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn release(&self) {
        // Saturating: a release after a reset must not wrap around.
        let _ = self.in_flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    pub fn ewma_us(&self) -> u64 {
        self.ewma_us.load(Ordering::Relaxed)
    }

    /// Recent response times (see `metrics::latency`) as of now.
    pub fn latency(&self) -> LatencySnapshot {
        self.latency.snapshot(crate::clock::now_ms())
    }

    /// Folds one response time into the moving average (weight 1/8, like TCP's SRTT)
    /// and the recent-latency histogram.
    pub fn observe_latency_us(&self, sample_us: u64) {
        self.observe_latency_us_at(crate::clock::now_ms(), sample_us);
    }

    /// [`Self::observe_latency_us`] for a caller that has the clock already.
    pub fn observe_latency_us_at(&self, now_ms: u64, sample_us: u64) {
        self.latency.record(now_ms, sample_us);
        let _ = self.ewma_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == 0 { sample_us.max(1) } else { (old * 7 + sample_us) / 8 }.max(1))
        });
    }

    /// Records a failed attempt for passive health (nginx max_fails / fail_timeout):
    /// `max_fails` failures within `fail_timeout_ms` eject the backend for
    /// `fail_timeout_ms`. Returns true when this failure ejected it.
    pub fn record_failure(&self, now_ms: u64, max_fails: u32, fail_timeout_ms: u64) -> bool {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        if max_fails == 0 {
            return false;
        }
        let start = self.fail_window_start_ms.load(Ordering::Relaxed);
        let fails = if start == 0 || now_ms.saturating_sub(start) >= fail_timeout_ms {
            self.fail_window_start_ms.store(now_ms.max(1), Ordering::Relaxed);
            self.fails.store(1, Ordering::Relaxed);
            1
        } else {
            self.fails.fetch_add(1, Ordering::Relaxed) + 1
        };
        if fails >= max_fails {
            self.ejected_until_ms.store(now_ms + fail_timeout_ms, Ordering::Relaxed);
            self.fails.store(0, Ordering::Relaxed);
            self.fail_window_start_ms.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// A success ends a failure streak (nginx resets fails on success).
    pub fn record_success(&self) {
        if self.fails.load(Ordering::Relaxed) != 0 {
            self.fails.store(0, Ordering::Relaxed);
            self.fail_window_start_ms.store(0, Ordering::Relaxed);
        }
    }
}

/// Backends for the selectors' unit tests.
#[cfg(test)]
pub(crate) fn test_backends(weights: &[u32]) -> Vec<Backend> {
    weights
        .iter()
        .zip(9001u16..)
        .map(|(&w, port)| {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            Backend::new("test", addr, w, Arc::new(BackendState::default()))
        })
        .collect()
}

/// How often each backend is picked in `picks` rounds, all backends usable.
#[cfg(test)]
pub(crate) fn pick_counts(sel: &dyn crate::balance::Selector, b: &[Backend], picks: usize) -> Vec<usize> {
    let usable = |i: usize| b[i].state.is_available(0);
    let mut counts = vec![0; b.len()];
    for _ in 0..picks {
        counts[sel.pick(b, 0, &usable).expect("every backend is usable")] += 1;
    }
    counts
}
