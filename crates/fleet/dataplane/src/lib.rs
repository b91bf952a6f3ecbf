//! The data plane of a node: a **gateway** that routes requests by Host to a revision (split
//! by percent), an **activator** that holds requests while a revision has no room and picks
//! an instance (this node's or another's), and the **queue-proxy role** for this node's
//! instances (containerConcurrency, queue, timeouts). Requests for another node's instance
//! cross the emulated link to that node's data port.
//!
//! Request path: client → gateway (Host → revision) → activator (hold, balance) → [link] →
//! queue role → instance.

// Error paths return ready-made HTTP responses, handed straight back to the client; boxing
// them would only add an allocation.
#![allow(clippy::result_large_err)]

mod body;
mod local;
pub mod metrics;
mod netem;
mod request;
mod revision;
mod routes;
mod server;
mod stats;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kantai_api::RevisionLoad;
use kantai_latency::RttEstimator;
use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;

pub use local::{Entering, LocalInstance, QUEUE_DEPTH_FACTOR, Queued, Refused, Slot};
pub use netem::Netem;
pub use request::{HttpRequest, OwnedRequest};
pub use revision::{NoBackend, RevisionConfig, RevisionState};
pub use routes::{RouteSpec, request_host};
pub use server::{Listeners, serve};

/// A revision: namespace and name.
pub type RevKey = (String, String);
/// Errors of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response the data plane forwards.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Header naming the instance a request forwarded to a node's data port is for.
pub const INSTANCE_HEADER: &str = "kantai-instance";
/// How long a probe of a suspected peer may take (at least; three round trips of a slower
/// link) before the peer counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

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
/// Response header naming the instance that served a request (with
/// `dataplane.serving-headers: true`): what an experiment records per request.
pub const SERVED_BY_HEADER: &str = "kantai-served-by";
/// Response header naming the node of that instance.
pub const SERVED_ON_HEADER: &str = "kantai-served-on";
/// Response header present when the request waited for an instance to start (a cold start).
pub const COLD_START_HEADER: &str = "kantai-cold-start";

/// The latency monitor's estimate of the round trip to one peer.
#[derive(Clone, Debug, PartialEq)]
pub struct RttEstimate {
    /// The peer node.
    pub peer: String,
    /// Smoothed round trip (5 s half-life), ms.
    pub ewma_ms: f64,
    /// Median of the recent samples, ms.
    pub p50_ms: f64,
    /// 95th percentile of the recent samples, ms.
    pub p95_ms: f64,
}

/// The fleet as this node's balancers see it: the nodes in the fleet's order, which one this
/// node is, and the measured round trip from here to each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetView {
    /// Node names in the fleet's order.
    pub nodes: Vec<String>,
    /// This node's index.
    pub me: usize,
    /// Round trip from this node to each node, in ms (`None`: not measured yet).
    pub rtt: Vec<Option<f64>>,
}

impl NetView {
    /// The index of a node, if known.
    pub fn index_of(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n == node)
    }
}

/// Limits of the data plane.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: u64,
    /// Longest time a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Requests held per revision before 503 (Knative's activator: 10,000).
    pub hold_limit: u32,
    /// Whether responses name the instance and node that served them and say when the
    /// request waited for a cold start ([`SERVED_BY_HEADER`], [`SERVED_ON_HEADER`],
    /// [`COLD_START_HEADER`]). Off by default: clients need not learn the fleet's layout.
    pub serving_headers: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 100 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            hold_limit: 10_000,
            serving_headers: false,
        }
    }
}

/// The data plane of one node. Cheap to clone.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    limits: Limits,
    domain: RwLock<String>,
    routes: ArcSwap<routes::Routes>,
    route_specs: Mutex<Vec<RouteSpec>>,
    revisions: RwLock<HashMap<RevKey, Arc<RevisionState>>>,
    local: RwLock<HashMap<String, Arc<LocalInstance>>>,
    remote: RwLock<HashMap<RevKey, Vec<(String, String)>>>,
    peers: RwLock<HashMap<String, SocketAddr>>,
    client: Client<HttpConnector, Body>,
    netem: Netem,
    net: Arc<ArcSwap<NetView>>,
    /// The latency monitor: round trips to each peer, from forwarded requests and probes.
    latency: Mutex<HashMap<String, RttEstimator>>,
    epoch: tokio::time::Instant,
    metrics: Arc<metrics::Metrics>,
    decisions: Arc<std::sync::OnceLock<Arc<kantai_api::decisions::DecisionLog>>>,
    rng: Mutex<SmallRng>,
    seed: u64,
    pokes: mpsc::UnboundedSender<RevKey>,
    /// Peers being probed after a request to them timed out.
    suspects: Mutex<HashSet<String>>,
    /// The token this node presents to other nodes' data ports and requires on its own.
    peer_token: std::sync::OnceLock<http::HeaderValue>,
}

impl DataPlane {
    /// A data plane for `node`. Requests that find a revision without room are announced on
    /// the returned receiver (the agent pokes the autoscaler with them).
    pub fn new(
        node: &str,
        limits: Limits,
        seed: u64,
    ) -> (DataPlane, mpsc::UnboundedReceiver<RevKey>) {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        // Without a timer the pool never evicts idle connections (hyper-util checks their age
        // only when one is checked out), so connections opened in a burst, each with its read
        // buffer, stayed for good: the soak saw node agents grow by 100 KiB a minute.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        let (tx, rx) = mpsc::unbounded_channel();
        let dp = DataPlane {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                limits,
                domain: RwLock::new("svc.cluster.local".to_owned()),
                routes: ArcSwap::from_pointee(routes::Routes::default()),
                route_specs: Mutex::new(Vec::new()),
                revisions: RwLock::new(HashMap::new()),
                local: RwLock::new(HashMap::new()),
                remote: RwLock::new(HashMap::new()),
                peers: RwLock::new(HashMap::new()),
                client,
                netem: Netem::new(seed),
                net: Arc::new(ArcSwap::from_pointee(NetView {
                    nodes: vec![node.to_owned()],
                    me: 0,
                    rtt: vec![Some(0.0)],
                })),
                latency: Mutex::new(HashMap::new()),
                epoch: tokio::time::Instant::now(),
                metrics: Arc::new(metrics::Metrics::new()),
                decisions: Arc::new(std::sync::OnceLock::new()),
                rng: Mutex::new(SmallRng::seed_from_u64(seed)),
                seed,
                pokes: tx,
                suspects: Mutex::new(HashSet::new()),
                peer_token: std::sync::OnceLock::new(),
            }),
        };
        (dp, rx)
    }

    /// Records this node's load-balancing decisions in `log` (set once, before serving).
    pub fn set_decision_log(&self, log: Arc<kantai_api::decisions::DecisionLog>) {
        let _ = self.inner.decisions.set(log);
    }

    /// Sets the fleet's peer token (once, before serving): sent with every request to
    /// another node's data port, and required on this node's. Without one (a data plane
    /// built by a test), the data port takes any request.
    pub fn set_peer_token(&self, token: &str) -> Result<(), http::header::InvalidHeaderValue> {
        let mut v = http::HeaderValue::from_str(token)?;
        v.set_sensitive(true);
        let _ = self.inner.peer_token.set(v);
        Ok(())
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The link emulation towards other nodes.
    pub fn netem(&self) -> &Netem {
        &self.inner.netem
    }

    /// The activator state of a revision, created on first use.
    pub fn revision(&self, ns: &str, name: &str) -> Arc<RevisionState> {
        let key = (ns.to_owned(), name.to_owned());
        if let Some(r) = self.inner.revisions.read().get(&key) {
            return r.clone();
        }
        let seed = self.inner.seed ^ hash(&key.1);
        self.inner
            .revisions
            .write()
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(RevisionState::new(
                    key,
                    seed,
                    self.inner.net.clone(),
                    self.inner.metrics.clone(),
                    self.inner.decisions.clone(),
                ))
            })
            .clone()
    }

    /// Sets the fleet's nodes in order (this node among them) and the measured round trip
    /// from this node to each (`None`: not measured).
    pub fn set_net(&self, nodes: Vec<String>, rtt: &HashMap<String, f64>) {
        let me = nodes
            .iter()
            .position(|n| *n == self.inner.node)
            .unwrap_or(0);
        let row = nodes
            .iter()
            .map(|n| {
                if *n == self.inner.node {
                    Some(0.0)
                } else {
                    rtt.get(n).copied()
                }
            })
            .collect();
        let view = NetView {
            nodes,
            me,
            rtt: row,
        };
        let order_changed = self.inner.net.load().nodes != view.nodes;
        if **self.inner.net.load() != view {
            self.inner.net.store(Arc::new(view));
        }
        if order_changed {
            // Backends carry node indices.
            self.refresh_all();
        }
    }

    /// Records a round trip of `ms` milliseconds to `peer`.
    pub fn record_rtt(&self, peer: &str, ms: f64) {
        let now = self.inner.epoch.elapsed();
        let mut l = self.inner.latency.lock();
        match l.get_mut(peer) {
            Some(e) => e.record(now, ms),
            None => {
                let mut e = RttEstimator::default();
                e.record(now, ms);
                l.insert(peer.to_owned(), e);
            }
        }
    }

    /// A request forwarded to `peer` got no answer in time. Is the peer reachable? Its data
    /// port is probed; while it does not answer within [`PROBE_TIMEOUT`] (or three round trips
    /// of its link), its instances are left out of this node's choices and it is probed again
    /// every second, so that requests fail over to instances elsewhere instead of each paying
    /// its timeout. One probe loop per peer at a time.
    pub fn suspect(&self, peer: &str) {
        if !self.inner.suspects.lock().insert(peer.to_owned()) {
            return;
        }
        let dp = self.clone();
        let peer = peer.to_owned();
        tokio::spawn(async move {
            loop {
                if !dp.inner.peers.read().contains_key(&peer) {
                    break;
                }
                if dp.ping(&peer).await {
                    dp.each_revision(|r| r.eject_node(&peer, None));
                    break;
                }
                tracing::warn!(
                    node = %dp.inner.node,
                    peer = %peer,
                    "node {peer} does not answer probes; its instances get no requests from here until it does"
                );
                let until = Some(Duration::from_secs(3600));
                dp.each_revision(|r| r.eject_node(&peer, until));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            dp.inner.suspects.lock().remove(&peer);
        });
    }

    /// Whether `peer`'s data port answers a probe in time (through the emulated link).
    async fn ping(&self, peer: &str) -> bool {
        self.probe_rtt(peer).await.is_some()
    }

    /// Probes `peer`'s data port through the emulated link: the round trip in ms, or `None`
    /// when it does not answer within [`PROBE_TIMEOUT`] (or three round trips of its link).
    pub async fn probe_rtt(&self, peer: &str) -> Option<f64> {
        let addr = self.inner.peers.read().get(peer).copied()?;
        use http_body_util::BodyExt;
        let empty = http_body_util::Empty::new()
            .map_err(|e: std::convert::Infallible| match e {})
            .boxed_unsync();
        let mut req = http::Request::get(format!("http://{addr}{PING_PATH}"))
            .body(empty)
            .ok()?;
        if let Some(t) = self.inner.peer_token.get() {
            req.headers_mut()
                .insert(kantai_api::auth::PEER_TOKEN_HEADER, t.clone());
        }
        let limit = PROBE_TIMEOUT.max(self.inner.netem.link(peer).rtt * 3);
        let start = tokio::time::Instant::now();
        let exchange = async {
            self.inner.netem.cross(peer, 0).await;
            let resp = self.inner.client.request(req).await.ok()?;
            self.inner.netem.cross(peer, 0).await;
            resp.status().is_success().then_some(())
        };
        tokio::time::timeout(limit, exchange).await.ok()??;
        Some(start.elapsed().as_secs_f64() * 1e3)
    }

    /// Whether a request to the data port carries this fleet's peer token (any request does
    /// when none is set).
    pub(crate) fn is_from_peer(&self, headers: &http::HeaderMap) -> bool {
        let Some(want) = self.inner.peer_token.get() else {
            return true;
        };
        headers
            .get(kantai_api::auth::PEER_TOKEN_HEADER)
            .is_some_and(|got| kantai_api::auth::tokens_match(got.as_bytes(), want.as_bytes()))
    }

    fn each_revision(&self, f: impl Fn(&Arc<RevisionState>)) {
        let all: Vec<Arc<RevisionState>> = self.inner.revisions.read().values().cloned().collect();
        for r in all {
            f(&r);
        }
    }

    /// Whether the round trip to `peer` was not measured within `max_age` (so an active
    /// probe should measure it).
    pub fn rtt_is_stale(&self, peer: &str, max_age: Duration) -> bool {
        let now = self.inner.epoch.elapsed();
        self.inner
            .latency
            .lock()
            .get(peer)
            .is_none_or(|e| e.is_stale(now, max_age))
    }

    /// What the latency monitor knows, per peer: smoothed, median and 95th-percentile
    /// round trip in ms.
    pub fn rtt_estimates(&self) -> Vec<RttEstimate> {
        let mut v: Vec<RttEstimate> = self
            .inner
            .latency
            .lock()
            .iter()
            .filter_map(|(peer, e)| {
                Some(RttEstimate {
                    peer: peer.clone(),
                    ewma_ms: e.ewma_ms()?,
                    p50_ms: e.quantile_ms(0.5)?,
                    p95_ms: e.quantile_ms(0.95)?,
                })
            })
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    /// Sets the fleet's node order and gives the balancers the monitor's current round trips.
    pub fn publish_net(&self, nodes: Vec<String>) {
        let rtt: HashMap<String, f64> = self
            .rtt_estimates()
            .into_iter()
            .map(|e| (e.peer, e.ewma_ms))
            .collect();
        self.set_net(nodes, &rtt);
    }

    /// Updates the sampled metrics (in flight, queues, instances, round trips) and returns
    /// every metric in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        self.sample_metrics();
        self.inner.metrics.encode()
    }

    fn sample_metrics(&self) {
        use metrics::{InstanceLabels, LinkLabels, LinkQuantileLabels, QueueLabels};
        let m = &self.inner.metrics;
        let me = self.inner.node.clone();
        let revisions: Vec<Arc<RevisionState>> =
            self.inner.revisions.read().values().cloned().collect();
        let mut instance_waiting: HashMap<RevKey, usize> = HashMap::new();
        let mut instances: HashMap<(RevKey, bool), usize> = HashMap::new();
        for i in self.inner.local.read().values() {
            *instance_waiting.entry(i.revision.clone()).or_default() += i.waiting();
            *instances
                .entry((i.revision.clone(), i.is_ready()))
                .or_default() += 1;
        }
        m.in_flight.clear();
        m.queue_depth.clear();
        m.instances.clear();
        for r in revisions {
            let l = r.labels();
            m.in_flight
                .get_or_create(&l)
                .set(f64::from(r.in_flight_now()));
            for (queue, depth) in [
                ("activator", r.held() as usize),
                (
                    "instance",
                    instance_waiting.get(&r.key).copied().unwrap_or(0),
                ),
            ] {
                m.queue_depth
                    .get_or_create(&QueueLabels {
                        namespace: l.namespace.clone(),
                        service: l.service.clone(),
                        revision: l.revision.clone(),
                        node: l.node.clone(),
                        queue: queue.into(),
                    })
                    .set(depth as f64);
            }
        }
        for ((key, ready), n) in instances {
            m.instances
                .get_or_create(&InstanceLabels {
                    namespace: key.0,
                    revision: key.1,
                    node: me.clone(),
                    state: if ready { "ready" } else { "starting" }.into(),
                })
                .set(n as f64);
        }
        m.rtt.clear();
        m.rtt_quantile.clear();
        for e in self.rtt_estimates() {
            m.rtt
                .get_or_create(&LinkLabels {
                    from: me.clone(),
                    to: e.peer.clone(),
                })
                .set(e.ewma_ms / 1e3);
            for (q, v) in [("50", e.p50_ms), ("95", e.p95_ms)] {
                m.rtt_quantile
                    .get_or_create(&LinkQuantileLabels {
                        from: me.clone(),
                        to: e.peer.clone(),
                        percentile: q.into(),
                    })
                    .set(v / 1e3);
            }
        }
    }

    /// The fleet as this node's balancers see it.
    pub fn net(&self) -> Arc<NetView> {
        self.inner.net.load_full()
    }

    /// Sets, per revision, the serving time measured on each node (node name → ms).
    pub fn set_serving(&self, serving: &HashMap<RevKey, Vec<(String, f64)>>) {
        let net = self.inner.net.load();
        let revisions: Vec<Arc<RevisionState>> =
            self.inner.revisions.read().values().cloned().collect();
        for r in revisions {
            let row = serving.get(&r.key).map(|nodes| {
                net.nodes
                    .iter()
                    .map(|n| nodes.iter().find(|(m, _)| m == n).map(|(_, v)| *v))
                    .collect()
            });
            r.set_serving(row.unwrap_or_default());
        }
    }

    /// Sets the external domain and the routes (resolved traffic of every Route).
    pub fn set_routes(&self, domain: &str, routes: Vec<RouteSpec>) {
        *self.inner.domain.write() = domain.to_owned();
        *self.inner.route_specs.lock() = routes;
        self.rebuild_routes();
    }

    fn rebuild_routes(&self) {
        let specs = self.inner.route_specs.lock().clone();
        let domain = self.inner.domain.read().clone();
        let table = routes::Routes::build(&specs, &domain, &mut |ns, rev| self.revision(ns, rev));
        self.inner.routes.store(Arc::new(table));
    }

    /// Sets the settings of the known revisions and forgets revisions neither listed nor
    /// routed to.
    pub fn set_revisions(&self, configs: HashMap<RevKey, RevisionConfig>) {
        for (key, cfg) in &configs {
            self.revision(&key.0, &key.1).set_config(cfg.clone());
        }
        // The watches of routes and revisions are separate streams: a route may name a
        // revision this node has not heard of yet. Its state must survive, or requests held
        // on it would wait on a state nobody updates any more.
        let routed: HashSet<RevKey> = self
            .inner
            .route_specs
            .lock()
            .iter()
            .flat_map(|r| {
                r.traffic
                    .iter()
                    .map(|(rev, _, _)| (r.namespace.clone(), rev.clone()))
            })
            .collect();
        self.inner.revisions.write().retain(|k, state| {
            let keep = configs.contains_key(k) || routed.contains(k);
            if !keep {
                state.retire();
            }
            keep
        });
        self.rebuild_routes();
    }

    /// Records why revision `ns`/`revision` cannot start (`None`: it can again), e.g.
    /// `image 127.0.0.1:5055/fn/nope:v1: not found in registry 127.0.0.1:5055 (manifest
    /// unknown)`. While it stands and no instance of the revision is ready anywhere, the
    /// requests held for it and every new one are answered at once with `503` and
    /// `kantai: revision REVISION cannot start: FAILURE`, instead of waiting for their
    /// timeout. An instance that becomes ready clears it. Level-triggered: call it with the
    /// revision's current state on every update of it.
    pub fn set_revision_failure(&self, ns: &str, revision: &str, failure: Option<String>) {
        match failure {
            Some(why) => self.revision(ns, revision).set_failure(Some(&why)),
            None => {
                // Clearing a revision this node never heard of must not create its state.
                let key = (ns.to_owned(), revision.to_owned());
                let state = self.inner.revisions.read().get(&key).cloned();
                if let Some(state) = state {
                    state.set_failure(None);
                }
            }
        }
    }

    /// Sets where other nodes' data ports are.
    pub fn set_peers(&self, peers: HashMap<String, SocketAddr>) {
        *self.inner.peers.write() = peers;
        self.refresh_all();
    }

    /// Sets the ready instances of other nodes: per revision, `(instance, node)`.
    pub fn set_remote(&self, remote: HashMap<RevKey, Vec<(String, String)>>) {
        *self.inner.remote.write() = remote;
        self.refresh_all();
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
        let cfg = self.revision(ns, revision).config();
        let inst = Arc::new(LocalInstance::new(
            name.to_owned(),
            (ns.to_owned(), revision.to_owned()),
            port,
            cc,
            &cfg.queue,
            &cfg.params,
        ));
        self.inner
            .local
            .write()
            .insert(name.to_owned(), inst.clone());
        inst
    }

    /// Marks a local instance ready or not; ready ones take requests at once.
    pub fn set_local_ready(&self, name: &str, ready: bool) {
        let inst = self.inner.local.read().get(name).cloned();
        if let Some(i) = inst {
            i.set_ready(ready);
            self.refresh(&i.revision);
        }
    }

    /// Takes a local instance out of this node's rotation, keeps it answering requests other
    /// nodes forward for `propagation` (their gateways learn of the drain through the control
    /// plane), then waits until the requests it has are done; all within `timeout`. Then
    /// forgets it.
    pub async fn drain_local(&self, name: &str, propagation: Duration, timeout: Duration) {
        let inst = self.inner.local.read().get(name).cloned();
        if let Some(i) = inst {
            i.start_drain();
            self.refresh(&i.revision);
            let _ = tokio::time::timeout(timeout, async {
                tokio::time::sleep(propagation).await;
                i.drained().await;
            })
            .await;
            self.inner.local.write().remove(name);
        }
    }

    /// Forgets a local instance at once (it crashed or was stopped).
    pub fn remove_local(&self, name: &str) {
        let inst = self.inner.local.write().remove(name);
        if let Some(i) = inst {
            self.refresh(&i.revision);
        }
    }

    fn refresh_all(&self) {
        let keys: Vec<RevKey> = self.inner.revisions.read().keys().cloned().collect();
        for k in keys {
            self.refresh(&k);
        }
    }

    /// Recomputes a revision's backends: its ready local instances and the ready instances
    /// of reachable other nodes.
    fn refresh(&self, key: &RevKey) {
        let Some(state) = self.inner.revisions.read().get(key).cloned() else {
            return;
        };
        let net = self.inner.net.load();
        let mut list = Vec::new();
        let mut locals: Vec<Arc<LocalInstance>> = self
            .inner
            .local
            .read()
            .values()
            .filter(|i| &i.revision == key && i.serving())
            .cloned()
            .collect();
        locals.sort_by(|a, b| a.name.cmp(&b.name));
        for i in locals {
            list.push((i.name.clone(), revision::Target::Local(i), net.me));
        }
        let peers = self.inner.peers.read();
        if let Some(remote) = self.inner.remote.read().get(key) {
            let mut remote = remote.clone();
            remote.sort();
            for (name, node) in remote {
                if node == self.inner.node {
                    continue;
                }
                if let Some(addr) = peers.get(&node) {
                    // A node outside the known order gets an index past the end: balancers
                    // treat it as unmeasured.
                    let idx = net.index_of(&node).unwrap_or(net.nodes.len());
                    list.push((name, revision::Target::Remote { node, addr: *addr }, idx));
                }
            }
        }
        state.set_backends(list);
    }

    /// The load of every revision at this node since the last call (for the report).
    ///
    /// A revision with an instance on this node is always reported, zeros included, as
    /// Knative scrapes every queue-proxy: the autoscaler needs the zeros to see a revision
    /// go idle (an empty window means "no data, keep the scale", not "no load").
    pub fn take_loads(&self) -> Vec<RevisionLoad> {
        let revisions: Vec<Arc<RevisionState>> =
            self.inner.revisions.read().values().cloned().collect();
        // What this node's instances served, per revision: count and total time.
        let mut hosted: HashMap<RevKey, (u64, Duration, u32, u32)> = HashMap::new();
        for i in self.inner.local.read().values() {
            let (n, t) = i.take_serving();
            let waiting = i.waiting() as u32;
            let e = hosted.entry(i.revision.clone()).or_default();
            e.0 += n;
            e.1 += t;
            e.2 += i.in_flight().saturating_sub(waiting);
            e.3 += waiting;
        }
        revisions
            .iter()
            .filter_map(|r| {
                let (concurrency, requests, held, current) = r.take_load();
                let active = concurrency > 0.0 || requests > 0.0 || held > 0 || current > 0;
                let (served, total, in_instances, queued) =
                    hosted.get(&r.key).copied().unwrap_or_default();
                (active || hosted.contains_key(&r.key)).then(|| RevisionLoad {
                    namespace: r.key.0.clone(),
                    revision: r.key.1.clone(),
                    concurrency,
                    requests,
                    held,
                    served,
                    serving_ms: if served > 0 {
                        total.as_secs_f64() * 1e3 / served as f64
                    } else {
                        0.0
                    },
                    instance_in_flight: in_instances,
                    instance_queued: queued,
                })
            })
            .collect()
    }

    /// The local instances (for the agent's bookkeeping and tests).
    pub fn local_instances(&self) -> Vec<Arc<LocalInstance>> {
        self.inner.local.read().values().cloned().collect()
    }
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revision::{Acquired, NoBackend};
    use kantai_policy::SimpleRequest;
    use tokio::time::Instant;

    /// Acquires for a GET of `path` (with `headers`), waiting until `within` has passed.
    fn request(
        state: &Arc<RevisionState>,
        req: SimpleRequest,
        within: Duration,
        limit: u32,
    ) -> tokio::task::JoinHandle<Result<String, NoBackend>> {
        let deadline = Instant::now() + within;
        let acquired = state.acquire(&req, OwnedRequest::default, limit, || {});
        tokio::spawn(async move {
            let lease = match acquired? {
                Acquired::Now(l) => l,
                Acquired::Held(h) => h.wait(deadline).await?,
            };
            Ok(lease.backend.name.clone())
        })
    }

    fn get(path: &str) -> SimpleRequest {
        SimpleRequest::get(path)
    }

    fn dp() -> DataPlane {
        DataPlane::new("node1", Limits::default(), 7).0
    }

    fn route(ns: &str, name: &str, rev: &str) -> RouteSpec {
        RouteSpec {
            namespace: ns.into(),
            name: name.into(),
            traffic: vec![(rev.into(), 100, None)],
            unavailable: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_routed_revision_not_yet_known_keeps_its_held_requests() {
        let dp = dp();
        // The route arrives before the revision: a request is held on the route's state.
        dp.set_routes(
            "svc.cluster.local",
            vec![route("default", "hello", "hello-00001")],
        );
        let state = dp.revision("default", "hello-00001");
        let held = request(&state, get("/"), Duration::from_secs(30), 10);
        tokio::task::yield_now().await;
        assert_eq!(state.held(), 1);
        // An update of the revisions that does not list it yet must not orphan that state.
        dp.set_revisions(HashMap::new());
        assert!(Arc::ptr_eq(&state, &dp.revision("default", "hello-00001")));
        // The instance comes up: the held request goes to it.
        dp.add_local("hello-node1-abcde", "default", "hello-00001", 1, 0);
        dp.set_local_ready("hello-node1-abcde", true);
        let got = held.await.expect("task");
        assert_eq!(got, Ok("hello-node1-abcde".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_revision_fails_its_held_requests() {
        let dp = dp();
        dp.set_routes(
            "svc.cluster.local",
            vec![route("default", "hello", "hello-00001")],
        );
        let state = dp.revision("default", "hello-00001");
        let held = request(&state, get("/"), Duration::from_secs(30), 10);
        tokio::task::yield_now().await;
        // The service is deleted: no route and no revision.
        dp.set_routes("svc.cluster.local", Vec::new());
        dp.set_revisions(HashMap::new());
        assert_eq!(held.await.expect("task"), Err(NoBackend::Removed));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_revisions_with_local_instances_report_zeros() {
        let dp = dp();
        dp.set_routes(
            "svc.cluster.local",
            vec![
                route("default", "hosted", "hosted-00001"),
                route("default", "elsewhere", "elsewhere-00001"),
            ],
        );
        dp.add_local("hosted-node1-abcde", "default", "hosted-00001", 1, 0);
        tokio::time::advance(Duration::from_secs(1)).await;
        let loads = dp.take_loads();
        let names: Vec<&str> = loads.iter().map(|l| l.revision.as_str()).collect();
        assert_eq!(names, ["hosted-00001"]);
        assert_eq!(loads[0].concurrency, 0.0);
        assert_eq!(loads[0].requests, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_request_times_out_at_its_deadline() {
        let dp = dp();
        let state = dp.revision("default", "hello-00001");
        let start = Instant::now();
        let r = request(&state, get("/"), Duration::from_secs(5), 10)
            .await
            .expect("task");
        assert_eq!(r, Err(NoBackend::TimedOut));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(state.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_hold_limit_is_enforced() {
        let dp = dp();
        let state = dp.revision("default", "hello-00001");
        let waiting: Vec<_> = (0..2)
            .map(|_| request(&state, get("/"), Duration::from_secs(5), 2))
            .collect();
        tokio::task::yield_now().await;
        let third = request(&state, get("/"), Duration::from_secs(5), 2)
            .await
            .expect("task");
        assert_eq!(third, Err(NoBackend::HoldQueueFull));
        for w in waiting {
            assert_eq!(w.await.expect("task"), Err(NoBackend::TimedOut));
        }
    }

    const MISSING: &str =
        "image 127.0.0.1:5055/fn/nope:v1: not found in registry 127.0.0.1:5055 (manifest unknown)";

    fn cannot_start() -> Result<String, NoBackend> {
        Err(NoBackend::CannotStart(MISSING.into()))
    }

    #[tokio::test(start_paused = true)]
    async fn held_requests_are_released_at_once_when_the_revision_cannot_start() {
        let dp = dp();
        let state = dp.revision("default", "hello-00001");
        let held = request(&state, get("/"), Duration::from_secs(30), 10);
        tokio::task::yield_now().await;
        assert_eq!(state.held(), 1);
        let start = Instant::now();
        dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
        assert_eq!(held.await.expect("task"), cannot_start());
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(state.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_request_for_a_revision_that_cannot_start_is_answered_at_once() {
        let dp = dp();
        dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
        let state = dp.revision("default", "hello-00001");
        let start = Instant::now();
        let r = request(&state, get("/"), Duration::from_secs(30), 10)
            .await
            .expect("task");
        assert_eq!(r, cannot_start());
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(state.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_revision_that_cannot_start_is_still_poked() {
        let (dp, mut pokes) = DataPlane::new("node1", Limits::default(), 7);
        dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
        let state = dp.revision("default", "hello-00001");
        let tx = dp.inner.pokes.clone();
        let r = state.acquire(&get("/"), OwnedRequest::default, 10, || {
            let _ = tx.send(state.key.clone());
        });
        assert!(matches!(r, Err(NoBackend::CannotStart(_))));
        assert_eq!(
            pokes.try_recv().ok(),
            Some(("default".to_owned(), "hello-00001".to_owned()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cleared_failure_holds_requests_again() {
        let dp = dp();
        dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
        dp.set_revision_failure("default", "hello-00001", None);
        let state = dp.revision("default", "hello-00001");
        let r = request(&state, get("/"), Duration::from_secs(5), 10)
            .await
            .expect("task");
        assert_eq!(r, Err(NoBackend::TimedOut));
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_instance_serves_a_revision_reported_as_unable_to_start() {
        let dp = dp();
        dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
        dp.add_local("hello-node1-abcde", "default", "hello-00001", 1, 0);
        dp.set_local_ready("hello-node1-abcde", true);
        let state = dp.revision("default", "hello-00001");
        let r = request(&state, get("/"), Duration::from_secs(5), 10)
            .await
            .expect("task");
        assert_eq!(r, Ok("hello-node1-abcde".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_that_got_ready_clears_the_failure() {
        let dp = dp();
        dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
        dp.add_local("hello-node1-abcde", "default", "hello-00001", 1, 0);
        dp.set_local_ready("hello-node1-abcde", true);
        // Scaled back to zero: the next request waits for a cold start, as any would.
        dp.remove_local("hello-node1-abcde");
        let state = dp.revision("default", "hello-00001");
        assert_eq!(state.failure(), None);
        let r = request(&state, get("/"), Duration::from_secs(5), 10)
            .await
            .expect("task");
        assert_eq!(r, Err(NoBackend::TimedOut));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_does_not_release_requests_waiting_for_a_busy_ready_instance() {
        let dp = dp();
        let key = ("default".to_owned(), "hello-00001".to_owned());
        dp.set_revisions(HashMap::from([(key, config("knative", "fifo", 1))]));
        dp.add_local("hello-node1-abcde", "default", "hello-00001", 1, 1);
        dp.set_local_ready("hello-node1-abcde", true);
        let state = dp.revision("default", "hello-00001");
        let Ok(Acquired::Now(busy)) = state.acquire(&get("/"), OwnedRequest::default, 10, || {})
        else {
            panic!("the instance has room for the first request");
        };
        let waiting = request(&state, get("/"), Duration::from_secs(30), 10);
        tokio::task::yield_now().await;
        assert_eq!(state.held(), 1);
        // Another node's instance failed: this revision still has one that serves.
        dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
        assert_eq!(state.held(), 1);
        drop(busy);
        assert_eq!(
            waiting.await.expect("task"),
            Ok("hello-node1-abcde".to_owned())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clearing_the_failure_of_an_unknown_revision_creates_no_state() {
        let dp = dp();
        dp.set_revision_failure("default", "gone-00001", None);
        assert!(dp.inner.revisions.read().is_empty());
    }

    fn config(lb: &str, queue: &str, cc: u32) -> RevisionConfig {
        RevisionConfig {
            cc,
            load_balancer: lb.into(),
            queue: queue.into(),
            ..RevisionConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn held_requests_are_served_in_the_queue_disciplines_order() {
        let dp = dp();
        let key = ("default".to_owned(), "q-00001".to_owned());
        dp.set_revisions(HashMap::from([(
            key.clone(),
            config("knative", "priority", 1),
        )]));
        let state = dp.revision("default", "q-00001");
        // No instance yet: three requests wait, the high-priority one arriving last. Each
        // holds its instance for 10 ms once served.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for class in ["low", "normal", "high"] {
            let req = get("/").with_header("kantai-priority", class);
            let acquired = state
                .acquire(&req, OwnedRequest::default, 10, || {})
                .expect("held");
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let Acquired::Held(h) = acquired else {
                    panic!("nothing can serve it yet");
                };
                let lease = h.wait(Instant::now() + Duration::from_secs(30)).await;
                order.lock().push(class);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(lease);
            }));
        }
        assert_eq!(state.held(), 3);
        // One instance with one slot (containerConcurrency 1): one at a time, by class.
        dp.add_local("q-node1-aaaaa", "default", "q-00001", 1, 1);
        dp.set_local_ready("q-node1-aaaaa", true);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*order.lock(), ["high", "normal", "low"]);
        assert_eq!(state.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_load_balancer_takes_effect_at_once() {
        let dp = dp();
        dp.set_net(
            vec!["node1".into(), "node2".into()],
            &HashMap::from([("node2".to_owned(), 50.0)]),
        );
        let key = ("default".to_owned(), "lb-00001".to_owned());
        dp.set_revisions(HashMap::from([(
            key.clone(),
            config("round-robin", "fifo", 0),
        )]));
        dp.set_peers(HashMap::from([(
            "node2".to_owned(),
            "127.0.0.1:9".parse().expect("addr"),
        )]));
        dp.set_remote(HashMap::from([(
            key.clone(),
            vec![("lb-node2-bbbbb".to_owned(), "node2".to_owned())],
        )]));
        dp.add_local("lb-node1-aaaaa", "default", "lb-00001", 1, 0);
        dp.set_local_ready("lb-node1-aaaaa", true);
        let state = dp.revision("default", "lb-00001");
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(
                request(&state, get("/"), Duration::from_secs(1), 10)
                    .await
                    .expect("task"),
            );
        }
        // Round robin alternates between the two nodes.
        assert!(
            names.iter().any(|n| n.as_deref() == Ok("lb-node2-bbbbb")),
            "{names:?}"
        );
        // local-first keeps everything on this node.
        dp.set_revisions(HashMap::from([(key, config("local-first", "fifo", 0))]));
        for _ in 0..4 {
            let n = request(&state, get("/"), Duration::from_secs(1), 10)
                .await
                .expect("task");
            assert_eq!(n, Ok("lb-node1-aaaaa".into()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_queue_follows_the_discipline_and_reports_serving_time() {
        let dp = dp();
        let key = ("default".to_owned(), "s-00001".to_owned());
        dp.set_revisions(HashMap::from([(key, config("knative", "priority", 1))]));
        let inst = dp.add_local("s-node1-aaaaa", "default", "s-00001", 1, 1);
        let Ok(Entering::Now(first)) = inst.enter(&get("/")) else {
            panic!("the first request gets the slot");
        };
        let Ok(Entering::Queued(low)) = inst.enter(&get("/").with_header("kantai-priority", "low"))
        else {
            panic!("queued");
        };
        let Ok(Entering::Queued(high)) =
            inst.enter(&get("/").with_header("kantai-priority", "high"))
        else {
            panic!("queued");
        };
        let low = tokio::spawn(low.wait());
        let high = tokio::spawn(high.wait());
        tokio::time::advance(Duration::from_millis(40)).await;
        drop(first);
        let slot = high.await.expect("task").expect("the high one goes next");
        assert!(!low.is_finished());
        drop(slot);
        drop(low.await.expect("task").expect("then the low one"));
        let (served, total) = inst.take_serving();
        assert_eq!(served, 3);
        // The first took 40 ms; the others waited at least as long in the queue.
        assert!(total >= Duration::from_millis(120), "{total:?}");
        assert_eq!(inst.in_flight(), 0);
    }
}
