//! The web panel: static HTML/CSS/JS compiled into the binary with `include_str!`
//! (no CDN, no runtime download, no build step). `/login` and the two assets it needs
//! are public; the panel itself (`/`, `app.js`) needs a session like the API.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::{ApiError, Path};
use crate::state::AppState;

/// (file name under /assets/, content type, content)
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("login.js", "text/javascript; charset=utf-8", include_str!("assets/login.js")),
];

const INDEX: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { html(INDEX) }))
        .route("/login", get(|| async { html(LOGIN) }))
        .route("/assets/{file}", get(asset))
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, ctype, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::NotFound(format!("no asset {file}")))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, *ctype)], *body).into_response())
}

/// Names of the embedded assets, for tests.
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|(n, _, _)| *n).collect()
}
