//! The seam between the live fleet and the simulator: the same stream of load reports,
//! recorded from a live run (`tests/data/seam/README.md`), fed to the control plane's scaler
//! path and to the simulator's gives the same decisions tick by tick, and the control
//! plane's path gives the live run's own logged decisions again.

use std::path::Path;
use std::time::Duration;

use kantai_control::scaling::logged_load;
use kantai_decisions::Decision;
use kantai_driver::RevisionSettings;
use kantai_driver::scaler::{self, RevisionScaler};
use kantai_model::serving::Object;
use kantai_model::serving::derive::{configuration_for, revision_for};
use kantai_model::{ServingConfig, manifest};
use rand::SeedableRng;
use rand::rngs::SmallRng;

const NAMESPACE: &str = "default";
const REVISION: &str = "hello-00001";

/// One tick's decision: when, desired, panic, activator in path, and the placement per node.
type Step = (u64, u32, bool, bool, Vec<u32>);

fn records() -> Vec<Decision> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seam/live-reports.ndjson");
    let text = std::fs::read_to_string(path).expect("recorded log");
    kantai_decisions::read(&text).expect("decision log")
}

/// hello's revision settings, as the control plane computed them from the applied manifest.
fn settings() -> RevisionSettings {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello.yaml");
    let text = std::fs::read_to_string(root).expect("hello.yaml");
    let config = ServingConfig::default();
    let docs = manifest::read(&text, &config).expect("manifest");
    let Some(Some(Object::Service(svc))) = docs.into_iter().next().map(|d| d.object) else {
        panic!("hello.yaml holds a Service");
    };
    let revision = revision_for(&configuration_for(&svc), 1);
    assert_eq!(revision.metadata.name, REVISION);
    let (mut s, problems) = RevisionSettings::of(&revision, &config);
    assert!(problems.is_empty(), "{problems:?}");
    s.scaling.reachable = true;
    s
}

/// When the loop made hello's scaler: its first decision (made as it appeared).
fn created(records: &[Decision]) -> Duration {
    records
        .iter()
        .find_map(|r| match r {
            Decision::Tick(t) if t.revision == REVISION => Some(Duration::from_nanos(t.ns)),
            _ => None,
        })
        .expect("a tick")
}

/// The control plane's path: each node's report recorded as is (`node_load` of the report),
/// a tick where the live loop ticked, a placement over the fleet it saw, every tick.
fn control_path(records: &[Decision]) -> Vec<Step> {
    let s = settings();
    let mut core: RevisionScaler<String> =
        RevisionScaler::new(&s, scaler::seed(NAMESPACE, REVISION), created(records), 0);
    let mut out: Vec<Step> = Vec::new();
    for r in records {
        match r {
            Decision::Report(rep) => {
                for l in rep.revisions.iter().filter(|l| l.revision == REVISION) {
                    let now = Duration::from_nanos(rep.ns);
                    core.record(now, &rep.node, &logged_load(rep, l));
                }
            }
            Decision::Tick(t) if t.revision == REVISION => {
                let d = core.tick(Duration::from_nanos(t.ns), t.ready);
                out.push((t.ns, d.desired, d.panic, d.activator_in_path, Vec::new()));
            }
            Decision::Placement(p) if p.revision == REVISION => {
                let step = out.last_mut().expect("a placement follows its tick");
                let now = Duration::from_nanos(step.0);
                let (d, _) = core.place(
                    &p.fleet(),
                    &p.nodes,
                    REVISION,
                    &p.current,
                    step.1,
                    now,
                    None,
                    None,
                );
                step.4 = d.per_node;
            }
            _ => {}
        }
    }
    out
}

/// The simulator's path: each report recorded as the simulator records its agents' (the
/// load through `kantai_sim::control::node_load` into `kantai_sim::control::record_report`:
/// the KPA, the per-origin demand and per-node serving times by node index), the occupancy passed in as the simulator measures it, and
/// a placement only when the core says it can change anything.
fn sim_path(records: &[Decision]) -> Vec<Step> {
    let s = settings();
    let rng = SmallRng::seed_from_u64(scaler::seed(NAMESPACE, REVISION));
    let mut core: RevisionScaler<u32> = RevisionScaler::with_rng(&s, rng, created(records), 0);
    // The simulator keys nodes by fleet index: the fleet's order, as the placements list it.
    let fleet_nodes = records
        .iter()
        .find_map(|r| match r {
            Decision::Placement(p) => Some(p.nodes.clone()),
            _ => None,
        })
        .expect("a placement");
    let n = fleet_nodes.len();
    let index: Vec<u32> = (0..n as u32).collect();
    let mut in_flight = vec![0; n];
    let mut queued = vec![0; n];
    let mut placed = vec![0; n];
    let mut out: Vec<Step> = Vec::new();
    for r in records {
        match r {
            Decision::Report(rep) => {
                for l in rep.revisions.iter().filter(|l| l.revision == REVISION) {
                    let now = Duration::from_nanos(rep.ns);
                    let i = fleet_nodes
                        .iter()
                        .position(|x| *x == rep.node)
                        .expect("a fleet node");
                    let node = i as u32;
                    let load = kantai_sim::control::node_load(
                        l.concurrency,
                        l.requests,
                        rep.poke && l.held > 0,
                    );
                    let serving = (l.served > 0).then_some((node, l.serving_ms));
                    kantai_sim::control::record_report(
                        &mut core,
                        now,
                        &load,
                        [(node, l.requests)],
                        serving,
                        |_, _| {},
                    );
                    in_flight[i] = l.in_flight;
                    queued[i] = l.queued;
                }
            }
            Decision::Tick(t) if t.revision == REVISION => {
                let d = core.tick(Duration::from_nanos(t.ns), t.ready);
                out.push((t.ns, d.desired, d.panic, d.activator_in_path, Vec::new()));
            }
            Decision::Placement(p) if p.revision == REVISION => {
                let step = out.last_mut().expect("a placement follows its tick");
                assert_eq!(p.nodes, fleet_nodes, "the fleet kept its nodes");
                if core.placement_due(step.1) {
                    let now = Duration::from_nanos(step.0);
                    let (d, _) = core.place(
                        &p.fleet(),
                        &index,
                        REVISION,
                        &placed,
                        step.1,
                        now,
                        Some((&in_flight, &queued)),
                        None,
                    );
                    placed = d.per_node;
                }
                step.4 = placed.clone();
            }
            _ => {}
        }
    }
    out
}

/// The live run's own decisions: each tick and the placement that followed it.
fn live(records: &[Decision]) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for r in records {
        match r {
            Decision::Tick(t) if t.revision == REVISION => {
                out.push((t.ns, t.desired, t.panic, t.activator_in_path, Vec::new()));
            }
            Decision::Placement(p) if p.revision == REVISION => {
                out.last_mut().expect("a placement follows its tick").4 = p.choice.clone();
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_recording_holds_a_scale_from_zero() {
    let steps = live(&records());
    let up = steps.windows(2).any(|w| w[0].1 == 0 && w[1].1 > 0);
    assert!(up, "{steps:?}");
}

#[test]
fn the_control_planes_path_and_the_simulators_decide_alike_tick_by_tick() {
    let records = records();
    let control = control_path(&records);
    let sim = sim_path(&records);
    assert_eq!(control.len(), sim.len());
    for (c, s) in control.iter().zip(&sim) {
        assert_eq!(c, s, "tick at {} ns", c.0);
    }
}

#[test]
fn replaying_the_reports_gives_the_live_runs_decisions() {
    let records = records();
    let replayed = control_path(&records);
    let logged = live(&records);
    assert_eq!(replayed.len(), logged.len());
    for (r, l) in replayed.iter().zip(&logged) {
        assert_eq!(r, l, "tick at {} ns", r.0);
    }
}

#[test]
fn a_report_asks_for_a_tick_at_once_in_both_paths_exactly_where_the_live_loop_ticked() {
    let records = records();
    let s = settings();
    let mut control: RevisionScaler<String> =
        RevisionScaler::new(&s, scaler::seed(NAMESPACE, REVISION), created(&records), 0);
    let mut sim: RevisionScaler<u32> =
        RevisionScaler::new(&s, scaler::seed(NAMESPACE, REVISION), created(&records), 0);
    let (mut due, mut ticked_at_once) = (Vec::new(), Vec::new());
    for (i, r) in records.iter().enumerate() {
        match r {
            Decision::Report(rep) => {
                for l in rep.revisions.iter().filter(|l| l.revision == REVISION) {
                    let now = Duration::from_nanos(rep.ns);
                    let c = control.record(now, &rep.node, &logged_load(rep, l));
                    let load = kantai_sim::control::node_load(
                        l.concurrency,
                        l.requests,
                        rep.poke && l.held > 0,
                    );
                    let simulated = kantai_sim::control::record_report(
                        &mut sim,
                        now,
                        &load,
                        [(0, l.requests)],
                        None,
                        |_, _| {},
                    );
                    assert_eq!(c, simulated, "report {i}");
                    if c {
                        due.push(i);
                    }
                }
                // The live loop ticks a poked revision before it reads the next report, within
                // a millisecond (its periodic ticks run on their own 2 s clock).
                if matches!(records.get(i + 1), Some(Decision::Tick(t)) if t.ns.saturating_sub(rep.ns) < 1_000_000)
                {
                    ticked_at_once.push(i);
                }
            }
            Decision::Tick(t) if t.revision == REVISION => {
                let now = Duration::from_nanos(t.ns);
                control.tick(now, t.ready);
                sim.tick(now, t.ready);
            }
            _ => {}
        }
    }
    assert!(!due.is_empty());
    assert_eq!(due, ticked_at_once);
}
