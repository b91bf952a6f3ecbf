//! The event loop and the simulated fleet's state. Time is virtual (ns since the start);
//! events at the same time run in the order they were scheduled, so a run is a function
//! of its scenario and seed alone.
//!
//! The request path follows the live fleet's (`gateway.rs`: the gateway and activator role
//! of the request's origin node, `instance.rs`: the queue-proxy role and the instance),
//! and so does the control loop (`control.rs`: reports each second, the KPA every 2 s,
//! placement, the nodes applying it), with the cold starts a node decides itself
//! (`edge.rs`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use hdrhistogram::Histogram;
use kantai_driver::{RevisionScaler, RevisionSettings};
use kantai_policy::{FleetView, LoadBalancer, QueueDiscipline};
use rand::rngs::SmallRng;

use crate::dist::Dist;
use crate::network::Network;
use crate::queue::EventQueue;
use crate::workload::Source;

/// One second, in ns: the agents' report period.
pub(crate) const REPORT_NS: u64 = 1_000_000_000;
/// A terminating instance keeps answering forwarded requests this long (the fleet's drain
/// propagation), so gateways that have not heard of it yet do not fail.
pub(crate) const DRAIN_PROPAGATION_NS: u64 = kantai_driver::DRAIN_PROPAGATION.as_nanos() as u64;
/// A gateway pokes the control plane about a revision at most this often.
pub(crate) const POKE_EVERY_NS: u64 = kantai_driver::POKE_INTERVAL.as_nanos() as u64;
pub use kantai_driver::DEFAULT_HOLD_LIMIT;
pub(crate) use kantai_driver::QUEUE_DEPTH_FACTOR;
/// How many events between two progress reports.
const PROGRESS_EVERY: u64 = 1 << 20;

/// Something that happens at a time.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ev {
    /// The next request of a source arrives.
    Arrive(u32),
    /// A request reaches its instance's node.
    AtInstance(u32),
    /// An instance finished a request.
    Done(u32),
    /// A response reaches the origin's gateway.
    Respond(u32),
    /// A request's deadline (with the request's generation).
    Timeout(u32, u32),
    /// The agents report load.
    Report,
    /// The autoscaler's tick.
    Tick,
    /// The instances-per-node series takes a sample.
    Sample,
    /// A gateway's poke reaches the control plane (function, node, the instances of the
    /// function the node had started on its own when it sent it).
    Poke(u32, u32, u32),
    /// A node's report of its local starts of a function reaches the control plane
    /// (function, node, count; 0: none any more).
    Local(u32, u32, u32),
    /// A placement reaches a node (function, node).
    Apply(u32, u32),
    /// An instance finished its cold start (instance, generation).
    Ready(u32, u32),
    /// A gateway learns of a new instance: serve what it holds.
    Dispatch(u32),
    /// A draining instance may stop (instance, generation).
    Stop(u32, u32),
}

/// Where a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum St {
    /// Not in use.
    Free,
    /// Held at the origin's gateway (activator role).
    Held,
    /// On its way to the instance's node.
    Transit,
    /// Waiting for a containerConcurrency slot.
    Queued,
    /// Being served.
    Serving,
    /// The response is on its way back.
    Returning,
}

/// A request in flight: one cache line, since at scale nearly every event touches a request
/// that is no longer in cache. Its deadline is `arrived` + its revision's timeout; it is
/// counted when it arrived after the warm-up.
#[derive(Clone, Debug)]
#[repr(align(64))]
pub(crate) struct Req {
    pub gate: u32,
    pub inst: u32,
    pub epoch: u32,
    /// The crossing to the instance, ns (saturated at 4.29 s: only the latency monitor's
    /// sample reads it).
    pub hop_out: u32,
    pub kind: u16,
    pub code: u16,
    pub state: St,
    pub cold: bool,
    /// The gateway has answered it (504): what is left of it only frees resources.
    pub answered: bool,
    pub timeout_armed: bool,
    pub arrived: u64,
    pub service_ns: u64,
    pub hop_back: u64,
    pub wait_from: u64,
    pub waited: u64,
}

impl Req {
    /// A request slot not in use.
    pub(crate) fn free_value() -> Req {
        Req {
            gate: 0,
            inst: u32::MAX,
            epoch: 0,
            hop_out: 0,
            kind: 0,
            code: 0,
            state: St::Free,
            cold: false,
            answered: false,
            timeout_armed: false,
            arrived: 0,
            service_ns: 0,
            hop_back: 0,
            wait_from: 0,
            waited: 0,
        }
    }
}

/// A request's method, path and headers, as policies see them.
pub type Kind = kantai_policy::SimpleRequest;

/// What one gateway recorded for one function.
pub(crate) struct GateStats {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub overflow: u64,
    pub timeout: u64,
    pub cold: u64,
    pub cold_wait: Option<Box<Histogram<u64>>>,
    pub queueing: Option<Box<Histogram<u64>>>,
    pub queued: u64,
}

/// Microseconds from 1 µs to about an hour, within 1 %.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2)
        .unwrap_or_else(|_| Histogram::new(2).expect("hdr"))
}

/// The activator role of one node for one function: its balancer, the requests it holds,
/// its leases on instances.
pub(crate) struct Gate {
    pub function: u32,
    pub origin: u32,
    pub lb: Box<dyn LoadBalancer>,
    pub rng: SmallRng,
    pub held: Box<dyn QueueDiscipline>,
    /// Requests this gateway has in flight to each instance (by the function's slot).
    pub in_flight: Vec<u32>,
    pub last_poke: Option<u64>,
    /// The balancer's candidates as this node sees them, rebuilt when the function's
    /// instances change (`cand_version`) or a known one becomes visible here (`cand_until`);
    /// in-flight counts are kept up to date in place.
    pub cands: Vec<kantai_policy::Candidate>,
    pub cand_insts: Vec<u32>,
    pub cand_version: u64,
    pub cand_until: u64,
    /// Position in `cands` of each instance slot (`u32::MAX`: not a candidate).
    pub cand_pos: Vec<u32>,
    /// Arrivals since the last report (the per-origin demand).
    pub arrivals: u64,
    pub stats: GateStats,
}

/// An instance's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IState {
    Starting,
    Ready,
    Draining,
    Stopped,
}

/// One instance.
pub(crate) struct Inst {
    pub function: u32,
    pub node: u32,
    pub slot: u32,
    pub seq: u64,
    pub epoch: u32,
    pub state: IState,
    pub started: u64,
    pub visible_at: u64,
    pub drain_at: u64,
    pub busy: u32,
    pub queued: u32,
    pub queue: Option<Box<dyn QueueDiscipline>>,
    /// Leases gateways hold on it; its slot is reused only once they are all returned.
    pub leases: u32,
    pub stop_scheduled: bool,
}

/// A function (one service, its one revision) and everything kept about it.
pub(crate) struct Func {
    pub namespace: String,
    pub service: String,
    pub revision: String,
    pub cc: u32,
    pub timeout_ns: u64,
    pub service_time: Dist,
    pub cold_start: Dist,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The revision's KPA, measured demand and serving times and placement policy, keyed
    /// by node index: the driver core the control plane runs too.
    pub scaler: RevisionScaler<u32>,
    pub lb_name: String,
    pub queue_name: String,
    /// What the revision runs with: a node's own decisions read it as the control plane's.
    pub settings: RevisionSettings,
    /// Instances each node started on its own that its placement does not count yet, by
    /// node: (count, since when in ns, for the adoption window).
    pub local: BTreeMap<u32, (u32, u64)>,
    /// The same as the control plane knows it: by node, the count its last report named.
    pub adopted: BTreeMap<u32, u32>,
    /// Instances started on a node's own decision.
    pub local_starts: u64,
    pub activator_in_path: bool,
    /// Ready instances in start order (the balancers' candidates).
    pub ready: Vec<u32>,
    /// Bumped whenever `ready` or how balancers see capacity changes.
    pub ready_version: u64,
    /// Live instances per node.
    pub on_node: BTreeMap<u32, Vec<u32>>,
    /// The placement: desired instances per node.
    pub placed: Vec<u32>,
    pub free_slots: Vec<u32>,
    pub next_slot: u32,
    /// Requests in the fleet (arrived, not answered) and their time integral since the
    /// last report.
    pub in_flight: u32,
    pub area: f64,
    pub last_change: u64,
    pub arrivals: u64,
    pub last_take: u64,
    pub served_since: BTreeMap<u32, (u64, u64)>,
    /// The scaler's serving times by node index, as the load balancers read them.
    pub serving_dense: Vec<Option<f64>>,
    pub gates: Vec<u32>,
    pub instance_ns: u128,
    pub instances_started: u64,
    pub desired_max: u32,
    /// Latencies of the 200s answered since the last sample (the latency-over-time series).
    pub window: Option<Box<Histogram<u64>>>,
}

impl Func {
    pub(crate) fn change_in_flight(&mut self, now: u64, up: bool) {
        self.area += f64::from(self.in_flight) * (now - self.last_change) as f64;
        self.last_change = now;
        if up {
            self.in_flight += 1;
            self.arrivals += 1;
        } else {
            self.in_flight -= 1;
        }
    }

    /// Average concurrency and arrivals per second since the last call (the agents'
    /// `take_load`).
    pub(crate) fn take_load(&mut self, now: u64) -> (f64, f64) {
        self.area += f64::from(self.in_flight) * (now - self.last_change) as f64;
        self.last_change = now;
        let span = (now - self.last_take) as f64;
        let out = if span > 0.0 {
            (self.area / span, self.arrivals as f64 * 1e9 / span)
        } else {
            (f64::from(self.in_flight), 0.0)
        };
        self.area = 0.0;
        self.arrivals = 0;
        self.last_take = now;
        out
    }
}

/// How far a run is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Simulated time, ns.
    pub now_ns: u64,
    /// The scenario's duration, ns.
    pub duration_ns: u64,
    /// Requests answered.
    pub answered: u64,
    /// Events processed.
    pub events: u64,
}

/// The simulated fleet.
pub struct Sim {
    pub(crate) now: u64,
    pub(crate) duration: u64,
    pub(crate) warmup: u64,
    queue: EventQueue<Ev>,
    pub(crate) net: Network,
    /// Node names, in index order.
    pub(crate) node_names: Vec<String>,
    /// Half the configured round trip from the control plane to each node.
    pub(crate) cp_delay: Vec<u64>,
    pub(crate) fleet: FleetView,
    pub(crate) funcs: Vec<Func>,
    pub(crate) gates: Vec<Gate>,
    pub(crate) gate_index: HashMap<(u32, u32), u32>,
    pub(crate) insts: Vec<Inst>,
    pub(crate) free_insts: Vec<u32>,
    pub(crate) inst_seq: u64,
    pub(crate) reqs: Vec<Req>,
    pub(crate) free_reqs: Vec<u32>,
    pub(crate) live_reqs: u64,
    /// Requests arrived and not answered yet.
    pub(crate) open: u64,
    pub(crate) sources: Vec<Source>,
    pub(crate) kinds: Vec<Kind>,
    /// Whether each kind's path and headers came from the scenario.
    pub(crate) kinds_given: Vec<bool>,
    /// The closed-loop source each kind belongs to (`u32::MAX`: none).
    pub(crate) user_source: Vec<u32>,
    pub(crate) hold_limit: u32,
    pub(crate) service_rng: SmallRng,
    pub(crate) net_rng: SmallRng,
    pub(crate) cold_rng: SmallRng,
    pub(crate) overhead: Option<(Dist, SmallRng)>,
    /// The latency objective, µs.
    pub(crate) slo_us: Option<u64>,
    pub(crate) seed: u64,
    pub(crate) node_ready: Vec<u32>,
    pub(crate) node_starting: Vec<u32>,
    pub(crate) sample_every: u64,
    /// (t, node, ready, starting) for nodes with instances, every `sample_every`.
    pub(crate) series: Vec<(u64, u32, u32, u32)>,
    /// (t, ready, starting) of the whole fleet at every sample, zeros included.
    pub(crate) totals: Vec<(u64, u32, u32)>,
    /// Latencies of every function's 200s since the last sample, and the series they make:
    /// (t, function or `u32::MAX` for the fleet, count, p50, p95, p99 in µs).
    pub(crate) fleet_window: Histogram<u64>,
    pub(crate) latency_series: Vec<(u64, u32, u64, u64, u64, u64)>,
    pub(crate) answered: u64,
    pub(crate) events: u64,
    pub(crate) decisions: Option<Box<dyn Write>>,
    pub(crate) lb_decisions: bool,
    pub(crate) decisions_error: Option<std::io::Error>,
    /// The nodes' keys in the scalers (their indices, in fleet order).
    pub(crate) node_keys: Vec<u32>,
    /// Reusable per-node buffers for placement inputs.
    pub(crate) buf_in_flight: Vec<u32>,
    pub(crate) buf_queued: Vec<u32>,
    pub(crate) buf_current: Vec<u32>,
}

/// What [`Sim::new`] needs besides the network.
pub(crate) struct Setup {
    pub duration: u64,
    pub warmup: u64,
    pub seed: u64,
    pub funcs: Vec<Func>,
    pub sources: Vec<Source>,
    pub kinds: Vec<Kind>,
    pub kinds_given: Vec<bool>,
    pub hold_limit: u32,
    pub sample_every: u64,
    pub decisions: Option<Box<dyn Write>>,
    pub lb_decisions: bool,
    pub overhead: Option<Dist>,
    pub slo_us: Option<u64>,
}

/// A generator for one purpose of a run, independent of the others.
pub(crate) fn stream(seed: u64, purpose: u64) -> SmallRng {
    use rand::SeedableRng;
    SmallRng::seed_from_u64(seed ^ purpose.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

impl Sim {
    pub(crate) fn new(net: Network, s: Setup) -> Sim {
        let n = net.nodes.len();
        let cp_delay = (0..n as u32)
            .map(|i| net.mean_one_way(net.control, i))
            .collect();
        let fleet = FleetView {
            nodes: net.node_views(),
            rtt: net.matrix(),
        };
        let node_names = net.nodes.iter().map(|n| n.name.clone()).collect();
        let mut user_source = vec![u32::MAX; s.kinds.len().max(1)];
        for (i, src) in s.sources.iter().enumerate() {
            if let crate::workload::Source::Users { kind, .. } = src
                && let Some(slot) = user_source.get_mut(*kind as usize)
            {
                *slot = i as u32;
            }
        }
        let mut sim = Sim {
            node_names,
            now: 0,
            duration: s.duration,
            warmup: s.warmup,
            queue: EventQueue::default(),
            net,
            cp_delay,
            fleet,
            funcs: s.funcs,
            gates: Vec::new(),
            gate_index: HashMap::new(),
            insts: Vec::new(),
            free_insts: Vec::new(),
            inst_seq: 0,
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            live_reqs: 0,
            open: 0,
            sources: s.sources,
            user_source,
            kinds: s.kinds,
            kinds_given: s.kinds_given,
            hold_limit: s.hold_limit,
            service_rng: stream(s.seed, 1),
            net_rng: stream(s.seed, 2),
            cold_rng: stream(s.seed, 3),
            overhead: s.overhead.map(|d| (d, stream(s.seed, 8))),
            slo_us: s.slo_us,
            seed: s.seed,
            node_ready: vec![0; n],
            node_starting: vec![0; n],
            sample_every: s.sample_every,
            series: Vec::new(),
            totals: Vec::new(),
            fleet_window: histogram(),
            latency_series: Vec::new(),
            answered: 0,
            events: 0,
            decisions: s.decisions,
            lb_decisions: s.lb_decisions,
            decisions_error: None,
            node_keys: (0..n as u32).collect(),
            buf_in_flight: vec![0; n],
            buf_queued: vec![0; n],
            buf_current: Vec::with_capacity(n),
        };
        if sim.kinds.is_empty() {
            sim.kinds.push(Kind::get("/"));
            sim.kinds_given.push(false);
        }
        for i in 0..sim.sources.len() {
            // An open source has one event for its next arrival; closed-loop users one per
            // user waiting to send.
            for t in sim.sources[i].pending_times() {
                sim.at(t, Ev::Arrive(i as u32));
            }
        }
        sim.at(0, Ev::Tick);
        sim.at(REPORT_NS, Ev::Report);
        sim.at(0, Ev::Sample);
        sim
    }

    /// Schedules `ev` at `t`.
    pub(crate) fn at(&mut self, t: u64, ev: Ev) {
        self.queue.push(t.max(self.now), ev);
    }

    /// Whether periodic work goes on: before the end, or while requests are in flight.
    pub(crate) fn running(&self) -> bool {
        self.now < self.duration || self.open > 0
    }

    /// Runs to the end, reporting progress every million events or so.
    pub fn run(&mut self, progress: &mut dyn FnMut(Progress)) {
        while let Some(e) = self.queue.pop() {
            self.now = e.t;
            self.events += 1;
            if self.events.is_multiple_of(PROGRESS_EVERY) {
                progress(self.progress());
            }
            match e.ev {
                Ev::Arrive(s) => self.arrive(s),
                Ev::AtInstance(r) => self.at_instance(r),
                Ev::Done(r) => self.done(r),
                Ev::Respond(r) => self.respond(r),
                Ev::Timeout(r, g) => self.timeout(r, g),
                Ev::Report => self.report(),
                Ev::Tick => self.tick(),
                Ev::Sample => self.sample(),
                Ev::Poke(f, n, local) => self.poke(f, n, local),
                Ev::Local(f, n, local) => self.told_local(f, n, local),
                Ev::Apply(f, n) => self.apply(f, n),
                Ev::Ready(i, g) => self.ready(i, g),
                Ev::Dispatch(g) => self.dispatch(g),
                Ev::Stop(i, g) => self.stop(i, g),
            }
            // Arrivals end with the duration: once every request is answered, what is left
            // (stale deadlines, drains) changes no result.
            if self.now >= self.duration && self.open == 0 {
                break;
            }
        }
        self.now = self.now.max(self.duration);
        self.finish_instances();
        progress(self.progress());
    }

    fn progress(&self) -> Progress {
        Progress {
            now_ns: self.now,
            duration_ns: self.duration,
            answered: self.answered,
            events: self.events,
        }
    }

    fn arrive(&mut self, s: u32) {
        let source = &mut self.sources[s as usize];
        let Some(a) = source.pop() else {
            return;
        };
        if !source.closed()
            && let Some(t) = source.peek()
        {
            self.at(t, Ev::Arrive(s));
        }
        self.enter(a);
    }

    /// A closed-loop user's answer came: it thinks, then sends its next request.
    pub(crate) fn user_answered(&mut self, kind: u16, origin: u32) {
        let Some(&s) = self.user_source.get(usize::from(kind)) else {
            return;
        };
        if s != u32::MAX
            && let Some(t) = self.sources[s as usize].wake(self.now, origin)
        {
            self.at(t, Ev::Arrive(s));
        }
    }

    fn sample(&mut self) {
        self.close_windows();
        let (mut ready, mut starting) = (0, 0);
        for i in 0..self.node_ready.len() {
            let (r, s) = (self.node_ready[i], self.node_starting[i]);
            if r > 0 || s > 0 {
                self.series.push((self.now, i as u32, r, s));
                ready += r;
                starting += s;
            }
        }
        self.totals.push((self.now, ready, starting));
        if self.now < self.duration {
            let next = self.now + self.sample_every;
            self.at(next, Ev::Sample);
        }
    }

    /// Ends the latency window at `now`: a row per function with answers, one for the fleet.
    fn close_windows(&mut self) {
        let now = self.now;
        let row = |h: &Histogram<u64>| {
            (
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.95),
                h.value_at_quantile(0.99),
            )
        };
        for (i, f) in self.funcs.iter_mut().enumerate() {
            if let Some(h) = &mut f.window
                && !h.is_empty()
            {
                let (n, a, b, c) = row(h);
                self.latency_series.push((now, i as u32, n, a, b, c));
                h.reset();
            }
        }
        if !self.fleet_window.is_empty() {
            let (n, a, b, c) = row(&self.fleet_window);
            self.latency_series.push((now, u32::MAX, n, a, b, c));
            self.fleet_window.reset();
        }
    }

    /// Instances still alive at the end are counted until the end of the arrivals (the
    /// measured window is from the warm-up to then, live or simulated).
    fn finish_instances(&mut self) {
        self.close_windows();
        let end = self.now.min(self.duration);
        for i in 0..self.insts.len() {
            let inst = &mut self.insts[i];
            if inst.state != IState::Stopped {
                let from = inst.started.max(self.warmup);
                let f = inst.function as usize;
                self.funcs[f].instance_ns += u128::from(end.saturating_sub(from));
                inst.state = IState::Stopped;
            }
        }
    }

    /// Allocates a request.
    pub(crate) fn alloc_req(&mut self) -> u32 {
        self.live_reqs += 1;
        if let Some(i) = self.free_reqs.pop() {
            return i;
        }
        self.reqs.push(Req::free_value());
        (self.reqs.len() - 1) as u32
    }

    /// Frees a request (its generation moves on, so stale timeouts find nothing).
    pub(crate) fn free_req(&mut self, r: u32) {
        let q = &mut self.reqs[r as usize];
        let epoch = q.epoch.wrapping_add(1);
        *q = Req::free_value();
        q.epoch = epoch;
        self.live_reqs -= 1;
        self.free_reqs.push(r);
    }

    /// When request `r` times out: its arrival plus its revision's `timeoutSeconds`.
    pub(crate) fn deadline(&self, r: u32) -> u64 {
        let q = &self.reqs[r as usize];
        let f = self.gates[q.gate as usize].function;
        q.arrived + self.funcs[f as usize].timeout_ns
    }

    /// The time the decision records carry: the run's clock as RFC 3339 from the epoch.
    pub(crate) fn record_time(&self) -> String {
        kantai_decisions::time::rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(self.now),
        )
    }

    /// Writes a decision record (JSON line).
    pub(crate) fn log(&mut self, d: &kantai_decisions::Decision) {
        if let Some(w) = &mut self.decisions
            && self.decisions_error.is_none()
        {
            let r = serde_json::to_writer(&mut *w, d)
                .map_err(std::io::Error::other)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = r {
                self.decisions_error = Some(e);
            }
        }
    }

    /// Flushes the decision log; its first write error, if any.
    pub(crate) fn close_log(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.decisions_error.take() {
            return Err(e);
        }
        if let Some(w) = &mut self.decisions {
            w.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<super::Req>(), 64);
    }
}
