//! The replicated config: read, validate, replace (PUT) and patch (PATCH).
//!
//! PUT takes the whole TOML text. PATCH takes a JSON merge patch (RFC 7396) applied to
//! the JSON form of the current TOML document; the result is written back as TOML, so
//! comments and layout of the current text are not kept (use PUT to keep them). Both
//! refuse to overwrite a change they did not see: PATCH always applies against the
//! version it read, PUT when the body has `base_version` or the request has
//! `If-Match: "<version>"` (409 on mismatch). Every write is validated first: 422 with
//! the validator's problems (line, column, message) in `error.details`.

use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::backend::ConfigWrite;
use crate::error::{ApiError, ErrorBody, Json};
use crate::model::{ConfigDocument, ConfigReplace, ValidationReport, WriteAck};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_config, put_config, patch_config)).routes(routes!(validate_config))
}

/// `If-Match: "7"` (or `7`, or `W/"7"`) -> 7.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("").trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::BadRequest("If-Match must be the config version, e.g. \"7\"".into()))
}

async fn apply(
    s: &AppState,
    who: &Principal,
    toml: String,
    comment: Option<String>,
    expected_version: Option<u64>,
) -> Result<WriteAck, ApiError> {
    s.backend.validate_config(&toml).map_err(ApiError::InvalidConfig)?;
    if let Some(want) = expected_version {
        let current = s.backend.config().await?.version;
        if current != want {
            return Err(ApiError::Conflict(format!(
                "config changed since version {want} (now {current}); reload and apply again"
            )));
        }
    }
    tracing::info!(user = %who.name, bytes = toml.len(), "admin: config replace");
    let write = ConfigWrite { toml, comment, expected_version, author: who.name.clone() };
    Ok(s.backend.replace_config(write).await?)
}

/// The current config text and version.
#[utoipa::path(get, path = "/api/v1/config", tag = "config",
    responses((status = 200, body = ConfigDocument), (status = 401, body = ErrorBody)))]
async fn get_config(State(s): State<AppState>) -> Result<Json<ConfigDocument>, ApiError> {
    Ok(Json(s.backend.config().await?))
}

/// Replace the whole config.
#[utoipa::path(put, path = "/api/v1/config", tag = "config", request_body = ConfigReplace,
    params(("If-Match" = Option<String>, Header, description = "expected current version")),
    responses((status = 200, body = WriteAck), (status = 409, body = ErrorBody),
        (status = 422, description = "validation failed; problems in error.details", body = ErrorBody)))]
async fn put_config(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Json(body): Json<ConfigReplace>,
) -> Result<Json<WriteAck>, ApiError> {
    let expected = match (if_match(&headers)?, body.base_version) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::BadRequest("If-Match and base_version disagree".into()));
        }
        (a, b) => a.or(b),
    };
    Ok(Json(apply(&s, &who, body.toml, body.comment, expected).await?))
}

/// Merge-patch the config (RFC 7396 on its JSON form).
#[utoipa::path(patch, path = "/api/v1/config", tag = "config",
    request_body(content = Object, content_type = "application/merge-patch+json"),
    params(("If-Match" = Option<String>, Header, description = "expected current version")),
    responses((status = 200, body = WriteAck), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn patch_config(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Json(patch): Json<Value>,
) -> Result<Json<WriteAck>, ApiError> {
    let current = s.backend.config().await?;
    let base = if_match(&headers)?.unwrap_or(current.version);
    let toml = patched_toml(&current.toml, &patch)?;
    Ok(Json(apply(&s, &who, toml, Some("merge patch".into()), Some(base)).await?))
}

/// Check a config without applying it.
#[utoipa::path(post, path = "/api/v1/config/validate", tag = "config", request_body = ConfigReplace,
    responses((status = 200, body = ValidationReport), (status = 400, body = ErrorBody)))]
async fn validate_config(State(s): State<AppState>, Json(body): Json<ConfigReplace>) -> Json<ValidationReport> {
    match s.backend.validate_config(&body.toml) {
        Ok(()) => Json(ValidationReport { valid: true, errors: Vec::new() }),
        Err(errors) => Json(ValidationReport { valid: false, errors }),
    }
}

/// RFC 7396 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Current TOML text + merge patch -> new TOML text.
pub fn patched_toml(current: &str, patch: &Value) -> Result<String, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::BadRequest("a config merge patch must be a JSON object".into()));
    }
    let mut doc: Value = toml::from_str(current)
        .map_err(|e| ApiError::Internal(format!("current config does not parse as TOML: {}", e.message())))?;
    merge_patch(&mut doc, patch);
    toml::to_string(&doc).map_err(|e| ApiError::BadRequest(format!("patched config cannot be written as TOML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3], "b": {"x": 1}}));
        assert_eq!(t, json!({"a": [3], "b": {"x": 1}}));
    }

    #[test]
    fn patched_toml_round_trips_tables_and_arrays_of_tables() {
        let cur = "[runtime]\nworkers = 2\n\n[[pool]]\nname = \"web\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n";
        let out = patched_toml(cur, &json!({"runtime": {"workers": 4}, "zeta": 1})).unwrap();
        let back: Value = toml::from_str(&out).unwrap();
        assert_eq!(back["runtime"]["workers"], json!(4));
        assert_eq!(back["zeta"], json!(1));
        assert_eq!(back["pool"][0]["backend"][0]["address"], json!("127.0.0.1:1"));
        assert!(matches!(patched_toml(cur, &json!([1])), Err(ApiError::BadRequest(_))));
    }
}
