//! The queue-proxy role: a request takes a concurrency slot of a local instance (or waits in
//! its queue, or is refused when that is full), then goes to the instance on loopback: over
//! one of the instance's kept-alive HTTP/1.1 connections (`upstream.rs`), or over HTTP/2 when
//! the instance speaks h2c (see `protocol`).

use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;

use crate::body::{Body, Guarded, Resendable, over_limit};
use crate::data_port::{INSTANCE_HEADER, ORIGIN_HEADER};
use crate::instance::{Entering, LocalInstance, Slot};
use crate::link::HttpClient;
use crate::protocol::{self, Carried, Wire};
use crate::rejection::Rejection;
use crate::request::HttpRequest;
use crate::upstream::UpstreamError;

/// Why a request was not answered by an instance.
// The request given back stays inline: boxing it would cost an allocation per retry.
#[allow(clippy::large_enum_variant)]
pub enum Failed {
    /// The client's answer (an error).
    Answer(Rejection),
    /// The client's answer (502): a local instance's connection broke before its response
    /// began, so it may have seen the request (which is not sent again) and has most likely
    /// died (it is left out like an unreachable one).
    Broken(Rejection),
    /// The request never reached the instance (its connection failed, or its node no longer
    /// serves it): here it is again, for another instance, with the reason.
    Unsent(Request<Body>, String),
}

/// `Failed::Unsent` when `kept` gives the request back (nothing of it was read), else the
/// client's 502.
pub fn unsent(kept: Resendable, why: String) -> Failed {
    match kept.take_back() {
        Some(req) => Failed::Unsent(req, why),
        None => Failed::Answer(Rejection::BadGateway(why)),
    }
}

/// The queue-proxy role of this node's instances.
#[derive(Clone)]
pub struct QueueProxy {
    h2: HttpClient,
}

impl QueueProxy {
    /// Sends to h2c instances with `h2`; HTTP/1.1 instances have connections of their own.
    pub fn new(h2: HttpClient) -> QueueProxy {
        QueueProxy { h2 }
    }

    /// A concurrency slot of `inst` (or 503 when its queue is full), then the instance.
    pub async fn serve(
        &self,
        inst: &Arc<LocalInstance>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, Failed> {
        let full = || {
            Failed::Answer(Rejection::InstanceQueueFull {
                instance: inst.name.clone(),
                cc: inst.cc,
            })
        };
        let entering = inst
            .enter(&HttpRequest::of(&req, None))
            .map_err(|_| full())?;
        // The paths other than an HTTP/1 exchange with room (a queue wait, HTTP/2) are
        // boxed: their state would make every request's future larger, and it is moved
        // several times on its way to the connection that polls it.
        let slot = match entering {
            Entering::Now(s) => s,
            Entering::Queued(q) => Box::pin(q.wait()).await.map_err(|_| full())?,
        };
        req.headers_mut().remove(INSTANCE_HEADER);
        req.headers_mut().remove(ORIGIN_HEADER);
        let wire = protocol::to_instance(inst.h2c, &Carried::of(req.version(), req.headers()));
        protocol::prepare(&mut req, wire);
        // A switched connection's slot is kept by the hop that splices it, with the body.
        match wire {
            Wire::Http1 => http1(inst, req, slot).await,
            Wire::Http2 => Box::pin(self.http2(inst, req, slot)).await,
        }
    }

    /// Over HTTP/2, with the client every h2c instance of this node shares.
    async fn http2(
        &self,
        inst: &LocalInstance,
        mut req: Request<Body>,
        slot: Slot,
    ) -> Result<Response<Body>, Failed> {
        set_target(&mut req, &format!("127.0.0.1:{}", inst.port)).map_err(Failed::Answer)?;
        let (req, kept) = Resendable::keep(req);
        match self.h2.request(req).await {
            Ok(resp) => Ok(resp.map(|b| Guarded::new(b, slot, None, None).boxed_unsync())),
            Err(e) => {
                if let Some(limit) = over_limit(&e) {
                    return Err(Failed::Answer(Rejection::TooLarge(limit)));
                }
                let why = format!("kantai: instance {} failed to answer: {e}", inst.name);
                Err(if e.is_connect() {
                    unsent(kept, why)
                } else {
                    Failed::Broken(Rejection::BadGateway(why))
                })
            }
        }
    }
}

/// Over one of the instance's own HTTP/1.1 connections.
async fn http1(
    inst: &LocalInstance,
    req: Request<Body>,
    slot: Slot,
) -> Result<Response<Body>, Failed> {
    match inst.upstream.send(req, slot).await {
        Ok(resp) => Ok(resp),
        Err(UpstreamError::Unsent(req, why)) => Err(Failed::Unsent(
            *req,
            format!("kantai: instance {} failed to answer: {why}", inst.name),
        )),
        Err(UpstreamError::Failed(e)) => {
            if let Some(limit) = over_limit(&e) {
                return Err(Failed::Answer(Rejection::TooLarge(limit)));
            }
            Err(Failed::Broken(Rejection::BadGateway(format!(
                "kantai: instance {} failed to answer: {e}",
                inst.name
            ))))
        }
    }
}

/// Makes the request's URI absolute and its `Host` the instance's, for the HTTP/2 client.
fn set_target(req: &mut Request<Body>, authority: &str) -> Result<(), Rejection> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri: Uri = format!("http://{authority}{pq}")
        .parse()
        .map_err(|_| Rejection::InvalidPath)?;
    *req.uri_mut() = uri;
    if let Ok(v) = HeaderValue::from_str(authority) {
        // The instance sees the host it listens on, as behind Knative's queue-proxy; the
        // original is kept for applications that care.
        let original = req.headers_mut().insert(header::HOST, v);
        if let Some(o) = original {
            req.headers_mut()
                .insert(HeaderName::from_static("x-forwarded-host"), o);
        }
    }
    Ok(())
}
