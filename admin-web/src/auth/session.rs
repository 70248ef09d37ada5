//! Session cookies and CSRF tokens, both stateless: the cookie is
//! `base64url(claims).base64url(HMAC-SHA256(key, claims))` with the cluster-wide
//! session key, so any node accepts it; the CSRF token is an HMAC of the cookie value.
//! The claims bind the session to the user's current password hash, so changing the
//! password or deleting the user ends every session at once. What this cannot do is
//! revoke one cookie early: logout clears it in the browser, and it expires after the
//! session lifetime.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const COOKIE_NAME: &str = "qlb_session";

type HmacSha256 = Hmac<Sha256>;

/// What the cookie asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Username.
    pub u: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Fingerprint of the password hash at login (HMAC, not the hash itself).
    pub pw: String,
    /// Random nonce: two logins never produce the same cookie.
    pub n: String,
}

fn mac(key: &[u8], label: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(label);
    m.update(&[0]);
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The password-hash fingerprint stored in the claims.
pub fn password_fingerprint(key: &[u8], password_hash: &str) -> String {
    B64.encode(&mac(key, b"pw", password_hash.as_bytes())[..16])
}

/// Signs `claims` into a cookie value.
pub fn encode(key: &[u8], claims: &Claims) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let payload = B64.encode(json);
    let sig = B64.encode(mac(key, b"session", payload.as_bytes()));
    format!("{payload}.{sig}")
}

/// Checks the signature and expiry of a cookie value; returns the claims.
pub fn decode(key: &[u8], value: &str, now_secs: u64) -> Option<Claims> {
    let (payload, sig) = value.split_once('.')?;
    let sig = B64.decode(sig).ok()?;
    let want = mac(key, b"session", payload.as_bytes());
    if want.is_empty() || !bool::from(want.ct_eq(&sig)) {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    (claims.exp > now_secs).then_some(claims)
}

/// The CSRF token that goes with a cookie value.
pub fn csrf_token(key: &[u8], cookie_value: &str) -> String {
    B64.encode(mac(key, b"csrf", cookie_value.as_bytes()))
}

/// Constant-time check of a presented CSRF token.
pub fn csrf_ok(key: &[u8], cookie_value: &str, presented: &str) -> bool {
    let want = csrf_token(key, cookie_value);
    bool::from(want.as_bytes().ct_eq(presented.as_bytes()))
}

/// A fresh random nonce for new claims.
pub fn nonce() -> String {
    B64.encode(rand::random::<[u8; 16]>())
}

/// The `Set-Cookie` value that installs a session.
pub fn set_cookie(value: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// The session cookie's value from a `Cookie` header, if present.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == COOKIE_NAME).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims { u: "alice".into(), exp, pw: password_fingerprint(b"k", "$argon2id$h"), n: nonce() }
    }

    #[test]
    fn cookie_round_trips_and_rejects_tampering_wrong_key_and_expiry() {
        let key = b"0123456789abcdef0123456789abcdef";
        let c = claims(1_000);
        let v = encode(key, &c);
        assert_eq!(decode(key, &v, 999), Some(c.clone()));
        assert_eq!(decode(key, &v, 1_000), None, "expired");
        assert_eq!(decode(b"another key", &v, 0), None);
        let forged = encode(key, &Claims { u: "root".into(), ..c });
        let (payload, _) = forged.split_once('.').unwrap();
        let (_, sig) = v.split_once('.').unwrap();
        assert_eq!(decode(key, &format!("{payload}.{sig}"), 0), None);
        assert_eq!(decode(key, "garbage", 0), None);
    }

    #[test]
    fn csrf_token_is_bound_to_the_cookie() {
        let key = b"k";
        let a = encode(key, &claims(10));
        let b = encode(key, &claims(10));
        let t = csrf_token(key, &a);
        assert!(csrf_ok(key, &a, &t));
        assert!(!csrf_ok(key, &b, &t));
        assert!(!csrf_ok(key, &a, ""));
    }

    #[test]
    fn cookie_header_parsing_finds_only_our_cookie() {
        assert_eq!(from_cookie_header("a=1; qlb_session=x.y; b=2"), Some("x.y"));
        assert_eq!(from_cookie_header("qlb_sessionx=1"), None);
        assert!(set_cookie("v", 60, true).contains("HttpOnly; SameSite=Strict; Max-Age=60; Secure"));
    }
}
