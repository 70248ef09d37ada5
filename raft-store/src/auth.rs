//! Shared-secret authentication of cluster RPC: HMAC-SHA256 over method, path,
//! timestamp, sender id, a random nonce and the body, carried in four headers; a
//! `ReplayGuard` refuses a MAC seen before within the timestamp window. Used by the client
//! (`network`) to sign and by the server (`rpc`) to verify. Never logs the secret or a MAC.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::types::NodeId;

pub const HEADER_NODE: &str = "x-quorumlb-node";
pub const HEADER_TIMESTAMP: &str = "x-quorumlb-timestamp";
pub const HEADER_NONCE: &str = "x-quorumlb-nonce";
pub const HEADER_MAC: &str = "x-quorumlb-mac";

/// Largest accepted difference between the sender's timestamp and ours.
pub const MAX_SKEW_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
    #[error("timestamp off by {skew_ms} ms (limit {MAX_SKEW_MS} ms)")]
    Skew { skew_ms: u64 },
    #[error("bad MAC")]
    BadMac,
    #[error("replayed request")]
    Replayed,
}

fn mac(secret: &[u8], method: &str, path: &str, ts_ms: u64, node: NodeId, nonce: &str, body: &[u8]) -> [u8; 32] {
    // new_from_slice only fails for fixed-size-key MACs; HMAC accepts any key length.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    // NUL-separated: none of method, path or the decimal numbers can contain NUL, so
    // field boundaries cannot be shifted to forge another message.
    m.update(method.as_bytes());
    m.update(b"\0");
    m.update(path.as_bytes());
    m.update(b"\0");
    m.update(ts_ms.to_string().as_bytes());
    m.update(b"\0");
    m.update(node.to_string().as_bytes());
    m.update(b"\0");
    m.update(nonce.as_bytes());
    m.update(b"\0");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// Headers to attach to a request from `node` at `ts_ms` (with a fresh random nonce).
pub fn sign(
    secret: &[u8],
    method: &str,
    path: &str,
    ts_ms: u64,
    node: NodeId,
    body: &[u8],
) -> [(&'static str, String); 4] {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let tag = hex::encode(mac(secret, method, path, ts_ms, node, &nonce, body));
    [(HEADER_NODE, node.to_string()), (HEADER_TIMESTAMP, ts_ms.to_string()), (HEADER_NONCE, nonce), (HEADER_MAC, tag)]
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, AuthError> {
    headers.get(name).ok_or(AuthError::Missing(name))?.to_str().map_err(|_| AuthError::Malformed(name))
}

/// A request whose MAC checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub node: NodeId,
    pub ts_ms: u64,
    tag: [u8; 32],
}

/// Checks a request's headers; returns the authenticated sender.
pub fn verify(
    secret: &[u8],
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: u64,
) -> Result<Verified, AuthError> {
    let node: NodeId = header(headers, HEADER_NODE)?.parse().map_err(|_| AuthError::Malformed(HEADER_NODE))?;
    let ts: u64 = header(headers, HEADER_TIMESTAMP)?.parse().map_err(|_| AuthError::Malformed(HEADER_TIMESTAMP))?;
    let nonce = header(headers, HEADER_NONCE)?;
    if nonce.is_empty() || nonce.len() > 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Malformed(HEADER_NONCE));
    }
    let given = hex::decode(header(headers, HEADER_MAC)?).map_err(|_| AuthError::Malformed(HEADER_MAC))?;
    let skew_ms = now_ms.abs_diff(ts);
    if skew_ms > MAX_SKEW_MS {
        return Err(AuthError::Skew { skew_ms });
    }
    let expected = mac(secret, method, path, ts, node, nonce, body);
    if given.len() != expected.len() || !bool::from(expected.ct_eq(given.as_slice())) {
        return Err(AuthError::BadMac);
    }
    Ok(Verified { node, ts_ms: ts, tag: expected })
}

/// Remembers the MACs accepted within the timestamp window, so a captured request
/// cannot be sent again. Older ones need no memory: the skew check refuses them.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    tags: HashMap<[u8; 32], u64>,
    prune_at: usize,
}

impl ReplayGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `v` once; a second time it is `Replayed`.
    pub fn check(&self, v: &Verified, now_ms: u64) -> Result<(), AuthError> {
        // Each step below is a single map operation; a poisoned lock holds a valid map.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.tags.len() >= seen.prune_at.max(4096) {
            let oldest_valid = now_ms.saturating_sub(MAX_SKEW_MS);
            seen.tags.retain(|_, ts| *ts >= oldest_valid);
            seen.prune_at = seen.tags.len() * 2;
        }
        if seen.tags.insert(v.tag, v.ts_ms).is_some() {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn signed_request_verifies_and_any_change_is_refused() {
        let s = b"0123456789abcdef";
        let h = headers(&sign(s, "POST", "/raft/vote", 1_000_000, 2, b"{}"));
        let v = verify(s, "POST", "/raft/vote", &h, b"{}", 1_000_500).unwrap();
        assert_eq!(v.node, 2);
        let guard = ReplayGuard::new();
        assert_eq!(guard.check(&v, 1_000_500), Ok(()));
        assert_eq!(guard.check(&v, 1_000_600), Err(AuthError::Replayed));
        let mut other_nonce = h.clone();
        other_nonce.insert(HEADER_NONCE, "abcd".parse().unwrap());
        assert_eq!(verify(s, "POST", "/raft/vote", &other_nonce, b"{}", 1_000_500), Err(AuthError::BadMac));
        assert_eq!(verify(s, "POST", "/raft/vote", &h, b"{ }", 1_000_500), Err(AuthError::BadMac));
        assert_eq!(verify(s, "POST", "/raft/append", &h, b"{}", 1_000_500), Err(AuthError::BadMac));
        assert_eq!(verify(b"another-secret!!", "POST", "/raft/vote", &h, b"{}", 1_000_500), Err(AuthError::BadMac));
        assert_eq!(
            verify(s, "POST", "/raft/vote", &h, b"{}", 1_000_000 + MAX_SKEW_MS + 1),
            Err(AuthError::Skew { skew_ms: MAX_SKEW_MS + 1 })
        );
        let mut forged = h.clone();
        forged.insert(HEADER_NODE, "3".parse().unwrap());
        assert_eq!(verify(s, "POST", "/raft/vote", &forged, b"{}", 1_000_500), Err(AuthError::BadMac));
        assert_eq!(verify(s, "POST", "/raft/vote", &HeaderMap::new(), b"{}", 0), Err(AuthError::Missing(HEADER_NODE)));
    }
}
