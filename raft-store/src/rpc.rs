//! Server side of cluster RPC: the axum router on `cluster_listen`. Every request,
//! whatever its path, is authenticated first (HMAC, see `auth`); a refused peer gets
//! 401 and a warning naming its address. Bodies that do not parse get 400 with a JSON
//! error naming the problem. Raft calls go straight to openraft; leader-only calls
//! (`/cluster/write`, `/cluster/membership`, `/cluster/lease`) run through `node`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth;
use crate::network::{
    LeaseRequest, MembershipRequest, NodeReport, PATH_APPEND, PATH_LEASE, PATH_MEMBERSHIP, PATH_PROBE, PATH_REPORT,
    PATH_SNAPSHOT, PATH_VOTE, PATH_WRITE, ProbeAnswer, WriteRequest,
};
use crate::node::{LeaderOp, Shared};
use crate::types::{NodeId, TypeConfig};

/// Largest accepted request body (snapshot chunks are 1 MiB of JSON-encoded bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Every error the server answers, mapped to a status and a JSON body in one place.
#[derive(Debug)]
pub(crate) enum ApiError {
    Unauthorized(auth::AuthError),
    BadBody { what: &'static str, message: String },
    TooLarge,
    NotFound(String),
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            ApiError::Unauthorized(e) => (StatusCode::UNAUTHORIZED, format!("unauthorized: {e}")),
            ApiError::BadBody { what, message } => (StatusCode::BAD_REQUEST, format!("invalid {what} body: {message}")),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {MAX_BODY_BYTES} bytes")),
            ApiError::NotFound(path) => (StatusCode::NOT_FOUND, format!("no cluster endpoint {path}")),
        };
        (status, axum::Json(ErrorBody { error })).into_response()
    }
}

fn parse<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadBody { what, message: e.to_string() })
}

/// The cluster RPC router for one node.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(raft_routes())
        .merge(leader_routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .with_state(shared)
}

fn raft_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_SNAPSHOT, post(snapshot))
        .route(PATH_PROBE, post(probe))
}

async fn probe(State(s): State<Arc<Shared>>) -> Response {
    let m = s.raft.metrics().borrow().clone();
    let members = m.membership_config.membership().nodes().map(|(id, _)| *id).collect();
    axum::Json(ProbeAnswer { node: s.id, term: m.current_term, last_log_index: m.last_log_index, members })
        .into_response()
}

fn leader_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(PATH_WRITE, post(leader_op::<WriteRequest>))
        .route(PATH_MEMBERSHIP, post(leader_op::<MembershipRequest>))
        .route(PATH_LEASE, post(leader_op::<LeaseRequest>))
        .route(PATH_REPORT, post(leader_op::<NodeReport>))
}

/// Authenticated sender, put into request extensions for handlers and logs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sender(pub NodeId);

async fn authenticate(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return ApiError::TooLarge.into_response(),
    };
    let path = parts.uri.path().to_string();
    let now = auth::now_ms();
    let checked = auth::verify(&shared.secret, parts.method.as_str(), &path, &parts.headers, &bytes, now)
        .and_then(|v| shared.replay.check(&v, now).map(|()| v));
    match checked {
        Ok(v) => {
            parts.extensions.insert(Sender(v.node));
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        Err(e) => {
            tracing::warn!(peer = %peer, path = %path, reason = %e, "refused unauthenticated cluster rpc");
            ApiError::Unauthorized(e).into_response()
        }
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(req.uri().path().to_string())
}

async fn append(State(s): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let req: AppendEntriesRequest<TypeConfig> = parse("append-entries", &body)?;
    Ok(axum::Json(s.raft.append_entries(req).await).into_response())
}

async fn vote(State(s): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let req: VoteRequest<NodeId> = parse("vote", &body)?;
    Ok(axum::Json(s.raft.vote(req).await).into_response())
}

async fn snapshot(State(s): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let req: InstallSnapshotRequest<TypeConfig> = parse("install-snapshot", &body)?;
    Ok(axum::Json(s.raft.install_snapshot(req).await).into_response())
}

async fn leader_op<Op: LeaderOp>(
    State(s): State<Arc<Shared>>,
    Extension(Sender(from)): Extension<Sender>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let op: Op = parse(Op::WHAT, &body)?;
    tracing::debug!(from, what = Op::WHAT, "leader operation forwarded by peer");
    Ok(axum::Json(op.run_local(&s).await).into_response())
}
