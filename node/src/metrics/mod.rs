//! Metrics of the data plane (prometheus-client) and their text exposition, the
//! small admin HTTP server that serves `/metrics` and `/healthz` (`server`), and
//! the access log (`access_log`). Label handles are resolved once per config
//! snapshot (`TargetMetrics`, `ListenerMetrics`), so a request only bumps atomics
//! and never builds a label set. Values owned elsewhere (backend health, in-flight
//! counts, L4 listener counters) are copied in by hooks at scrape time.

pub mod access_log;
pub mod latency;
pub mod server;

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The label value used where a request reached no pool or no backend.
pub const NONE: &str = "none";

/// Content type of `render`'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: String,
    pool: String,
    backend: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerPoolLabels {
    listener: String,
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub pool: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub listener: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~33 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// Status classes, indexed by `status / 100 - 1`; anything else counts as "other".
const CODES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

type Hook = Box<dyn Fn(&Metrics) + Send + Sync>;

/// Every metric family of a node.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistFamily<ListenerPoolLabels>,
    upstream_duration: HistFamily<BackendLabels>,
    connections_active: Family<ListenerLabels, Gauge>,
    connections: Family<ListenerLabels, Counter>,
    bytes_received: Family<ListenerLabels, Counter>,
    bytes_sent: Family<ListenerLabels, Counter>,
    rate_limited: Family<ListenerLabels, Counter>,
    tls_failures: Family<ListenerLabels, Counter>,
    /// Refused connections and requests by reason (maxconn, body_too_large, ...).
    pub refused: Family<RefusedLabels, Counter>,
    retries: Family<PoolLabels, Counter>,
    /// 1 = up (healthy, not ejected, enabled), 0 = down; set at scrape time.
    pub backend_up: Family<BackendLabels, Gauge>,
    /// Requests in flight per backend; set at scrape time.
    pub backend_in_flight: Family<BackendLabels, Gauge>,
    pub access_log_dropped: Counter,
    pub sticky_updates_dropped: Counter,
    hooks: Mutex<Vec<Hook>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::build()
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::build())
    }

    fn build() -> Self {
        let mut registry = Registry::with_prefix("quorumlb");
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            upstream_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            connections_active: Family::default(),
            connections: Family::default(),
            bytes_received: Family::default(),
            bytes_sent: Family::default(),
            rate_limited: Family::default(),
            tls_failures: Family::default(),
            refused: Family::default(),
            retries: Family::default(),
            backend_up: Family::default(),
            backend_in_flight: Family::default(),
            access_log_dropped: Counter::default(),
            sticky_updates_dropped: Counter::default(),
            hooks: Mutex::new(Vec::new()),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by listener, pool, backend and status class",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request received to response body sent",
            m.request_duration.clone(),
        );
        registry.register(
            "upstream_response_duration_seconds",
            "Time from request sent to a backend to its response headers",
            m.upstream_duration.clone(),
        );
        registry.register("connections_active", "Client connections open now", m.connections_active.clone());
        registry.register("connections", "Client connections accepted", m.connections.clone());
        registry.register("http_received_bytes", "Request body bytes received from clients", m.bytes_received.clone());
        registry.register("http_sent_bytes", "Response body bytes sent to clients", m.bytes_sent.clone());
        registry.register("http_rate_limited", "Requests answered 429 by a rate limit", m.rate_limited.clone());
        registry.register("tls_handshake_failures", "TLS handshakes that failed or timed out", m.tls_failures.clone());
        registry.register("refused", "Connections or requests refused by a limit, by reason", m.refused.clone());
        registry.register("upstream_retries", "Requests retried on another backend", m.retries.clone());
        registry.register("backend_up", "Backend available for new requests (1) or not (0)", m.backend_up.clone());
        registry.register("backend_in_flight", "Requests in flight per backend", m.backend_in_flight.clone());
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        registry.register(
            "sticky_updates_dropped",
            "Sticky mappings not queued for replication (queue full)",
            m.sticky_updates_dropped.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Registers a function run before every scrape to copy in values kept
    /// elsewhere (health state, gauges of other modules).
    pub fn add_hook(&self, hook: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(hook));
    }

    /// The OpenMetrics text exposition (`CONTENT_TYPE`). The admin panel mounts
    /// this same function.
    pub fn render(&self) -> String {
        {
            let hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
            for h in hooks.iter() {
                h(self);
            }
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Handles for requests of `listener` answered by `backend` of `pool` (or
    /// locally: pool and backend `NONE`).
    pub fn target(&self, listener: &str, pool: &str, backend: &str) -> Arc<TargetMetrics> {
        let codes = CODES.map(|code| {
            self.requests
                .get_or_create(&RequestLabels {
                    listener: listener.into(),
                    pool: pool.into(),
                    backend: backend.into(),
                    code,
                })
                .clone()
        });
        let duration = self
            .request_duration
            .get_or_create(&ListenerPoolLabels { listener: listener.into(), pool: pool.into() })
            .clone();
        let upstream = (backend != NONE).then(|| {
            self.upstream_duration.get_or_create(&BackendLabels { pool: pool.into(), backend: backend.into() }).clone()
        });
        Arc::new(TargetMetrics { codes, duration, upstream })
    }

    pub fn listener(&self, listener: &str) -> Arc<ListenerMetrics> {
        let l = ListenerLabels { listener: listener.into() };
        let refused = |reason| self.refused.get_or_create(&RefusedLabels { listener: listener.into(), reason }).clone();
        Arc::new(ListenerMetrics {
            active: self.connections_active.get_or_create(&l).clone(),
            connections: self.connections.get_or_create(&l).clone(),
            bytes_in: self.bytes_received.get_or_create(&l).clone(),
            bytes_out: self.bytes_sent.get_or_create(&l).clone(),
            rate_limited: self.rate_limited.get_or_create(&l).clone(),
            tls_failures: self.tls_failures.get_or_create(&l).clone(),
            body_too_large: refused("body_too_large"),
            local: self.target(listener, NONE, NONE),
        })
    }

    pub fn retries(&self, pool: &str) -> Counter {
        self.retries.get_or_create(&PoolLabels { pool: pool.into() }).clone()
    }
}

/// Per (listener, pool, backend) handles.
pub struct TargetMetrics {
    codes: [Counter; 6],
    duration: Histogram,
    upstream: Option<Histogram>,
}

impl TargetMetrics {
    /// Counts one answered request.
    pub fn request(&self, status: u16, total_s: f64) {
        let i = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.codes[i].inc();
        self.duration.observe(total_s);
    }

    pub fn upstream_time(&self, seconds: f64) {
        if let Some(h) = &self.upstream {
            h.observe(seconds);
        }
    }
}

/// Per-listener handles.
pub struct ListenerMetrics {
    pub active: Gauge,
    pub connections: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub rate_limited: Counter,
    pub tls_failures: Counter,
    pub body_too_large: Counter,
    /// Requests answered by the proxy itself (404, 429, 413, 308, 502...).
    pub local: Arc<TargetMetrics>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_state_with_the_registry() {
        let m = Metrics::new();
        let t = m.target("web", "app", "b1");
        t.request(200, 0.01);
        t.request(503, 0.02);
        m.target("web", "app", "b1").request(204, 0.01);
        let text = m.render();
        assert!(
            text.contains(r#"quorumlb_http_requests_total{listener="web",pool="app",backend="b1",code="2xx"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"code="5xx"} 1"#), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
