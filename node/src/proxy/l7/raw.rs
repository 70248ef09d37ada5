//! Our own HTTP/1.1 client for plain-TCP backends, used for requests without a
//! body (most traffic). The request head goes out in one write, the response head
//! is parsed with `httparse` from a pooled buffer, and the body is read by the
//! client connection's own task: no per-connection task, channel or cross-task
//! wake-up per request, which is what hyper's client costs. An idle pooled
//! connection is a bare `TcpStream` without a buffer.
//!
//! Requests with a body, upgrades and TLS backends keep hyper's client.
//!
//! Framing follows RFC 9112 section 6.3: no body for HEAD, 1xx, 204 and 304;
//! `Transfer-Encoding` wins over `Content-Length` (and the connection is not
//! reused after such a message); chunked bodies are decoded here (trailers are
//! dropped, as with hyper); without either the body runs until the backend
//! closes. A connection goes back to the pool only after a complete message with
//! nothing extra behind it, from a backend that keeps connections open.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::BoxError;
use super::h1::{give_back, take_buf, write_lines};
use super::headers::{FieldKind as Name, Forwarding, classify, names_no_other_field, write_line};
use super::upstream::HostPool;

/// A response head larger than this is refused (502).
const MAX_HEAD: usize = 64 * 1024;
/// Response headers parsed on the stack; more is refused.
const MAX_HEADERS: usize = 100;
/// Body reads start at this size and double while they fill up, to `READ_MAX`.
const READ_MIN: usize = 16 * 1024;
const READ_MAX: usize = 256 * 1024;
/// A chunk-size line (with extensions) or the trailer section past this is refused.
const MAX_CHUNK_LINE: usize = 4096;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// Nothing of a response arrived: the connection closed or failed before.
    /// Safe to send again on a new connection if the method is idempotent.
    #[error("backend closed the connection before answering: {0}")]
    NoResponse(io::Error),
    #[error("reading the response failed: {0}")]
    Io(io::Error),
    #[error("invalid response from backend: {0}")]
    Malformed(&'static str),
}

/// Serializes a request head: request line in origin form, the headers in the
/// map's order, then the forwarding fields.
pub fn write_request(out: &mut BytesMut, method: &Method, uri: &Uri, headers: &HeaderMap, fwd: &Forwarding) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_lines(out, headers);
    fwd.write(out);
    out.extend_from_slice(b"\r\n");
}

/// A request head in a pooled buffer, given back when dropped.
pub struct HeadBuf(BytesMut);

impl HeadBuf {
    pub fn new() -> HeadBuf {
        HeadBuf(take_buf())
    }
}

impl std::ops::Deref for HeadBuf {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.0
    }
}

impl std::ops::DerefMut for HeadBuf {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.0
    }
}

impl Drop for HeadBuf {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// `Content-Length` (0 for bodyless responses).
    Length(u64),
    Chunked,
    /// Until the backend closes.
    Close,
}

/// A parsed final response head.
#[derive(Debug)]
struct Head {
    len: usize,
    status: StatusCode,
    fields: Fields,
    framing: Framing,
    /// The backend allows another request on this connection.
    reusable: bool,
}

/// The backend's response header fields as they go on to the client: one
/// `name: value` line each, names spelled as the backend spelled them, in its
/// order, hop-by-hop fields (RFC 9110 7.6.1) already removed. An HTTP/1.1
/// client gets these bytes as they are; no header map is built per response.
/// The buffer is a pooled one, given back when dropped.
pub struct Fields {
    lines: BytesMut,
    /// A single valid `Content-Length` is among the lines.
    pub length: bool,
    /// A `Date` is among the lines.
    pub date: bool,
}

impl Fields {
    /// The lines, each ending in CRLF (no blank line after them).
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Adds the fields to `map`, ahead of nothing: for servers that need a map
    /// (hyper, HTTP/2). A line that is not a valid field is left out.
    pub fn append_to(&self, map: &mut HeaderMap) {
        for line in self.lines[..].split(|&c| c == b'\n') {
            let Some(line) = line.strip_suffix(b"\r") else { continue };
            let Some(colon) = line.iter().position(|&c| c == b':') else { continue };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            match (HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value)) {
                (Ok(n), Ok(v)) => {
                    map.append(n, v);
                }
                _ => tracing::debug!("response header field left out: not a valid field"),
            }
        }
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fields")
            .field("lines", &String::from_utf8_lossy(&self.lines))
            .field("length", &self.length)
            .field("date", &self.date)
            .finish()
    }
}

impl Drop for Fields {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.lines));
    }
}

#[derive(Debug)]
enum Parsed {
    Partial,
    /// An interim (1xx) response of this many bytes, to skip.
    Interim(usize),
    Final(Head),
}

fn parse_head(buf: &[u8], head_request: bool) -> Result<Parsed, RawError> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut hs);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(RawError::Malformed("more than 100 header fields")),
        Err(_) => return Err(RawError::Malformed("unparsable status line or header field")),
    };
    let (Some(code), Some(minor)) = (r.code, r.version) else {
        return Err(RawError::Malformed("incomplete status line"));
    };
    if code == 101 {
        return Err(RawError::Malformed("101 Switching Protocols without an upgrade request"));
    }
    if (100..200).contains(&code) {
        return Ok(Parsed::Interim(len));
    }
    let status = StatusCode::from_u16(code).map_err(|_| RawError::Malformed("status code out of range"))?;
    // First pass: framing, persistence, and whether `Connection` names more
    // fields to drop. httparse has checked every name and value already.
    let (mut close, mut keep, mut chunked, mut te, mut length, mut lengths) = (false, false, false, false, None, 0);
    let mut names_more = false;
    // Each name is classified once: the second pass reads this.
    let mut kinds = [Name::Other; MAX_HEADERS];
    for (h, kind) in r.headers.iter().zip(kinds.iter_mut()) {
        *kind = classify(h.name);
        match *kind {
            Name::Connection => {
                for t in h.value.split(|&c| c == b',') {
                    let t = t.trim_ascii();
                    close |= t.eq_ignore_ascii_case(b"close");
                    keep |= t.eq_ignore_ascii_case(b"keep-alive");
                    names_more |= !std::str::from_utf8(t).is_ok_and(names_no_other_field);
                }
            }
            Name::TransferEncoding => {
                te = true;
                // Only the last coding decides: chunked last means chunked framing.
                let last = h.value.rsplit(|&c| c == b',').next().unwrap_or(b"").trim_ascii();
                chunked = last.eq_ignore_ascii_case(b"chunked");
            }
            Name::ContentLength => {
                // A list of equal values is one length (RFC 9110 8.6); anything else is refused.
                for v in h.value.split(|&c| c == b',') {
                    let n = std::str::from_utf8(v.trim_ascii())
                        .ok()
                        .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or(RawError::Malformed("invalid Content-Length"))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(RawError::Malformed("conflicting Content-Length values"));
                    }
                    length = Some(n);
                    lengths += 1;
                }
            }
            _ => {}
        }
    }
    let bodyless = head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if bodyless {
        Framing::Length(0)
    } else if te {
        if chunked { Framing::Chunked } else { Framing::Close }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let persistent = if minor == 1 { !close } else { keep && !close };
    // A message with both framings may be a smuggling attempt: never reuse after it.
    let reusable = persistent && framing != Framing::Close && !(te && length.is_some());
    // What `Content-Length` line goes on: none after `Transfer-Encoding` (the
    // length is not the body's) or on a 204; the backend's for HEAD and 304 (the
    // length a GET would get); otherwise only a single value (a list is replaced
    // by the length the client side writes itself).
    let keep_length =
        if status == StatusCode::NO_CONTENT || (te && !bodyless) { false } else { bodyless || lengths == 1 };
    // Second pass: the lines that go on.
    let mut fields = Fields { lines: take_buf(), length: false, date: false };
    let named =
        |name: &str| r.headers.iter().zip(kinds).any(|(c, kind)| kind == Name::Connection && named_in(c.value, name));
    for (h, kind) in r.headers.iter().zip(kinds) {
        match kind {
            Name::Connection | Name::TransferEncoding | Name::Hop => continue,
            Name::ContentLength if !keep_length => continue,
            Name::ContentLength => fields.length = !bodyless,
            Name::Date | Name::Other if names_more && named(h.name) => continue,
            Name::Date => fields.date = true,
            Name::Other => {}
        }
        write_line(&mut fields.lines, h.name.as_bytes(), h.value);
    }
    Ok(Parsed::Final(Head { len, status, fields, framing, reusable }))
}

/// `name` is one of the tokens of a `Connection` value (hop-by-hop then).
fn named_in(connection: &[u8], name: &str) -> bool {
    connection.split(|&c| c == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
}

/// Sends a request head (no body) on `stream` and reads the response head.
/// The caller bounds the time.
pub async fn exchange(
    mut stream: TcpStream,
    head: &[u8],
    head_request: bool,
    host: &Arc<HostPool>,
) -> Result<http::Response<RawBody>, RawError> {
    if let Err(e) = stream.write_all(head).await {
        return Err(RawError::NoResponse(e));
    }
    // No buffer while the backend works: with many requests waiting upstream,
    // a buffer each would outgrow the thread's pool and be allocated anew.
    if let Err(e) = stream.readable().await {
        return Err(RawError::NoResponse(e));
    }
    let mut buf = take_buf();
    let mut received = false;
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        // poll_read, not try_read: a short read clears the socket's readiness,
        // so no extra EAGAIN read is needed before the next wait.
        let n = match stream.read_buf(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                give_back(buf);
                return Err(if received { RawError::Io(e) } else { RawError::NoResponse(e) });
            }
        };
        if n == 0 {
            give_back(buf);
            let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
            return Err(if received { RawError::Io(eof) } else { RawError::NoResponse(eof) });
        }
        received = true;
        loop {
            match parse_head(&buf, head_request) {
                Ok(Parsed::Partial) if buf.len() >= MAX_HEAD => {
                    give_back(buf);
                    return Err(RawError::Malformed("response head larger than 64 KiB"));
                }
                Ok(Parsed::Partial) => break,
                Ok(Parsed::Interim(len)) => buf.advance(len),
                Ok(Parsed::Final(h)) => {
                    buf.advance(h.len);
                    let mut parts = http::Response::new(()).into_parts().0;
                    parts.status = h.status;
                    parts.version = Version::HTTP_11;
                    let mut body = RawBody::new(stream, buf, h.framing, h.reusable, Arc::clone(host));
                    body.fields = Some(h.fields);
                    return Ok(http::Response::from_parts(parts, body));
                }
                Err(e) => {
                    give_back(buf);
                    return Err(e);
                }
            }
            if buf.is_empty() {
                break;
            }
        }
    }
}

thread_local! {
    /// Big body buffers kept per thread (at most `BIG_KEEP`).
    static BIG: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}
const BIG_KEEP: usize = 4;

/// A buffer with room for `READ_MAX` bytes. One given back while a frame cut
/// from it was still in flight is reused only if that frame is gone by now.
fn take_big() -> BytesMut {
    let mut b = BIG.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    b.clear();
    b.reserve(READ_MAX);
    b
}

/// Returns a body buffer to the pool it fits: the small-buffer pool, the big
/// one, or none (freed).
fn give_back_any(b: BytesMut) {
    if b.capacity() <= READ_MIN {
        give_back(b);
    } else {
        BIG.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < BIG_KEEP {
                p.push(b);
            }
        });
    }
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one (bytes seen so far).
    Trailers(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// A response body read from a raw upstream connection. At its clean end the
/// connection goes back to `host`; dropped before, the connection is closed.
pub struct RawBody {
    stream: Option<TcpStream>,
    buf: BytesMut,
    state: State,
    reusable: bool,
    read_size: usize,
    host: Arc<HostPool>,
    /// The head's fields until the client side takes them.
    fields: Option<Fields>,
}

impl RawBody {
    fn new(stream: TcpStream, buf: BytesMut, framing: Framing, reusable: bool, host: Arc<HostPool>) -> RawBody {
        let state = match framing {
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::Close => State::Close,
        };
        let mut body = RawBody { stream: Some(stream), buf, state, reusable, read_size: READ_MIN, host, fields: None };
        if body.state == State::Length(0) {
            body.finish();
        }
        body
    }

    /// The response's header fields (once).
    pub fn take_fields(&mut self) -> Option<Fields> {
        self.fields.take()
    }

    /// The message is complete: the connection goes back to the pool if the
    /// backend keeps it and sent nothing past the message.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(s) = self.stream.take() {
            if self.reusable && self.buf.is_empty() {
                self.host.checkin_raw(s);
            }
        }
        give_back_any(std::mem::take(&mut self.buf));
    }

    /// Reads more into `buf`; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, hint: u64) -> Poll<io::Result<usize>> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(Err(io::Error::other("upstream connection already released")));
        };
        // A declared length says how much is coming: read it in big steps at once.
        let size = if matches!(self.state, State::Length(_)) { READ_MAX } else { self.read_size };
        let want = usize::try_from(hint).unwrap_or(usize::MAX).clamp(1, size);
        if self.buf.capacity() - self.buf.len() < want {
            if want > READ_MIN && self.buf.is_empty() {
                // Large bodies: a buffer from the thread's few big ones, whose
                // pages are already mapped, instead of a fresh allocation.
                let old = std::mem::replace(&mut self.buf, take_big());
                give_back_any(old);
            } else {
                self.buf.reserve(want);
            }
        }
        let spare = self.buf.capacity() - self.buf.len();
        let n = ready!(tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut self.buf))?;
        if n == spare && self.read_size < READ_MAX {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// One step of chunked decoding on what is buffered: `Ok(None)` needs more
    /// bytes, `Ok(Some(None))` moved on without data, `Ok(Some(Some(d)))` is data.
    #[allow(clippy::type_complexity)]
    fn chunk_step(&mut self, c: Chunk) -> Result<Option<Option<Bytes>>, &'static str> {
        match c {
            Chunk::Size => {
                let Some(end) = find_crlf(&self.buf, MAX_CHUNK_LINE)? else { return Ok(None) };
                let line = &self.buf[..end];
                let digits = line.iter().take_while(|c| c.is_ascii_hexdigit()).count();
                let rest = &line[digits..];
                if digits == 0 || digits > 15 || !(rest.is_empty() || matches!(rest[0], b';' | b' ' | b'\t')) {
                    return Err("invalid chunk size line");
                }
                let size = line[..digits].iter().fold(0u64, |n, &c| (n << 4) | u64::from(hex(c)));
                self.buf.advance(end + 2);
                self.state = State::Chunked(if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) });
                Ok(Some(None))
            }
            Chunk::Data(rem) => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = rem.min(self.buf.len() as u64);
                let data = self.buf.split_to(n as usize).freeze();
                self.state = State::Chunked(if n == rem { Chunk::DataEnd } else { Chunk::Data(rem - n) });
                Ok(Some(Some(data)))
            }
            Chunk::DataEnd => {
                if self.buf.len() < 2 {
                    return Ok(None);
                }
                if &self.buf[..2] != b"\r\n" {
                    return Err("chunk data not followed by CRLF");
                }
                self.buf.advance(2);
                self.state = State::Chunked(Chunk::Size);
                Ok(Some(None))
            }
            Chunk::Trailers(seen) => {
                let Some(end) = find_crlf(&self.buf, MAX_CHUNK_LINE - seen)? else { return Ok(None) };
                self.buf.advance(end + 2);
                if end == 0 {
                    self.finish();
                } else {
                    self.state = State::Chunked(Chunk::Trailers(seen + end + 2));
                }
                Ok(Some(None))
            }
        }
    }
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// The position of the first CRLF, if within `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, &'static str> {
    match buf.windows(2).take(limit).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() > limit => Err("chunk size line or trailer section too long"),
        None => Ok(None),
    }
}

fn body_error(msg: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(Some(Err(Box::new(RawError::Malformed(msg)))))
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let hint = match this.state {
                State::Done => return Poll::Ready(None),
                State::Length(rem) => {
                    if !this.buf.is_empty() {
                        let n = rem.min(this.buf.len() as u64);
                        let data = this.buf.split_to(n as usize).freeze();
                        this.state = State::Length(rem - n);
                        if n == rem {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    rem
                }
                State::Close => {
                    if !this.buf.is_empty() {
                        let data = this.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    READ_MAX as u64
                }
                State::Chunked(c) => match this.chunk_step(c) {
                    Err(msg) => {
                        this.state = State::Done;
                        this.stream = None;
                        return body_error(msg);
                    }
                    Ok(Some(Some(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Some(None)) => continue,
                    Ok(None) => match c {
                        Chunk::Data(rem) => rem,
                        _ => 512,
                    },
                },
            };
            match ready!(this.poll_fill(cx, hint)) {
                Ok(0) if this.state == State::Close => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.state = State::Done;
                    this.stream = None;
                    return body_error("backend closed the connection before the end of the body");
                }
                Ok(_) => {}
                Err(e) => {
                    this.state = State::Done;
                    this.stream = None;
                    return Poll::Ready(Some(Err(Box::new(RawError::Io(e)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for RawBody {
    fn drop(&mut self) {
        // Cut short: the connection is mid-message and closes with `stream`.
        if self.state != State::Done {
            give_back_any(std::mem::take(&mut self.buf));
        }
    }
}

/// A pooled connection is usable if nothing arrived on it while idle: no event
/// seen by the reactor means no data and no close (no system call). If there was
/// an event, a non-blocking read tells a stale wake-up from a close or stray bytes.
pub fn is_clean(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// Methods that may be sent again when a reused connection turns out closed
/// before any response byte (RFC 9110 9.2.2).
pub fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, header};

    use super::*;

    fn head(raw: &[u8], head_request: bool) -> Head {
        match parse_head(raw, head_request) {
            Ok(Parsed::Final(h)) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello", false);
        assert_eq!((h.framing, h.reusable, h.status), (Framing::Length(13), true, StatusCode::OK));
        assert_eq!(h.len, "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n".len());
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n", true);
        assert_eq!(h.framing, Framing::Length(0));
        assert_eq!(h.fields.lines(), b"Content-Length: 13\r\n");
        assert_eq!(head(b"HTTP/1.1 304 Not Modified\r\n\r\n", false).framing, Framing::Length(0));
        assert_eq!(head(b"HTTP/1.1 204 No Content\r\n\r\n", false).framing, Framing::Length(0));
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false);
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, true));
        // Both framings: chunked wins, the length goes, the connection is not reused.
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false);
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, false));
        assert_eq!((h.fields.lines(), h.fields.length), (&b""[..], false));
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert_eq!((h.framing, h.reusable), (Framing::Close, false));
        let h = head(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((h.framing, h.reusable), (Framing::Close, false));
        assert!(!head(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n", false).reusable);
        assert!(!head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).reusable);
        assert!(head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false).reusable);
        assert_eq!(head(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", false).framing, Framing::Length(7));
    }

    fn lines(raw: &[u8], head_request: bool) -> String {
        String::from_utf8(head(raw, head_request).fields.lines().to_vec()).unwrap()
    }

    #[test]
    fn fields_go_on_as_sent_without_hop_by_hop_ones() {
        // Names keep their spelling and order; hop-by-hop fields and those
        // `Connection` names are gone.
        let raw = b"HTTP/1.1 200 OK\r\nServer: be\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
            x-hop: 1\r\nDATE: Sun, 06 Dec 2026 10:00:00 GMT\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\
            Content-Length: 2\r\nTrailer: x\r\nUpgrade: h2c\r\nProxy-Connection: close\r\nTE: trailers\r\n\r\nok";
        let h = head(raw, false);
        assert_eq!(
            String::from_utf8_lossy(h.fields.lines()),
            "Server: be\r\nDATE: Sun, 06 Dec 2026 10:00:00 GMT\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 2\r\n"
        );
        assert!(h.fields.length && h.fields.date);
        // `Connection: date` drops the backend's Date (the client side adds its own).
        let h = head(b"HTTP/1.1 200 OK\r\nDate: x\r\nConnection: date\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!((h.fields.lines(), h.fields.date), (&b"Content-Length: 0\r\n"[..], false));
        // A 204's length goes; HEAD and 304 keep the backend's (a GET's length)
        // without it counting as this message's framing.
        assert_eq!(lines(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false), "");
        let h = head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9, 9\r\n\r\n", false);
        assert_eq!((h.fields.lines(), h.fields.length), (&b"Content-Length: 9, 9\r\n"[..], false));
        // A list of equal lengths is not passed on; the client side writes one.
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", false);
        assert_eq!((h.fields.lines(), h.fields.length), (&b""[..], false));
        // Transfer-Encoding goes (the client side frames the body itself).
        assert_eq!(lines(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVary: a\r\n\r\n", false), "Vary: a\r\n");
    }

    #[test]
    fn fields_into_a_map_keep_repeats_and_order() {
        let h = head(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-A:  v w \r\nset-cookie: b=2\r\n\r\n", false);
        let mut map = HeaderMap::new();
        h.fields.append_to(&mut map);
        let cookies: Vec<_> = map.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(map["x-a"], "v w");
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn interim_partial_and_malformed_heads() {
        assert!(matches!(
            parse_head(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1", false),
            Ok(Parsed::Interim(40))
        ));
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", false), Ok(Parsed::Partial)));
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"SMTP ready\r\n\r\n",
        ] {
            assert!(matches!(parse_head(raw, false), Err(RawError::Malformed(_))), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn request_head_is_origin_form_in_map_order_then_forwarding_fields() {
        let mut h = HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("a"));
        h.append("x-b", HeaderValue::from_static("1"));
        let mut out = BytesMut::new();
        let ip = HeaderValue::from_static("127.0.0.9");
        let fwd = Forwarding::take(&mut h, &ip, "http", None);
        write_request(&mut out, &Method::GET, &Uri::from_static("/p?q=1"), &h, &fwd);
        assert_eq!(
            &out[..],
            &b"GET /p?q=1 HTTP/1.1\r\nhost: a\r\nx-b: 1\r\nx-forwarded-for: 127.0.0.9\r\n\
               x-forwarded-proto: http\r\nx-real-ip: 127.0.0.9\r\n\r\n"[..]
        );
    }

    #[test]
    fn chunk_sizes_and_crlf_search() {
        assert_eq!(find_crlf(b"a\r\n", 10), Ok(Some(1)));
        assert_eq!(find_crlf(b"abc", 10), Ok(None));
        assert!(find_crlf(&[b'a'; 20], 10).is_err());
        assert_eq!([b'0', b'9', b'a', b'F'].map(hex), [0, 9, 10, 15]);
    }
}
