//! Forwarding a request to the backend the activator chose: a local instance through the
//! queue-proxy role, another node's through the emulated link to that node's data port
//! (each exchange a round-trip sample for the latency monitor).

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HeaderValue;
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::body::{Body, BoxError, Resendable, over_limit};
use crate::data_port::{INSTANCE_HEADER, NOT_SERVING_HEADER, ORIGIN_HEADER, SERVER_TIME_HEADER};
use crate::latency::LatencyMonitor;
use crate::link::Link;
use crate::protocol::{self, Crossing};
use crate::queue_proxy::{Failed, QueueProxy, unsent};
use crate::rejection::Rejection;
use crate::request::content_length;
use crate::revision::{Backend, Lease, Target};

/// Sends requests to backends.
pub struct Forwarder {
    link: Arc<Link>,
    queue_proxy: QueueProxy,
    latency: Arc<LatencyMonitor>,
}

impl Forwarder {
    /// Forwards over `link`, to local instances through `queue_proxy`, telling `latency`
    /// the round trips it sees.
    pub fn new(
        link: Arc<Link>,
        queue_proxy: QueueProxy,
        latency: Arc<LatencyMonitor>,
    ) -> Forwarder {
        Forwarder {
            link,
            queue_proxy,
            latency,
        }
    }

    /// How bytes of an upgraded connection to `backend` cross the emulated link (each
    /// chunk, each way, as a message of its size); `None` for a backend on this node.
    pub fn crossing(&self, backend: &Backend) -> Option<Crossing> {
        let Target::Remote { node, .. } = &backend.target else {
            return None;
        };
        let (link, node) = (self.link.clone(), node.clone());
        Some(Arc::new(move |bytes| {
            link.netem.one_way(&node, bytes as u64)
        }))
    }

    /// A request to `peer` got no answer in time: the latency monitor probes it.
    pub fn suspect(&self, peer: &str) {
        self.latency.suspect(peer);
    }

    /// Sends `req` to the lease's backend.
    pub async fn forward(
        &self,
        lease: &Lease,
        req: Request<Body>,
    ) -> Result<Response<Body>, Failed> {
        match &lease.backend.target {
            Target::Local(inst) => self.queue_proxy.serve(inst, req).await,
            // Boxed: the emulated link's and the client's state would make every local
            // request's future larger too.
            Target::Remote { node, addr } => {
                Box::pin(self.forward_remote(lease, node, addr, req)).await
            }
        }
    }

    /// Sends `req` to another node's instance over the emulated link.
    async fn forward_remote(
        &self,
        lease: &Lease,
        node: &str,
        addr: &SocketAddr,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, Failed> {
        let h = req.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&lease.backend.name) {
            h.insert(INSTANCE_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.link.node) {
            h.insert(ORIGIN_HEADER, v);
        }
        // Whatever the client sent under the token's name goes no further.
        self.link.sign(h);
        // The Host stays the client's: the data port routes by the instance header.
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        *req.uri_mut() = format!("http://{addr}{pq}")
            .parse()
            .map_err(|_| Failed::Answer(Rejection::InvalidPath))?;
        let out_bytes = content_length(req.headers()).unwrap_or(0);
        let start = Instant::now();
        self.link.netem.cross(node, out_bytes).await;
        let wire = protocol::to_peer(req.version());
        protocol::prepare(&mut req, wire);
        let (req, kept) = Resendable::keep(req);
        let resp = match self.link.client(wire).request(req).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(limit) = over_limit(&e) {
                    return Err(Failed::Answer(Rejection::TooLarge(limit)));
                }
                let why = format!(
                    "kantai: node {node} did not answer for instance {}: {e}",
                    lease.backend.name
                );
                return Err(if e.is_connect() {
                    unsent(kept, why)
                } else {
                    Failed::Answer(Rejection::BadGateway(why))
                });
            }
        };
        let back_bytes = content_length(resp.headers()).unwrap_or(0);
        self.link.netem.cross(node, back_bytes).await;
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
            self.latency
                .record(node, (total - us as f64 / 1e3).max(0.0));
        }
        let mut resp = resp;
        resp.headers_mut().remove(SERVER_TIME_HEADER);
        Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
    }
}
