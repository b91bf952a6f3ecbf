//! The decision log's records: every placement and load-balancing decision with the inputs
//! it was made from and the choice, and the control plane's load reports and ticks, one JSON
//! object per line. Plain data: the driver core builds a placement's record from the very
//! input the policy saw, and `kantai-decisions` writes them (only drivers open a log).

use serde::{Deserialize, Serialize};

/// One decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Decision {
    /// The control plane split a revision's desired count over the nodes.
    Placement(Box<PlacementRecord>),
    /// A node's gateway chose an instance for a request (or held it).
    LoadBalance(Box<LoadBalanceRecord>),
    /// The control plane's scaler received a node's load report.
    Report(Box<ReportRecord>),
    /// A revision's autoscaler decided at a tick.
    Tick(Box<TickRecord>),
}

/// A node agent's load report as the scaler read it: with the ticks that follow, what a
/// run's scaling decisions can be replayed from (each driver's scaler fed the same stream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportRecord {
    /// When (RFC 3339).
    pub time: String,
    /// Nanoseconds since the scaling loop started (the scaler's clock, exactly).
    pub ns: u64,
    /// The reporting node.
    pub node: String,
    /// Whether the node reported at once because load reached a revision at zero.
    pub poke: bool,
    /// The node's load of each revision.
    pub revisions: Vec<ReportLoad>,
    /// The instances the node started on its own that no placement counts yet, as the
    /// report named them (absent from older logs: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<LocalStarts>,
}

/// Instances of one revision a node started on its own: in its reports to the control
/// plane, and in the decision log's records of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalStarts {
    /// Namespace.
    pub namespace: String,
    /// Revision.
    pub revision: String,
    /// Instances started (or starting) on the node that no placement counts yet.
    pub count: u32,
}

/// One revision's load in a [`ReportRecord`] (the fields of the driver core's `NodeLoad`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportLoad {
    /// Namespace.
    pub namespace: String,
    /// Revision.
    pub revision: String,
    /// Average requests in flight through the node's gateway.
    pub concurrency: f64,
    /// Requests per second entering the node.
    pub requests: f64,
    /// Requests the node's gateway holds for want of an instance.
    pub held: u32,
    /// Requests the revision's instances on the node answered.
    pub served: u64,
    /// Their average serving time, in ms.
    pub serving_ms: f64,
    /// Requests in the revision's instances on the node now.
    pub in_flight: u32,
    /// Requests waiting for a slot of those instances now.
    pub queued: u32,
}

/// A revision's autoscaler decision at one tick, and the ready count it was made with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TickRecord {
    /// When (RFC 3339).
    pub time: String,
    /// Nanoseconds since the scaling loop started (the scaler's clock, exactly).
    pub ns: u64,
    /// Namespace.
    pub namespace: String,
    /// Revision.
    pub revision: String,
    /// Ready instances the tick was given.
    pub ready: u32,
    /// The desired count.
    pub desired: u32,
    /// Whether the KPA is in panic mode.
    pub panic: bool,
    /// Whether requests go through the activator role.
    pub activator_in_path: bool,
}

/// A placement decision and everything it was decided from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlacementRecord {
    /// When (RFC 3339).
    pub time: String,
    /// Seconds since the deciding process started (the policy's clock).
    pub t: f64,
    /// Namespace.
    pub namespace: String,
    /// Revision.
    pub revision: String,
    /// The policy.
    pub policy: String,
    /// Its `kantai.dev/*` annotations (the parameters).
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Node names, in the order of every per-node list below.
    pub nodes: Vec<String>,
    /// Whether each node was ready.
    pub ready: Vec<bool>,
    /// Each node's instance limit (`None`: unlimited).
    pub max_instances: Vec<Option<u32>>,
    /// Instances of every revision on each node (this one's current included).
    pub instances: Vec<u32>,
    /// CPU cores and memory bytes available on each node (`None`: not accounted).
    pub cpu: Vec<Option<f64>>,
    /// Memory bytes available on each node.
    pub memory: Vec<Option<f64>>,
    /// CPU cores used on each node.
    pub cpu_used: Vec<f64>,
    /// Memory bytes used on each node.
    pub memory_used: Vec<f64>,
    /// What one instance asks for: CPU cores and memory bytes.
    pub resources: (f64, f64),
    /// Round trips between nodes in ms (`rtt_ms[i][j]`, `None`: not measured).
    pub rtt_ms: Vec<Vec<Option<f64>>>,
    /// The autoscaler's desired count.
    pub desired: u32,
    /// This revision's instances per node before the decision.
    pub current: Vec<u32>,
    /// Requests per second entering each node.
    pub demand: Vec<f64>,
    /// Serving time on each node in ms.
    pub serving_ms: Vec<Option<f64>>,
    /// Requests in this revision's instances on each node.
    #[serde(default)]
    pub in_flight: Vec<u32>,
    /// Requests waiting for a slot of this revision's instances on each node.
    #[serde(default)]
    pub queued: Vec<u32>,
    /// The decision: instances per node.
    pub choice: Vec<u32>,
    /// Instances that fit nowhere.
    pub unschedulable: u32,
    /// Why the decision is not the policy's own: the plug-in's call failed and the default
    /// placement decided (absent when the policy decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl PlacementRecord {
    /// The fleet the policy saw (nodes, capacity, what ran on them, round trips), rebuilt
    /// from the record: what a replay of the decision decides on.
    pub fn fleet(&self) -> kantai_policy::FleetView {
        let n = self.nodes.len();
        let at = |v: &[Option<f64>], i: usize| v.get(i).copied().flatten();
        let nodes = (0..n)
            .map(|i| kantai_policy::NodeView {
                name: self.nodes[i].clone(),
                ready: self.ready.get(i).copied().unwrap_or(false),
                max_instances: self.max_instances.get(i).copied().flatten(),
                cpu: at(&self.cpu, i),
                memory: at(&self.memory, i),
                instances: self.instances.get(i).copied().unwrap_or(0),
                cpu_used: self.cpu_used.get(i).copied().unwrap_or(0.0),
                memory_used: self.memory_used.get(i).copied().unwrap_or(0.0),
                ..kantai_policy::NodeView::default()
            })
            .collect();
        let mut rtt = kantai_policy::RttMatrix::new(n);
        for (i, row) in self.rtt_ms.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                if let Some(ms) = v {
                    rtt.set(i, j, *ms);
                }
            }
        }
        kantai_policy::FleetView { nodes, rtt }
    }

    /// The record of a placement: every input the policy saw, and its decision. `time` is
    /// the driver's clock as RFC 3339 (the simulator's virtual one, the fleet's wall clock).
    pub fn new(
        input: &kantai_policy::PlacementInput<'_>,
        policy: &str,
        params: &kantai_policy::Params,
        decision: &kantai_policy::PlacementDecision,
        namespace: &str,
        time: String,
    ) -> PlacementRecord {
        let nodes = &input.fleet.nodes;
        let n = nodes.len();
        PlacementRecord {
            time,
            t: input.now.as_secs_f64(),
            namespace: namespace.to_owned(),
            revision: input.revision.to_owned(),
            policy: policy.to_owned(),
            annotations: params.to_annotations(),
            nodes: nodes.iter().map(|v| v.name.clone()).collect(),
            ready: nodes.iter().map(|v| v.ready).collect(),
            max_instances: nodes.iter().map(|v| v.max_instances).collect(),
            instances: nodes.iter().map(|v| v.instances).collect(),
            cpu: nodes.iter().map(|v| v.cpu).collect(),
            memory: nodes.iter().map(|v| v.memory).collect(),
            cpu_used: nodes.iter().map(|v| v.cpu_used).collect(),
            memory_used: nodes.iter().map(|v| v.memory_used).collect(),
            resources: (input.resources.cpu, input.resources.memory),
            rtt_ms: (0..n).map(|i| input.fleet.rtt.row(i)).collect(),
            desired: input.desired,
            current: input.current.to_vec(),
            demand: input.demand.to_vec(),
            // A driver may pass fewer entries than nodes (none measured beyond).
            serving_ms: (0..n)
                .map(|i| input.serving_ms.get(i).copied().flatten())
                .collect(),
            in_flight: input.in_flight.to_vec(),
            queued: input.queued.to_vec(),
            choice: decision.per_node.clone(),
            unschedulable: decision.unschedulable,
            fallback: None,
        }
    }
}

/// A load-balancing decision and what it was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadBalanceRecord {
    /// When (RFC 3339).
    pub time: String,
    /// Seconds since the deciding process started (the policy's clock).
    pub t: f64,
    /// The node the request entered.
    pub node: String,
    /// Namespace.
    pub namespace: String,
    /// Revision.
    pub revision: String,
    /// The balancer.
    pub policy: String,
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The candidates: instance, node, in flight, capacity.
    pub candidates: Vec<(String, String, u32, u32)>,
    /// Round trip from this node to each node of `nodes`, in ms.
    pub rtt_ms: Vec<Option<f64>>,
    /// Serving time on each node of `nodes`, in ms.
    pub serving_ms: Vec<Option<f64>>,
    /// Node names, in the order of `rtt_ms` and `serving_ms`.
    pub nodes: Vec<String>,
    /// The chosen instance (`None`: held, no instance had room).
    pub choice: Option<String>,
}

/// Reads a decision log; each line's problem is reported with its line number.
pub fn read(text: &str) -> Result<Vec<Decision>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Decision>(l)
                .map_err(|e| format!("line {}: not a decision record: {e}", i + 1))
        })
        .collect()
}
