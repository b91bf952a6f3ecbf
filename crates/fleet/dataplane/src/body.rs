//! Response bodies that hold resources until they end, and enforce the revision's total and
//! idle timeouts while they stream; requests kept so that one that never left can be sent
//! to another instance.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

use http_body_util::combinators::UnsyncBoxBody;

/// Errors of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response the data plane forwards.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A client's request body, streamed as it arrives, failing with [`TooLarge`] once it
/// exceeds `max_bytes` (the request is then answered 413, see [`over_limit`]).
pub fn limited<B>(body: B, max_bytes: u64) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        // Most requests have no body: nothing to limit, and nothing to allocate.
        return empty();
    }
    http_body_util::Limited::new(body, usize::try_from(max_bytes).unwrap_or(usize::MAX))
        .map_err(move |e: BoxError| -> BoxError {
            if e.is::<http_body_util::LengthLimitError>() {
                Box::new(TooLarge(max_bytes))
            } else {
                e
            }
        })
        .boxed_unsync()
}

/// A request body that went over the limit (in bytes) while it streamed.
#[derive(Debug)]
pub struct TooLarge(pub u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body is larger than the limit of {} bytes",
            self.0
        )
    }
}

impl std::error::Error for TooLarge {}

/// The limit a request body went over, when that is what made sending it fail (the client
/// wraps the body's error in its own).
pub fn over_limit(e: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(t) = c.downcast_ref::<TooLarge>() {
            return Some(t.0);
        }
        cause = c.source();
    }
    None
}

/// An empty body.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|e: std::convert::Infallible| match e {})
        .boxed_unsync()
}

/// A body that keeps `guard` alive until it ends (or is dropped), fails once `deadline`
/// passes, and fails when no data arrives for `idle`.
pub struct Guarded<B, G> {
    body: B,
    _guard: G,
    deadline: Option<Instant>,
    idle: Option<Duration>,
    // The timers are made the first time the body has to wait: most responses never do.
    deadline_timer: Option<Pin<Box<Sleep>>>,
    idle_timer: Option<Pin<Box<Sleep>>>,
    /// Whether data came since the idle timer was last set.
    fresh: bool,
}

impl<B, G> Guarded<B, G> {
    /// Wraps `body`.
    pub fn new(
        body: B,
        guard: G,
        deadline: Option<Instant>,
        idle: Option<Duration>,
    ) -> Guarded<B, G> {
        Guarded {
            body,
            _guard: guard,
            deadline,
            idle,
            deadline_timer: None,
            idle_timer: None,
            fresh: true,
        }
    }
}

/// A response cut short by a timeout.
#[derive(Debug)]
pub struct TimedOut(&'static str);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TimedOut {}

impl<B, G> HttpBody for Guarded<B, G>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    G: Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                this.fresh = true;
                return Poll::Ready(Some(Ok(f)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if let Some(at) = this.deadline {
            let timer = this
                .deadline_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(Box::new(TimedOut(
                    "kantai: the request exceeded timeoutSeconds",
                )))));
            }
        }
        if let Some(d) = this.idle {
            // Idleness counts from the first wait after the last data.
            if std::mem::take(&mut this.fresh) {
                let until = Instant::now() + d;
                match &mut this.idle_timer {
                    Some(t) => t.as_mut().reset(until),
                    None => this.idle_timer = Some(Box::pin(tokio::time::sleep_until(until))),
                }
            }
            if let Some(t) = &mut this.idle_timer
                && t.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Some(Err(Box::new(TimedOut(
                    "kantai: the response was idle longer than idleTimeoutSeconds",
                )))));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request that can go to another instance if it never left this node: its head is kept
/// and its body can be taken back as long as nothing read it. A connection that fails
/// before the request is written (the instance or its node died, unbeknown to this node
/// yet) then costs a retry, not a 502.
pub struct Resendable {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
    /// Where an unread body comes back to; `None` for a request without a body.
    slot: Option<Arc<Mutex<Option<Body>>>>,
}

impl Resendable {
    /// Splits `req` into the request to send and what it takes to send it again.
    pub fn keep(req: http::Request<Body>) -> (http::Request<Body>, Resendable) {
        let (parts, body) = req.into_parts();
        let (body, slot) = if body.is_end_stream() {
            (body, None)
        } else {
            let slot = Arc::new(Mutex::new(None));
            let body = Reclaimable {
                body: Some(body),
                read: false,
                slot: slot.clone(),
            };
            (body.boxed_unsync(), Some(slot))
        };
        let kept = Resendable {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            slot,
        };
        (http::Request::from_parts(parts, body), kept)
    }

    /// The request again, once the one sent was dropped unsent; `None` if its body was read.
    pub fn take_back(self) -> Option<http::Request<Body>> {
        let body = match self.slot {
            None => empty(),
            Some(slot) => slot.lock().take()?,
        };
        let mut req = http::Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        Some(req)
    }
}

/// A body that returns to its slot when dropped unread.
struct Reclaimable {
    body: Option<Body>,
    read: bool,
    slot: Arc<Mutex<Option<Body>>>,
}

impl HttpBody for Reclaimable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        this.read = true;
        match &mut this.body {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Reclaimable {
    fn drop(&mut self) {
        if !self.read {
            *self.slot.lock() = self.body.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn request(body: &'static str) -> http::Request<Body> {
        let body = if body.is_empty() {
            http_body_util::Empty::new()
                .map_err(|e: std::convert::Infallible| match e {})
                .boxed_unsync()
        } else {
            Full::new(Bytes::from_static(body.as_bytes()))
                .map_err(|e: std::convert::Infallible| match e {})
                .boxed_unsync()
        };
        http::Request::post("http://a/p?q=1")
            .header("x-k", "v")
            .body(body)
            .expect("request")
    }

    #[tokio::test]
    async fn an_unread_request_comes_back_whole() {
        for text in ["", "payload"] {
            let (sent, kept) = Resendable::keep(request(text));
            drop(sent);
            let again = kept.take_back().expect("unread, so it comes back");
            assert_eq!(again.method(), http::Method::POST);
            assert_eq!(again.uri(), "http://a/p?q=1");
            assert_eq!(again.headers()["x-k"], "v");
            let body = again.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(body, text.as_bytes());
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_with_the_limit_found_through_wrapping_errors() {
        #[derive(Debug)]
        struct Wrapped(BoxError);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("sending failed")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&*self.0)
            }
        }
        let body = limited(Full::new(Bytes::from_static(b"0123456789")), 4);
        let err = body.collect().await.expect_err("over the limit");
        assert_eq!(over_limit(&Wrapped(err)), Some(4));
    }

    #[tokio::test]
    async fn a_body_within_the_limit_streams_whole() {
        let body = limited(Full::new(Bytes::from_static(b"0123")), 4);
        let got = body.collect().await.expect("within the limit").to_bytes();
        assert_eq!(got, &b"0123"[..]);
    }

    #[tokio::test]
    async fn a_request_whose_body_was_read_does_not_come_back() {
        let (sent, kept) = Resendable::keep(request("payload"));
        let _ = sent.into_body().frame().await;
        assert!(kept.take_back().is_none());
    }
}
