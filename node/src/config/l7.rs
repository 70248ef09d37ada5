//! The L7 edge settings: TLS certificates and upstream TLS, sticky sessions, rate
//! limits, request size limits, the admin address and the access log. Typed values
//! and their checks; files named here (certificates, keys, secrets) are read by the
//! data plane when a config is applied, so a broken file can keep the previous one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawAccessLog, RawAdmin, RawListener, RawPool, RawRateLimit, RawRoute};
use super::validate::Checker;
use super::{Protocol, Route};

/// HTTP(S)-only settings of a listener.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// PEM files of an https listener; the first pair is the default certificate.
    pub certificates: Vec<CertificateFiles>,
    /// `Some(port)`: answer every request with 308 to `https://host[:port]/...`.
    pub redirect_https: Option<u16>,
    pub rate_limit: Option<RateLimit>,
    /// Largest request head in bytes (HTTP/1 read buffer; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Largest request body for routes that do not set their own; 0 = no limit.
    pub max_body_bytes: u64,
    /// Plain http: idle keep-alive connections move out of their tasks into the
    /// listener's idle lot after this long (`None` = never).
    pub idle_park: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// What a rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    SourceIp,
    Header(http::HeaderName),
}

/// A token bucket: `requests_per_second` sustained, `burst` at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
    pub key: RateKey,
}

/// Per-route overrides.
#[derive(Debug, Clone, Default)]
pub struct RouteLimits {
    pub rate_limit: Option<RateLimit>,
    /// Overrides the listener's `max_body_bytes`; 0 = no limit.
    pub max_body_bytes: Option<u64>,
}

/// `[pool.tls]`: TLS towards the backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Check the backend's certificate against `ca_file` and `sni`.
    pub verify: bool,
    pub ca_file: Option<PathBuf>,
    /// Server name sent (and verified); defaults to the backend's IP address.
    pub sni: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyMode {
    /// A signed cookie names the backend.
    Cookie,
    /// A stick table keyed by the client IP.
    SourceIp,
    /// A stick table keyed by a request header.
    Header,
}

/// `[pool.sticky]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    pub mode: StickyMode,
    /// Cookie name (cookie mode) or header name (header mode).
    pub name: String,
    pub ttl: Duration,
    /// Cookie signing key file (cookie mode).
    pub secret_file: Option<PathBuf>,
    /// Stick table size bound (source_ip and header modes).
    pub max_entries: usize,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where `/metrics` and `/healthz` are served; `None` = not served.
    pub listen: Option<SocketAddr>,
    /// Cluster mode: the password of user `admin`, set when this node creates the
    /// cluster. Never logged.
    pub bootstrap_password_file: Option<PathBuf>,
    /// A node-local API token (never replicated, never logged); checked to exist
    /// and to have the token shape when the config is validated.
    pub token_file: Option<PathBuf>,
    /// `tls = { cert_file, key_file }`: serve https (cluster nodes only).
    pub tls: Option<CertificateFiles>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Text,
    Json,
}

/// `[access_log]`: present = one line per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    pub format: AccessLogFormat,
    /// `None` = stdout.
    pub path: Option<PathBuf>,
    pub buffer: usize,
}

/// Checks `[admin]`; `cluster_node` says whether the file has a `[node]` (only a
/// cluster node serves the admin API, and with it https).
pub(super) fn check_admin(c: &mut Checker<'_>, a: Option<&RawAdmin>, cluster_node: bool) -> AdminSettings {
    let listen = a.and_then(|a| a.listen.as_ref()).and_then(|l| match l.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            c.err(l, format!("bad admin listen address {:?}: expected IP:port, e.g. \"127.0.0.1:9090\"", l.get_ref()));
            None
        }
    });
    let bootstrap_password_file =
        a.and_then(|a| a.bootstrap_password_file.as_deref()).filter(|p| !p.is_empty()).map(PathBuf::from);
    let token_file =
        a.and_then(|a| a.token_file.as_ref()).and_then(|f| match read_token_file(Path::new(f.get_ref())) {
            Ok(_) if !cluster_node => {
                c.err(f, "[admin] token_file applies to a cluster node's admin API (it needs [node])");
                None
            }
            Ok(_) => Some(PathBuf::from(f.get_ref())),
            Err(e) => {
                c.err(f, e);
                None
            }
        });
    let tls = a.and_then(|a| a.tls.as_ref()).and_then(|t| {
        let mut ok = true;
        for f in [&t.cert_file, &t.key_file] {
            if f.get_ref().is_empty() {
                c.err(f, "certificate file path must not be empty");
                ok = false;
            }
        }
        if ok && listen.is_none() {
            c.err(&t.cert_file, "[admin] tls needs [admin] listen");
            ok = false;
        }
        if ok && !cluster_node {
            c.err(
                &t.cert_file,
                "[admin] tls applies to a cluster node's admin API; without [node] the admin listener \
                 only serves /metrics and /healthz over plain http",
            );
            ok = false;
        }
        ok.then(|| CertificateFiles {
            cert_file: PathBuf::from(t.cert_file.get_ref()),
            key_file: PathBuf::from(t.key_file.get_ref()),
        })
    });
    AdminSettings { listen, bootstrap_password_file, token_file, tls }
}

/// Reads `[admin] token_file`: one token of the shape `quorumlb gen-token` prints.
/// The error names the file but never quotes its content.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read token_file {}: {e}", path.display()))?;
    let token = text.trim();
    if admin_web::auth::token::id_of(token).is_none() || token.len() < 40 {
        return Err(format!(
            "token_file {} does not hold a token of the form qlb_<12 hex>_<secret>; make one with `quorumlb gen-token`",
            path.display()
        ));
    }
    Ok(token.to_string())
}

pub(super) fn check_access_log(c: &mut Checker<'_>, a: Option<&RawAccessLog>) -> Option<AccessLogSettings> {
    let a = a?;
    let format = match a.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "text")) => AccessLogFormat::Text,
        Some((_, "json")) => AccessLogFormat::Json,
        Some((f, other)) => {
            c.err(f, format!("unknown access_log format {other:?}: expected \"text\" or \"json\""));
            AccessLogFormat::Text
        }
    };
    let path = a.path.as_deref().filter(|p| !p.is_empty() && *p != "-").map(PathBuf::from);
    let buffer = match &a.buffer {
        Some(b) if !(1..=1_000_000).contains(b.get_ref()) => {
            c.err(b, format!("access_log buffer must be between 1 and 1000000 lines, got {}", b.get_ref()));
            8192
        }
        Some(b) => *b.get_ref() as usize,
        None => 8192,
    };
    Some(AccessLogSettings { format, path, buffer })
}

fn check_rate_limit(c: &mut Checker<'_>, r: &RawRateLimit) -> Option<RateLimit> {
    let rps = *r.requests_per_second.get_ref();
    if rps == 0 {
        c.err(&r.requests_per_second, "requests_per_second must be at least 1");
        return None;
    }
    let burst = match &r.burst {
        Some(b) if *b.get_ref() == 0 => {
            c.err(b, "burst must be at least 1");
            return None;
        }
        Some(b) => *b.get_ref(),
        None => rps,
    };
    let key = match r.key.as_ref().map(|k| (k, k.get_ref().as_str())) {
        None | Some((_, "source_ip")) => RateKey::SourceIp,
        Some((k, s)) => match s.strip_prefix("header:").map(|n| http::HeaderName::from_bytes(n.as_bytes())) {
            Some(Ok(name)) => RateKey::Header(name),
            _ => {
                c.err(k, format!("bad rate_limit key {s:?}: expected \"source_ip\" or \"header:NAME\""));
                return None;
            }
        },
    };
    Some(RateLimit { requests_per_second: rps, burst, key })
}

fn size(c: &mut Checker<'_>, v: Option<&Spanned<u64>>, key: &str, default: u64, range: (u64, u64)) -> u64 {
    match v {
        Some(v) if !(range.0..=range.1).contains(v.get_ref()) => {
            c.err(v, format!("{key} must be between {} and {}, got {}", range.0, range.1, v.get_ref()));
            default
        }
        Some(v) => *v.get_ref(),
        None => default,
    }
}

/// Checks the HTTP keys of a listener. `protocol` is `None` when it was invalid.
/// The default `idle_park_ms`: long against the gaps inside a burst of requests,
/// short against the time a client leaves a keep-alive connection unused. A
/// request after a longer gap costs the move back (about five system calls).
pub const DEFAULT_IDLE_PARK_MS: u64 = 100;

pub(super) fn check_listener_http(c: &mut Checker<'_>, l: &RawListener, protocol: Option<Protocol>) -> HttpSettings {
    let is_http = matches!(protocol, Some(Protocol::Http | Protocol::Https));
    let certificates: Vec<CertificateFiles> = l
        .certificate
        .iter()
        .filter_map(|cert| {
            let mut ok = true;
            for f in [&cert.cert_file, &cert.key_file] {
                if f.get_ref().is_empty() {
                    c.err(f, "certificate file path must not be empty");
                    ok = false;
                }
            }
            ok.then(|| CertificateFiles {
                cert_file: PathBuf::from(cert.cert_file.get_ref()),
                key_file: PathBuf::from(cert.key_file.get_ref()),
            })
        })
        .collect();
    match protocol {
        Some(Protocol::Https) if l.certificate.is_empty() => {
            c.err(&l.protocol, "an https listener needs at least one [[listener.certificate]]");
        }
        Some(p) if p != Protocol::Https && !l.certificate.is_empty() => {
            c.err(&l.certificate[0].cert_file, "certificates apply to https listeners only");
        }
        _ => {}
    }
    let redirect_https = match (l.redirect_https, protocol) {
        (Some(true), Some(Protocol::Http)) => Some(l.redirect_https_port.as_ref().map(|p| *p.get_ref()).unwrap_or(443)),
        (Some(true), Some(_)) => {
            c.err(&l.protocol, "redirect_https applies to http listeners only");
            None
        }
        _ => None,
    };
    let rate_limit = l.rate_limit.as_ref().and_then(|r| check_rate_limit(c, r));
    if !is_http && protocol.is_some() {
        let keys = [
            ("rate_limit", l.rate_limit.as_ref().map(|r| r.requests_per_second.span())),
            ("max_header_bytes", l.max_header_bytes.as_ref().map(|v| v.span())),
            ("max_headers", l.max_headers.as_ref().map(|v| v.span())),
            ("max_body_bytes", l.max_body_bytes.as_ref().map(|v| v.span())),
        ];
        for (key, span) in keys {
            if let Some(span) = span {
                c.at(span, format!("{key} applies to http and https listeners only"));
            }
        }
    }
    // hyper refuses read buffers under 8 KiB.
    let max_header_bytes = size(c, l.max_header_bytes.as_ref(), "max_header_bytes", 65_536, (8_192, 1 << 20)) as usize;
    let max_headers = size(c, l.max_headers.as_ref(), "max_headers", 100, (1, 10_000)) as usize;
    let max_body_bytes = size(c, l.max_body_bytes.as_ref(), "max_body_bytes", 0, (0, u64::MAX));
    let idle_park = match (&l.idle_park_ms, protocol) {
        (Some(v), Some(p)) if p != Protocol::Http => {
            c.err(
                v,
                "idle_park_ms applies to plain http listeners only (TLS and HTTP/2 connections stay in their tasks)",
            );
            None
        }
        (Some(v), _) if *v.get_ref() == 0 => None,
        (Some(v), _) => Some(Duration::from_millis(*v.get_ref())),
        (None, _) => Some(Duration::from_millis(DEFAULT_IDLE_PARK_MS)),
    };
    HttpSettings { certificates, redirect_https, rate_limit, max_header_bytes, max_headers, max_body_bytes, idle_park }
}

pub(super) fn check_route_limits(c: &mut Checker<'_>, r: &RawRoute) -> RouteLimits {
    RouteLimits {
        rate_limit: r.rate_limit.as_ref().and_then(|rl| check_rate_limit(c, rl)),
        max_body_bytes: r.max_body_bytes.as_ref().map(|v| *v.get_ref()),
    }
}

/// A route's effective body limit (0 = none).
pub fn route_body_limit(listener: &HttpSettings, route: Option<&Route>) -> u64 {
    route.and_then(|r| r.limits.max_body_bytes).unwrap_or(listener.max_body_bytes)
}

pub(super) fn check_pool_tls(c: &mut Checker<'_>, p: &RawPool) -> Option<UpstreamTls> {
    let t = p.tls.as_ref()?;
    let verify = t.verify.unwrap_or(true);
    if verify && t.ca_file.is_none() {
        c.err(&p.name, "[pool.tls] verify = true needs ca_file (or set verify = false)");
    }
    let sni = t.sni.as_ref().and_then(|s| match rustls_pki_types::ServerName::try_from(s.get_ref().as_str()) {
        Ok(_) => Some(s.get_ref().clone()),
        Err(_) => {
            c.err(s, format!("bad sni {:?}: expected a DNS name or IP address", s.get_ref()));
            None
        }
    });
    Some(UpstreamTls { verify, ca_file: t.ca_file.as_ref().map(|f| PathBuf::from(f.get_ref())), sni })
}

pub(super) fn check_sticky(c: &mut Checker<'_>, p: &RawPool) -> Option<StickyConfig> {
    let s = p.sticky.as_ref()?;
    let mode = match s.mode.get_ref().as_str() {
        "cookie" => StickyMode::Cookie,
        "source_ip" => StickyMode::SourceIp,
        "header" => StickyMode::Header,
        other => {
            c.err(&s.mode, format!("unknown sticky mode {other:?}: expected \"cookie\", \"source_ip\" or \"header\""));
            return None;
        }
    };
    let name = match (&s.name, mode) {
        (Some(n), _) => {
            let v = n.get_ref();
            let ok = match mode {
                StickyMode::Header => http::HeaderName::from_bytes(v.as_bytes()).is_ok(),
                _ => !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            };
            if !ok {
                c.err(n, format!("bad sticky name {v:?}"));
            }
            v.clone()
        }
        (None, StickyMode::Header) => {
            c.err(&s.mode, "sticky mode \"header\" needs name = \"HEADER-NAME\"");
            String::new()
        }
        (None, _) => "QLBSRV".to_string(),
    };
    let ttl_s = size(c, s.ttl_s.as_ref(), "ttl_s", 3_600, (1, 366 * 86_400));
    if mode == StickyMode::Cookie && s.secret_file.is_none() {
        c.err(&s.mode, "sticky mode \"cookie\" needs secret_file (the cookie signing key, 16 bytes or more)");
    }
    let max_entries = size(c, s.max_entries.as_ref(), "max_entries", 100_000, (16, 100_000_000)) as usize;
    Some(StickyConfig {
        mode,
        name,
        ttl: Duration::from_secs(ttl_s),
        secret_file: s.secret_file.as_ref().map(|f| PathBuf::from(f.get_ref())),
        max_entries,
    })
}
