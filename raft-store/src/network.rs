//! Client side of cluster RPC: a signed HTTP/1 client (`PeerClient`) shared by
//! openraft's replication (`NetworkFactory` / `PeerConnection`) and by the node's own
//! forwarding of writes, membership changes and lease checks to the leader.
//! The server side is `rpc`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::types::{Command, Member, NodeId, TypeConfig};

pub const PATH_APPEND: &str = "/raft/append";
pub const PATH_VOTE: &str = "/raft/vote";
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";
pub const PATH_WRITE: &str = "/cluster/write";
pub const PATH_MEMBERSHIP: &str = "/cluster/membership";
pub const PATH_LEASE: &str = "/cluster/lease";
pub const PATH_REPORT: &str = "/cluster/report";
pub const PATH_PROBE: &str = "/cluster/probe";

/// What a node answers a peer that asks whether it already belongs to a cluster
/// (asked by the lowest-id node before it creates one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeAnswer {
    pub node: NodeId,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub members: Vec<NodeId>,
}

impl ProbeAnswer {
    /// True when the answering node holds any Raft state at all.
    pub fn has_cluster_state(&self) -> bool {
        self.term > 0 || self.last_log_index.is_some() || !self.members.is_empty()
    }
}

/// Body of `POST /cluster/write`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteRequest {
    pub cmd: Command,
}

/// Body of `POST /cluster/lease`: "is `node` still the owner of `vip` at `epoch`?"
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub vip: String,
    pub epoch: u64,
    pub node: NodeId,
}

/// A node's periodic "I am here" to the leader, with what the VIP controller needs
/// to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: NodeId,
    /// Its data plane is running and can serve.
    pub proxy_healthy: bool,
    /// It is shutting down and asks to be relieved of its VIPs.
    pub shutting_down: bool,
}

/// Body of `POST /cluster/membership`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MembershipRequest {
    AddLearner { id: NodeId, member: Member },
    ChangeVoters { voters: BTreeSet<NodeId> },
    RemoveNode { id: NodeId },
}

/// Answer of the leader-only endpoints (`write`, `membership`, `lease`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ClusterReply<T> {
    Ok {
        value: T,
    },
    /// The receiver is not (or no longer) the leader; try `leader` instead.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The leader could not confirm its quorum (lease checks only).
    NoQuorum {
        message: String,
    },
    Failed {
        message: String,
    },
}

/// Why a request to a peer got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} answered HTTP {status}: {body}")]
    Status { addr: String, status: u16, body: String },
    #[error("bad request or answer for {addr}: {message}")]
    Invalid { addr: String, message: String },
}

/// Signs and sends cluster RPCs. Cheap to clone (pooled connections are shared).
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpConnector, Full<Bytes>>,
    secret: Arc<Vec<u8>>,
    me: NodeId,
}

impl PeerClient {
    pub fn new(me: NodeId, secret: Arc<Vec<u8>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Self { client, secret, me }
    }

    /// POSTs `body` (JSON) to `addr` + `path`, signed; returns the decoded 200 answer.
    pub async fn post<Req, Resp>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let invalid = |message: String| TransportError::Invalid { addr: addr.to_string(), message };
        let bytes = serde_json::to_vec(body).map_err(|e| invalid(format!("encoding: {e}")))?;
        let (status, answer) = self.post_raw(addr, path, bytes, timeout).await?;
        if status != 200 {
            return Err(TransportError::Status {
                addr: addr.to_string(),
                status,
                body: String::from_utf8_lossy(&answer).chars().take(300).collect(),
            });
        }
        serde_json::from_slice(&answer).map_err(|e| invalid(format!("decoding answer: {e}")))
    }

    /// Sends already-encoded bytes; returns the status code and body, whatever it is.
    pub async fn post_raw(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), TransportError> {
        let headers = auth::sign(&self.secret, "POST", path, auth::now_ms(), self.me, &body);
        self.send(addr, path, body, &headers, timeout).await
    }

    /// Sends with caller-chosen auth headers (tests use it to forge bad ones).
    pub async fn send(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
        timeout: Duration,
    ) -> Result<(u16, Bytes), TransportError> {
        let mut req =
            hyper::Request::post(format!("http://{addr}{path}")).header(http::header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TransportError::Invalid { addr: addr.to_string(), message: e.to_string() })?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    TransportError::Connect { addr: addr.to_string(), message: e.to_string() }
                } else {
                    TransportError::Invalid { addr: addr.to_string(), message: e.to_string() }
                }
            })?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| TransportError::Invalid {
                    addr: addr.to_string(),
                    message: format!("reading answer: {e}"),
                })?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout { addr: addr.to_string(), timeout }),
        }
    }
}

/// openraft's `RaftNetworkFactory`: one `PeerConnection` per replication target.
#[derive(Clone)]
pub struct NetworkFactory {
    client: PeerClient,
}

impl NetworkFactory {
    pub fn new(client: PeerClient) -> Self {
        Self { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        PeerConnection { client: self.client.clone(), target, addr: node.addr.clone() }
    }
}

/// Raft RPCs to one peer.
pub struct PeerConnection {
    client: PeerClient,
    target: NodeId,
    addr: String,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Result<Resp, RaftError<NodeId, E>>, TransportError> =
            self.client.post(&self.addr, path, req, option.hard_ttl()).await;
        match answer {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e @ TransportError::Connect { .. }) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(PATH_APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(PATH_SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(PATH_VOTE, &rpc, &option).await
    }
}
