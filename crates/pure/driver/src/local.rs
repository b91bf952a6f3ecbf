//! Starts a node decides on its own: a request reached node *i* for a revision that no
//! instance serves, and waiting for the control plane would add its round trip (or, with
//! the control plane unreachable, forever) to the cold start.
//!
//! The node runs the revision's own placement policy, the code the control plane runs, on
//! its own view of the fleet (capacities, the placements it watches, its round trips, its
//! own held demand; every other node's demand unknown, so 0) with one instance more than it
//! knows of, and starts the instance only if the policy puts it on node *i*, the node has
//! room and the revision's max-scale allows it. The policy says whether it allows this at
//! all ([`LocalStarts`]); a policy that waits for the control plane does not when the node
//! is the only one with room (the choice is forced). While the control plane is reachable a
//! node starts locally only a revision at zero everywhere it knows of: the KPA's answer to
//! that poke is at least one instance (its activation scale), so the control plane keeps the
//! one started (it counts it in the placement) rather than undoing it.

use kantai_model::lifecycle::REPORT_INTERVAL;
use kantai_policy::placement::{LocalStarts, Room};
use kantai_policy::{FleetView, NodeView, PlacementInput, Resources, stable_hash};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::time::Duration;

use crate::scaler::{placement_policy, seed};
use crate::settings::RevisionSettings;

/// Reports unanswered this long mean the control plane is unreachable: the node scales
/// what it started on its own (three report intervals: one lost report is no outage).
pub const AUTONOMOUS_AFTER: Duration = Duration::from_secs(3 * REPORT_INTERVAL.as_secs());

/// How long a reachable control plane has to count a local start in a placement: past it,
/// a placement that does not count it is the control plane's decision (two of its 2 s ticks
/// and a report interval), and the instance follows the placement like any other.
pub const ADOPT_WITHIN: Duration = Duration::from_secs(5);

/// Instances of a revision counted on a node that started some on its own: its placement's
/// count, or its local starts when they are more (the node's desired count there, and what
/// the control plane counts in the placement's `current` once it was told).
pub fn counted(placed: u32, local: u32) -> u32 {
    placed.max(local)
}

/// Counts in `node` the instances of a revision it started on its own beyond what its
/// placement puts there: they take room (instances, CPU, memory) before a placement counts
/// them, in the node's own view and in the control plane's.
pub fn take_local(node: &mut NodeView, resources: Resources, placed: u32, local: u32) {
    let beyond = local.saturating_sub(placed);
    node.instances += beyond;
    node.cpu_used += resources.cpu * f64::from(beyond);
    node.memory_used += resources.memory * f64::from(beyond);
}

/// Whether a request held at a node for a revision is one the node may consider starting an
/// instance for itself: it started none of its own yet, runs none (starting or ready) and no
/// placement puts one there.
pub fn considers_local_start(local: u32, running_here: u32, placed_here: u32) -> bool {
    local == 0 && running_here == 0 && placed_here == 0
}

/// Whether a node's report names more local starts of a revision than its previous one
/// (`before`, 0 when it named none): the control plane decides the revision's placement at
/// once, so that it counts them before the node's gateway sends anything elsewhere.
pub fn adopt_now(before: u32, now: u32) -> bool {
    now > before
}

/// What becomes of a node's local starts of a revision at one of its passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// A placement counts them: they are the control plane's now, and the node forgets them.
    Adopted,
    /// The control plane, reachable, had [`ADOPT_WITHIN`] to count them and did not: they
    /// follow its placement like any other instance (drained if it puts none there).
    Expired,
    /// Still the node's own, named in its reports.
    Kept,
}

/// Settles a node's `local` starts of a revision its placement puts `placed_here` of on the
/// node, `age` after they started (or after the control plane came back).
pub fn settle(placed_here: u32, local: u32, autonomous: bool, age: Duration) -> Settled {
    if placed_here >= local {
        Settled::Adopted
    } else if !autonomous && age > ADOPT_WITHIN {
        Settled::Expired
    } else {
        Settled::Kept
    }
}

/// What a node knows when a request for a revision without an instance reaches it.
#[derive(Clone, Copy, Debug)]
pub struct LocalView<'a> {
    /// The fleet as the node sees it (nodes in the fleet's order, the instances the
    /// placements it watches put on each, its own round trips to the others).
    pub fleet: &'a FleetView,
    /// The deciding node's index in `fleet`.
    pub node: usize,
    /// Instances of the revision on each node as the node knows them (placed, and on the
    /// node itself also those it started on its own).
    pub current: &'a [u32],
    /// Requests the node's gateway holds for the revision (its demand, requests per second
    /// as the policy reads it).
    pub held: u32,
    /// Whether the node cannot reach the control plane.
    pub autonomous: bool,
    /// Time since the driver's epoch.
    pub now: Duration,
}

/// Why a node does not start an instance on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The policy starts instances only where the control plane places them while it is
    /// reachable ([`LocalStarts::WhenAutonomous`]).
    PolicyWaits,
    /// Instances of the revision are placed: the control plane scales it.
    NotAtZero,
    /// The revision's max-scale is reached.
    MaxScale(u32),
    /// The node has no room for one more instance (instances, CPU or memory).
    NoRoom,
    /// The policy puts the next instance on another node (`None`: on none).
    PlacedElsewhere(Option<String>),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PolicyWaits => write!(
                f,
                "its placement policy starts instances only where the control plane places them while it is reachable"
            ),
            Refusal::NotAtZero => write!(
                f,
                "instances of it are placed already; the control plane scales it"
            ),
            Refusal::MaxScale(m) => write!(f, "its max-scale ({m}) is reached"),
            Refusal::NoRoom => write!(
                f,
                "this node has no room for another instance (instances, CPU or memory)"
            ),
            Refusal::PlacedElsewhere(Some(n)) => {
                write!(f, "its placement policy puts the next instance on {n}")
            }
            Refusal::PlacedElsewhere(None) => {
                write!(f, "its placement policy puts the next instance nowhere")
            }
        }
    }
}

/// The seed of a node's local decisions about a revision: the revision's placement seed
/// ([`seed`]) mixed with the node's name, so two nodes do not draw alike.
pub fn local_seed(namespace: &str, revision: &str, node: &str) -> u64 {
    seed(namespace, revision) ^ stable_hash(node.as_bytes()).rotate_left(17)
}

/// Whether the revision's placement policy lets a node start instances on its own at all
/// now: the first thing [`local_start`] checks, for drivers that would rather not build the
/// node's view for a policy that waits for the control plane. (A policy that waits is still
/// forced when the node is the only one with room, which only the view shows.)
pub fn policy_allows(settings: &RevisionSettings, autonomous: bool) -> bool {
    autonomous
        || placement_policy(&settings.placement, &settings.params).local_starts()
            != LocalStarts::WhenAutonomous
}

/// Whether the node may start instances of the revision on its own at all on this view: the
/// policy allows it ([`policy_allows`]) or the choice is forced (no other node the view knows
/// of is ready with room). The first thing [`local_start`] checks; the view's round trips
/// play no part, so a driver may ask it before it builds the node's own ones.
pub fn may_start_locally(settings: &RevisionSettings, view: &LocalView<'_>) -> bool {
    policy_allows(settings, view.autonomous) || only_node_with_room(settings, view)
}

/// Whether the node may start an instance of the revision now, by itself (`Ok`), or why not.
pub fn local_start(
    settings: &RevisionSettings,
    rng_seed: u64,
    view: &LocalView<'_>,
) -> Result<(), Refusal> {
    if !may_start_locally(settings, view) {
        return Err(Refusal::PolicyWaits);
    }
    let policy = placement_policy(&settings.placement, &settings.params);
    let mode = policy.local_starts();
    let total: u32 = view.current.iter().sum();
    if !view.autonomous && total > 0 {
        return Err(Refusal::NotAtZero);
    }
    let max = settings.scaling.max_scale;
    if max > 0 && total >= max {
        return Err(Refusal::MaxScale(max));
    }
    if !room_for_one(settings, view) {
        return Err(Refusal::NoRoom);
    }
    if mode == LocalStarts::WhenAutonomous {
        return Ok(());
    }
    let n = view.fleet.nodes.len();
    let demand: Vec<f64> = (0..n)
        .map(|i| {
            if i == view.node {
                f64::from(view.held.max(1))
            } else {
                0.0
            }
        })
        .collect();
    let serving = vec![None; n];
    let zeros = vec![0; n];
    let input = PlacementInput {
        fleet: view.fleet,
        revision: "",
        desired: total + 1,
        current: view.current,
        demand: &demand,
        serving_ms: &serving,
        in_flight: &zeros,
        queued: &zeros,
        resources: settings.resources,
        params: &settings.params,
        now: view.now,
    };
    let mut policy = policy;
    let mut rng = SmallRng::seed_from_u64(rng_seed);
    let decision = policy.place(&input, &mut rng);
    let here = |i: usize| decision.per_node.get(i).copied().unwrap_or(0);
    let had = |i: usize| view.current.get(i).copied().unwrap_or(0);
    if here(view.node) > had(view.node) {
        return Ok(());
    }
    let grew = (0..n)
        .find(|&i| here(i) > had(i))
        .and_then(|i| view.fleet.nodes.get(i))
        .map(|node| node.name.clone());
    Err(Refusal::PlacedElsewhere(grew))
}

/// Whether no other node the deciding node knows of could take an instance of the revision
/// (none ready with room): whatever the policy, the first instance can only go here, so the
/// control plane decides alike (a one-node fleet, or the only node left).
fn only_node_with_room(settings: &RevisionSettings, view: &LocalView<'_>) -> bool {
    let room = Room::new(&view.fleet.nodes, view.current, settings.resources);
    (0..view.fleet.nodes.len())
        .filter(|&i| i != view.node)
        .all(|i| !room.fits(i))
}

/// Whether the node has room for one more instance of the revision.
fn room_for_one(settings: &RevisionSettings, view: &LocalView<'_>) -> bool {
    let mut room = Room::new(&view.fleet.nodes, view.current, settings.resources);
    for _ in 0..view.current.get(view.node).copied().unwrap_or(0) {
        room.take(view.node);
    }
    room.fits(view.node)
}

/// How many instances of a revision an autonomous node runs for its own demand: the KPA's
/// `desired` (run on the node's own loads), within the revision's max-scale counting what
/// is placed on other nodes, and within the node's room. `view.current` counts the
/// node's own instances of the revision as they run now.
pub fn autonomous_count(settings: &RevisionSettings, view: &LocalView<'_>, desired: u32) -> u32 {
    let mine = view.current.get(view.node).copied().unwrap_or(0);
    let elsewhere: u32 = view.current.iter().sum::<u32>() - mine;
    let max = settings.scaling.max_scale;
    let allowed = if max > 0 {
        desired.min(max.saturating_sub(elsewhere))
    } else {
        desired
    };
    if allowed <= mine {
        return allowed;
    }
    let mut room = Room::new(&view.fleet.nodes, view.current, settings.resources);
    for _ in 0..mine {
        room.take(view.node);
    }
    let mut count = mine;
    while count < allowed && room.fits(view.node) {
        room.take(view.node);
        count += 1;
    }
    count
}
