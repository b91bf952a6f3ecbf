//! Property tests: whatever the load and the settings, the autoscaler never goes above
//! max-scale, never below min-scale (while reachable), never asks for a negative count, and
//! keeps the activator in the path whenever nothing else can take requests.

use std::collections::BTreeMap;
use std::time::Duration;

use kantai_autoscaler::ScalingSpec;
use kantai_autoscaler::replay::{self, Ready, TraceRow};
use kantai_model::autoscaling::AutoscalingAnnotations;
use kantai_model::config::ServingConfig;
use kantai_model::{FieldPath, Findings};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Settings {
    min: u32,
    max: u32,
    initial: u32,
    activation: Option<u32>,
    window: u64,
    tbc: f64,
    target: f64,
    delay: u64,
    rps: bool,
    cc: u32,
    reachable: bool,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        0u32..4,
        prop::option::of(1u32..12),
        1u32..4,
        prop::option::of(2u32..5),
        prop::sample::select(vec![6u64, 12, 30, 60]),
        prop::sample::select(vec![-1.0, 0.0, 50.0, 211.0]),
        prop::sample::select(vec![1.0, 10.0, 100.0]),
        prop::sample::select(vec![0u64, 10]),
        any::<bool>(),
        prop::sample::select(vec![0u32, 1, 10]),
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(min, extra, initial, activation, window, tbc, target, delay, rps, cc, reachable)| {
                // Keep the combination valid: min <= initial, activation within bounds.
                let max = extra.map_or(0, |e| min.max(1) + e);
                let initial = if max > 0 { initial.min(max) } else { initial };
                let activation = activation.filter(|a| *a >= min && (max == 0 || *a <= max));
                Settings {
                    min,
                    max,
                    initial,
                    activation,
                    window,
                    tbc,
                    target,
                    delay,
                    rps,
                    cc,
                    reachable,
                }
            },
        )
}

fn trace() -> impl Strategy<Value = Vec<TraceRow>> {
    // Segments of constant load; each second of a segment reports once (or not at all).
    prop::collection::vec(
        (
            1u64..40,
            0.0f64..3000.0,
            prop::option::of(0u32..30),
            any::<bool>(),
        ),
        1..8,
    )
    .prop_map(|segments| {
        let mut rows = Vec::new();
        let mut t = 0u64;
        for (len, load, ready, silent) in segments {
            for s in t..t + len {
                if !silent {
                    rows.push(TraceRow {
                        time: Duration::from_secs(s),
                        ready: ready.map_or(Ready::Follow, Ready::Count),
                        concurrency: load,
                        rps: load * 2.0,
                    });
                }
            }
            t += len;
        }
        rows
    })
}

fn spec(s: &Settings) -> ScalingSpec {
    let mut anns = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        anns.insert(format!("autoscaling.knative.dev/{k}"), v);
    };
    put("min-scale", s.min.to_string());
    put("max-scale", s.max.to_string());
    put("initial-scale", s.initial.to_string());
    if let Some(a) = s.activation {
        put("activation-scale", a.to_string());
    }
    put("window", format!("{}s", s.window));
    put("target-burst-capacity", s.tbc.to_string());
    put("target", s.target.to_string());
    put("scale-down-delay", format!("{}s", s.delay));
    if s.rps {
        put("metric", "rps".into());
    }
    let config = ServingConfig::default();
    let mut out = Findings::new();
    let parsed =
        AutoscalingAnnotations::parse(&anns, &config.autoscaler, &FieldPath::root(), &mut out);
    assert!(!out.has_errors(), "generated settings are invalid: {out}");
    let mut spec =
        ScalingSpec::resolve(&config.autoscaler, &parsed, s.cc, config.progress_deadline);
    spec.reachable = s.reachable;
    spec
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn bounds_and_path_invariants_hold(s in settings(), rows in trace(), extra in 0u64..200) {
        let last = rows.last().map_or(0, |r| r.time.as_secs());
        let lines = replay::replay(spec(&s), &rows, Some(Duration::from_secs(last + extra)));
        prop_assert!(!lines.is_empty());
        for l in &lines {
            let d = &l.decision;
            let at = replay::format_secs(l.time);
            if s.max > 0 {
                prop_assert!(d.desired <= s.max, "t={at}: desired {} above max-scale {}", d.desired, s.max);
                prop_assert!(d.want <= s.max as i32, "t={at}: want {} above max-scale {}", d.want, s.max);
            }
            if s.reachable {
                prop_assert!(d.desired >= s.min, "t={at}: desired {} below min-scale {}", d.desired, s.min);
            }
            prop_assert!(d.want >= -1, "t={at}: want {}", d.want);
            if s.tbc < 0.0 {
                prop_assert_eq!(d.excess_burst_capacity, -1);
                prop_assert!(d.activator_in_path);
            }
            if s.tbc == 0.0 {
                prop_assert_eq!(d.excess_burst_capacity, 0);
            }
            if l.ready == 0 {
                prop_assert!(d.activator_in_path, "t={at}: no ready instance but the activator is out of the path");
            }
            prop_assert!(d.activators >= 2);
        }
    }

    #[test]
    fn replay_is_deterministic(s in settings(), rows in trace()) {
        let a = replay::replay(spec(&s), &rows, None);
        let b = replay::replay(spec(&s), &rows, None);
        prop_assert_eq!(a, b);
    }
}
