//! The placement, queue and keep-alive plug points, each with a guest in WebAssembly text
//! that works and one that fails: a working guest's answers are used, a failing guest's are
//! replaced by the plug point's default, and nothing waiting is lost.

// A test is a driver: it reads the guests' files.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::fell_back;
use kantai_plugin::{Limits, Plugin, load};
use kantai_policy::keepalive::{Hold, KeepAlive, KeepAliveInput};
use kantai_policy::placement::{Placement, PlacementInput};
use kantai_policy::queue::{Admission, QueueDiscipline};
use kantai_policy::rand::SeedableRng;
use kantai_policy::rand::rngs::SmallRng;
use kantai_policy::registry::{Factory, Kind};
use kantai_policy::{FleetView, NodeView, Params, Resources, RttMatrix, SimpleRequest};

/// The guest `file`'s text.
fn text(file: &str) -> String {
    let path = format!("{}/tests/guests/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The guest `file` as it is.
fn guest(file: &str) -> Vec<u8> {
    text(file).into_bytes()
}

/// The guest `file` with `from` replaced by `to` in its text: its failing variant.
fn variant(file: &str, from: &str, to: &str) -> Vec<u8> {
    let text = text(file);
    assert!(text.contains(from), "{file} has no {from:?}");
    text.replace(from, to).into_bytes()
}

fn plugin(name: &str, kind: Kind, bytes: &[u8]) -> Plugin {
    load(name, kind, bytes, Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn queue_of(p: &Plugin) -> Box<dyn QueueDiscipline> {
    match p.factory() {
        Factory::Queue(new) => new(&Params::default()),
        _ => panic!("a queue"),
    }
}

fn placement_of(p: &Plugin) -> Box<dyn Placement> {
    match p.factory() {
        Factory::Placement(new) => new(&Params::default()),
        _ => panic!("a placement"),
    }
}

fn keep_alive_of(p: &Plugin) -> Box<dyn KeepAlive> {
    match p.factory() {
        Factory::KeepAlive(new) => new(&Params::default()),
        _ => panic!("a keep-alive policy"),
    }
}

fn push(q: &mut dyn QueueDiscipline, id: u64, limit: usize) -> Admission {
    q.push(id, &SimpleRequest::get("/"), Duration::from_secs(id), limit)
}

#[test]
fn a_plug_in_queue_serves_in_its_own_order_and_refuses_beyond_the_limit() {
    let p = plugin("wat-fifo", Kind::Queue, &guest("fifo.wat"));
    let mut q = queue_of(&p);
    assert_eq!(push(&mut *q, 7, 2), Admission::Queued);
    assert_eq!(push(&mut *q, 8, 2), Admission::Queued);
    assert_eq!(push(&mut *q, 9, 2), Admission::Rejected);
    assert_eq!((q.len(), q.peek()), (2, Some(7)));
    assert!(q.remove(7));
    assert!(!q.remove(7), "no longer waiting");
    assert_eq!(q.peek(), Some(8));
    assert_eq!(
        fell_back("wat-fifo", "trap") + fell_back("wat-fifo", "out-of-range"),
        0
    );
}

#[test]
fn a_queue_that_traps_hands_every_waiting_request_to_the_default_in_order() {
    let bytes = variant(
        "fifo.wat",
        "(global $trap_after i32 (i32.const 0))",
        "(global $trap_after i32 (i32.const 2))",
    );
    let p = plugin("wat-fifo-trap", Kind::Queue, &bytes);
    let mut q = queue_of(&p);
    assert_eq!(push(&mut *q, 1, 10), Admission::Queued);
    assert_eq!(push(&mut *q, 2, 10), Admission::Queued);
    // The third push traps: the default (fifo) takes 1 and 2, then this one.
    assert_eq!(push(&mut *q, 3, 10), Admission::Queued);
    assert_eq!(fell_back("wat-fifo-trap", "trap"), 1);
    let mut served = Vec::new();
    while let Some(id) = q.peek() {
        assert!(q.remove(id));
        served.push(id);
    }
    assert_eq!(served, [1, 2, 3], "none lost, in arrival order");
    assert_eq!(q.len(), 0);
}

/// Three ready nodes of room 4; the revision wants `desired`.
fn place(p: &mut dyn Placement, desired: u32, first_max: Option<u32>) -> Vec<u32> {
    let nodes = ["node1", "node2", "node3"]
        .iter()
        .enumerate()
        .map(|(i, n)| NodeView {
            name: (*n).to_owned(),
            ready: true,
            max_instances: Some(if i == 0 { first_max.unwrap_or(4) } else { 4 }),
            ..NodeView::default()
        })
        .collect();
    let fleet = FleetView {
        nodes,
        rtt: RttMatrix::new(3),
    };
    let zeros = [0u32; 3];
    let input = PlacementInput {
        fleet: &fleet,
        revision: "hello-00001",
        desired,
        current: &zeros,
        demand: &[0.0; 3],
        serving_ms: &[None; 3],
        in_flight: &zeros,
        queued: &zeros,
        resources: Resources::default(),
        params: &Params::default(),
        now: Duration::from_secs(10),
    };
    p.place(&input, &mut SmallRng::seed_from_u64(1)).per_node
}

#[test]
fn a_plug_in_placement_decides_where_instances_run() {
    let p = plugin("wat-first-node", Kind::Placement, &guest("first-node.wat"));
    let mut placing = placement_of(&p);
    assert_eq!(place(&mut *placing, 3, None), [3, 0, 0]);
    assert!(!placing.rebalances());
    assert_eq!(
        placing.fallback(),
        None,
        "the decision log sees the plug-in's own"
    );
}

#[test]
fn a_placement_over_a_nodes_maximum_or_of_the_wrong_length_is_not_used() {
    let p = plugin(
        "wat-first-node-max",
        Kind::Placement,
        &guest("first-node.wat"),
    );
    let mut placing = placement_of(&p);
    // Three on a node that runs one: spread (the default) answers instead.
    assert_eq!(place(&mut *placing, 3, Some(1)), [1, 1, 1]);
    assert_eq!(fell_back("wat-first-node-max", "out-of-range"), 1);
    let why = placing.fallback().expect("the decision log is told");
    assert!(
        why.starts_with("the plug-in answered out of range: placed 3 instances on node 0")
            && why.ends_with("spread decided"),
        "{why}"
    );

    let short = variant(
        "first-node.wat",
        "(global $short i32 (i32.const 0))",
        "(global $short i32 (i32.const 1))",
    );
    let p = plugin("wat-first-node-short", Kind::Placement, &short);
    let mut placing = placement_of(&p);
    assert_eq!(place(&mut *placing, 3, None), [1, 1, 1]);
    assert_eq!(fell_back("wat-first-node-short", "out-of-range"), 1);
}

fn input(now: u64, idle_since: Option<u64>) -> (Duration, Option<Duration>) {
    (
        Duration::from_secs(now),
        idle_since.map(Duration::from_secs),
    )
}

fn hold(k: &mut dyn KeepAlive, now: u64, idle_since: Option<u64>) -> (Hold, Option<f64>) {
    let (now, idle_since) = input(now, idle_since);
    let params = Params::default();
    let i = KeepAliveInput {
        now,
        idle_since,
        ready: 1,
        resources: Resources::default(),
        cold_start: None,
        params: &params,
    };
    (k.hold(&i), k.priority(&i))
}

#[test]
fn a_plug_in_keep_alive_holds_and_releases() {
    let p = plugin("wat-keep-one", Kind::KeepAlive, &guest("keep-one.wat"));
    let mut k = keep_alive_of(&p);
    assert_eq!(hold(&mut *k, 100, None), (Hold::Kpa, None));
    assert_eq!(hold(&mut *k, 100, Some(70)), (Hold::Keep(1), Some(30.0)));
    assert_eq!(hold(&mut *k, 200, Some(70)), (Hold::Release, Some(130.0)));
}

#[test]
fn a_keep_alive_that_traps_leaves_knatives_windows_in_charge() {
    let bytes = variant(
        "keep-one.wat",
        "(global $trap i32 (i32.const 0))",
        "(global $trap i32 (i32.const 1))",
    );
    let p = plugin("wat-keep-trap", Kind::KeepAlive, &bytes);
    let mut k = keep_alive_of(&p);
    assert_eq!(hold(&mut *k, 100, Some(70)), (Hold::Kpa, None));
    assert_eq!(fell_back("wat-keep-trap", "trap"), 1);
}
