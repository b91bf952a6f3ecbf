//! Data-driven tests of a revision's settings: every `tests/data/settings/*.yaml` holds a
//! Revision as stored (nothing defaulted), an optional fleet config, and the settings
//! expected. Only the keys under `expect` are checked, so each file states what it is about.
//!
//! ```yaml
//! description: why this case exists
//! config: {policies: {placement: pack}}        # the fleet config file (optional)
//! revision: {apiVersion: serving.knative.dev/v1, kind: Revision, ...}
//! expect:
//!   timeout: 300s                              # durations as Rust prints them; none: absent
//!   problems: []                               # what could not be used, in order
//! ```

// Tests are a driver of the pure crate: reading case files is their job.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use kantai_driver::RevisionSettings;
use kantai_model::node::{Node, ParseLimits, parse_documents};
use kantai_model::{Findings, Object, ServingConfig};

/// Every setting a case may check, by its key, as text.
fn rendered(s: &RevisionSettings, problems: &[String], key: &str) -> Option<String> {
    let opt = |d: Option<std::time::Duration>| d.map_or("none".to_owned(), |d| format!("{d:?}"));
    Some(match key {
        "containerConcurrency" => s.container_concurrency.to_string(),
        "timeout" => format!("{:?}", s.timeout),
        "responseStart" => opt(s.response_start),
        "idle" => opt(s.idle),
        "h2c" => s.h2c.to_string(),
        "cpu" => s.resources.cpu.to_string(),
        "memory" => s.resources.memory.to_string(),
        "placement" => s.placement.clone(),
        "loadBalancer" => s.load_balancer.clone(),
        "queue" => s.queue.clone(),
        "holdLimit" => s.hold_limit.to_string(),
        "queueLimit" => s.queue_limit.to_string(),
        "pinned" => format!("{:?}", s.params.pinned),
        "defaultDeadline" => format!("{:?}", s.params.default_deadline),
        "target" => s.scaling.target.to_string(),
        "minScale" => s.scaling.min_scale.to_string(),
        "maxScale" => s.scaling.max_scale.to_string(),
        "initialScale" => s.scaling.initial_scale.to_string(),
        "stableWindow" => format!("{:?}", s.scaling.stable_window),
        "targetBurstCapacity" => s.scaling.target_burst_capacity.to_string(),
        "problems" => format!("{problems:?}"),
        _ => return None,
    })
}

/// A scalar of the case file as text; a list as the Debug rendering of its strings.
fn expected(n: &Node) -> String {
    let v = n.to_json();
    match v.as_array() {
        Some(items) => format!(
            "{:?}",
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
        ),
        None => v.as_str().map_or_else(|| v.to_string(), str::to_owned),
    }
}

fn run(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("case file");
    let docs = parse_documents(&text, ParseLimits::default()).expect("case file is YAML");
    let case = docs.first().expect("one document");
    assert!(
        case.get_str("description").is_some(),
        "a case says why it exists"
    );
    let mut out = Findings::new();
    let config = match case.get("config") {
        Some(c) => ServingConfig::decode_fleet(c, &mut out).expect("config"),
        None => ServingConfig::default(),
    };
    let revision = match Object::decode(case.get("revision").expect("revision"), &mut out) {
        Some(Object::Revision(r)) => r,
        _ => panic!("`revision` is not a Revision"),
    };
    assert!(!out.has_errors(), "{out:?}");
    let (settings, problems) = RevisionSettings::of(&revision, &config);
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expect = case.get("expect").expect("expect").to_json();
    let keys: Vec<String> = expect
        .as_object()
        .expect("expect is a mapping")
        .keys()
        .cloned()
        .collect();
    let mut failures = Vec::new();
    for key in keys {
        let want = expected(case.get("expect").and_then(|e| e.get(&key)).expect("key"));
        match rendered(&settings, &problems, &key) {
            None => failures.push(format!("{}: unknown key {key:?}", path.display())),
            Some(got) if got != want => failures.push(format!(
                "{}: {key}: expected {want}, got {got}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    failures
}

#[test]
fn every_case_gives_its_settings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/settings");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/data/settings")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let failures: Vec<String> = files.iter().flat_map(|f| run(f)).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
