//! What a revision takes from Secrets and ConfigMaps, resolved: scenario files under
//! `tests/data/resolve/`, each a list of cases with a revision spec, the namespace's
//! Secrets and ConfigMaps (as the API stores them), the expected `ResolvedConfig` as JSON
//! (`want`, file data in base64) and, where given, the expected `references`.

// Tests are a driver of the pure crate: reading fixture files is their job.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::Path;

use kantai_model::core::{config_map_from_json, secret_from_json};
use kantai_model::decode::Decode;
use kantai_model::node::{Node, ParseLimits, parse_documents};
use kantai_model::serving::RevisionSpec;
use kantai_model::serving::resolve::{Objects, Reference, references, resolve};
use kantai_model::{FieldPath, Findings};
use serde_json::Value;

fn run(file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/resolve")
        .join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs = parse_documents(&text, ParseLimits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Some(Value::Array(list)) = docs.first().map(Node::to_json) else {
        panic!("{}: expected a list of cases", path.display());
    };
    let mut failures = Vec::new();
    for case in list {
        let name = case["name"].as_str().unwrap_or("(unnamed)").to_owned();
        let mut out = Findings::new();
        let spec = RevisionSpec::decode(
            &Node::from_json(&case["revision"]),
            &FieldPath::root(),
            &mut out,
        );
        assert!(!out.has_errors(), "{name}: revision: {out}");
        let spec = spec.unwrap_or_else(|| panic!("{name}: revision did not decode"));
        let mut objects = Objects::default();
        for s in case["secrets"].as_array().into_iter().flatten() {
            let s = secret_from_json(s).unwrap_or_else(|e| panic!("{name}: secret: {e}"));
            objects.secrets.insert(s.metadata.name.clone(), s);
        }
        for c in case["configMaps"].as_array().into_iter().flatten() {
            let c = config_map_from_json(c).unwrap_or_else(|e| panic!("{name}: configMap: {e}"));
            objects.config_maps.insert(c.metadata.name.clone(), c);
        }
        let namespace = case["namespace"].as_str().unwrap_or("default");
        let got = serde_json::to_value(resolve(&spec, namespace, &objects))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = match &case["want"] {
            Value::Null => serde_json::json!({}),
            w => w.clone(),
        };
        if got != want {
            failures.push(format!("{name}:\n  got  {got}\n  want {want}"));
        }
        if let Some(w) = case.get("references") {
            let want: Vec<Reference> = serde_json::from_value(w.clone())
                .unwrap_or_else(|e| panic!("{name}: references: {e}"));
            let got = references(&spec);
            if got != want {
                failures.push(format!(
                    "{name}: references\n  got  {got:?}\n  want {want:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}

#[test]
fn env_from_secrets_and_config_maps() {
    run("env.yaml");
}

#[test]
fn volumes_become_files() {
    run("volumes.yaml");
}

#[test]
fn missing_references_are_named_as_the_kubelet_names_them() {
    run("missing.yaml");
}

#[test]
fn references_are_each_object_once() {
    run("references.yaml");
}
