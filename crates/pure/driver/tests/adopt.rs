//! Data-driven tests of the rules the node agents, the control plane and the simulator share
//! for the instances a node started on its own: every `tests/data/adopt/*.yaml` holds one
//! moment of a local start's life and what each side makes of it.
//!
//! ```yaml
//! description: why this case exists
//! placed_here: 0          # what the node's placement puts on it
//! local: 1                # instances the node started on its own
//! age_ms: 100             # since they started (or since the control plane came back)
//! autonomous: false       # the control plane unreachable (optional)
//! reported_before: 0      # the count the node's previous report named
//! expect: {settle: Kept, counted: 1, takes: 1, adopt_now: true}
//! ```
//!
//! `takes` is how many instances `take_local` adds to the node's room on top of the
//! placement's.

// Tests are a driver of the pure crate: reading case files is their job.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use kantai_driver::{adopt_now, counted, settle, take_local};
use kantai_model::node::{ParseLimits, parse_documents};
use kantai_policy::{NodeView, Resources};
use kantai_testkit::{Case, DataDir};

fn check(case: &Case) -> Result<(), String> {
    let docs = parse_documents(&case.text, ParseLimits::default()).map_err(|e| e.message)?;
    let doc = docs.first().ok_or("one document")?.to_json();
    doc["description"]
        .as_str()
        .ok_or("a case says why it exists")?;
    let number = |k: &str| doc[k].as_u64().ok_or_else(|| format!("`{k}` is a number"));
    let placed = number("placed_here")? as u32;
    let local = number("local")? as u32;
    let age = Duration::from_millis(number("age_ms")?);
    let before = number("reported_before")? as u32;
    let autonomous = doc["autonomous"].as_bool().unwrap_or(false);
    let want = &doc["expect"];
    let mut view = NodeView::default();
    let one = Resources {
        cpu: 0.5,
        memory: 1e6,
    };
    take_local(&mut view, one, placed, local);
    let got = [
        (
            "settle",
            format!("{:?}", settle(placed, local, autonomous, age)),
        ),
        ("counted", counted(placed, local).to_string()),
        ("takes", view.instances.to_string()),
        ("adopt_now", adopt_now(before, local).to_string()),
    ];
    let mut failures = Vec::new();
    for (what, got) in got {
        let w = match &want[what] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => return Err(format!("`expect.{what}` is missing")),
            v => v.to_string(),
        };
        if w != got {
            failures.push(format!("{what}: expected {w}, got {got}"));
        }
    }
    if (view.cpu_used - 0.5 * f64::from(view.instances)).abs() > 1e-9 {
        failures.push(format!(
            "the room taken: {} CPU for {} instances of 0.5",
            view.cpu_used, view.instances
        ));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[test]
fn every_case_settles_counts_and_adopts_as_expected() {
    DataDir::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/adopt"),
        &["yaml"],
    )
    .only()
    .at_least(6)
    .check(check);
}
