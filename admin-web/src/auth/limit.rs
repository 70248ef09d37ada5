//! Login rate limiting with governor: one keyed GCRA limiter per source IP and one per
//! username, both must allow an attempt. Keys idle long enough to be full again are
//! dropped once the tables grow, so spraying usernames cannot grow memory unbounded.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Login attempts allowed, per minute with a burst, for each key kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_ip_per_minute: u32,
    pub per_ip_burst: u32,
    pub per_user_per_minute: u32,
    pub per_user_burst: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits { per_ip_per_minute: 30, per_ip_burst: 10, per_user_per_minute: 10, per_user_burst: 5 }
    }
}

const SHRINK_AT: usize = 10_000;

pub struct LoginLimiter {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_user: DefaultKeyedRateLimiter<String>,
}

fn quota(per_minute: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

impl LoginLimiter {
    pub fn new(l: LoginLimits) -> LoginLimiter {
        LoginLimiter {
            by_ip: RateLimiter::keyed(quota(l.per_ip_per_minute, l.per_ip_burst)),
            by_user: RateLimiter::keyed(quota(l.per_user_per_minute, l.per_user_burst)),
        }
    }

    /// Counts one attempt; false when either key is over its quota.
    pub fn check(&self, ip: Option<IpAddr>, username: &str) -> bool {
        if self.by_ip.len() > SHRINK_AT {
            self.by_ip.retain_recent();
        }
        if self.by_user.len() > SHRINK_AT {
            self.by_user.retain_recent();
        }
        // Without a peer address (router served without connect info) all clients
        // share the unspecified-address bucket: stricter, never looser.
        let ip = ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let ip_ok = self.by_ip.check_key(&ip).is_ok();
        let user_ok = self.by_user.check_key(&username.to_lowercase()).is_ok();
        ip_ok && user_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_per_user_and_per_ip() {
        let l = LoginLimiter::new(LoginLimits {
            per_ip_per_minute: 1,
            per_ip_burst: 5,
            per_user_per_minute: 1,
            per_user_burst: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.check(Some(a), "alice"));
        assert!(l.check(Some(b), "Alice"));
        assert!(!l.check(Some(a), "ALICE"), "per-user quota spans IPs and case");
        for i in 0..2 {
            assert!(l.check(Some(a), &format!("u{i}")));
        }
        assert!(l.check(Some(a), "u9"));
        assert!(!l.check(Some(a), "u10"), "per-IP quota spans usernames");
    }
}
