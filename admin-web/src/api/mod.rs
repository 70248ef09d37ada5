//! The `/api/v1` REST API, built from one small router per area. Each router is a
//! `utoipa_axum::OpenApiRouter`, so registering a handler also documents it: the
//! OpenAPI document always lists exactly the routes that exist.

pub mod audit;
pub mod cluster;
pub mod config;
pub mod events;
pub mod pools;
pub mod session;
pub mod users;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "quorumlb admin API", description = "Cluster, pools, config, users and tokens of a quorumlb cluster. \
        Writes are Raft commands: sent to any node, forwarded to the leader, applied on every node. \
        Authenticate with `Authorization: Bearer <token>`, or with the session cookie from `POST /api/v1/session` \
        plus `X-CSRF-Token` on writes."),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::session::COOKIE_NAME))),
        );
    }
}

/// Every `/api/v1` route with its documentation.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(cluster::routes())
        .merge(pools::routes())
        .merge(config::routes())
        .merge(events::routes())
        .merge(audit::routes())
        .merge(session::routes())
        .merge(users::routes())
}
