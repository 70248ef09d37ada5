//! User and API token management. Passwords are hashed here (argon2) and tokens minted
//! here, so only hashes reach the backend; the plaintext token is returned once.

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::session::MAX_USERNAME_LEN;
use crate::auth::{Principal, password, token};
use crate::error::{ApiError, ErrorBody, Json, Path};
use crate::model::{TokenCreate, TokenCreated, TokenInfo, UserCreate, UserInfo};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(delete_user))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USERNAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// All users (names only).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = Vec<UserInfo>)))]
async fn list_users(State(s): State<AppState>) -> Result<Json<Vec<UserInfo>>, ApiError> {
    Ok(Json(s.backend.users().await?))
}

/// Create a user, or set a new password for an existing one (ends its sessions).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = UserCreate,
    responses((status = 204), (status = 400, body = ErrorBody)))]
async fn create_user(
    State(s): State<AppState>,
    who: Principal,
    Json(u): Json<UserCreate>,
) -> Result<StatusCode, ApiError> {
    if !valid_username(&u.username) {
        return Err(ApiError::BadRequest(format!(
            "username must be 1 to {MAX_USERNAME_LEN} characters of letters, digits, . _ - @"
        )));
    }
    if u.password.chars().count() < 8 {
        return Err(ApiError::BadRequest("password must be at least 8 characters".into()));
    }
    let pw = u.password;
    let hash = tokio::task::spawn_blocking(move || password::hash_password(&pw))
        .await
        .map_err(|e| ApiError::Internal(format!("hashing: {e}")))?
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    s.backend.upsert_user(&u.username, &hash, &who.name).await?;
    tracing::info!(user = %who.name, target = %u.username, "admin: user upsert");
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a user. The last user cannot be deleted (nobody could log in again).
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users",
    params(("username" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_user(
    State(s): State<AppState>,
    who: Principal,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    let users = s.backend.users().await?;
    if !users.iter().any(|u| u.username == username) {
        return Err(ApiError::NotFound(format!("no user named {username}")));
    }
    if users.len() == 1 {
        return Err(ApiError::Conflict("cannot delete the last user".into()));
    }
    s.backend.delete_user(&username, &who.name).await?;
    tracing::info!(user = %who.name, target = %username, "admin: user delete");
    Ok(StatusCode::NO_CONTENT)
}

/// All API tokens (never the token or its hash).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = Vec<TokenInfo>)))]
async fn list_tokens(State(s): State<AppState>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(s.backend.tokens().await?))
}

/// Mint an API token. The answer is the only place the token is ever shown.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated), (status = 400, body = ErrorBody)))]
async fn create_token(
    State(s): State<AppState>,
    who: Principal,
    Json(req): Json<TokenCreate>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let name = req.name.trim().to_string();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("token name must be 1 to 64 printable characters".into()));
    }
    let t = token::generate();
    s.backend.create_token(&t.id, &name, &t.hash, &who.name).await?;
    tracing::info!(user = %who.name, id = %t.id, name = %name, "admin: token created");
    Ok((StatusCode::CREATED, Json(TokenCreated { id: t.id, name, token: t.plaintext })))
}

/// Revoke an API token by id.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.backend.token(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no token with id {id}")));
    }
    s.backend.revoke_token(&id, &who.name).await?;
    tracing::info!(user = %who.name, id = %id, "admin: token revoked");
    Ok(StatusCode::NO_CONTENT)
}
