//! Shared harness for admin-web's HTTP and browser tests: the fixture backend served by
//! the real router and `serve` on 127.0.0.1, a small HTTP client that records every
//! response body (so tests can assert that no secret ever appears), and login helpers.
#![allow(dead_code)]

pub mod fixture;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use admin_web::AdminOptions;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use fixture::FixtureBackend;

pub const ADMIN_PASSWORD: &str = "fixture-admin-pass-Q7";

pub struct Server {
    pub addr: SocketAddr,
    pub backend: Arc<FixtureBackend>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Every response body seen by `call`.
    pub bodies: Arc<Mutex<Vec<String>>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// The `{"error": {...}}` code, asserting the shape.
    pub fn error_code(&self) -> String {
        let j = self.json();
        let e = &j["error"];
        assert!(e["message"].is_string(), "error shape without message: {}", self.body);
        assert!(e.get("details").is_some(), "error shape without details: {}", self.body);
        e["code"].as_str().unwrap_or_else(|| panic!("error shape without code: {}", self.body)).to_string()
    }
}

/// A logged-in browser-like client: the cookie and its CSRF token.
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(AdminOptions::default()).await
    }

    pub async fn start_with(options: AdminOptions) -> Server {
        let backend = Arc::new(FixtureBackend::new());
        let hash = admin_web::hash_password(ADMIN_PASSWORD).unwrap();
        backend.add_user("admin", &hash);
        let router = admin_web::router(backend.clone(), options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            admin_web::serve(listener, router, None, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Server { addr, backend, stop: Some(tx), task: Some(task), client, bodies: Arc::default() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        let mut b = Request::builder().method(method).uri(self.url(path));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            b = b.header("content-type", "application/json");
        }
        let req = b.body(Full::new(Bytes::from(body.unwrap_or("").to_string()))).unwrap();
        let resp = tokio::time::timeout(std::time::Duration::from_secs(20), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        self.bodies.lock().unwrap().push(body.clone());
        Reply { status: parts.status, headers: parts.headers, body }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.call(Method::GET, path, headers, None).await
    }

    pub async fn login(&self, user: &str, pass: &str) -> Reply {
        let body = serde_json::json!({"username": user, "password": pass}).to_string();
        self.call(Method::POST, "/api/v1/session", &[], Some(&body)).await
    }

    /// Logs in as admin and returns the cookie and CSRF token.
    pub async fn admin_session(&self) -> Session {
        let r = self.login("admin", ADMIN_PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let set = r.header("set-cookie").expect("set-cookie");
        let cookie = set.split(';').next().unwrap().to_string();
        Session { cookie, csrf: r.json()["csrf_token"].as_str().unwrap().to_string() }
    }

    /// Mints an API token through the API and returns its plaintext.
    pub async fn api_token(&self, s: &Session, name: &str) -> String {
        let body = serde_json::json!({"name": name}).to_string();
        let r = self
            .call(Method::POST, "/api/v1/tokens", &[("cookie", &s.cookie), ("x-csrf-token", &s.csrf)], Some(&body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// Panics if any recorded response body contains one of `secrets`.
    pub fn assert_no_secret_in_bodies(&self, secrets: &[String]) {
        for body in self.bodies.lock().unwrap().iter() {
            for s in secrets {
                assert!(!s.is_empty());
                assert!(!body.contains(s.as_str()), "a secret leaked into a response body: {body}");
            }
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
