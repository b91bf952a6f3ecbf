//! Data-driven simulator tests: every `tests/scenarios/*.yaml` holds a scenario (the first
//! YAML document, exactly as `kantai sim` reads it) and, after `---`, the expectations on
//! its summary (`kantai sim --json`): a dotted path into the summary (numbers index lists,
//! `by_function.0.origins.1.kantai_request_duration_seconds.p50`) and the value or range it
//! must have. Each file's comment explains where the numbers come from.
//!
//! ```yaml
//! expect:
//!   - {path: kantai_requests_total.200, equals: 100}
//!   - {path: by_function.0.kantai_request_duration_seconds.p50, min: 0.004, max: 0.007}
//! ```

use std::path::Path;

use kantai_testkit::DataDir;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectations {
    expect: Vec<Check>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    path: String,
    #[serde(default)]
    equals: Option<Value>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, k| match k.parse::<usize>() {
            Ok(i) if v.is_array() => v.get(i),
            _ => v.get(k),
        })
}

/// Runs one scenario file; the summary as JSON.
pub fn run_file(path: &Path, scenario: &str) -> Value {
    let parsed = kantai_sim::Scenario::parse(scenario, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut p = kantai_sim::prepare_parsed(parsed, path, None).unwrap_or_else(|e| panic!("{e}"));
    let out = kantai_sim::run(&mut p, &mut |_| {}).expect("run");
    serde_json::to_value(&out.summary).expect("json")
}

#[test]
fn every_scenario_meets_its_expectations() {
    DataDir::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios"),
        &["yaml"],
    )
    .at_least(8)
    .check(|case| {
        let f = &case.path;
        let (scenario, expect) = case
            .text
            .split_once("\n---\n")
            .unwrap_or_else(|| panic!("{}: no `---` before the expectations", f.display()));
        let e: Expectations = serde_saphyr::from_str(expect)
            .unwrap_or_else(|e| panic!("{}: expectations: {e}", f.display()));
        let summary = run_file(f, scenario);
        let mut failures = Vec::new();
        for c in &e.expect {
            let Some(v) = lookup(&summary, &c.path) else {
                failures.push(format!("{} is missing", c.path));
                continue;
            };
            // Numbers compare as numbers (4 equals 4.0), anything else as written.
            let differs = |want: &Value| match (v.as_f64(), want.as_f64()) {
                (Some(a), Some(b)) => a != b,
                _ => v != want,
            };
            if let Some(want) = &c.equals
                && differs(want)
            {
                failures.push(format!("{} = {v}, expected {want}", c.path));
            }
            let x = v.as_f64();
            if let Some(min) = c.min
                && x.is_none_or(|x| x < min)
            {
                failures.push(format!("{} = {v}, expected ≥ {min}", c.path));
            }
            if let Some(max) = c.max
                && x.is_none_or(|x| x > max)
            {
                failures.push(format!("{} = {v}, expected ≤ {max}", c.path));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    });
}
