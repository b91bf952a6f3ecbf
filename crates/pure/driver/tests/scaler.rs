//! The per-revision scaler both drivers call: its tick rule, its measurements and its
//! placement skip.

use std::time::Duration;

use kantai_driver::scaler::{NodeLoad, RevisionScaler, seed, tick_due};
use kantai_driver::{MEASURE_HALF_LIFE, RevisionSettings};
use kantai_model::ServingConfig;
use kantai_model::serving::Revision;
use kantai_policy::{FleetView, NodeView, RttMatrix};

fn settings() -> RevisionSettings {
    let (mut s, problems) = RevisionSettings::of(&Revision::default(), &ServingConfig::default());
    assert!(problems.is_empty(), "{problems:?}");
    s.scaling.reachable = true;
    s
}

fn fleet(n: usize) -> FleetView {
    FleetView {
        nodes: (0..n)
            .map(|i| NodeView {
                name: format!("n{i}"),
                ready: true,
                ..NodeView::default()
            })
            .collect(),
        rtt: RttMatrix::new(n),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_poke_ticks_a_revision_at_zero_whose_gateway_holds_requests() {
    let held = NodeLoad {
        poke: true,
        held: 1,
        ..NodeLoad::default()
    };
    assert!(tick_due(false, &held, 0, 100.0));
    assert!(
        !tick_due(false, &held, 1, 100.0),
        "not at zero, and room for it"
    );
    assert!(
        !tick_due(false, &NodeLoad { held: 0, ..held }, 0, 100.0),
        "nothing held"
    );
    assert!(
        !tick_due(
            false,
            &NodeLoad {
                poke: false,
                ..held
            },
            0,
            100.0
        ),
        "a periodic report"
    );
    assert!(
        tick_due(true, &NodeLoad::default(), 3, 100.0),
        "the KPA woke"
    );
}

#[test]
fn a_poke_ticks_a_revision_whose_held_requests_exceed_what_its_scale_can_take() {
    let burst = NodeLoad {
        poke: true,
        held: 99,
        ..NodeLoad::default()
    };
    // containerConcurrency 1: one instance asked for takes one of the 99.
    assert!(tick_due(false, &burst, 1, 1.0));
    assert!(
        !tick_due(false, &burst, 99, 1.0),
        "the scale asked for takes them all"
    );
    assert!(!tick_due(false, &burst, 1, 100.0), "one instance takes 100");
    // 40 held and 60 already at instances: 100 in flight, more than 60 instances take.
    let grown = NodeLoad {
        held: 40,
        concurrency: 100.0,
        ..burst
    };
    assert!(
        tick_due(false, &grown, 60, 1.0),
        "the burst outgrew the scale"
    );
    assert!(!tick_due(false, &grown, 100, 1.0));
    assert!(
        !tick_due(
            false,
            &NodeLoad {
                poke: false,
                ..burst
            },
            1,
            1.0
        ),
        "a periodic report waits for the tick"
    );
}

#[test]
fn load_reaching_a_revision_scaled_to_zero_wakes_it() {
    let mut sc: RevisionScaler<u32> =
        RevisionScaler::new(&settings(), seed("default", "r"), secs(0), 0);
    // No traffic for longer than the stable window and the grace period: scaled to zero.
    let mut ready = 0;
    for t in 0..400 {
        sc.record(secs(t), &0, &NodeLoad::default());
        ready = sc.tick(secs(t), ready).desired;
    }
    assert_eq!(sc.tick(secs(400), 0).desired, 0);
    let load = NodeLoad {
        concurrency: 1.0,
        requests: 1.0,
        ..NodeLoad::default()
    };
    assert!(sc.record(secs(401), &0, &load));
    assert!(sc.tick(secs(401), 0).desired >= 1);
}

#[test]
fn demand_and_serving_time_are_averaged_per_node_with_the_half_life() {
    let mut sc: RevisionScaler<u32> = RevisionScaler::new(&settings(), 1, secs(0), 0);
    let load = |requests, served, serving_ms| NodeLoad {
        requests,
        served,
        serving_ms,
        ..NodeLoad::default()
    };
    sc.record(secs(0), &3, &load(10.0, 1, 100.0));
    sc.record(secs(0) + MEASURE_HALF_LIFE, &3, &load(20.0, 1, 200.0));
    // A report of nothing served leaves the serving time as it was.
    sc.record(secs(0) + MEASURE_HALF_LIFE, &3, &load(20.0, 0, 0.0));
    let demand: Vec<_> = sc.demand().collect();
    let serving: Vec<_> = sc.serving().collect();
    assert_eq!(serving.len(), 1);
    assert_eq!(*serving[0].0, 3);
    assert!((serving[0].1 - 150.0).abs() < 1e-9, "{serving:?}");
    assert_eq!(*demand[0].0, 3);
    assert!(demand[0].1 > 15.0 && demand[0].1 < 20.0, "{demand:?}");
}

#[test]
fn reports_within_a_second_add_up_as_one_summed_report() {
    let load = |c| NodeLoad {
        concurrency: c,
        requests: c,
        ..NodeLoad::default()
    };
    let mut per_node: RevisionScaler<u32> = RevisionScaler::new(&settings(), 1, secs(0), 1);
    let mut summed: RevisionScaler<u32> = RevisionScaler::new(&settings(), 1, secs(0), 1);
    for t in 0..30 {
        per_node.record(secs(t), &0, &load(3.0));
        per_node.record(secs(t), &1, &load(5.0));
        summed.record_total(secs(t), &load(8.0));
        assert_eq!(
            per_node.tick(secs(t), 1),
            summed.tick(secs(t), 1),
            "at {t} s"
        );
    }
}

#[test]
fn a_policy_that_does_not_rebalance_is_placed_again_only_when_the_count_changes() {
    let mut sc: RevisionScaler<u32> = RevisionScaler::new(&settings(), 1, secs(0), 0);
    let fleet = fleet(3);
    let keys = [0, 1, 2];
    assert!(sc.placement_due(2), "never placed");
    let (d, rec) = sc.place(&fleet, &keys, "r", &[0, 0, 0], 2, secs(0), None, None);
    assert_eq!(d.per_node.iter().sum::<u32>(), 2);
    assert!(rec.is_none());
    assert!(!sc.placement_due(2));
    assert!(sc.placement_due(3));
}

#[test]
fn a_placement_comes_with_its_record_when_asked() {
    let mut sc: RevisionScaler<u32> = RevisionScaler::new(&settings(), 1, secs(0), 0);
    let (d, rec) = sc.place(
        &fleet(2),
        &[0, 1],
        "r",
        &[0, 0],
        1,
        secs(4),
        None,
        Some("ns"),
    );
    let rec = rec.expect("a record");
    assert_eq!(rec.namespace, "ns");
    assert_eq!(rec.policy, sc.policy());
    assert_eq!(d.per_node.iter().sum::<u32>(), 1);
}
