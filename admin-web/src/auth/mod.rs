//! Authentication for the admin API: argon2 passwords, HMAC-signed session cookies
//! with a stateless CSRF token, hashed API tokens, the login rate limiter, and the
//! middleware that lets nothing but the public allowlist through without credentials.

pub mod guard;
pub mod limit;
pub mod password;
pub mod session;
pub mod token;

/// Who made a request, for the audit trail. Never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The username, or `token:<name>` for an API token.
    pub name: String,
    pub via: AuthMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Session cookie: writes need the CSRF token.
    Cookie,
    /// `Authorization: Bearer`: no ambient credential, so no CSRF check.
    Token,
}
