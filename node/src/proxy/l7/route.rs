//! Route matching: the first route whose every condition holds wins, in file
//! order; otherwise the listener's default pool.

use std::sync::Arc;

use http::{HeaderMap, Method, Uri};

use crate::config::{HostMatch, PathMatch, Route};
use crate::runtime::{ListenerRuntime, PoolRuntime};

/// The request's host without port, from the URI authority (HTTP/2) or `Host`.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let raw = match uri.authority() {
        Some(a) => a.as_str(),
        None => headers.get(http::header::HOST)?.to_str().ok()?,
    };
    Some(strip_port(raw))
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_once(']').map(|(a, _)| &h[..a.len() + 1]).unwrap_or(h);
    }
    h.rsplit_once(':').map(|(a, _)| a).unwrap_or(h)
}

fn host_matches(m: &HostMatch, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    match m {
        HostMatch::Exact(want) => host.eq_ignore_ascii_case(want),
        HostMatch::Suffix(suffix) => {
            host.len() > suffix.len()
                && host.get(host.len() - suffix.len()..).is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
    }
}

fn route_matches(r: &Route, method: &Method, uri: &Uri, headers: &HeaderMap, host: Option<&str>) -> bool {
    if let Some(h) = &r.host {
        if !host_matches(h, host) {
            return false;
        }
    }
    if let Some(m) = &r.method {
        if method != m {
            return false;
        }
    }
    if let Some(p) = &r.path {
        let path = uri.path();
        let ok = match p {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Regex(re) => re.is_match(path),
        };
        if !ok {
            return false;
        }
    }
    if let Some(h) = &r.header {
        let Some(v) = headers.get(&h.name) else { return false };
        if let Some(want) = &h.value {
            if v.as_bytes() != want.as_bytes() {
                return false;
            }
        }
    }
    true
}

pub fn select<'a>(
    l: &'a ListenerRuntime,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<&'a Arc<PoolRuntime>> {
    match select_index(l, method, uri, headers) {
        Some(i) => l.routes.get(i).map(|(_, p)| p),
        None => l.default_pool.as_ref(),
    }
}

/// Index of the first matching route; `None` = the default pool applies.
pub fn select_index(l: &ListenerRuntime, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<usize> {
    if l.routes.is_empty() {
        return None;
    }
    let host = request_host(uri, headers);
    l.routes.iter().position(|(r, _)| route_matches(r, method, uri, headers, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("example.com"), "example.com");
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let m = HostMatch::Suffix(".example.com".into());
        assert!(host_matches(&m, Some("a.example.com")));
        assert!(host_matches(&m, Some("A.B.Example.COM")));
        assert!(!host_matches(&m, Some("example.com")));
        assert!(!host_matches(&m, Some("badexample.com")));
    }
}
