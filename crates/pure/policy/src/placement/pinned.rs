//! `pinned`: fixed per-node counts, like a Seika spec (`kantai.dev/pinned: node1=0,node3=1`).
//! The autoscaler's count is ignored; nodes not named run none. A pinned instance that does
//! not fit on its node (not ready, or full) is unschedulable: it is not moved elsewhere.

use rand::Rng;

use super::{LocalStarts, Placement, PlacementDecision, PlacementInput, Room};

/// The `pinned` policy.
#[derive(Clone, Debug, Default)]
pub struct Pinned;

impl Placement for Pinned {
    /// Its own placement keeps it to the named nodes, autonomous or not.
    fn local_starts(&self) -> LocalStarts {
        LocalStarts::WherePlaced
    }

    fn place(&mut self, input: &PlacementInput<'_>, _rng: &mut dyn Rng) -> PlacementDecision {
        let nodes = &input.fleet.nodes;
        let mut room = Room::new(nodes, input.current, input.resources);
        let mut per_node = vec![0; nodes.len()];
        let mut unschedulable = 0;
        for (name, want) in &input.params.pinned {
            let Some(i) = input.fleet.index_of(name) else {
                unschedulable += want;
                continue;
            };
            for _ in 0..*want {
                if room.fits(i) {
                    room.take(i);
                    per_node[i] += 1;
                } else {
                    unschedulable += 1;
                }
            }
        }
        PlacementDecision {
            per_node,
            unschedulable,
        }
    }
}
