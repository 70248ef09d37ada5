//! The replicated audit trail, newest first, with simple filters.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, Json, Query};
use crate::model::AuditEntry;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Most entries returned (default 200, at most 1000).
    pub limit: Option<usize>,
    /// Only entries by this author.
    pub author: Option<String>,
    /// Only entries of this action (e.g. `replace_config`).
    pub action: Option<String>,
}

/// Who changed what and when.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 400, body = ErrorBody)))]
async fn list_audit(State(s): State<AppState>, Query(q): Query<AuditQuery>) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = q.limit.unwrap_or(200).min(1000);
    let entries = s
        .backend
        .audit()
        .await?
        .into_iter()
        .rev()
        .filter(|e| q.author.as_deref().is_none_or(|a| e.author == a))
        .filter(|e| q.action.as_deref().is_none_or(|a| e.action == a))
        .take(limit)
        .collect();
    Ok(Json(entries))
}
