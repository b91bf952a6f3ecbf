//! Data-driven tests of the starts a node decides on its own: every
//! `tests/data/local/*.yaml` holds the revision's annotations, the fleet as the deciding node
//! sees it, and what it decides.
//!
//! ```yaml
//! description: why this case exists
//! annotations: {kantai.dev/placement: latency-aware}   # the revision's (optional)
//! nodes:                                               # the fleet, in order
//!   - {name: node1, max: 4, instances: 0}              # max, instances: optional
//! rtt: [[node1, node3, 50]]                            # measured round trips (ms)
//! node: node3                                          # the deciding node
//! current: [0, 0, 0]                                   # the revision's instances per node
//! held: 1                                              # requests the node holds
//! autonomous: false                                    # the control plane unreachable
//! expect: start                                        # or the refusal, as Debug prints it
//! desired: 3                                           # optional: the local KPA's count…
//! expect_count: 2                                      # …and what the node runs of it
//! ```

// Tests are a driver of the pure crate: reading case files is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::Duration;

use kantai_driver::{LocalView, RevisionSettings, autonomous_count, local_seed, local_start};
use kantai_model::node::{Node, ParseLimits, parse_documents};
use kantai_model::serving::Revision;
use kantai_model::{Findings, Object, ServingConfig};
use kantai_policy::{FleetView, NodeView, RttMatrix};
use kantai_testkit::{Case, DataDir};
use serde_json::{Value, json};

fn revision(annotations: &Value) -> Result<Revision, String> {
    let doc = json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {"name": "hello-00001", "namespace": "default", "annotations": annotations},
        "spec": {"containers": [{"image": "kantai/hello"}]},
    });
    let mut out = Findings::new();
    match Object::decode(&Node::from_json(&doc), &mut out) {
        Some(Object::Revision(r)) if !out.has_errors() => Ok(r),
        _ => Err(format!("the revision does not decode: {out:?}")),
    }
}

fn fleet(case: &Value) -> Result<FleetView, String> {
    let nodes: Vec<NodeView> = case["nodes"]
        .as_array()
        .ok_or("`nodes` is a list")?
        .iter()
        .map(|n| NodeView {
            name: n["name"].as_str().unwrap_or_default().to_owned(),
            labels: BTreeMap::new(),
            ready: n["ready"].as_bool().unwrap_or(true),
            max_instances: n["max"].as_u64().map(|m| m as u32),
            instances: n["instances"].as_u64().unwrap_or(0) as u32,
            ..NodeView::default()
        })
        .collect();
    let mut rtt = RttMatrix::new(nodes.len());
    let index = |name: &Value| {
        nodes
            .iter()
            .position(|n| Some(n.name.as_str()) == name.as_str())
    };
    for r in case["rtt"].as_array().into_iter().flatten() {
        let (Some(a), Some(b), Some(ms)) = (index(&r[0]), index(&r[1]), r[2].as_f64()) else {
            return Err(format!("bad rtt entry {r}"));
        };
        rtt.set(a, b, ms);
    }
    Ok(FleetView { nodes, rtt })
}

fn check(case: &Case) -> Result<(), String> {
    let docs = parse_documents(&case.text, ParseLimits::default()).map_err(|e| e.message)?;
    let doc = docs.first().ok_or("one document")?.to_json();
    doc["description"]
        .as_str()
        .ok_or("a case says why it exists")?;
    let rev = revision(doc.get("annotations").unwrap_or(&json!({})))?;
    let (settings, problems) = RevisionSettings::of(&rev, &ServingConfig::default());
    if !problems.is_empty() {
        return Err(format!("settings problems: {problems:?}"));
    }
    let fleet = fleet(&doc)?;
    let name = doc["node"]
        .as_str()
        .ok_or("`node` names the deciding node")?;
    let node = fleet.index_of(name).ok_or("`node` is one of `nodes`")?;
    let current: Vec<u32> = doc["current"]
        .as_array()
        .ok_or("`current` is a list")?
        .iter()
        .map(|c| c.as_u64().unwrap_or(0) as u32)
        .collect();
    let view = LocalView {
        fleet: &fleet,
        node,
        current: &current,
        held: doc["held"].as_u64().unwrap_or(1) as u32,
        autonomous: doc["autonomous"].as_bool().unwrap_or(false),
        now: Duration::from_secs(10),
    };
    let seed = local_seed("default", "hello-00001", name);
    let got = match local_start(&settings, seed, &view) {
        Ok(()) => "start".to_owned(),
        Err(r) => format!("{r:?}"),
    };
    let want = doc["expect"].as_str().ok_or("`expect` is text")?;
    let mut failures = Vec::new();
    if got != want {
        failures.push(format!("expected {want}, got {got}"));
    }
    if let Some(desired) = doc["desired"].as_u64() {
        let want = doc["expect_count"]
            .as_u64()
            .ok_or("`expect_count` with `desired`")?;
        let got = autonomous_count(&settings, &view, desired as u32);
        if u64::from(got) != want {
            failures.push(format!("autonomous count: expected {want}, got {got}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[test]
fn every_case_decides_as_expected() {
    DataDir::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/local"),
        &["yaml"],
    )
    .only()
    .at_least(8)
    .check(check);
}

#[test]
fn the_same_view_decides_the_same_every_time() {
    let rev = revision(&json!({"kantai.dev/placement": "latency-aware"})).expect("revision");
    let (settings, _) = RevisionSettings::of(&rev, &ServingConfig::default());
    let fleet = FleetView {
        nodes: (1..=3)
            .map(|i| NodeView {
                name: format!("node{i}"),
                ready: true,
                ..NodeView::default()
            })
            .collect(),
        rtt: RttMatrix::new(3),
    };
    let view = LocalView {
        fleet: &fleet,
        node: 2,
        current: &[0, 0, 0],
        held: 3,
        autonomous: false,
        now: Duration::ZERO,
    };
    let seed = local_seed("default", "hello-00001", "node3");
    let first = local_start(&settings, seed, &view);
    assert!((0..20).all(|_| local_start(&settings, seed, &view) == first));
    assert_ne!(seed, local_seed("default", "hello-00001", "node1"));
}
