//! Argon2id password hashing (PHC strings) and verification. Verification always
//! spends the same work whether or not the user exists, so timing does not tell.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Longest password accepted: argon2 takes any length, but hashing megabytes on
/// request is a cheap denial of service.
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be 1 to {MAX_PASSWORD_LEN} bytes")]
    Length,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// Hashes `password` with argon2id and a random salt. The node uses this to bootstrap
/// user `admin` from `[admin] bootstrap_password_file`; `ctl user add` and the API too.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::Length);
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// True when `password` matches the PHC string `hash` (compared in constant time by
/// the argon2 crate). A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Burns the time of one verification for a user that does not exist.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("quorumlb-no-such-user").unwrap_or_default());
    let _ = verify_password(password, hash);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_its_own_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "not-a-phc-string"));
        assert_ne!(hash_password("correct horse").unwrap(), h, "salt must be random");
    }

    #[test]
    fn empty_or_huge_passwords_are_refused() {
        assert!(matches!(hash_password(""), Err(PasswordError::Length)));
        assert!(matches!(hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)), Err(PasswordError::Length)));
    }
}
