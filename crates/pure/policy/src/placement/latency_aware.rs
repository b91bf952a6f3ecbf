//! `latency-aware`: yukari (ikukantai's miporin scheduler) done right.
//!
//! The estimated response time of a request entering node *k* and served on node *j* is
//! R\[k\]\[j\] = P_j + D_kj: the serving time measured on *j* plus the round trip from *k* to
//! *j*. Each instance to add goes to the origin whose demand is least covered (requests per
//! second per instance at its best node), on the node *j* minimising R\[k\]\[j\] that has room,
//! spilling over to the next best when *j* is full. Instances to remove come from the node
//! with the least demand. Without any demand (a revision just created) it adds like `spread`.
//! Once demand is measured, an instance on a node that no demanded origin calls home moves,
//! one per decision, to an origin left without a near instance.
//!
//! Unlike yukari it checks capacity on the candidate node (not the origin), spills over
//! instead of dropping the instance, handles any number of nodes, namespaces and revisions,
//! and treats an unmeasured serving time as the average of the measured ones rather than 0.

use std::cmp::Ordering;

use rand::Rng;

use super::{LocalStarts, Placement, PlacementDecision, PlacementInput, Room, keep_current};

/// The `latency-aware` policy.
#[derive(Clone, Debug, Default)]
pub struct LatencyAware;

/// R\[k\]\[j\] in milliseconds: `None` when the round trip from `k` to `j` is unknown.
pub fn response_ms(input: &PlacementInput<'_>, k: usize, j: usize) -> Option<f64> {
    let d = input.fleet.rtt.get(k, j)?;
    Some(d + serving_or_mean(input.serving_ms, j))
}

/// The serving time measured on node `j`, or the mean of those measured (0 when none is).
pub fn serving_or_mean(serving_ms: &[Option<f64>], j: usize) -> f64 {
    if let Some(Some(p)) = serving_ms.get(j) {
        return *p;
    }
    let known: Vec<f64> = serving_ms.iter().flatten().copied().collect();
    if known.is_empty() {
        0.0
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    }
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.total_cmp(&b)
}

impl Placement for LatencyAware {
    /// The node a request enters is its own origin and the least round trip from itself:
    /// where the demand is, the control plane puts the instance too.
    fn local_starts(&self) -> LocalStarts {
        LocalStarts::WherePlaced
    }

    fn rebalances(&self) -> bool {
        true
    }

    fn place(&mut self, input: &PlacementInput<'_>, _rng: &mut dyn Rng) -> PlacementDecision {
        let n = input.fleet.nodes.len();
        let demand = |k: usize| input.demand.get(k).copied().unwrap_or(0.0).max(0.0);
        let total_demand: f64 = (0..n).map(demand).sum();
        if total_demand <= 0.0 {
            return super::least_loaded(input);
        }
        let mut room = Room::new(&input.fleet.nodes, input.current, input.resources);
        let mut per_node = keep_current(input, &mut room);
        let mut total: u32 = per_node.iter().sum();

        while total > input.desired {
            let Some(j) = (0..n).filter(|&j| per_node[j] > 0).min_by(|&a, &b| {
                cmp_f64(demand(a), demand(b))
                    .then(per_node[b].cmp(&per_node[a]))
                    .then(b.cmp(&a))
            }) else {
                break;
            };
            per_node[j] -= 1;
            room.give(j);
            total -= 1;
        }

        // Each origin's home: the ready node with the least R from it.
        let home: Vec<Option<usize>> = (0..n)
            .map(|k| {
                (0..n)
                    .filter(|&j| room.ready(j))
                    .map(|j| (j, response_ms(input, k, j).unwrap_or(f64::INFINITY)))
                    .min_by(|a, b| cmp_f64(a.1, b.1).then(a.0.cmp(&b.0)))
                    .map(|(j, _)| j)
            })
            .collect();
        let mut supply: Vec<u32> = (0..n).map(|k| home[k].map_or(0, |h| per_node[h])).collect();

        let mut unschedulable = 0;
        while total < input.desired {
            // The origin whose demand is least covered.
            let Some(k) = (0..n).filter(|&k| demand(k) > 0.0).max_by(|&a, &b| {
                cmp_f64(
                    demand(a) / f64::from(1 + supply[a]),
                    demand(b) / f64::from(1 + supply[b]),
                )
                .then(b.cmp(&a))
            }) else {
                break;
            };
            let best = (0..n)
                .filter(|&j| room.fits(j))
                // A node whose round trip is not measured yet comes last, not never.
                .map(|j| (j, response_ms(input, k, j).unwrap_or(f64::INFINITY)))
                .min_by(|a, b| {
                    cmp_f64(a.1, b.1)
                        .then(room.used(a.0).cmp(&room.used(b.0)))
                        .then(a.0.cmp(&b.0))
                });
            match best {
                Some((j, _)) => {
                    per_node[j] += 1;
                    room.take(j);
                    supply[k] += 1;
                    total += 1;
                }
                None => {
                    unschedulable = input.desired - total;
                    break;
                }
            }
        }
        if unschedulable == 0 {
            rebalance(input, &home, &mut per_node, &mut room, demand);
        }
        PlacementDecision {
            per_node,
            unschedulable,
        }
    }
}

/// At most one move per decision: an instance on a node that is no demanded origin's home
/// goes to an origin whose home has none, when that brings it closer. Instances placed before
/// any demand was measured (the initial scale) so drift to where requests come from, one
/// tick at a time, and a placement that serves every origin never moves.
fn rebalance(
    input: &PlacementInput<'_>,
    home: &[Option<usize>],
    per_node: &mut [u32],
    room: &mut Room,
    demand: impl Fn(usize) -> f64,
) {
    let n = per_node.len();
    let demanded: Vec<usize> = (0..n).filter(|&k| demand(k) > 0.0).collect();
    let is_home = |j: usize| demanded.iter().any(|&k| home[k] == Some(j));
    let Some(k) = demanded
        .iter()
        .copied()
        .filter(|&k| home[k].is_some_and(|h| per_node[h] == 0))
        .max_by(|&a, &b| cmp_f64(demand(a), demand(b)).then(b.cmp(&a)))
    else {
        return;
    };
    let Some(from) = (0..n)
        .filter(|&j| per_node[j] > 0 && !is_home(j))
        .min_by(|&a, &b| {
            cmp_f64(demand(a), demand(b))
                .then(per_node[b].cmp(&per_node[a]))
                .then(b.cmp(&a))
        })
    else {
        return;
    };
    let r = |j: usize| response_ms(input, k, j).unwrap_or(f64::INFINITY);
    room.give(from);
    let to = (0..n)
        .filter(|&j| j != from && room.fits(j))
        .min_by(|&a, &b| cmp_f64(r(a), r(b)).then(a.cmp(&b)));
    match to {
        Some(to) if r(to) < r(from) => {
            per_node[from] -= 1;
            per_node[to] += 1;
            room.take(to);
        }
        _ => room.take(from),
    }
}
