//! The autoscaling loop: the KPA of every revision, fed by the node agents' reports, ticked
//! every 2 s (and at once when load reaches a revision at zero); each decision is split over
//! the nodes by the placement policy and written to the revision's Placement.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kantai_api::Report;
use kantai_api::decisions::{ReportLoad, ReportRecord, TickRecord};
use kantai_api::resources::{INSTANCES, NODES, PLACEMENTS, REVISIONS, ROUTES};
use kantai_api::wire::RevisionLoad;
use kantai_autoscaler::{Decision, TICK};
use kantai_driver::scaler::{self, NodeLoad, RevisionScaler};
use kantai_driver::{RevisionSettings, SettingsProblem, adopt_now, counted, take_local};
use kantai_model::fleet::{self, NodeCount, Placement, PlacementSpec};
use kantai_model::meta::{JsonMeta, ObjectMeta};
use kantai_model::serving::derive::SERVICE_LABEL;
use kantai_policy::{FleetView, NodeView, Resources, RttMatrix};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::Shared;

type Key = (String, String);

struct Scaler {
    /// The revision's scaler, its nodes keyed by name (the node order grows as nodes join).
    core: RevisionScaler<String>,
    service: String,
}

/// A node's report of one revision as the driver core reads it.
pub fn node_load(report: &Report, load: &RevisionLoad) -> NodeLoad {
    NodeLoad {
        concurrency: load.concurrency,
        requests: load.requests,
        held: load.held,
        poke: report.poke,
        served: load.served,
        serving_ms: load.serving_ms,
        in_flight: load.instance_in_flight,
        queued: load.instance_queued,
    }
}

/// A report as the decision log keeps it: every field [`node_load`] reads, at the
/// scaler's clock (`now`), so that the scaling decisions can be replayed from the log.
pub fn report_record(report: &Report, now: Duration) -> ReportRecord {
    ReportRecord {
        time: kantai_api::time::now(),
        ns: now.as_nanos() as u64,
        node: report.node.clone(),
        poke: report.poke,
        revisions: report
            .revisions
            .iter()
            .map(|l| ReportLoad {
                namespace: l.namespace.clone(),
                revision: l.revision.clone(),
                concurrency: l.concurrency,
                requests: l.requests,
                held: l.held,
                served: l.served,
                serving_ms: l.serving_ms,
                in_flight: l.instance_in_flight,
                queued: l.instance_queued,
            })
            .collect(),
        local: report.local.clone(),
    }
}

/// A logged report's load of one revision as the driver core reads it (the replay's
/// [`node_load`]).
pub fn logged_load(report: &ReportRecord, load: &ReportLoad) -> NodeLoad {
    NodeLoad {
        concurrency: load.concurrency,
        requests: load.requests,
        held: load.held,
        poke: report.poke,
        served: load.served,
        serving_ms: load.serving_ms,
        in_flight: load.in_flight,
        queued: load.queued,
    }
}

/// The loop's state.
pub struct Scaling {
    started: Instant,
    scalers: HashMap<Key, Scaler>,
    /// Revisions left unplaced because their image digests are not recorded yet: placed as
    /// soon as their status records them, not at the next tick.
    awaiting: HashSet<Key>,
    /// Per node, the instances of each revision it started on its own that its last report
    /// said no Placement counts yet: placement counts them as running there (adopts them).
    local: HashMap<String, HashMap<Key, u32>>,
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
        local: HashMap::new(),
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
                        let key = (e.namespace.clone(), e.object.name().to_owned());
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
        let ns = v.namespace_or_default().to_owned();
        let name = v.name().to_owned();
        let key = (ns.clone(), name.clone());
        let Some((mut rs, problems)) = settings_of(s, v) else {
            continue;
        };
        rs.scaling.reachable = reachable.contains(&key);
        seen.insert(key.clone());
        let service = v.label(SERVICE_LABEL).unwrap_or_default().to_owned();
        match st.scalers.get_mut(&key) {
            Some(sc) => sc.core.update(&rs, now),
            None => {
                // A restarted control plane finds instances running: the autoscaler starts
                // from them (in panic mode when more than one), so that lost history does not
                // scale them down.
                let ready = ready_instances(s, &ns, &name);
                info!(revision = %name, ready, "autoscaling");
                // Told once, when the revision is first seen: the fallbacks run meanwhile.
                for p in problems {
                    warn!(revision = %name, "revision {ns}/{name}: {p} (it runs with the fallback)");
                }
                st.scalers.insert(
                    key,
                    Scaler {
                        core: RevisionScaler::new(&rs, scaler::seed(&ns, &name), now, ready),
                        service,
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
        let ns = r.namespace_or_default().to_owned();
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
        let ns = v.namespace_or_default().to_owned();
        let Some(cfg) = v.label("serving.knative.dev/configuration") else {
            continue;
        };
        let g = v
            .label("serving.knative.dev/configurationGeneration")
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        let name = v.name().to_owned();
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

/// A stored revision's settings (stored revisions were admitted: nothing is defaulted
/// again). What the settings cannot use is logged; the fallbacks run.
fn settings_of(s: &Shared, v: &Value) -> Option<(RevisionSettings, Vec<SettingsProblem>)> {
    let r = kantai_model::Object::stored_revision(v)?;
    Some(RevisionSettings::of(&r, &s.config))
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
    if let Some(log) = &s.decision_log {
        log.record(kantai_api::decisions::Decision::Report(Box::new(
            report_record(report, now),
        )));
    }
    let mut poked = adopt(st, report);
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
        if sc.core.record(now, &report.node, &node_load(report, load)) && !poked.contains(&key) {
            poked.push(key);
        }
    }
    poked
}

/// Takes a report's instances started on the node's own (each report carries all of them);
/// returns the revisions with some the control plane did not know of: their placement is
/// decided now, so that it counts them before the node's gateway sends anything elsewhere.
fn adopt(st: &mut Scaling, report: &Report) -> Vec<Key> {
    let now: HashMap<Key, u32> = report
        .local
        .iter()
        .filter(|l| l.count > 0)
        .map(|l| ((l.namespace.clone(), l.revision.clone()), l.count))
        .collect();
    let before = st.local.get(&report.node);
    let new: Vec<Key> = now
        .iter()
        .filter(|(k, c)| adopt_now(before.and_then(|b| b.get(*k)).copied().unwrap_or(0), **c))
        .map(|(k, _)| k.clone())
        .collect();
    for (ns, revision) in &new {
        info!(node = %report.node, namespace = %ns, revision = %revision, count = now[&(ns.clone(), revision.clone())], "adopting instances node {} started on its own: the placement counts them", report.node);
    }
    if now.is_empty() {
        st.local.remove(&report.node);
    } else {
        st.local.insert(report.node.clone(), now);
    }
    new
}

fn tick_revisions(s: &Shared, st: &mut Scaling, keys: &[Key], at: Instant) {
    let now = st.since_start(at);
    let fleet = fleet_view(s, &st.local);
    for key in keys {
        let Some(sc) = st.scalers.get_mut(key) else {
            continue;
        };
        let ready = ready_instances(s, &key.0, &key.1);
        let d = sc.core.tick(now, ready);
        // No instance may run a tag that a digest is about to replace.
        let awaiting = s
            .store
            .get(&REVISIONS, &key.0, &key.1)
            .is_some_and(|v| s.digests.awaiting(&s.config, &v));
        if let Some(log) = &s.decision_log {
            log.record(kantai_api::decisions::Decision::Tick(Box::new(
                TickRecord {
                    time: kantai_api::time::now(),
                    ns: now.as_nanos() as u64,
                    namespace: key.0.clone(),
                    revision: key.1.clone(),
                    ready,
                    desired: d.desired,
                    panic: d.panic,
                    activator_in_path: d.activator_in_path,
                },
            )));
        }
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
        let local: HashMap<&str, u32> = st
            .local
            .iter()
            .filter_map(|(node, revs)| Some((node.as_str(), *revs.get(key)?)))
            .collect();
        place(s, key, sc, &d, &fleet, &local, now);
    }
    publish_serving(s, st);
}

/// Makes the serving times measured per node available to the agents' load balancers
/// (they come back with every report's reply).
fn publish_serving(s: &Shared, st: &Scaling) {
    let mut serving = HashMap::new();
    let mut demand = HashMap::new();
    for (key, sc) in &st.scalers {
        // In node-name order, rounded to hundredths for the replies.
        let values = |m: &mut dyn Iterator<Item = (&String, f64)>| -> Vec<(String, f64)> {
            m.map(|(n, v)| (n.clone(), (v * 100.0).round() / 100.0))
                .collect()
        };
        let nodes = values(&mut sc.core.serving());
        if !nodes.is_empty() {
            serving.insert(key.clone(), nodes);
        }
        let nodes = values(&mut sc.core.demand());
        if !nodes.is_empty() {
            demand.insert(key.clone(), nodes);
        }
    }
    *s.serving.lock() = serving;
    *s.demand.lock() = demand;
}

/// The fleet as placement policies see it: every node in order, with capacity, what is
/// placed on it (and what its agent started on its own beyond that, `local`), and the round
/// trips the agents measured.
fn fleet_view(s: &Shared, local: &HashMap<String, HashMap<Key, u32>>) -> FleetView {
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
            let ns = v.namespace()?.to_owned();
            let name = v.name().to_owned();
            Some(((ns, name), settings_of(s, v)?.0.resources))
        })
        .collect();
    let mut placed: HashMap<(&str, &Key), u32> = HashMap::new();
    let placements: Vec<(Key, Placement)> = s
        .store
        .list(&PLACEMENTS, None)
        .0
        .iter()
        .filter_map(|v| {
            let p = fleet::from_json::<Placement>(v).ok()?;
            Some((
                (v.namespace_or_default().to_owned(), p.spec.revision.clone()),
                p,
            ))
        })
        .collect();
    let mut add = |node: &str, key: &Key, count: u32| {
        let r = revisions.get(key).copied().unwrap_or_default();
        let e = used.entry(node.to_owned()).or_default();
        e.0 += count;
        e.1 += r.cpu * f64::from(count);
        e.2 += r.memory * f64::from(count);
    };
    for (key, p) in &placements {
        for c in &p.spec.nodes {
            add(&c.node, key, c.count);
            placed.insert((c.node.as_str(), key), c.count);
        }
    }
    let mut nodes: Vec<NodeView> = order
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
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    // Instances an agent started on its own take room before any placement counts them.
    for (node, revs) in local {
        let Some(view) = index.get(node.as_str()).and_then(|&i| nodes.get_mut(i)) else {
            continue;
        };
        for (key, count) in revs {
            let placed = placed.get(&(node.as_str(), key)).copied().unwrap_or(0);
            let r = revisions.get(key).copied().unwrap_or_default();
            take_local(view, r, placed, *count);
        }
    }
    let mut rtt = RttMatrix::new(nodes.len());
    for ((from, to), ms) in s.rtt.lock().iter() {
        if let (Some(&i), Some(&j)) = (index.get(from.as_str()), index.get(to.as_str())) {
            rtt.set(i, j, *ms);
        }
    }
    FleetView { nodes, rtt }
}

/// Places a revision's decision. `local`: instances nodes started on their own that no
/// placement counts yet, counted as running where they run, so that the policy keeps them
/// (no second instance elsewhere) or, if the KPA wants fewer, removes them as any other.
fn place(
    s: &Shared,
    key: &Key,
    sc: &mut Scaler,
    d: &Decision,
    fleet: &FleetView,
    local: &HashMap<&str, u32>,
    now: Duration,
) {
    let (ns, revision) = key;
    let existing = s
        .store
        .get(&PLACEMENTS, ns, revision)
        .and_then(|v| fleet::from_json::<Placement>(&v).ok());
    let current: Vec<u32> = fleet
        .nodes
        .iter()
        .map(|n| {
            let placed = existing.as_ref().map_or(0, |p| p.desired_on(&n.name));
            counted(placed, local.get(n.name.as_str()).copied().unwrap_or(0))
        })
        .collect();
    let keys: Vec<String> = fleet.nodes.iter().map(|n| n.name.clone()).collect();
    let (decision, record) = sc.core.place(
        fleet,
        &keys,
        revision,
        &current,
        d.desired,
        now,
        None,
        s.decision_log.is_some().then_some(ns.as_str()),
    );
    if let (Some(log), Some(mut rec)) = (&s.decision_log, record) {
        rec.time = kantai_api::time::now();
        log.record(kantai_api::decisions::Decision::Placement(Box::new(rec)));
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
        policy: sc.core.policy().to_owned(),
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
        warn!("cannot write the placement of {revision}: {e}");
    }
    s.changed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reaches_the_core_with_every_field_the_scaler_reads() {
        let load = RevisionLoad {
            concurrency: 2.5,
            requests: 7.0,
            held: 3,
            served: 4,
            serving_ms: 12.5,
            instance_in_flight: 2,
            instance_queued: 1,
            ..RevisionLoad::default()
        };
        let report = Report {
            poke: true,
            revisions: vec![load.clone()],
            ..Report::default()
        };
        assert_eq!(
            node_load(&report, &load),
            NodeLoad {
                concurrency: 2.5,
                requests: 7.0,
                held: 3,
                poke: true,
                served: 4,
                serving_ms: 12.5,
                in_flight: 2,
                queued: 1,
            }
        );
    }

    #[test]
    fn a_nodes_local_starts_are_adopted_once_and_forgotten_when_its_report_drops_them() {
        let mut st = Scaling {
            started: Instant::now(),
            scalers: HashMap::new(),
            awaiting: HashSet::new(),
            local: HashMap::new(),
        };
        let key = ("default".to_owned(), "hello-00001".to_owned());
        let report = |count| Report {
            node: "node3".into(),
            local: vec![kantai_api::LocalStarts {
                namespace: key.0.clone(),
                revision: key.1.clone(),
                count,
            }],
            ..Report::default()
        };
        assert_eq!(adopt(&mut st, &report(1)), vec![key.clone()]);
        assert_eq!(st.local["node3"][&key], 1);
        // The next reports name it again: nothing new to decide.
        assert!(adopt(&mut st, &report(1)).is_empty());
        // More of them (an autonomous node scaled up): decided again.
        assert_eq!(adopt(&mut st, &report(2)), vec![key.clone()]);
        // A report without them: the placement counts them now, or they are gone.
        assert!(
            adopt(
                &mut st,
                &Report {
                    node: "node3".into(),
                    ..Report::default()
                }
            )
            .is_empty()
        );
        assert!(!st.local.contains_key("node3"));
    }

    #[test]
    fn a_logged_report_replays_as_the_report_itself() {
        let load = RevisionLoad {
            concurrency: 1.5,
            requests: 3.0,
            held: 2,
            served: 5,
            serving_ms: 8.25,
            instance_in_flight: 3,
            instance_queued: 4,
            ..RevisionLoad::default()
        };
        let report = Report {
            node: "node1".into(),
            poke: true,
            revisions: vec![load.clone()],
            ..Report::default()
        };
        let rec = report_record(&report, Duration::from_nanos(1_234_567_891));
        assert_eq!(rec.ns, 1_234_567_891);
        assert_eq!(
            logged_load(&rec, &rec.revisions[0]),
            node_load(&report, &load)
        );
    }
}
