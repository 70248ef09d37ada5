//! HTTP clients for tests: a pooled HTTP/1.1 client and an HTTP/2 prior-knowledge
//! client, both plain hyper, returning status, headers and the whole body.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type Http = Client<HttpConnector, Full<Bytes>>;

pub fn http1() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn http2() -> Http {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(client: &Http, req: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
    let resp = client.request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply { status: parts.status, headers: parts.headers, body })
}

/// GET `url` with extra headers.
pub async fn get_with(client: &Http, url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(client, b.body(Full::new(Bytes::new()))?).await
}

pub async fn get(client: &Http, url: &str) -> anyhow::Result<Reply> {
    get_with(client, url, &[]).await
}
