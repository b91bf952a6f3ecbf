//! The two listeners of a node: the gateway (clients' requests) and the data port (requests
//! other nodes forward to this node's instances, and latency probes).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::debug;

use crate::body::{Guarded, Resendable};
use crate::local::{Entering, LocalInstance};
use crate::request::HttpRequest;
use crate::revision::{Acquired, Lease, NoBackend, Target};
use crate::{
    Body, BoxError, COLD_START_HEADER, DataPlane, INSTANCE_HEADER, NOT_SERVING_HEADER,
    ORIGIN_HEADER, PING_PATH, SERVED_BY_HEADER, SERVED_ON_HEADER, SERVER_TIME_HEADER,
};
use kantai_api::auth::PEER_TOKEN_HEADER;

/// The bound sockets of a node's data plane.
pub struct Listeners {
    /// Where clients send requests.
    pub gateway: TcpListener,
    /// Where other nodes forward requests.
    pub data: TcpListener,
}

/// Serves both listeners until `shutdown` completes (connections in progress finish).
pub async fn serve(dp: DataPlane, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let gw = tokio::spawn(accept(dp.clone(), listeners.gateway, Role::Gateway));
    let data = tokio::spawn(accept(dp, listeners.data, Role::Data));
    shutdown.await;
    gw.abort();
    data.abort();
}

#[derive(Clone, Copy)]
enum Role {
    Gateway,
    Data,
}

async fn accept(dp: DataPlane, listener: TcpListener, role: Role) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                debug!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let dp = dp.clone();
        tokio::spawn(async move {
            let timeout = dp.inner.limits.header_read_timeout;
            let svc = service_fn(move |req| {
                let dp = dp.clone();
                async move {
                    Ok::<_, Infallible>(match role {
                        Role::Gateway => gateway(&dp, req, peer).await,
                        Role::Data => data(&dp, req, peer).await,
                    })
                }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(msg.into() + "\n"))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

async fn gateway(dp: &DataPlane, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let inner = &dp.inner;
    let Some(host) = crate::routes::request_host(&req) else {
        return text(
            StatusCode::BAD_REQUEST,
            "kantai: the request has no Host header",
        );
    };
    let table = inner.routes.load();
    let Some(route) = table.hosts.get(&host) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "kantai: no service answers to host {host:?} (services are reached as NAME.NAMESPACE.{})",
                inner.domain.read()
            ),
        );
    };
    if content_length(req.headers()).is_some_and(|l| l > inner.limits.max_body_bytes) {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "kantai: the request body is larger than the limit of {} bytes",
                inner.limits.max_body_bytes
            ),
        );
    }
    let picked = route.pick(&mut *inner.rng.lock()).cloned();
    let Some(rev) = picked else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            match &route.unavailable {
                Some(why) => format!("kantai: {} has no revision to serve: {why}", route.service),
                None => format!("kantai: {} has no revision to serve", route.service),
            },
        );
    };
    let cfg = rev.config();
    let start = Instant::now();
    let deadline = start + cfg.timeout;
    let start_deadline = cfg
        .response_start
        .map_or(deadline, |d| (start + d).min(deadline));
    let entry = rev.enter();
    let key = rev.key.clone();
    let pokes = inner.pokes.clone();
    let limit = inner.limits.hold_limit;
    let no_backend = |e: NoBackend| match e {
        NoBackend::HoldQueueFull => {
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "kantai: {limit} requests already wait for {}; try again later",
                    rev.key.1
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        NoBackend::TimedOut => timeout_response(cfg.timeout, "timeoutSeconds"),
        NoBackend::Removed => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "kantai: revision {} was removed while the request waited for it",
                rev.key.1
            ),
        ),
        NoBackend::CannotStart(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("kantai: revision {} cannot start: {why}", rev.key.1),
        ),
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
                    let _ = pokes.send(key.clone());
                }
            },
        )
    };
    let (head, body) = req.into_parts();
    let acquired = acquire(&head);
    // A request that finds no instance anywhere waits for a cold start.
    let cold = rev.backend_count() == 0;
    // The remote instance a request went to last: suspected when the request times out.
    let mut forwarded: Option<Arc<crate::revision::Backend>> = None;
    let work = async {
        let (mut lease, waited_cold) = match acquired.map_err(no_backend)? {
            Acquired::Now(l) => (l, false),
            Acquired::Held(h) => {
                let l = h.wait(deadline).await.map_err(no_backend)?;
                if cold {
                    rev.record_cold_start(start.elapsed());
                }
                (l, cold)
            }
        };
        let mut parts = head;
        strip_hop_by_hop(&mut parts.headers);
        add_forwarded_for(&mut parts.headers, client);
        let mut req = Request::from_parts(parts, limited(dp, body));
        let mut attempt = 1;
        loop {
            let sent = Instant::now();
            if matches!(lease.backend.target, Target::Remote { .. }) {
                forwarded = Some(lease.backend.clone());
            }
            match forward(dp, &lease, req).await {
                Ok(mut resp) => {
                    // Time to the response head: what latency-aware balancers learn from.
                    rev.observe(&lease.backend, sent.elapsed());
                    if inner.limits.serving_headers {
                        serving_headers(&mut resp, &lease, &inner.node, waited_cold);
                    }
                    return Ok::<_, Response<Body>>((resp, lease));
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
                        return Err(text(
                            StatusCode::BAD_GATEWAY,
                            format!(
                                "kantai: no instance of {} could be reached after {attempt} attempts; the last: {why}",
                                rev.key.1
                            ),
                        ));
                    }
                    attempt += 1;
                    drop(lease);
                    let (head, body) = again.into_parts();
                    lease = acquire(&head)
                        .map_err(no_backend)
                        .map(|a| async move {
                            match a {
                                Acquired::Now(l) => Ok(l),
                                Acquired::Held(h) => h.wait(deadline).await,
                            }
                        })?
                        .await
                        .map_err(no_backend)?;
                    req = Request::from_parts(head, body);
                }
            }
        }
    };
    let (resp, node) = match tokio::time::timeout_at(start_deadline, work).await {
        Err(_) => {
            // No answer in time from another node: is that node (or the link to it) alive?
            if let Some(b) = &forwarded
                && let Target::Remote { node, .. } = &b.target
            {
                dp.suspect(node);
            }
            let (d, what) = match cfg.response_start {
                Some(d) if start + d < deadline => (d, "responseStartTimeoutSeconds"),
                _ => (cfg.timeout, "timeoutSeconds"),
            };
            (timeout_response(d, what), usize::MAX)
        }
        Ok(Err(r)) => (r, usize::MAX),
        Ok(Ok((resp, lease))) => {
            let idle = cfg.idle;
            let node = lease.backend.node;
            (
                resp.map(|b| Guarded::new(b, (lease, entry), Some(deadline), idle).boxed_unsync()),
                node,
            )
        }
    };
    rev.record(node, resp.status().as_u16(), start.elapsed());
    resp
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

fn timeout_response(d: std::time::Duration, what: &str) -> Response<Body> {
    text(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "kantai: request timed out: no response within {}s ({what})",
            d.as_secs_f64()
        ),
    )
}

/// The headers a proxy must not forward (RFC 9110 §7.6.1), plus those `Connection` names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        h.remove(n);
    }
}

fn add_forwarded_for(h: &mut HeaderMap, client: SocketAddr) {
    let ip = client.ip().to_string();
    let value = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
}

fn limited(dp: &DataPlane, body: Incoming) -> Body {
    Limited::new(body, dp.inner.limits.max_body_bytes as usize)
        .map_err(|e: BoxError| e)
        .boxed_unsync()
}

fn set_target(req: &mut Request<Body>, authority: &str) -> Result<(), Response<Body>> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri: Uri = format!("http://{authority}{pq}")
        .parse()
        .map_err(|_| text(StatusCode::BAD_REQUEST, "kantai: invalid request path"))?;
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

/// How many instances a request may be offered to when connections fail before it is sent.
const MAX_ATTEMPTS: u32 = 3;

/// How long an instance that could not be reached is left out of this node's choices: long
/// enough for the news of its death to arrive (its agent's report, or its node's NotReady).
const EJECTION: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a request was not answered by an instance.
enum Failed {
    /// The client's answer (an error).
    Answer(Response<Body>),
    /// The client's answer (502): a local instance's connection broke before its response
    /// began, so it may have seen the request (which is not sent again) and has most likely
    /// died (it is left out like an unreachable one).
    Broken(Response<Body>),
    /// The request never reached the instance (its connection failed, or its node no longer
    /// serves it): here it is again, for another instance, with the reason.
    Unsent(Request<Body>, String),
}

/// `Failed::Unsent` when `kept` gives the request back (nothing of it was read), else the
/// client's 502.
fn unsent(kept: Resendable, why: String) -> Failed {
    match kept.take_back() {
        Some(req) => Failed::Unsent(req, why),
        None => Failed::Answer(text(StatusCode::BAD_GATEWAY, why)),
    }
}

async fn forward(
    dp: &DataPlane,
    lease: &Lease,
    req: Request<Body>,
) -> Result<Response<Body>, Failed> {
    match &lease.backend.target {
        Target::Local(inst) => to_instance(dp, inst, req).await,
        Target::Remote { node, addr } => {
            let mut req = req;
            let h = req.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&lease.backend.name) {
                h.insert(INSTANCE_HEADER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&dp.inner.node) {
                h.insert(ORIGIN_HEADER, v);
            }
            match dp.inner.peer_token.get() {
                Some(t) => {
                    h.insert(PEER_TOKEN_HEADER, t.clone());
                }
                // Whatever the client sent under that name goes no further.
                None => {
                    h.remove(PEER_TOKEN_HEADER);
                }
            }
            // The Host stays the client's: the data port routes by the instance header.
            let pq = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            *req.uri_mut() = format!("http://{addr}{pq}").parse().map_err(|_| {
                Failed::Answer(text(
                    StatusCode::BAD_REQUEST,
                    "kantai: invalid request path",
                ))
            })?;
            let out_bytes = content_length(req.headers()).unwrap_or(0);
            let start = Instant::now();
            dp.inner.netem.cross(node, out_bytes).await;
            let (req, kept) = Resendable::keep(req);
            let resp = match dp.inner.client.request(req).await {
                Ok(r) => r,
                Err(e) => {
                    let why = format!(
                        "kantai: node {node} did not answer for instance {}: {e}",
                        lease.backend.name
                    );
                    return Err(if e.is_connect() {
                        unsent(kept, why)
                    } else {
                        Failed::Answer(text(StatusCode::BAD_GATEWAY, why))
                    });
                }
            };
            let back_bytes = content_length(resp.headers()).unwrap_or(0);
            dp.inner.netem.cross(node, back_bytes).await;
            if resp.headers().contains_key(NOT_SERVING_HEADER) {
                return Err(unsent(
                    kept,
                    format!(
                        "kantai: instance {} no longer serves on node {node}",
                        lease.backend.name
                    ),
                ));
            }
            drop(kept);
            // A passive round-trip sample: the whole exchange minus the time the request
            // spent on the other node (monlat pinged; this measures the path requests take).
            let server_us = resp
                .headers()
                .get(SERVER_TIME_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(us) = server_us {
                let total = start.elapsed().as_secs_f64() * 1e3;
                dp.record_rtt(node, (total - us as f64 / 1e3).max(0.0));
            }
            let mut resp = resp;
            resp.headers_mut().remove(SERVER_TIME_HEADER);
            Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
        }
    }
}

/// The queue-proxy role: a concurrency slot (or 503 when the queue is full), then the
/// instance on loopback.
async fn to_instance(
    dp: &DataPlane,
    inst: &Arc<LocalInstance>,
    mut req: Request<Body>,
) -> Result<Response<Body>, Failed> {
    let full = || {
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "kantai: instance {} has {} requests queued (10 × containerConcurrency); try again later",
                inst.name,
                inst.cc * crate::QUEUE_DEPTH_FACTOR
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Failed::Answer(r)
    };
    let entering = inst
        .enter(&HttpRequest::of(&req, None))
        .map_err(|_| full())?;
    let slot = match entering {
        Entering::Now(s) => s,
        Entering::Queued(q) => q.wait().await.map_err(|_| full())?,
    };
    req.headers_mut().remove(INSTANCE_HEADER);
    req.headers_mut().remove(ORIGIN_HEADER);
    set_target(&mut req, &format!("127.0.0.1:{}", inst.port)).map_err(Failed::Answer)?;
    let (req, kept) = Resendable::keep(req);
    match dp.inner.client.request(req).await {
        Ok(resp) => Ok(resp.map(|b| Guarded::new(b, slot, None, None).boxed_unsync())),
        Err(e) => {
            let why = format!("kantai: instance {} failed to answer: {e}", inst.name);
            Err(if e.is_connect() {
                unsent(kept, why)
            } else {
                Failed::Broken(text(StatusCode::BAD_GATEWAY, why))
            })
        }
    }
}

async fn data(dp: &DataPlane, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    if !dp.is_from_peer(req.headers()) {
        debug!(%client, "a request without the fleet's peer token on the data port");
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "kantai: the data port of node {} serves the fleet's nodes only (no valid {PEER_TOKEN_HEADER} header); clients use the gateway",
                dp.inner.node
            ),
        );
    }
    if req.uri().path() == PING_PATH {
        return text(StatusCode::OK, "pong");
    }
    let Some(name) = req
        .headers()
        .get(INSTANCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("kantai: the data port needs a {INSTANCE_HEADER} header"),
        );
    };
    let inst = dp.inner.local.read().get(&name).cloned();
    let Some(inst) = inst.filter(|i| i.takes_forwarded()) else {
        return not_serving(&name, &dp.inner.node);
    };
    let arrived = Instant::now();
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The instance never sees the fleet's secret.
    parts.headers.remove(PEER_TOKEN_HEADER);
    let _ = client;
    let req = Request::from_parts(parts, limited(dp, body));
    let mut resp = match to_instance(dp, &inst, req).await {
        Ok(r) | Err(Failed::Answer(r) | Failed::Broken(r)) => r,
        // The sender may offer it to another instance.
        Err(Failed::Unsent(..)) => not_serving(&name, &dp.inner.node),
    };
    // Lets the sender subtract this node's share from the round trip it measures.
    let us = arrived.elapsed().as_micros().to_string();
    if let Ok(v) = HeaderValue::from_str(&us) {
        resp.headers_mut()
            .insert(HeaderName::from_static(SERVER_TIME_HEADER), v);
    }
    resp
}

/// The data port's answer for an instance that does not serve here (any more): 503, marked
/// so that the sending node knows the instance never saw the request.
fn not_serving(name: &str, node: &str) -> Response<Body> {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("kantai: instance {name} is not serving on node {node}"),
    );
    r.headers_mut()
        .insert(NOT_SERVING_HEADER, HeaderValue::from_static("1"));
    r
}
