//! Node lifecycle: whether each node is ready, judged from its agent's reports, and when the
//! instances of a silent node are given up on (marked not ready and placed elsewhere). This
//! is Kubernetes' node lifecycle controller (`pkg/controller/nodelifecycle`) on kantai's
//! time scale, with one addition: the controller notices when it did not run itself.
//!
//! Two failures look alike from the control plane: a node that stopped reporting, and a
//! control plane that stopped reading (stalled by SIGSTOP, a VM pause, swapping, starvation)
//! or lost sight of every node at once. The first calls for replacing the node's instances;
//! the second must not touch anything, because the nodes are serving. So:
//!
//! - **Silence is counted only over time the control plane could read reports.** A gap
//!   between passes far longer than the pass interval ([`STALL_GAP`]) is the control plane's
//!   own: it counts as one pass interval, not as its length.
//! - **After such a gap, no node is judged until queued reports had the chance to be read**
//!   ([`RESUME_HOLD`]); likewise while reports received wait to be read.
//! - **Instances are given up on at a limited rate** ([`EVICTION_RATE`], Kubernetes'
//!   `--node-eviction-rate`), and **not at all when most nodes are silent together**
//!   ([`UNHEALTHY_THRESHOLD`], Kubernetes' `--unhealthy-zone-threshold`): that is a fault on
//!   the control plane's side, and warm traffic must not be cut because of it.
//!
//! Pure: the driver passes every time in (a `Duration` since its epoch) and does the I/O.

use std::collections::BTreeMap;
use std::time::Duration;

/// How often node agents report (`kantai node`'s report loop).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A node whose agent has not been heard from for this long (of time the control plane
/// could hear it) is not ready: three missed reports, so that a dead node is NotReady, and
/// its instances placed elsewhere, within 5 s of its death, while a single late report under
/// load does not move anything. Kubernetes waits 40 s (`--node-monitor-grace-period`) and
/// then 300 s more (the default `tolerationSeconds` of `node.kubernetes.io/unreachable`);
/// kantai's nodes report every second and its functions want to be re-placed in seconds.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the control plane runs a pass.
pub const PASS_INTERVAL: Duration = Duration::from_millis(250);

/// A gap between two passes longer than this (four pass intervals) means the control plane
/// itself did not run: whatever it did not hear meanwhile says nothing about the nodes.
pub const STALL_GAP: Duration = Duration::from_secs(1);

/// After a stall, and while received reports wait to be read, no node turns not ready for
/// this long: one report interval, in which every live agent's report (queued during the
/// stall, or its next one) is read.
pub const RESUME_HOLD: Duration = REPORT_INTERVAL;

/// A node's instances are given up on only once it has been not ready this long (one
/// report interval and two passes): nodes silenced by one cause (the control plane cut off
/// from all of them) each miss their next report within one report interval, so by then
/// every one of them is not ready and the fleet's state counts them all. Kubernetes gets the
/// same from the 300 s its pods tolerate an unreachable node.
pub const EVICTION_DELAY: Duration = Duration::from_millis(1_500);

/// The fleet is disrupted when at least this share of its nodes is not ready (and at least
/// [`MIN_UNHEALTHY`] of them): Kubernetes' `--unhealthy-zone-threshold` default, 0.55.
pub const UNHEALTHY_THRESHOLD: f64 = 0.55;

/// Fewer not-ready nodes than this never make a partial disruption, whatever their share:
/// Kubernetes' `ComputeZoneState` (`notReadyNodes > 2`).
pub const MIN_UNHEALTHY: usize = 3;

/// Nodes whose instances are given up on per second while the fleet is healthy: Kubernetes'
/// `--node-eviction-rate` default, 0.1 (one node every 10 s; the first at once, as its
/// limiter's burst is 1).
pub const EVICTION_RATE: f64 = 0.1;

/// The same in a partial disruption of a large fleet: Kubernetes'
/// `--secondary-node-eviction-rate` default, 0.01.
pub const SECONDARY_EVICTION_RATE: f64 = 0.01;

/// A fleet of at most this many nodes stops giving up on nodes in a partial disruption
/// (the secondary rate is 0): Kubernetes' `--large-cluster-size-threshold` default, 50.
pub const LARGE_FLEET: usize = 50;

/// Instance objects naming a node without a Node object are removed once it has been absent
/// this long: longer than a live agent takes to register its Node again (about 2 s), as
/// Kubernetes' pod garbage collector waits 40 s (`quarantineTime`) for a node to show up.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// The numbers a [`Lifecycle`] works with (the constants above by default).
#[derive(Clone, Debug, PartialEq)]
pub struct LifecycleConfig {
    /// [`PASS_INTERVAL`].
    pub pass_interval: Duration,
    /// [`READY_TIMEOUT`].
    pub ready_timeout: Duration,
    /// [`STALL_GAP`].
    pub stall_gap: Duration,
    /// [`RESUME_HOLD`].
    pub resume_hold: Duration,
    /// [`EVICTION_DELAY`].
    pub eviction_delay: Duration,
    /// [`UNHEALTHY_THRESHOLD`].
    pub unhealthy_threshold: f64,
    /// [`EVICTION_RATE`], nodes per second.
    pub eviction_rate: f64,
    /// [`SECONDARY_EVICTION_RATE`], nodes per second.
    pub secondary_eviction_rate: f64,
    /// [`LARGE_FLEET`].
    pub large_fleet: usize,
    /// [`ORPHAN_GRACE`].
    pub orphan_grace: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            pass_interval: PASS_INTERVAL,
            ready_timeout: READY_TIMEOUT,
            stall_gap: STALL_GAP,
            resume_hold: RESUME_HOLD,
            eviction_delay: EVICTION_DELAY,
            unhealthy_threshold: UNHEALTHY_THRESHOLD,
            eviction_rate: EVICTION_RATE,
            secondary_eviction_rate: SECONDARY_EVICTION_RATE,
            large_fleet: LARGE_FLEET,
            orphan_grace: ORPHAN_GRACE,
        }
    }
}

/// The health of the fleet as a whole (Kubernetes' zone states; kantai's fleet is one zone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FleetState {
    /// Few nodes are not ready: their instances are given up on at [`EVICTION_RATE`].
    #[default]
    Normal,
    /// At least [`UNHEALTHY_THRESHOLD`] of the nodes (and at least [`MIN_UNHEALTHY`]) are not
    /// ready: nothing is given up on (at [`SECONDARY_EVICTION_RATE`] above [`LARGE_FLEET`]).
    PartialDisruption,
    /// No node is ready: nothing is given up on.
    FullDisruption,
}

impl FleetState {
    /// The state of a fleet with `ready` and `not_ready` nodes (Kubernetes' `ComputeZoneState`).
    pub fn of(ready: usize, not_ready: usize, threshold: f64) -> FleetState {
        let total = ready + not_ready;
        if ready == 0 && not_ready > 0 {
            FleetState::FullDisruption
        } else if not_ready >= MIN_UNHEALTHY && not_ready as f64 / total as f64 >= threshold {
            FleetState::PartialDisruption
        } else {
            FleetState::Normal
        }
    }

    /// Its name as Kubernetes logs it.
    pub fn as_str(self) -> &'static str {
        match self {
            FleetState::Normal => "Normal",
            FleetState::PartialDisruption => "PartialDisruption",
            FleetState::FullDisruption => "FullDisruption",
        }
    }
}

/// A change of the fleet's state in a pass.
#[derive(Clone, Debug, PartialEq)]
pub struct StateChange {
    /// The state before.
    pub from: FleetState,
    /// The state now.
    pub to: FleetState,
    /// Registered nodes not ready.
    pub not_ready: usize,
    /// Registered nodes.
    pub nodes: usize,
    /// Whether instances of not-ready nodes are given up on now (the eviction rate is not 0).
    pub replacing: bool,
}

/// What the driver knows at a pass.
#[derive(Clone, Copy, Debug)]
pub struct PassInput<'a> {
    /// The time, since the driver's epoch.
    pub now: Duration,
    /// The nodes that have a Node object.
    pub registered: &'a [String],
    /// The nodes that instance objects name.
    pub named: &'a [String],
    /// Whether reports were received that have not been read yet.
    pub backlog: bool,
}

/// What a pass decided; the driver acts on it (every list in name order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pass {
    /// The gap since the previous pass, when it was a stall of the control plane's own.
    pub stall: Option<Duration>,
    /// Nodes heard from again: Ready, and their instances count again.
    pub became_ready: Vec<String>,
    /// Nodes silent for [`READY_TIMEOUT`]: not Ready.
    pub became_not_ready: Vec<String>,
    /// Nodes whose instances are given up on now: marked not ready and placed elsewhere.
    pub evict: Vec<String>,
    /// Not-ready nodes whose instances now wait for the eviction rate limit.
    pub rate_limited: Vec<String>,
    /// Not-ready nodes whose instances are now kept, because the fleet is disrupted.
    pub suspended: Vec<String>,
    /// The fleet's state, when it changed.
    pub state: Option<StateChange>,
    /// Nodes absent (no Node object) for [`ORPHAN_GRACE`]: remove the instance objects
    /// naming them.
    pub orphaned: Vec<String>,
}

/// What the driver was last told about a not-ready node's instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    None,
    RateLimited,
    Suspended,
}

#[derive(Clone, Debug)]
struct Tracked {
    /// The latest report not yet accounted for by a pass.
    heard_at: Option<Duration>,
    /// Silence, over time the control plane could hear the node.
    silent: Duration,
    /// Silence counted towards giving up on its instances (starts over when the fleet
    /// leaves a disruption).
    suspect: Duration,
    ready: bool,
    /// When it turned not ready (awake time): the eviction queue's order.
    not_ready_at: Duration,
    evicted: bool,
    notice: Notice,
    registered: bool,
    named: bool,
    /// Awake time since which it has no Node object while instance objects name it.
    absent_since: Option<Duration>,
}

impl Tracked {
    fn new() -> Tracked {
        Tracked {
            heard_at: None,
            silent: Duration::ZERO,
            suspect: Duration::ZERO,
            ready: true,
            not_ready_at: Duration::ZERO,
            evicted: false,
            notice: Notice::None,
            registered: false,
            named: false,
            absent_since: None,
        }
    }
}

/// The node lifecycle state machine: fed reports ([`Lifecycle::heard`]) and run every
/// [`PASS_INTERVAL`] ([`Lifecycle::pass`]). A node never heard from is ready, and has
/// [`READY_TIMEOUT`] from the first pass that knows it to report: a control plane that just
/// (re)started does not move instances off healthy nodes.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    config: LifecycleConfig,
    nodes: BTreeMap<String, Tracked>,
    last_pass: Option<Duration>,
    /// Time the control plane was awake: the sum of the passes' credited gaps.
    awake: Duration,
    /// No node turns not ready before this (after a stall).
    hold_until: Duration,
    /// Since when received reports wait to be read.
    backlog_since: Option<Duration>,
    state: FleetState,
    /// The next time an eviction is allowed (a token bucket of burst 1).
    next_eviction: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new(LifecycleConfig::default())
    }
}

impl Lifecycle {
    /// A state machine that knows no node yet.
    pub fn new(config: LifecycleConfig) -> Lifecycle {
        Lifecycle {
            config,
            nodes: BTreeMap::new(),
            last_pass: None,
            awake: Duration::ZERO,
            hold_until: Duration::ZERO,
            backlog_since: None,
            state: FleetState::Normal,
            next_eviction: Duration::ZERO,
        }
    }

    /// The numbers it works with.
    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// A report from `node`'s agent, received at `at`.
    pub fn heard(&mut self, node: &str, at: Duration) {
        let n = self
            .nodes
            .entry(node.to_owned())
            .or_insert_with(Tracked::new);
        n.heard_at = Some(n.heard_at.map_or(at, |t| t.max(at)));
    }

    /// Whether `node` is Ready (a node not known yet is).
    pub fn ready(&self, node: &str) -> bool {
        self.nodes.get(node).is_none_or(|n| n.ready)
    }

    /// Whether `node`'s instances count and stay where they are: false once they were given
    /// up on, until its agent is heard from again.
    pub fn serving(&self, node: &str) -> bool {
        self.nodes.get(node).is_none_or(|n| !n.evicted)
    }

    /// How long `node` has been silent, over time the control plane could hear it.
    pub fn silent(&self, node: &str) -> Duration {
        self.nodes.get(node).map_or(Duration::ZERO, |n| n.silent)
    }

    /// The fleet's state as of the last pass.
    pub fn state(&self) -> FleetState {
        self.state
    }

    /// The rate (nodes per second) at which instances of not-ready nodes are given up on in
    /// `state`, for a fleet of `nodes` (Kubernetes' `setLimiterInZone`).
    pub fn eviction_rate(&self, state: FleetState, nodes: usize) -> f64 {
        match state {
            FleetState::Normal => self.config.eviction_rate,
            FleetState::PartialDisruption if nodes > self.config.large_fleet => {
                self.config.secondary_eviction_rate
            }
            FleetState::PartialDisruption | FleetState::FullDisruption => 0.0,
        }
    }

    /// One pass: silence, readiness, the fleet's state, evictions and orphans at `input.now`.
    pub fn pass(&mut self, input: &PassInput<'_>) -> Pass {
        let now = input.now;
        let mut out = Pass::default();
        let gap = self
            .last_pass
            .map_or(Duration::ZERO, |t| now.saturating_sub(t));
        let credit = if gap > self.config.stall_gap {
            out.stall = Some(gap);
            self.hold_until = now + self.config.resume_hold;
            self.config.pass_interval
        } else {
            gap
        };
        self.last_pass = Some(now);
        self.awake += credit;
        self.backlog_since = input.backlog.then(|| self.backlog_since.unwrap_or(now));
        let held = now < self.hold_until
            || self
                .backlog_since
                .is_some_and(|t| now.saturating_sub(t) < self.config.resume_hold);

        // Silence of the nodes known before this pass; a node first known now starts at 0.
        for n in self.nodes.values_mut() {
            match n.heard_at.take() {
                Some(at) => n.silent = now.saturating_sub(at).min(credit),
                None => n.silent += credit,
            }
            n.suspect = n.silent.min(n.suspect + credit);
            n.registered = false;
            n.named = false;
        }
        for name in input.registered {
            self.nodes
                .entry(name.clone())
                .or_insert_with(Tracked::new)
                .registered = true;
        }
        for name in input.named {
            self.nodes
                .entry(name.clone())
                .or_insert_with(Tracked::new)
                .named = true;
        }

        let timeout = self.config.ready_timeout;
        let awake = self.awake;
        for (name, n) in &mut self.nodes {
            let fresh = n.silent < timeout;
            if fresh && !n.ready {
                n.ready = true;
                n.evicted = false;
                n.notice = Notice::None;
                out.became_ready.push(name.clone());
            } else if !fresh && n.ready && !held {
                n.ready = false;
                n.not_ready_at = awake;
                out.became_not_ready.push(name.clone());
            }
            n.absent_since = match (n.registered, n.named) {
                (false, true) => Some(n.absent_since.unwrap_or(awake)),
                _ => None,
            };
        }

        let nodes = self.nodes.values().filter(|n| n.registered).count();
        let not_ready = self
            .nodes
            .values()
            .filter(|n| n.registered && !n.ready)
            .count();
        let state = FleetState::of(
            nodes - not_ready,
            not_ready,
            self.config.unhealthy_threshold,
        );
        let rate = self.eviction_rate(state, nodes);
        if state != self.state {
            let was = self.eviction_rate(self.state, nodes);
            out.state = Some(StateChange {
                from: self.state,
                to: state,
                not_ready,
                nodes,
                replacing: rate > 0.0,
            });
            if was == 0.0 && rate > 0.0 {
                // Leaving a disruption, every node still silent gets a fresh timeout before
                // its instances are given up on, as Kubernetes resets every node's probe
                // time when a zone leaves full disruption: the nodes that come back last
                // must not be taken for dead because the others came back first.
                for n in self.nodes.values_mut().filter(|n| !n.ready && !n.evicted) {
                    n.suspect = Duration::ZERO;
                }
            }
            // Kubernetes swaps in a new limiter, whose bucket is full.
            self.next_eviction = now;
            self.state = state;
        }

        if !held {
            let delay = self.config.eviction_delay;
            let mut queue: Vec<(Duration, &String, &mut Tracked)> = self
                .nodes
                .iter_mut()
                .filter(|(_, n)| {
                    !n.ready
                        && !n.evicted
                        && n.suspect >= timeout
                        && awake.saturating_sub(n.not_ready_at) >= delay
                        && (n.registered || n.named)
                })
                .map(|(name, n)| (n.not_ready_at, name, n))
                .collect();
            queue.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            for (_, name, n) in queue {
                if rate > 0.0 && now >= self.next_eviction {
                    n.evicted = true;
                    n.notice = Notice::None;
                    out.evict.push(name.clone());
                    self.next_eviction = now + Duration::from_secs_f64(1.0 / rate);
                } else {
                    let notice = if rate > 0.0 {
                        Notice::RateLimited
                    } else {
                        Notice::Suspended
                    };
                    if n.notice != notice {
                        n.notice = notice;
                        match notice {
                            Notice::RateLimited => out.rate_limited.push(name.clone()),
                            _ => out.suspended.push(name.clone()),
                        }
                    }
                }
            }
            for (name, n) in &mut self.nodes {
                if let Some(t) = n.absent_since
                    && awake.saturating_sub(t) >= self.config.orphan_grace
                {
                    out.orphaned.push(name.clone());
                    // Once per grace: removals that fail are tried again later.
                    n.absent_since = Some(awake);
                }
            }
        }
        out.evict.sort();
        out.rate_limited.sort();
        out.suspended.sort();

        // Forget what nothing names any more and has long been silent.
        let grace = self.config.orphan_grace;
        self.nodes
            .retain(|_, n| n.registered || n.named || n.silent < grace);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn fleet_states_follow_kubernetes_compute_zone_state() {
        // (ready, not ready, state)
        let table = [
            (0, 0, FleetState::Normal),
            (3, 0, FleetState::Normal),
            (2, 1, FleetState::Normal),
            // 2 of 3 is over the threshold, but fewer than 3 never make a partial disruption.
            (1, 2, FleetState::Normal),
            (1, 1, FleetState::Normal),
            (0, 1, FleetState::FullDisruption),
            (0, 3, FleetState::FullDisruption),
            (1, 3, FleetState::PartialDisruption),
            (3, 5, FleetState::PartialDisruption),
            // 4 of 8 = 0.5 < 0.55.
            (4, 4, FleetState::Normal),
            // 11 of 20 = 0.55: at least the threshold.
            (9, 11, FleetState::PartialDisruption),
            (10, 10, FleetState::Normal),
        ];
        for (ready, not_ready, want) in table {
            assert_eq!(
                FleetState::of(ready, not_ready, UNHEALTHY_THRESHOLD),
                want,
                "{ready} ready, {not_ready} not ready"
            );
        }
    }

    #[test]
    fn eviction_rates_by_state_and_fleet_size() {
        let l = Lifecycle::default();
        let table = [
            (FleetState::Normal, 3, EVICTION_RATE),
            (FleetState::Normal, 500, EVICTION_RATE),
            (FleetState::PartialDisruption, 50, 0.0),
            (FleetState::PartialDisruption, 51, SECONDARY_EVICTION_RATE),
            (FleetState::FullDisruption, 3, 0.0),
            (FleetState::FullDisruption, 500, 0.0),
        ];
        for (state, nodes, want) in table {
            assert_eq!(
                l.eviction_rate(state, nodes),
                want,
                "{state:?}, {nodes} nodes"
            );
        }
    }

    /// A scripted fleet on a 50 ms grid: agents that report every second (node i at
    /// i × 100 ms past each second), the control plane's passes every 250 ms, and faults.
    #[derive(Default)]
    struct Script {
        nodes: usize,
        /// (node index, from) in ms: the agent dies.
        dead: Vec<(usize, u64)>,
        /// (node index, from, to) in ms: the agent is cut off and reports again after.
        silent: Vec<(usize, u64, u64)>,
        /// (from, to) in ms: the control plane does not run. The reports sent meanwhile are
        /// received when it resumes, after its first pass (the worst order).
        stalls: Vec<(u64, u64)>,
        /// (from, to) in ms: received reports wait to be read; they are read at `to`.
        backlog: Vec<(u64, u64)>,
        /// Whether the passes are not told about the backlog (to show what it guards).
        hide_backlog: bool,
        /// (node index, from, to) in ms: the node has no Node object.
        unregistered: Vec<(usize, u64, u64)>,
        /// How long to run, in ms.
        until: u64,
    }

    /// What happened, in ms, per node name.
    #[derive(Debug, Default)]
    struct Outcome {
        not_ready: BTreeMap<String, Vec<u64>>,
        ready_again: BTreeMap<String, Vec<u64>>,
        evicted: BTreeMap<String, Vec<u64>>,
        rate_limited: BTreeMap<String, u64>,
        suspended: BTreeMap<String, u64>,
        states: Vec<(u64, FleetState)>,
        stalls: Vec<(u64, Duration)>,
        orphaned: BTreeMap<String, Vec<u64>>,
    }

    fn name(i: usize) -> String {
        format!("node{}", i + 1)
    }

    fn within(spans: &[(u64, u64)], t: u64) -> bool {
        spans.iter().any(|&(a, b)| t >= a && t < b)
    }

    fn run(script: &Script) -> (Outcome, Lifecycle) {
        let mut l = Lifecycle::default();
        let mut out = Outcome::default();
        let names: Vec<String> = (0..script.nodes).map(name).collect();
        let mut pending: Vec<(String, u64)> = Vec::new();
        let read = |pending: &mut Vec<(String, u64)>, l: &mut Lifecycle| {
            for (n, at) in pending.drain(..) {
                l.heard(&n, ms(at));
            }
        };
        let mut was_stalled = false;
        let mut t = 0;
        while t <= script.until {
            let stalled = within(&script.stalls, t);
            let backlogged = within(&script.backlog, t);
            for (i, n) in names.iter().enumerate() {
                let dead = script.dead.iter().any(|&(d, from)| d == i && t >= from);
                let cut = script
                    .silent
                    .iter()
                    .any(|&(d, a, b)| d == i && t >= a && t < b);
                if t % 1000 == (100 * i as u64) % 1000 && !dead && !cut {
                    // Received now, or when the control plane runs again.
                    pending.push((n.clone(), t));
                }
            }
            let pass_now = !stalled && t % 250 == 0;
            let resumed = was_stalled && !stalled;
            was_stalled = stalled;
            // Right after a stall the pass runs before the queued reports are read.
            let pass_first = pass_now && resumed;
            if !(stalled || backlogged || pass_first) {
                read(&mut pending, &mut l);
            }
            if pass_now {
                let registered: Vec<String> = names
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| {
                        !script
                            .unregistered
                            .iter()
                            .any(|&(d, a, b)| d == i && t >= a && t < b)
                    })
                    .map(|(_, n)| n.clone())
                    .collect();
                let p = l.pass(&PassInput {
                    now: ms(t),
                    registered: &registered,
                    named: &names,
                    backlog: !script.hide_backlog && !pending.is_empty(),
                });
                let push = |m: &mut BTreeMap<String, Vec<u64>>, v: &[String]| {
                    for n in v {
                        m.entry(n.clone()).or_default().push(t);
                    }
                };
                push(&mut out.not_ready, &p.became_not_ready);
                push(&mut out.ready_again, &p.became_ready);
                push(&mut out.evicted, &p.evict);
                push(&mut out.orphaned, &p.orphaned);
                for n in p.rate_limited {
                    out.rate_limited.entry(n).or_insert(t);
                }
                for n in p.suspended {
                    out.suspended.entry(n).or_insert(t);
                }
                if let Some(s) = p.state {
                    out.states.push((t, s.to));
                }
                if let Some(g) = p.stall {
                    out.stalls.push((t, g));
                }
                if !backlogged {
                    read(&mut pending, &mut l);
                }
            }
            t += 50;
        }
        (out, l)
    }

    #[test]
    fn a_stalled_control_plane_judges_no_node_when_it_resumes() {
        // (stall start, length) in ms: 1.5 s to 60 s, at several phases against the reports.
        let table = [
            (5_000, 1_500),
            (5_000, 5_000),
            (5_100, 5_000),
            (5_650, 5_000),
            (7_300, 20_000),
            (5_000, 60_000),
        ];
        for (from, length) in table {
            let (o, _) = run(&Script {
                nodes: 3,
                stalls: vec![(from, from + length)],
                until: from + length + 10_000,
                ..Script::default()
            });
            assert!(o.not_ready.is_empty(), "{length} ms stall: {o:?}");
            assert!(o.evicted.is_empty(), "{length} ms stall: {o:?}");
            assert!(o.states.is_empty(), "{length} ms stall: {o:?}");
            assert_eq!(o.stalls.len(), 1, "{length} ms stall: {o:?}");
        }
    }

    #[test]
    fn a_lost_node_is_not_ready_within_5_s_and_its_instances_given_up_after_the_delay() {
        for died in [10_000, 10_050, 10_250, 10_900] {
            let (o, l) = run(&Script {
                nodes: 3,
                dead: vec![(2, died)],
                until: 30_000,
                ..Script::default()
            });
            let at = o.not_ready["node3"][0];
            assert!(
                at - died < 5_000,
                "died at {died}, not ready at {at}: {o:?}"
            );
            assert_eq!(o.evicted["node3"], vec![at + 1_500], "{o:?}");
            assert_eq!(o.not_ready.len(), 1, "{o:?}");
            assert!(o.states.is_empty(), "{o:?}");
            assert!(!l.ready("node3") && !l.serving("node3"));
            assert!(l.ready("node1") && l.serving("node1"));
        }
    }

    #[test]
    fn every_node_silent_together_suspends_eviction() {
        let (o, _) = run(&Script {
            nodes: 3,
            silent: (0..3).map(|i| (i, 10_000, 40_000)).collect(),
            until: 60_000,
            ..Script::default()
        });
        assert_eq!(o.not_ready.len(), 3, "{o:?}");
        assert!(o.evicted.is_empty(), "{o:?}");
        assert_eq!(o.suspended.len(), 3, "{o:?}");
        // Into full disruption, and out when they report again.
        let states: Vec<FleetState> = o.states.iter().map(|s| s.1).collect();
        assert_eq!(
            states,
            [FleetState::FullDisruption, FleetState::Normal],
            "{o:?}"
        );
        assert_eq!(o.ready_again.len(), 3, "{o:?}");
    }

    #[test]
    fn most_nodes_silent_together_suspends_eviction_in_a_small_fleet() {
        // 5 of 8 (62 %) silent at once; they come back 20 s later.
        let (o, _) = run(&Script {
            nodes: 8,
            silent: (0..5).map(|i| (i, 10_000, 30_000)).collect(),
            until: 40_000,
            ..Script::default()
        });
        assert_eq!(o.not_ready.len(), 5, "{o:?}");
        assert!(o.evicted.is_empty(), "{o:?}");
        assert_eq!(o.suspended.len(), 5, "{o:?}");
        let states: Vec<FleetState> = o.states.iter().map(|s| s.1).collect();
        assert_eq!(
            states,
            [FleetState::PartialDisruption, FleetState::Normal],
            "{o:?}"
        );
    }

    #[test]
    fn evictions_are_rate_limited_to_one_node_every_10_s() {
        // 2 of 5 die together (40 %: no disruption).
        let (o, _) = run(&Script {
            nodes: 5,
            dead: vec![(0, 10_000), (1, 10_000)],
            until: 60_000,
            ..Script::default()
        });
        let first = o.evicted["node1"][0];
        let second = o.evicted["node2"][0];
        assert!(first - 10_000 < 6_000, "{o:?}");
        assert_eq!(second - first, 10_000, "{o:?}");
        assert_eq!(
            o.rate_limited.keys().collect::<Vec<_>>(),
            ["node2"],
            "{o:?}"
        );
        // A third dies while the second waits: 3 of 5 (60 %) is a partial disruption, and
        // the small fleet stops giving up on nodes.
        let (o, _) = run(&Script {
            nodes: 5,
            dead: vec![(0, 10_000), (1, 10_000), (2, 14_000)],
            until: 60_000,
            ..Script::default()
        });
        assert_eq!(o.evicted.keys().collect::<Vec<_>>(), ["node1"], "{o:?}");
        assert_eq!(
            o.suspended.keys().collect::<Vec<_>>(),
            ["node2", "node3"],
            "{o:?}"
        );
    }

    #[test]
    fn after_a_disruption_the_nodes_still_silent_get_a_fresh_timeout() {
        // All three silent together; node1 and node2 come back 10 s later, node3 is dead.
        let (o, _) = run(&Script {
            nodes: 3,
            silent: vec![(0, 10_000, 20_000), (1, 10_000, 20_000)],
            dead: vec![(2, 10_000)],
            until: 40_000,
            ..Script::default()
        });
        let evicted = o.evicted["node3"][0];
        // The fleet is Normal again once the first node reports.
        let (back, state) = o.states[1];
        assert_eq!(state, FleetState::Normal, "{o:?}");
        assert!(
            evicted >= back + 3_000 && evicted < back + 5_000,
            "normal again at {back}, node3 given up on at {evicted}: {o:?}"
        );
        assert_eq!(o.evicted.len(), 1, "{o:?}");
    }

    #[test]
    fn a_node_that_reports_again_is_ready_and_serving_again() {
        let script = |until| Script {
            nodes: 3,
            silent: vec![(1, 10_000, 20_000)],
            until,
            ..Script::default()
        };
        let (o, l) = run(&script(15_000));
        assert_eq!(o.evicted["node2"].len(), 1, "{o:?}");
        assert!(!l.ready("node2") && !l.serving("node2"));
        let (o, l) = run(&script(25_000));
        assert!(o.ready_again["node2"][0] >= 20_000, "{o:?}");
        assert!(l.ready("node2") && l.serving("node2"));
        assert!(l.silent("node2") < Duration::from_secs(1));
    }

    #[test]
    fn a_node_dead_just_before_a_stall_is_still_given_up_on_after_it() {
        let (o, _) = run(&Script {
            nodes: 3,
            dead: vec![(2, 8_000)],
            stalls: vec![(10_000, 15_000)],
            until: 30_000,
            ..Script::default()
        });
        let at = o.not_ready["node3"][0];
        // 2.5 s of silence before the stall, a pass interval for it, the rest after and the
        // hold: judged a report interval after the resume.
        assert_eq!(at, 16_000, "{o:?}");
        assert_eq!(o.evicted["node3"], vec![at + 1_500], "{o:?}");
        assert_eq!(o.not_ready.len(), 1, "{o:?}");
    }

    #[test]
    fn reports_waiting_to_be_read_hold_judgement() {
        // node2 is late by 2 s; its next report waits 450 ms to be read. Judged on what was
        // read, it would be not ready at 11.25 s.
        let script = |hide_backlog| Script {
            nodes: 3,
            silent: vec![(1, 9_000, 11_000)],
            backlog: vec![(11_050, 11_500)],
            hide_backlog,
            until: 20_000,
            ..Script::default()
        };
        let (o, _) = run(&script(true));
        assert_eq!(o.not_ready["node2"], vec![11_250], "{o:?}");
        let (o, _) = run(&script(false));
        assert!(o.not_ready.is_empty(), "{o:?}");
        // A backlog that does not clear holds judgement for a report interval at most: a
        // dead node is still judged.
        let (o, _) = run(&Script {
            nodes: 3,
            dead: vec![(2, 10_000)],
            backlog: vec![(11_000, 20_000)],
            until: 25_000,
            ..Script::default()
        });
        assert!(o.not_ready["node3"][0] - 10_000 < 5_000, "{o:?}");
    }

    #[test]
    fn instances_of_a_node_whose_object_is_gone_are_collected_after_the_grace() {
        // Registered again within 2 s: nothing collected.
        let (o, _) = run(&Script {
            nodes: 2,
            unregistered: vec![(1, 5_000, 7_000)],
            until: 30_000,
            ..Script::default()
        });
        assert!(o.orphaned.is_empty(), "{o:?}");
        // Gone for good: collected after 10 s, and again every 10 s while named.
        let (o, _) = run(&Script {
            nodes: 2,
            unregistered: vec![(1, 5_000, 60_000)],
            dead: vec![(1, 4_000)],
            until: 30_000,
            ..Script::default()
        });
        assert_eq!(o.orphaned["node2"], vec![15_000, 25_000], "{o:?}");
        // A stall does not count towards the grace.
        let (o, _) = run(&Script {
            nodes: 2,
            unregistered: vec![(1, 5_000, 60_000)],
            dead: vec![(1, 4_000)],
            stalls: vec![(6_000, 26_000)],
            until: 30_000,
            ..Script::default()
        });
        assert!(o.orphaned.is_empty(), "{o:?}");
    }

    #[test]
    fn a_control_plane_that_just_started_gives_every_node_the_timeout() {
        let mut l = Lifecycle::default();
        let names = vec![name(0), name(1)];
        let mut first = None;
        for t in (0..=5_000).step_by(250) {
            let p = l.pass(&PassInput {
                now: ms(60_000 + t),
                registered: &names,
                named: &[],
                backlog: false,
            });
            if !p.became_not_ready.is_empty() {
                first.get_or_insert(t);
            }
        }
        // Never heard from: not ready once the timeout has passed since the first pass.
        assert_eq!(first, Some(3_000));
        assert_eq!(l.state(), FleetState::FullDisruption);
    }
}
