//! `pack`: fill nodes in the fleet's order: add on the first node with room, remove from the
//! last node that has instances of the revision. Fewer nodes busy, the rest free (Hermod's
//! packing at low load).

use rand::Rng;

use super::{Placement, PlacementDecision, PlacementInput, Room, keep_current};

/// The `pack` policy.
#[derive(Clone, Debug, Default)]
pub struct Pack;

impl Placement for Pack {
    fn place(&mut self, input: &PlacementInput<'_>, _rng: &mut dyn Rng) -> PlacementDecision {
        let mut room = Room::new(&input.fleet.nodes, input.current, input.resources);
        let mut per_node = keep_current(input, &mut room);
        let n = per_node.len();
        let mut total: u32 = per_node.iter().sum();
        while total > input.desired {
            let Some(i) = (0..n).rev().find(|&i| per_node[i] > 0) else {
                break;
            };
            per_node[i] -= 1;
            room.give(i);
            total -= 1;
        }
        let mut unschedulable = 0;
        while total < input.desired {
            match (0..n).find(|&i| room.fits(i)) {
                Some(i) => {
                    per_node[i] += 1;
                    room.take(i);
                    total += 1;
                }
                None => {
                    unschedulable = input.desired - total;
                    break;
                }
            }
        }
        PlacementDecision {
            per_node,
            unschedulable,
        }
    }
}
