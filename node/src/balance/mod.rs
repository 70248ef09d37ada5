//! Backend selection: one `Selector` trait and one file per algorithm.
//!
//! A selector only orders backends; whether a backend may take traffic (health,
//! drain, admin state, "already tried") is decided by the caller and passed in as
//! `usable`, so health logic never leaks into the algorithms. Asking again with the
//! first pick excluded yields the fallback, which is how retries find another backend.

mod backend;
mod consistent_hash;
mod ip_hash;
mod least_conn;
mod least_time;
mod random;
mod round_robin;
mod weighted_round_robin;

pub use backend::{AdminState, Backend, BackendState, BackendStats};
pub use consistent_hash::ConsistentHash;
pub use ip_hash::IpHash;
pub use least_conn::LeastConn;
pub use least_time::LeastTime;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

use crate::config::Algorithm;

/// Picks one backend out of a pool's list.
///
/// `backends` is the pool's full, stable list (same order for the life of the
/// selector). `key` is the request's hash key (source IP, header, cookie or URI,
/// hashed by the caller); algorithms that do not hash ignore it. `usable(i)` tells
/// whether `backends[i]` may be chosen now. Returns `None` when nothing is usable.
pub trait Selector: Send + Sync {
    fn pick(&self, backends: &[Backend], key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize>;

    /// Whether `pick` uses `key`; lets the caller skip hashing for other algorithms.
    fn uses_key(&self) -> bool {
        false
    }
}

/// Builds the selector for an algorithm over a fixed backend list.
pub fn build(algorithm: Algorithm, backends: &[Backend]) -> Box<dyn Selector> {
    match algorithm {
        Algorithm::RoundRobin => Box::new(RoundRobin::new(backends)),
        Algorithm::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(backends)),
        Algorithm::LeastConn => Box::new(LeastConn::new(backends)),
        Algorithm::LeastTime => Box::new(LeastTime::new(backends)),
        Algorithm::Random => Box::new(Random::new(backends)),
        Algorithm::IpHash => Box::new(IpHash::new(backends)),
        Algorithm::ConsistentHash => Box::new(ConsistentHash::new(backends)),
    }
}

/// Hashes a key for the hashing selectors (stable across processes and versions of
/// quorumlb, so every node of a cluster maps a key to the same backend).
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The hash key of a client IP (`hash_key = "source_ip"` in L7, always in L4), so
/// an HTTP and a TCP listener send one client to the same backend. An IPv4 client
/// seen through a dual-stack socket (`::ffff:a.b.c.d`) hashes as `a.b.c.d`.
pub fn source_ip_key(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => hash_key(&v4.octets()),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_key(&v4.octets()),
            None => hash_key(&v6.octets()),
        },
    }
}
