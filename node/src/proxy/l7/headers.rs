//! Header rewriting between client and backend: hop-by-hop headers are removed
//! in both directions (RFC 9110 7.6.1), forwarding headers are added towards the
//! backend.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including any named in `Connection`. `Upgrade` is
/// removed too unless `keep_upgrade` (a WebSocket handshake being passed on).
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry few headers and at most `Connection` of these: one pass
    // over the names finds what to remove, instead of a hashed lookup per name.
    let is_hop = |n: &HeaderName| HOP_BY_HOP.contains(n) || (!keep_upgrade && n == header::UPGRADE);
    if h.keys().any(is_hop) {
        strip_listed(h, keep_upgrade, is_hop);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn strip_listed(h: &mut HeaderMap, keep_upgrade: bool, is_hop: impl Fn(&HeaderName) -> bool) {
    // Tokens named in Connection are hop-by-hop as well. The value is a cheap
    // clone (shared bytes) so the map can be edited while its tokens are walked;
    // `remove(&str)` looks a name up without allocating one.
    if let Some(conn) = h.get(header::CONNECTION).cloned() {
        for t in conn.to_str().unwrap_or("").split(',') {
            let t = t.trim();
            if t.is_empty() || is_fixed_hop_token(t) || (keep_upgrade && t.eq_ignore_ascii_case("upgrade")) {
                continue;
            }
            h.remove(t);
        }
    }
    // Each round removes one name, so this ends after at most one per header.
    while let Some(n) = h.keys().find(|n| is_hop(n)).cloned() {
        h.remove(&n);
    }
}

/// Tokens removed anyway (the fixed list and `Upgrade`) or naming no header
/// (`close`): no lookup needed.
fn is_fixed_hop_token(t: &str) -> bool {
    ["close", "keep-alive", "upgrade"].iter().any(|k| t.eq_ignore_ascii_case(k))
        || HOP_BY_HOP.iter().any(|n| t.eq_ignore_ascii_case(n.as_str()))
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Adds `X-Forwarded-For` (appended to any the client sent), `X-Forwarded-Proto`,
/// `X-Forwarded-Host` and `X-Real-IP`. `client_ip` is the connection's
/// [`client_ip_value`].
pub fn add_forwarding(h: &mut HeaderMap, client_ip: &HeaderValue, proto: &'static str, host: Option<HeaderValue>) {
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            let ip = client_ip.as_bytes();
            let mut buf = Vec::with_capacity(prev.len() + 2 + ip.len());
            buf.extend_from_slice(prev.as_bytes());
            buf.extend_from_slice(b", ");
            buf.extend_from_slice(ip);
            HeaderValue::from_maybe_shared(Bytes::from(buf)).ok()
        }
        _ => Some(client_ip.clone()),
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        h.insert(X_FORWARDED_HOST.clone(), host);
    }
    h.insert(X_REAL_IP.clone(), client_ip.clone());
}

thread_local! {
    /// The last client address formatted on this thread: requests come in runs
    /// from one client (keep-alive, one host behind many connections).
    static LAST_IP: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> = const { std::cell::RefCell::new(None) };
}

/// The client address as a header value (IPv4-mapped IPv6 shown as IPv4), for
/// `X-Forwarded-For` and `X-Real-IP`. Made per request, so a connection does not
/// keep it while idle; the last one is kept per thread.
pub fn client_ip_value(ip: IpAddr) -> HeaderValue {
    LAST_IP.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((seen, v)) if *seen == ip => v.clone(),
            _ => {
                let v = format_ip(ip);
                *last = Some((ip, v.clone()));
                v
            }
        }
    })
}

fn format_ip(ip: IpAddr) -> HeaderValue {
    let s = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    };
    // An address is always a valid header value; the fallback is never taken.
    let v = HeaderValue::from_maybe_shared(Bytes::from(s)).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    // Cloned per request: share the bytes now so every later clone is a count.
    let _ = v.clone();
    v
}

/// True for a WebSocket (or other) upgrade request on HTTP/1.1.
pub fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().unwrap_or("").split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_tokens_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none() && h.get("keep-alive").is_none() && h.get("te").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h.get("x-keep").unwrap(), "1");
    }

    #[test]
    fn upgrade_is_kept_for_a_handshake() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade, X-Secret , close"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        let mut dropped = h.clone();
        strip_hop_by_hop(&mut dropped, false);
        assert!(dropped.get(header::UPGRADE).is_none() && dropped.get(header::CONNECTION).is_none());
        strip_hop_by_hop(&mut h, true);
        assert!(h.get("x-secret").is_none());
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn mapped_ipv6_client_is_shown_as_ipv4() {
        assert_eq!(client_ip_value("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(client_ip_value("2001:db8::1".parse().unwrap()), "2001:db8::1");
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let ip = client_ip_value("127.0.0.2".parse().unwrap());
        add_forwarding(&mut h, &ip, "http", Some(HeaderValue::from_static("example.com")));
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 127.0.0.2");
        assert_eq!(h.get("x-real-ip").unwrap(), "127.0.0.2");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "example.com");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
    }
}
