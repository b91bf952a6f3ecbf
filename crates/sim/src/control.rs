//! The control loop, as the live control plane's `scaling.rs` runs it: load reports every
//! second feed each revision's scaler (`kantai_driver::RevisionScaler`, the core the control
//! plane runs: the KPA, the per-origin demand and per-node serving time); every 2 s (and at
//! once on a poke of a revision at zero) it decides and the revision's placement policy
//! splits the decision over the nodes, counting the instances nodes started on their own
//! (`edge.rs`); each node applies its share after the control plane's link delay. What is
//! simulated here is only what the agents measure.

use std::time::Duration;

use kantai_decisions::{Decision, LocalStarts, ReportLoad, ReportRecord};
use kantai_driver::RevisionScaler;
use kantai_driver::scaler::NodeLoad;
use kantai_driver::{adopt_now, counted};

use crate::engine::{Ev, IState, REPORT_NS, Sim};

/// The load the simulated agents report for a revision, summed over the nodes, as the
/// driver core reads it: the fleet's average concurrency and arrival rate since the last
/// report, and for a poke the one held request that made the gateway poke.
pub fn node_load(concurrency: f64, requests: f64, poke: bool) -> NodeLoad {
    NodeLoad {
        concurrency,
        requests,
        held: u32::from(poke),
        poke,
        ..NodeLoad::default()
    }
}

/// Feeds one report of a revision to its scaler as the simulator's agents make it: the
/// load summed over the nodes (`total`) to the KPA, each origin's arrival rate (`demand`)
/// and each node's average serving time in ms (`serving`) by node index, each node's new
/// serving average handed to `serving_seen`. Returns whether to tick now.
pub fn record_report(
    scaler: &mut RevisionScaler<u32>,
    now: Duration,
    total: &NodeLoad,
    demand: impl IntoIterator<Item = (u32, f64)>,
    serving: impl IntoIterator<Item = (u32, f64)>,
    mut serving_seen: impl FnMut(u32, Option<f64>),
) -> bool {
    // The KPA reads the revision's load summed over nodes (the core adds up the nodes'
    // reports within a second alike).
    let wake = scaler.record_total(now, total);
    for (node, rate) in demand {
        scaler.record_demand(now, &node, rate);
    }
    for (node, ms) in serving {
        serving_seen(node, scaler.record_serving(now, &node, ms));
    }
    wake
}

impl Sim {
    fn now_d(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// Every agent's report, once a second.
    pub(crate) fn report(&mut self) {
        let now = self.now;
        let t = self.now_d();
        for f in 0..self.funcs.len() {
            let (concurrency, requests) = self.funcs[f].take_load(now);
            let func = &mut self.funcs[f];
            let gates = &mut self.gates;
            let demand = func.gates.iter().map(|&g| {
                let gate = &mut gates[g as usize];
                let rate = gate.arrivals as f64 * 1e9 / REPORT_NS as f64;
                gate.arrivals = 0;
                (gate.origin, rate)
            });
            if !func.served_since.is_empty() && func.serving_dense.is_empty() {
                func.serving_dense = vec![None; self.net.nodes.len()];
            }
            let served = std::mem::take(&mut func.served_since);
            let serving = served
                .into_iter()
                .map(|(node, (count, total))| (node, total as f64 / count as f64 / 1e6));
            let dense = &mut func.serving_dense;
            let wake = record_report(
                &mut func.scaler,
                t,
                &node_load(concurrency, requests, false),
                demand,
                serving,
                |node, v| dense[node as usize] = v,
            );
            if wake {
                self.tick_function(f as u32, false);
            }
            self.report_local(f as u32);
        }
        if self.running() {
            self.at(now + REPORT_NS, Ev::Report);
        }
    }

    /// A gateway's poke from `node`, naming the `local` instances the node started on its
    /// own: those are adopted first, then the revision's load is reported at once, and a
    /// revision at zero (or with local starts the control plane did not know of) gets its
    /// decision now.
    pub(crate) fn poke(&mut self, f: u32, node: u32, local: u32) {
        let adopted = self.adopt(f, node, local, true);
        let now = self.now;
        let t = self.now_d();
        let func = &mut self.funcs[f as usize];
        let (concurrency, requests) = func.take_load(now);
        // The poke left as a gateway held a request: a live agent's report says so.
        let wake = func
            .scaler
            .record_total(t, &node_load(concurrency, requests, true));
        if wake || adopted {
            self.tick_function(f, adopted);
        }
    }

    /// The autoscaler's tick for every revision.
    pub(crate) fn tick(&mut self) {
        // Placement sees the round trips measured up to this tick.
        if self.net.take_sampled() {
            self.fleet.rtt = self.net.matrix();
        }
        for f in 0..self.funcs.len() as u32 {
            self.tick_function(f, false);
        }
        if self.running() {
            let next = self.now + kantai_autoscaler::TICK.as_nanos() as u64;
            self.at(next, Ev::Tick);
        }
    }

    /// One revision's decision, then its placement when something it decides on changed
    /// (or `always`: a node started instances the placement must count now).
    pub(crate) fn tick_function(&mut self, f: u32, always: bool) {
        let t = self.now_d();
        let func = &mut self.funcs[f as usize];
        let ready = func.ready.len() as u32;
        let d = func.scaler.tick(t, ready);
        if func.activator_in_path != d.activator_in_path {
            func.activator_in_path = d.activator_in_path;
            func.ready_version += 1;
            // Capacity as the balancers see it changed: gateways serve what they hold.
            let gates = func.gates.clone();
            for g in gates {
                let gate = &self.gates[g as usize];
                if !gate.held.is_empty() {
                    let t = self.now + self.cp_delay[gate.origin as usize];
                    self.at(t, Ev::Dispatch(g));
                }
            }
        }
        let func = &mut self.funcs[f as usize];
        func.desired_max = func.desired_max.max(d.desired);
        if !always && !func.scaler.placement_due(d.desired) {
            return;
        }
        self.place(f, d.desired);
    }

    /// The placement policy splits `desired` over the nodes; changed nodes hear of it after
    /// the control plane's link delay.
    fn place(&mut self, f: u32, desired: u32) {
        let now = self.now_d();
        let func = &mut self.funcs[f as usize];
        // Occupancy is measured from the simulated instances, not reported.
        self.buf_in_flight.iter_mut().for_each(|x| *x = 0);
        self.buf_queued.iter_mut().for_each(|x| *x = 0);
        for (&node, list) in &func.on_node {
            for &i in list {
                let inst = &self.insts[i as usize];
                self.buf_in_flight[node as usize] += inst.busy;
                self.buf_queued[node as usize] += inst.queued;
            }
        }
        // Instances nodes started on their own count as running where they run, so that the
        // policy keeps them (no second one elsewhere) or removes them like any other.
        let current = if func.adopted.is_empty() {
            &func.placed
        } else {
            self.buf_current.clear();
            self.buf_current.extend_from_slice(&func.placed);
            for (&node, &local) in &func.adopted {
                let c = &mut self.buf_current[node as usize];
                *c = counted(*c, local);
            }
            &self.buf_current
        };
        let (decision, record) = func.scaler.place(
            &self.fleet,
            &self.node_keys,
            &func.revision,
            current,
            desired,
            now,
            Some((&self.buf_in_flight, &self.buf_queued)),
            self.decisions.is_some().then_some(func.namespace.as_str()),
        );
        let mut changed = Vec::new();
        for (i, &new) in decision.per_node.iter().enumerate() {
            let func = &self.funcs[f as usize];
            if new != func.placed[i] {
                let local = func.adopted.get(&(i as u32)).copied().unwrap_or(0);
                self.recount(f, i as u32, new, local);
                changed.push(i as u32);
            }
        }
        if let Some(mut rec) = record {
            rec.time = self.record_time();
            self.log(&Decision::Placement(Box::new(rec)));
        }
        for node in changed {
            // The placement crosses the link from the control plane's node (drawn: jitter
            // and loss apply to control traffic too).
            let d = self
                .net
                .one_way(self.net.control, node, 0, &mut self.net_rng);
            self.at(self.now + d, Ev::Apply(f, node));
        }
    }

    /// A node applies its share of a placement: starts or drains instances.
    pub(crate) fn apply(&mut self, f: u32, node: u32) {
        self.settle_local(f, node);
        let target = self.desired_here(f, node);
        let live: Vec<u32> = self.funcs[f as usize]
            .on_node
            .get(&node)
            .map(|l| {
                l.iter()
                    .copied()
                    .filter(|&i| {
                        matches!(
                            self.insts[i as usize].state,
                            IState::Starting | IState::Ready
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let count = live.len() as u32;
        if count < target {
            for _ in count..target {
                self.start_instance(f, node);
            }
        } else if count > target {
            // Starting instances go first (newest first), then the least busy.
            let mut order = live;
            order.sort_by_key(|&i| {
                let x = &self.insts[i as usize];
                (
                    x.state != IState::Starting,
                    x.busy + x.queued,
                    std::cmp::Reverse(x.seq),
                )
            });
            for &i in order.iter().take((count - target) as usize) {
                self.drain(i);
            }
        }
    }

    /// The control plane takes a node's report of its local starts of `f` (each report
    /// names all of them); returns whether they are new or more than it knew, so that the
    /// placement is decided now.
    pub(crate) fn adopt(&mut self, f: u32, node: u32, count: u32, poke: bool) -> bool {
        let func = &self.funcs[f as usize];
        let before = func.adopted.get(&node).copied().unwrap_or(0);
        if count == 0 && before == 0 {
            return false;
        }
        self.log_local_report(f, node, count, poke);
        self.recount(f, node, self.funcs[f as usize].placed[node as usize], count);
        adopt_now(before, count)
    }

    /// A node's report of its local starts reaches the control plane.
    pub(crate) fn told_local(&mut self, f: u32, node: u32, count: u32) {
        if self.adopt(f, node, count, false) {
            self.tick_function(f, true);
        }
    }

    /// Sets the control plane's placement (`placed`) and adopted local count (`local`) of
    /// `f` on `node`, keeping the fleet view's room: a node's instances of a revision count
    /// as `counted(placed, local)`.
    pub(crate) fn recount(&mut self, f: u32, node: u32, placed: u32, local: u32) {
        let func = &mut self.funcs[f as usize];
        let n = node as usize;
        let before = counted(
            func.placed[n],
            func.adopted.get(&node).copied().unwrap_or(0),
        );
        let after = counted(placed, local);
        func.placed[n] = placed;
        if local == 0 {
            func.adopted.remove(&node);
        } else {
            func.adopted.insert(node, local);
        }
        if after != before {
            let res = func.scaler.resources();
            let view = &mut self.fleet.nodes[n];
            view.instances = view.instances + after - before;
            let delta = f64::from(after) - f64::from(before);
            view.cpu_used += res.cpu * delta;
            view.memory_used += res.memory * delta;
        }
    }

    /// The decision log's record of a node's report naming its local starts of `f`.
    fn log_local_report(&mut self, f: u32, node: u32, count: u32, poke: bool) {
        if self.decisions.is_none() {
            return;
        }
        let func = &self.funcs[f as usize];
        let rec = ReportRecord {
            time: self.record_time(),
            ns: self.now,
            node: self.node_names[node as usize].clone(),
            poke,
            // A poke reports the one held request that made the gateway poke.
            revisions: poke
                .then(|| ReportLoad {
                    namespace: func.namespace.clone(),
                    revision: func.revision.clone(),
                    concurrency: 1.0,
                    requests: 1.0,
                    held: 1,
                    ..ReportLoad::default()
                })
                .into_iter()
                .collect(),
            local: (count > 0)
                .then(|| LocalStarts {
                    namespace: func.namespace.clone(),
                    revision: func.revision.clone(),
                    count,
                })
                .into_iter()
                .collect(),
        };
        self.log(&Decision::Report(Box::new(rec)));
    }
}
