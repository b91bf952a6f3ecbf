//! Cold starts decided at the node, and the node's autonomy while the control plane is
//! unreachable (docs/fleet.md, "Cold starts at the node and edge autonomy").
//!
//! A request for a revision that no instance serves makes the gateway poke. Before the poke
//! goes to the control plane, the node asks the driver core (`kantai_driver::local_start`)
//! whether the revision's placement policy, run on the node's own view, puts the instance
//! here; if so the instance starts now, through the same reconcile pass as a placed one
//! (`desired_here` is the larger of the placement's count and the local one), and every
//! report names it until a Placement counts it (the control plane adopted it) or, the
//! control plane reachable, `ADOPT_WITHIN` passed without one (it decided otherwise: the
//! placement rules). While the control plane is unreachable the node's own KPA, fed with
//! its own loads, scales the revisions it started within the limits it last knew.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kantai_api::LocalStarts;
use kantai_api::wire::RevisionLoad;
use kantai_driver::scaler::{NodeLoad, RevisionScaler};
use kantai_driver::{
    ADOPT_WITHIN, AUTONOMOUS_AFTER, LocalView, RevisionSettings, Settled, autonomous_count,
    considers_local_start, counted, local_seed, local_start, settle as settled, take_local,
};
use kantai_model::fleet::{self, Placement};
use kantai_policy::{FleetView, NodeView, RttMatrix};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::{Agent, instances};

type Key = (String, String);

/// The node's local starts and its view of the control plane's reachability.
pub(crate) struct Edge {
    epoch: Instant,
    starts: Mutex<HashMap<Key, Start>>,
    /// When a report last reached the control plane (its reply came back).
    heard: Mutex<Instant>,
    autonomous: AtomicBool,
    /// Instances started on the node's own decision (`kantai_local_starts_total`).
    total: AtomicU64,
}

/// Instances of one revision the node started on its own, not yet counted by a Placement.
struct Start {
    count: u32,
    /// When started, or when the control plane came back: the adoption window's start.
    since: Instant,
    settings: RevisionSettings,
    /// The revision's KPA on this node's own loads, ticked while autonomous.
    scaler: RevisionScaler<String>,
}

impl Default for Edge {
    fn default() -> Self {
        Edge {
            epoch: Instant::now(),
            starts: Mutex::new(HashMap::new()),
            heard: Mutex::new(Instant::now()),
            autonomous: AtomicBool::new(false),
            total: AtomicU64::new(0),
        }
    }
}

impl Edge {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Whether reports have gone unanswered for [`AUTONOMOUS_AFTER`].
    pub(crate) fn autonomous(&self) -> bool {
        self.heard.lock().elapsed() > AUTONOMOUS_AFTER
    }

    /// A report reached the control plane.
    pub(crate) fn heard(&self, node: &str) {
        *self.heard.lock() = Instant::now();
        if self.autonomous.swap(false, Ordering::AcqRel) {
            let mut starts = self.starts.lock();
            for s in starts.values_mut() {
                s.since = Instant::now();
            }
            info!(
                node,
                local = starts.len(),
                "the control plane is reachable again: this node follows its placements, and reports the revisions it started on its own for it to adopt"
            );
        }
    }

    /// Instances started here that no Placement counts yet, for the reports.
    pub(crate) fn reports(&self) -> Vec<LocalStarts> {
        let mut out: Vec<LocalStarts> = self
            .starts
            .lock()
            .iter()
            .map(|((ns, rev), s)| LocalStarts {
                namespace: ns.clone(),
                revision: rev.clone(),
                count: s.count,
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.revision).cmp(&(&b.namespace, &b.revision)));
        out
    }

    /// Instances of each revision started here on the node's own decision.
    pub(crate) fn counts(&self) -> HashMap<Key, u32> {
        self.starts
            .lock()
            .iter()
            .map(|(k, s)| (k.clone(), s.count))
            .collect()
    }

    /// The node's own loads of the revisions it started: their KPAs' observations.
    pub(crate) fn observe(&self, loads: &[RevisionLoad]) {
        let now = self.now();
        let mut starts = self.starts.lock();
        for l in loads {
            if let Some(s) = starts.get_mut(&(l.namespace.clone(), l.revision.clone())) {
                s.scaler.record_total(
                    now,
                    &NodeLoad {
                        concurrency: l.concurrency,
                        requests: l.requests,
                        held: l.held,
                        ..NodeLoad::default()
                    },
                );
            }
        }
    }

    /// The `/metrics` lines of local starts.
    pub(crate) fn metrics(&self, node: &str) -> String {
        format!(
            "# HELP kantai_local_starts_total Instances this node started on its own decision (a cold start at the node, or while the control plane was unreachable).\n# TYPE kantai_local_starts_total counter\nkantai_local_starts_total{{node=\"{node}\"}} {}\n# HELP kantai_node_autonomous Whether this node cannot reach the control plane and scales on its own.\n# TYPE kantai_node_autonomous gauge\nkantai_node_autonomous{{node=\"{node}\"}} {}\n",
            self.total.load(Ordering::Relaxed),
            u8::from(self.autonomous())
        )
    }
}

/// The revision's settings, as the agent computes them for its data plane.
fn settings_of(agent: &Agent, key: &Key) -> Option<RevisionSettings> {
    let snap = agent.cache.snapshot();
    let revision = kantai_model::Object::stored_revision(snap.revisions.get(key)?)?;
    let (mut settings, _) = RevisionSettings::of(&revision, &agent.config);
    // A revision a request reached takes traffic.
    settings.scaling.reachable = true;
    Some(settings)
}

/// Each revision's instances per node as the placements this node watches say.
fn placed(agent: &Agent) -> HashMap<Key, Placement> {
    agent
        .cache
        .snapshot()
        .placements
        .values()
        .filter_map(|p| fleet::from_json::<Placement>(p).ok())
        .map(|p| {
            (
                (p.metadata.namespace().to_owned(), p.spec.revision.clone()),
                p,
            )
        })
        .collect()
}

/// The fleet as this node sees it (the nodes it knows, with their capacity, the instances
/// the watched placements and its own local starts put on them, its measured round trips),
/// this node's index, and the revision's instances per node.
fn local_view(agent: &Agent, key: &Key) -> (FleetView, usize, Vec<u32>) {
    let order = crate::node_order(agent);
    let snap = agent.cache.snapshot();
    let placements = placed(agent);
    let local = agent.edge.counts();
    let resources: HashMap<Key, kantai_policy::Resources> = snap
        .revisions
        .iter()
        .filter_map(|(k, v)| {
            let r = kantai_model::Object::stored_revision(v)?;
            Some((
                k.clone(),
                RevisionSettings::of(&r, &agent.config).0.resources,
            ))
        })
        .collect();
    let placed_on = |k: &Key, node: &str| placements.get(k).map_or(0, |p| p.desired_on(node));
    let keys: std::collections::HashSet<&Key> = placements.keys().chain(local.keys()).collect();
    let nodes: Vec<NodeView> = order
        .iter()
        .map(|name| {
            let stored = snap.nodes.get(&(String::new(), name.clone()));
            let registered = stored.and_then(|v| fleet::from_json::<fleet::Node>(v).ok());
            let capacity = registered
                .as_ref()
                .map(|n| n.spec.capacity.clone())
                .or_else(|| agent.topology.node(name).map(|n| n.capacity.clone()))
                .unwrap_or_default();
            let not_ready = stored.is_some_and(|v| {
                v["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "False")
            });
            let (mut instances, mut cpu_used, mut memory_used) = (0u32, 0.0, 0.0);
            for k in &keys {
                let c = placed_on(k, name);
                let r = resources.get(*k).copied().unwrap_or_default();
                instances += c;
                cpu_used += r.cpu * f64::from(c);
                memory_used += r.memory * f64::from(c);
            }
            let mut view = NodeView {
                name: name.clone(),
                labels: registered
                    .as_ref()
                    .map(|n| n.metadata.labels.clone())
                    .unwrap_or_default(),
                ready: *name == agent.name || (registered.is_some() && !not_ready),
                max_instances: capacity.instances,
                cpu: capacity.cpu.as_ref().map(|c| c.value()),
                memory: capacity.memory.as_ref().map(|m| m.value()),
                instances,
                cpu_used,
                memory_used,
            };
            if *name == agent.name {
                for (k, count) in &local {
                    let r = resources.get(k).copied().unwrap_or_default();
                    take_local(&mut view, r, placed_on(k, name), *count);
                }
            }
            view
        })
        .collect();
    let me = order.iter().position(|n| *n == agent.name).unwrap_or(0);
    let mut rtt = RttMatrix::new(nodes.len());
    for e in agent.dp.rtt_estimates() {
        if let Some(j) = order.iter().position(|n| *n == e.peer) {
            rtt.set(me, j, e.ewma_ms);
        }
    }
    let current = order
        .iter()
        .map(|n| {
            let mine = if *n == agent.name {
                local.get(key).copied().unwrap_or(0)
            } else {
                0
            };
            counted(placed_on(key, n), mine)
        })
        .collect();
    (FleetView { nodes, rtt }, me, current)
}

/// A request for `key` is held for want of an instance: starts one here at once if the
/// revision's placement policy, on this node's view, puts it here. Returns whether it did.
pub(crate) fn poke(agent: &Arc<Agent>, key: &Key) -> bool {
    let local = agent.edge.starts.lock().get(key).map_or(0, |s| s.count);
    let (running, _) = instances::running(agent, key);
    let placed_here = placed(agent)
        .get(key)
        .map_or(0, |p| p.desired_on(&agent.name));
    if !considers_local_start(local, running, placed_here) {
        return false;
    }
    let Some(settings) = settings_of(agent, key) else {
        return false;
    };
    let autonomous = agent.edge.autonomous();
    let held = agent.dp.revision(&key.0, &key.1).held();
    let (fleet, node, current) = local_view(agent, key);
    let now = agent.edge.now();
    let view = LocalView {
        fleet: &fleet,
        node,
        current: &current,
        held,
        autonomous,
        now,
    };
    if let Err(why) = local_start(&settings, local_seed(&key.0, &key.1, &agent.name), &view) {
        debug!(revision = %key.1, autonomous, "no start on this node's own decision: {why}");
        return false;
    }
    let mut scaler = RevisionScaler::new(
        &settings,
        kantai_driver::scaler::seed(&key.0, &key.1),
        now,
        0,
    );
    // The held requests wake the KPA from zero, as the poke wakes the control plane's.
    scaler.record_total(
        now,
        &NodeLoad {
            concurrency: f64::from(held.max(1)),
            requests: 1.0,
            held: held.max(1),
            poke: true,
            ..NodeLoad::default()
        },
    );
    {
        let mut starts = agent.edge.starts.lock();
        if starts.contains_key(key) {
            return false;
        }
        starts.insert(
            key.clone(),
            Start {
                count: 1,
                since: Instant::now(),
                settings,
                scaler,
            },
        );
    }
    agent.edge.total.fetch_add(1, Ordering::Relaxed);
    info!(
        node = %agent.name,
        namespace = %key.0,
        revision = %key.1,
        held,
        autonomous,
        "starting an instance on this node's own decision (its placement policy puts it here); the control plane is told in the next report"
    );
    // No reconcile pass is woken: this was its only work for the revision, and the pass
    // (the data plane's tables rebuilt) would compete with the instance starting.
    crate::instances::start_decided(agent, key, counted(placed_here, 1));
    true
}

/// Each reconcile pass: local starts a Placement now counts are the control plane's
/// (adopted); those it had `ADOPT_WITHIN` to count and did not follow its placement.
pub(crate) fn settle(agent: &Agent) {
    let placements = placed(agent);
    let autonomous = agent.edge.autonomous();
    agent.edge.starts.lock().retain(|key, s| {
        let here = placements.get(key).map_or(0, |p| p.desired_on(&agent.name));
        match settled(here, s.count, autonomous, s.since.elapsed()) {
            Settled::Adopted => {
                info!(node = %agent.name, revision = %key.1, count = s.count, placed = here, "the control plane adopted the instances this node started on its own: its placement counts them");
                false
            }
            Settled::Expired => {
                info!(node = %agent.name, revision = %key.1, count = s.count, placed = here, "the control plane did not count the instances this node started on its own within {ADOPT_WITHIN:?}: they follow its placement now");
                false
            }
            Settled::Kept => true,
        }
    });
}

/// Every KPA tick while the control plane is unreachable: the revisions this node started
/// on its own scale by its own KPA, within their max-scale and the node's room; at zero they
/// are forgotten (their instances drain). The transitions are logged.
pub(crate) async fn run(agent: Arc<Agent>) {
    let mut tick = tokio::time::interval(kantai_driver::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let autonomous = agent.edge.autonomous();
        if autonomous && !agent.edge.autonomous.swap(true, Ordering::AcqRel) {
            warn!(
                node = %agent.name,
                "the control plane has not answered for {AUTONOMOUS_AFTER:?}: this node keeps its last placements and scales the revisions it starts on its own for local demand"
            );
        }
        if !autonomous {
            continue;
        }
        let keys: Vec<Key> = agent.edge.starts.lock().keys().cloned().collect();
        let now = agent.edge.now();
        let mut changed = false;
        for key in keys {
            let (running, ready) = instances::running(&agent, &key);
            let (fleet, node, mut current) = local_view(&agent, &key);
            if let Some(c) = current.get_mut(node) {
                *c = running;
            }
            let mut starts = agent.edge.starts.lock();
            let Some(s) = starts.get_mut(&key) else {
                continue;
            };
            let d = s.scaler.tick(now, ready);
            let view = LocalView {
                fleet: &fleet,
                node,
                current: &current,
                held: 0,
                autonomous: true,
                now,
            };
            let count = autonomous_count(&s.settings, &view, d.desired);
            if count == s.count {
                continue;
            }
            changed = true;
            info!(node = %agent.name, revision = %key.1, from = s.count, to = count, desired = d.desired, "scaling on this node's own decision (the control plane is unreachable)");
            if count > s.count {
                agent
                    .edge
                    .total
                    .fetch_add(u64::from(count - s.count), Ordering::Relaxed);
            }
            if count == 0 {
                starts.remove(&key);
            } else {
                s.count = count;
            }
        }
        if changed {
            agent.changed.notify_one();
        }
    }
}
