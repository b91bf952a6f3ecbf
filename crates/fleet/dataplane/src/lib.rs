//! The data plane of a node, as the parts a request passes through, in that order:
//!
//! 1. the **gateway** routes a client's request by Host to a revision (split by percent);
//! 2. the **activator role** holds it while the revision has no room, takes the revision's
//!    balancer's choice of instance (this node's or another's), and offers it to another
//!    instance when one cannot be reached;
//! 3. **forwarding** sends it to that instance: on this node directly, on another across the
//!    emulated link to that node's **data port**;
//! 4. the **queue-proxy role** gives it one of the instance's concurrency slots (or a place
//!    in its queue);
//! 5. the **instance** answers on loopback.
//!
//! Beside the path: the **latency monitor** (round trips to each peer, probing of peers that
//! stopped answering) and the **backends** (the instances known per revision, this node's and
//! other nodes'). Every answer the data plane gives instead of an instance's is a
//! `Rejection`, turned into its HTTP response in one place.
//! [`DataPlane`] composes the parts; its methods delegate to them.

// The request path, in order.
mod gateway;
// The gateway's table: hosts to revisions.
mod routes;
// The activator role: per request, then the state it keeps per revision.
mod activator;
mod revision;
// ...and the registry of those states.
mod revisions;
// Forwarding, over the link to other nodes when the instance is there.
mod forwarding;
mod link;
// The queue-proxy role...
mod queue_proxy;
// ...and the instance, with its concurrency slots and queue, and the connections to it.
mod instance;
// Which protocol each hop speaks; upgraded connections spliced.
mod protocol;
mod upstream;
// Response bodies that hold their slot and enforce timeouts; requests kept for a retry.
mod body;
// Where other nodes' requests arrive.
mod data_port;
// The sockets of the gateway and the data port.
mod listeners;

// Beside the path: round trips to each peer, and probing of peers that stop answering...
mod latency;
// ...and the instances known per revision, here and on other nodes.
mod backends;
// Every answer that is not an instance's.
mod rejection;

// What the parts share.
pub mod metrics;
mod netem;
mod request;
mod stats;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kantai_api::RevisionLoad;
use tokio::sync::mpsc;

pub use activator::{COLD_START_HEADER, SERVED_BY_HEADER, SERVED_ON_HEADER};
pub use body::{Body, BoxError};
pub use data_port::{
    INSTANCE_HEADER, NOT_SERVING_HEADER, ORIGIN_HEADER, PING_PATH, SERVER_TIME_HEADER,
};
pub use gateway::Limits;
pub use instance::{Entering, LocalInstance, QUEUE_DEPTH_FACTOR, Queued, Refused, Slot};
pub use latency::{PROBE_TIMEOUT, RttEstimate};
pub use listeners::Listeners;
pub use netem::Netem;
pub use request::{HttpRequest, OwnedRequest};
pub use revision::{NetView, NoBackend, RevKey, RevisionConfig, RevisionState};
pub use routes::{RouteSpec, request_host};

use activator::Activator;
use backends::Backends;
use data_port::DataPort;
use forwarding::Forwarder;
use gateway::Gateway;
use latency::LatencyMonitor;
use link::Link;
use queue_proxy::QueueProxy;
use revisions::Revisions;

/// The data plane of one node. Cheap to clone.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

struct Inner {
    limits: Limits,
    gateway: Arc<Gateway>,
    data_port: Arc<DataPort>,
    revisions: Arc<Revisions>,
    backends: Arc<Backends>,
    latency: Arc<LatencyMonitor>,
    link: Arc<Link>,
    metrics: Arc<metrics::Metrics>,
}

/// Serves both listeners until `shutdown` completes (connections in progress finish).
pub async fn serve(dp: DataPlane, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let i = &dp.inner;
    listeners::serve_both(
        i.gateway.clone(),
        i.data_port.clone(),
        i.limits.header_read_timeout,
        listeners,
        shutdown,
    )
    .await;
}

impl DataPlane {
    /// A data plane for `node`. Requests that find a revision without room are announced on
    /// the returned receiver (the agent pokes the autoscaler with them).
    pub fn new(
        node: &str,
        limits: Limits,
        seed: u64,
    ) -> (DataPlane, mpsc::UnboundedReceiver<RevKey>) {
        let (pokes, rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(metrics::Metrics::new());
        let revisions = Arc::new(Revisions::new(node, seed, metrics.clone()));
        let link = Arc::new(Link::new(node, seed));
        let backends = Arc::new(Backends::new(node, revisions.clone()));
        let latency = Arc::new(LatencyMonitor::new(link.clone(), backends.clone()));
        let queue_proxy = QueueProxy::new(link.h2.clone());
        let forwarder = Forwarder::new(link.clone(), queue_proxy.clone(), latency.clone());
        let activator = Activator::new(node, forwarder, &limits, pokes);
        let gateway = Arc::new(Gateway::new(&limits, seed, activator));
        let data_port = Arc::new(DataPort::new(
            link.clone(),
            backends.clone(),
            queue_proxy,
            limits.max_body_bytes,
        ));
        let inner = Inner {
            limits,
            gateway,
            data_port,
            revisions,
            backends,
            latency,
            link,
            metrics,
        };
        (
            DataPlane {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// Records this node's load-balancing decisions in `log` (set once, before serving).
    pub fn set_decision_log(&self, log: Arc<kantai_api::decisions::DecisionLog>) {
        self.inner.revisions.set_decision_log(log);
    }

    /// Sets the fleet's peer token (once, before serving): sent with every request to
    /// another node's data port, and required on this node's. Without one (a data plane
    /// built by a test), the data port takes any request.
    pub fn set_peer_token(&self, token: &str) -> Result<(), http::header::InvalidHeaderValue> {
        self.inner.link.set_token(token)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.link.node
    }

    /// The link emulation towards other nodes.
    pub fn netem(&self) -> &Netem {
        &self.inner.link.netem
    }

    /// The activator state of a revision, created on first use.
    pub fn revision(&self, ns: &str, name: &str) -> Arc<RevisionState> {
        self.inner.revisions.state(ns, name)
    }

    /// Sets the fleet's nodes in order (this node among them) and the measured round trip
    /// from this node to each (`None`: not measured).
    pub fn set_net(&self, nodes: Vec<String>, rtt: &HashMap<String, f64>) {
        if self.inner.revisions.set_net(nodes, rtt) {
            // Backends carry node indices.
            self.inner.backends.refresh_all();
        }
    }

    /// Records a round trip of `ms` milliseconds to `peer`.
    pub fn record_rtt(&self, peer: &str, ms: f64) {
        self.inner.latency.record(peer, ms);
    }

    /// A request forwarded to `peer` got no answer in time: the peer is probed, and its
    /// instances are left out of this node's choices while it does not answer (see
    /// [`PROBE_TIMEOUT`]).
    pub fn suspect(&self, peer: &str) {
        self.inner.latency.suspect(peer);
    }

    /// Probes `peer`'s data port through the emulated link: the round trip in ms, or `None`
    /// when it does not answer within [`PROBE_TIMEOUT`] (or three round trips of its link).
    pub async fn probe_rtt(&self, peer: &str) -> Option<f64> {
        self.inner.latency.probe(peer).await
    }

    /// Whether the round trip to `peer` was not measured within `max_age` (so an active
    /// probe should measure it).
    pub fn rtt_is_stale(&self, peer: &str, max_age: Duration) -> bool {
        self.inner.latency.is_stale(peer, max_age)
    }

    /// What the latency monitor knows, per peer: smoothed, median and 95th-percentile
    /// round trip in ms.
    pub fn rtt_estimates(&self) -> Vec<RttEstimate> {
        self.inner.latency.estimates()
    }

    /// Sets the fleet's node order and gives the balancers the monitor's current round trips.
    pub fn publish_net(&self, nodes: Vec<String>) {
        self.set_net(nodes, &self.inner.latency.smoothed());
    }

    /// Updates the sampled metrics (in flight, queues, instances, round trips) and returns
    /// every metric in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        let m = &self.inner.metrics;
        self.inner.backends.sample_metrics(m);
        self.inner.latency.sample_metrics(m);
        m.encode()
    }

    /// The fleet as this node's balancers see it.
    pub fn net(&self) -> Arc<NetView> {
        self.inner.revisions.net()
    }

    /// Sets, per revision, the serving time measured on each node (node name → ms).
    pub fn set_serving(&self, serving: &HashMap<RevKey, Vec<(String, f64)>>) {
        self.inner.revisions.set_serving(serving);
    }

    /// Sets the external domain and the routes (resolved traffic of every Route).
    pub fn set_routes(&self, domain: &str, routes: Vec<RouteSpec>) {
        self.inner
            .gateway
            .set_routes(domain, routes, &self.inner.revisions);
    }

    /// Sets the settings of the known revisions and forgets revisions neither listed nor
    /// routed to.
    pub fn set_revisions(&self, configs: HashMap<RevKey, RevisionConfig>) {
        // The watches of routes and revisions are separate streams: a route may name a
        // revision this node has not heard of yet. Its state must survive, or requests held
        // on it would wait on a state nobody updates any more.
        let routed = self.inner.gateway.routed();
        self.inner.revisions.set_configs(&configs, &routed);
        self.inner.gateway.rebuild(&self.inner.revisions);
    }

    /// Records why revision `ns`/`revision` cannot start (`None`: it can again), e.g.
    /// `image 127.0.0.1:5055/fn/nope:v1: not found in registry 127.0.0.1:5055 (manifest
    /// unknown)`. While it stands and no instance of the revision is ready anywhere, the
    /// requests held for it and every new one are answered at once with `503` and
    /// `kantai: revision REVISION cannot start: FAILURE`, instead of waiting for their
    /// timeout. An instance that becomes ready clears it. Level-triggered: call it with the
    /// revision's current state on every update of it.
    pub fn set_revision_failure(&self, ns: &str, revision: &str, failure: Option<String>) {
        self.inner.revisions.set_failure(ns, revision, failure);
    }

    /// Sets where other nodes' data ports are.
    pub fn set_peers(&self, peers: HashMap<String, SocketAddr>) {
        self.inner.backends.set_peers(peers);
    }

    /// Sets the ready instances of other nodes: per revision, `(instance, node)`.
    pub fn set_remote(&self, remote: HashMap<RevKey, Vec<(String, String)>>) {
        self.inner.backends.set_remote(remote);
    }

    /// Registers an instance started on this node (not ready yet). Its queue follows the
    /// revision's queue discipline.
    pub fn add_local(
        &self,
        name: &str,
        ns: &str,
        revision: &str,
        port: u16,
        cc: u32,
    ) -> Arc<LocalInstance> {
        self.inner.backends.add_local(name, ns, revision, port, cc)
    }

    /// Marks a local instance ready or not; ready ones take requests at once.
    pub fn set_local_ready(&self, name: &str, ready: bool) {
        self.inner.backends.set_local_ready(name, ready);
    }

    /// Takes a local instance out of this node's rotation, keeps it answering requests other
    /// nodes forward for `propagation` (their gateways learn of the drain through the control
    /// plane), then waits until the requests it has are done; all within `timeout`. Then
    /// forgets it.
    pub async fn drain_local(&self, name: &str, propagation: Duration, timeout: Duration) {
        self.inner
            .backends
            .drain_local(name, propagation, timeout)
            .await;
    }

    /// Forgets a local instance at once (it crashed or was stopped).
    pub fn remove_local(&self, name: &str) {
        self.inner.backends.remove_local(name);
    }

    /// The load of every revision at this node since the last call (for the report). A
    /// revision with an instance on this node is always reported, zeros included.
    pub fn take_loads(&self) -> Vec<RevisionLoad> {
        self.inner.backends.take_loads()
    }

    /// The local instances (for the agent's bookkeeping and tests).
    pub fn local_instances(&self) -> Vec<Arc<LocalInstance>> {
        self.inner.backends.local_instances()
    }
}

#[cfg(test)]
mod tests;
