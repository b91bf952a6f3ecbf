//! The read-only view of the fleet every policy decides on: nodes with their capacity and
//! load, and the measured round trips between them. Node indices are the topology's order
//! and index every per-node slice a policy receives.

use std::collections::BTreeMap;

/// One node as the policies see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Labels such as `tier: edge`.
    pub labels: BTreeMap<String, String>,
    /// Whether the node is healthy enough to host instances.
    pub ready: bool,
    /// Most instances it may run at once (`None`: unlimited).
    pub max_instances: Option<u32>,
    /// CPU cores available to instances (`None`: not accounted).
    pub cpu: Option<f64>,
    /// Memory bytes available to instances (`None`: not accounted).
    pub memory: Option<f64>,
    /// Instances of every revision placed on it.
    pub instances: u32,
    /// CPU cores those instances asked for.
    pub cpu_used: f64,
    /// Memory bytes those instances asked for.
    pub memory_used: f64,
}

/// Measured round-trip times between nodes, in milliseconds. Unknown pairs are `None`; a
/// node's round trip to itself is 0; a pair measured in one direction only is assumed
/// symmetric.
///
/// Large fleets are described by groups (sites): nodes of a group share their round trips
/// to every other node ([`RttMatrix::grouped`]), so 10,000 nodes in 100 sites cost a
/// 100×100 matrix instead of a 10,000×10,000 one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RttMatrix {
    n: usize,
    /// Row-major `n`×`n` (dense) or `g`×`g` (grouped) milliseconds, NaN when unknown.
    ms: Vec<f64>,
    /// Each node's group, when grouped.
    groups: Option<Groups>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Groups {
    of: Vec<u32>,
    count: usize,
}

impl RttMatrix {
    /// An `n`×`n` matrix with nothing measured.
    pub fn new(n: usize) -> RttMatrix {
        RttMatrix {
            n,
            ms: vec![f64::NAN; n * n],
            groups: None,
        }
    }

    /// A matrix over nodes in groups: `group_of[i]` is node `i`'s group (below `groups`);
    /// [`RttMatrix::set`] then takes group indices, and the round trip between two nodes is
    /// their groups' (between two nodes of one group: that group's own entry, `set(g, g)`).
    pub fn grouped(group_of: Vec<u32>, groups: usize) -> RttMatrix {
        RttMatrix {
            n: group_of.len(),
            ms: vec![f64::NAN; groups * groups],
            groups: Some(Groups {
                of: group_of,
                count: groups,
            }),
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the matrix has no nodes.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Records the round trip from node `from` to node `to` (groups, when grouped); ignored
    /// out of range or if not a finite, non-negative number.
    pub fn set(&mut self, from: usize, to: usize, ms: f64) {
        let side = self.side();
        if from < side && to < side && ms.is_finite() && ms >= 0.0 {
            self.ms[from * side + to] = ms;
        }
    }

    fn side(&self) -> usize {
        self.groups.as_ref().map_or(self.n, |g| g.count)
    }

    /// The round trip from `from` to `to` in milliseconds, if known.
    pub fn get(&self, from: usize, to: usize) -> Option<f64> {
        if from == to {
            return Some(0.0);
        }
        if from >= self.n || to >= self.n {
            return None;
        }
        let (a, b, side) = match &self.groups {
            Some(g) => (g.of[from] as usize, g.of[to] as usize, g.count),
            None => (from, to, self.n),
        };
        let v = self.ms.get(a * side + b).copied().unwrap_or(f64::NAN);
        let v = if v.is_nan() {
            self.ms.get(b * side + a).copied().unwrap_or(f64::NAN)
        } else {
            v
        };
        (!v.is_nan()).then_some(v)
    }

    /// The matrix as groups: each node's group, the number of groups and the row-major
    /// groups×groups milliseconds (NaN: unknown). Without groups, node `i` is group `i`.
    pub fn as_groups(&self) -> (Vec<u32>, usize, &[f64]) {
        match &self.groups {
            Some(g) => (g.of.clone(), g.count, &self.ms),
            None => ((0..self.n as u32).collect(), self.n, &self.ms),
        }
    }

    /// The row of `from`: the round trip to every node.
    pub fn row(&self, from: usize) -> Vec<Option<f64>> {
        (0..self.n).map(|to| self.get(from, to)).collect()
    }
}

/// The fleet: nodes in topology order and the round trips between them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetView {
    /// The nodes; their positions are the node indices.
    pub nodes: Vec<NodeView>,
    /// Round trips between the nodes.
    pub rtt: RttMatrix,
}

impl FleetView {
    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// What one instance of a revision asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resources {
    /// CPU cores (0 when the revision declares none).
    pub cpu: f64,
    /// Memory bytes (0 when the revision declares none).
    pub memory: f64,
}
