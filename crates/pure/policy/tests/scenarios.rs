//! Data-driven tests of every built-in policy. Each file under `tests/data/placement`,
//! `tests/data/lb`, `tests/data/queue` and `tests/data/keepalive` names one policy, which is built by that name
//! through `kantai_policy::registry` (never by type), and gives hand-made snapshots with the
//! decisions expected from them; its `description` says why those decisions are right. The
//! format is described in `tests/data/README.md`.
//!
//! A failure names the file, the step and what differed; every file runs even when an
//! earlier one fails. Every registered name of each kind must be covered by a file.

// Tests are a driver of the pure crate: reading scenario files is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use kantai_plugin::Limits;
use kantai_policy::queue::Admission;
use kantai_policy::registry::{self, Kind};
use kantai_policy::{
    Candidate, FleetView, Hold, Idleness, KeepAliveInput, LbContext, NodeView, Params,
    PlacementInput, RequestKey, Resources, RttMatrix, SimpleRequest,
};
use kantai_testkit::{Case, DataDir};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The folders of scenario files, and the kind of policy each holds.
const FOLDERS: [(&str, Kind); 4] = [
    ("placement", Kind::Placement),
    ("lb", Kind::LoadBalancer),
    ("queue", Kind::Queue),
    ("keepalive", Kind::KeepAlive),
];

/// The name a `sequence` or `shares` uses for a held request.
const HOLD: &str = "hold";

// ---------------------------------------------------------------------------------------
// Files and common helpers
// ---------------------------------------------------------------------------------------

/// The scenario files of `tests/data/<folder>`: every file there is a `.yaml` scenario.
fn scenarios(folder: &str) -> DataDir {
    DataDir::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(folder),
        &["yaml"],
    )
    .only()
}

/// Runs every file of `folder` through `run` and fails with one report of all failures.
fn run_folder(folder: &str, run: fn(&str) -> Result<(), Vec<String>>) {
    scenarios(folder).check(|case| run(&case.text).map_err(|failures| failures.join("\n")));
}

/// Parses a scenario, turning a YAML or shape error into a failure.
fn parse<T: DeserializeOwned>(text: &str) -> Result<T, Vec<String>> {
    serde_saphyr::from_str(text).map_err(|e| vec![format!("cannot read the file: {e}")])
}

/// What every scenario starts with; checked before it runs.
fn check_head(description: &str, policy: &str, kind: Kind) -> Result<(), Vec<String>> {
    if description.trim().is_empty() {
        return Err(vec![
            "`description` must say why the expectations are right".into(),
        ]);
    }
    if !kind.knows(policy) {
        return Err(vec![registry::unknown(kind, policy)]);
    }
    Ok(())
}

/// The policy parameters of the annotations; a malformed one fails the scenario.
fn params_of(annotations: &BTreeMap<String, String>) -> Result<Params, Vec<String>> {
    let (params, errors) = Params::parse(annotations);
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(errors
            .iter()
            .map(|e| format!("annotation {}: {}", e.key, e.message))
            .collect())
    }
}

/// Seconds as a duration (a negative or non-finite number is a mistake in the file).
fn secs(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|e| format!("time {s}: {e}"))
}

fn ms(v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v / 1e3).map_err(|e| format!("duration {v} ms: {e}"))
}

fn yes() -> bool {
    true
}

fn get() -> String {
    "GET".into()
}

fn root() -> String {
    "/".into()
}

/// The index of node `name`.
fn node_index(names: &[String], name: &str) -> Result<usize, String> {
    names
        .iter()
        .position(|n| n == name)
        .ok_or_else(|| format!("unknown node {name:?} (nodes: {})", names.join(", ")))
}

/// Round trips from `[a, b, ms]` triples, symmetric.
fn rtt_of(names: &[String], rtt: &[(String, String, f64)]) -> Result<RttMatrix, String> {
    let mut m = RttMatrix::new(names.len());
    for (a, b, v) in rtt {
        let (i, j) = (node_index(names, a)?, node_index(names, b)?);
        m.set(i, j, *v);
        m.set(j, i, *v);
    }
    Ok(m)
}

/// A per-node map as a slice indexed by node (absent nodes: `none`).
fn per_node<T: Copy>(
    names: &[String],
    map: &BTreeMap<String, T>,
    none: T,
) -> Result<Vec<T>, String> {
    let mut out = vec![none; names.len()];
    for (n, v) in map {
        out[node_index(names, n)?] = *v;
    }
    Ok(out)
}

/// Per-node counts as `{node: count}`, zeros left out.
fn show_counts(names: &[String], counts: &[u32]) -> String {
    let parts: Vec<String> = names
        .iter()
        .zip(counts)
        .filter(|(_, c)| **c > 0)
        .map(|(n, c)| format!("{n}: {c}"))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// A request from a scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default = "get")]
    method: String,
    #[serde(default = "root")]
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: get(),
            path: root(),
            headers: BTreeMap::new(),
        }
    }
}

impl RequestSpec {
    fn build(&self) -> SimpleRequest {
        self.build_for(None)
    }

    /// The request of pick `pick`: `{pick}` in the path or a header value becomes its
    /// number (from 0), so that one step can send many different keys.
    fn build_for(&self, pick: Option<usize>) -> SimpleRequest {
        let fill = |s: &str| match pick {
            Some(p) => s.replace("{pick}", &p.to_string()),
            None => s.to_owned(),
        };
        let mut r = SimpleRequest::get(&fill(&self.path));
        r.method.clone_from(&self.method);
        for (k, v) in &self.headers {
            r = r.with_header(k, &fill(v));
        }
        r
    }
}

// ---------------------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementFile {
    description: String,
    policy: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    resources: ResourcesSpec,
    nodes: Vec<NodeSpec>,
    #[serde(default)]
    rtt: Vec<(String, String, f64)>,
    steps: Vec<PlacementStep>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct ResourcesSpec {
    #[serde(default)]
    cpu: f64,
    #[serde(default)]
    memory: f64,
}

/// A node; `instances`, `cpu_used` and `memory_used` are those of the other revisions.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    name: String,
    #[serde(default = "yes")]
    ready: bool,
    max_instances: Option<u32>,
    cpu: Option<f64>,
    memory: Option<f64>,
    #[serde(default)]
    instances: u32,
    #[serde(default)]
    cpu_used: f64,
    #[serde(default)]
    memory_used: f64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Changes to a node from a step on.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodePatch {
    ready: Option<bool>,
    max_instances: Option<u32>,
    cpu: Option<f64>,
    memory: Option<f64>,
    instances: Option<u32>,
    cpu_used: Option<f64>,
    memory_used: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementStep {
    now: f64,
    desired: u32,
    current: Option<BTreeMap<String, u32>>,
    demand: Option<BTreeMap<String, f64>>,
    serving_ms: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    set_nodes: BTreeMap<String, NodePatch>,
    expect: BTreeMap<String, u32>,
    #[serde(default)]
    unschedulable: u32,
}

fn run_placement(text: &str) -> Result<(), Vec<String>> {
    let f: PlacementFile = parse(text)?;
    check_head(&f.description, &f.policy, Kind::Placement)?;
    if f.steps.is_empty() {
        return Err(vec!["no steps".into()]);
    }
    let params = params_of(&f.annotations)?;
    let mut policy = registry::placement(&f.policy, &params).expect("known name");
    let mut rng = SmallRng::seed_from_u64(f.seed);
    let names: Vec<String> = f.nodes.iter().map(|n| n.name.clone()).collect();
    let rtt = rtt_of(&names, &f.rtt).map_err(|e| vec![e])?;
    let resources = Resources {
        cpu: f.resources.cpu,
        memory: f.resources.memory,
    };
    let mut nodes = f.nodes.clone();
    let mut current = vec![0u32; names.len()];
    let mut demand = vec![0.0f64; names.len()];
    let mut serving: Vec<Option<f64>> = vec![None; names.len()];
    let mut failures = Vec::new();
    for (i, s) in f.steps.iter().enumerate() {
        let step = format!("step {} (now {})", i + 1, s.now);
        let r = (|| -> Result<(), String> {
            for (n, p) in &s.set_nodes {
                let node = &mut nodes[node_index(&names, n)?];
                node.ready = p.ready.unwrap_or(node.ready);
                node.max_instances = p.max_instances.or(node.max_instances);
                node.cpu = p.cpu.or(node.cpu);
                node.memory = p.memory.or(node.memory);
                node.instances = p.instances.unwrap_or(node.instances);
                node.cpu_used = p.cpu_used.unwrap_or(node.cpu_used);
                node.memory_used = p.memory_used.unwrap_or(node.memory_used);
            }
            if let Some(c) = &s.current {
                current = per_node(&names, c, 0)?;
            }
            if let Some(d) = &s.demand {
                demand = per_node(&names, d, 0.0)?;
            }
            if let Some(m) = &s.serving_ms {
                let m: BTreeMap<String, Option<f64>> =
                    m.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
                serving = per_node(&names, &m, None)?;
            }
            // The snapshot counts this revision's current instances as well.
            let fleet = FleetView {
                nodes: nodes
                    .iter()
                    .zip(&current)
                    .map(|(n, &c)| NodeView {
                        name: n.name.clone(),
                        labels: n.labels.clone(),
                        ready: n.ready,
                        max_instances: n.max_instances,
                        cpu: n.cpu,
                        memory: n.memory,
                        instances: n.instances + c,
                        cpu_used: n.cpu_used + resources.cpu * f64::from(c),
                        memory_used: n.memory_used + resources.memory * f64::from(c),
                    })
                    .collect(),
                rtt: rtt.clone(),
            };
            let input = PlacementInput {
                fleet: &fleet,
                revision: "scenario",
                desired: s.desired,
                current: &current,
                demand: &demand,
                serving_ms: &serving,
                in_flight: &vec![0; names.len()],
                queued: &vec![0; names.len()],
                resources,
                params: &params,
                now: secs(s.now)?,
            };
            let got = policy.place(&input, &mut rng);
            let want = per_node(&names, &s.expect, 0)?;
            if got.per_node.len() != names.len() {
                return Err(format!(
                    "decided for {} nodes, the fleet has {}",
                    got.per_node.len(),
                    names.len()
                ));
            }
            if got.per_node != want || got.unschedulable != s.unschedulable {
                return Err(format!(
                    "desired {}: got {} unschedulable {}, want {} unschedulable {}",
                    s.desired,
                    show_counts(&names, &got.per_node),
                    got.unschedulable,
                    show_counts(&names, &want),
                    s.unschedulable
                ));
            }
            current = got.per_node;
            Ok(())
        })();
        if let Err(e) = r {
            failures.push(format!("{step}: {e}"));
            // The next steps would start from a wrong state: their results mean nothing.
            break;
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

// ---------------------------------------------------------------------------------------
// Load balancing
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LbFile {
    description: String,
    policy: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    seed: u64,
    nodes: Vec<String>,
    #[serde(default)]
    rtt: Vec<(String, String, f64)>,
    origin: String,
    #[serde(default)]
    serving_ms: BTreeMap<String, f64>,
    #[serde(default)]
    container_concurrency: u32,
    candidates: Vec<CandidateSpec>,
    steps: Vec<LbStep>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct CandidateSpec {
    name: String,
    id: Option<u64>,
    node: String,
    #[serde(default)]
    in_flight: u32,
    #[serde(default)]
    capacity: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidatePatch {
    in_flight: Option<u32>,
    capacity: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Observe {
    candidate: String,
    latency_ms: f64,
    now: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LbStep {
    now: f64,
    #[serde(default)]
    observe: Vec<Observe>,
    #[serde(default)]
    set: BTreeMap<String, CandidatePatch>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    add: Vec<CandidateSpec>,
    serving_ms: Option<BTreeMap<String, f64>>,
    container_concurrency: Option<u32>,
    request: Option<RequestSpec>,
    requests: Option<Vec<RequestSpec>>,
    picks: Option<usize>,
    #[serde(default)]
    accumulate: bool,
    sequence: Option<Vec<String>>,
    shares: Option<BTreeMap<String, [f64; 2]>>,
    cycle: Option<Vec<String>>,
}

/// A candidate as the runner keeps it.
#[derive(Clone)]
struct Live {
    name: String,
    c: Candidate,
}

fn live_of(names: &[String], spec: &CandidateSpec, id: u64) -> Result<Live, String> {
    if spec.name == HOLD {
        return Err(format!("{HOLD:?} is reserved for a held request"));
    }
    Ok(Live {
        name: spec.name.clone(),
        c: Candidate {
            id: spec.id.unwrap_or(id),
            node: node_index(names, &spec.node)?,
            in_flight: spec.in_flight,
            capacity: spec.capacity,
        },
    })
}

/// Names and ids must tell candidates apart.
fn check_unique(cands: &[Live]) -> Result<(), String> {
    for (i, a) in cands.iter().enumerate() {
        for b in &cands[..i] {
            if a.name == b.name || a.c.id == b.c.id {
                return Err(format!(
                    "candidates {} (id {}) and {} (id {}) share a name or an id",
                    b.name, b.c.id, a.name, a.c.id
                ));
            }
        }
    }
    Ok(())
}

fn run_lb(text: &str) -> Result<(), Vec<String>> {
    let f: LbFile = parse(text)?;
    check_head(&f.description, &f.policy, Kind::LoadBalancer)?;
    if !f
        .steps
        .iter()
        .any(|s| s.sequence.is_some() || s.shares.is_some() || s.cycle.is_some())
    {
        return Err(vec!["no step expects anything".into()]);
    }
    let params = params_of(&f.annotations)?;
    let mut lb = registry::load_balancer(&f.policy, &params).expect("known name");
    let mut rng = SmallRng::seed_from_u64(f.seed);
    let names = &f.nodes;
    let setup = (|| -> Result<_, String> {
        let rtt = rtt_of(names, &f.rtt)?;
        let origin = node_index(names, &f.origin)?;
        let serving = serving_of(names, &f.serving_ms)?;
        let cands = f
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| live_of(names, c, i as u64))
            .collect::<Result<Vec<_>, _>>()?;
        check_unique(&cands)?;
        Ok((rtt.row(origin), origin, serving, cands))
    })();
    let (rtt_ms, origin, mut serving, mut cands) = setup.map_err(|e| vec![e])?;
    let mut cc = f.container_concurrency;
    let mut failures = Vec::new();
    for (i, s) in f.steps.iter().enumerate() {
        let step = format!("step {} (now {})", i + 1, s.now);
        let r = (|| -> Result<(), String> {
            let now = secs(s.now)?;
            let find = |cands: &[Live], n: &str| {
                cands
                    .iter()
                    .position(|c| c.name == n)
                    .ok_or_else(|| format!("unknown candidate {n:?}"))
            };
            for n in &s.remove {
                let k = find(&cands, n)?;
                cands.remove(k);
            }
            for a in &s.add {
                let next_id = cands.iter().map(|c| c.c.id + 1).max().unwrap_or(0);
                cands.push(live_of(names, a, next_id)?);
                check_unique(&cands)?;
            }
            for (n, p) in &s.set {
                let k = find(&cands, n)?;
                let c = &mut cands[k].c;
                c.in_flight = p.in_flight.unwrap_or(c.in_flight);
                c.capacity = p.capacity.unwrap_or(c.capacity);
            }
            if let Some(m) = &s.serving_ms {
                serving = serving_of(names, m)?;
            }
            cc = s.container_concurrency.unwrap_or(cc);
            for o in &s.observe {
                let k = find(&cands, &o.candidate)?;
                let at = match o.now {
                    Some(t) => secs(t)?,
                    None => now,
                };
                lb.observe(cands[k].c.id, ms(o.latency_ms)?, at);
            }
            let picks = match (s.picks, &s.sequence) {
                (Some(p), Some(q)) if p != q.len() => {
                    return Err(format!("picks {p} but a sequence of {}", q.len()));
                }
                (Some(p), _) => p,
                (None, Some(q)) => q.len(),
                (None, None) if s.shares.is_some() || s.cycle.is_some() => {
                    return Err("`shares` and `cycle` need `picks`".into());
                }
                (None, None) => 0,
            };
            let requests: Vec<RequestSpec> = match (&s.request, &s.requests) {
                (Some(_), Some(_)) => return Err("give `request` or `requests`, not both".into()),
                (Some(r), None) => vec![r.clone()],
                (None, Some(rs)) if rs.is_empty() => return Err("`requests` is empty".into()),
                (None, Some(rs)) => rs.clone(),
                (None, None) => vec![RequestSpec::default()],
            };
            let ctx = LbContext {
                origin,
                rtt_ms: &rtt_ms,
                serving_ms: &serving,
                container_concurrency: cc,
                now,
            };
            let mut got: Vec<String> = Vec::with_capacity(picks);
            for p in 0..picks {
                let list: Vec<Candidate> = cands.iter().map(|c| c.c).collect();
                let req = requests[p % requests.len()].build_for(Some(p));
                match lb.pick(&req, &list, &ctx, &mut rng) {
                    None => got.push(HOLD.into()),
                    Some(k) if k >= list.len() => {
                        return Err(format!(
                            "pick {}: index {k} out of {} candidates",
                            p + 1,
                            list.len()
                        ));
                    }
                    Some(k) => {
                        if !list[k].has_room() {
                            return Err(format!(
                                "pick {}: chose {}, which is full ({}/{})",
                                p + 1,
                                cands[k].name,
                                list[k].in_flight,
                                list[k].capacity
                            ));
                        }
                        got.push(cands[k].name.clone());
                        if s.accumulate {
                            cands[k].c.in_flight += 1;
                        }
                    }
                }
            }
            let mut problems = Vec::new();
            if let Some(want) = &s.sequence
                && *want != got
            {
                problems.push(format!("sequence: got {got:?}, want {want:?}"));
            }
            if let Some(shares) = &s.shares {
                check_shares(&got, shares, &mut problems);
            }
            if let Some(cycle) = &s.cycle {
                check_cycle(&got, cycle, &mut problems);
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        })();
        if let Err(e) = r {
            failures.push(format!("{step}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

fn serving_of(names: &[String], m: &BTreeMap<String, f64>) -> Result<Vec<Option<f64>>, String> {
    let m: BTreeMap<String, Option<f64>> = m.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
    per_node(names, &m, None)
}

/// Every name picked must be listed, and each listed name's fraction of the picks must lie
/// in its `[low, high]` band.
fn check_shares(got: &[String], shares: &BTreeMap<String, [f64; 2]>, problems: &mut Vec<String>) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for g in got {
        *counts.entry(g.as_str()).or_default() += 1;
    }
    let n = got.len().max(1) as f64;
    let observed: BTreeMap<&str, f64> = counts.iter().map(|(k, c)| (*k, *c as f64 / n)).collect();
    let before = problems.len();
    for (name, [lo, hi]) in shares {
        let share = observed.get(name.as_str()).copied().unwrap_or(0.0);
        if share < *lo || share > *hi {
            problems.push(format!("share of {name}: {share:.4}, want [{lo}, {hi}]"));
        }
    }
    for (name, share) in &observed {
        if !shares.contains_key(*name) {
            problems.push(format!(
                "{name} was picked ({share:.4}) but is not in `shares`"
            ));
        }
    }
    if problems.len() > before {
        problems.push(format!("shares over {} picks: {observed:.4?}", got.len()));
    }
}

/// The picks of the candidates in `cycle`, in order, follow the cycle (from any start).
fn check_cycle(got: &[String], cycle: &[String], problems: &mut Vec<String>) {
    let seen: Vec<&String> = got.iter().filter(|g| cycle.contains(g)).collect();
    if seen.len() < 2 * cycle.len() {
        problems.push(format!(
            "cycle {cycle:?}: only {} picks of them, too few to check",
            seen.len()
        ));
        return;
    }
    let start = cycle.iter().position(|c| c == seen[0]).unwrap_or(0);
    for (k, g) in seen.iter().enumerate() {
        let want = &cycle[(start + k) % cycle.len()];
        if *g != want {
            problems.push(format!(
                "cycle {cycle:?}: pick {} of them is {g}, want {want} (they were {:?}…)",
                k + 1,
                &seen[..(k + 1).min(12)]
            ));
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Queue disciplines
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueFile {
    description: String,
    policy: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    limit: usize,
    ops: Vec<QueueOp>,
    order: Vec<u64>,
}

/// One operation: exactly one of `push`, `learn` and `remove`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueOp {
    push: Option<u64>,
    learn: Option<String>,
    remove: Option<u64>,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    path: Option<String>,
    now: Option<f64>,
    ms: Option<f64>,
    expect: Option<AdmissionSpec>,
    found: Option<bool>,
    head: Option<u64>,
    len: Option<usize>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
enum AdmissionSpec {
    Word(String),
    Evicted { evicted: u64 },
}

impl AdmissionSpec {
    fn admission(&self) -> Result<Admission, String> {
        match self {
            AdmissionSpec::Word(w) if w == "queued" => Ok(Admission::Queued),
            AdmissionSpec::Word(w) if w == "rejected" => Ok(Admission::Rejected),
            AdmissionSpec::Word(w) => Err(format!(
                "expect {w:?}: must be queued, rejected or {{evicted: ID}}"
            )),
            AdmissionSpec::Evicted { evicted } => Ok(Admission::Evicted(*evicted)),
        }
    }
}

fn run_queue(text: &str) -> Result<(), Vec<String>> {
    let f: QueueFile = parse(text)?;
    check_head(&f.description, &f.policy, Kind::Queue)?;
    let params = params_of(&f.annotations)?;
    let mut q = registry::queue(&f.policy, &params).expect("known name");
    // The ids that should be waiting, whatever their order.
    let mut model: BTreeSet<u64> = BTreeSet::new();
    for (i, op) in f.ops.iter().enumerate() {
        let r = (|| -> Result<(), String> {
            let req = || -> SimpleRequest {
                RequestSpec {
                    method: op.method.clone().unwrap_or_else(get),
                    path: op.path.clone().unwrap_or_else(root),
                    headers: op.headers.clone(),
                }
                .build()
            };
            let now = || -> Result<Duration, String> {
                secs(op.now.ok_or("`now` is required for push and learn")?)
            };
            match (op.push, &op.learn, op.remove) {
                (Some(id), None, None) => {
                    let want = op
                        .expect
                        .as_ref()
                        .ok_or("a push needs `expect`")?
                        .admission()?;
                    if model.contains(&id) {
                        return Err(format!("id {id} is already waiting"));
                    }
                    let got = q.push(id, &req(), now()?, f.limit);
                    if got != want {
                        return Err(format!("push {id}: got {got:?}, want {want:?}"));
                    }
                    match got {
                        Admission::Queued => {
                            model.insert(id);
                        }
                        Admission::Rejected => {}
                        Admission::Evicted(v) => {
                            if !model.remove(&v) {
                                return Err(format!("evicted {v}, which was not waiting"));
                            }
                            model.insert(id);
                        }
                    }
                }
                (None, Some(path), None) => {
                    let mut r = req();
                    r.path.clone_from(path);
                    let d = ms(op.ms.ok_or("a learn needs `ms`")?)?;
                    q.learn(RequestKey::of(&r), d, now()?);
                }
                (None, None, Some(id)) => {
                    let want = op.found.unwrap_or(model.contains(&id));
                    let got = q.remove(id);
                    if got != want {
                        return Err(format!("remove {id}: returned {got}, want {want}"));
                    }
                    model.remove(&id);
                }
                _ => return Err("exactly one of push, learn and remove".into()),
            }
            if q.len() != model.len() || q.is_empty() != model.is_empty() {
                return Err(format!(
                    "len {} (is_empty {}), but {} waiting: {model:?}",
                    q.len(),
                    q.is_empty(),
                    model.len()
                ));
            }
            if let Some(h) = op.head
                && q.peek() != Some(h)
            {
                return Err(format!("head: got {:?}, want {h}", q.peek()));
            }
            if let Some(l) = op.len
                && q.len() != l
            {
                return Err(format!("len: got {}, want {l}", q.len()));
            }
            Ok(())
        })();
        if let Err(e) = r {
            // Later operations depend on this one: stop at the first difference.
            return Err(vec![format!("op {}: {e}", i + 1)]);
        }
    }
    // Serve everything: peek, then remove what was peeked.
    let mut served = Vec::new();
    while let Some(id) = q.peek() {
        if served.len() > model.len() {
            return Err(vec![format!(
                "order: peek keeps giving requests: {served:?}…"
            )]);
        }
        if !q.remove(id) {
            return Err(vec![format!(
                "order: peek gave {id}, but remove({id}) found nothing"
            )]);
        }
        served.push(id);
    }
    let mut failures = Vec::new();
    if served != f.order {
        failures.push(format!("order: got {served:?}, want {:?}", f.order));
    }
    // peek gave nothing: the queue must say it is empty, both ways.
    match (q.len(), q.is_empty()) {
        (0, true) => {}
        (n, e) => failures.push(format!(
            "peek gives nothing, but len is {n} and is_empty {e}"
        )),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// Keep-alive
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepAliveFile {
    description: String,
    policy: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default = "kpa_tick")]
    tick: f64,
    #[serde(default)]
    busy: Vec<[f64; 2]>,
    #[serde(default)]
    repeat: Option<Repeat>,
    checks: Vec<HoldCheck>,
}

/// The busy intervals again every `every` seconds, `times` times in all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Repeat {
    every: f64,
    times: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldCheck {
    at: f64,
    expect: String,
}

fn kpa_tick() -> f64 {
    2.0
}

/// `kpa`, `release` or `keep N`.
fn hold_of(s: &str) -> Result<Hold, String> {
    match s.split_whitespace().collect::<Vec<_>>()[..] {
        ["kpa"] => Ok(Hold::Kpa),
        ["release"] => Ok(Hold::Release),
        ["keep", n] => n
            .parse()
            .map(Hold::Keep)
            .map_err(|_| format!("`keep {n}`: not a count")),
        _ => Err(format!("expect {s:?}: must be kpa, release or keep N")),
    }
}

fn run_keep_alive(text: &str) -> Result<(), Vec<String>> {
    let f: KeepAliveFile = parse(text)?;
    check_head(&f.description, &f.policy, Kind::KeepAlive)?;
    let params = params_of(&f.annotations)?;
    let mut policy = registry::keep_alive(&f.policy, &params).expect("checked name");
    let mut busy = f.busy.clone();
    if let Some(r) = &f.repeat {
        for k in 1..r.times {
            busy.extend(
                f.busy
                    .iter()
                    .map(|[a, b]| [a + f64::from(k) * r.every, b + f64::from(k) * r.every]),
            );
        }
    }
    let mut checks = Vec::new();
    for c in &f.checks {
        let ticks = c.at / f.tick;
        if ticks.fract() != 0.0 || ticks < 0.0 {
            return Err(vec![format!(
                "check at {}: not a tick (every {} s from 0)",
                c.at, f.tick
            )]);
        }
        checks.push((ticks as u64, c.at, hold_of(&c.expect).map_err(|e| vec![e])?));
    }
    let last = checks.iter().map(|c| c.0).max().unwrap_or(0);
    let mut idleness = Idleness::default();
    let mut problems = Vec::new();
    for n in 0..=last {
        let t = n as f64 * f.tick;
        // A tick is busy when a busy interval meets the interval since the tick before.
        let had = busy.iter().any(|[a, b]| *a <= t && *b > t - f.tick);
        let now = secs(t).map_err(|e| vec![e])?;
        if let Some(arrival) = idleness.tick(now, had) {
            policy.arrived(arrival);
        }
        let hold = policy.hold(&KeepAliveInput {
            now,
            idle_since: idleness.idle_since(),
            ready: 1,
            resources: Resources::default(),
            cold_start: None,
            params: &params,
        });
        for (_, at, want) in checks.iter().filter(|c| c.0 == n) {
            if hold != *want {
                problems.push(format!(
                    "at {at} s (idle since {:?}): expected {want:?}, got {hold:?}",
                    idleness.idle_since()
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[test]
fn keep_alive_scenarios() {
    run_folder("keepalive", run_keep_alive);
}

#[test]
fn placement_scenarios() {
    run_folder("placement", run_placement);
}

#[test]
fn load_balancer_scenarios() {
    run_folder("lb", run_lb);
}

#[test]
fn queue_scenarios() {
    run_folder("queue", run_queue);
}

/// A built-in without a scenario, or a scenario in the wrong folder, fails.
#[test]
fn every_registered_policy_has_a_scenario() {
    #[derive(Deserialize)]
    struct PolicyOnly {
        policy: String,
    }
    let mut problems = Vec::new();
    for (folder, kind) in FOLDERS {
        let mut covered = BTreeSet::new();
        for Case { name, text, .. } in scenarios(folder).cases() {
            match serde_saphyr::from_str::<PolicyOnly>(&text) {
                Ok(p) if kind.knows(&p.policy) => {
                    covered.insert(p.policy);
                }
                Ok(p) => problems.push(format!(
                    "{folder}/{name}: {}",
                    registry::unknown(kind, &p.policy)
                )),
                Err(e) => problems.push(format!("{folder}/{name}: {e}")),
            }
        }
        // Plug-ins (another test registers one) bring no scenario of their own.
        for n in kind.names().into_iter().filter(|n| !kind.is_plug_in(n)) {
            if !covered.contains(n.as_str()) {
                problems.push(format!(
                    "{kind:?} {n:?} has no scenario in tests/data/{folder}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The researcher's guide (`docs/policies.md`) shows the worked example's source and its
/// scenario verbatim: the page cannot drift from the code it teaches.
#[test]
fn the_guide_quotes_the_worked_example_exactly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("../../../docs/policies.md")).expect("guide");
    for file in [
        "src/lb/least_latency.rs",
        "tests/data/lb/least-latency.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect("example");
        assert!(
            guide.contains(&text),
            "docs/policies.md does not quote {file} as it is; copy the file into the guide"
        );
    }
}

/// Runs every `round-robin` scenario with the plug-in `bytes`, registered as `name`: it
/// must make the built-in's decisions, every one its own.
fn run_round_robin_port(name: &str, bytes: &[u8]) {
    let plugin = kantai_plugin::load(name, Kind::LoadBalancer, bytes, Limits::default())
        .unwrap_or_else(|e| panic!("{e}"));
    plugin.register().unwrap_or_else(|e| panic!("{e}"));
    let mut ran = Vec::new();
    for Case {
        name: file, text, ..
    } in scenarios("lb").cases()
    {
        if !text.lines().any(|l| l == "policy: round-robin") {
            continue;
        }
        let ported = text.replace("\npolicy: round-robin\n", &format!("\npolicy: {name}\n"));
        if let Err(problems) = run_lb(&ported) {
            panic!(
                "{file}, run by {name}:\n{}\nfallbacks: {:?}",
                problems.join("\n"),
                kantai_plugin::fallbacks()
            );
        }
        ran.push(file);
    }
    assert!(!ran.is_empty(), "no round-robin scenario in tests/data/lb");
    let fell = kantai_plugin::fallbacks();
    assert!(
        fell.iter().all(|f| f.plugin != name),
        "every decision was the plug-in's own: {fell:?}"
    );
}

/// The Python port of `round-robin` (examples/policies/python), built with componentize-py
/// and loaded as a plug-in, makes the built-in's decisions on every `round-robin` scenario.
#[test]
fn the_python_round_robin_decides_as_the_built_in() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let built = kantai_testkit::guests::python(
        &root.join("crates/plugin/wit"),
        "load-balancer-plugin",
        &root.join("examples/policies/python"),
        "round_robin",
    );
    if let Some(bytes) = built.unwrap_or_else(|e| panic!("{e}")) {
        run_round_robin_port("python-round-robin", &bytes);
    }
}

/// The WebAssembly-text port of `round-robin` (examples/policies/wat) does too.
#[test]
fn the_wat_round_robin_decides_as_the_built_in() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let file = root.join("examples/policies/wat/round-robin.wat");
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    run_round_robin_port("wat-round-robin", &bytes);
}
