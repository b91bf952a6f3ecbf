//! Data-driven manifest tests: every file under `tests/data/valid` must be accepted; every file
//! under `tests/data/invalid` must produce exactly the findings in its `.expected` file.
//! Set `UPDATE_EXPECT=1` to rewrite the `.expected` files after an intended change, then
//! review the diff; every failing file is reported with its diff. A manifest with a `.config`
//! file next to it (`volumes.yaml`, `volumes.config`) is read under that fleet config instead
//! of Knative's defaults, for the rules that depend on the `features` flags.

// Tests are a driver of the pure crate: reading fixture files is their job.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::{Path, PathBuf};

use kantai_model::ServingConfig;
use kantai_model::manifest::{self, Document};
use kantai_testkit::{DataDir, expect_file};

fn data(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .expect("test data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

/// The fleet config a manifest is read under: its `.config` file's, else the defaults.
fn config_for(path: &Path) -> ServingConfig {
    match fs::read_to_string(path.with_extension("config")) {
        Ok(text) => ServingConfig::parse(&text)
            .unwrap_or_else(|e| panic!("{}: bad config: {e}", path.display())),
        Err(_) => ServingConfig::default(),
    }
}

fn read(path: &Path) -> Vec<Document> {
    let text = fs::read_to_string(path).expect("read");
    manifest::read(&text, &config_for(path))
        .unwrap_or_else(|e| panic!("{}: syntax error: {e}", path.display()))
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../..")
        .join(rel)
}

#[test]
fn valid_manifests_have_no_errors() {
    let mut files = data("valid");
    files.push(repo_file("examples/hello.yaml"));
    files.push(repo_file("examples/config.yaml"));
    for path in files {
        for doc in read(&path) {
            assert!(
                doc.is_valid(),
                "{} {}: {:#?}",
                path.display(),
                doc.title(),
                doc.report_lines()
            );
        }
    }
}

#[test]
fn invalid_manifests_report_every_expected_finding() {
    DataDir::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/invalid"),
        &["yaml", "json"],
    )
    .check(|case| {
        let path = &case.path;
        let mut got = String::new();
        for doc in read(path) {
            got.push_str(&format!("# {}\n", doc.title()));
            for line in doc.report_lines() {
                got.push_str(&line);
                got.push('\n');
            }
        }
        expect_file(&case.sibling("expected"), &got)
            .map_err(|diff| format!("findings of {} changed: {diff}", path.display()))?;
        assert!(
            read(path).iter().any(|d| !d.is_valid()),
            "{} should be rejected",
            path.display()
        );
        Ok(())
    });
}

#[test]
fn the_seed_demo_manifest_parses_unchanged() {
    let ours = repo_file("examples/hello.yaml");
    // The copy in this repository must be the seed's file, byte for byte, where the seed is
    // checked out next to the repository.
    let seed = repo_file("../shared/manifests/hello.yaml");
    if let Ok(seed_text) = fs::read_to_string(&seed) {
        assert_eq!(fs::read_to_string(&ours).expect("ours"), seed_text);
    }
    let docs = read(&ours);
    assert_eq!(docs.len(), 1);
    let doc = &docs[0];
    assert!(doc.is_valid(), "{:#?}", doc.report_lines());
    let Some(kantai_model::Object::Service(svc)) = &doc.object else {
        panic!("not a service")
    };
    assert_eq!(svc.metadata.name, "hello");
    let c = &svc.spec.template.spec.containers[0];
    assert_eq!(c.image, "docker.io/bonavadeur/shuka:v1.3");
    assert_eq!(c.env[0].value.as_deref(), Some("Konnichiwa"));
    assert_eq!(c.resources.limits["memory"].value(), 640e6);
    assert_eq!(c.resources.limits["cpu"].value(), 0.5);
    // Knative's defaults, exactly.
    let spec = &svc.spec.template.spec;
    assert_eq!(spec.timeout_seconds, Some(300));
    assert_eq!(spec.container_concurrency, Some(0));
    assert_eq!(spec.enable_service_links, Some(false));
    assert_eq!(c.name.as_deref(), Some("user-container"));
    let probe = c.readiness_probe.as_ref().expect("default probe");
    assert!(probe.tcp_socket.is_some());
    assert_eq!(probe.success_threshold, Some(1));
    assert_eq!(svc.spec.traffic.len(), 1);
    assert_eq!(svc.spec.traffic[0].latest_revision, Some(true));
    assert_eq!(svc.spec.traffic[0].percent, Some(100));
}

#[test]
fn objects_round_trip_through_yaml_and_json() {
    let mut files = data("valid");
    files.push(repo_file("examples/hello.yaml"));
    files.push(repo_file("examples/config.yaml"));
    for path in files {
        let objects: Vec<_> = read(&path).into_iter().filter_map(|d| d.object).collect();
        for text in [manifest::to_yaml(&objects), manifest::to_json(&objects)] {
            let again: Vec<_> = manifest::read(&text, &config_for(&path))
                .unwrap_or_else(|e| panic!("{}: re-read: {e}\n{text}", path.display()))
                .into_iter()
                .map(|d| {
                    assert!(d.is_valid(), "{:#?}\n{text}", d.report_lines());
                    d.object.expect("object")
                })
                .collect();
            assert_eq!(
                again,
                objects,
                "{} did not round-trip:\n{text}",
                path.display()
            );
        }
    }
}

#[test]
fn defaulted_output_looks_like_knative() {
    let objects: Vec<_> = read(&repo_file("examples/hello.yaml"))
        .into_iter()
        .filter_map(|d| d.object)
        .collect();
    let yaml = manifest::to_yaml(&objects);
    for needle in [
        "apiVersion: serving.knative.dev/v1",
        "kind: Service",
        "containerConcurrency: 0",
        "timeoutSeconds: 300",
        "name: user-container",
        "latestRevision: true",
        "percent: 100",
        "autoscaling.knative.dev/target: \"10\"",
        "autoscaling.knative.dev/target-burst-capacity: \"-1\"",
    ] {
        assert!(yaml.contains(needle), "{needle:?} not in\n{yaml}");
    }
}
