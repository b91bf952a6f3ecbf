//! Core v1 Secrets and ConfigMaps as the API admits them: data files under
//! `tests/data/objects/`, each a list of cases with a `body` (and an `old` stored object for
//! an update) and either the object to store (`want`, or `admitted: true`) or every finding
//! (`errors`). Every
//! case of a Secret also checks that no finding quotes any of its values.

// Tests are a driver of the pure crate: reading fixture files is their job.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kantai_model::core::{
    ConfigMap, Secret, admit_config_map, admit_secret, config_map_from_json, secret_from_json,
};
use kantai_model::meta::ObjectMeta;
use kantai_model::node::{Node, ParseLimits, parse_documents};
use serde_json::Value;

struct Case {
    name: String,
    body: Value,
    old: Option<Value>,
    want: Option<Value>,
    errors: Option<Vec<String>>,
    /// Admitted, with a stored object too big to write out.
    admitted: bool,
}

fn cases(file: &str) -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/objects")
        .join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs = parse_documents(&text, ParseLimits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Some(Value::Array(list)) = docs.first().map(Node::to_json) else {
        panic!("{}: expected a list of cases", path.display());
    };
    list.into_iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap_or("(unnamed)").to_owned();
            let mut body = v["body"].clone();
            // `fill: {key: n}` adds n bytes under stringData (sizes too big to write out).
            if let Some(Value::Object(fill)) = v.get("fill") {
                for (k, n) in fill {
                    let n = n.as_u64().unwrap_or_else(|| panic!("{name}: fill {k}")) as usize;
                    let field = if body["kind"] == "ConfigMap" {
                        "data"
                    } else {
                        "stringData"
                    };
                    body[field][k] = Value::String("x".repeat(n));
                }
            }
            let errors = v.get("errors").map(|e| {
                e.as_array()
                    .unwrap_or_else(|| panic!("{name}: errors must be a list"))
                    .iter()
                    .map(|s| s.as_str().unwrap_or_default().to_owned())
                    .collect()
            });
            Case {
                name,
                body,
                old: v.get("old").cloned(),
                want: v.get("want").cloned(),
                errors,
                admitted: v["admitted"] == Value::Bool(true),
            }
        })
        .collect()
}

/// Every value a Secret body carries, as written and decoded: none may reach a finding.
fn secret_values(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for field in ["data", "stringData"] {
        if let Some(Value::Object(m)) = body.get(field) {
            for v in m.values() {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let Ok(bytes) = STANDARD.decode(&text) {
                    out.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                out.push(text);
            }
        }
        if let Some(v) = body.get(field).filter(|v| !v.is_object()) {
            out.push(v.to_string().trim_matches('"').to_owned());
        }
    }
    // Short values would match by chance (a key, a digit of an offset).
    out.retain(|v| v.len() >= 4);
    out
}

fn run(
    file: &str,
    admit: fn(&Value, Option<&Value>) -> Result<Value, kantai_model::Findings>,
    secret: bool,
) {
    let mut failures = Vec::new();
    for c in cases(file) {
        let name = &c.name;
        let got = admit(&c.body, c.old.as_ref());
        if let Err(findings) = &got
            && secret
        {
            for secret in secret_values(&c.body) {
                for f in findings.all() {
                    if f.to_string().contains(&secret) {
                        failures.push(format!("{name}: a finding quotes a value: {f}"));
                    }
                }
            }
        }
        match (got, &c.want, &c.errors) {
            (Ok(_), None, None) if c.admitted => {}
            (Ok(g), Some(w), None) if &g == w => {}
            (Ok(g), Some(w), None) => failures.push(format!("{name}:\n  got  {g}\n  want {w}")),
            (Err(f), None, Some(want)) => {
                let got: Vec<String> = f.errors().map(ToString::to_string).collect();
                if &got != want {
                    failures.push(format!("{name}:\n  got  {got:#?}\n  want {want:#?}"));
                }
            }
            (Ok(g), _, Some(_)) => failures.push(format!("{name}: admitted, want errors: {g}")),
            (Err(f), _, None) => failures.push(format!("{name}: refused: {f}")),
            _ => failures.push(format!("{name}: give exactly one of want and errors")),
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}

#[test]
fn secrets_are_admitted_as_kubernetes_admits_them() {
    run("secrets.yaml", admit_secret, true);
}

#[test]
fn config_maps_are_admitted_as_kubernetes_admits_them() {
    run("configmaps.yaml", admit_config_map, false);
}

#[test]
fn a_secrets_debug_shows_keys_and_sizes_never_values() {
    let s = Secret {
        metadata: ObjectMeta {
            name: "db".into(),
            ..ObjectMeta::default()
        },
        type_: "Opaque".into(),
        data: [("password".to_owned(), b"hunter2-hunter2".to_vec())].into(),
        immutable: None,
    };
    let text = format!("{s:?} {s:#?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("password") && text.contains("15"), "{text}");
}

#[test]
fn a_stored_secret_reads_back_as_admitted() {
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "default", "uid": "u1", "resourceVersion": "7"},
        "data": {"user": "YWRtaW4="},
        "stringData": {"password": "s3cr3t"},
        "immutable": true
    });
    let stored = admit_secret(&body, None).expect("admitted");
    let s = secret_from_json(&stored).expect("reads back");
    assert_eq!(s.type_, "Opaque");
    assert_eq!(s.immutable, Some(true));
    assert_eq!(s.metadata.uid.as_deref(), Some("u1"));
    assert_eq!(
        s.data,
        [
            ("password".to_owned(), b"s3cr3t".to_vec()),
            ("user".to_owned(), b"admin".to_vec())
        ]
        .into()
    );
    assert_eq!(s.to_json(), stored);
}

#[test]
fn a_stored_config_map_reads_back_as_admitted() {
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app", "namespace": "default"},
        "data": {"level": "info"},
        "binaryData": {"logo.png": "iVBORw=="}
    });
    let stored = admit_config_map(&body, None).expect("admitted");
    let c: ConfigMap = config_map_from_json(&stored).expect("reads back");
    assert_eq!(c.data["level"], "info");
    assert_eq!(c.binary_data["logo.png"], vec![0x89, b'P', b'N', b'G']);
    assert_eq!(c.to_json(), stored);
}
