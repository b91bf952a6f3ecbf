//! Placement: how many instances of a revision each node runs.
//!
//! The control plane calls a [`Placement`] every autoscaler tick with the autoscaler's
//! desired count and what it measured. A policy keeps what runs where it runs unless it has
//! a reason to move it, respects every node's capacity, and counts an instance that fits
//! nowhere as unschedulable instead of dropping it.

mod latency_aware;
mod pack;
mod pinned;
mod spread;

use std::time::Duration;

use rand::Rng;

pub use latency_aware::{LatencyAware, response_ms, serving_or_mean};
pub use pack::Pack;
pub use pinned::Pinned;
pub use spread::{Spread, least_loaded};

use crate::fleet::{FleetView, NodeView, Resources};
use crate::params::Params;

/// Everything a placement policy decides on. Slices are indexed by node (the fleet's order).
#[derive(Clone, Copy, Debug)]
pub struct PlacementInput<'a> {
    /// The fleet, with every revision's instances counted (this one's included).
    pub fleet: &'a FleetView,
    /// The revision being placed.
    pub revision: &'a str,
    /// Instances the autoscaler wants in total.
    pub desired: u32,
    /// Instances of this revision each node is asked to run now.
    pub current: &'a [u32],
    /// Requests per second of this revision entering each node (the per-origin demand).
    pub demand: &'a [f64],
    /// Average time an instance on each node takes to serve a request, in ms (`None`:
    /// nothing measured there).
    pub serving_ms: &'a [Option<f64>],
    /// Requests in this revision's instances on each node now (being served).
    pub in_flight: &'a [u32],
    /// Requests waiting for a slot of this revision's instances on each node now.
    pub queued: &'a [u32],
    /// What one instance asks for.
    pub resources: Resources,
    /// The revision's policy parameters.
    pub params: &'a Params,
    /// Time since the driver's epoch.
    pub now: Duration,
}

/// A placement decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementDecision {
    /// Desired instances per node.
    pub per_node: Vec<u32>,
    /// Instances that fit on no node.
    pub unschedulable: u32,
}

/// A placement policy. One value per revision, so a policy may keep state between calls.
pub trait Placement: Send {
    /// Decides each node's desired instances of the revision.
    fn place(&mut self, input: &PlacementInput<'_>, rng: &mut dyn Rng) -> PlacementDecision;

    /// Whether the policy may move instances while the desired count stays the same (from
    /// measured demand, say). A policy that does not (the default) keeps its placement until
    /// the desired count or the nodes change, so a driver may skip calling it in between:
    /// the simulator does, to place 1,000 revisions over 10,000 nodes every tick.
    fn rebalances(&self) -> bool {
        false
    }

    /// When a node may start an instance of the revision on its own, at once, before the
    /// control plane places it (a request reached the node and no instance serves it). The
    /// default, [`LocalStarts::WhenAutonomous`], is right for a policy whose choice depends
    /// on fleet-wide counts a node sees only as last published: a start decided on that view
    /// would be undone by the control plane's next placement (a flap).
    fn local_starts(&self) -> LocalStarts {
        LocalStarts::WhenAutonomous
    }

    /// Why the last decision was not the policy's own (a plug-in whose call failed, and
    /// whose plug point's default decided instead), for the decision log; `None` for every
    /// built-in.
    fn fallback(&self) -> Option<String> {
        None
    }
}

/// When a node may start an instance on its own (see [`Placement::local_starts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalStarts {
    /// Whenever the policy, run on the node's own view with one instance more, puts that
    /// instance on the node: its choice follows from what the node itself sees (where the
    /// demand enters, its round trips, a fixed pin), so the control plane decides alike.
    WherePlaced,
    /// Only while the node cannot reach the control plane; then anywhere with room, within
    /// the revision's max-scale.
    WhenAutonomous,
}

/// Room left on each node for this revision, for policies that add and remove one instance
/// at a time. Starts from the fleet with this revision's current instances taken out.
#[derive(Clone, Debug)]
pub struct Room {
    nodes: Vec<Slot>,
    resources: Resources,
}

#[derive(Clone, Debug)]
struct Slot {
    ready: bool,
    max: Option<u32>,
    used: u32,
    cpu_free: Option<f64>,
    memory_free: Option<f64>,
}

impl Room {
    /// The room on every node once this revision's `current` instances are counted out.
    pub fn new(nodes: &[NodeView], current: &[u32], resources: Resources) -> Room {
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mine = current.get(i).copied().unwrap_or(0);
                Slot {
                    ready: n.ready,
                    max: n.max_instances,
                    used: n.instances.saturating_sub(mine),
                    cpu_free: n
                        .cpu
                        .map(|c| c - (n.cpu_used - resources.cpu * f64::from(mine)).max(0.0)),
                    memory_free: n
                        .memory
                        .map(|m| m - (n.memory_used - resources.memory * f64::from(mine)).max(0.0)),
                }
            })
            .collect();
        Room { nodes, resources }
    }

    /// Whether node `i` takes one more instance.
    pub fn fits(&self, i: usize) -> bool {
        let d = self.resources;
        self.nodes.get(i).is_some_and(|n| {
            n.ready
                && n.max.is_none_or(|m| n.used < m)
                && n.cpu_free.is_none_or(|c| c + 1e-9 >= d.cpu)
                && n.memory_free.is_none_or(|m| m + 1e-9 >= d.memory)
        })
    }

    /// Whether node `i` is ready.
    pub fn ready(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.ready)
    }

    /// Instances of every revision on node `i`, as placed so far.
    pub fn used(&self, i: usize) -> u32 {
        self.nodes.get(i).map_or(0, |n| n.used)
    }

    /// Counts one more instance on node `i`.
    pub fn take(&mut self, i: usize) {
        let d = self.resources;
        if let Some(n) = self.nodes.get_mut(i) {
            n.used += 1;
            if let Some(c) = &mut n.cpu_free {
                *c -= d.cpu;
            }
            if let Some(m) = &mut n.memory_free {
                *m -= d.memory;
            }
        }
    }

    /// Counts one instance fewer on node `i`.
    pub fn give(&mut self, i: usize) {
        let d = self.resources;
        if let Some(n) = self.nodes.get_mut(i) {
            n.used = n.used.saturating_sub(1);
            if let Some(c) = &mut n.cpu_free {
                *c += d.cpu;
            }
            if let Some(m) = &mut n.memory_free {
                *m += d.memory;
            }
        }
    }
}

/// The common frame of incremental policies: keep current instances on ready nodes (taking
/// them into `room`), drop those on nodes that are not ready, and return the counts.
pub fn keep_current(input: &PlacementInput<'_>, room: &mut Room) -> Vec<u32> {
    (0..input.fleet.nodes.len())
        .map(|i| {
            let c = input.current.get(i).copied().unwrap_or(0);
            if room.ready(i) {
                for _ in 0..c {
                    room.take(i);
                }
                c
            } else {
                0
            }
        })
        .collect()
}

/// The whole frame of a policy that moves one instance at a time: keep the current instances
/// (`keep_current`), then remove one at a time from the node `remove_from` names until no more
/// than `desired` remain, then add one at a time on the node `add_to` names until `desired` are
/// placed; what no node takes is unschedulable. Both choosers see the counts so far and the
/// room left.
pub fn one_at_a_time(
    input: &PlacementInput<'_>,
    remove_from: impl Fn(&[u32], &Room) -> Option<usize>,
    add_to: impl Fn(&[u32], &Room) -> Option<usize>,
) -> PlacementDecision {
    let mut room = Room::new(&input.fleet.nodes, input.current, input.resources);
    let mut per_node = keep_current(input, &mut room);
    let mut total: u32 = per_node.iter().sum();
    while total > input.desired {
        let Some(i) = remove_from(&per_node, &room) else {
            break;
        };
        per_node[i] -= 1;
        room.give(i);
        total -= 1;
    }
    let mut unschedulable = 0;
    while total < input.desired {
        let Some(i) = add_to(&per_node, &room) else {
            unschedulable = input.desired - total;
            break;
        };
        per_node[i] += 1;
        room.take(i);
        total += 1;
    }
    PlacementDecision {
        per_node,
        unschedulable,
    }
}
