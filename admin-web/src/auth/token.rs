//! API tokens: `qlb_<id>_<secret>`. The id is public (listed, used to revoke and to
//! look the token up); only the SHA-256 of the whole token is stored. A token carries
//! 256 random bits, so a fast hash is enough (no password stretching needed).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "qlb_";

/// A freshly minted token; `plaintext` is shown to the caller once and then dropped.
pub struct NewToken {
    pub id: String,
    pub plaintext: String,
    pub hash: String,
}

pub fn generate() -> NewToken {
    let id = hex::encode(rand::random::<[u8; 6]>());
    let plaintext = format!("{PREFIX}{id}_{}", B64.encode(rand::random::<[u8; 32]>()));
    let hash = hash(&plaintext);
    NewToken { id, plaintext, hash }
}

/// Lowercase hex SHA-256 of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The id part of a presented token, if it has our shape.
pub fn id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()).then_some(id)
}

/// Constant-time comparison of a presented token with a stored hash.
pub fn matches(token: &str, stored_hash: &str) -> bool {
    bool::from(hash(token).as_bytes().ct_eq(stored_hash.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_match_only_their_hash() {
        let t = generate();
        assert_eq!(id_of(&t.plaintext), Some(t.id.as_str()));
        assert!(matches(&t.plaintext, &t.hash));
        assert!(!matches(&format!("{}x", t.plaintext), &t.hash));
        assert!(!t.hash.contains(&t.plaintext));
        assert_ne!(generate().id, t.id);
    }

    #[test]
    fn malformed_tokens_have_no_id() {
        for bad in ["", "qlb_", "qlb_abc_x", "xyz_0123456789ab_s", "qlb_0123456789ab_", "qlb_0123456789zz_s"] {
            assert_eq!(id_of(bad), None, "{bad}");
        }
    }
}
