//! The autoscaling loop: the KPA of every revision, fed by the node agents' reports, ticked
//! every 2 s (and at once when load reaches a revision at zero); each decision is split over
//! the nodes by the placement policy and written to the revision's Placement.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kantai_api::Report;
use kantai_api::resources::{INSTANCES, NODES, PLACEMENTS, REVISIONS, ROUTES};
use kantai_autoscaler::{Decision, Observation, RevisionAutoscaler, ScalingSpec, TICK};
use kantai_latency::Ewma;
use kantai_model::autoscaling::AutoscalingAnnotations;
use kantai_model::fleet::{self, NodeCount, Placement, PlacementSpec};
use kantai_model::meta::ObjectMeta;
use kantai_model::serving::derive::SERVICE_LABEL;
use kantai_model::{FieldPath, Findings};
use kantai_policy::registry::{self, Kind};
use kantai_policy::{FleetView, NodeView, Params, Placement as PlacementPolicy, PlacementInput};
use kantai_policy::{Resources, RttMatrix};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::Shared;

type Key = (String, String);

/// How long measured demand and serving times are remembered (half-life).
pub const MEASURE_HALF_LIFE: Duration = Duration::from_secs(10);

struct Scaler {
    autoscaler: RevisionAutoscaler,
    spec: ScalingSpec,
    service: String,
    resources: Resources,
    /// The placement policy's name and parameters, and the policy itself.
    policy: (String, Params),
    placement: Box<dyn PlacementPolicy>,
    rng: SmallRng,
    /// Requests per second entering each node (per-origin demand).
    demand: HashMap<String, Ewma>,
    /// Serving time of the revision's instances on each node, in ms.
    serving: HashMap<String, Ewma>,
    /// Requests in and waiting for the revision's instances on each node, as last reported.
    occupancy: HashMap<String, (u32, u32)>,
}

/// The loop's state.
pub struct Scaling {
    started: Instant,
    scalers: HashMap<Key, Scaler>,
    /// Revisions left unplaced because their image digests are not recorded yet: placed as
    /// soon as their status records them, not at the next tick.
    awaiting: HashSet<Key>,
}

impl Scaling {
    fn since_start(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.started)
    }
}

/// Runs the loop until the report channel closes.
pub async fn run(s: Arc<Shared>, mut reports: mpsc::Receiver<(Report, Instant)>) {
    let mut st = Scaling {
        started: Instant::now(),
        scalers: HashMap::new(),
        awaiting: HashSet::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes = s.store.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                sync(&s, &mut st);
                let keys: Vec<Key> = st.scalers.keys().cloned().collect();
                tick_revisions(&s, &mut st, &keys, Instant::now());
            }
            e = changes.recv() => {
                // A new revision gets its first decision (and so its Ready condition and its
                // route) now rather than at the next tick.
                let added = match e {
                    Ok(e) if e.resource == REVISIONS.plural
                        && e.type_ == crate::store::EventType::Modified =>
                    {
                        let key = (e.namespace.clone(), e.object["metadata"]["name"].as_str().unwrap_or_default().to_owned());
                        if st.awaiting.contains(&key) && !s.digests.awaiting(&s.config, &e.object) {
                            tick_revisions(&s, &mut st, &[key], Instant::now());
                        }
                        false
                    }
                    Ok(e) => e.resource == REVISIONS.plural
                        && e.type_ == crate::store::EventType::Added,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    // The store is gone: the control plane is stopping.
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if added {
                    let before: HashSet<Key> = st.scalers.keys().cloned().collect();
                    sync(&s, &mut st);
                    let new: Vec<Key> = st.scalers.keys().filter(|k| !before.contains(*k)).cloned().collect();
                    if !new.is_empty() {
                        tick_revisions(&s, &mut st, &new, Instant::now());
                    }
                }
            }
            r = reports.recv() => {
                let Some((report, at)) = r else { return };
                let poked = ingest(&s, &mut st, &report, at);
                if !poked.is_empty() {
                    debug!(?poked, "poke");
                    tick_revisions(&s, &mut st, &poked, Instant::now());
                }
            }
        }
    }
}

/// Creates, updates and drops autoscalers to match the stored revisions.
fn sync(s: &Shared, st: &mut Scaling) {
    let now = st.since_start(Instant::now());
    let (revisions, _) = s.store.list(&REVISIONS, None);
    let reachable = reachable_revisions(s);
    let mut seen = HashSet::new();
    for v in &revisions {
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (ns.clone(), name.clone());
        let Some(rs) = spec_of(s, v) else {
            continue;
        };
        let mut spec = rs.scaling;
        spec.reachable = reachable.contains(&key);
        seen.insert(key.clone());
        let service = v["metadata"]["labels"][SERVICE_LABEL]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match st.scalers.get_mut(&key) {
            Some(sc) => {
                if sc.spec != spec {
                    sc.autoscaler.update_spec(spec.clone(), now);
                    sc.spec = spec;
                }
                sc.resources = rs.resources;
                if sc.policy != (rs.policy.clone(), rs.params.clone()) {
                    sc.placement = new_policy(&rs.policy, &rs.params);
                    sc.policy = (rs.policy, rs.params);
                }
            }
            None => {
                // A restarted control plane finds instances running: the autoscaler starts
                // from them (in panic mode when more than one), so that lost history does not
                // scale them down.
                let ready = ready_instances(s, &ns, &name);
                info!(revision = %name, ready, "autoscaling");
                let seed = kantai_policy::request::stable_hash(format!("{ns}/{name}").as_bytes());
                st.scalers.insert(
                    key,
                    Scaler {
                        autoscaler: RevisionAutoscaler::new(spec.clone(), now, ready),
                        spec,
                        service,
                        resources: rs.resources,
                        placement: new_policy(&rs.policy, &rs.params),
                        policy: (rs.policy, rs.params),
                        rng: SmallRng::seed_from_u64(seed),
                        demand: HashMap::new(),
                        serving: HashMap::new(),
                        occupancy: HashMap::new(),
                    },
                );
            }
        }
    }
    st.scalers.retain(|k, _| seen.contains(k));
    st.awaiting.retain(|k| seen.contains(k));
    s.decisions.lock().retain(|k, _| seen.contains(k));
}

/// Revisions that receive traffic: named by a route's resolved traffic, or the newest of a
/// configuration that a route follows.
fn reachable_revisions(s: &Shared) -> HashSet<Key> {
    let mut out = HashSet::new();
    for r in s.store.list(&ROUTES, None).0 {
        let ns = r["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        for t in r["status"]["traffic"].as_array().into_iter().flatten() {
            if let Some(rev) = t["revisionName"].as_str() {
                out.insert((ns.clone(), rev.to_owned()));
            }
        }
        for t in r["spec"]["traffic"].as_array().into_iter().flatten() {
            if let Some(rev) = t["revisionName"].as_str() {
                out.insert((ns.clone(), rev.to_owned()));
            }
        }
    }
    // The newest revision of each configuration is about to get traffic.
    let mut newest: BTreeMap<Key, (i64, String)> = BTreeMap::new();
    for v in s.store.list(&REVISIONS, None).0 {
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let Some(cfg) = v["metadata"]["labels"]["serving.knative.dev/configuration"].as_str()
        else {
            continue;
        };
        let g = v["metadata"]["labels"]["serving.knative.dev/configurationGeneration"]
            .as_str()
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let e = newest
            .entry((ns, cfg.to_owned()))
            .or_insert((g, name.clone()));
        if g > e.0 {
            *e = (g, name);
        }
    }
    for ((ns, _), (_, name)) in newest {
        out.insert((ns, name));
    }
    out
}

/// What a revision asks of the autoscaler and of placement.
struct RevisionSpec {
    scaling: ScalingSpec,
    resources: Resources,
    policy: String,
    params: Params,
}

fn spec_of(s: &Shared, v: &Value) -> Option<RevisionSpec> {
    let anns: BTreeMap<String, String> = v["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Findings::new();
    let parsed =
        AutoscalingAnnotations::parse(&anns, &s.config.autoscaler, &FieldPath::root(), &mut out);
    let cc = v["spec"]["containerConcurrency"].as_u64().unwrap_or(0);
    let scaling = ScalingSpec::resolve(
        &s.config.autoscaler,
        &parsed,
        u32::try_from(cc).unwrap_or(0),
        s.config.progress_deadline,
    );
    let container = &v["spec"]["containers"][0]["resources"];
    let quantity = |section: &str, name: &str| {
        container[section][name]
            .as_str()
            .map(str::to_owned)
            .or_else(|| container[section][name].as_f64().map(|f| f.to_string()))
            .and_then(|q| kantai_model::units::Quantity::parse(&q).ok())
            .map(|q| q.value())
    };
    let resources = Resources {
        cpu: quantity("requests", "cpu")
            .or_else(|| quantity("limits", "cpu"))
            .unwrap_or(0.0),
        memory: quantity("requests", "memory")
            .or_else(|| quantity("limits", "memory"))
            .unwrap_or(0.0),
    };
    let policy = s.config.policies.chosen(Kind::Placement, &anns).to_owned();
    let (params, _) = Params::parse(&anns);
    Some(RevisionSpec {
        scaling,
        resources,
        policy,
        params,
    })
}

/// The placement policy `name` (admission checked it; the default if it is gone since).
fn new_policy(name: &str, params: &Params) -> Box<dyn PlacementPolicy> {
    registry::placement(name, params).unwrap_or_else(|| {
        tracing::warn!("{}; using spread", registry::unknown(Kind::Placement, name));
        Box::new(kantai_policy::placement::Spread)
    })
}

fn ready_instances(s: &Shared, ns: &str, revision: &str) -> u32 {
    s.store
        .list(&INSTANCES, Some(ns))
        .0
        .iter()
        .filter(|i| {
            i["spec"]["revision"].as_str() == Some(revision) && i["status"]["ready"] == true
        })
        .count() as u32
}

/// Feeds a report to the autoscalers; returns the revisions to tick at once.
fn ingest(s: &Shared, st: &mut Scaling, report: &Report, at: Instant) -> Vec<Key> {
    s.nodes_seen
        .lock()
        .insert(report.node.clone(), SystemTime::now());
    let acked = {
        let mut acks = s.route_acks.lock();
        let a = acks.entry(report.node.clone()).or_default();
        let moved = report.routes_version > *a;
        *a = (*a).max(report.routes_version);
        moved
    };
    if acked {
        s.changed();
    }
    if !report.rtt.is_empty() {
        let mut rtt = s.rtt.lock();
        for r in &report.rtt {
            rtt.insert((report.node.clone(), r.peer.clone()), r.rtt_ms);
        }
    }
    let now = st.since_start(at);
    let mut poked = Vec::new();
    for load in &report.revisions {
        tracing::trace!(node = %report.node, revision = %load.revision, concurrency = load.concurrency, requests = load.requests, held = load.held, "load");
        let key = (load.namespace.clone(), load.revision.clone());
        if !st.scalers.contains_key(&key) {
            // A revision created since the last sync.
            sync(s, st);
        }
        let Some(sc) = st.scalers.get_mut(&key) else {
            continue;
        };
        let since = st.started;
        let t = at.saturating_duration_since(since);
        sc.demand
            .entry(report.node.clone())
            .or_insert_with(|| Ewma::new(MEASURE_HALF_LIFE))
            .record(t, load.requests);
        sc.occupancy.insert(
            report.node.clone(),
            (load.instance_in_flight, load.instance_queued),
        );
        if load.served > 0 {
            sc.serving
                .entry(report.node.clone())
                .or_insert_with(|| Ewma::new(MEASURE_HALF_LIFE))
                .record(t, load.serving_ms);
        }
        let wake = sc.autoscaler.record(
            now,
            Observation {
                concurrency: load.concurrency,
                requests: load.requests,
                ..Observation::default()
            },
        );
        let at_zero = sc.autoscaler.replicas() == 0 && load.held > 0;
        if wake || (report.poke && at_zero) {
            poked.push(key);
        }
    }
    poked
}

fn tick_revisions(s: &Shared, st: &mut Scaling, keys: &[Key], at: Instant) {
    let now = st.since_start(at);
    let fleet = fleet_view(s);
    for key in keys {
        let Some(sc) = st.scalers.get_mut(key) else {
            continue;
        };
        let ready = ready_instances(s, &key.0, &key.1);
        let d = sc.autoscaler.tick(now, ready);
        // No instance may run a tag that a digest is about to replace.
        let awaiting = s
            .store
            .get(&REVISIONS, &key.0, &key.1)
            .is_some_and(|v| s.digests.awaiting(&s.config, &v));
        let previous = s.decisions.lock().insert(key.clone(), d);
        if previous.map(|p| (p.desired, p.activator_in_path))
            != Some((d.desired, d.activator_in_path))
        {
            info!(revision = %key.1, desired = d.desired, ready, panic = d.panic, activator = d.activator_in_path, "scale");
        }
        if awaiting {
            if st.awaiting.insert(key.clone()) {
                info!(revision = %key.1, "revision {} is not placed until its image tags resolve to digests", key.1);
            }
            continue;
        }
        st.awaiting.remove(key);
        place(s, key, sc, &d, &fleet, now);
    }
    publish_serving(s, st);
}

/// Makes the serving times measured per node available to the agents' load balancers
/// (they come back with every report's reply).
fn publish_serving(s: &Shared, st: &Scaling) {
    let mut serving = HashMap::new();
    let mut demand = HashMap::new();
    for (key, sc) in &st.scalers {
        let values = |m: &HashMap<String, Ewma>| -> Vec<(String, f64)> {
            let mut v: Vec<(String, f64)> = m
                .iter()
                .filter_map(|(n, e)| e.value().map(|v| (n.clone(), (v * 100.0).round() / 100.0)))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let nodes = values(&sc.serving);
        if !nodes.is_empty() {
            serving.insert(key.clone(), nodes);
        }
        let nodes = values(&sc.demand);
        if !nodes.is_empty() {
            demand.insert(key.clone(), nodes);
        }
    }
    *s.serving.lock() = serving;
    *s.demand.lock() = demand;
}

/// The fleet as placement policies see it: every node in order, with capacity, what is
/// placed on it, and the round trips the agents measured.
fn fleet_view(s: &Shared) -> FleetView {
    let order = s.node_order();
    let registered: HashMap<String, fleet::Node> = s
        .store
        .list(&NODES, None)
        .0
        .iter()
        .filter_map(|v| fleet::from_json::<fleet::Node>(v).ok())
        .map(|n| (n.metadata.name.clone(), n))
        .collect();
    // A node whose object is gone but whose agent still reports (and so registers it again
    // at once) is placed on as it was registered; one whose agent went silent is not.
    let registered = {
        let mut known = s.known_nodes.lock();
        known.extend(registered.iter().map(|(k, v)| (k.clone(), v.clone())));
        known.retain(|name, _| registered.contains_key(name) || s.node_ready(name));
        known.clone()
    };
    // Instances and the resources they asked for, per node, from every placement.
    let mut used: HashMap<String, (u32, f64, f64)> = HashMap::new();
    let revisions: HashMap<(String, String), Resources> = s
        .store
        .list(&REVISIONS, None)
        .0
        .iter()
        .filter_map(|v| {
            let ns = v["metadata"]["namespace"].as_str()?.to_owned();
            let name = v["metadata"]["name"].as_str()?.to_owned();
            Some(((ns, name), spec_of(s, v)?.resources))
        })
        .collect();
    for v in s.store.list(&PLACEMENTS, None).0 {
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        if let Ok(p) = fleet::from_json::<Placement>(&v) {
            let r = revisions
                .get(&(ns, p.spec.revision.clone()))
                .copied()
                .unwrap_or_default();
            for c in p.spec.nodes {
                let e = used.entry(c.node).or_default();
                e.0 += c.count;
                e.1 += r.cpu * f64::from(c.count);
                e.2 += r.memory * f64::from(c.count);
            }
        }
    }
    let nodes: Vec<NodeView> = order
        .iter()
        .map(|name| {
            let (instances, cpu_used, memory_used) = used.get(name).copied().unwrap_or_default();
            match registered.get(name) {
                Some(node) => {
                    let cap = &node.spec.capacity;
                    NodeView {
                        name: name.clone(),
                        labels: node.metadata.labels.clone(),
                        // Serving, as the node lifecycle judges it: a node is given up on
                        // (and its instances moved) only at the eviction rate, never when
                        // the control plane stalled or lost sight of most nodes at once,
                        // and not before a control plane that just started heard from it.
                        ready: s.node_serving(name),
                        max_instances: cap.instances,
                        cpu: cap.cpu.as_ref().map(|c| c.value()),
                        memory: cap.memory.as_ref().map(|m| m.value()),
                        instances,
                        cpu_used,
                        memory_used,
                    }
                }
                // In the topology but never registered: nothing can run there.
                None => NodeView {
                    name: name.clone(),
                    ready: false,
                    instances,
                    ..NodeView::default()
                },
            }
        })
        .collect();
    let mut rtt = RttMatrix::new(nodes.len());
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    for ((from, to), ms) in s.rtt.lock().iter() {
        if let (Some(&i), Some(&j)) = (index.get(from.as_str()), index.get(to.as_str())) {
            rtt.set(i, j, *ms);
        }
    }
    FleetView { nodes, rtt }
}

fn place(s: &Shared, key: &Key, sc: &mut Scaler, d: &Decision, fleet: &FleetView, now: Duration) {
    let (ns, revision) = key;
    let existing = s
        .store
        .get(&PLACEMENTS, ns, revision)
        .and_then(|v| fleet::from_json::<Placement>(&v).ok());
    let current: Vec<u32> = fleet
        .nodes
        .iter()
        .map(|n| existing.as_ref().map_or(0, |p| p.desired_on(&n.name)))
        .collect();
    let measured = |m: &HashMap<String, Ewma>| -> Vec<Option<f64>> {
        fleet
            .nodes
            .iter()
            .map(|n| m.get(&n.name).and_then(Ewma::value))
            .collect()
    };
    let demand: Vec<f64> = measured(&sc.demand)
        .into_iter()
        .map(|d| d.unwrap_or(0.0))
        .collect();
    let serving_ms = measured(&sc.serving);
    let occupancy = |pick: fn(&(u32, u32)) -> u32| -> Vec<u32> {
        fleet
            .nodes
            .iter()
            .map(|n| sc.occupancy.get(&n.name).map_or(0, pick))
            .collect()
    };
    let in_flight = occupancy(|o| o.0);
    let queued = occupancy(|o| o.1);
    let input = PlacementInput {
        fleet,
        revision,
        desired: d.desired,
        current: &current,
        demand: &demand,
        serving_ms: &serving_ms,
        in_flight: &in_flight,
        queued: &queued,
        resources: sc.resources,
        params: &sc.policy.1,
        now,
    };
    let decision = sc.placement.place(&input, &mut sc.rng);
    if let Some(log) = &s.decision_log {
        log.record(kantai_api::decisions::Decision::Placement(Box::new(
            kantai_api::decisions::PlacementRecord::new(
                &input,
                &sc.policy.0,
                &sc.policy.1,
                &decision,
                ns,
                kantai_api::time::now(),
            ),
        )));
    }
    let service = sc.service.clone();
    let spec = PlacementSpec {
        revision: revision.clone(),
        service: service.clone(),
        nodes: fleet
            .nodes
            .iter()
            .zip(&decision.per_node)
            .filter(|(_, c)| **c > 0)
            .map(|(n, c)| NodeCount {
                node: n.name.clone(),
                count: *c,
            })
            .collect(),
        activator_in_path: d.activator_in_path,
        unschedulable: decision.unschedulable,
        policy: sc.policy.0.clone(),
    };
    if spec.unschedulable > 0
        && existing
            .as_ref()
            .is_none_or(|p| p.spec.unschedulable != spec.unschedulable)
    {
        crate::events::record(
            s,
            ns,
            &crate::events::Involved::revision(revision),
            "Unschedulable",
            &format!(
                "{} of {} instance(s) fit on no node (placement policy {}): no ready node has room for them (instances, CPU or memory)",
                spec.unschedulable, d.desired, spec.policy
            ),
        );
    }
    if existing.as_ref().is_some_and(|p| p.spec == spec) {
        return;
    }
    let mut labels = BTreeMap::new();
    labels.insert(SERVICE_LABEL.to_owned(), service.clone());
    labels.insert("serving.knative.dev/revision".to_owned(), revision.clone());
    let p = Placement {
        metadata: ObjectMeta {
            name: revision.clone(),
            namespace: Some(ns.clone()),
            labels,
            ..ObjectMeta::default()
        },
        spec,
        status: existing.and_then(|p| p.status),
    };
    let mut json = fleet::to_json("Placement", &p);
    let now = kantai_api::time::now();
    let result = match s.store.get(&PLACEMENTS, ns, revision) {
        Some(old) => {
            json["metadata"] = old["metadata"].clone();
            s.store
                .update(&PLACEMENTS, ns, revision, json, None)
                .map(|_| ())
        }
        None => s.store.create(&PLACEMENTS, ns, json, &now).map(|_| ()),
    };
    if let Err(e) = result {
        tracing::warn!("cannot write the placement of {revision}: {e}");
    }
    s.changed();
}
