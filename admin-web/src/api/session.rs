//! Login (`POST /api/v1/session`), the current session (`GET`) and logout (`DELETE`).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::guard::{PeerIp, now_secs, session_from};
use crate::auth::session::{self, Claims};
use crate::auth::{AuthMethod, Principal, password};
use crate::error::{ApiError, ErrorBody, Json};
use crate::model::{LoginRequest, SessionInfo};
use crate::state::AppState;

/// Longest username accepted anywhere.
pub const MAX_USERNAME_LEN: usize = 64;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login, current_session, logout))
}

fn with_cookie(mut resp: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Log in with username and password: sets the session cookie, returns the CSRF token.
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = LoginRequest, security(()),
    responses((status = 200, body = SessionInfo, headers(("Set-Cookie" = String))),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login(
    State(s): State<AppState>,
    PeerIp(ip): PeerIp,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let username = req.username.trim().to_string();
    if username.is_empty() || username.len() > MAX_USERNAME_LEN {
        return Err(ApiError::BadCredentials);
    }
    if !s.limiter.check(ip, &username) {
        tracing::warn!(peer = ?ip, "admin login rate limited");
        return Err(ApiError::TooManyRequests);
    }
    let user = s.backend.user(&username).await?;
    let (ok, hash) = match user {
        Some(u) => {
            let pw = req.password;
            let hash = u.password_hash;
            let h = hash.clone();
            let ok = tokio::task::spawn_blocking(move || password::verify_password(&pw, &h))
                .await
                .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;
            (ok, Some(hash))
        }
        None => {
            let pw = req.password;
            tokio::task::spawn_blocking(move || password::verify_dummy(&pw))
                .await
                .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;
            (false, None)
        }
    };
    let (true, Some(hash)) = (ok, hash) else {
        tracing::warn!(peer = ?ip, "admin login failed");
        return Err(ApiError::BadCredentials);
    };
    let key = s.backend.session_key();
    let ttl = s.options.session_ttl.as_secs().max(1);
    let exp = now_secs() + ttl;
    let claims =
        Claims { u: username.clone(), exp, pw: session::password_fingerprint(&key, &hash), n: session::nonce() };
    let cookie = session::encode(&key, &claims);
    let info =
        SessionInfo { username: username.clone(), csrf_token: session::csrf_token(&key, &cookie), expires_at: exp };
    tracing::info!(user = %username, peer = ?ip, "admin login");
    let resp = Json(info).into_response();
    Ok(with_cookie(resp, session::set_cookie(&cookie, ttl, s.options.secure_cookies)))
}

/// Who is logged in with this cookie, and the CSRF token to use (the panel calls this
/// on every page load instead of keeping the token anywhere).
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn current_session(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
) -> Result<Json<SessionInfo>, ApiError> {
    if who.via == AuthMethod::Token {
        return Err(ApiError::NotFound("authenticated by API token: there is no session".into()));
    }
    let sess = session_from(&s, &headers).await?.ok_or(ApiError::Unauthorized)?;
    let key = s.backend.session_key();
    Ok(Json(SessionInfo {
        username: sess.claims.u,
        csrf_token: session::csrf_token(&key, &sess.cookie),
        expires_at: sess.claims.exp,
    }))
}

/// Log out: clears the cookie in this browser.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session", responses((status = 204), (status = 403, body = ErrorBody)))]
async fn logout(State(s): State<AppState>, who: Principal) -> Response {
    tracing::info!(user = %who.name, "admin logout");
    with_cookie(StatusCode::NO_CONTENT.into_response(), session::clear_cookie(s.options.secure_cookies))
}
