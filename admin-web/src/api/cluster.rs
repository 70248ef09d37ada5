//! Cluster endpoints: status, membership changes and certificate reload.

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody, Json, Path};
use crate::model::{CertificateReload, ClusterView, NodeAdd};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_cluster))
        .routes(routes!(add_node))
        .routes(routes!(remove_node))
        .routes(routes!(reload_certificates))
}

/// Members, leader, term, commit index, config version and VIP owners.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "cluster",
    responses((status = 200, body = ClusterView), (status = 401, body = ErrorBody)))]
async fn get_cluster(State(s): State<AppState>) -> Result<Json<ClusterView>, ApiError> {
    Ok(Json(s.backend.cluster().await?))
}

/// Adds a member: joins as learner, becomes a voter once caught up.
#[utoipa::path(post, path = "/api/v1/nodes", tag = "cluster", request_body = NodeAdd,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_node(
    State(s): State<AppState>,
    who: Principal,
    Json(node): Json<NodeAdd>,
) -> Result<StatusCode, ApiError> {
    if node.address.trim().is_empty() {
        return Err(ApiError::BadRequest("address must be host:port".into()));
    }
    s.backend.add_node(node, &who.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member from the cluster.
#[utoipa::path(delete, path = "/api/v1/nodes/{id}", tag = "cluster",
    params(("id" = u64, Path, description = "node id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_node(State(s): State<AppState>, who: Principal, Path(id): Path<u64>) -> Result<StatusCode, ApiError> {
    s.backend.remove_node(id, &who.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Re-reads the certificate files of this node.
#[utoipa::path(post, path = "/api/v1/certificates/reload", tag = "cluster",
    responses((status = 200, body = CertificateReload), (status = 422, body = ErrorBody)))]
async fn reload_certificates(State(s): State<AppState>, who: Principal) -> Result<Json<CertificateReload>, ApiError> {
    Ok(Json(s.backend.reload_certificates(&who.name).await?))
}
