//! Turns the raw TOML schema into a checked `Config`, collecting every problem with
//! the file, line and column it comes from. Checks are semantic (addresses, names,
//! references, ranges); syntax and unknown keys are reported by the TOML parser,
//! whose first error stops parsing.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawBackend, RawConfig, RawHealth, RawListener, RawPool, RawRoute};
use super::*;
use crate::balance::AdminState;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: String,
    /// 1-based; 0 when the problem has no place in the file.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.origin, self.line, self.column, self.message)
        }
    }
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn single(origin: &str, message: String) -> Self {
        ConfigErrors(vec![ConfigError { origin: origin.to_string(), line: 0, column: 0, message }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors against one source text.
pub(super) struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError { origin: self.origin.to_string(), line, column, message: message.into() });
    }

    pub(super) fn err<T>(&mut self, v: &Spanned<T>, message: impl Into<String>) {
        self.at(v.span(), message);
    }

    /// A duration in ms that must be at least `min`.
    pub(super) fn ms(&mut self, v: Option<&Spanned<u64>>, key: &str, default_ms: u64, min: u64) -> Duration {
        match v {
            Some(v) if *v.get_ref() < min => {
                self.err(v, format!("{key} must be at least {min}, got {}", v.get_ref()));
                Duration::from_millis(default_ms)
            }
            Some(v) => Duration::from_millis(*v.get_ref()),
            None => Duration::from_millis(default_ms),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before.get(line_start..).map(|s| s.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            let message = e.message().trim().to_string();
            return Err(ConfigErrors(vec![ConfigError { origin: origin.to_string(), line, column, message }]));
        }
    };
    let mut c = Checker { text, origin, errors: Vec::new() };
    let config = check(&mut c, raw);
    if c.errors.is_empty() {
        Ok(config)
    } else {
        c.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(c.errors))
    }
}

fn check(c: &mut Checker<'_>, raw: RawConfig) -> Config {
    let workers = match &raw.runtime.workers {
        Some(w) if !(0..=1024).contains(w.get_ref()) => {
            c.err(w, format!("workers must be between 0 (one per core) and 1024, got {}", w.get_ref()));
            0
        }
        Some(w) => *w.get_ref() as usize,
        None => 0,
    };
    let runtime = RuntimeSettings {
        workers,
        shutdown_grace: Duration::from_millis(raw.runtime.shutdown_grace_ms.unwrap_or(10_000)),
    };

    let mut pool_names = HashSet::new();
    let mut pools = Vec::new();
    for p in &raw.pool {
        if !pool_names.insert(p.name.get_ref().clone()) {
            c.err(&p.name, format!("duplicate pool name {:?}", p.name.get_ref()));
        }
        pools.push(check_pool(c, p));
    }

    let mut listener_names = HashSet::new();
    let mut binds: Vec<(SocketAddr, Protocol)> = Vec::new();
    let mut listeners = Vec::new();
    for l in &raw.listener {
        if !listener_names.insert(l.name.get_ref().clone()) {
            c.err(&l.name, format!("duplicate listener name {:?}", l.name.get_ref()));
        }
        if let Some(listener) = check_listener(c, l, &pool_names) {
            // TCP and UDP ports are separate spaces: a tcp and a udp listener may share one.
            let stream = listener.protocol.is_stream();
            if binds.iter().any(|(a, p)| *a == listener.bind && p.is_stream() == stream) {
                c.err(&l.bind, format!("address {} is already used by another listener", listener.bind));
            }
            binds.push((listener.bind, listener.protocol));
            listeners.push(listener);
        }
    }

    // A PROXY header describes one client connection; upstream HTTP connections
    // are pooled and shared between clients, so it would name the wrong client.
    // HTTP backends learn the client from X-Forwarded-For / X-Real-IP instead.
    for l in listeners.iter().filter(|l| matches!(l.protocol, Protocol::Http | Protocol::Https)) {
        let used: Vec<&String> = l.default_pool.iter().chain(l.routes.iter().map(|r| &r.pool)).collect();
        for rp in raw.pool.iter().filter(|p| used.contains(&p.name.get_ref())) {
            if let Some(sp) = &rp.send_proxy {
                c.err(
                    sp,
                    format!(
                        "send_proxy on pool {:?}, which HTTP listener {:?} uses: pooled HTTP upstream connections are shared between clients, so backends learn the client from X-Forwarded-For instead; use send_proxy with tcp listeners",
                        rp.name.get_ref(),
                        l.name
                    ),
                );
            }
        }
    }

    let node = raw.node.as_ref().and_then(|n| super::cluster::check_node(c, n));
    let cluster = raw.cluster.as_ref().map(|cl| super::cluster::check_cluster(c, cl, node.as_ref()));
    let vips = super::cluster::check_vips(c, &raw.vip);
    // A node whose file carries no listeners gets them from the cluster; its
    // overrides are checked when that config arrives.
    if let (Some(n), false) = (&raw.node, raw.listener.is_empty()) {
        for (name, a) in &n.bind {
            if !listener_names.contains(name) {
                c.err(a, format!("[node.bind] names listener {name:?}, which is not defined"));
            }
        }
    }
    let admin = super::l7::check_admin(c, raw.admin.as_ref(), raw.node.is_some());
    let access_log = super::l7::check_access_log(c, raw.access_log.as_ref());
    Config { runtime, listeners, pools, node, cluster, vips, admin, access_log }
}

fn check_name(c: &mut Checker<'_>, name: &Spanned<String>, what: &str) {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.');
    if !ok {
        c.err(name, format!("{what} name {n:?} must be 1-64 characters of a-z, A-Z, 0-9, '-', '_' or '.'"));
    }
}

fn check_listener(c: &mut Checker<'_>, l: &RawListener, pools: &HashSet<String>) -> Option<Listener> {
    check_name(c, &l.name, "listener");
    let bind = match l.bind.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.err(
                &l.bind,
                format!(
                    "bad bind address {:?}: expected IP:port, e.g. \"0.0.0.0:80\" or \"[::]:443\"",
                    l.bind.get_ref()
                ),
            );
            None
        }
    };
    let protocol = match l.protocol.get_ref().as_str() {
        "http" => Some(Protocol::Http),
        "https" => Some(Protocol::Https),
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        other => {
            c.err(&l.protocol, format!("unknown protocol {other:?}: expected \"http\", \"https\", \"tcp\" or \"udp\""));
            None
        }
    };
    if let Some(dp) = &l.default_pool {
        if !pools.contains(dp.get_ref()) {
            c.err(dp, format!("default_pool {:?} is not a defined pool", dp.get_ref()));
        }
    }
    if l.default_pool.is_none() && l.route.is_empty() && l.redirect_https != Some(true) {
        c.err(&l.name, format!("listener {:?} has neither a default_pool nor any route", l.name.get_ref()));
    }
    let client_header_timeout = c.ms(l.client_header_timeout_ms.as_ref(), "client_header_timeout_ms", 10_000, 1);
    let idle_timeout = c.ms(l.idle_timeout_ms.as_ref(), "idle_timeout_ms", 300_000, 1);
    let maxconn = l.maxconn.as_ref().map(|m| *m.get_ref()).unwrap_or(0);
    let maxconn_per_source = l.maxconn_per_source.as_ref().map(|m| *m.get_ref()).unwrap_or(0);
    let accept_proxy = l.accept_proxy.as_ref().is_some_and(|a| *a.get_ref());
    let udp_idle_timeout = c.ms(l.udp_idle_timeout_ms.as_ref(), "udp_idle_timeout_ms", 30_000, 1);
    let udp_max_flows = match &l.udp_max_flows {
        Some(m) if !(1..=1_000_000).contains(m.get_ref()) => {
            c.err(m, format!("udp_max_flows must be between 1 and 1000000, got {}", m.get_ref()));
            16_384
        }
        Some(m) => *m.get_ref() as usize,
        None => 16_384,
    };
    check_l4_keys(c, l, protocol);
    let routes = l.route.iter().filter_map(|r| check_route(c, r, pools)).collect();
    let http = super::l7::check_listener_http(c, l, protocol);
    Some(Listener {
        name: l.name.get_ref().clone(),
        bind: bind?,
        protocol: protocol?,
        default_pool: l.default_pool.as_ref().map(|p| p.get_ref().clone()),
        client_header_timeout,
        idle_timeout,
        maxconn,
        maxconn_per_source,
        accept_proxy,
        udp_idle_timeout,
        udp_max_flows,
        routes,
        http,
    })
}

/// Keys that only make sense for some protocols: an operator who sets one where it
/// does nothing gets told, rather than a silently ignored setting.
fn check_l4_keys(c: &mut Checker<'_>, l: &RawListener, protocol: Option<Protocol>) {
    let Some(protocol) = protocol else { return };
    if !matches!(protocol, Protocol::Http | Protocol::Https) {
        let name = protocol.as_str();
        if let Some(r) = l.route.first() {
            c.err(&r.pool, format!("routes apply to http listeners only; a {name} listener uses default_pool"));
        } else if l.default_pool.is_none() {
            return; // "neither a default_pool nor any route" is already reported
        }
        if l.default_pool.is_none() {
            c.err(&l.name, format!("a {name} listener needs a default_pool"));
        }
    }
    if protocol == Protocol::Udp {
        let conn_keys = [
            ("maxconn", l.maxconn.as_ref().map(|v| v.span())),
            ("maxconn_per_source", l.maxconn_per_source.as_ref().map(|v| v.span())),
        ];
        for (key, span) in conn_keys {
            if let Some(span) = span {
                c.at(span, format!("{key} applies to connections; a udp listener is bounded by udp_max_flows"));
            }
        }
        if let Some(a) = &l.accept_proxy {
            c.err(a, "accept_proxy is not supported on udp listeners");
        }
    } else {
        let udp_keys = [
            ("udp_idle_timeout_ms", l.udp_idle_timeout_ms.as_ref().map(|v| v.span())),
            ("udp_max_flows", l.udp_max_flows.as_ref().map(|v| v.span())),
        ];
        for (key, span) in udp_keys {
            if let Some(span) = span {
                c.at(span, format!("{key} applies to udp listeners only"));
            }
        }
    }
}

fn check_route(c: &mut Checker<'_>, r: &RawRoute, pools: &HashSet<String>) -> Option<Route> {
    let mut ok = true;
    if !pools.contains(r.pool.get_ref()) {
        c.err(&r.pool, format!("route to undefined pool {:?}", r.pool.get_ref()));
        ok = false;
    }
    let host = r.host.as_ref().and_then(|h| {
        let v = h.get_ref().to_ascii_lowercase();
        let (m, name) = match v.strip_prefix("*.") {
            Some(rest) => (HostMatch::Suffix(format!(".{rest}")), rest.to_string()),
            None => (HostMatch::Exact(v.clone()), v.clone()),
        };
        let valid = !name.is_empty()
            && name
                .split('.')
                .all(|label| !label.is_empty() && label.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-'));
        if !valid {
            c.err(
                h,
                format!("bad host {:?}: expected a name like \"api.example.com\" or \"*.example.com\"", h.get_ref()),
            );
            ok = false;
            return None;
        }
        Some(m)
    });
    let path_keys = [&r.path_prefix, &r.path_exact, &r.path_regex].iter().filter(|p| p.is_some()).count();
    if path_keys > 1 {
        c.err(&r.pool, "a route may use only one of path_prefix, path_exact and path_regex");
        ok = false;
    }
    let mut path = None;
    for (v, kind) in [(&r.path_prefix, 0), (&r.path_exact, 1)] {
        if let Some(p) = v {
            if !p.get_ref().starts_with('/') {
                c.err(p, format!("path {:?} must start with '/'", p.get_ref()));
                ok = false;
            }
            let s = p.get_ref().clone();
            path = Some(if kind == 0 { PathMatch::Prefix(s) } else { PathMatch::Exact(s) });
        }
    }
    if let Some(p) = &r.path_regex {
        match regex::Regex::new(p.get_ref()) {
            Ok(re) => path = Some(PathMatch::Regex(re)),
            Err(e) => {
                let first = e.to_string().lines().last().unwrap_or("invalid").trim().to_string();
                c.err(p, format!("unparsable path_regex {:?}: {first}", p.get_ref()));
                ok = false;
            }
        }
    }
    let method = r.method.as_ref().and_then(|m| {
        let upper = m.get_ref().to_ascii_uppercase();
        match http::Method::from_bytes(upper.as_bytes()) {
            Ok(method) => Some(method),
            Err(_) => {
                c.err(m, format!("bad method {:?}", m.get_ref()));
                ok = false;
                None
            }
        }
    });
    let header = r.header.as_ref().and_then(|h| match http::HeaderName::from_bytes(h.name.get_ref().as_bytes()) {
        Ok(name) => Some(HeaderMatch { name, value: h.value.clone() }),
        Err(_) => {
            c.err(&h.name, format!("bad header name {:?}", h.name.get_ref()));
            ok = false;
            None
        }
    });
    let limits = super::l7::check_route_limits(c, r);
    ok.then(|| Route { host, path, method, header, pool: r.pool.get_ref().clone(), limits })
}

fn check_pool(c: &mut Checker<'_>, p: &RawPool) -> Pool {
    check_name(c, &p.name, "pool");
    let algorithm = match &p.algorithm {
        None => Algorithm::RoundRobin,
        Some(a) => Algorithm::parse(a.get_ref()).unwrap_or_else(|| {
            c.err(a, format!("unknown algorithm {:?}: expected one of {}", a.get_ref(), Algorithm::NAMES.join(", ")));
            Algorithm::RoundRobin
        }),
    };
    let hash_key = match &p.hash_key {
        None => HashKey::SourceIp,
        Some(k) => parse_hash_key(k.get_ref()).unwrap_or_else(|| {
            c.err(
                k,
                format!(
                    "bad hash_key {:?}: expected \"source_ip\", \"uri\", \"header:NAME\" or \"cookie:NAME\"",
                    k.get_ref()
                ),
            );
            HashKey::SourceIp
        }),
    };
    let connect_timeout = c.ms(p.connect_timeout_ms.as_ref(), "connect_timeout_ms", 5_000, 1);
    let response_timeout = c.ms(p.response_timeout_ms.as_ref(), "response_timeout_ms", 60_000, 1);
    let retries = match &p.retries {
        Some(r) if *r.get_ref() > 10 => {
            c.err(r, format!("retries must be at most 10, got {}", r.get_ref()));
            1
        }
        Some(r) => *r.get_ref(),
        None => 1,
    };
    let send_proxy = p.send_proxy.as_ref().and_then(|v| match v.get_ref().as_str() {
        "v1" => Some(ProxyVersion::V1),
        "v2" => Some(ProxyVersion::V2),
        other => {
            c.err(v, format!("unknown send_proxy {other:?}: expected \"v1\" or \"v2\""));
            None
        }
    });
    let health = p.health.as_ref().map(|h| check_health(c, h));
    let passive = p.passive.as_ref().map(|ps| PassiveCheck {
        max_fails: ps.max_fails.unwrap_or(1),
        fail_timeout: c.ms(ps.fail_timeout_ms.as_ref(), "fail_timeout_ms", 10_000, 1),
    });
    if p.backend.is_empty() {
        c.err(&p.name, format!("pool {:?} has no backends", p.name.get_ref()));
    }
    let mut seen = HashSet::new();
    let mut backends = Vec::new();
    for b in &p.backend {
        if let Some(backend) = check_backend(c, b) {
            if !seen.insert(backend.address) {
                c.err(&b.address, format!("duplicate backend {} in pool {:?}", backend.address, p.name.get_ref()));
            }
            backends.push(backend);
        }
    }
    Pool {
        name: p.name.get_ref().clone(),
        algorithm,
        hash_key,
        connect_timeout,
        response_timeout,
        keepalive: p.keepalive.unwrap_or(64) as usize,
        keepalive_timeout: Duration::from_millis(p.keepalive_timeout_ms.unwrap_or(60_000)),
        retries,
        send_proxy,
        health,
        passive,
        backends,
        tls: super::l7::check_pool_tls(c, p),
        sticky: super::l7::check_sticky(c, p),
    }
}

fn parse_hash_key(s: &str) -> Option<HashKey> {
    match s {
        "source_ip" => Some(HashKey::SourceIp),
        "uri" => Some(HashKey::Uri),
        _ => {
            if let Some(name) = s.strip_prefix("header:") {
                http::HeaderName::from_bytes(name.as_bytes()).ok().map(HashKey::Header)
            } else if let Some(name) = s.strip_prefix("cookie:") {
                (!name.is_empty()).then(|| HashKey::Cookie(name.to_string()))
            } else {
                None
            }
        }
    }
}

fn check_health(c: &mut Checker<'_>, h: &RawHealth) -> HealthCheck {
    let interval = c.ms(h.interval_ms.as_ref(), "interval_ms", 2_000, 10);
    let timeout = c.ms(h.timeout_ms.as_ref(), "timeout_ms", 1_000, 1);
    if let (Some(t), true) = (&h.timeout_ms, timeout > interval) {
        c.err(t, "timeout_ms must not be longer than interval_ms");
    }
    let count = |c: &mut Checker<'_>, v: &Option<Spanned<u32>>, key: &str, default: u32| match v {
        Some(v) if *v.get_ref() == 0 => {
            c.err(v, format!("{key} must be at least 1"));
            default
        }
        Some(v) => *v.get_ref(),
        None => default,
    };
    let rise = count(c, &h.rise, "rise", 2);
    let fall = count(c, &h.fall, "fall", 3);
    let kind = match h.kind.get_ref().as_str() {
        "tcp" => HealthKind::Tcp,
        "http" => {
            let path = h.path.as_ref().map(|p| p.get_ref().clone()).unwrap_or_else(|| "/".to_string());
            if let Some(p) = &h.path {
                if !p.get_ref().starts_with('/') {
                    c.err(p, format!("health path {:?} must start with '/'", p.get_ref()));
                }
            }
            let expect = match &h.expect_status {
                None => (200, 399),
                Some(e) => parse_status_range(e.get_ref()).unwrap_or_else(|| {
                    c.err(
                        e,
                        format!(
                            "bad expect_status {:?}: expected a code like \"200\" or a range like \"200-399\"",
                            e.get_ref()
                        ),
                    );
                    (200, 399)
                }),
            };
            HealthKind::Http { path, host: h.host.clone(), expect }
        }
        other => {
            c.err(&h.kind, format!("unknown health check kind {other:?}: expected \"http\" or \"tcp\""));
            HealthKind::Tcp
        }
    };
    HealthCheck { kind, interval, timeout, rise, fall }
}

fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let v = s.trim().parse().ok()?;
            (v, v)
        }
    };
    ((100..=599).contains(&lo) && (100..=599).contains(&hi) && lo <= hi).then_some((lo, hi))
}

fn check_backend(c: &mut Checker<'_>, b: &RawBackend) -> Option<BackendConfig> {
    let address = match b.address.get_ref().parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            c.err(&b.address, format!("bad address {:?}: port 0 is not a backend port", b.address.get_ref()));
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            c.err(
                &b.address,
                format!("bad address {:?}: expected IP:port, e.g. \"10.0.0.5:8080\"", b.address.get_ref()),
            );
            None
        }
    };
    let weight = match &b.weight {
        Some(w) if !(1..=1000).contains(w.get_ref()) => {
            c.err(
                w,
                format!(
                    "weight must be between 1 and 1000, got {} (to stop traffic use state = \"disabled\" or drain)",
                    w.get_ref()
                ),
            );
            1
        }
        Some(w) => *w.get_ref() as u32,
        None => 1,
    };
    let state = match &b.state {
        None => AdminState::Enabled,
        Some(s) => match s.get_ref().as_str() {
            "enabled" => AdminState::Enabled,
            "draining" | "drain" => AdminState::Draining,
            "disabled" => AdminState::Disabled,
            other => {
                c.err(
                    s,
                    format!("unknown backend state {other:?}: expected \"enabled\", \"draining\" or \"disabled\""),
                );
                AdminState::Enabled
            }
        },
    };
    Some(BackendConfig { address: address?, weight, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:18080"
protocol = "http"
default_pool = "web"
  [[listener.route]]
  host = "*.example.com"
  path_prefix = "/api"
  method = "get"
  header = { name = "x-canary", value = "1" }
  pool = "api"

[[pool]]
name = "web"
algorithm = "weighted_round_robin"
  [pool.health]
  kind = "http"
  path = "/healthz"
  expect_status = "200-299"
  [[pool.backend]]
  address = "127.0.0.1:19001"
  weight = 3

[[pool]]
name = "api"
hash_key = "header:x-user"
algorithm = "consistent_hash"
  [[pool.backend]]
  address = "[::1]:19002"
"#;

    #[test]
    fn good_file_parses_with_defaults() {
        let c = Config::parse(GOOD, "good.toml").unwrap();
        assert_eq!(c.listeners.len(), 1);
        let r = &c.listeners[0].routes[0];
        assert_eq!(r.host, Some(HostMatch::Suffix(".example.com".into())));
        assert_eq!(r.method, Some(http::Method::GET));
        let web = c.pool("web").unwrap();
        assert_eq!(web.backends[0].weight, 3);
        assert_eq!(web.connect_timeout, Duration::from_secs(5));
        assert_eq!(web.health.as_ref().unwrap().rise, 2);
        assert_eq!(c.pool("api").unwrap().hash_key, HashKey::Header(http::HeaderName::from_static("x-user")));
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let text = GOOD.replace("  weight = 3", "  weight = 3\n  wieght = 4");
        let e = Config::parse(&text, "f.toml").unwrap_err();
        assert_eq!(e.0.len(), 1);
        let line = text.lines().position(|l| l.contains("wieght")).unwrap() + 1;
        assert_eq!(e.0[0].line, line, "{e}");
        assert!(e.0[0].message.contains("wieght"), "{e}");
    }

    #[test]
    fn every_semantic_problem_is_listed_with_place() {
        let text = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:99999"
protocol = "http"
default_pool = "nope"
  [[listener.route]]
  path_regex = "(["
  pool = "missing"

[[pool]]
name = "a"
  [[pool.backend]]
  address = "localhost"
  weight = 0
[[pool]]
name = "a"
  [[pool.backend]]
  address = "127.0.0.1:1"
"#;
        let e = Config::parse(text, "bad.toml").unwrap_err();
        let s = e.to_string();
        for (needle, line) in [
            ("bad bind address", 4),
            ("default_pool \"nope\"", 6),
            ("unparsable path_regex", 8),
            ("undefined pool \"missing\"", 9),
            ("bad address \"localhost\"", 14),
            ("weight must be between", 15),
            ("duplicate pool name", 17),
        ] {
            let hit = e.0.iter().find(|x| x.message.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {s}"));
            assert_eq!(hit.line, line, "{needle}: {s}");
            assert!(hit.to_string().starts_with(&format!("bad.toml:{line}:")), "{s}");
        }
    }

    #[test]
    fn syntax_error_names_the_place() {
        let e = Config::parse("[[listener]\nname = 1", "x.toml").unwrap_err();
        assert_eq!(e.0[0].line, 1);
    }

    const L4: &str = r#"
[[listener]]
name = "db"
bind = "127.0.0.1:15432"
protocol = "tcp"
default_pool = "db"
maxconn = 100
maxconn_per_source = 10
accept_proxy = true

[[listener]]
name = "dns"
bind = "127.0.0.1:15432"
protocol = "udp"
default_pool = "db"
udp_idle_timeout_ms = 2000
udp_max_flows = 50

[[pool]]
name = "db"
algorithm = "ip_hash"
send_proxy = "v2"
  [[pool.backend]]
  address = "127.0.0.1:5432"
"#;

    #[test]
    fn tcp_and_udp_listeners_parse_with_their_keys() {
        let c = Config::parse(L4, "l4.toml").unwrap();
        let db = &c.listeners[0];
        assert_eq!(db.protocol, Protocol::Tcp);
        assert_eq!((db.maxconn, db.maxconn_per_source, db.accept_proxy), (100, 10, true));
        let dns = &c.listeners[1];
        assert_eq!(dns.protocol, Protocol::Udp);
        assert_eq!(dns.udp_idle_timeout, Duration::from_secs(2));
        assert_eq!(dns.udp_max_flows, 50);
        assert!(!dns.accept_proxy);
        assert_eq!(c.pool("db").unwrap().send_proxy, Some(ProxyVersion::V2));
    }

    #[test]
    fn l4_defaults() {
        let text = L4.replace("maxconn_per_source = 10\n", "").replace("udp_max_flows = 50\n", "");
        let c = Config::parse(&text, "l4.toml").unwrap();
        assert_eq!(c.listeners[0].maxconn_per_source, 0);
        assert_eq!(c.listeners[1].udp_max_flows, 16_384);
        let http = Config::parse(GOOD, "good.toml").unwrap();
        assert_eq!(http.pool("web").unwrap().send_proxy, None);
        assert!(!http.listeners[0].accept_proxy);
    }

    #[test]
    fn idle_park_defaults_to_100_ms_can_be_turned_off_and_is_refused_on_https() {
        let c = Config::parse(GOOD, "good.toml").unwrap();
        assert_eq!(c.listeners[0].http.idle_park, Some(Duration::from_millis(100)));
        let off = GOOD.replacen("default_pool = \"web\"", "default_pool = \"web\"\nidle_park_ms = 0", 1);
        assert_eq!(Config::parse(&off, "f.toml").unwrap().listeners[0].http.idle_park, None);
        let tls = GOOD.replacen("protocol = \"http\"", "protocol = \"https\"\nidle_park_ms = 50", 1);
        let e = Config::parse(&tls, "f.toml").unwrap_err();
        let line = tls.lines().position(|l| l.contains("idle_park_ms")).unwrap() + 1;
        let hit =
            e.0.iter().find(|d| d.message.contains("idle_park_ms applies to plain http")).expect("idle_park_ms error");
        assert_eq!(hit.line, line, "{e}");
    }

    #[test]
    fn send_proxy_on_a_pool_behind_an_http_listener_is_refused() {
        let text = GOOD.replace("algorithm = \"weighted_round_robin\"", "send_proxy = \"v1\"");
        let e = Config::parse(&text, "f.toml").unwrap_err().to_string();
        assert!(e.contains("send_proxy on pool \"web\", which HTTP listener \"web\" uses"), "{e}");
    }

    #[test]
    fn l4_misuse_is_reported_with_place() {
        let text = r#"
[[listener]]
name = "t"
bind = "127.0.0.1:1000"
protocol = "tcp"
udp_max_flows = 5
  [[listener.route]]
  pool = "p"

[[listener]]
name = "u"
bind = "127.0.0.1:1001"
protocol = "udp"
default_pool = "p"
maxconn_per_source = 3
accept_proxy = true
udp_max_flows = 0

[[listener]]
name = "h"
bind = "127.0.0.1:1001"
protocol = "sctp"
default_pool = "p"

[[listener]]
name = "t2"
bind = "127.0.0.1:1001"
protocol = "tcp"
default_pool = "p"

[[listener]]
name = "u2"
bind = "127.0.0.1:1001"
protocol = "udp"
default_pool = "p"

[[pool]]
name = "p"
send_proxy = "v3"
  [[pool.backend]]
  address = "127.0.0.1:1"
"#;
        let e = Config::parse(text, "bad.toml").unwrap_err();
        let s = e.to_string();
        for (needle, line) in [
            ("udp_max_flows applies to udp listeners only", 6),
            ("routes apply to http listeners only", 8),
            ("maxconn_per_source applies to connections", 15),
            ("accept_proxy is not supported on udp", 16),
            ("udp_max_flows must be between", 17),
            ("unknown protocol \"sctp\"", 22),
            ("unknown send_proxy \"v3\"", 39),
        ] {
            let hit = e.0.iter().find(|x| x.message.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {s}"));
            assert_eq!(hit.line, line, "{needle}: {s}");
        }
        // The tcp listener t2 shares udp listener u's address: allowed. The second
        // udp listener on it is not.
        let dup: Vec<_> = e.0.iter().filter(|x| x.message.contains("already used")).collect();
        assert_eq!(dup.len(), 1, "{s}");
        assert_eq!(dup[0].line, 33, "{s}");
        let no_pool = e.0.iter().find(|x| x.message.contains("a tcp listener needs a default_pool"));
        assert_eq!(no_pool.map(|x| x.line), Some(3), "{s}");
    }

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("200-399"), Some((200, 399)));
        assert_eq!(parse_status_range("204"), Some((204, 204)));
        assert_eq!(parse_status_range("399-200"), None);
        assert_eq!(parse_status_range("abc"), None);
    }
}
