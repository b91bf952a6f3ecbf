//! `spread`, the Knative-like default: keep what runs, add on the least-loaded node that has
//! room (fewest instances of any revision; ties go to the earlier node), remove from the node
//! holding the most of this revision (ties: the later node).
//!
//! A node starts an instance of it on its own only while autonomous (the trait's default):
//! its choice counts every node's instances, which a node sees only as last published.

use rand::Rng;

use super::{Placement, PlacementDecision, PlacementInput, one_at_a_time};

/// The `spread` policy.
#[derive(Clone, Debug, Default)]
pub struct Spread;

impl Placement for Spread {
    fn place(&mut self, input: &PlacementInput<'_>, _rng: &mut dyn Rng) -> PlacementDecision {
        least_loaded(input)
    }
}

/// The `spread` decision, for other policies to fall back on.
pub fn least_loaded(input: &PlacementInput<'_>) -> PlacementDecision {
    one_at_a_time(
        input,
        |per_node, _| {
            (0..per_node.len())
                .filter(|&i| per_node[i] > 0)
                .max_by_key(|&i| (per_node[i], i))
        },
        |per_node, room| {
            (0..per_node.len())
                .filter(|&i| room.fits(i))
                .min_by_key(|&i| (room.used(i), i))
        },
    )
}
