//! The auth middleware, applied to the whole router: a request passes without
//! credentials only if it is on the public allowlist (login page and its assets, the
//! login call, `/healthz`). Everything else, including routes added later, needs a
//! valid session cookie (plus `X-CSRF-Token` on writes) or a bearer token.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::session::{self, Claims};
use super::{AuthMethod, Principal, token};
use crate::error::ApiError;
use crate::state::AppState;

pub const CSRF_HEADER: &str = "x-csrf-token";

/// (method, path) pairs reachable without credentials. HEAD follows GET.
const PUBLIC: &[(Method, &str)] = &[
    (Method::GET, "/healthz"),
    (Method::GET, "/login"),
    (Method::GET, "/assets/login.js"),
    (Method::GET, "/assets/app.css"),
    (Method::POST, "/api/v1/session"),
];

pub fn is_public(method: &Method, path: &str) -> bool {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    PUBLIC.iter().any(|(m, p)| m == method && *p == path)
}

/// The public allowlist, for tests and docs.
pub fn public_routes() -> Vec<(String, String)> {
    PUBLIC.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect()
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A verified session: the claims and the cookie value they came from.
pub struct Session {
    pub claims: Claims,
    pub cookie: String,
}

/// Verifies the session cookie of `headers`, including that the user still exists with
/// the password it logged in with.
pub async fn session_from(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(value) =
        headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(session::from_cookie_header)
    else {
        return Ok(None);
    };
    let key = state.backend.session_key();
    let Some(claims) = session::decode(&key, value, now_secs()) else {
        return Ok(None);
    };
    let Some(user) = state.backend.user(&claims.u).await? else {
        return Ok(None);
    };
    let fp = session::password_fingerprint(&key, &user.password_hash);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(fp.as_bytes(), claims.pw.as_bytes())) {
        return Ok(None);
    }
    Ok(Some(Session { claims, cookie: value.to_string() }))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

async fn authenticate(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    if let Some(presented) = bearer(headers) {
        // A malformed or unknown token is a failed login, not a fall-back to the cookie.
        let Some(id) = token::id_of(presented) else {
            return Ok(None);
        };
        let Some(stored) = state.backend.token(id).await? else {
            return Ok(None);
        };
        if !token::matches(presented, &stored.token_hash) {
            return Ok(None);
        }
        return Ok(Some(Principal { name: format!("token:{}", stored.info.name), via: AuthMethod::Token }));
    }
    let Some(s) = session_from(state, headers).await? else {
        return Ok(None);
    };
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !session::csrf_ok(&state.backend.session_key(), &s.cookie, presented) {
            return Err(ApiError::Forbidden("missing or wrong X-CSRF-Token header".into()));
        }
    }
    Ok(Some(Principal { name: s.claims.u, via: AuthMethod::Cookie }))
}

/// Middleware: allowlist, else authenticate and put the `Principal` in the request.
pub async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if is_public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    match authenticate(&state, &method, req.headers()).await {
        Ok(Some(p)) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        // A browser opening the panel goes to the login page; everything else gets JSON.
        Ok(None) if req.method() == Method::GET && req.uri().path() == "/" => Redirect::to("/login").into_response(),
        Ok(None) => ApiError::Unauthorized.into_response(),
        Err(e) => e.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or(ApiError::Unauthorized)
    }
}

/// The client's IP, when the server provided `ConnectInfo` (both `serve` and axum's
/// `into_make_service_with_connect_info` do).
pub struct PeerIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(PeerIp(peer.map(|c| c.0.ip())))
    }
}
