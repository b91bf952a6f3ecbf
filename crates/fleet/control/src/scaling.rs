//! The autoscaling loop: the KPA of every revision, fed by the node agents' reports, ticked
//! every 2 s (and at once when load reaches a revision at zero); each decision is split over
//! the nodes by the placement policy and written to the revision's Placement.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kantai_api::Report;
use kantai_api::resources::{INSTANCES, NODES, PLACEMENTS, REVISIONS, ROUTES};
use kantai_autoscaler::{Decision, Observation, RevisionAutoscaler, ScalingSpec, TICK};
use kantai_model::autoscaling::AutoscalingAnnotations;
use kantai_model::fleet::{self, NodeCount, Placement, PlacementSpec};
use kantai_model::meta::ObjectMeta;
use kantai_model::serving::derive::SERVICE_LABEL;
use kantai_model::{FieldPath, Findings};
use kantai_policy::placement::{Demand, NodeState, least_loaded};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::Shared;

/// A node whose agent has not been heard from for this long is not ready.
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(5);

type Key = (String, String);

struct Scaler {
    autoscaler: RevisionAutoscaler,
    spec: ScalingSpec,
    service: String,
    demand: Demand,
}

/// The loop's state.
pub struct Scaling {
    started: Instant,
    scalers: HashMap<Key, Scaler>,
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
        let Some((mut spec, demand)) = spec_of(s, v) else {
            continue;
        };
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
                sc.demand = demand;
            }
            None => {
                // A restarted control plane finds instances running: the autoscaler starts
                // from them (in panic mode when more than one), so that lost history does not
                // scale them down.
                let ready = ready_instances(s, &ns, &name);
                info!(revision = %name, ready, "autoscaling");
                st.scalers.insert(
                    key,
                    Scaler {
                        autoscaler: RevisionAutoscaler::new(spec.clone(), now, ready),
                        spec,
                        service,
                        demand,
                    },
                );
            }
        }
    }
    st.scalers.retain(|k, _| seen.contains(k));
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

fn spec_of(s: &Shared, v: &Value) -> Option<(ScalingSpec, Demand)> {
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
    let spec = ScalingSpec::resolve(
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
    let demand = Demand {
        cpu: quantity("requests", "cpu")
            .or_else(|| quantity("limits", "cpu"))
            .unwrap_or(0.0),
        memory: quantity("requests", "memory")
            .or_else(|| quantity("limits", "memory"))
            .unwrap_or(0.0),
    };
    Some((spec, demand))
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
    let nodes = node_states(s);
    for key in keys {
        let Some(sc) = st.scalers.get_mut(key) else {
            continue;
        };
        let ready = ready_instances(s, &key.0, &key.1);
        let d = sc.autoscaler.tick(now, ready);
        let previous = s.decisions.lock().insert(key.clone(), d);
        if previous.map(|p| (p.desired, p.activator_in_path))
            != Some((d.desired, d.activator_in_path))
        {
            info!(revision = %key.1, desired = d.desired, ready, panic = d.panic, activator = d.activator_in_path, "scale");
        }
        place(s, key, &sc.service, &d, sc.demand, &nodes);
    }
}

/// Node order for placements: the topology's, then any other registered node by name.
pub fn node_order(s: &Shared) -> Vec<String> {
    let mut order: Vec<String> = s.topology.nodes.iter().map(|n| n.name.clone()).collect();
    let mut extra: Vec<String> = s
        .store
        .list(&NODES, None)
        .0
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned))
        .filter(|n| !order.contains(n))
        .collect();
    extra.sort();
    order.extend(extra);
    order
}

fn node_states(s: &Shared) -> Vec<NodeState> {
    let order = node_order(s);
    let registered: HashMap<String, fleet::Node> = s
        .store
        .list(&NODES, None)
        .0
        .iter()
        .filter_map(|v| fleet::from_json::<fleet::Node>(v).ok())
        .map(|n| (n.metadata.name.clone(), n))
        .collect();
    let mut used: HashMap<String, u32> = HashMap::new();
    for p in s.store.list(&PLACEMENTS, None).0 {
        if let Ok(p) = fleet::from_json::<Placement>(&p) {
            for c in p.spec.nodes {
                *used.entry(c.node).or_default() += c.count;
            }
        }
    }
    let now = SystemTime::now();
    order
        .into_iter()
        .filter_map(|name| {
            let node = registered.get(&name)?;
            // Alive, with the restart grace: a control plane that just started has not heard
            // from anyone yet, and must not move instances off healthy nodes for that.
            let heard = s.node_alive(&name, now);
            let cap = &node.spec.capacity;
            Some(NodeState {
                ready: heard,
                max_instances: cap.instances,
                instances: used.get(&name).copied().unwrap_or(0),
                cpu_free: cap.cpu.as_ref().map(|c| c.value()),
                memory_free: cap.memory.as_ref().map(|m| m.value()),
                name,
            })
        })
        .collect()
}

fn place(s: &Shared, key: &Key, service: &str, d: &Decision, demand: Demand, nodes: &[NodeState]) {
    let (ns, revision) = key;
    let existing = s
        .store
        .get(&PLACEMENTS, ns, revision)
        .and_then(|v| fleet::from_json::<Placement>(&v).ok());
    let current: Vec<u32> = nodes
        .iter()
        .map(|n| existing.as_ref().map_or(0, |p| p.desired_on(&n.name)))
        .collect();
    // The nodes' counts include this revision's current placement; the policy wants them
    // without it, as it re-decides this revision.
    let mut others = nodes.to_vec();
    for (n, c) in others.iter_mut().zip(&current) {
        n.instances = n.instances.saturating_sub(*c);
        if let Some(cpu) = &mut n.cpu_free {
            *cpu -= demand.cpu * f64::from(*c);
        }
        if let Some(m) = &mut n.memory_free {
            *m -= demand.memory * f64::from(*c);
        }
    }
    // Resources of the other revisions' instances on each node are not known per node here;
    // account them by count.
    let decision = least_loaded(d.desired, &current, &others, demand);
    let spec = PlacementSpec {
        revision: revision.clone(),
        service: service.to_owned(),
        nodes: nodes
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
    };
    if existing.as_ref().is_some_and(|p| p.spec == spec) {
        return;
    }
    let mut labels = BTreeMap::new();
    labels.insert(SERVICE_LABEL.to_owned(), service.to_owned());
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
