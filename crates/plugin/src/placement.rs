//! A plug-in placement policy behind [`Placement`].

use kantai_policy::Params;
use kantai_policy::placement::{LocalStarts, Placement, PlacementDecision, PlacementInput};
use kantai_policy::rand::Rng;
use kantai_policy::registry::{self, Kind};

use crate::bindings::placement::exports::kantai::policy::placement as wit;
use crate::bindings::{nanos, resources_of};
use crate::fallback::Reason;
use crate::sandbox::{Bindings, Plugin, Value};

/// A revision's placement in a plug-in; the default placement answers for it when it
/// cannot.
struct Placing {
    value: Value,
    /// What the guest said once, when made (the trait asks without `&mut`).
    rebalances: bool,
    local_starts: LocalStarts,
    fallback: Box<dyn Placement>,
    /// Why the last decision was the default's, for the decision log.
    fell_back: Option<String>,
}

fn guest(b: &Bindings) -> &wit::Guest {
    match b {
        Bindings::Placement(b) => b.kantai_policy_placement(),
        _ => unreachable!("a placement plug-in has placement bindings"),
    }
}

impl Plugin {
    /// A placement policy of this plug-in (which must be one).
    pub(crate) fn placement(&self, params: &Params) -> Box<dyn Placement> {
        let mut value = Value::new(&self.shared, params);
        let fuel = value.limits().fuel.per_request;
        let fallback = registry::placement(Kind::Placement.default_name(), params)
            .unwrap_or_else(|| unreachable!("the default placement is built in"));
        let rebalances = value
            .call(fuel, 0, |b, s, h| guest(b).call_rebalances(s, h))
            .unwrap_or(fallback.rebalances());
        let local_starts = match value.call(fuel, 0, |b, s, h| guest(b).call_local_starts(s, h)) {
            Some(wit::LocalStartRule::WherePlaced) => LocalStarts::WherePlaced,
            Some(wit::LocalStartRule::WhenAutonomous) => LocalStarts::WhenAutonomous,
            None => fallback.local_starts(),
        };
        Box::new(Placing {
            value,
            rebalances,
            local_starts,
            fallback,
            fell_back: None,
        })
    }
}

impl Placement for Placing {
    fn place(&mut self, input: &PlacementInput<'_>, rng: &mut dyn Rng) -> PlacementDecision {
        self.value.take_fallback();
        self.fell_back = None;
        if self.value.is_live() {
            let nodes: Vec<wit::Node> = input
                .fleet
                .nodes
                .iter()
                .map(|n| wit::Node {
                    name: n.name.clone(),
                    labels: n
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    ready: n.ready,
                    max_instances: n.max_instances,
                    cpu: n.cpu,
                    memory: n.memory,
                    instances: n.instances,
                    cpu_used: n.cpu_used,
                    memory_used: n.memory_used,
                })
                .collect();
            let (group_of, groups, ms) = input.fleet.rtt.as_groups();
            let rtt = wit::RttMatrix {
                group_of,
                groups: groups as u32,
                ms: ms.to_vec(),
            };
            let wit_input = wit::Input {
                revision: input.revision.to_owned(),
                desired: input.desired,
                current: input.current.to_vec(),
                demand: input.demand.to_vec(),
                serving_ms: input.serving_ms.to_vec(),
                in_flight: input.in_flight.to_vec(),
                queued: input.queued.to_vec(),
                resources: resources_of(input.resources),
                now: nanos(input.now),
            };
            let fuel = self.value.limits().fuel.per_tick;
            let answer = self.value.call(fuel, self.value.seed(rng), |b, s, h| {
                guest(b).call_place(s, h, &nodes, &rtt, &wit_input)
            });
            if let Some(d) = answer {
                match check(&d, input) {
                    Ok(()) => {
                        return PlacementDecision {
                            per_node: d.per_node,
                            unschedulable: d.unschedulable,
                        };
                    }
                    Err(why) => self.value.fell_back(&Reason::OutOfRange(why)),
                }
            }
        }
        let default = Kind::Placement.default_name();
        self.fell_back = Some(match self.value.take_fallback() {
            Some(reason) => format!("the plug-in {reason}; {default} decided"),
            None => format!("the plug-in stopped after an earlier failure; {default} decided"),
        });
        self.fallback.place(input, rng)
    }

    fn fallback(&self) -> Option<String> {
        self.fell_back.clone()
    }

    fn rebalances(&self) -> bool {
        self.rebalances
    }

    fn local_starts(&self) -> LocalStarts {
        self.local_starts
    }
}

/// Whether a decision fits the fleet: a count per node, none over a node's maximum.
fn check(d: &wit::Decision, input: &PlacementInput<'_>) -> Result<(), String> {
    let nodes = &input.fleet.nodes;
    if d.per_node.len() != nodes.len() {
        return Err(format!(
            "placed on {} nodes of a fleet of {}",
            d.per_node.len(),
            nodes.len()
        ));
    }
    for (n, (&count, node)) in d.per_node.iter().zip(nodes).enumerate() {
        if let Some(max) = node.max_instances
            && count > max
        {
            return Err(format!(
                "placed {count} instances on node {n} ({}), which runs at most {max}",
                node.name
            ));
        }
    }
    Ok(())
}
