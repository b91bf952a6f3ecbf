//! The data port: requests other nodes forward to this node's instances (through the
//! queue-proxy role), and the latency monitors' probes. Only the fleet's nodes may use it.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use kantai_api::auth::PEER_TOKEN_HEADER;
use tokio::time::Instant;
use tracing::debug;

use crate::backends::Backends;
use crate::body::{Body, empty, limited};
use crate::link::Link;
use crate::protocol::{self, Carried};
use crate::queue_proxy::{Failed, QueueProxy};
use crate::rejection::{Rejection, text};
use crate::request::strip_hop_by_hop;

/// Header naming the instance a request forwarded to a node's data port is for.
pub const INSTANCE_HEADER: &str = "kantai-instance";
/// Header on a data port's 503 for an instance that does not serve there: the request never
/// reached it, and the sender may offer it to another instance.
pub const NOT_SERVING_HEADER: &str = "kantai-not-serving";
/// Header naming the node where a forwarded request entered the fleet.
pub const ORIGIN_HEADER: &str = "kantai-origin-node";
/// Path on every data port that answers at once: the agents' latency probe.
pub const PING_PATH: &str = "/kantai/ping";
/// Header a data port adds to a forwarded response: the microseconds the request spent on
/// that node (from receipt to response headers), so that the sender can tell the network's
/// round trip from the serving time.
pub const SERVER_TIME_HEADER: &str = "kantai-server-time-us";

/// The data port of this node.
pub struct DataPort {
    link: Arc<Link>,
    backends: Arc<Backends>,
    queue_proxy: QueueProxy,
    max_body_bytes: u64,
}

impl DataPort {
    /// The data port serving `backends`' local instances through `queue_proxy`.
    pub fn new(
        link: Arc<Link>,
        backends: Arc<Backends>,
        queue_proxy: QueueProxy,
        max_body_bytes: u64,
    ) -> DataPort {
        DataPort {
            link,
            backends,
            queue_proxy,
            max_body_bytes,
        }
    }

    /// Serves a request another node sent (`client`).
    pub async fn serve(&self, mut req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
        let node = &self.link.node;
        if !self.link.is_from_peer(req.headers()) {
            debug!(%client, "a request without the fleet's peer token on the data port");
            return Rejection::NotFromPeer { node: node.clone() }.into_response();
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
            return Rejection::NoInstance.into_response();
        };
        let not_serving = |instance: String| {
            Rejection::NotServing {
                instance,
                node: node.clone(),
            }
            .into_response()
        };
        let Some(inst) = self.backends.local(&name).filter(|i| i.takes_forwarded()) else {
            return not_serving(name);
        };
        let arrived = Instant::now();
        let carried = Carried::of(req.version(), req.headers());
        let client_side = protocol::client_side(&mut req, &carried);
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        carried.restore(&mut parts.headers);
        // The instance never sees the fleet's secret.
        parts.headers.remove(PEER_TOKEN_HEADER);
        let req = Request::from_parts(parts, limited(body, self.max_body_bytes));
        let mut resp = match self.queue_proxy.serve(&inst, req).await {
            Ok(r) => r,
            Err(Failed::Answer(r) | Failed::Broken(r)) => r.into_response(),
            // The sender may offer it to another instance.
            Err(Failed::Unsent(..)) => not_serving(name),
        };
        // Lets the sender subtract this node's share from the round trip it measures.
        let us = arrived.elapsed().as_micros().to_string();
        if let Ok(v) = HeaderValue::from_str(&us) {
            resp.headers_mut()
                .insert(HeaderName::from_static(SERVER_TIME_HEADER), v);
        }
        // The instance's slot stays with the switched connection, in the body.
        // The link was emulated at the request's origin, both ways.
        protocol::splice(client_side, &mut resp, empty(), None);
        resp
    }
}
