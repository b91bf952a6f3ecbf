//! The activator role for one revision at this node: the instances that can serve it, the
//! revision's load balancer, the requests held while none has room (in the order of the
//! revision's queue discipline), and the load accounting for the autoscaler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use kantai_policy::registry;
use kantai_policy::{
    Admission, Candidate, LbContext, LoadBalancer, Params, QueueDiscipline, RequestInfo,
};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::warn;

use crate::instance::LocalInstance;
use crate::metrics::{Metrics, RequestLabels, RevisionLabels};
use crate::request::OwnedRequest;
use crate::stats::LoadStats;
use kantai_api::decisions::{Decision, DecisionLog, LoadBalanceRecord};
use kantai_policy::stable_hash;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::OnceLock;

/// A revision: namespace and name.
pub type RevKey = (String, String);

/// Backends whose candidates a choice builds on the stack rather than in a vector.
const STACK_CANDIDATES: usize = 16;

/// At most one poke per revision this often, as the simulator's gateways.
pub use kantai_driver::POKE_INTERVAL;

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

/// How a revision's requests are served.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionConfig {
    /// containerConcurrency (0 = unlimited).
    pub cc: u32,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// `responseStartTimeoutSeconds`, when below the timeout.
    pub response_start: Option<Duration>,
    /// `idleTimeoutSeconds`, when set.
    pub idle: Option<Duration>,
    /// Whether its instances speak HTTP/2 cleartext (`RevisionSettings::h2c`).
    pub h2c: bool,
    /// Whether requests wait in the activator for a free slot (Knative's proxy mode) rather
    /// than queue at an instance.
    pub activator_in_path: bool,
    /// The load balancer's name.
    pub load_balancer: String,
    /// The queue discipline's name.
    pub queue: String,
    /// The policies' parameters.
    pub params: Params,
    /// The revision's service (for metrics).
    pub service: String,
}

impl Default for RevisionConfig {
    fn default() -> Self {
        RevisionConfig {
            cc: 0,
            timeout: Duration::from_secs(300),
            response_start: None,
            idle: None,
            h2c: false,
            activator_in_path: true,
            load_balancer: registry::Kind::LoadBalancer.default_name().to_owned(),
            queue: registry::Kind::Queue.default_name().to_owned(),
            params: Params::default(),
            service: String::new(),
        }
    }
}

/// Where a backend is.
pub enum Target {
    /// On this node.
    Local(Arc<LocalInstance>),
    /// On another node, reached through its data port.
    Remote {
        /// The node.
        node: String,
        /// Its data address.
        addr: SocketAddr,
    },
}

/// An instance that can serve the revision, as this node sees it.
pub struct Backend {
    /// Instance name.
    pub name: String,
    /// Where it is.
    pub target: Target,
    /// Its node's index in the fleet's order.
    pub node: usize,
    /// A stable identity for the balancer.
    pub id: u64,
    tracked: Arc<Tracked>,
}

/// What this node keeps of an instance across updates of the backend list: its requests in
/// flight from here, and until when it is left out after a connection to it failed.
#[derive(Default)]
struct Tracked {
    in_flight: AtomicU32,
    /// Milliseconds since the revision state's epoch; 0 when it is not left out.
    ejected_until_ms: AtomicU64,
}

impl Backend {
    /// Whether it is left out of the balancer's choice at `now_ms`.
    fn ejected(&self, now_ms: u64) -> bool {
        self.tracked.ejected_until_ms.load(Ordering::Acquire) > now_ms
    }
}

/// The revision's policies and the requests waiting for capacity, under one lock so that a
/// choice and the queue it serves never disagree.
struct Policies {
    load_balancer: String,
    queue: String,
    params: Params,
    lb: Box<dyn LoadBalancer>,
    rng: SmallRng,
    held: Box<dyn QueueDiscipline>,
    waiters: HashMap<u64, Waiter>,
    next_id: u64,
    /// Why the revision cannot start, as the node agent last said; under this lock so that
    /// a request is never queued after the held ones were failed.
    failure: Option<Arc<str>>,
}

struct Waiter {
    tx: oneshot::Sender<Result<Lease, NoBackend>>,
    req: OwnedRequest,
}

/// The activator state of one revision.
pub struct RevisionState {
    /// The revision.
    pub key: RevKey,
    config: ArcSwap<RevisionConfig>,
    backends: ArcSwap<Vec<Arc<Backend>>>,
    counters: Mutex<HashMap<String, Arc<Tracked>>>,
    policies: Mutex<Policies>,
    /// Serving time on each node (fleet order), from the control plane.
    serving: ArcSwap<Vec<Option<f64>>>,
    net: Arc<ArcSwap<NetView>>,
    epoch: Instant,
    held: AtomicU32,
    stats: Mutex<LoadStats>,
    last_poke: Mutex<Option<Instant>>,
    retired: AtomicBool,
    metrics: Arc<Metrics>,
    decisions: Arc<OnceLock<Arc<DecisionLog>>>,
    /// Request counter and latency histogram per (serving node index, status code), so that
    /// a request does not build label strings.
    recorders: Mutex<HashMap<(usize, u16), (Counter, Histogram)>>,
}

/// A request's hold on a backend; releases it on drop.
pub struct Lease {
    /// The chosen backend.
    pub backend: Arc<Backend>,
    state: Arc<RevisionState>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend
            .tracked
            .in_flight
            .fetch_sub(1, Ordering::AcqRel);
        // A slot is free: the next held request may go.
        if self.state.held.load(Ordering::Acquire) > 0 {
            self.state.dispatch();
        }
    }
}

/// Counts a request in the revision's load from arrival to the end of its response.
pub struct Entry {
    state: Arc<RevisionState>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.state.stats.lock().exit(Instant::now());
    }
}

/// Why no backend was found.
#[derive(Debug, PartialEq, Eq)]
pub enum NoBackend {
    /// The hold queue is full (or the queue discipline pushed this request out).
    HoldQueueFull,
    /// The deadline passed while waiting.
    TimedOut,
    /// The revision was removed while the request waited.
    Removed,
    /// The revision cannot start (its image, its registry, its command or its container
    /// config), and no instance of it is ready: holding would only wait for the timeout.
    CannotStart(Arc<str>),
}

fn policies_for(cfg: &RevisionConfig, seed: u64) -> Policies {
    let lb = registry::load_balancer(&cfg.load_balancer, &cfg.params).unwrap_or_else(|| {
        warn!(
            "{}; using knative",
            registry::unknown(registry::Kind::LoadBalancer, &cfg.load_balancer)
        );
        Box::new(kantai_policy::lb::Knative::new())
    });
    let held = registry::queue(&cfg.queue, &cfg.params).unwrap_or_else(|| {
        warn!(
            "{}; using fifo",
            registry::unknown(registry::Kind::Queue, &cfg.queue)
        );
        Box::new(kantai_policy::queue::Fifo::default())
    });
    Policies {
        load_balancer: cfg.load_balancer.clone(),
        queue: cfg.queue.clone(),
        params: cfg.params.clone(),
        lb,
        rng: SmallRng::seed_from_u64(seed),
        held,
        waiters: HashMap::new(),
        next_id: 0,
        failure: None,
    }
}

/// A request waiting for capacity. Dropping it (timeout, or the client went away) takes it
/// out of the queue.
pub struct Held {
    state: Arc<RevisionState>,
    id: u64,
    rx: oneshot::Receiver<Result<Lease, NoBackend>>,
}

impl Held {
    /// Waits until the request is served a backend, pushed out, or `deadline` passes.
    pub async fn wait(mut self, deadline: Instant) -> Result<Lease, NoBackend> {
        match tokio::time::timeout_at(deadline, &mut self.rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(NoBackend::Removed),
            Err(_) => Err(NoBackend::TimedOut),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut p = self.state.policies.lock();
        let was = p.waiters.remove(&self.id).is_some();
        p.held.remove(self.id);
        drop(p);
        if was {
            self.state.held.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What an arriving request gets.
pub enum Acquired {
    /// A backend with room, at once.
    Now(Lease),
    /// A place in the hold queue.
    Held(Held),
}

impl RevisionState {
    /// A revision without instances yet.
    pub fn new(
        key: RevKey,
        seed: u64,
        net: Arc<ArcSwap<NetView>>,
        metrics: Arc<Metrics>,
        decisions: Arc<OnceLock<Arc<DecisionLog>>>,
    ) -> RevisionState {
        let config = RevisionConfig::default();
        RevisionState {
            key,
            policies: Mutex::new(policies_for(&config, seed)),
            config: ArcSwap::from_pointee(config),
            backends: ArcSwap::from_pointee(Vec::new()),
            counters: Mutex::new(HashMap::new()),
            serving: ArcSwap::from_pointee(Vec::new()),
            net,
            epoch: Instant::now(),
            held: AtomicU32::new(0),
            stats: Mutex::new(LoadStats::new(Instant::now())),
            last_poke: Mutex::new(None),
            retired: AtomicBool::new(false),
            metrics,
            decisions,
            recorders: Mutex::new(HashMap::new()),
        }
    }

    /// The labels of this revision at this node.
    pub fn labels(&self) -> RevisionLabels {
        let net = self.net.load();
        RevisionLabels {
            namespace: self.key.0.clone(),
            service: self.config.load().service.clone(),
            revision: self.key.1.clone(),
            node: net.nodes.get(net.me).cloned().unwrap_or_default(),
        }
    }

    /// Counts a request answered with `code` after `elapsed`, served on node `node` (an index
    /// into the fleet's order; past the end when no instance served it).
    pub fn record(&self, node: usize, code: u16, elapsed: Duration) {
        let mut r = self.recorders.lock();
        let (c, h) = r.entry((node, code)).or_insert_with(|| {
            let net = self.net.load();
            let labels = RequestLabels {
                namespace: self.key.0.clone(),
                service: self.config.load().service.clone(),
                revision: self.key.1.clone(),
                node: net.nodes.get(node).cloned().unwrap_or_default(),
                origin_node: net.nodes.get(net.me).cloned().unwrap_or_default(),
                code: code.to_string(),
            };
            (
                self.metrics.requests.get_or_create_owned(&labels),
                self.metrics.request_duration.get_or_create_owned(&labels),
            )
        });
        c.inc();
        h.observe(elapsed.as_secs_f64());
    }

    /// Counts a request that waited `waited` for the revision's first instance.
    pub fn record_cold_start(&self, waited: Duration) {
        let labels = self.labels();
        self.metrics.cold_starts.get_or_create(&labels).inc();
        self.metrics
            .cold_start_duration
            .get_or_create(&labels)
            .observe(waited.as_secs_f64());
    }

    /// The revision's settings.
    pub fn config(&self) -> Arc<RevisionConfig> {
        self.config.load_full()
    }

    /// Time since this state's creation, the clock of its policies.
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub(crate) fn set_config(self: &Arc<Self>, c: RevisionConfig) {
        if *self.config.load_full() == c {
            return;
        }
        {
            // A changed policy takes effect for the next decision; requests already held
            // keep their place (moved into the new discipline in their old order).
            let mut p = self.policies.lock();
            if p.load_balancer != c.load_balancer || p.params != c.params {
                let fresh = policies_for(&c, stable_hash(self.key.1.as_bytes()));
                p.lb = fresh.lb;
                p.load_balancer = c.load_balancer.clone();
            }
            if p.queue != c.queue || p.params != c.params {
                let mut fresh = policies_for(&c, 0).held;
                let now = self.now();
                while let Some(id) = p.held.peek() {
                    p.held.remove(id);
                    if let Some(w) = p.waiters.get(&id) {
                        let _ = fresh.push(id, &w.req, now, usize::MAX);
                    }
                }
                p.held = fresh;
                p.queue = c.queue.clone();
            }
            p.params = c.params.clone();
        }
        self.config.store(Arc::new(c));
        // Label values may have changed (the service).
        self.recorders.lock().clear();
        self.dispatch();
    }

    /// Sets the serving time measured on each node (fleet order).
    pub(crate) fn set_serving(&self, serving: Vec<Option<f64>>) {
        if **self.serving.load() != serving {
            self.serving.store(Arc::new(serving));
        }
    }

    /// Marks the revision gone from this node: held requests fail rather than wait.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let waiters = {
            let mut p = self.policies.lock();
            self.take_waiters(&mut p)
        };
        for w in waiters {
            let _ = w.tx.send(Err(NoBackend::Removed));
        }
    }

    /// Empties the hold queue, uncounting what it held; the caller answers the waiters
    /// after releasing the lock.
    fn take_waiters(&self, p: &mut Policies) -> Vec<Waiter> {
        while let Some(id) = p.held.peek() {
            p.held.remove(id);
        }
        let waiters: Vec<Waiter> = p.waiters.drain().map(|(_, w)| w).collect();
        self.held.fetch_sub(waiters.len() as u32, Ordering::AcqRel);
        waiters
    }

    /// Records why the revision cannot start (`None`: it can again). While a failure stands
    /// and no instance is ready, held requests are answered at once with it and new ones are
    /// not held; a ready instance anywhere serves them regardless.
    pub(crate) fn set_failure(&self, failure: Option<&str>) {
        let waiters = {
            let mut p = self.policies.lock();
            if p.failure.as_deref() == failure {
                return;
            }
            p.failure = failure.map(Arc::from);
            match &p.failure {
                Some(why) if self.backends.load().is_empty() => {
                    let why = why.clone();
                    Some((self.take_waiters(&mut p), why))
                }
                _ => None,
            }
        };
        match failure {
            Some(why) => warn!(
                namespace = %self.key.0,
                revision = %self.key.1,
                "revision {} cannot start: {why}; its requests are answered 503 while no instance is ready",
                self.key.1
            ),
            None => tracing::info!(
                namespace = %self.key.0,
                revision = %self.key.1,
                "revision {} may start again; its requests are held for an instance",
                self.key.1
            ),
        }
        if let Some((waiters, why)) = waiters {
            for w in waiters {
                let _ = w.tx.send(Err(NoBackend::CannotStart(why.clone())));
            }
        }
    }

    /// Why the revision cannot start, while that stands.
    pub fn failure(&self) -> Option<Arc<str>> {
        self.policies.lock().failure.clone()
    }

    /// Ready backends now.
    pub fn backend_count(&self) -> usize {
        self.backends.load().len()
    }

    /// Requests in flight at this gateway now (held ones included).
    pub fn in_flight_now(&self) -> u32 {
        self.stats.lock().current()
    }

    /// Requests held now.
    pub fn held(&self) -> u32 {
        self.held.load(Ordering::Acquire)
    }

    /// Replaces the backends (keeping this node's in-flight counts of those that stay), and
    /// serves held requests that now fit.
    pub(crate) fn set_backends(self: &Arc<Self>, list: Vec<(String, Target, usize)>) {
        let mut counters = self.counters.lock();
        let mut next = Vec::with_capacity(list.len());
        let mut keep = HashMap::with_capacity(list.len());
        for (name, target, node) in list {
            let c = counters.get(&name).cloned().unwrap_or_default();
            keep.insert(name.clone(), c.clone());
            next.push(Arc::new(Backend {
                id: stable_hash(name.as_bytes()),
                name,
                target,
                node,
                tracked: c,
            }));
        }
        *counters = keep;
        drop(counters);
        let became_ready = self.backends.load().is_empty() && !next.is_empty();
        self.backends.store(Arc::new(next));
        if became_ready {
            // An instance that got ready proves the revision can start: whatever failure was
            // reported is over, and must not fail its requests again when it scales to zero.
            self.set_failure(None);
        }
        self.dispatch();
    }

    /// Counts an arriving request.
    pub fn enter(self: &Arc<Self>) -> Entry {
        self.stats.lock().enter(Instant::now());
        Entry {
            state: self.clone(),
        }
    }

    /// Average concurrency and arrivals per second since the last call, the held count and
    /// the requests in flight now.
    pub fn take_load(&self) -> (f64, f64, u32, u32) {
        let mut s = self.stats.lock();
        let (c, r) = s.take(Instant::now());
        (c, r, self.held(), s.current())
    }

    /// Whether a poke should go out now (at most one per revision every [`POKE_INTERVAL`]).
    pub(crate) fn should_poke(&self) -> bool {
        let mut last = self.last_poke.lock();
        let now = Instant::now();
        if last.is_some_and(|t| now.saturating_duration_since(t) < POKE_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Tells the revision's balancer how long a request to `backend` took.
    pub fn observe(&self, backend: &Backend, latency: Duration) {
        let now = self.now();
        self.policies.lock().lb.observe(backend.id, latency, now);
    }

    /// Leaves `backend` out of the balancer's choices for `period`: a connection to it
    /// failed before the request was sent (the instance or its node died, and this node has
    /// not heard yet), so the request goes to another one rather than fail. Held requests are
    /// served again when the period ends, in case it was the only one.
    pub fn eject(self: &Arc<Self>, backend: &Backend, period: Duration) {
        let until = self.now() + period;
        backend
            .tracked
            .ejected_until_ms
            .store(until.as_millis() as u64, Ordering::Release);
        warn!(
            revision = %self.key.1,
            instance = %backend.name,
            "cannot reach the instance; leaving it out for {period:?}"
        );
        let state = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(period).await;
            state.dispatch();
        });
    }

    /// Leaves out (until `until`, as time since now) or lets back in (`None`) every instance
    /// of this revision on node `peer`.
    pub(crate) fn eject_node(self: &Arc<Self>, peer: &str, until: Option<Duration>) {
        let stamp = until.map_or(0, |d| (self.now() + d).as_millis() as u64);
        let mut changed = false;
        for b in self.backends.load().iter() {
            if matches!(&b.target, Target::Remote { node, .. } if node == peer) {
                let old = b.tracked.ejected_until_ms.swap(stamp, Ordering::AcqRel);
                changed |= old != stamp;
            }
        }
        if changed && until.is_none() {
            self.dispatch();
        }
    }

    /// The balancer's choice for `req`, under the policies' lock.
    fn choose(self: &Arc<Self>, p: &mut Policies, req: &dyn RequestInfo) -> Option<Lease> {
        let all = self.backends.load();
        let now_ms = self.now().as_millis() as u64;
        // Rare: some backend was left out after a failed connection. The common path keeps
        // the list as it is, without a copy.
        let filtered;
        let backends: &[Arc<Backend>] = if all.iter().any(|b| b.ejected(now_ms)) {
            filtered = all
                .iter()
                .filter(|b| !b.ejected(now_ms))
                .cloned()
                .collect::<Vec<_>>();
            &filtered
        } else {
            &all
        };
        if backends.is_empty() {
            return None;
        }
        let cfg = self.config.load();
        // With the activator out of the path, requests go straight to an instance and queue
        // there; the balancer then ignores capacity.
        let (cc, capacity) = if cfg.activator_in_path {
            (cfg.cc, cfg.cc)
        } else {
            (0, 0)
        };
        let candidate = |b: &Arc<Backend>| Candidate {
            id: b.id,
            node: b.node,
            in_flight: b.tracked.in_flight.load(Ordering::Acquire),
            capacity,
        };
        // A revision has a few instances: their candidates fit on the stack.
        let mut stack = [Candidate {
            id: 0,
            node: 0,
            in_flight: 0,
            capacity: 0,
        }; STACK_CANDIDATES];
        let heap: Vec<Candidate>;
        let candidates: &[Candidate] = if backends.len() <= STACK_CANDIDATES {
            for (slot, b) in stack.iter_mut().zip(backends) {
                *slot = candidate(b);
            }
            &stack[..backends.len()]
        } else {
            heap = backends.iter().map(candidate).collect();
            &heap
        };
        let net = self.net.load();
        let serving = self.serving.load();
        let ctx = LbContext {
            origin: net.me,
            rtt_ms: &net.rtt,
            serving_ms: &serving,
            container_concurrency: cc,
            now: self.now(),
        };
        let picked = p.lb.pick(req, candidates, &ctx, &mut p.rng);
        if let Some(log) = self.decisions.get()
            && log.load_balancing()
        {
            log.record(self.lb_record(p, req, backends, candidates, &ctx, &net, picked));
        }
        let backend = backends.get(picked?)?.clone();
        backend.tracked.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Lease {
            backend,
            state: self.clone(),
        })
    }

    /// The decision-log record of a balancer's choice.
    #[allow(clippy::too_many_arguments)]
    fn lb_record(
        &self,
        p: &Policies,
        req: &dyn RequestInfo,
        backends: &[Arc<Backend>],
        candidates: &[Candidate],
        ctx: &LbContext<'_>,
        net: &NetView,
        picked: Option<usize>,
    ) -> Decision {
        let node_name = |i: usize| net.nodes.get(i).cloned().unwrap_or_default();
        Decision::LoadBalance(Box::new(LoadBalanceRecord {
            time: kantai_api::time::now(),
            t: ctx.now.as_secs_f64(),
            node: node_name(net.me),
            namespace: self.key.0.clone(),
            revision: self.key.1.clone(),
            policy: p.load_balancer.clone(),
            method: req.method().to_owned(),
            path: req.path().to_owned(),
            candidates: backends
                .iter()
                .zip(candidates)
                .map(|(b, c)| (b.name.clone(), node_name(c.node), c.in_flight, c.capacity))
                .collect(),
            rtt_ms: ctx.rtt_ms.to_vec(),
            serving_ms: ctx.serving_ms.to_vec(),
            nodes: net.nodes.clone(),
            choice: picked.and_then(|i| backends.get(i)).map(|b| b.name.clone()),
        }))
    }

    /// Serves held requests, in the discipline's order, while the balancer finds room.
    fn dispatch(self: &Arc<Self>) {
        // Leases that could not be handed over are dropped after the lock is released (their
        // drop dispatches again).
        let mut undelivered = Vec::new();
        {
            let mut p = self.policies.lock();
            while let Some(id) = p.held.peek() {
                let Some(w) = p.waiters.remove(&id) else {
                    p.held.remove(id);
                    continue;
                };
                if w.tx.is_closed() {
                    p.held.remove(id);
                    self.held.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                match self.choose(&mut p, &w.req) {
                    Some(lease) => {
                        p.held.remove(id);
                        self.held.fetch_sub(1, Ordering::AcqRel);
                        if let Err(Ok(lease)) = w.tx.send(Ok(lease)) {
                            undelivered.push(lease);
                        }
                    }
                    None => {
                        p.waiters.insert(id, w);
                        break;
                    }
                }
            }
        }
        drop(undelivered);
    }

    /// A backend with room for `req` now, or a place in the hold queue (in the queue
    /// discipline's order) to wait for one. `poke` is called when the request has to wait.
    /// Synchronous, so that the request is only borrowed for the decision.
    pub fn acquire(
        self: &Arc<Self>,
        req: &dyn RequestInfo,
        owned: impl FnOnce() -> OwnedRequest,
        hold_limit: u32,
        poke: impl Fn(),
    ) -> Result<Acquired, NoBackend> {
        let (id, rx, evicted) = {
            let mut p = self.policies.lock();
            // Nobody waits ahead of it: it may go at once.
            if p.held.is_empty()
                && let Some(l) = self.choose(&mut p, req)
            {
                return Ok(Acquired::Now(l));
            }
            if self.retired.load(Ordering::Acquire) {
                return Err(NoBackend::Removed);
            }
            if let Some(why) = &p.failure
                && self.backends.load().is_empty()
            {
                let why = why.clone();
                drop(p);
                // Still demand: the autoscaler keeps the revision wanted, so that it starts
                // as soon as whatever stopped it is fixed.
                poke();
                return Err(NoBackend::CannotStart(why));
            }
            let id = p.next_id;
            p.next_id += 1;
            let now = self.now();
            let evicted = match p.held.push(id, req, now, hold_limit as usize) {
                Admission::Rejected => return Err(NoBackend::HoldQueueFull),
                Admission::Queued => {
                    // Counted under the lock, before any dispatch can serve (and uncount) it.
                    self.held.fetch_add(1, Ordering::AcqRel);
                    None
                }
                // It takes the place of the one pushed out: the count stays.
                Admission::Evicted(victim) => p.waiters.remove(&victim),
            };
            let (tx, rx) = oneshot::channel();
            p.waiters.insert(id, Waiter { tx, req: owned() });
            (id, rx, evicted)
        };
        if let Some(v) = evicted {
            let _ = v.tx.send(Err(NoBackend::HoldQueueFull));
        }
        let held = Held {
            state: self.clone(),
            id,
            rx,
        };
        poke();
        // Capacity may have come between the choice above and the queueing.
        self.dispatch();
        Ok(Acquired::Held(held))
    }
}
