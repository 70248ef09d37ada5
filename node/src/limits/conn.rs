//! Connection limits of one listener: `maxconn` (all clients) and
//! `maxconn_per_source` (one client IP), HAProxy's `maxconn` and nginx's
//! `limit_conn $binary_remote_addr`. A connection over a limit is refused at once,
//! never queued. Only counting lives here; closing the socket and logging are the
//! caller's job.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("listener maxconn reached")]
    Maxconn,
    #[error("maxconn_per_source reached for this client")]
    PerSource,
}

/// Open-connection counts of one listener. Shared by its accept loop and every
/// connection task through `Arc`; limits are passed at each call, so a config
/// reload changes them without resetting the counts.
#[derive(Debug, Default)]
pub struct ConnLimiter {
    active: AtomicU64,
    /// Open connections per client IP; an entry is removed when it drops to zero,
    /// so the map holds only IPs with open connections.
    per_source: Mutex<HashMap<IpAddr, u64>>,
}

impl ConnLimiter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Distinct client IPs with at least one counted connection.
    pub fn sources(&self) -> usize {
        self.lock().len()
    }

    /// Admits one connection against `maxconn` (0 = unlimited). The permit gives
    /// the slot back when dropped.
    pub fn admit(self: &Arc<Self>, maxconn: u64) -> Result<ConnPermit, Refused> {
        let admitted = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (maxconn == 0 || n < maxconn).then_some(n + 1));
        match admitted {
            Ok(_) => Ok(ConnPermit { limiter: Arc::clone(self), source: None }),
            Err(_) => Err(Refused::Maxconn),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u64>> {
        self.per_source.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One admitted connection. Dropping it releases its listener slot and, once
/// `bind_source` succeeded, its per-source slot.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    source: Option<IpAddr>,
}

impl ConnPermit {
    /// Counts the connection against its client IP (`max` = 0: unlimited, not
    /// even tracked). Called at accept, or after a PROXY header named the real
    /// client. A permit binds to one source at most; later calls change nothing.
    pub fn bind_source(&mut self, ip: IpAddr, max: u64) -> Result<(), Refused> {
        if max == 0 || self.source.is_some() {
            return Ok(());
        }
        let ip = canonical(ip);
        let mut map = self.limiter.lock();
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            if *n == 0 {
                map.remove(&ip);
            }
            return Err(Refused::PerSource);
        }
        *n += 1;
        self.source = Some(ip);
        Ok(())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limiter.active.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.source {
            let mut map = self.limiter.lock();
            if let Some(n) = map.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// An IPv4 client seen through a dual-stack socket (`::ffff:a.b.c.d`) is the same
/// client as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn maxconn_refuses_the_excess_and_frees_on_drop() {
        let l = ConnLimiter::new();
        let a = l.admit(2).unwrap();
        let _b = l.admit(2).unwrap();
        assert_eq!(l.admit(2).unwrap_err(), Refused::Maxconn);
        assert_eq!(l.active(), 2);
        drop(a);
        assert_eq!(l.active(), 1);
        assert!(l.admit(2).is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let l = ConnLimiter::new();
        let permits: Vec<_> = (0..1000).map(|_| l.admit(0).unwrap()).collect();
        assert_eq!(l.active(), 1000);
        drop(permits);
        assert_eq!(l.active(), 0);
    }

    #[test]
    fn per_source_counts_each_ip_apart() {
        let l = ConnLimiter::new();
        let mut a1 = l.admit(0).unwrap();
        a1.bind_source(ip("10.0.0.1"), 2).unwrap();
        let mut a2 = l.admit(0).unwrap();
        a2.bind_source(ip("::ffff:10.0.0.1"), 2).unwrap();
        let mut a3 = l.admit(0).unwrap();
        assert_eq!(a3.bind_source(ip("10.0.0.1"), 2).unwrap_err(), Refused::PerSource);
        let mut b = l.admit(0).unwrap();
        b.bind_source(ip("10.0.0.2"), 2).unwrap();
        assert_eq!(l.sources(), 2);
        drop(a3);
        drop(a1);
        let mut a4 = l.admit(0).unwrap();
        a4.bind_source(ip("10.0.0.1"), 2).unwrap();
        drop((a2, a4, b));
        assert_eq!(l.sources(), 0, "entries of IPs without connections are removed");
        assert_eq!(l.active(), 0);
    }

    #[test]
    fn unlimited_per_source_tracks_nothing() {
        let l = ConnLimiter::new();
        let mut p = l.admit(0).unwrap();
        p.bind_source(ip("10.0.0.1"), 0).unwrap();
        assert_eq!(l.sources(), 0);
    }
}
