//! `spread`, the Knative-like default: keep what runs, add on the least-loaded node that has
//! room (fewest instances of any revision; ties go to the earlier node), remove from the node
//! holding the most of this revision (ties: the later node).

use rand::Rng;

use super::{Placement, PlacementDecision, PlacementInput, Room, keep_current};

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
    let mut room = Room::new(&input.fleet.nodes, input.current, input.resources);
    let mut per_node = keep_current(input, &mut room);
    let n = per_node.len();
    let mut total: u32 = per_node.iter().sum();
    while total > input.desired {
        let Some(i) = (0..n)
            .filter(|&i| per_node[i] > 0)
            .max_by_key(|&i| (per_node[i], i))
        else {
            break;
        };
        per_node[i] -= 1;
        room.give(i);
        total -= 1;
    }
    let mut unschedulable = 0;
    while total < input.desired {
        match (0..n)
            .filter(|&i| room.fits(i))
            .min_by_key(|&i| (room.used(i), i))
        {
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
