//! The official Kubernetes Python client (PyPI `kubernetes`) against a kantai fleet, through
//! the fleet's kubeconfig (TLS with its CA, bearer token): Knative Services through
//! `CustomObjectsApi` (create, get, list, merge patch, replace, delete, watch) and pods and
//! nodes through `CoreV1Api`, read into the client's typed models while a service scales.
//! The scripts are `tests/python/*.py`; each prints the steps it checked.
//!
//! Skipped, saying so, where the interpreter (`KANTAI_PYTHON`, else `python3`) has no
//! `kubernetes` package, unless `KANTAI_REQUIRE_PYTHON_KUBERNETES=1` (as CI sets, after
//! installing it) makes that a failure.

use crate::common;
use crate::python;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TWO_NODES, TestFleet};

const REQUIRE: &str = "KANTAI_REQUIRE_PYTHON_KUBERNETES";

/// The interpreter, if it has the client (else the test is skipped, or fails in CI).
fn client() -> Option<PathBuf> {
    python::with_module("kubernetes", REQUIRE).map(|(python, _)| python)
}

/// Runs one client script against `fleet` and insists that it succeeds.
async fn script(python: &Path, fleet: &TestFleet, name: &str, limit: Duration) {
    let dir = python::scripts();
    let path = dir.join(name);
    let kubeconfig = fleet.kubeconfig.display().to_string();
    let run = python::run(
        python,
        &[path.to_str().expect("a UTF-8 path")],
        &dir,
        &[("KUBECONFIG", &kubeconfig)],
        limit,
    )
    .await;
    eprintln!("{name} ran in {:.1?}:\n{}", run.elapsed, run.output);
    assert!(
        run.ok,
        "{name} {} after {:.1?}:\n{}",
        if run.timed_out {
            "was killed at its time limit"
        } else {
            "failed"
        },
        run.elapsed,
        run.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_creates_reads_patches_replaces_and_deletes_services() {
    let Some(python) = client() else {
        return;
    };
    let f = TestFleet::one_node().await;
    script(&python, &f, "services_crud.py", Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_watches_services_added_modified_and_deleted() {
    let Some(python) = client() else {
        return;
    };
    let f = TestFleet::one_node().await;
    script(&python, &f, "services_watch.py", Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_reads_pods_and_nodes_while_a_service_scales_and_goes() {
    let Some(python) = client() else {
        return;
    };
    // Two nodes, so pods and nodes are lists of more than one; a short grace period, so an
    // old revision's instances go within seconds of the new one being ready.
    let f = TestFleet::start(
        &TWO_NODES,
        "autoscaler:\n  scale-to-zero-grace-period: 2s\n",
    )
    .await;
    script(&python, &f, "pods_and_nodes.py", Duration::from_secs(240)).await;
}
