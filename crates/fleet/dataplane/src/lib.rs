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
mod netem;
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
use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;

pub use local::{LocalInstance, QUEUE_DEPTH_FACTOR};
pub use netem::Netem;
pub use revision::{RevisionConfig, RevisionState};
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
/// Header naming the node where a forwarded request entered the fleet.
pub const ORIGIN_HEADER: &str = "kantai-origin-node";
/// Path on every data port that answers at once: the agents' latency probe.
pub const PING_PATH: &str = "/kantai/ping";

/// Limits of the data plane.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: u64,
    /// Longest time a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Requests held per revision before 503 (Knative's activator: 10,000).
    pub hold_limit: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 100 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            hold_limit: 10_000,
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
    rng: Mutex<SmallRng>,
    seed: u64,
    pokes: mpsc::UnboundedSender<RevKey>,
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
        let client = Client::builder(TokioExecutor::new())
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
                rng: Mutex::new(SmallRng::seed_from_u64(seed)),
                seed,
                pokes: tx,
            }),
        };
        (dp, rx)
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
            .or_insert_with(|| Arc::new(RevisionState::new(key, seed)))
            .clone()
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

    /// Registers an instance started on this node (not ready yet).
    pub fn add_local(
        &self,
        name: &str,
        ns: &str,
        revision: &str,
        port: u16,
        cc: u32,
    ) -> Arc<LocalInstance> {
        let inst = Arc::new(LocalInstance::new(
            name.to_owned(),
            (ns.to_owned(), revision.to_owned()),
            port,
            cc,
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
            list.push((i.name.clone(), revision::Target::Local(i)));
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
                    list.push((name, revision::Target::Remote { node, addr: *addr }));
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
        let hosted: HashSet<RevKey> = self
            .inner
            .local
            .read()
            .values()
            .map(|i| i.revision.clone())
            .collect();
        revisions
            .iter()
            .filter_map(|r| {
                let (concurrency, requests, held, current) = r.take_load();
                let active = concurrency > 0.0 || requests > 0.0 || held > 0 || current > 0;
                (active || hosted.contains(&r.key)).then(|| RevisionLoad {
                    namespace: r.key.0.clone(),
                    revision: r.key.1.clone(),
                    concurrency,
                    requests,
                    held,
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
    use crate::revision::NoBackend;
    use tokio::time::Instant;

    fn dp() -> DataPlane {
        DataPlane::new("node1", Limits::default(), 7).0
    }

    fn route(ns: &str, name: &str, rev: &str) -> RouteSpec {
        RouteSpec {
            namespace: ns.into(),
            name: name.into(),
            traffic: vec![(rev.into(), 100, None)],
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
        let held = {
            let state = state.clone();
            tokio::spawn(async move {
                state
                    .acquire(Instant::now() + Duration::from_secs(30), 10, || {})
                    .await
                    .map(|l| l.backend.name.clone())
            })
        };
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
        let held = {
            let state = state.clone();
            tokio::spawn(async move {
                state
                    .acquire(Instant::now() + Duration::from_secs(30), 10, || {})
                    .await
                    .map(|l| l.backend.name.clone())
            })
        };
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
        let r = state
            .acquire(start + Duration::from_secs(5), 10, || {})
            .await
            .map(|_| ());
        assert_eq!(r, Err(NoBackend::TimedOut));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_hold_limit_is_enforced() {
        let dp = dp();
        let state = dp.revision("default", "hello-00001");
        let mut waiting = Vec::new();
        for _ in 0..2 {
            let state = state.clone();
            waiting.push(tokio::spawn(async move {
                state
                    .acquire(Instant::now() + Duration::from_secs(5), 2, || {})
                    .await
                    .map(|_| ())
            }));
        }
        tokio::task::yield_now().await;
        let third = state
            .acquire(Instant::now() + Duration::from_secs(5), 2, || {})
            .await
            .map(|_| ());
        assert_eq!(third, Err(NoBackend::HoldQueueFull));
        for w in waiting {
            assert_eq!(w.await.expect("task"), Err(NoBackend::TimedOut));
        }
    }
}
