//! `faast`: the FaaSt paper's balancer (Nguyen, Dao et al., IEEE CloudNet 2024; ikukantai's
//! katyusha with miporin's weights).
//!
//! For a request entering node *i*, node *j* is chosen with probability
//! w_ij ∝ 1 / (P_j + D_ij) over the nodes that have ready instances, where P_j is the serving
//! time measured on *j* and D_ij the round trip; the weights are recomputed every 2 s (or when
//! the set of nodes changes). Inside node *j* instances take turns (round robin). When the
//! drawn node has no instance with room, the draw is repeated over the nodes that do.
//!
//! Unlike miporin it keeps weights as real numbers (no integer percentages, no 1 % floor),
//! treats an unmeasured serving time as the mean of the measured ones rather than 0 (which
//! gave such nodes almost all the weight), and an unmeasured round trip as the largest
//! measured one.

use std::time::Duration;

use rand::{Rng, RngExt};

use super::{Candidate, LbContext, LoadBalancer};
use crate::placement::serving_or_mean;
use crate::request::RequestInfo;

/// How often the weights are recomputed, as in the paper.
pub const RECOMPUTE: Duration = Duration::from_secs(2);
/// The smallest response time a weight is computed from (miporin's floor), in ms.
pub const FLOOR_MS: f64 = 0.1;

/// The `faast` balancer.
#[derive(Clone, Debug, Default)]
pub struct Faast {
    /// Node indices with instances, when the weights were computed.
    nodes: Vec<usize>,
    /// The weight of each of those nodes (summing to 1).
    weights: Vec<f64>,
    computed: Option<Duration>,
    /// Round-robin position per node.
    next: Vec<usize>,
}

/// The paper's weights from the origin in `ctx` to each of `nodes` (summing to 1).
pub fn faast_weights(nodes: &[usize], ctx: &LbContext<'_>) -> Vec<f64> {
    let worst_rtt = ctx.rtt_ms.iter().flatten().copied().fold(0.0f64, f64::max);
    let inv: Vec<f64> = nodes
        .iter()
        .map(|&j| {
            let d = ctx.rtt(j).unwrap_or(worst_rtt);
            let p = serving_or_mean(ctx.serving_ms, j);
            1.0 / (p + d).max(FLOOR_MS)
        })
        .collect();
    let sum: f64 = inv.iter().sum();
    inv.iter().map(|w| w / sum).collect()
}

impl Faast {
    /// The current weight of node `j` (0 when it has no instances).
    pub fn weight(&self, j: usize) -> f64 {
        self.nodes
            .iter()
            .position(|&n| n == j)
            .map_or(0.0, |i| self.weights[i])
    }

    fn refresh(&mut self, candidates: &[Candidate], ctx: &LbContext<'_>) {
        let mut nodes: Vec<usize> = candidates.iter().map(|c| c.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let due = self
            .computed
            .is_none_or(|t| ctx.now.saturating_sub(t) >= RECOMPUTE);
        if due || nodes != self.nodes {
            self.weights = faast_weights(&nodes, ctx);
            self.nodes = nodes;
            self.computed = Some(ctx.now);
        }
    }
}

impl LoadBalancer for Faast {
    fn pick(
        &mut self,
        _req: &dyn RequestInfo,
        candidates: &[Candidate],
        ctx: &LbContext<'_>,
        rng: &mut dyn Rng,
    ) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        self.refresh(candidates, ctx);
        // Nodes with an instance that has room, and their weights.
        let open: Vec<(usize, f64)> = self
            .nodes
            .iter()
            .zip(&self.weights)
            .filter(|(j, _)| candidates.iter().any(|c| c.node == **j && c.has_room()))
            .map(|(j, w)| (*j, *w))
            .collect();
        let total: f64 = open.iter().map(|(_, w)| w).sum();
        if open.is_empty() || total <= 0.0 {
            return None;
        }
        let mut x = rng.random::<f64>() * total;
        let mut node = open[open.len() - 1].0;
        for (j, w) in &open {
            if x < *w {
                node = *j;
                break;
            }
            x -= w;
        }
        if self.next.len() <= node {
            self.next.resize(node + 1, 0);
        }
        let on_node: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.node == node)
            .map(|(i, _)| i)
            .collect();
        let n = on_node.len();
        let start = self.next[node] % n;
        let found = (0..n)
            .map(|k| on_node[(start + k) % n])
            .find(|&i| candidates[i].has_room())?;
        self.next[node] = on_node.iter().position(|&i| i == found).unwrap_or(0) + 1;
        Some(found)
    }
}
