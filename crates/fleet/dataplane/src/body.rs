//! Response bodies that hold resources until they end, and enforce the revision's total and
//! idle timeouts while they stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::BoxError;

/// A body that keeps `guard` alive until it ends (or is dropped), fails once `deadline`
/// passes, and fails when no data arrives for `idle`.
pub struct Guarded<B, G> {
    body: B,
    _guard: G,
    deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
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
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
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

impl<B, G> Body for Guarded<B, G>
where
    B: Body<Data = Bytes> + Unpin,
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
                if let Some((d, s)) = &mut this.idle {
                    s.as_mut().reset(Instant::now() + *d);
                }
                return Poll::Ready(Some(Ok(f)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if let Some(s) = &mut this.deadline
            && s.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(TimedOut(
                "kantai: the request exceeded timeoutSeconds",
            )))));
        }
        if let Some((_, s)) = &mut this.idle
            && s.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(TimedOut(
                "kantai: the response was idle longer than idleTimeoutSeconds",
            )))));
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
