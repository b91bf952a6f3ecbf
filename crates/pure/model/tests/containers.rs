//! What the model tells a container runtime about a container: the pull policy an image gets,
//! whether its tag is resolved, the security settings a container runs with, and the resolved
//! images a revision's status keeps.

// Tests are a driver of the pure crate: reading fixture files is their job.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use kantai_model::ServingConfig;
use kantai_model::manifest;
use kantai_model::serving::derive::{RevisionObservation, revision_status};
use kantai_model::serving::{
    Capabilities, Container, ContainerStatus, Object, PodSecurityContext, PullPolicy, Revision,
    RevisionSpec, RevisionStatus, SecurityContext,
};

/// One row of `tests/data/images.txt`.
struct Row {
    line: usize,
    image: String,
    policy: PullPolicy,
    skips: bool,
}

fn image_table() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/images.txt");
    let text = fs::read_to_string(&path).expect("images.txt");
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [image, policy, skips] = cols[..] else {
            panic!("images.txt:{}: want 3 columns, got {cols:?}", i + 1)
        };
        rows.push(Row {
            line: i + 1,
            image: image.to_owned(),
            policy: match policy {
                "Always" => PullPolicy::Always,
                "IfNotPresent" => PullPolicy::IfNotPresent,
                "Never" => PullPolicy::Never,
                other => panic!("images.txt:{}: policy {other:?}", i + 1),
            },
            skips: match skips {
                "yes" => true,
                "no" => false,
                other => panic!("images.txt:{}: skips {other:?}", i + 1),
            },
        });
    }
    assert!(rows.len() > 10, "images.txt lost its rows");
    rows
}

#[test]
fn an_undeclared_pull_policy_follows_the_tag_as_in_kubernetes() {
    for row in image_table() {
        assert_eq!(
            PullPolicy::effective(&row.image, None),
            row.policy,
            "images.txt:{}: {}",
            row.line,
            row.image
        );
    }
}

#[test]
fn a_declared_pull_policy_wins_over_the_tag() {
    for row in image_table() {
        for declared in [
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Never,
        ] {
            assert_eq!(
                PullPolicy::effective(&row.image, Some(declared)),
                declared,
                "images.txt:{}",
                row.line
            );
        }
    }
}

#[test]
fn tag_resolution_is_skipped_for_local_registries_and_digests() {
    let config = ServingConfig::default();
    for row in image_table() {
        assert_eq!(
            config.skips_tag_resolution(&row.image),
            row.skips,
            "images.txt:{}: {}",
            row.line,
            row.image
        );
    }
}

#[test]
fn images_without_a_registry_host_are_on_docker_hub_in_either_spelling() {
    for listed in ["docker.io", "index.docker.io"] {
        let config = ServingConfig::parse(&format!(
            "deployment:\n  registries-skipping-tag-resolving: \" {listed} , ko.local,\"\n"
        ))
        .expect("valid");
        for image in [
            "app:v1",
            "library/app",
            "docker.io/library/app:v1",
            "index.docker.io/app",
        ] {
            assert!(config.skips_tag_resolution(image), "{listed}: {image}");
        }
        assert!(config.skips_tag_resolution("ko.local/app"), "{listed}");
        assert!(!config.skips_tag_resolution("kind.local/app"), "{listed}");
        assert!(!config.skips_tag_resolution("ghcr.io/app:v1"), "{listed}");
    }
}

#[test]
fn the_deployment_section_defaults_to_knatives_values() {
    let defaults = ServingConfig::parse("deployment: {}\n").expect("valid");
    let mut want: Vec<&str> = defaults
        .registries_skipping_tag_resolving
        .iter()
        .map(String::as_str)
        .collect();
    want.sort_unstable();
    assert_eq!(want, ["dev.local", "kind.local", "ko.local"]);
    assert_eq!(defaults.digest_resolution_timeout, Duration::from_secs(10));
}

#[test]
fn the_deployment_section_reads_knatives_keys() {
    let c = ServingConfig::parse(
        "deployment:\n  registries-skipping-tag-resolving: \"\"\n  digest-resolution-timeout: 2500ms\n",
    )
    .expect("valid");
    assert!(c.registries_skipping_tag_resolving.is_empty());
    assert!(!c.skips_tag_resolution("kind.local/app"));
    assert_eq!(c.digest_resolution_timeout, Duration::from_millis(2500));
}

#[test]
fn a_digest_resolution_timeout_must_be_positive() {
    for bad in ["0s", "-1s", "soon"] {
        let err = ServingConfig::parse(&format!(
            "deployment:\n  digest-resolution-timeout: {bad}\n"
        ))
        .expect_err(bad)
        .to_string();
        assert!(
            err.starts_with("line 2: deployment.digest-resolution-timeout: "),
            "{bad}: {err}"
        );
    }
}

fn container(sc: Option<SecurityContext>) -> Container {
    Container {
        image: "app:v1".into(),
        security_context: sc,
        ..Container::default()
    }
}

#[test]
fn the_container_security_context_wins_field_by_field_over_the_pods() {
    let spec = RevisionSpec {
        security_context: Some(PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            run_as_non_root: Some(true),
            extra: [("fsGroup".to_owned(), 2000.into())].into(),
        }),
        ..RevisionSpec::default()
    };
    let c = container(Some(SecurityContext {
        run_as_user: Some(2000),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            add: vec![],
            drop: vec!["ALL".into()],
        }),
        ..SecurityContext::default()
    }));
    let sc = spec.security_for(&c);
    assert_eq!(sc.run_as_user, Some(2000), "the container's own");
    assert_eq!(sc.run_as_group, Some(1000), "the pod's");
    assert_eq!(sc.run_as_non_root, Some(true), "the pod's");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.map(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    assert!(
        !sc.extra.contains_key("fsGroup"),
        "pod-only fields stay with the pod"
    );
}

#[test]
fn the_pods_seccomp_profile_applies_unless_the_container_sets_one() {
    let profile = |t: &str| serde_json::json!({ "type": t });
    let spec = RevisionSpec {
        security_context: Some(PodSecurityContext {
            extra: [("seccompProfile".to_owned(), profile("RuntimeDefault"))].into(),
            ..PodSecurityContext::default()
        }),
        ..RevisionSpec::default()
    };
    let bare = spec.security_for(&container(None));
    assert_eq!(bare.extra["seccompProfile"], profile("RuntimeDefault"));
    let own = container(Some(SecurityContext {
        extra: [("seccompProfile".to_owned(), profile("Unconfined"))].into(),
        ..SecurityContext::default()
    }));
    assert_eq!(
        spec.security_for(&own).extra["seccompProfile"],
        profile("Unconfined")
    );
}

#[test]
fn without_any_security_context_a_container_gets_the_empty_one() {
    let sc = RevisionSpec::default().security_for(&container(None));
    assert_eq!(sc, SecurityContext::default());
}

const DIGEST: &str = "127.0.0.1:5055/fn/hello@sha256:\
                      2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn revision_with_statuses() -> Revision {
    let text = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata: {{name: hello-00001}}\n\
         spec: {{containers: [{{image: \"127.0.0.1:5055/fn/hello:v1\"}}]}}\n\
         status:\n  containerStatuses:\n  - {{name: user-container, imageDigest: \"{DIGEST}\"}}\n"
    );
    let docs = manifest::read(&text, &ServingConfig::default()).expect("parses");
    assert!(docs[0].is_valid(), "{:#?}", docs[0].report_lines());
    match docs[0].object.clone() {
        Some(Object::Revision(r)) => r,
        other => panic!("not a revision: {other:?}"),
    }
}

#[test]
fn container_statuses_are_read_and_written_in_knatives_shape() {
    let rev = revision_with_statuses();
    let status = rev.status.clone().expect("status");
    assert_eq!(
        status.container_statuses,
        [ContainerStatus {
            name: "user-container".into(),
            image_digest: Some(DIGEST.into()),
        }]
    );
    let json = Object::Revision(rev).to_json();
    assert_eq!(
        json["status"]["containerStatuses"],
        serde_json::json!([{ "name": "user-container", "imageDigest": DIGEST }])
    );
}

#[test]
fn a_revision_without_resolved_images_writes_no_container_statuses() {
    let json = serde_json::to_value(RevisionStatus::default()).expect("json");
    assert!(json.get("containerStatuses").is_none(), "{json}");
}

#[test]
fn the_derived_revision_status_keeps_the_resolved_images() {
    let rev = revision_with_statuses();
    let derived = revision_status(
        &rev,
        &RevisionObservation {
            ready: 1,
            desired: 1,
            ever_ready: true,
            active: Some(true),
            ..RevisionObservation::default()
        },
        "2026-12-02T00:00:00Z",
    );
    assert_eq!(
        derived.container_statuses,
        rev.status.expect("status").container_statuses
    );
}
