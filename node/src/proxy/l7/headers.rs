//! Header rewriting between client and backend: hop-by-hop headers are removed
//! in both directions (RFC 9110 7.6.1), forwarding headers are added towards the
//! backend.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// What a header field is to the proxy, from its name alone (no map, no
/// allocation: the few names that matter are told apart by length first).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum FieldKind {
    Connection,
    ContentLength,
    TransferEncoding,
    Date,
    /// Any other hop-by-hop field (RFC 9110 7.6.1), `Upgrade` included.
    Hop,
    Other,
}

impl FieldKind {
    /// Never passed on as it is (`Upgrade` only with a handshake).
    pub fn is_hop(self) -> bool {
        matches!(self, FieldKind::Connection | FieldKind::TransferEncoding | FieldKind::Hop)
    }
}

/// The kind of the field named `name`, in any case.
pub fn classify(name: &str) -> FieldKind {
    // `k` is lower case letters and '-': a byte equals its letter in either case
    // exactly when it ORed with 0x20 does; '-' only matches '-' or CR, which no
    // name or value holds. Branch-free per byte, unlike `eq_ignore_ascii_case`.
    let is = |k: &str| name.bytes().zip(k.bytes()).fold(0, |d, (a, b)| d | ((a | 0x20) ^ b)) == 0;
    match name.len() {
        2 if is("te") => FieldKind::Hop,
        4 if is("date") => FieldKind::Date,
        7 if is("trailer") || is("upgrade") => FieldKind::Hop,
        10 if is("connection") => FieldKind::Connection,
        10 if is("keep-alive") => FieldKind::Hop,
        14 if is("content-length") => FieldKind::ContentLength,
        16 if is("proxy-connection") => FieldKind::Hop,
        17 if is("transfer-encoding") => FieldKind::TransferEncoding,
        18 if is("proxy-authenticate") => FieldKind::Hop,
        19 if is("proxy-authorization") => FieldKind::Hop,
        _ => FieldKind::Other,
    }
}

/// A `Connection` token that names no other field to remove: empty, `close`, or
/// a field removed anyway.
pub fn names_no_other_field(t: &str) -> bool {
    t.is_empty() || t.eq_ignore_ascii_case("close") || classify(t).is_hop()
}

/// Removes hop-by-hop headers, including any named in `Connection`. `Upgrade` is
/// removed too unless `keep_upgrade` (a WebSocket handshake being passed on).
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry few headers and at most `Connection` of these: one pass
    // over the names finds what to remove, instead of a hashed lookup per name.
    let is_hop = |n: &HeaderName| classify(n.as_str()).is_hop() && !(keep_upgrade && n == header::UPGRADE);
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
            if names_no_other_field(t) || (keep_upgrade && t.eq_ignore_ascii_case("upgrade")) {
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

/// One `name: value` header line.
pub fn write_line(out: &mut bytes::BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The forwarding fields a request gets on its way to the backend:
/// `X-Forwarded-For` (the client's own list, if any, with the client's address
/// appended), `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Real-IP`.
pub struct Forwarding {
    xff: HeaderValue,
    proto: &'static str,
    host: Option<HeaderValue>,
    real_ip: HeaderValue,
}

static FORWARDING: [&HeaderName; 4] = [&X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST, &X_REAL_IP];

impl Forwarding {
    /// Takes the client's own forwarding fields out of `h` (they are replaced;
    /// its `X-Forwarded-For` list is kept in front of the client's address).
    /// `client_ip` is the connection's [`client_ip_value`].
    pub fn take(h: &mut HeaderMap, client_ip: &HeaderValue, proto: &'static str, host: Option<HeaderValue>) -> Self {
        let mut xff = client_ip.clone();
        // One pass over the names instead of a hashed lookup for each of the four:
        // most requests carry none of them.
        if h.keys().any(|n| FORWARDING.contains(&n)) {
            let prev: Vec<&[u8]> = h
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes().trim_ascii())
                .filter(|v| !v.is_empty())
                .collect();
            if !prev.is_empty() {
                let ip = client_ip.as_bytes();
                let mut buf = Vec::with_capacity(prev.iter().map(|v| v.len() + 2).sum::<usize>() + ip.len());
                for v in prev {
                    buf.extend_from_slice(v);
                    buf.extend_from_slice(b", ");
                }
                buf.extend_from_slice(ip);
                // Parts of valid values joined by ", ": valid as well.
                if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(buf)) {
                    xff = v;
                }
            }
            for n in FORWARDING {
                h.remove(n);
            }
        }
        Forwarding { xff, proto, host, real_ip: client_ip.clone() }
    }

    /// Puts the fields into a map (requests that hyper's client sends).
    pub fn insert_into(self, h: &mut HeaderMap) {
        h.insert(X_FORWARDED_FOR.clone(), self.xff);
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(self.proto));
        if let Some(host) = self.host {
            h.insert(X_FORWARDED_HOST.clone(), host);
        }
        h.insert(X_REAL_IP.clone(), self.real_ip);
    }

    /// Writes the fields as header lines (a request head our own client sends).
    pub fn write(&self, out: &mut bytes::BytesMut) {
        write_line(out, X_FORWARDED_FOR.as_ref(), self.xff.as_bytes());
        write_line(out, X_FORWARDED_PROTO.as_ref(), self.proto.as_bytes());
        if let Some(host) = &self.host {
            write_line(out, X_FORWARDED_HOST.as_ref(), host.as_bytes());
        }
        write_line(out, X_REAL_IP.as_ref(), self.real_ip.as_bytes());
    }
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
    fn names_are_classified_in_any_case_and_only_exactly() {
        assert!(
            classify("Content-Length") == FieldKind::ContentLength
                && classify("CONTENT-LENGTH") == FieldKind::ContentLength
        );
        assert!(classify("connection") == FieldKind::Connection && classify("Keep-Alive") == FieldKind::Hop);
        assert!(
            classify("DATE") == FieldKind::Date
                && classify("TE") == FieldKind::Hop
                && classify("Upgrade") == FieldKind::Hop
        );
        for other in ["Content-Lengtx", "Content_Length", "Datf", "dat", "X-Date", "Connection2", "Server"] {
            assert!(classify(other) == FieldKind::Other, "{other}");
        }
    }

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
    fn forwarded_for_is_appended_and_the_clients_other_fields_replaced() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static(" 10.0.0.2, 10.0.0.3 "));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-other", HeaderValue::from_static("1"));
        let ip = client_ip_value("127.0.0.2".parse().unwrap());
        let f = Forwarding::take(&mut h, &ip, "http", Some(HeaderValue::from_static("example.com")));
        assert_eq!(h.len(), 1, "the client's own forwarding fields are taken out: {h:?}");
        let mut out = bytes::BytesMut::new();
        f.write(&mut out);
        assert_eq!(
            &out[..],
            &b"x-forwarded-for: 10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.2\r\nx-forwarded-proto: http\r\n\
               x-forwarded-host: example.com\r\nx-real-ip: 127.0.0.2\r\n"[..]
        );
        f.insert_into(&mut h);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.2");
        assert_eq!(h.get("x-real-ip").unwrap(), "127.0.0.2");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "example.com");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        // Without any from the client: just the client's address.
        let mut h = HeaderMap::new();
        let f = Forwarding::take(&mut h, &ip, "https", None);
        f.insert_into(&mut h);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "127.0.0.2");
        assert!(h.get("x-forwarded-host").is_none());
    }
}
