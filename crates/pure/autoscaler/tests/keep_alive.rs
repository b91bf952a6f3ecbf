//! A keep-alive decision applied over the KPA's (`RevisionAutoscaler::tick_held`): keeping
//! raises the count within max-scale, releasing skips the stable window and the last pod's
//! retention but keeps the grace period, and never goes below min-scale.

use std::collections::BTreeMap;
use std::time::Duration;

use kantai_autoscaler::{Observation, RevisionAutoscaler, ScalingSpec};
use kantai_model::autoscaling::AutoscalingAnnotations;
use kantai_model::config::ServingConfig;
use kantai_model::{FieldPath, Findings};
use kantai_policy::Hold;

fn spec(annotations: &[(&str, &str)]) -> ScalingSpec {
    let config = ServingConfig::default();
    let anns: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut out = Findings::new();
    let parsed =
        AutoscalingAnnotations::parse(&anns, &config.autoscaler, &FieldPath::root(), &mut out);
    assert!(!out.has_errors(), "{out}");
    ScalingSpec::resolve(&config.autoscaler, &parsed, 0, config.progress_deadline)
}

/// Ten seconds of 5 concurrent requests from 0, then none; every 2-s tick until `until`
/// with `hold(t)`. Returns the count applied at each tick, by second.
fn run(spec: ScalingSpec, until: u64, hold: impl Fn(u64) -> Hold) -> BTreeMap<u64, u32> {
    let mut a = RevisionAutoscaler::new(spec, Duration::ZERO, 0);
    let mut ready = 0;
    let mut out = BTreeMap::new();
    for t in 0..=until {
        let concurrency = if t < 10 { 5.0 } else { 0.0 };
        a.record(
            Duration::from_secs(t),
            Observation {
                concurrency,
                requests: concurrency,
                ..Observation::default()
            },
        );
        if t % 2 == 0 {
            let d = a.tick_held(Duration::from_secs(t), ready, hold(t));
            ready = d.desired;
            out.insert(t, d.desired);
        }
    }
    out
}

/// The first tick from which the count stays 0.
fn zero_from(counts: &BTreeMap<u64, u32>) -> Option<u64> {
    let mut from = None;
    for (&t, &c) in counts {
        match (c, from) {
            (0, None) => from = Some(t),
            (0, Some(_)) => {}
            _ => from = None,
        }
    }
    from
}

const TBC_ZERO: (&str, &str) = ("autoscaling.knative.dev/target-burst-capacity", "0");

#[test]
fn under_knatives_keep_alive_an_idle_revision_goes_after_window_and_grace() {
    let counts = run(spec(&[TBC_ZERO]), 200, |_| Hold::Kpa);
    assert_eq!(zero_from(&counts), Some(100), "{counts:?}");
}

#[test]
fn a_release_skips_the_stable_window_but_keeps_the_grace_period() {
    let counts = run(spec(&[TBC_ZERO]), 200, |t| {
        if t >= 12 { Hold::Release } else { Hold::Kpa }
    });
    // Released at 12: the activator enters the path then, the instance goes 30 s later.
    assert_eq!(zero_from(&counts), Some(42), "{counts:?}");
}

#[test]
fn a_release_skips_the_last_pods_retention() {
    let s = spec(&[
        TBC_ZERO,
        (
            "autoscaling.knative.dev/scale-to-zero-pod-retention-period",
            "5m",
        ),
    ]);
    let kpa = run(s.clone(), 500, |_| Hold::Kpa);
    assert_eq!(zero_from(&kpa), Some(370), "{kpa:?}");
    let released = run(s, 500, |t| if t >= 12 { Hold::Release } else { Hold::Kpa });
    assert_eq!(zero_from(&released), Some(42), "{released:?}");
}

#[test]
fn a_release_never_goes_below_min_scale() {
    let counts = run(
        spec(&[TBC_ZERO, ("autoscaling.knative.dev/min-scale", "1")]),
        200,
        |t| if t >= 12 { Hold::Release } else { Hold::Kpa },
    );
    assert!(counts.values().all(|&c| c >= 1), "{counts:?}");
}

#[test]
fn a_keep_holds_an_idle_revision_past_knatives_window() {
    let counts = run(spec(&[TBC_ZERO]), 300, |t| {
        if (12..250).contains(&t) {
            Hold::Keep(1)
        } else if t >= 250 {
            Hold::Release
        } else {
            Hold::Kpa
        }
    });
    assert!(counts.range(12..250).all(|(_, &c)| c == 1), "{counts:?}");
    assert_eq!(zero_from(&counts), Some(280), "{counts:?}");
}

#[test]
fn a_keep_starts_an_instance_at_zero_ahead_of_demand() {
    let counts = run(spec(&[TBC_ZERO]), 300, |t| {
        if t >= 200 { Hold::Keep(1) } else { Hold::Kpa }
    });
    assert_eq!(counts[&198], 0, "{counts:?}");
    assert_eq!(
        counts[&200], 1,
        "the pre-warm did not start an instance: {counts:?}"
    );
    assert!(counts.range(200..).all(|(_, &c)| c == 1), "{counts:?}");
}

#[test]
fn a_keep_is_bounded_by_max_scale() {
    let counts = run(
        spec(&[TBC_ZERO, ("autoscaling.knative.dev/max-scale", "2")]),
        100,
        |_| Hold::Keep(5),
    );
    assert!(counts.values().all(|&c| c == 2), "{counts:?}");
}
