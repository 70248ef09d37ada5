//! HTTP-level tests of the admin API against a real server on 127.0.0.1, with the
//! in-memory fixture backend standing in for the node: auth on every route, sessions,
//! CSRF, tokens, rate limiting, config validation, error shape, SSE and OpenAPI.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use admin_web::{AdminOptions, LoginLimits};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::{ADMIN_PASSWORD, Server};

/// Concrete request path for an OpenAPI path template.
fn concrete(path: &str) -> String {
    path.replace("{pool}", "web")
        .replace("{name}", "web")
        .replace("{address}", "127.0.0.1:9001")
        .replace("{id}", "2")
        .replace("{username}", "admin")
}

fn methods_of(item: &Value) -> Vec<Method> {
    ["get", "put", "post", "delete", "patch"]
        .iter()
        .filter(|m| item.get(**m).is_some())
        .map(|m| Method::from_bytes(m.to_uppercase().as_bytes()).unwrap())
        .collect()
}

#[tokio::test]
async fn every_route_but_the_public_ones_answers_401_without_credentials() {
    let srv = Server::start().await;
    let doc = serde_json::to_value(admin_web::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "openapi lists too few paths: {:?}", paths.keys());
    let mut checked = 0;
    let mut routes: Vec<(Method, String)> = Vec::new();
    for (path, item) in paths {
        for m in methods_of(item) {
            routes.push((m, concrete(path)));
        }
    }
    // Routes outside the OpenAPI document, and paths that do not exist at all.
    for (m, p) in [
        (Method::GET, "/metrics"),
        (Method::GET, "/api/v1/openapi.json"),
        (Method::GET, "/assets/app.js"),
        (Method::GET, "/assets/nope.js"),
        (Method::GET, "/api/v1/does-not-exist"),
        (Method::POST, "/api/v1/pools/web/backends/127.0.0.1:9001/explode"),
        (Method::DELETE, "/healthz"),
    ] {
        routes.push((m, p.to_string()));
    }
    let bad_credentials: [&[(&str, &str)]; 4] = [
        &[],
        &[("authorization", "Bearer qlb_0123456789ab_notarealtoken")],
        &[("authorization", "Bearer garbage")],
        &[("cookie", "qlb_session=eyJ1IjoiYWRtaW4ifQ.forged")],
    ];
    for (method, path) in &routes {
        if admin_web::auth::guard::is_public(method, path) {
            continue;
        }
        for creds in bad_credentials {
            let r = srv.call(method.clone(), path, creds, None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path} with {creds:?}: {}", r.body);
            assert_eq!(r.error_code(), "unauthorized");
            assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
            checked += 1;
        }
    }
    assert!(checked >= 4 * 25, "only {checked} checks");
    // The panel page sends browsers to the login page instead.
    let r = srv.get("/", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location").as_deref(), Some("/login"));
    // The public allowlist is exactly this, and each entry works without credentials.
    let public: Vec<(String, String)> = admin_web::auth::guard::public_routes();
    assert_eq!(
        public,
        [
            ("GET", "/healthz"),
            ("GET", "/login"),
            ("GET", "/assets/login.js"),
            ("GET", "/assets/app.css"),
            ("POST", "/api/v1/session")
        ]
        .map(|(m, p)| (m.to_string(), p.to_string()))
    );
    for path in ["/healthz", "/login", "/assets/login.js", "/assets/app.css"] {
        assert_eq!(srv.get(path, &[]).await.status, StatusCode::OK, "{path}");
    }
    assert_eq!(srv.get("/healthz", &[]).await.json(), json!({"ready": true, "status": "ok"}));
    srv.stop().await;
}

#[tokio::test]
async fn login_sets_a_signed_strict_cookie_and_refuses_bad_passwords() {
    let srv = Server::start().await;
    let bad = srv.login("admin", "wrong-password").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.error_code(), "bad_credentials");
    assert!(bad.header("set-cookie").is_none());
    let nobody = srv.login("nobody", ADMIN_PASSWORD).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    assert_eq!(nobody.body, bad.body, "unknown user and wrong password must look the same");

    let ok = srv.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let set = ok.header("set-cookie").unwrap();
    for attr in ["qlb_session=", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    assert!(!set.contains("Secure"), "plain http must not mark the cookie Secure: {set}");
    let j = ok.json();
    assert_eq!(j["username"], "admin");
    assert!(j["csrf_token"].as_str().unwrap().len() >= 32);
    let cookie = set.split(';').next().unwrap().to_string();

    let r = srv.get("/api/v1/cluster", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["leader"], 1);
    let s = srv.get("/api/v1/session", &[("cookie", &cookie)]).await.json();
    assert_eq!(s["csrf_token"], j["csrf_token"]);
    assert_eq!(srv.get("/", &[("cookie", &cookie)]).await.status, StatusCode::OK);

    // A cookie signed with another key (another cluster) is refused.
    let claims = cookie.trim_start_matches("qlb_session=").split('.').next().unwrap();
    let forged = format!("qlb_session={claims}.{}", "A".repeat(43));
    assert_eq!(srv.get("/api/v1/cluster", &[("cookie", &forged)]).await.status, StatusCode::UNAUTHORIZED);

    // Changing the password ends the session.
    let new_hash = admin_web::hash_password("another-password-1").unwrap();
    srv.backend.add_user("admin", &new_hash);
    assert_eq!(srv.get("/api/v1/cluster", &[("cookie", &cookie)]).await.status, StatusCode::UNAUTHORIZED);
    srv.stop().await;

    let tls_srv = Server::start_with(AdminOptions { secure_cookies: true, ..Default::default() }).await;
    let set = tls_srv.login("admin", ADMIN_PASSWORD).await.header("set-cookie").unwrap();
    assert!(set.contains("; Secure"), "{set}");
    tls_srv.stop().await;
}

#[tokio::test]
async fn cookie_writes_need_the_csrf_token_bearer_writes_do_not() {
    let srv = Server::start().await;
    let s = srv.admin_session().await;
    let drain = "/api/v1/pools/web/backends/127.0.0.1:9001/drain";
    let r = srv.call(Method::POST, drain, &[("cookie", &s.cookie)], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.error_code(), "forbidden");
    let r = srv.call(Method::POST, drain, &[("cookie", &s.cookie), ("x-csrf-token", "bogus")], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The token of another session does not fit this one.
    let other = srv.admin_session().await;
    let r = srv.call(Method::POST, drain, &[("cookie", &s.cookie), ("x-csrf-token", &other.csrf)], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let pools = srv.get("/api/v1/pools/web", &[("cookie", &s.cookie)]).await.json();
    assert_eq!(pools["backends"][0]["admin_state"], "enabled", "refused writes must change nothing");

    let r = srv.call(Method::POST, drain, &[("cookie", &s.cookie), ("x-csrf-token", &s.csrf)], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let pools = srv.get("/api/v1/pools/web", &[("cookie", &s.cookie)]).await.json();
    assert_eq!(pools["backends"][0]["admin_state"], "draining");

    let token = srv.api_token(&s, "ci").await;
    let bearer = format!("Bearer {token}");
    let enable = "/api/v1/pools/web/backends/127.0.0.1:9001/enable";
    let r = srv.call(Method::POST, enable, &[("authorization", &bearer)], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let weight = "/api/v1/pools/web/backends/127.0.0.1:9002/weight";
    let r = srv.call(Method::PUT, weight, &[("authorization", &bearer)], Some(r#"{"weight": 7}"#)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let pool = srv.get("/api/v1/pools/web", &[("authorization", &bearer)]).await.json();
    assert_eq!(pool["backends"][0]["admin_state"], "enabled");
    assert_eq!(pool["backends"][1]["weight"], 7);
    let audit = srv.get("/api/v1/audit", &[("authorization", &bearer)]).await.json();
    assert_eq!(audit[0]["author"], "token:ci", "newest first, author is the token's name: {audit}");
    assert_eq!(audit[0]["action"], "set_backend_weight");
    let metrics = srv.get("/metrics", &[("authorization", &bearer)]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(metrics.body.contains("quorumlb_fixture_up 1"));

    // Revoking the token ends it.
    let tokens = srv.get("/api/v1/tokens", &[("cookie", &s.cookie)]).await.json();
    let id = tokens[0]["id"].as_str().unwrap().to_string();
    let r = srv
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            &[("cookie", &s.cookie), ("x-csrf-token", &s.csrf)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(srv.get("/api/v1/cluster", &[("authorization", &bearer)]).await.status, StatusCode::UNAUTHORIZED);

    // Logout is a write too, and clears the cookie.
    let r = srv.call(Method::DELETE, "/api/v1/session", &[("cookie", &s.cookie)], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r =
        srv.call(Method::DELETE, "/api/v1/session", &[("cookie", &s.cookie), ("x-csrf-token", &s.csrf)], None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.header("set-cookie").unwrap().contains("qlb_session=; "));
    srv.stop().await;
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_username_and_per_ip() {
    let limits = LoginLimits { per_ip_per_minute: 1, per_ip_burst: 6, per_user_per_minute: 1, per_user_burst: 3 };
    let srv = Server::start_with(AdminOptions { login_limits: limits, ..Default::default() }).await;
    for _ in 0..3 {
        assert_eq!(srv.login("admin", "guess").await.status, StatusCode::UNAUTHORIZED);
    }
    let r = srv.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits: {}", r.body);
    assert_eq!(r.error_code(), "rate_limited");
    assert!(r.header("retry-after").is_some());
    assert!(r.header("set-cookie").is_none());
    // Other usernames from the same address: the per-IP budget (6) runs out too.
    assert_eq!(srv.login("alice", "x").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(srv.login("bob", "x").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(srv.login("carol", "x").await.status, StatusCode::TOO_MANY_REQUESTS);
    srv.stop().await;
}

#[tokio::test]
async fn bad_config_is_refused_with_422_and_the_validators_lines() {
    let srv = Server::start().await;
    let s = srv.admin_session().await;
    let h = [("cookie", s.cookie.as_str()), ("x-csrf-token", s.csrf.as_str())];
    let cur = srv.get("/api/v1/config", &h).await.json();
    assert_eq!(cur["version"], 1);
    let text = cur["toml"].as_str().unwrap().to_string();

    // A syntax error on line 4, and a semantic one on the line of the bad address.
    let broken = text.replacen("default_pool = \"web\"", "default_pool = = \"web\"", 1);
    let line = broken.lines().position(|l| l.contains("= =")).unwrap() + 1;
    let r = srv.call(Method::PUT, "/api/v1/config", &h, Some(&json!({"toml": broken}).to_string())).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.error_code(), "invalid_config");
    assert_eq!(r.json()["error"]["details"][0]["line"], line, "{}", r.body);
    let bad_addr = text.replacen("127.0.0.1:9002", "not-an-address", 1);
    let line = bad_addr.lines().position(|l| l.contains("not-an-address")).unwrap() + 1;
    let r = srv.call(Method::PUT, "/api/v1/config", &h, Some(&json!({"toml": bad_addr}).to_string())).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let d = &r.json()["error"]["details"][0];
    assert_eq!(d["line"], line);
    assert!(d["message"].as_str().unwrap().contains("not-an-address"));
    let v = srv.call(Method::POST, "/api/v1/config/validate", &h, Some(&json!({"toml": bad_addr}).to_string())).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.json()["valid"], false);
    assert_eq!(v.json()["errors"][0]["line"], line);
    assert_eq!(srv.get("/api/v1/config", &h).await.json()["version"], 1, "refused configs change nothing");

    // A good config applies and bumps the version; a stale base version is refused.
    let good = format!("{text}\n[[pool]]\nname = \"extra\"\n");
    let r =
        srv.call(Method::PUT, "/api/v1/config", &h, Some(&json!({"toml": good, "base_version": 1}).to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["config_version"], 2);
    let stale = [h[0], h[1], ("if-match", "\"1\"")];
    let r = srv.call(Method::PUT, "/api/v1/config", &stale, Some(&json!({"toml": text}).to_string())).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.error_code(), "conflict");
    let pools = srv.get("/api/v1/pools", &h).await.json();
    assert_eq!(pools.as_array().unwrap().len(), 3);

    // PATCH: a JSON merge patch on the document; validated the same way.
    let patch = json!({"runtime": {"workers": 2}});
    let hp = [h[0], h[1], ("content-type", "application/merge-patch+json")];
    let r = srv.call(Method::PATCH, "/api/v1/config", &hp, Some(&patch.to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["config_version"], 3);
    let now = srv.get("/api/v1/config", &h).await.json();
    let doc: toml::Table = toml::from_str(now["toml"].as_str().unwrap()).unwrap();
    assert_eq!(doc["runtime"]["workers"].as_integer(), Some(2));
    assert_eq!(doc["pool"].as_array().unwrap().len(), 3);
    let r = srv.call(Method::PATCH, "/api/v1/config", &hp, Some(r#"{"bogus_section": {"x": 1}}"#)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json()["error"]["details"][0]["message"].as_str().unwrap().contains("bogus_section"));
    let audit = srv.get("/api/v1/audit?action=replace_config&limit=5", &h).await.json();
    assert_eq!(audit.as_array().unwrap().len(), 2);
    assert_eq!(audit[0]["author"], "admin");
    srv.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_400_naming_the_problem_never_a_panic() {
    let srv = Server::start().await;
    let s = srv.admin_session().await;
    let h = [("cookie", s.cookie.as_str()), ("x-csrf-token", s.csrf.as_str())];
    let cases: &[(Method, &str, Option<&str>, &str)] = &[
        (Method::PUT, "/api/v1/config", Some("{not json"), "malformed JSON"),
        (Method::PUT, "/api/v1/config", Some(r#"{"toml": 5}"#), "toml"),
        (Method::PUT, "/api/v1/config", Some(r#"{"toml": "", "surprise": 1}"#), "surprise"),
        (Method::PUT, "/api/v1/config", Some(""), "EOF"),
        (Method::PATCH, "/api/v1/config", Some("[1, 2]"), "JSON object"),
        (Method::PUT, "/api/v1/pools/web/backends/127.0.0.1:9001/weight", Some(r#"{"weight": -1}"#), "weight"),
        (Method::PUT, "/api/v1/pools/web/backends/127.0.0.1:9001/weight", Some(r#"{"weight": 9999}"#), "256"),
        (Method::POST, "/api/v1/nodes", Some(r#"{"id": 4, "address": "x:1", "role": "king"}"#), "role"),
        (Method::DELETE, "/api/v1/nodes/not-a-number", None, "invalid path"),
        (Method::GET, "/api/v1/audit?limit=lots", None, "invalid query"),
        (Method::POST, "/api/v1/session", Some(r#"{"username": "admin"}"#), "password"),
        (Method::POST, "/api/v1/users", Some(r#"{"username": "bad name!", "password": "longenough"}"#), "username"),
        (Method::POST, "/api/v1/users", Some(r#"{"username": "eve", "password": "short"}"#), "8 characters"),
        (Method::POST, "/api/v1/tokens", Some(r#"{"name": ""}"#), "token name"),
    ];
    for (m, path, body, needle) in cases {
        let r = srv.call(m.clone(), path, &h, *body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{m} {path} {body:?}: {}", r.body);
        assert_eq!(r.error_code(), "bad_request");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{m} {path}: message {msg:?} should name {needle:?}");
    }
    let r = srv.call(Method::PUT, "/api/v1/config", &[h[0], h[1], ("content-type", "text/plain")], Some("{}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("Content-Type"));
    // Unknown names are 404 with the same shape.
    for path in ["/api/v1/pools/nope", "/api/v1/pools/web/backends/10.9.9.9:1/drain"] {
        let m = if path.ends_with("drain") { Method::POST } else { Method::GET };
        let r = srv.call(m, path, &h, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.error_code(), "not_found");
    }
    // The last user cannot be deleted.
    let r = srv.call(Method::DELETE, "/api/v1/users/admin", &h, None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    srv.stop().await;
}

#[tokio::test]
async fn events_stream_sends_a_stats_event_every_interval() {
    let opts = AdminOptions { stats_interval: Duration::from_millis(100), ..Default::default() };
    let srv = Server::start_with(opts).await;
    let s = srv.admin_session().await;
    let mut stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let req = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nAccept: text/event-stream\r\n\r\n",
        srv.addr, s.cookie
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.matches("event: stats").count() < 3 && tokio::time::Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut stream, &mut buf))
            .await
            .expect("no SSE data within 5 s")
            .unwrap();
        assert!(n > 0, "stream closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.to_lowercase().contains("content-type: text/event-stream"), "{seen}");
    let datas: Vec<Value> =
        seen.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect();
    assert!(datas.len() >= 2, "{seen}");
    for d in &datas {
        let pools = d["pools"].as_array().unwrap();
        assert_eq!(pools.iter().map(|p| p["pool"].as_str().unwrap()).collect::<Vec<_>>(), ["web", "api"]);
        assert!(pools[0]["requests_per_sec"].is_f64() && pools[0]["p99_ms"].is_f64());
    }
    assert_ne!(datas[0]["time_ms"], Value::Null);
    srv.stop().await;
}

#[tokio::test]
async fn openapi_document_parses_and_lists_every_api_path() {
    let srv = Server::start().await;
    let s = srv.admin_session().await;
    let r = srv.get("/api/v1/openapi.json", &[("cookie", &s.cookie)]).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/audit",
            "/api/v1/certificates/reload",
            "/api/v1/cluster",
            "/api/v1/config",
            "/api/v1/config/validate",
            "/api/v1/events",
            "/api/v1/nodes",
            "/api/v1/nodes/{id}",
            "/api/v1/pools",
            "/api/v1/pools/{name}",
            "/api/v1/pools/{pool}/backends/{address}/disable",
            "/api/v1/pools/{pool}/backends/{address}/drain",
            "/api/v1/pools/{pool}/backends/{address}/enable",
            "/api/v1/pools/{pool}/backends/{address}/weight",
            "/api/v1/session",
            "/api/v1/tokens",
            "/api/v1/tokens/{id}",
            "/api/v1/users",
            "/api/v1/users/{username}",
        ]
    );
    let config = &doc["paths"]["/api/v1/config"];
    assert_eq!(methods_of(config), [Method::GET, Method::PUT, Method::PATCH]);
    for schema in ["ClusterView", "PoolStatus", "ErrorBody", "ConfigProblem", "StatsSnapshot"] {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "{schema} missing");
    }
    assert!(doc["components"]["securitySchemes"].get("bearer").is_some());
    // The document served equals the one the crate builds.
    assert_eq!(doc, serde_json::to_value(admin_web::openapi()).unwrap());
    srv.stop().await;
}

#[tokio::test]
async fn cluster_membership_and_certificate_reload_go_through_the_backend() {
    let srv = Server::start().await;
    let s = srv.admin_session().await;
    let h = [("cookie", s.cookie.as_str()), ("x-csrf-token", s.csrf.as_str())];
    let c = srv.get("/api/v1/cluster", &h).await.json();
    assert_eq!(c["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(c["vips"][0]["owner"], 1);
    let add = json!({"id": 4, "address": "127.0.0.4:7000", "role": "proxy"}).to_string();
    assert_eq!(srv.call(Method::POST, "/api/v1/nodes", &h, Some(&add)).await.status, StatusCode::NO_CONTENT);
    let r = srv.call(Method::POST, "/api/v1/nodes", &h, Some(&add)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(srv.get("/api/v1/cluster", &h).await.json()["nodes"].as_array().unwrap().len(), 4);
    assert_eq!(srv.call(Method::DELETE, "/api/v1/nodes/4", &h, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(srv.call(Method::DELETE, "/api/v1/nodes/4", &h, None).await.status, StatusCode::NOT_FOUND);
    let r = srv.call(Method::POST, "/api/v1/certificates/reload", &h, None).await;
    assert_eq!(r.json()["loaded"][0], "example.test");
    srv.stop().await;
}

/// Collects every log line of this test binary.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> LogSink {
    static SINK: OnceLock<LogSink> = OnceLock::new();
    SINK.get_or_init(|| {
        let sink = LogSink::default();
        let w = sink.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        sink
    })
    .clone()
}

#[tokio::test]
async fn no_password_token_or_hash_appears_in_any_response_or_log() {
    let logs = captured_logs();
    let srv = Server::start().await;
    let s = srv.admin_session().await;
    let h = [("cookie", s.cookie.as_str()), ("x-csrf-token", s.csrf.as_str())];
    let user_pw = "carols-secret-password-55";
    let r = srv
        .call(Method::POST, "/api/v1/users", &h, Some(&json!({"username": "carol", "password": user_pw}).to_string()))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let carol = srv.login("carol", user_pw).await;
    assert_eq!(carol.status, StatusCode::OK);
    assert_eq!(srv.login("carol", "wrong-wrong-wrong").await.status, StatusCode::UNAUTHORIZED);
    let token = srv.api_token(&s, "prometheus").await;
    let bearer = format!("Bearer {token}");
    for path in [
        "/api/v1/users",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/api/v1/cluster",
        "/api/v1/pools",
        "/api/v1/config",
        "/api/v1/session",
        "/api/v1/openapi.json",
        "/metrics",
    ] {
        assert_eq!(srv.get(path, &h).await.status, StatusCode::OK, "{path}");
        let _ = srv.get(path, &[("authorization", &bearer)]).await;
    }
    let r = srv
        .call(Method::POST, "/api/v1/users", &h, Some(&json!({"username": "dave", "password": "short"}).to_string()))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(srv.call(Method::DELETE, "/api/v1/users/carol", &h, None).await.status, StatusCode::NO_CONTENT);

    let mut secrets = vec![ADMIN_PASSWORD.to_string(), user_pw.to_string(), "short".to_string()];
    secrets.extend(srv.backend.stored_hashes());
    secrets.push(admin_web::auth::token::hash(&token));
    // The stored password hash of carol was deleted with her; it is in the audit? Check anyway via logs.
    let key = srv.backend.session_key_bytes();
    secrets.push(String::from_utf8_lossy(&key).into_owned());
    secrets.push(hex::encode(&key));
    assert!(secrets.len() >= 7);
    srv.assert_no_secret_in_bodies(&secrets);
    // The token appears exactly once: in the answer that created it.
    let bodies = srv.bodies.lock().unwrap().clone();
    assert_eq!(bodies.iter().filter(|b| b.contains(&token)).count(), 1);
    let log = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(log.contains("admin login"), "the logs were not captured: {log}");
    for secret in secrets.iter().chain([&token]) {
        if secret != "short" {
            assert!(!log.contains(secret.as_str()), "secret in logs: {log}");
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn responses_carry_security_headers_and_the_panel_is_embedded() {
    let srv = Server::start().await;
    let login = srv.get("/login", &[]).await;
    assert_eq!(login.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(login.header("content-security-policy").unwrap().contains("script-src 'self'"));
    assert!(login.body.contains("id=\"login-form\""));
    let s = srv.admin_session().await;
    let index = srv.get("/", &[("cookie", &s.cookie)]).await;
    assert!(index.header("content-type").unwrap().starts_with("text/html"));
    for name in admin_web::panel::asset_names() {
        let r = srv.get(&format!("/assets/{name}"), &[("cookie", &s.cookie)]).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert!(r.body.len() > 200, "{name} is nearly empty");
        assert!(index.body.contains(&format!("/assets/{name}")) || login.body.contains(&format!("/assets/{name}")));
    }
    // Nothing in the panel loads from elsewhere.
    for page in [&index.body, &login.body] {
        assert!(!page.contains("http://") && !page.contains("https://"), "external reference in the panel");
    }
    srv.stop().await;
}
