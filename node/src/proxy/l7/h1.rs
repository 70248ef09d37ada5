//! The HTTP/1.1 fast path for plain-TCP client connections: request heads parsed
//! with `httparse` into buffers lent by a small per-thread pool and given back
//! whenever the connection has nothing buffered, so an idle keep-alive connection
//! holds only its socket and a small task. It serves requests without a body
//! (keep-alive, pipelining, HTTP/1.0, `Connection: close`) through the same
//! pipeline as hyper (`super::handle`) and writes the responses itself.
//!
//! It deliberately does not serve request bodies, `Expect`, `Upgrade`, CONNECT
//! or HTTP/2: on meeting one it gives the socket and every byte read so far to
//! hyper (`Rewind`) for the rest of the connection's life.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::ClientBody;
use super::raw;
use super::{Conn, ProxyBody};

/// A pooled buffer's size: a typical request head, or a small response, fits.
const BUF_SIZE: usize = 4096;
/// Buffers kept per thread; more are freed. Enough for the requests one worker
/// has in flight at a time in the common case; a burst beyond allocates.
const POOL_MAX: usize = 32;
/// A buffer grown past this (a large head) is freed rather than pooled.
const POOL_KEEP_MAX: usize = 16 * 1024;
/// Body chunks up to this size are copied next to the head (one write); larger
/// ones are written from where they are.
const COPY_MAX: usize = 8 * 1024;
/// Headers parsed on the stack; a request with more (up to `max_headers`) is
/// parsed again into a heap array.
const STACK_HEADERS: usize = 64;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static DATE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
}

pub(super) fn take_buf() -> BytesMut {
    let mut b = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    b.reserve(BUF_SIZE);
    b
}

pub(super) fn give_back(mut b: BytesMut) {
    if b.capacity() > POOL_KEEP_MAX || b.capacity() == 0 {
        return;
    }
    b.clear();
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(b);
        }
    });
}

/// `Date`, formatted once a second per thread.
fn date() -> HeaderValue {
    let now = SystemTime::now();
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        match &d.1 {
            Some(v) if d.0 == secs => v.clone(),
            _ => {
                let v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                    .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
                *d = (secs, Some(v.clone()));
                v
            }
        }
    })
}

/// What to do after one exchange.
enum Step {
    /// Keep the connection; `Some` holds bytes already read of the next request.
    Next(Option<BytesMut>),
    Close,
    /// Give the connection to hyper, with every byte read so far.
    HandOff(BytesMut),
}

/// Serves a plain-TCP client connection until it closes, goes idle past
/// `client_header_timeout` (the config's keep-alive wait, as with hyper), or
/// `cancel` fires (at once when idle; after the response in flight otherwise).
pub(super) async fn serve(mut stream: TcpStream, mut conn: Arc<Conn>, cancel: CancellationToken) {
    let (idle_timeout, idle_park) = {
        let cfg = &conn.ctx.plan().rt.cfg;
        (cfg.client_header_timeout, cfg.http.idle_park)
    };
    // Idle past `idle_park_ms` (and short of the keep-alive timeout), the
    // connection moves to the listener's idle lot.
    let park = idle_park.filter(|&p| conn.lot.is_some() && p < idle_timeout);
    let mut pending: Option<BytesMut> = None;
    // One cancellation wait and one timer for the connection's life, not one
    // each per request: registering and removing them per request cost more
    // than the rest of the idle wait. The timer is lazy: it may fire early
    // (its deadline is an earlier idle period's); then it is moved to the
    // current period's end.
    let stop = cancel.clone().cancelled_owned();
    tokio::pin!(stop);
    let idle = tokio::time::sleep(park.unwrap_or(idle_timeout));
    tokio::pin!(idle);
    loop {
        // Idle: no buffer held while waiting for the next request.
        let (mut wait, mut may_park) = (park.unwrap_or(idle_timeout), park.is_some());
        let mut due = Instant::now() + wait;
        while pending.is_none() {
            let ready = tokio::select! {
                biased;
                _ = &mut stop => return,
                r = stream.readable() => Some(r),
                _ = &mut idle => None,
            };
            match ready {
                Some(Ok(())) => break,
                Some(Err(_)) => return,
                None if Instant::now() < due => idle.as_mut().reset(due),
                None if may_park => {
                    let Some(lot) = conn.lot.clone() else { return };
                    match lot.park(stream, conn, idle_timeout - wait) {
                        Ok(()) => return,
                        // Not parked: the rest of the idle wait happens here.
                        Err((s, c)) => {
                            (stream, conn) = (s, c);
                            (wait, may_park) = (idle_timeout - wait, false);
                            due += wait;
                            idle.as_mut().reset(due);
                        }
                    }
                }
                None => return,
            }
        }
        // On the heap (a slot reused per thread): the per-request state is large
        // and lives only while a request does; the idle task keeps just this loop's.
        match super::slot::Slot::new(exchange(&mut stream, &conn, &cancel, pending.take())).await {
            Step::Next(rest) => pending = rest,
            Step::Close => return,
            Step::HandOff(read) => {
                tracing::trace!(client = %conn.ctx.client, "connection handed to hyper");
                Box::pin(super::serve_hyper(Rewind { pre: read, io: stream }, conn, cancel)).await;
                return;
            }
        }
    }
}

/// Reads one request head, answers it, and says what comes next.
async fn exchange(stream: &mut TcpStream, conn: &Conn, cancel: &CancellationToken, pending: Option<BytesMut>) -> Step {
    let cfg = &conn.ctx.plan().rt.cfg;
    let limits = Limits { max_bytes: cfg.http.max_header_bytes, max_headers: cfg.http.max_headers };
    let mut buf = pending.unwrap_or_else(take_buf);
    // Set at the first wait for more of a head: most heads come in one read.
    let mut deadline = None;
    let head = loop {
        if !buf.is_empty() {
            match parse(&buf, &limits) {
                Ok(Parsed::Complete(head)) => break head,
                Ok(Parsed::Partial) => {}
                Ok(Parsed::HandOff) => return Step::HandOff(buf),
                Err(status) => return reject(stream, buf, status).await,
            }
            if buf.len() >= limits.max_bytes {
                return reject(stream, buf, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
            }
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(BUF_SIZE);
        }
        // poll_read (not try_read): a short read clears the socket's readiness,
        // so the idle wait after the response needs no EAGAIN read to start.
        let read = stream.read_buf(&mut buf).now_or_never().unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into()));
        match read {
            Ok(0) => {
                give_back(buf);
                return Step::Close;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if buf.is_empty() {
                    // A wake-up with nothing to read: back to waiting idle.
                    give_back(buf);
                    return Step::Next(None);
                }
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + cfg.client_header_timeout);
                match tokio::time::timeout_at(deadline, stream.readable()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => {
                        give_back(buf);
                        return Step::Close;
                    }
                    Err(_) => return reject(stream, buf, StatusCode::REQUEST_TIMEOUT).await,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                give_back(buf);
                return Step::Close;
            }
        }
    };
    buf.advance(head.len);
    // Nothing of a next request yet: the buffer goes back while upstream works.
    let rest = if buf.is_empty() {
        give_back(buf);
        None
    } else {
        Some(buf)
    };
    let Head { method, uri, version, headers, keep_alive, .. } = head;
    let is_head = method == Method::HEAD;
    let mut req = Request::new(ClientBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    let resp = super::handle(req, conn).await;
    let keep_alive = keep_alive && !cancel.is_cancelled();
    match respond(stream, resp, is_head, version, keep_alive).await {
        Ok(true) if !cancel.is_cancelled() => Step::Next(rest),
        _ => {
            if let Some(b) = rest {
                give_back(b);
            }
            Step::Close
        }
    }
}

struct Limits {
    max_bytes: usize,
    max_headers: usize,
}

/// A parsed request head the fast path serves.
#[derive(Debug)]
struct Head {
    /// Bytes of the head in the buffer.
    len: usize,
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    /// The client allows another request on this connection.
    keep_alive: bool,
}

// Built and taken apart at once, never stored: boxing the head would only add an
// allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Parsed {
    Complete(Head),
    Partial,
    /// Valid enough, but for hyper: a body, an upgrade, `Expect`, CONNECT, HTTP/2.
    HandOff,
}

/// Parses the request head at the start of `buf`. `Err` is the status to refuse
/// it with.
fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, StatusCode> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let n = limits.max_headers.min(STACK_HEADERS);
    let mut req = httparse::Request::new(&mut stack[..n]);
    match req.parse(buf) {
        Err(httparse::Error::TooManyHeaders) if limits.max_headers > STACK_HEADERS => {
            let mut heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
            let mut req = httparse::Request::new(&mut heap);
            let status = req.parse(buf);
            convert(status, &req, buf, limits)
        }
        status => convert(status, &req, buf, limits),
    }
}

fn convert(
    status: httparse::Result<usize>,
    req: &httparse::Request<'_, '_>,
    buf: &[u8],
    limits: &Limits,
) -> Result<Parsed, StatusCode> {
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(_) if buf.starts_with(H2_PREFACE) => return Ok(Parsed::HandOff),
        Err(_) if H2_PREFACE.starts_with(buf) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    };
    if len > limits.max_bytes {
        return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let (Some(m), Some(path), Some(v)) = (req.method, req.path, req.version) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    let method = Method::from_bytes(m.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
    if method == Method::CONNECT {
        return Ok(Parsed::HandOff);
    }
    let version = if v == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
    let uri = path.parse::<Uri>().map_err(|_| StatusCode::BAD_REQUEST)?;
    // One copy of the whole head; header values are slices of it.
    let bytes = Bytes::copy_from_slice(&buf[..len]);
    // The forwarding fields the proxy adds are written next to the map, not into it.
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let (mut close, mut keep) = (false, false);
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
        if name == header::TRANSFER_ENCODING || name == header::UPGRADE || name == header::EXPECT {
            return Ok(Parsed::HandOff);
        }
        if name == header::CONTENT_LENGTH && !is_zero(h.value) {
            return Ok(Parsed::HandOff);
        }
        if name == header::CONNECTION {
            for t in h.value.split(|&c| c == b',') {
                let t = t.trim_ascii();
                close |= t.eq_ignore_ascii_case(b"close");
                keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        let value = shared_value(&bytes, buf, h.value).ok_or(StatusCode::BAD_REQUEST)?;
        headers.append(name, value);
    }
    let keep_alive = !close && (version == Version::HTTP_11 || keep);
    Ok(Parsed::Complete(Head { len, method, uri, version, headers, keep_alive }))
}

/// A header value parsed from `buf` as a slice of `copy`, the copy of `buf`'s
/// head: no allocation per value. `None` if `value` is not inside the copied part
/// or is not a valid header value.
fn shared_value(copy: &Bytes, buf: &[u8], value: &[u8]) -> Option<HeaderValue> {
    // The value's place in `buf` is its place in the copy.
    let at = value.as_ptr().addr().wrapping_sub(buf.as_ptr().addr());
    let end = at.checked_add(value.len()).filter(|&end| end <= copy.len())?;
    HeaderValue::from_maybe_shared(copy.slice(at..end)).ok()
}

/// A `Content-Length` of zero: no body. Anything else (a length, a list, junk)
/// is hyper's to serve or refuse.
fn is_zero(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    !v.is_empty() && v.iter().all(|&c| c == b'0')
}

/// How the response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// No body at all (HEAD, 1xx, 204, 304).
    Bodyless,
    Length,
    Chunked,
    /// Until the connection closes (HTTP/1.0 client, length unknown).
    Close,
}

/// Picks the framing and fixes the framing headers. `raw` holds the backend's
/// fields that go out ahead of the map's, if the response came through our own
/// client. Returns the framing and whether the connection stays open after
/// this response.
fn frame_headers(
    headers: &mut HeaderMap,
    raw: Option<&raw::Fields>,
    status: StatusCode,
    hint: Option<u64>,
    is_head: bool,
    version: Version,
    keep_alive: bool,
) -> (Framing, bool) {
    let mut keep_alive = keep_alive;
    let no_body_status = status.is_informational() || status == StatusCode::NO_CONTENT;
    // The raw fields carry no `Content-Length` where the map would lose it.
    let raw_length = raw.is_some_and(|f| f.length);
    let framing = if no_body_status {
        headers.remove(header::CONTENT_LENGTH);
        Framing::Bodyless
    } else if is_head || status == StatusCode::NOT_MODIFIED {
        // The length of the body a GET would get, if the backend said it.
        Framing::Bodyless
    } else if raw_length || headers.get(header::CONTENT_LENGTH).is_some_and(|v| parse_length(v).is_some()) {
        Framing::Length
    } else if let Some(n) = hint {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        Framing::Length
    } else {
        headers.remove(header::CONTENT_LENGTH);
        if version == Version::HTTP_11 {
            headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::Close
        }
    };
    if !keep_alive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else if version == Version::HTTP_10 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    if !raw.is_some_and(|f| f.date) && !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, date());
    }
    (framing, keep_alive)
}

fn parse_length(v: &HeaderValue) -> Option<u64> {
    v.to_str().ok()?.trim().parse().ok()
}

/// Status line, the backend's raw fields if any, then the map's in its order.
fn write_head(out: &mut BytesMut, status: StatusCode, raw: Option<&raw::Fields>, headers: &HeaderMap) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(f) = raw {
        out.extend_from_slice(f.lines());
    }
    write_fields(out, headers);
}

/// Header fields in the map's order and the blank line ending a head.
fn write_fields(out: &mut BytesMut, headers: &HeaderMap) {
    write_lines(out, headers);
    out.extend_from_slice(b"\r\n");
}

/// Header fields in the map's order, one line each (requests and responses alike).
pub(super) fn write_lines(out: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        super::headers::write_line(out, name.as_ref(), value.as_bytes());
    }
}

fn chunk_size_line(out: &mut BytesMut, n: usize) {
    use std::fmt::Write;
    let _ = write!(ByteWriter(out), "{n:x}\r\n");
}

struct ByteWriter<'a>(&'a mut BytesMut);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Writes the response. `Ok(true)`: the connection may carry another request.
async fn respond(
    stream: &mut TcpStream,
    resp: Response<ProxyBody>,
    is_head: bool,
    version: Version,
    keep_alive: bool,
) -> io::Result<bool> {
    let (mut parts, mut body) = resp.into_parts();
    let hint = body.size_hint().exact();
    let raw = body.take_fields();
    let (framing, keep_alive) =
        frame_headers(&mut parts.headers, raw.as_ref(), parts.status, hint, is_head, version, keep_alive);
    let mut out = take_buf();
    write_head(&mut out, parts.status, raw.as_ref(), &parts.headers);
    drop(raw);
    let result = write_body(stream, &mut out, &mut body, framing).await;
    give_back(out);
    // Dropping the body counts and logs the request (`Done`) and returns the
    // upstream connection if the body was read to its end.
    drop(body);
    result.map(|()| keep_alive && framing != Framing::Close)
}

async fn write_body(
    stream: &mut TcpStream,
    out: &mut BytesMut,
    body: &mut ProxyBody,
    framing: Framing,
) -> io::Result<()> {
    if framing == Framing::Bodyless {
        return stream.write_all(out).await;
    }
    while !body.is_end_stream() {
        // Whatever is pending goes out before waiting for the backend.
        let frame = match body.frame().now_or_never() {
            Some(f) => f,
            None => {
                if !out.is_empty() {
                    stream.write_all(out).await?;
                    out.clear();
                }
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e)),
            // Trailers are dropped, as hyper does (the backend's `Trailer` header
            // is hop-by-hop and not passed on).
            Some(Ok(f)) => match f.into_data() {
                Ok(d) if !d.is_empty() => d,
                _ => continue,
            },
        };
        if framing == Framing::Chunked {
            chunk_size_line(out, data.len());
        }
        if data.len() <= COPY_MAX {
            out.extend_from_slice(&data);
        } else {
            let mut both = Buf::chain(&out[..], &data[..]);
            stream.write_all_buf(&mut both).await?;
            out.clear();
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        stream.write_all(out).await?;
    }
    Ok(())
}

/// Refuses a request head and closes: the answer, then a short lingering read so
/// the client's unread bytes do not turn the close into a reset that loses it.
async fn reject(stream: &mut TcpStream, buf: BytesMut, status: StatusCode) -> Step {
    give_back(buf);
    let reason = status.canonical_reason().unwrap_or("");
    let msg = format!("HTTP/1.1 {} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", status.as_str());
    let linger = async {
        stream.write_all(msg.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        for _ in 0..64 {
            if tokio::io::AsyncReadExt::read(stream, &mut sink).await? == 0 {
                break;
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), linger).await;
    Step::Close
}

/// The socket for hyper after a hand-off: the bytes the fast path already read
/// come first.
struct Rewind {
    pre: BytesMut,
    io: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            if self.pre.is_empty() {
                let done = std::mem::take(&mut self.pre);
                give_back(done);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_bytes: 8192, max_headers: 100 }
    }

    fn complete(raw: &[u8]) -> Head {
        match parse(raw, &limits()) {
            Ok(Parsed::Complete(h)) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn simple_get_is_parsed_with_its_length() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nGET /next";
        let h = complete(raw);
        assert_eq!(h.len, raw.len() - "GET /next".len());
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.uri, "/a?b=1");
        assert_eq!(h.version, Version::HTTP_11);
        assert!(h.keep_alive);
        let xa: Vec<_> = h.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
    }

    #[test]
    fn connection_tokens_decide_keep_alive() {
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        for raw in [&b"GE"[..], b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r", b"PRI * HTTP/2"] {
            assert!(matches!(parse(raw, &limits()), Ok(Parsed::Partial)), "{raw:?}");
        }
    }

    #[test]
    fn bodies_upgrades_expect_connect_and_h2_go_to_hyper() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(matches!(parse(raw, &limits()), Ok(Parsed::HandOff)), "{}", String::from_utf8_lossy(raw));
        }
        // A zero length is no body.
        assert_eq!(complete(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").method, Method::POST);
    }

    #[test]
    fn malformed_and_oversized_heads_are_refused() {
        for raw in [
            &b"GET / HTTP/1.1 junk\r\n\r\n"[..],
            b"GET\x01 / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/3.0\r\n\r\n",
            b" / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse(raw, &limits()).unwrap_err(), StatusCode::BAD_REQUEST, "{raw:?}");
        }
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many, &limits()).unwrap_err(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // Between the stack array and the limit: parsed from the heap.
        assert_eq!(parse(&many, &Limits { max_bytes: 8192, max_headers: 101 }).map(|_| ()), Ok(()));
        let small = Limits { max_bytes: 8192, max_headers: 2 };
        let three = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(parse(three, &small).unwrap_err(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(parse(big.as_bytes(), &limits()).unwrap_err(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    fn framed(
        status: u16,
        cl: Option<&str>,
        hint: Option<u64>,
        head: bool,
        v: Version,
        ka: bool,
    ) -> (Framing, bool, HeaderMap) {
        let mut h = HeaderMap::new();
        if let Some(cl) = cl {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_str(cl).unwrap());
        }
        let (f, k) = frame_headers(&mut h, None, StatusCode::from_u16(status).unwrap(), hint, head, v, ka);
        (f, k, h)
    }

    #[test]
    fn framing_follows_length_hint_and_version() {
        let (f, k, h) = framed(200, Some("13"), None, false, Version::HTTP_11, true);
        assert_eq!((f, k), (Framing::Length, true));
        assert_eq!(h["content-length"], "13");
        assert!(h.get("connection").is_none() && h.contains_key("date"));

        let (f, _, h) = framed(200, None, Some(7), false, Version::HTTP_11, true);
        assert_eq!(f, Framing::Length);
        assert_eq!(h["content-length"], "7");

        let (f, k, h) = framed(200, None, None, false, Version::HTTP_11, true);
        assert_eq!((f, k), (Framing::Chunked, true));
        assert_eq!(h["transfer-encoding"], "chunked");

        // HTTP/1.0 and no length: the close ends the body.
        let (f, k, h) = framed(200, None, None, false, Version::HTTP_10, true);
        assert_eq!((f, k), (Framing::Close, false));
        assert_eq!(h["connection"], "close");

        let (_, k, h) = framed(200, Some("1"), None, false, Version::HTTP_10, true);
        assert!(k);
        assert_eq!(h["connection"], "keep-alive");
    }

    #[test]
    fn head_204_and_304_have_no_body() {
        let (f, _, h) = framed(200, Some("13"), None, true, Version::HTTP_11, true);
        assert_eq!(f, Framing::Bodyless);
        assert_eq!(h["content-length"], "13");
        let (f, _, h) = framed(204, Some("0"), Some(0), false, Version::HTTP_11, true);
        assert_eq!(f, Framing::Bodyless);
        assert!(h.get("content-length").is_none());
        let (f, _, h) = framed(304, None, Some(0), false, Version::HTTP_11, false);
        assert_eq!(f, Framing::Bodyless);
        assert!(h.get("content-length").is_none());
        assert_eq!(h["connection"], "close");
    }

    #[test]
    fn head_is_serialized_in_map_order() {
        let mut h = HeaderMap::new();
        h.append("x-b", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("x-b", HeaderValue::from_static("3"));
        let mut out = BytesMut::new();
        write_head(&mut out, StatusCode::NOT_FOUND, None, &h);
        assert_eq!(&out[..], b"HTTP/1.1 404 Not Found\r\nx-b: 1\r\nx-b: 3\r\nx-a: 2\r\n\r\n");
        let mut out = BytesMut::new();
        chunk_size_line(&mut out, 255);
        assert_eq!(&out[..], b"ff\r\n");
    }

    #[test]
    fn pooled_buffers_come_back_empty_and_big_ones_are_freed() {
        let mut b = take_buf();
        assert!(b.capacity() >= BUF_SIZE);
        b.extend_from_slice(b"abc");
        give_back(b);
        let b = take_buf();
        assert!(b.is_empty());
        give_back(b);
        let before = POOL.with(|p| p.borrow().len());
        give_back(BytesMut::with_capacity(POOL_KEEP_MAX + 1));
        assert_eq!(POOL.with(|p| p.borrow().len()), before);
    }
}
