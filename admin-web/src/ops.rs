//! Operational endpoints outside `/api/v1`: `/healthz` (public), `/metrics`
//! (Prometheus text, auth required: scrapers send a bearer token) and the OpenAPI
//! document.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;

pub fn routes(openapi_json: Arc<String>) -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = openapi_json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()) }
        }),
    )
}

async fn healthz(State(s): State<AppState>) -> Response {
    let h = s.backend.health().await;
    let status = if h.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(h)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let text = s.backend.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}
