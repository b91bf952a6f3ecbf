//! The activator role for one request: hold it until its revision has room (or fail it),
//! take the balancer's choice, and forward it; offer it to another instance when one could
//! not be reached before the request was sent; enforce the revision's timeouts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::body::{Body, Guarded, empty, limited};
use crate::forwarding::Forwarder;
use crate::protocol::{self, Carried};
use crate::queue_proxy::Failed;
use crate::rejection::Rejection;
use crate::request::{HttpRequest, strip_hop_by_hop};
use crate::revision::{Acquired, Backend, Lease, NoBackend, RevKey, RevisionState, Target};

/// Response header naming the instance that served a request (with
/// `dataplane.serving-headers: true`): what an experiment records per request.
pub const SERVED_BY_HEADER: &str = "kantai-served-by";
/// Response header naming the node of that instance.
pub const SERVED_ON_HEADER: &str = "kantai-served-on";
/// Response header present when the request waited for an instance to start (a cold start).
pub const COLD_START_HEADER: &str = "kantai-cold-start";

/// How many instances a request may be offered to when connections fail before it is sent.
const MAX_ATTEMPTS: u32 = 3;

/// How long an instance that could not be reached is left out of this node's choices: long
/// enough for the news of its death to arrive (its agent's report, or its node's NotReady).
const EJECTION: Duration = Duration::from_secs(5);

/// The activator role of this node.
pub struct Activator {
    /// This node.
    node: String,
    forwarder: Forwarder,
    /// Requests held per revision before 503.
    hold_limit: u32,
    max_body_bytes: u64,
    serving_headers: bool,
    /// Revisions that have requests but no room, for the autoscaler.
    pub(crate) pokes: mpsc::UnboundedSender<RevKey>,
}

impl Activator {
    /// The activator of `node`, forwarding with `forwarder`.
    pub fn new(
        node: &str,
        forwarder: Forwarder,
        limits: &crate::gateway::Limits,
        pokes: mpsc::UnboundedSender<RevKey>,
    ) -> Activator {
        Activator {
            node: node.to_owned(),
            forwarder,
            hold_limit: limits.hold_limit,
            max_body_bytes: limits.max_body_bytes,
            serving_headers: limits.serving_headers,
            pokes,
        }
    }

    /// Serves a request for revision `rev` from `client`.
    pub async fn serve(
        &self,
        rev: &Arc<RevisionState>,
        mut req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<Body> {
        let cfg = rev.config();
        let start = Instant::now();
        let deadline = start + cfg.timeout;
        // Until the response starts, idleTimeoutSeconds counts from the request (Knative's
        // timeout handler): whichever of the three comes first is the one that fires.
        let (start_deadline, start_setting) = [
            (Some(cfg.timeout), "timeoutSeconds"),
            (cfg.response_start, "responseStartTimeoutSeconds"),
            (cfg.idle, "idleTimeoutSeconds"),
        ]
        .into_iter()
        .filter_map(|(d, setting)| d.map(|d| (d, setting)))
        .min_by_key(|(d, _)| *d)
        .map_or((cfg.timeout, "timeoutSeconds"), |x| x);
        let start_deadline_at = start + start_deadline;
        let carried = Carried::of(req.version(), req.headers());
        let client_side = protocol::client_side(&mut req, &carried);
        let entry = rev.enter();
        let limit = self.hold_limit;
        let no_backend = |e: NoBackend| match e {
            NoBackend::HoldQueueFull => Rejection::HoldQueueFull {
                revision: rev.key.1.clone(),
                limit,
            },
            NoBackend::TimedOut => Rejection::TimedOut {
                after: cfg.timeout,
                setting: "timeoutSeconds",
            },
            NoBackend::Removed => Rejection::Removed(rev.key.1.clone()),
            NoBackend::CannotStart(why) => Rejection::CannotStart {
                revision: rev.key.1.clone(),
                why,
            },
        };
        // The decision borrows the request; only the wait is asynchronous.
        let acquire = |req: &http::request::Parts| {
            let view = HttpRequest::of_parts(req, Some(client.ip()));
            rev.acquire(
                &view,
                || view.to_owned(),
                limit,
                || {
                    if rev.should_poke() {
                        let _ = self.pokes.send(rev.key.clone());
                    }
                },
            )
        };
        let (head, body) = req.into_parts();
        let acquired = acquire(&head);
        // A request that finds no instance anywhere waits for a cold start.
        let cold = rev.backend_count() == 0;
        // The remote instance a request went to last: suspected when the request times out.
        let mut forwarded: Option<Arc<Backend>> = None;
        let work = async {
            let (mut lease, waited_cold) = match acquired.map_err(no_backend)? {
                Acquired::Now(l) => (l, false),
                // Boxed, as the retry below: a wait is the rare case, and its state would
                // make every request's future larger (moved several times on its way to
                // the connection that polls it).
                Acquired::Held(h) => {
                    let l = Box::pin(h.wait(deadline)).await.map_err(no_backend)?;
                    if cold {
                        rev.record_cold_start(start.elapsed());
                    }
                    (l, cold)
                }
            };
            let mut parts = head;
            strip_hop_by_hop(&mut parts.headers);
            carried.restore(&mut parts.headers);
            add_forwarded_for(&mut parts.headers, client);
            let mut req = Request::from_parts(parts, limited(body, self.max_body_bytes));
            let mut attempt = 1;
            loop {
                let sent = Instant::now();
                if matches!(lease.backend.target, Target::Remote { .. }) {
                    forwarded = Some(lease.backend.clone());
                }
                match self.forwarder.forward(&lease, req).await {
                    Ok(mut resp) => {
                        // Time to the response head: what latency-aware balancers learn from.
                        rev.observe(&lease.backend, sent.elapsed());
                        if self.serving_headers {
                            serving_headers(&mut resp, &lease, &self.node, waited_cold);
                        }
                        return Ok::<_, Rejection>((resp, lease));
                    }
                    Err(Failed::Answer(r)) => return Err(r),
                    Err(Failed::Broken(r)) => {
                        // Left out before its lease is given back: the held request that lease
                        // frees must not be handed to an instance that just died.
                        rev.eject(&lease.backend, EJECTION);
                        return Err(r);
                    }
                    Err(Failed::Unsent(again, why)) => {
                        rev.eject(&lease.backend, EJECTION);
                        if attempt >= MAX_ATTEMPTS {
                            return Err(Rejection::Unreachable {
                                revision: rev.key.1.clone(),
                                attempts: attempt,
                                last: why,
                            });
                        }
                        attempt += 1;
                        drop(lease);
                        let (head, body) = again.into_parts();
                        lease = match acquire(&head).map_err(no_backend)? {
                            Acquired::Now(l) => l,
                            Acquired::Held(h) => {
                                Box::pin(h.wait(deadline)).await.map_err(no_backend)?
                            }
                        };
                        req = Request::from_parts(head, body);
                    }
                }
            }
        };
        // How bytes of an upgraded connection to another node cross the emulated link.
        let mut crossing = None;
        let (mut resp, node) = match tokio::time::timeout_at(start_deadline_at, work).await {
            Err(_) => {
                crossing = None;
                // No answer in time from another node: is that node (or the link to it) alive?
                if let Some(b) = &forwarded
                    && let Target::Remote { node, .. } = &b.target
                {
                    self.forwarder.suspect(node);
                }
                (
                    Rejection::TimedOut {
                        after: start_deadline,
                        setting: start_setting,
                    }
                    .into_response(),
                    usize::MAX,
                )
            }
            Ok(Err(r)) => (r.into_response(), usize::MAX),
            Ok(Ok((resp, lease))) => {
                if client_side.is_some() {
                    crossing = self.forwarder.crossing(&lease.backend);
                }
                let idle = cfg.idle;
                let node = lease.backend.node;
                (
                    resp.map(|b| {
                        Guarded::new(b, (lease, entry), Some(deadline), idle).boxed_unsync()
                    }),
                    node,
                )
            }
        };
        rev.record(node, resp.status().as_u16(), start.elapsed());
        // An upgraded connection holds its lease and slots (in the body) while it is open.
        protocol::splice(client_side, &mut resp, empty(), crossing);
        resp
    }
}

/// Names the instance and node that served a response, and marks a cold start.
fn serving_headers(resp: &mut Response<Body>, lease: &Lease, here: &str, cold: bool) {
    let node = match &lease.backend.target {
        Target::Local(_) => here,
        Target::Remote { node, .. } => node.as_str(),
    };
    let h = resp.headers_mut();
    for (name, value) in [
        (SERVED_BY_HEADER, lease.backend.name.as_str()),
        (SERVED_ON_HEADER, node),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    if cold {
        h.insert(COLD_START_HEADER, HeaderValue::from_static("true"));
    }
}

/// `X-Forwarded-For`, made once at compile time rather than parsed per request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Appends the client to `X-Forwarded-For`.
fn add_forwarded_for(h: &mut http::HeaderMap, client: SocketAddr) {
    let ip = client.ip();
    match h.entry(X_FORWARDED_FOR) {
        http::header::Entry::Vacant(v) => {
            v.insert(client_value(ip));
        }
        http::header::Entry::Occupied(mut o) => {
            // A value that is not text is replaced, as one that is absent.
            let v = match o.get().to_str() {
                Ok(prev) => HeaderValue::from_str(&format!("{prev}, {ip}")).ok(),
                Err(_) => Some(client_value(ip)),
            };
            if let Some(v) = v {
                o.insert(v);
            }
        }
    }
}

thread_local! {
    /// The last client's address as a header value: a connection's requests all come from
    /// one client, so formatting it once per run of them saves a formatting and an
    /// allocation per request (a clone shares the bytes).
    static CLIENT_VALUE: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// `ip` as a header value.
fn client_value(ip: IpAddr) -> HeaderValue {
    CLIENT_VALUE.with_borrow_mut(|cached| match cached {
        Some((last, v)) if *last == ip => v.clone(),
        _ => {
            let v = HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
            *cached = Some((ip, v.clone()));
            v
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(prev: Option<&'static str>, client: &str) -> String {
        let mut h = http::HeaderMap::new();
        if let Some(p) = prev {
            h.insert("x-forwarded-for", HeaderValue::from_static(p));
        }
        add_forwarded_for(&mut h, client.parse().expect("addr"));
        h["x-forwarded-for"].to_str().expect("ascii").to_owned()
    }

    #[test]
    fn the_client_is_appended_to_x_forwarded_for() {
        assert_eq!(forwarded(None, "10.0.0.1:5000"), "10.0.0.1");
        assert_eq!(
            forwarded(Some("192.0.2.7"), "10.0.0.1:5000"),
            "192.0.2.7, 10.0.0.1"
        );
    }

    #[test]
    fn each_client_gets_its_own_address_after_another() {
        assert_eq!(forwarded(None, "10.0.0.1:5000"), "10.0.0.1");
        assert_eq!(forwarded(None, "[::1]:5000"), "::1");
        assert_eq!(forwarded(None, "10.0.0.1:5001"), "10.0.0.1");
    }
}
