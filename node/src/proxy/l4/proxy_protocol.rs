//! The PROXY protocol (HAProxy's, v1 text and v2 binary): reading the header an L4
//! tier in front puts on a connection (`accept_proxy`), and building the one sent to
//! backends (`send_proxy`). Parsing is the `ppp` crate's; this file owns how the
//! bytes come off the socket. It reads exactly the header and nothing of the
//! payload, so the socket can be spliced afterwards with no user-space leftovers.
//! What to do with a bad header (count, close) is the caller's.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use ppp::{PartialResult, v1, v2};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::config::ProxyVersion;

/// Longest header accepted: a v2 header with a few hundred bytes of TLVs (AWS NLB,
/// SSL details) fits; anything longer is refused rather than buffered.
pub const MAX_HEADER: usize = 16 + 2048;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("connection closed inside the PROXY header")]
    Truncated,
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Addresses a PROXY header names. `None` for `LOCAL` (v2) and `UNKNOWN` (v1)
/// headers, and for families other than IP: the connection is then taken as the
/// peer's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedAddrs {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// What a buffer starting a connection holds.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// A whole header of this many bytes.
    Complete(usize, Option<ProxiedAddrs>),
    Incomplete,
    Invalid(String),
}

const V1_PREFIX: &[u8] = b"PROXY ";
/// The v1 limit from the spec, CRLF included.
const V1_MAX: usize = 107;

/// v2 goes to `ppp` as it is: its length field makes "incomplete" exact. v1 is
/// framed here (up to the CRLF) and only a whole line goes to `ppp`, whose own
/// partial detection takes some cut-short v1 headers (a port cut in two) for
/// invalid ones; a header split over TCP segments must not be refused.
fn parse(buf: &[u8]) -> Parsed {
    if buf.starts_with(v2::PROTOCOL_PREFIX) || v2::PROTOCOL_PREFIX.starts_with(buf) {
        let result = v2::Header::try_from(buf);
        if result.is_incomplete() {
            return Parsed::Incomplete;
        }
        return match result {
            Ok(h) => {
                let addrs = match (h.command, h.addresses) {
                    (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some(ProxiedAddrs {
                        source: SocketAddr::new(a.source_address.into(), a.source_port),
                        destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
                    }),
                    (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some(ProxiedAddrs {
                        source: SocketAddr::new(a.source_address.into(), a.source_port),
                        destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
                    }),
                    _ => None,
                };
                Parsed::Complete(h.header.len(), addrs)
            }
            Err(e) => Parsed::Invalid(e.to_string()),
        };
    }
    if !(buf.starts_with(V1_PREFIX) || V1_PREFIX.starts_with(buf)) {
        return Parsed::Invalid("not a PROXY protocol header".into());
    }
    let line = match buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") {
        Some(end) => &buf[..end + 2],
        None if buf.len() >= V1_MAX => return Parsed::Invalid(format!("no CRLF in the first {V1_MAX} bytes")),
        None => return Parsed::Incomplete,
    };
    match v1::Header::try_from(line) {
        Ok(h) => {
            let addrs = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(ProxiedAddrs {
                    source: SocketAddr::new(a.source_address.into(), a.source_port),
                    destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
                }),
                v1::Addresses::Tcp6(a) => Some(ProxiedAddrs {
                    source: SocketAddr::new(a.source_address.into(), a.source_port),
                    destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
                }),
                v1::Addresses::Unknown => None,
            };
            Parsed::Complete(line.len(), addrs)
        }
        Err(e) => Parsed::Invalid(e.to_string()),
    }
}

/// Reads one PROXY header (v1 or v2) from the start of `stream`, within `timeout`.
/// Consumes exactly the header's bytes.
pub async fn read_header(stream: &TcpStream, timeout: Duration) -> Result<Option<ProxiedAddrs>, ProxyError> {
    match tokio::time::timeout(timeout, read_header_now(stream)).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::Timeout(timeout)),
    }
}

async fn read_header_now(stream: &TcpStream) -> Result<Option<ProxiedAddrs>, ProxyError> {
    let mut buf = vec![0u8; MAX_HEADER];
    let fd = stream.as_raw_fd();
    // Peek until the buffered bytes hold a whole header. When they do not yet, the
    // peek reports WouldBlock so tokio clears readiness and the next segment wakes
    // us, instead of peeking the same bytes in a loop. Once the peer has closed,
    // readiness stays set for good: an incomplete header then is a truncated one.
    let (len, addrs) = loop {
        let ready = stream.ready(Interest::READABLE).await?;
        let peeked = stream.try_io(Interest::READABLE, || {
            let n =
                nix::sys::socket::recv(fd, &mut buf, nix::sys::socket::MsgFlags::MSG_PEEK).map_err(io::Error::from)?;
            match parse(&buf[..n]) {
                Parsed::Incomplete if n == 0 => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Parsed::Incomplete if n == buf.len() => Err(io::Error::from(io::ErrorKind::FileTooLarge)),
                Parsed::Incomplete => Err(io::Error::from(io::ErrorKind::WouldBlock)),
                other => Ok(other),
            }
        });
        match peeked {
            Ok(Parsed::Complete(len, addrs)) => break (len, addrs),
            Ok(Parsed::Invalid(why)) => return Err(ProxyError::Malformed(why)),
            Ok(Parsed::Incomplete) | Err(_) if ready.is_read_closed() => return Err(ProxyError::Truncated),
            Ok(Parsed::Incomplete) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ProxyError::Truncated),
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => return Err(ProxyError::TooLong),
            Err(e) => return Err(ProxyError::Io(e)),
        }
    };
    // The header is in the socket buffer already; take exactly it.
    let mut taken = 0;
    while taken < len {
        stream.readable().await?;
        match stream.try_read(&mut buf[taken..len]) {
            Ok(0) => return Err(ProxyError::Truncated),
            Ok(n) => taken += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(ProxyError::Io(e)),
        }
    }
    Ok(addrs)
}

/// An IPv4 address seen through a dual-stack socket as `::ffff:a.b.c.d` is written
/// as IPv4; when the two ends still differ in family, IPv4 is mapped into IPv6 so
/// one header can carry both.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    };
    let map = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    let (s, d) = (unmap(source), unmap(destination));
    if s.is_ipv4() == d.is_ipv4() { (s, d) } else { (map(s), map(d)) }
}

/// The header telling a backend that `source` connected to `destination`.
pub fn encode(version: ProxyVersion, source: SocketAddr, destination: SocketAddr) -> io::Result<Vec<u8>> {
    let (s, d) = same_family(source, destination);
    match version {
        ProxyVersion::V1 => {
            let family = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            Ok(format!("PROXY {family} {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port()).into_bytes())
        }
        ProxyVersion::V2 => {
            v2::Builder::with_addresses(v2::Version::Two | v2::Command::Proxy, v2::Protocol::Stream, (s, d)).build()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_header_is_parsed_and_its_length_excludes_the_payload() {
        let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nhello";
        let addrs = ProxiedAddrs { source: sa("203.0.113.7:51000"), destination: sa("10.0.0.1:443") };
        assert_eq!(parse(h), Parsed::Complete(h.len() - 5, Some(addrs)));
        let h6 = b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n";
        let Parsed::Complete(n, Some(a)) = parse(h6) else { panic!("{:?}", parse(h6)) };
        assert_eq!((n, a.source), (h6.len(), sa("[2001:db8::1]:1")));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parsed::Complete(15, None));
    }

    #[test]
    fn encoded_headers_parse_back() {
        for v in [ProxyVersion::V1, ProxyVersion::V2] {
            for (s, d) in [
                (sa("198.51.100.2:40000"), sa("127.0.0.1:8443")),
                (sa("[2001:db8::5]:1234"), sa("[::1]:80")),
                (sa("[::ffff:192.0.2.1]:5"), sa("127.0.0.1:6")),
            ] {
                let mut bytes = encode(v, s, d).unwrap();
                let header_len = bytes.len();
                bytes.extend_from_slice(b"payload");
                let (es, ed) = same_family(s, d);
                assert_eq!(
                    parse(&bytes),
                    Parsed::Complete(header_len, Some(ProxiedAddrs { source: es, destination: ed })),
                    "{v:?} {s} {d}"
                );
            }
        }
        assert_eq!(same_family(sa("[::ffff:192.0.2.1]:5"), sa("127.0.0.1:6")).0, sa("192.0.2.1:5"));
        let (s, _) = same_family(sa("192.0.2.1:5"), sa("[::1]:6"));
        assert_eq!(s, sa("[::ffff:192.0.2.1]:5"));
    }

    #[test]
    fn v2_local_command_names_no_client() {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&h), Parsed::Complete(16, None));
    }

    #[test]
    fn prefixes_are_incomplete_and_garbage_is_invalid() {
        let full = encode(ProxyVersion::V2, sa("1.2.3.4:5"), sa("5.6.7.8:9")).unwrap();
        for cut in 1..full.len() {
            assert_eq!(parse(&full[..cut]), Parsed::Incomplete, "v2 cut at {cut}");
        }
        let v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 5 9\r\n";
        for cut in 1..v1.len() {
            assert_eq!(parse(&v1[..cut]), Parsed::Incomplete, "v1 cut at {cut}");
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 9\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 5 9\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 05 9\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04abcd",
        ] {
            assert!(matches!(parse(bad), Parsed::Invalid(_)), "{:?} -> {:?}", String::from_utf8_lossy(bad), parse(bad));
        }
        let long = [b'P'; 200];
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
    }

    /// No input makes the parser panic: random bytes, and valid headers with random
    /// bytes flipped or cut (bounded, deterministic).
    #[test]
    fn parser_never_panics_on_mangled_input() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds = [
            encode(ProxyVersion::V1, sa("1.2.3.4:5"), sa("5.6.7.8:9")).unwrap(),
            encode(ProxyVersion::V2, sa("1.2.3.4:5"), sa("5.6.7.8:9")).unwrap(),
            encode(ProxyVersion::V2, sa("[::1]:5"), sa("[::2]:9")).unwrap(),
        ];
        for i in 0..30_000 {
            let mut bytes = seeds[i % seeds.len()].clone();
            let flips = (next() % 4) as usize;
            for _ in 0..flips {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            if next() % 3 == 0 {
                let extra = (next() % 300) as usize;
                bytes.extend((0..extra).map(|_| next() as u8));
            }
            bytes.truncate((next() as usize) % (bytes.len() + 1));
            let _ = parse(&bytes);
            let random: Vec<u8> = (0..(next() % 120)).map(|_| next() as u8).collect();
            let _ = parse(&random);
        }
    }
}
