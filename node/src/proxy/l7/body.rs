//! Bodies in both directions. `ProxyBody` is the response hyper sends: the
//! backend's body streamed frame by frame, or a short local body (errors,
//! redirects). When a streamed body ends cleanly its upstream connection goes back
//! to the idle pool; whatever happens, the backend's in-flight count is released
//! exactly once, and when the response is over (`Done`) the request is counted and
//! logged. `RequestBody` is the client's body on its way up: counted, and cut off
//! past the route's `max_body_bytes` (the chunked case; a declared length is
//! refused before any byte is read).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;

use super::raw::RawBody;
use super::upstream::{HostPool, Sender};
use crate::balance::BackendState;
use crate::metrics::TargetMetrics;
use crate::metrics::access_log::{AccessLog, AccessRecord};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Work to do when an upstream exchange is over.
pub struct Finish {
    pub state: Arc<BackendState>,
    /// The connection, returned to `host` if the body was read to the end.
    pub conn: Option<(Arc<HostPool>, Sender)>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.state.release();
    }
}

/// Accounting of one answered request, run when its response body is dropped
/// (sent completely, or the client went away).
pub struct Done {
    pub started: Instant,
    pub status: u16,
    pub target: Arc<TargetMetrics>,
    pub bytes_out: Counter,
    pub sent: u64,
    pub log: Option<(Arc<AccessLog>, Box<AccessRecord>)>,
}

impl Drop for Done {
    fn drop(&mut self) {
        let total = self.started.elapsed();
        self.target.request(self.status, total.as_secs_f64());
        self.bytes_out.inc_by(self.sent);
        if let Some((log, mut rec)) = self.log.take() {
            rec.status = self.status;
            rec.bytes = self.sent;
            rec.total_time = total;
            log.log(*rec);
        }
    }
}

enum Kind {
    Upstream {
        body: Incoming,
        finish: Option<Finish>,
    },
    /// From our own client: the body returns its connection itself.
    Raw {
        body: RawBody,
        finish: Option<Finish>,
    },
    Full(Option<Bytes>),
}

pub struct ProxyBody {
    kind: Kind,
    done: Option<Done>,
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        ProxyBody { kind: Kind::Full(Some(b.into())), done: None }
    }

    pub fn empty() -> Self {
        ProxyBody { kind: Kind::Full(None), done: None }
    }

    pub fn upstream(body: Incoming, finish: Finish) -> Self {
        ProxyBody { kind: Kind::Upstream { body, finish: Some(finish) }, done: None }
    }

    pub fn raw(body: RawBody, finish: Finish) -> Self {
        ProxyBody { kind: Kind::Raw { body, finish: Some(finish) }, done: None }
    }

    pub fn with_done(mut self, done: Done) -> Self {
        self.done = Some(done);
        self
    }

    /// The backend's header fields still outside the response's map (a
    /// response from our own client), once.
    pub fn take_fields(&mut self) -> Option<super::raw::Fields> {
        match &mut self.kind {
            Kind::Raw { body, .. } => body.take_fields(),
            _ => None,
        }
    }

    fn count(&mut self, n: usize) {
        if let Some(d) = &mut self.done {
            d.sent += n as u64;
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper does not poll a body that reports its end up front (empty bodies,
        // HEAD, 204, 304); the connection is still clean and reusable then.
        if let Kind::Upstream { body, finish: Some(f) } = &mut self.kind {
            if body.is_end_stream() {
                if let Some((host, sender)) = f.conn.take() {
                    host.checkin(sender);
                }
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            Kind::Upstream { body, finish } => match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(None) => {
                    if let Some(mut f) = finish.take() {
                        if let Some((host, sender)) = f.conn.take() {
                            host.checkin(sender);
                        }
                    }
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => {
                    // Drop the connection: it is mid-message.
                    if let Some(mut f) = finish.take() {
                        f.conn = None;
                    }
                    Poll::Ready(Some(Err(e.into())))
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(f), Some(d)) = (finish.as_ref(), frame.data_ref()) {
                        f.state.stats.bytes_out.fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Pending => Poll::Pending,
            },
            Kind::Raw { body, finish } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let (Some(f), Some(d)) = (finish.as_ref(), frame.data_ref()) {
                            f.state.stats.bytes_out.fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                    }
                    Poll::Ready(_) => drop(finish.take()),
                    Poll::Pending => {}
                }
                polled
            }
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                let n = d.len();
                this.count(n);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Raw { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Raw { body, .. } => body.size_hint(),
        }
    }
}

/// A client's request body: hyper's, or none at all (the HTTP/1 fast path only
/// serves requests without a body).
pub enum ClientBody {
    Hyper(Incoming),
    Empty,
}

impl ClientBody {
    /// No body bytes will come.
    pub fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::Empty => true,
        }
    }
}

impl From<Incoming> for ClientBody {
    fn from(b: Incoming) -> Self {
        ClientBody::Hyper(b)
    }
}

/// The request body as sent upstream.
pub struct RequestBody {
    inner: ClientBody,
    /// 0 = no limit.
    limit: u64,
    seen: u64,
    bytes_in: Counter,
    /// Set when the limit cut the body, so the handler answers 413.
    over: Option<Arc<AtomicBool>>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body larger than max_body_bytes ({0})")]
pub struct BodyTooLarge(pub u64);

impl RequestBody {
    pub fn new(inner: ClientBody, limit: u64, bytes_in: Counter) -> Self {
        let over = (limit > 0).then(|| Arc::new(AtomicBool::new(false)));
        RequestBody { inner, limit, seen: 0, bytes_in, over }
    }

    /// A flag that turns true if the body is cut for being too large.
    pub fn over_flag(&self) -> Option<Arc<AtomicBool>> {
        self.over.clone()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.inner {
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx),
            ClientBody::Empty => return Poll::Ready(None),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    let n = d.len() as u64;
                    self.seen += n;
                    self.bytes_in.inc_by(n);
                    if self.limit > 0 && self.seen > self.limit {
                        if let Some(f) = &self.over {
                            f.store(true, Ordering::Relaxed);
                        }
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(self.limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::Empty => SizeHint::with_exact(0),
        }
    }
}
