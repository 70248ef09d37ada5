//! Request rate limits (`rate_limit` on a listener or a route): one keyed GCRA
//! limiter from `governor` per configured limit, keyed by client IP or a header
//! value (hashed, so keys cost no allocation). Limiters are kept across reloads
//! while their settings stay the same, so a reload does not hand out a fresh burst.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::HeaderMap;

use crate::config::{RateKey, RateLimit};

type Keyed = RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock>;

/// One configured limit.
pub struct RequestLimiter {
    key: RateKey,
    limiter: Keyed,
    clock: DefaultClock,
}

impl RequestLimiter {
    fn new(cfg: &RateLimit) -> Self {
        let rps = NonZeroU32::new(cfg.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(cfg.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rps).allow_burst(burst);
        let clock = DefaultClock::default();
        RequestLimiter { key: cfg.key.clone(), limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()), clock }
    }

    /// `Ok` if the request may pass; otherwise how long until it would.
    pub fn check(&self, headers: &HeaderMap, client: IpAddr) -> Result<(), Duration> {
        let key = match &self.key {
            RateKey::SourceIp => crate::balance::source_ip_key(client),
            // Requests without the header share one bucket per client IP.
            RateKey::Header(name) => match headers.get(name) {
                Some(v) => crate::balance::hash_key(v.as_bytes()),
                None => crate::balance::source_ip_key(client) ^ 0x9e37_79b9_7f4a_7c15,
            },
        };
        self.limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the state of keys that are back to a full bucket.
    pub fn housekeep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Limiters by (place, settings), reused across config snapshots.
#[derive(Default)]
pub struct RateRegistry {
    limiters: Mutex<HashMap<(String, RateLimit), Arc<RequestLimiter>>>,
}

impl RateRegistry {
    /// The limiter for `place` (e.g. `listener/web/route/0`) with settings `cfg`.
    pub fn get(&self, place: &str, cfg: &RateLimit) -> Arc<RequestLimiter> {
        let mut m = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry((place.to_string(), cfg.clone())).or_insert_with(|| Arc::new(RequestLimiter::new(cfg))))
    }

    /// Keeps only the limiters named in `live` (the current snapshot's).
    pub fn retain(&self, live: &[Arc<RequestLimiter>]) {
        let mut m = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, l| live.iter().any(|x| Arc::ptr_eq(x, l)));
    }

    pub fn housekeep(&self) {
        let all: Vec<Arc<RequestLimiter>> =
            self.limiters.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for l in all {
            l.housekeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_a_wait() {
        let cfg = RateLimit { requests_per_second: 1, burst: 3, key: RateKey::SourceIp };
        let l = RequestLimiter::new(&cfg);
        let h = HeaderMap::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(&h, a).is_ok());
        }
        let wait = l.check(&h, a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(l.check(&h, b).is_ok(), "another client has its own bucket");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn registry_reuses_same_settings_only() {
        let r = RateRegistry::default();
        let cfg = RateLimit { requests_per_second: 5, burst: 5, key: RateKey::SourceIp };
        let a = r.get("l/web", &cfg);
        assert!(Arc::ptr_eq(&a, &r.get("l/web", &cfg)));
        let other = RateLimit { burst: 6, ..cfg };
        assert!(!Arc::ptr_eq(&a, &r.get("l/web", &other)));
    }
}
