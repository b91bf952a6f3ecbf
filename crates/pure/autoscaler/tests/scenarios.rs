//! Data-driven autoscaler tests: every `tests/scenarios/*.yaml` describes a load series and
//! the decisions expected at given ticks (exact values or ranges). They run through
//! `kantai_autoscaler::replay`, the same loop as `kantai autoscale replay`.
//!
//! Scenario format:
//!
//! ```yaml
//! description: why this scenario exists and how its numbers follow from Knative's rules
//! annotations: {autoscaling.knative.dev/target: "10"}   # the revision's annotations
//! config: {autoscaler: {stable-window: 30s}}             # fleet config (optional)
//! containerConcurrency: 0                                 # optional
//! reachable: true                                         # optional
//! until: 120                                              # tick until (optional)
//! series:                                                 # reports
//!   - {from: 0, to: 60, ready: follow, concurrency: 50}  # each second in [from, to)
//!   - {at: 61.5, ready: 2, concurrency: 3, rps: 10}
//! expect:
//!   - {at: 60, desired: 8, panic: false}                  # the tick at 60
//!   - {from: 62, to: 100, desired: [8, 9]}                # every tick in [62, 100]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kantai_testkit::DataDir;
use std::path::Path;
use std::time::Duration;

use kantai_autoscaler::replay::{self, Ready, TickLine, TraceRow};
use kantai_autoscaler::{Activity, ScalingSpec};
use kantai_model::autoscaling::AutoscalingAnnotations;
use kantai_model::config::ServingConfig;
use kantai_model::{FieldPath, Findings};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Scenario {
    description: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    container_concurrency: u32,
    #[serde(default = "yes")]
    reachable: bool,
    until: Option<f64>,
    series: Vec<Segment>,
    expect: Vec<Expect>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Segment {
    at: Option<f64>,
    from: Option<f64>,
    to: Option<f64>,
    every: Option<f64>,
    ready: ReadySpec,
    concurrency: f64,
    #[serde(default)]
    rps: f64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ReadySpec {
    Count(u32),
    Word(String),
}

#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Value {
    Exact(i64),
    Range([i64; 2]),
}

impl Value {
    fn holds(self, v: i64) -> bool {
        match self {
            Value::Exact(x) => v == x,
            Value::Range([lo, hi]) => (lo..=hi).contains(&v),
        }
    }
    fn show(self) -> String {
        match self {
            Value::Exact(x) => x.to_string(),
            Value::Range([lo, hi]) => format!("[{lo}, {hi}]"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    at: Option<f64>,
    from: Option<f64>,
    to: Option<f64>,
    desired: Option<Value>,
    want: Option<Value>,
    ebc: Option<Value>,
    panic: Option<bool>,
    activator_in_path: Option<bool>,
    activity: Option<String>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn spec_of(s: &Scenario) -> ScalingSpec {
    let config = match &s.config {
        None => ServingConfig::default(),
        Some(v) => ServingConfig::parse(&kantai_model::manifest::to_yaml_one(v))
            .unwrap_or_else(|e| panic!("scenario config: {e}")),
    };
    let mut out = Findings::new();
    let anns = AutoscalingAnnotations::parse(
        &s.annotations,
        &config.autoscaler,
        &FieldPath::fields("annotations"),
        &mut out,
    );
    assert!(!out.has_errors(), "scenario annotations: {out}");
    let mut spec = ScalingSpec::resolve(
        &config.autoscaler,
        &anns,
        s.container_concurrency,
        config.progress_deadline,
    );
    spec.reachable = s.reachable;
    spec
}

fn rows_of(s: &Scenario) -> Vec<TraceRow> {
    let mut rows = Vec::new();
    for seg in &s.series {
        let ready = match &seg.ready {
            ReadySpec::Count(n) => Ready::Count(*n),
            ReadySpec::Word(w) if w == "follow" => Ready::Follow,
            ReadySpec::Word(w) => panic!("ready must be a number or \"follow\", got {w:?}"),
        };
        let times: Vec<f64> = match (seg.at, seg.from, seg.to) {
            (Some(at), None, None) => vec![at],
            (None, Some(from), Some(to)) => {
                let step = seg.every.unwrap_or(1.0);
                let n = ((to - from) / step).ceil().max(0.0) as usize;
                (0..n).map(|i| from + i as f64 * step).collect()
            }
            _ => panic!("a series segment has either `at` or `from` and `to`"),
        };
        rows.extend(times.into_iter().map(|t| TraceRow {
            time: secs(t),
            ready,
            concurrency: seg.concurrency,
            rps: seg.rps,
        }));
    }
    rows
}

fn check(name: &str, s: &Scenario, lines: &[TickLine]) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, e) in s.expect.iter().enumerate() {
        let selected: Vec<&TickLine> = match (e.at, e.from, e.to) {
            (Some(at), None, None) => {
                // The last decision taken at that time (a poke and a tick may share it).
                lines
                    .iter()
                    .rev()
                    .find(|l| l.time == secs(at))
                    .into_iter()
                    .collect()
            }
            (None, Some(from), Some(to)) => lines
                .iter()
                .filter(|l| !l.poked && l.time >= secs(from) && l.time <= secs(to))
                .collect(),
            _ => panic!("{name}: expect[{i}] needs `at`, or `from` and `to`"),
        };
        if selected.is_empty() {
            failures.push(format!("expect[{i}]: no tick in the selected time"));
        }
        for l in selected {
            let d = &l.decision;
            let t = replay::format_secs(l.time);
            let mut fail = |what: &str, want: String, got: String| {
                failures.push(format!("expect[{i}] at t={t}: {what} = {got}, want {want}"));
            };
            if let Some(v) = e.desired
                && !v.holds(i64::from(d.desired))
            {
                fail("desired", v.show(), d.desired.to_string());
            }
            if let Some(v) = e.want
                && !v.holds(i64::from(d.want))
            {
                fail("want", v.show(), d.want.to_string());
            }
            if let Some(v) = e.ebc
                && !v.holds(i64::from(d.excess_burst_capacity))
            {
                fail("ebc", v.show(), d.excess_burst_capacity.to_string());
            }
            if let Some(p) = e.panic
                && p != d.panic
            {
                fail("panic", p.to_string(), d.panic.to_string());
            }
            if let Some(p) = e.activator_in_path
                && p != d.activator_in_path
            {
                fail(
                    "activatorInPath",
                    p.to_string(),
                    d.activator_in_path.to_string(),
                );
            }
            if let Some(a) = &e.activity {
                let got = match d.activity {
                    Activity::Activating => "Activating",
                    Activity::Active => "Active",
                    Activity::Inactive => "Inactive",
                };
                if a != got {
                    fail("activity", a.clone(), got.to_owned());
                }
            }
        }
    }
    failures
}

#[test]
fn autoscaler_scenarios() {
    // The issue asks for at least 30 scenarios.
    DataDir::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios"),
        &["yaml"],
    )
    .at_least(30)
    .check(|case| {
        let name = &case.name;
        let s: Scenario =
            serde_saphyr::from_str(&case.text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            !s.description.trim().is_empty(),
            "{name}: describe the scenario"
        );
        assert!(!s.expect.is_empty(), "{name}: no expectations");
        let lines = replay::replay(spec_of(&s), &rows_of(&s), s.until.map(secs));
        let failures = check(name, &s, &lines);
        if failures.is_empty() {
            return Ok(());
        }
        let mut report = format!("{}\n", s.description.trim());
        for f in failures {
            let _ = writeln!(report, "  {f}");
        }
        let _ = write!(report, "  replay:\n{}", replay::format_csv(&lines, true));
        Err(report)
    });
}
