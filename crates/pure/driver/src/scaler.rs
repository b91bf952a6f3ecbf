//! One revision's scaler, as every driver runs it: the nodes' load reports feed the KPA
//! ([`RevisionAutoscaler`]) and the per-node demand, serving time and occupancy; a tick
//! decides, under the revision's keep-alive policy (told of every idle period the ticks
//! see); the revision's placement policy splits the decision over the nodes with the
//! revision's own seeded generator.
//!
//! Nodes are keyed by whatever the driver names them with (`K`): the control plane by name
//! (its node order grows when a node joins, so an index would move), the simulator by its
//! fleet index (no string on its hot path). Placement takes the keys in fleet order.

use std::collections::BTreeMap;
use std::time::Duration;

use kantai_autoscaler::{Decision, Observation, RevisionAutoscaler, ScalingSpec};
use kantai_latency::Ewma;
use kantai_policy::registry;
use kantai_policy::{
    FleetView, Idleness, KeepAlive, KeepAliveInput, Params, Placement, PlacementDecision,
    PlacementInput, Resources, stable_hash,
};
use kantai_records::PlacementRecord;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::settings::RevisionSettings;

/// How long measured demand and serving times are remembered (half-life).
pub const MEASURE_HALF_LIFE: Duration = Duration::from_secs(10);

/// A gateway pokes the control plane about a revision at most this often.
pub const POKE_INTERVAL: Duration = Duration::from_millis(100);

/// One node's load of one revision over the last report interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeLoad {
    /// Average requests in flight through the node's gateway.
    pub concurrency: f64,
    /// Requests per second entering the node (the per-origin demand).
    pub requests: f64,
    /// Requests the node's gateway holds for want of an instance.
    pub held: u32,
    /// Whether the node reported at once because load reached a revision at zero.
    pub poke: bool,
    /// Requests the revision's instances on the node answered.
    pub served: u64,
    /// Their average serving time, in ms.
    pub serving_ms: f64,
    /// Requests in the revision's instances on the node now.
    pub in_flight: u32,
    /// Requests waiting for a slot of those instances now.
    pub queued: u32,
}

/// The placement policy `name` (admission checked it; the default if it is gone since).
pub fn placement_policy(name: &str, params: &Params) -> Box<dyn Placement> {
    registry::placement(name, params)
        .unwrap_or_else(|| Box::new(kantai_policy::placement::Spread) as Box<dyn Placement>)
}

/// The keep-alive policy `name` (admission checked it; Knative's if it is gone since).
pub fn keep_alive_policy(name: &str, params: &Params) -> Box<dyn KeepAlive> {
    registry::keep_alive(name, params)
        .unwrap_or_else(|| Box::new(kantai_policy::keepalive::Knative) as Box<dyn KeepAlive>)
}

/// Whether a report asks for a decision at once: the KPA woke from zero, or a node poked
/// about a revision for which its gateway holds requests and either the revision is at zero
/// (Knative's activator pokes the autoscaler the same way when it buffers a request for a
/// scaled-to-zero revision) or the node alone has more requests in flight (its poke's
/// concurrency, the held ones included) than the `replicas` the KPA asks for could take at
/// their full capacity (`per_instance` each): a burst. The decision is the KPA's own (the
/// same windows and rules), only taken now rather than at the next 2 s tick; the node pokes
/// at most every [`POKE_INTERVAL`].
pub fn tick_due(woke: bool, load: &NodeLoad, replicas: u32, per_instance: f64) -> bool {
    let demand = load.concurrency.max(f64::from(load.held));
    let excess = demand > f64::from(replicas) * per_instance;
    woke || (load.poke && load.held > 0 && (replicas == 0 || excess))
}

/// Whether a report shows the revision had a request: one arriving, in flight or held.
fn carries_requests(load: &NodeLoad) -> bool {
    load.requests > 0.0 || load.concurrency > 0.0 || load.held > 0 || load.in_flight > 0
}

/// One revision's autoscaler, measurements and placement policy.
pub struct RevisionScaler<K> {
    autoscaler: RevisionAutoscaler,
    spec: ScalingSpec,
    resources: Resources,
    policy: String,
    params: Params,
    placement: Box<dyn Placement>,
    keep_alive_name: String,
    keep_alive: Box<dyn KeepAlive>,
    idleness: Idleness,
    /// Whether a report since the last tick carried a request.
    busy: bool,
    rng: SmallRng,
    demand: BTreeMap<K, Ewma>,
    serving: BTreeMap<K, Ewma>,
    occupancy: BTreeMap<K, (u32, u32)>,
    placed_total: Option<u32>,
}

/// The seed of a revision's placement generator: the same in every driver and run.
pub fn seed(namespace: &str, revision: &str) -> u64 {
    stable_hash(format!("{namespace}/{revision}").as_bytes())
}

impl<K: Ord + Clone> RevisionScaler<K> {
    /// A scaler for a revision with `settings` (its `scaling.reachable` as the driver set
    /// it), seeded with [`seed`]; `ready` instances already run (a restarted control plane
    /// starts from them, in panic mode when more than one).
    pub fn new(settings: &RevisionSettings, seed: u64, now: Duration, ready: u32) -> Self {
        Self::with_rng(settings, SmallRng::seed_from_u64(seed), now, ready)
    }

    /// A scaler whose placement generator the driver made: the simulator derives it from
    /// the run's seed, so that one scenario under two seeds places differently.
    pub fn with_rng(settings: &RevisionSettings, rng: SmallRng, now: Duration, ready: u32) -> Self {
        RevisionScaler {
            autoscaler: RevisionAutoscaler::new(settings.scaling.clone(), now, ready),
            spec: settings.scaling.clone(),
            resources: settings.resources,
            policy: settings.placement.clone(),
            params: settings.params.clone(),
            placement: placement_policy(&settings.placement, &settings.params),
            keep_alive_name: settings.keep_alive.clone(),
            keep_alive: keep_alive_policy(&settings.keep_alive, &settings.params),
            idleness: Idleness::default(),
            busy: false,
            rng,
            demand: BTreeMap::new(),
            serving: BTreeMap::new(),
            occupancy: BTreeMap::new(),
            placed_total: None,
        }
    }

    /// Takes changed settings: the KPA re-reads a changed spec, a changed policy or
    /// parameters make a new policy (the generator goes on).
    pub fn update(&mut self, settings: &RevisionSettings, now: Duration) {
        if self.spec != settings.scaling {
            self.autoscaler.update_spec(settings.scaling.clone(), now);
            self.spec = settings.scaling.clone();
        }
        self.resources = settings.resources;
        let params_changed = self.params != settings.params;
        if self.policy != settings.placement || params_changed {
            self.placement = placement_policy(&settings.placement, &settings.params);
            self.policy = settings.placement.clone();
        }
        if self.keep_alive_name != settings.keep_alive || params_changed {
            // What a policy learnt (a histogram of idle times) was learnt under the old
            // parameters: the new one starts afresh, the idle periods go on.
            self.keep_alive = keep_alive_policy(&settings.keep_alive, &settings.params);
            self.keep_alive_name = settings.keep_alive.clone();
        }
        self.params = settings.params.clone();
    }

    /// Records one node's report; returns whether to tick now ([`tick_due`]). Several
    /// nodes' reports within one second add up in the KPA's buckets, so one report per node
    /// and one summed report per revision decide alike.
    pub fn record(&mut self, now: Duration, node: &K, load: &NodeLoad) -> bool {
        self.record_measured(now, node, load);
        self.busy |= carries_requests(load);
        let woke = self.autoscaler.record(
            now,
            Observation {
                concurrency: load.concurrency,
                requests: load.requests,
                ..Observation::default()
            },
        );
        tick_due(woke, load, self.autoscaler.replicas(), self.spec.total)
    }

    /// Records a node's demand, serving time and occupancy only (a driver that feeds the
    /// KPA the revision's load summed over nodes calls [`RevisionScaler::record_total`]).
    pub fn record_measured(&mut self, now: Duration, node: &K, load: &NodeLoad) {
        self.demand
            .entry(node.clone())
            .or_insert_with(|| Ewma::new(MEASURE_HALF_LIFE))
            .record(now, load.requests);
        self.occupancy
            .insert(node.clone(), (load.in_flight, load.queued));
        if load.served > 0 {
            self.serving
                .entry(node.clone())
                .or_insert_with(|| Ewma::new(MEASURE_HALF_LIFE))
                .record(now, load.serving_ms);
        }
    }

    /// Feeds the KPA the revision's load summed over nodes; returns whether to tick now.
    pub fn record_total(&mut self, now: Duration, load: &NodeLoad) -> bool {
        self.busy |= carries_requests(load);
        let woke = self.autoscaler.record(
            now,
            Observation {
                concurrency: load.concurrency,
                requests: load.requests,
                ..Observation::default()
            },
        );
        tick_due(woke, load, self.autoscaler.replicas(), self.spec.total)
    }

    /// The KPA's decision at `now` with `ready` instances, under the keep-alive policy's.
    pub fn tick(&mut self, now: Duration, ready: u32) -> Decision {
        if let Some(arrival) = self.idleness.tick(now, std::mem::take(&mut self.busy)) {
            self.keep_alive.arrived(arrival);
        }
        let input = KeepAliveInput {
            now,
            idle_since: self.idleness.idle_since(),
            ready,
            resources: self.resources,
            cold_start: None,
            params: &self.params,
        };
        let hold = self.keep_alive.hold(&input);
        self.autoscaler.tick_held(now, ready, hold)
    }

    /// The keep-alive policy's name.
    pub fn keep_alive(&self) -> &str {
        &self.keep_alive_name
    }

    /// The KPA's current replica count.
    pub fn replicas(&self) -> u32 {
        self.autoscaler.replicas()
    }

    /// Whether placing `desired` can change anything: always for a policy that rebalances
    /// and before the first placement; otherwise only when the count changed. A driver
    /// whose nodes can change (the control plane) places every tick regardless.
    pub fn placement_due(&self, desired: u32) -> bool {
        self.placement.rebalances() || self.placed_total != Some(desired)
    }

    /// The placement policy's name.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// The revision's policy parameters (the load balancer and queue read them too).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// What one instance of the revision asks of its node.
    pub fn resources(&self) -> Resources {
        self.resources
    }

    /// Splits `desired` over `fleet`, whose nodes are `keys` (fleet order) and run
    /// `current` instances of the revision, with each node's occupancy as reported unless
    /// the driver measures it itself (`occupancy`: in flight, queued). With `record` (the revision's namespace), also
    /// the decision log's record of it (its `time` left for the driver's clock).
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &mut self,
        fleet: &FleetView,
        keys: &[K],
        revision: &str,
        current: &[u32],
        desired: u32,
        now: Duration,
        occupancy: Option<(&[u32], &[u32])>,
        record: Option<&str>,
    ) -> (PlacementDecision, Option<PlacementRecord>) {
        let n = keys.len();
        // Built per placement, not kept per revision: a scaler of a 10,000-node fleet kept
        // ~320 KB of them, doubling the simulator's memory at 1,000 functions; a placement
        // walks every node anyway.
        let demand: Vec<f64> = keys
            .iter()
            .map(|k| self.demand.get(k).and_then(Ewma::value).unwrap_or(0.0))
            .collect();
        let serving: Vec<Option<f64>> = keys
            .iter()
            .map(|k| self.serving.get(k).and_then(Ewma::value))
            .collect();
        let reported: (Vec<u32>, Vec<u32>) = match occupancy {
            Some(_) => (Vec::new(), Vec::new()),
            None => keys
                .iter()
                .map(|k| self.occupancy.get(k).copied().unwrap_or_default())
                .unzip(),
        };
        let (in_flight, queued) = occupancy.unwrap_or((&reported.0, &reported.1));
        debug_assert_eq!(n, current.len());
        let input = PlacementInput {
            fleet,
            revision,
            desired,
            current,
            demand: &demand,
            serving_ms: &serving,
            in_flight,
            queued,
            resources: self.resources,
            params: &self.params,
            now,
        };
        let decision = self.placement.place(&input, &mut self.rng);
        let rec = record.map(|ns| PlacementRecord {
            fallback: self.placement.fallback(),
            ..PlacementRecord::new(
                &input,
                &self.policy,
                &self.params,
                &decision,
                ns,
                String::new(),
            )
        });
        self.placed_total = Some(decision.per_node.iter().sum());
        (decision, rec)
    }

    /// Records a node's demand alone (requests per second).
    pub fn record_demand(&mut self, now: Duration, node: &K, rate: f64) {
        self.demand
            .entry(node.clone())
            .or_insert_with(|| Ewma::new(MEASURE_HALF_LIFE))
            .record(now, rate);
    }

    /// Records a node's serving time alone (ms); returns the node's average.
    pub fn record_serving(&mut self, now: Duration, node: &K, ms: f64) -> Option<f64> {
        let e = self
            .serving
            .entry(node.clone())
            .or_insert_with(|| Ewma::new(MEASURE_HALF_LIFE));
        e.record(now, ms);
        e.value()
    }

    /// The measured serving time per node (ms), for the load balancers.
    pub fn serving(&self) -> impl Iterator<Item = (&K, f64)> {
        self.serving
            .iter()
            .filter_map(|(k, e)| Some((k, e.value()?)))
    }

    /// The measured demand per node (requests per second).
    pub fn demand(&self) -> impl Iterator<Item = (&K, f64)> {
        self.demand
            .iter()
            .filter_map(|(k, e)| Some((k, e.value()?)))
    }
}
