//! The response body the proxy hands to hyper: either the backend's body streamed
//! through frame by frame, or a short local body (errors, redirects). When a
//! streamed body ends cleanly its upstream connection goes back to the idle pool;
//! whatever happens, the backend's in-flight count is released exactly once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::upstream::{HostPool, Sender};
use crate::balance::BackendState;

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

pub enum ProxyBody {
    Upstream { body: Incoming, finish: Option<Finish> },
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(b.into()))
    }

    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper does not poll a body that reports its end up front (empty bodies,
        // HEAD, 204, 304); the connection is still clean and reusable then.
        if let ProxyBody::Upstream { body, finish: Some(f) } = self {
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
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Upstream { body, finish } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match polled {
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
                            f.state.stats.bytes_out.fetch_add(d.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream { body, .. } => body.size_hint(),
        }
    }
}
