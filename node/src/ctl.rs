//! `quorumlb ctl`: the operator's command line over the admin REST API (the same
//! API the web panel uses, so every change is a validated, audited Raft write).
//! Authenticates with an API token (`--token-file` or `QUORUMLB_TOKEN`) or with a
//! user and password file (session login; writes then carry the CSRF token).
//! Speaks http, or https to an admin listener with `[admin] tls`, trusting only the
//! CA given with `--ca-file` (the node's certificate is usually from a private CA).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct CtlArgs {
    /// Admin API address (a node's `[admin] listen`): `host:port`, `http://host:port`
    /// or `https://host:port` (with `--ca-file`).
    #[arg(long, visible_alias = "admin", env = "QUORUMLB_URL", default_value = "127.0.0.1:9090")]
    pub url: String,
    /// PEM file of the CA that signed the admin listener's certificate (https only).
    #[arg(long, env = "QUORUMLB_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// File holding an API token (see `ctl token create`).
    #[arg(long, env = "QUORUMLB_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Log in as this user instead of using a token.
    #[arg(long)]
    pub user: Option<String>,
    /// File holding the user's password.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// `table` for people, `json` (the API's own answer) for scripts.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(clap::Subcommand)]
pub enum CtlCommand {
    /// Nodes, leader, term, config version, VIP owners.
    Status,
    /// Pools and their backends (health, admin state, weight, load, latency).
    Pools {
        /// Only this pool.
        name: Option<String>,
    },
    /// Who changed what and when (the replicated audit trail).
    Audit,
    #[command(subcommand)]
    Config(ConfigCmd),
    #[command(subcommand)]
    Node(NodeCmd),
    #[command(subcommand)]
    Backend(BackendCmd),
    #[command(subcommand)]
    User(UserCmd),
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(clap::Subcommand)]
pub enum ConfigCmd {
    /// Print the cluster config (TOML) and its version.
    Get,
    /// Check a cluster config file with the cluster's validator.
    Validate { file: PathBuf },
    /// Replace the cluster config with a file (validated first; 422 lists problems).
    Apply {
        file: PathBuf,
        #[arg(long)]
        comment: Option<String>,
        /// Apply only if the cluster is still at this config version (what
        /// `config get` showed); otherwise fail with 409 and change nothing.
        #[arg(long)]
        base_version: Option<u64>,
    },
}

#[derive(clap::Subcommand)]
pub enum NodeCmd {
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    Add {
        #[arg(long)]
        id: u64,
        /// `host:port` of its cluster listener.
        #[arg(long)]
        address: String,
        #[arg(long, default_value = "proxy")]
        role: String,
    },
    /// Remove a node from the cluster.
    Remove {
        #[arg(long)]
        id: u64,
    },
}

#[derive(clap::Subcommand)]
pub enum BackendCmd {
    Drain { pool: String, address: String },
    Enable { pool: String, address: String },
    Disable { pool: String, address: String },
    Weight { pool: String, address: String, weight: u32 },
}

#[derive(clap::Subcommand)]
pub enum UserCmd {
    List,
    Add {
        username: String,
        #[arg(long)]
        password_file: PathBuf,
    },
    Remove {
        username: String,
    },
}

#[derive(clap::Subcommand)]
pub enum TokenCmd {
    List,
    /// Create an API token; it is printed once and cannot be shown again.
    Create {
        name: String,
    },
    Revoke {
        id: String,
    },
}

struct Api {
    base: String,
    transport: Transport,
    auth: Auth,
}

/// How requests reach the admin listener.
enum Transport {
    Plain(Box<Client<HttpConnector, Full<Bytes>>>),
    /// One TLS connection per call (ctl makes a handful of calls).
    Tls {
        connector: tokio_rustls::TlsConnector,
        name: ServerName<'static>,
        addr: String,
    },
}

impl Transport {
    /// Plain http for `http://`, TLS trusting only `ca_file` for `https://`.
    fn new(base: &str, ca_file: Option<&PathBuf>) -> anyhow::Result<Transport> {
        if base.starts_with("http://") {
            if ca_file.is_some() {
                bail!("--ca-file is for https; {base} is plain http");
            }
            return Ok(Transport::Plain(Box::new(Client::builder(TokioExecutor::new()).build_http())));
        }
        let Some(rest) = base.strip_prefix("https://") else {
            bail!("--admin must be host:port, http://host:port or https://host:port (got {base:?})");
        };
        let ca_file = ca_file.with_context(|| {
            format!("{base} is https: give --ca-file with the CA that signed the admin listener's certificate")
        })?;
        let authority = rest.split('/').next().unwrap_or_default();
        let uri: http::Uri = format!("https://{authority}").parse().with_context(|| format!("bad --admin {base:?}"))?;
        let host = uri.host().context("--admin has no host")?.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).with_context(|| format!("bad host name {host:?}"))?;
        let addr = format!("{}:{}", uri.host().unwrap_or(host), uri.port_u16().unwrap_or(443));
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::tls::read_certificates(ca_file)? {
            roots.add(cert).with_context(|| format!("{}: not a usable CA certificate", ca_file.display()))?;
        }
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Transport::Tls { connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)), name, addr })
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        match self {
            Transport::Plain(client) => Ok(client.request(req).await?),
            Transport::Tls { connector, name, addr } => {
                // A connection of our own: origin-form target plus Host, as a client pool would send.
                let (mut parts, body) = req.into_parts();
                if let Some(authority) = parts.uri.authority() {
                    parts.headers.insert(header::HOST, authority.as_str().parse()?);
                }
                parts.uri = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").parse()?;
                let req = Request::from_parts(parts, body);
                let tcp = tokio::net::TcpStream::connect(addr.as_str()).await?;
                let tls = connector.connect(name.clone(), tcp).await.context("TLS handshake")?;
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "admin connection");
                    }
                });
                Ok(sender.send_request(req).await?)
            }
        }
    }
}

enum Auth {
    Bearer(String),
    Session { cookie: String, csrf: String },
}

fn read_secret(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))?;
    Ok(s.trim().to_string())
}

impl Api {
    async fn connect(args: &CtlArgs) -> anyhow::Result<Api> {
        let trimmed = args.url.trim_end_matches('/');
        let base = if trimmed.contains("://") { trimmed.to_string() } else { format!("http://{trimmed}") };
        let transport = Transport::new(&base, args.ca_file.as_ref())?;
        let auth = if let Some(user) = &args.user {
            let pf = args.password_file.as_ref().context("--user needs --password-file")?;
            let password = read_secret(pf, "password file")?;
            let body = json!({ "username": user, "password": password }).to_string();
            let req = Request::post(format!("{base}/api/v1/session"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))?;
            let resp = transport.send(req).await.with_context(|| format!("connecting to {base}"))?;
            let status = resp.status();
            let cookie = resp
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| v.split(';').next())
                .collect::<Vec<_>>()
                .join("; ");
            let body: Value =
                serde_json::from_slice(&resp.into_body().collect().await?.to_bytes()).unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("login failed ({status}): {}", error_message(&body));
            }
            let csrf = body["csrf_token"].as_str().unwrap_or_default().to_string();
            Auth::Session { cookie, csrf }
        } else {
            let token = match &args.token_file {
                Some(f) => read_secret(f, "token file")?,
                None => std::env::var("QUORUMLB_TOKEN")
                    .context("no credentials: use --token-file, QUORUMLB_TOKEN, or --user with --password-file")?,
            };
            Auth::Bearer(token)
        };
        Ok(Api { base, transport, auth })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut b = Request::builder().method(method.clone()).uri(format!("{}{path}", self.base));
        match &self.auth {
            Auth::Bearer(t) => b = b.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Auth::Session { cookie, csrf } => {
                b = b.header(header::COOKIE, cookie.as_str());
                if method != Method::GET {
                    b = b.header("x-csrf-token", csrf.as_str());
                }
            }
        }
        let payload = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let resp = self.transport.send(b.body(Full::new(payload))?).await.with_context(|| format!("calling {path}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        if !status.is_success() {
            bail!("{method} {path}: {status}: {}", error_message(&v));
        }
        Ok(v)
    }
}

/// `{"error": {"code", "message", "details"}}`, with validator details one per line.
fn error_message(v: &Value) -> String {
    let e = &v["error"];
    let mut msg = e["message"].as_str().unwrap_or("no details").to_string();
    if let Some(details) = e["details"].as_array() {
        for d in details {
            match (d["line"].as_u64(), d["message"].as_str()) {
                (Some(line), Some(m)) => msg.push_str(&format!("\n  line {line}, column {}: {m}", d["column"])),
                _ => msg.push_str(&format!("\n  {d}")),
            }
        }
    }
    msg
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn show(out: Output, v: &Value, render: impl Fn(&Value) -> String) {
    match out {
        Output::Json => print(v),
        Output::Table => print!("{}", render(v)),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let api = Api::connect(&args).await?;
    let out = args.output;
    match &args.command {
        CtlCommand::Status => show(out, &api.call(Method::GET, "/api/v1/cluster", None).await?, table::status),
        CtlCommand::Pools { name: None } => {
            show(out, &api.call(Method::GET, "/api/v1/pools", None).await?, table::pools)
        }
        CtlCommand::Pools { name: Some(name) } => {
            let pool = api.call(Method::GET, &format!("/api/v1/pools/{}", enc(name)), None).await?;
            show(out, &pool, |p| table::pools(&Value::Array(vec![p.clone()])))
        }
        CtlCommand::Audit => show(out, &api.call(Method::GET, "/api/v1/audit", None).await?, table::audit),
        CtlCommand::Config(ConfigCmd::Get) => {
            let v = api.call(Method::GET, "/api/v1/config", None).await?;
            println!("# version {}", v["version"]);
            println!("{}", v["toml"].as_str().unwrap_or_default());
        }
        CtlCommand::Config(ConfigCmd::Validate { file }) => {
            let toml = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let v = api.call(Method::POST, "/api/v1/config/validate", Some(json!({ "toml": toml }))).await?;
            if v["valid"].as_bool() != Some(true) {
                let report = json!({ "error": { "message": format!("{} is not valid", file.display()), "details": v["errors"] } });
                bail!("{}", error_message(&report));
            }
            println!("OK");
        }
        CtlCommand::Config(ConfigCmd::Apply { file, comment, base_version }) => {
            let toml = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let body = json!({ "toml": toml, "comment": comment, "base_version": base_version });
            print(&api.call(Method::PUT, "/api/v1/config", Some(body)).await?);
        }
        CtlCommand::Node(NodeCmd::Add { id, address, role }) => {
            let body = json!({ "id": id, "address": address, "role": role });
            api.call(Method::POST, "/api/v1/nodes", Some(body)).await?;
            println!("node {id} added");
        }
        CtlCommand::Node(NodeCmd::Remove { id }) => {
            api.call(Method::DELETE, &format!("/api/v1/nodes/{id}"), None).await?;
            println!("node {id} removed");
        }
        CtlCommand::Backend(cmd) => {
            let (pool, address, action, body) = match cmd {
                BackendCmd::Drain { pool, address } => (pool, address, "drain", None),
                BackendCmd::Enable { pool, address } => (pool, address, "enable", None),
                BackendCmd::Disable { pool, address } => (pool, address, "disable", None),
                BackendCmd::Weight { pool, address, weight } => {
                    (pool, address, "weight", Some(json!({ "weight": weight })))
                }
            };
            let path = format!("/api/v1/pools/{}/backends/{}/{action}", enc(pool), enc(address));
            let method = if action == "weight" { Method::PUT } else { Method::POST };
            print(&api.call(method, &path, body).await?);
        }
        CtlCommand::User(UserCmd::List) => {
            show(out, &api.call(Method::GET, "/api/v1/users", None).await?, table::users)
        }
        CtlCommand::User(UserCmd::Add { username, password_file }) => {
            let password = read_secret(password_file, "password file")?;
            let body = json!({ "username": username, "password": password });
            api.call(Method::POST, "/api/v1/users", Some(body)).await?;
            println!("user {username} saved");
        }
        CtlCommand::User(UserCmd::Remove { username }) => {
            api.call(Method::DELETE, &format!("/api/v1/users/{}", enc(username)), None).await?;
            println!("user {username} removed");
        }
        CtlCommand::Token(TokenCmd::List) => {
            show(out, &api.call(Method::GET, "/api/v1/tokens", None).await?, table::tokens)
        }
        CtlCommand::Token(TokenCmd::Create { name }) => {
            let v = api.call(Method::POST, "/api/v1/tokens", Some(json!({ "name": name }))).await?;
            println!("{}", v["token"].as_str().unwrap_or_default());
            eprintln!("token id {} created; store it now, it cannot be shown again", v["id"]);
        }
        CtlCommand::Token(TokenCmd::Revoke { id }) => {
            api.call(Method::DELETE, &format!("/api/v1/tokens/{}", enc(id)), None).await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

/// Plain-text tables for `--output table`: columns padded to their widest cell.
mod table {
    use serde_json::Value;

    fn cell(v: &Value) -> String {
        match v {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => format!("{f:.2}"),
                _ => n.to_string(),
            },
            Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
            Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
            Value::Object(_) => v.to_string(),
        }
    }

    pub(super) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for r in rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            padded.join("  ").trim_end().to_string() + "\n"
        };
        let mut s = line(headers.iter().map(|h| h.to_string()).collect());
        for r in rows {
            s.push_str(&line(r.clone()));
        }
        s
    }

    fn rows(list: &Value, fields: &[&dyn Fn(&Value) -> String]) -> Vec<Vec<String>> {
        list.as_array()
            .map(|a| a.iter().map(|item| fields.iter().map(|f| f(item)).collect()).collect())
            .unwrap_or_default()
    }

    pub(super) fn status(v: &Value) -> String {
        let mut s = format!(
            "node {}  leader {}  term {}  commit {}  config version {}\n\n",
            cell(&v["node_id"]),
            cell(&v["leader"]),
            cell(&v["term"]),
            cell(&v["commit_index"]),
            cell(&v["config_version"])
        );
        let nodes = rows(
            &v["nodes"],
            &[
                &|n| cell(&n["id"]),
                &|n| cell(&n["name"]),
                &|n| cell(&n["role"]),
                &|n| cell(&n["raft_state"]),
                &|n| cell(&n["voter"]),
                &|n| cell(&n["address"]),
                &|n| cell(&n["last_contact_ms"]),
            ],
        );
        s.push_str(&render(&["ID", "NAME", "ROLE", "STATE", "VOTER", "ADDRESS", "LAST CONTACT MS"], &nodes));
        if v["vips"].as_array().is_some_and(|a| !a.is_empty()) {
            let vips = rows(
                &v["vips"],
                &[
                    &|x| cell(&x["address"]),
                    &|x| cell(&x["owner"]),
                    &|x| cell(&x["epoch"]),
                    &|x| cell(&x["lease_ms"]),
                    &|x| cell(&x["lease_remaining_ms"]),
                ],
            );
            s.push('\n');
            s.push_str(&render(&["VIP", "OWNER", "EPOCH", "LEASE MS", "LEASE LEFT MS"], &vips));
        }
        s
    }

    pub(super) fn pools(v: &Value) -> String {
        let mut out = Vec::new();
        for p in v.as_array().into_iter().flatten() {
            for b in p["backends"].as_array().into_iter().flatten() {
                out.push(vec![
                    cell(&p["name"]),
                    cell(&b["address"]),
                    cell(&b["health"]),
                    cell(&b["admin_state"]),
                    cell(&b["weight"]),
                    cell(&b["active_connections"]),
                    cell(&b["requests_per_sec"]),
                    cell(&b["error_rate"]),
                    cell(&b["latency"]["p50_ms"]),
                    cell(&b["latency"]["p99_ms"]),
                ]);
            }
        }
        render(
            &["POOL", "BACKEND", "HEALTH", "ADMIN", "WEIGHT", "ACTIVE", "REQ/S", "ERR RATE", "P50 MS", "P99 MS"],
            &out,
        )
    }

    pub(super) fn audit(v: &Value) -> String {
        let r = rows(
            v,
            &[
                &|a| cell(&a["log_index"]),
                &|a| time(&a["time_ms"]),
                &|a| cell(&a["author"]),
                &|a| cell(&a["action"]),
                &|a| cell(&a["summary"]),
            ],
        );
        render(&["INDEX", "TIME (UTC)", "AUTHOR", "ACTION", "SUMMARY"], &r)
    }

    pub(super) fn users(v: &Value) -> String {
        render(&["USER", "UPDATED (UTC)"], &rows(v, &[&|u| cell(&u["username"]), &|u| time(&u["updated_ms"])]))
    }

    pub(super) fn tokens(v: &Value) -> String {
        let r = rows(
            v,
            &[&|t| cell(&t["id"]), &|t| cell(&t["name"]), &|t| cell(&t["author"]), &|t| time(&t["created_ms"])],
        );
        render(&["ID", "NAME", "CREATED BY", "CREATED (UTC)"], &r)
    }

    /// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS`.
    fn time(v: &Value) -> String {
        let Some(ms) = v.as_u64() else { return cell(v) };
        let secs = ms / 1000;
        let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::json;

        #[test]
        fn times_render_as_utc_dates() {
            assert_eq!(time(&json!(0)), "1970-01-01 00:00:00");
            assert_eq!(time(&json!(1_795_435_200_000u64)), "2026-11-23 12:00:00");
            assert_eq!(time(&json!(951_782_400_000u64)), "2000-02-29 00:00:00");
        }

        #[test]
        fn status_table_lists_nodes_and_vips() {
            let v = json!({"node_id": 1, "leader": 2, "term": 3, "commit_index": 40, "config_version": 5,
                "nodes": [{"id": 1, "name": "lb1", "role": "proxy", "raft_state": "follower", "voter": true,
                           "address": "10.0.0.1:7000", "last_contact_ms": null}],
                "vips": [{"address": "10.0.0.100", "owner": 2, "epoch": 9, "lease_ms": 1000, "lease_remaining_ms": 640}]});
            let t = status(&v);
            assert!(t.starts_with("node 1  leader 2  term 3  commit 40  config version 5"), "{t}");
            let lines: Vec<&str> = t.lines().collect();
            assert!(
                lines.iter().any(|l| l.starts_with("1   lb1   proxy") && l.contains("follower") && l.contains("yes")),
                "{t}"
            );
            assert!(lines.iter().any(|l| l.starts_with("10.0.0.100  2      9") && l.ends_with("640")), "{t}");
        }
    }
}
