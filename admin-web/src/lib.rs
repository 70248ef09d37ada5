//! Admin REST API (/api/v1), authentication, live stats and the embedded web panel.
//!
//! The node implements [`AdminBackend`] (backed by raft-store) and mounts [`router`] on
//! `[admin] listen`, either with its own server (serve it with
//! `into_make_service_with_connect_info::<SocketAddr>()` so login rate limiting sees
//! client addresses) or with [`serve`], which also does TLS. This crate knows nothing
//! of Raft or the data plane.

pub mod api;
pub mod auth;
pub mod backend;
pub mod error;
pub mod model;
pub mod ops;
pub mod panel;
pub mod serve;
pub mod state;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;

pub use auth::limit::LoginLimits;
pub use auth::password::hash_password;
pub use backend::{AdminBackend, BackendError, ConfigWrite};
pub use error::ApiError;
pub use serve::serve;
pub use state::AdminOptions;

/// The complete admin router: API, operational endpoints and panel, all behind the
/// auth middleware (which lets only its public allowlist through without credentials).
pub fn router<B: AdminBackend>(backend: Arc<B>, options: AdminOptions) -> Router {
    let state = state::AppState::new(backend, options);
    let (api, doc) = api::api_routes().split_for_parts();
    let doc_json = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()));
    api.merge(ops::routes(doc_json))
        .merge(panel::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard::require_auth))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The OpenAPI document of the API (the same one served at `/api/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::api_routes().into_openapi()
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    );
    resp
}
