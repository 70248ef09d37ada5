//! The signed sticky cookie: `<backend id>.<expiry unix s>.<tag>` where the tag is
//! HMAC-SHA256 over pool, backend id and expiry (base64url, first 16 bytes). Any
//! node holding the key can check it, so a cookie names its backend even before a
//! mapping is replicated. A forged, altered or expired cookie is simply ignored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Tag bytes kept (128 bits).
const TAG_LEN: usize = 16;

/// A cookie signing key. Its bytes are never printed.
#[derive(Clone)]
pub struct CookieKey(Vec<u8>);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// At least 16 bytes; surrounding whitespace (a trailing newline) is ignored.
    pub fn new(raw: &[u8]) -> Option<Self> {
        let trimmed = raw.trim_ascii();
        (trimmed.len() >= 16).then(|| CookieKey(trimmed.to_vec()))
    }

    fn tag(&self, pool: &str, backend: &str, expires_s: u64) -> [u8; TAG_LEN] {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return [0; TAG_LEN],
        };
        mac.update(pool.as_bytes());
        mac.update(&[0]);
        mac.update(backend.as_bytes());
        mac.update(&[0]);
        mac.update(&expires_s.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    /// The cookie value naming `backend` until `expires_s` (unix seconds).
    pub fn sign(&self, pool: &str, backend: &str, expires_s: u64) -> String {
        let tag = URL_SAFE_NO_PAD.encode(self.tag(pool, backend, expires_s));
        format!("{backend}.{expires_s}.{tag}")
    }

    /// The backend id a valid, unexpired cookie names, and its expiry.
    pub fn verify<'a>(&self, pool: &str, value: &'a str, now_s: u64) -> Option<(&'a str, u64)> {
        let mut parts = value.splitn(3, '.');
        let backend = parts.next()?;
        let expires_s: u64 = parts.next()?.parse().ok()?;
        let tag = parts.next()?;
        if expires_s <= now_s || backend.is_empty() {
            return None;
        }
        let mut given = [0u8; TAG_LEN + 2];
        let n = URL_SAFE_NO_PAD.decode_slice(tag, &mut given).ok()?;
        if n != TAG_LEN {
            return None;
        }
        let want = self.tag(pool, backend, expires_s);
        bool::from(want.ct_eq(&given[..TAG_LEN])).then_some((backend, expires_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CookieKey {
        CookieKey::new(b"0123456789abcdef-secret\n").unwrap()
    }

    #[test]
    fn round_trip_and_tamper() {
        let k = key();
        let v = k.sign("web", "00aa11bb22cc33dd", 2_000);
        assert_eq!(k.verify("web", &v, 1_000), Some(("00aa11bb22cc33dd", 2_000)));
        // Expired.
        assert_eq!(k.verify("web", &v, 2_000), None);
        // Other pool.
        assert_eq!(k.verify("api", &v, 1_000), None);
        // Backend changed, expiry changed, tag changed.
        assert_eq!(k.verify("web", &v.replacen("00aa", "00ab", 1), 1_000), None);
        assert_eq!(k.verify("web", &v.replacen(".2000.", ".9000.", 1), 1_000), None);
        let mut bad = v.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(k.verify("web", &bad, 1_000), None);
        // Another key.
        let other = CookieKey::new(b"another-key-of-16-bytes").unwrap();
        assert_eq!(other.verify("web", &v, 1_000), None);
        assert_eq!(k.verify("web", "garbage", 1_000), None);
    }

    #[test]
    fn short_keys_are_refused_and_never_printed() {
        assert!(CookieKey::new(b"short").is_none());
        assert_eq!(format!("{:?}", key()), "CookieKey(..)");
    }
}
