//! Pool status and backend actions (drain, enable, disable, weight). Actions are
//! replicated: they apply on every node.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody, Json, Path};
use crate::model::{AdminState, PoolStatus, WeightChange, WriteAck};
use crate::state::AppState;

/// Highest weight accepted (HAProxy's limit).
pub const MAX_WEIGHT: u32 = 256;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_pools))
        .routes(routes!(get_pool))
        .routes(routes!(drain_backend))
        .routes(routes!(enable_backend))
        .routes(routes!(disable_backend))
        .routes(routes!(set_weight))
}

async fn find_pool(s: &AppState, name: &str) -> Result<PoolStatus, ApiError> {
    s.backend
        .pools()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no pool named {name}")))
}

/// The backend's address as the config names it, found by address or id.
async fn find_backend(s: &AppState, pool: &str, backend: &str) -> Result<String, ApiError> {
    let p = find_pool(s, pool).await?;
    p.backends
        .into_iter()
        .find(|b| b.address == backend || b.id == backend)
        .map(|b| b.address)
        .ok_or_else(|| ApiError::NotFound(format!("no backend {backend} in pool {pool}")))
}

async fn set_state(
    s: &AppState,
    who: &Principal,
    pool: &str,
    backend: &str,
    st: AdminState,
) -> Result<WriteAck, ApiError> {
    let address = find_backend(s, pool, backend).await?;
    tracing::info!(user = %who.name, pool, backend = %address, state = ?st, "admin: backend state change");
    Ok(s.backend.set_backend_state(pool, &address, st, &who.name).await?)
}

/// Every pool with its backends.
#[utoipa::path(get, path = "/api/v1/pools", tag = "pools",
    responses((status = 200, body = Vec<PoolStatus>), (status = 401, body = ErrorBody)))]
async fn list_pools(State(s): State<AppState>) -> Result<Json<Vec<PoolStatus>>, ApiError> {
    Ok(Json(s.backend.pools().await?))
}

/// One pool.
#[utoipa::path(get, path = "/api/v1/pools/{name}", tag = "pools",
    params(("name" = String, Path, description = "pool name")),
    responses((status = 200, body = PoolStatus), (status = 404, body = ErrorBody)))]
async fn get_pool(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<PoolStatus>, ApiError> {
    Ok(Json(find_pool(&s, &name).await?))
}

/// Stop sending new connections to a backend; open ones and sticky sessions finish.
#[utoipa::path(post, path = "/api/v1/pools/{pool}/backends/{address}/drain", tag = "pools",
    params(("pool" = String, Path), ("address" = String, Path, description = "backend address or id")),
    responses((status = 200, body = WriteAck), (status = 404, body = ErrorBody)))]
async fn drain_backend(
    State(s): State<AppState>,
    who: Principal,
    Path((pool, address)): Path<(String, String)>,
) -> Result<Json<WriteAck>, ApiError> {
    Ok(Json(set_state(&s, &who, &pool, &address, AdminState::Draining).await?))
}

/// Put a backend back in service.
#[utoipa::path(post, path = "/api/v1/pools/{pool}/backends/{address}/enable", tag = "pools",
    params(("pool" = String, Path), ("address" = String, Path, description = "backend address or id")),
    responses((status = 200, body = WriteAck), (status = 404, body = ErrorBody)))]
async fn enable_backend(
    State(s): State<AppState>,
    who: Principal,
    Path((pool, address)): Path<(String, String)>,
) -> Result<Json<WriteAck>, ApiError> {
    Ok(Json(set_state(&s, &who, &pool, &address, AdminState::Enabled).await?))
}

/// Take a backend out of service at once.
#[utoipa::path(post, path = "/api/v1/pools/{pool}/backends/{address}/disable", tag = "pools",
    params(("pool" = String, Path), ("address" = String, Path, description = "backend address or id")),
    responses((status = 200, body = WriteAck), (status = 404, body = ErrorBody)))]
async fn disable_backend(
    State(s): State<AppState>,
    who: Principal,
    Path((pool, address)): Path<(String, String)>,
) -> Result<Json<WriteAck>, ApiError> {
    Ok(Json(set_state(&s, &who, &pool, &address, AdminState::Disabled).await?))
}

/// Set a backend's weight (0 ..= 256).
#[utoipa::path(put, path = "/api/v1/pools/{pool}/backends/{address}/weight", tag = "pools",
    params(("pool" = String, Path), ("address" = String, Path, description = "backend address or id")),
    request_body = WeightChange,
    responses((status = 200, body = WriteAck), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_weight(
    State(s): State<AppState>,
    who: Principal,
    Path((pool, backend)): Path<(String, String)>,
    Json(body): Json<WeightChange>,
) -> Result<Json<WriteAck>, ApiError> {
    if body.weight > MAX_WEIGHT {
        return Err(ApiError::BadRequest(format!("weight must be 0 to {MAX_WEIGHT}")));
    }
    let address = find_backend(&s, &pool, &backend).await?;
    tracing::info!(user = %who.name, pool, backend = %address, weight = body.weight, "admin: backend weight change");
    Ok(Json(s.backend.set_backend_weight(&pool, &address, body.weight, &who.name).await?))
}
