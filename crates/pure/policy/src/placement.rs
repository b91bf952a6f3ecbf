//! Splitting a revision's desired instance count over nodes.
//!
//! The default policy keeps what runs where it runs and only moves the difference: new
//! instances go to the least-loaded node that has room, removed ones come from the node with
//! the most instances of the revision. An instance that fits nowhere is counted as
//! unschedulable, never dropped silently.

/// What a node offers, as the control plane sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// Whether the node is healthy enough to host instances.
    pub ready: bool,
    /// Most instances it may run at once (`None`: unlimited).
    pub max_instances: Option<u32>,
    /// Instances of all revisions currently placed on it.
    pub instances: u32,
    /// CPU cores left for instances (`None`: not accounted).
    pub cpu_free: Option<f64>,
    /// Memory bytes left for instances (`None`: not accounted).
    pub memory_free: Option<f64>,
}

/// What one instance of the revision needs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Demand {
    /// CPU cores (0 when the revision declares none).
    pub cpu: f64,
    /// Memory bytes (0 when the revision declares none).
    pub memory: f64,
}

impl NodeState {
    fn fits(&self, d: Demand) -> bool {
        self.ready
            && self.max_instances.is_none_or(|m| self.instances < m)
            && self.cpu_free.is_none_or(|c| c + 1e-9 >= d.cpu)
            && self.memory_free.is_none_or(|m| m + 1e-9 >= d.memory)
    }

    fn take(&mut self, d: Demand) {
        self.instances += 1;
        if let Some(c) = &mut self.cpu_free {
            *c -= d.cpu;
        }
        if let Some(m) = &mut self.memory_free {
            *m -= d.memory;
        }
    }

    fn give(&mut self, d: Demand) {
        self.instances = self.instances.saturating_sub(1);
        if let Some(c) = &mut self.cpu_free {
            *c += d.cpu;
        }
        if let Some(m) = &mut self.memory_free {
            *m += d.memory;
        }
    }
}

/// The result of a placement decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Desired instances per node, in the order of the `nodes` argument.
    pub per_node: Vec<u32>,
    /// Instances that fit on no node.
    pub unschedulable: u32,
}

/// Knative-like default: keep current instances (on ready nodes), add on the least-loaded node
/// with room (fewest instances; ties go to the earlier node), remove from the node holding the
/// most of this revision (ties: the later node).
///
/// `current[i]` is how many instances of the revision node `i` is asked to run now; `nodes`
/// describes every node with those instances already counted.
pub fn least_loaded(
    desired: u32,
    current: &[u32],
    nodes: &[NodeState],
    demand: Demand,
) -> Decision {
    let mut nodes: Vec<NodeState> = nodes.to_vec();
    let mut per_node: Vec<u32> = (0..nodes.len())
        .map(|i| current.get(i).copied().unwrap_or(0))
        .collect();
    // Instances on nodes that can no longer host them are moved.
    for (i, n) in nodes.iter_mut().enumerate() {
        if !n.ready {
            for _ in 0..per_node[i] {
                n.give(demand);
            }
            per_node[i] = 0;
        }
    }
    let mut total: u32 = per_node.iter().sum();
    while total > desired {
        let Some(i) = (0..nodes.len())
            .filter(|&i| per_node[i] > 0)
            .max_by_key(|&i| (per_node[i], i))
        else {
            break;
        };
        per_node[i] -= 1;
        nodes[i].give(demand);
        total -= 1;
    }
    let mut unschedulable = 0;
    while total < desired {
        let best = (0..nodes.len())
            .filter(|&i| nodes[i].fits(demand))
            .min_by_key(|&i| (nodes[i].instances, i));
        match best {
            Some(i) => {
                per_node[i] += 1;
                nodes[i].take(demand);
                total += 1;
            }
            None => {
                unschedulable = desired - total;
                break;
            }
        }
    }
    Decision {
        per_node,
        unschedulable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, instances: u32, max: Option<u32>) -> NodeState {
        NodeState {
            name: name.into(),
            ready: true,
            max_instances: max,
            instances,
            cpu_free: None,
            memory_free: None,
        }
    }

    #[test]
    fn adds_on_the_least_loaded_node() {
        let nodes = [node("a", 3, None), node("b", 1, None), node("c", 1, None)];
        let d = least_loaded(2, &[0, 0, 0], &nodes, Demand::default());
        assert_eq!(d.per_node, [0, 1, 1]);
    }

    #[test]
    fn keeps_what_runs_and_removes_from_the_fullest() {
        let nodes = [node("a", 2, None), node("b", 1, None)];
        let d = least_loaded(2, &[2, 1], &nodes, Demand::default());
        assert_eq!(d.per_node, [1, 1]);
        let d = least_loaded(3, &[2, 1], &nodes, Demand::default());
        assert_eq!(d.per_node, [2, 1]);
    }

    #[test]
    fn reports_what_fits_nowhere() {
        let nodes = [node("a", 1, Some(2)), node("b", 2, Some(2))];
        let d = least_loaded(3, &[0, 0], &nodes, Demand::default());
        assert_eq!(d.per_node, [1, 0]);
        assert_eq!(d.unschedulable, 2);
    }

    #[test]
    fn resources_limit_placement() {
        let mut a = node("a", 0, None);
        a.cpu_free = Some(1.0);
        let d = least_loaded(
            3,
            &[0],
            &[a],
            Demand {
                cpu: 0.5,
                memory: 0.0,
            },
        );
        assert_eq!(d.per_node, [2]);
        assert_eq!(d.unschedulable, 1);
    }

    #[test]
    fn moves_instances_off_nodes_that_are_not_ready() {
        let mut a = node("a", 1, None);
        a.ready = false;
        let d = least_loaded(1, &[1, 0], &[a, node("b", 0, None)], Demand::default());
        assert_eq!(d.per_node, [0, 1]);
    }
}
