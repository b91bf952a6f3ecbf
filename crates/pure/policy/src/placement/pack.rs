//! `pack`: fill nodes in the fleet's order: add on the first node with room, remove from the
//! last node that has instances of the revision. Fewer nodes busy, the rest free (Hermod's
//! packing at low load).
//!
//! A node starts an instance of it on its own only while autonomous (the trait's default):
//! its choice counts every node's instances, which a node sees only as last published.

use rand::Rng;

use super::{Placement, PlacementDecision, PlacementInput, one_at_a_time};

/// The `pack` policy.
#[derive(Clone, Debug, Default)]
pub struct Pack;

impl Placement for Pack {
    fn place(&mut self, input: &PlacementInput<'_>, _rng: &mut dyn Rng) -> PlacementDecision {
        one_at_a_time(
            input,
            |per_node, _| (0..per_node.len()).rev().find(|&i| per_node[i] > 0),
            |per_node, room| (0..per_node.len()).find(|&i| room.fits(i)),
        )
    }
}
