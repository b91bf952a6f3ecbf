//! The decision log of a simulated far-node cold start shows the node's local start as its
//! report named it, and the placement the control plane then decided counting it.

use std::path::Path;

use kantai_decisions::Decision;
use kantai_testkit::SharedBuf;

/// The decision log of `tests/scenarios/local-start-latency-aware.yaml`.
fn decisions() -> Vec<Decision> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/local-start-latency-aware.yaml");
    let text = std::fs::read_to_string(&path).expect("scenario");
    let (scenario, _) = text.split_once("\n---\n").expect("expectations");
    let mut s = kantai_sim::Scenario::parse(scenario, &path.display().to_string()).expect("parse");
    s.output.placement_decisions = true;
    let log = SharedBuf::default();
    let mut p = kantai_sim::prepare_parsed(s, &path, Some(Box::new(log.clone()))).expect("prepare");
    kantai_sim::run(&mut p, &mut |_| {}).expect("run");
    let bytes = log.contents();
    kantai_decisions::read(&String::from_utf8(bytes).expect("utf-8")).expect("records")
}

#[test]
fn the_far_nodes_poke_names_its_local_start_and_the_next_placement_counts_it() {
    let log = decisions();
    let at = log
        .iter()
        .position(|d| {
            matches!(d, Decision::Report(r) if r.node == "node3" && r.poke
                && r.local.iter().any(|l| l.revision == "hello-00001" && l.count == 1))
        })
        .expect("a poke from node3 naming one local start of hello-00001");
    let next = log[at..]
        .iter()
        .find_map(|d| match d {
            Decision::Placement(p) => Some(p),
            _ => None,
        })
        .expect("a placement after the poke");
    assert_eq!(
        (next.current.clone(), next.choice.clone()),
        (vec![0, 0, 1], vec![0, 0, 1]),
        "the placement after node3's poke: {next:?}"
    );
}
