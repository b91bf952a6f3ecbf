//! Schemathesis (PyPI `schemathesis`) against the API's own OpenAPI documents: v2 and each v3
//! group-version document, each on a fleet of its own with a service deployed. A run fails on
//! any 5xx, any status code, content type or body the document does not declare, and on a
//! fleet that no longer serves afterwards: its nodes Ready and a freshly created Service
//! answering 200 through a gateway.
//!
//! Watches (`watch=true`) and followed logs (`follow=true`) are kept out: they end only when
//! their client or their object does. Each run is bounded by Schemathesis' `--max-time`.
//! The seed is Schemathesis' own, new on every run and printed with its failures (with a
//! reproducing curl for each): a run bounded in time is not repeatable anyway (how far it gets
//! depends on the machine), and a new seed explores new inputs each time.
//! `KANTAI_FUZZ_SEED=N` pins one to look at a failure again.
//!
//! Skipped, saying so, where the interpreter (`KANTAI_PYTHON`, else `python3`) has no
//! `schemathesis`, unless `KANTAI_REQUIRE_SCHEMATHESIS=1` (as CI sets, after installing it)
//! makes that a failure.

use crate::common;
use crate::python;

use std::time::Duration;

use common::{TestFleet, hello};
use kantai_api::resources::{NODES, SERVICES};

const REQUIRE: &str = "KANTAI_REQUIRE_SCHEMATHESIS";

/// The checks that hold whatever the data: not the positive and negative data acceptance
/// checks, since the server rightly refuses schema-valid bodies for reasons no schema can
/// say (a name in use, an image with no command, a route owned by a service).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// Where the summary of a failed run starts.
const SECTIONS: &[&str] = &["= ERRORS =", "= FAILURES =", "= SUMMARY ="];

/// Most of a panic message worth reading: the end of the report, where the summary is.
const REPORT_CHARS: usize = 24_000;

/// Fuzzes the document at `path` on the API for `seconds` (Schemathesis' budget: the
/// coverage phase, then random cases, then stateful sequences where links are declared),
/// then checks that the fleet still serves.
async fn fuzz(path: &str, seconds: u64) {
    let Some((python, _)) = python::with_module("schemathesis", REQUIRE) else {
        return;
    };
    let f = TestFleet::one_node().await;
    // Something to find: a service with an instance, so the lists have pods, revisions,
    // placements and instances in them for the response schemas to be checked against.
    f.deploy(&hello(
        "fuzzed",
        &[("autoscaling.knative.dev/min-scale", "1")],
        "",
    ))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        format!(
            "headers = {{ Authorization = \"Bearer {}\" }}\n\n\
             [parameters]\n\"query.watch\" = false\n\"query.follow\" = false\n",
            f.token
        ),
    )
    .expect("config");
    let document = format!("{}{path}", f.api);
    let max_time = seconds.to_string();
    let seed = std::env::var("KANTAI_FUZZ_SEED").ok();
    let mut args = vec![
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())",
        "--config-file",
        "schemathesis.toml",
        "--no-color",
        "run",
        &document,
        "--url",
        &f.api,
        "--checks",
        CHECKS,
        "--max-time",
        &max_time,
        // A request the server does not answer in 10 s is a failure, not a stuck run.
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--output-truncate",
        "true",
    ];
    if let Some(seed) = &seed {
        args.extend(["--seed", seed]);
    }
    // Its own budget, the time to start and to print, and no more.
    let limit = Duration::from_secs(seconds + 90);
    let run = python::run(&python, &args, dir.path(), &[], limit).await;
    eprintln!(
        "schemathesis on {path} ran in {:.1?}:\n{}",
        run.elapsed, run.output
    );
    let serving = still_serves(&f).await;
    let report = if run.ok {
        String::new()
    } else {
        let from = SECTIONS
            .iter()
            .filter_map(|s| run.output.find(s))
            .min()
            .unwrap_or(0);
        let summary = &run.output[from..];
        let cut = summary.len().saturating_sub(REPORT_CHARS);
        let cut = (cut..summary.len())
            .find(|i| summary.is_char_boundary(*i))
            .unwrap_or(0);
        format!(
            "Schemathesis {} on {path} after {:.1?}:\n{}{}\n",
            if run.timed_out {
                "was killed at its time limit"
            } else {
                "found failures"
            },
            run.elapsed,
            if cut > 0 { "[...]\n" } else { "" },
            &summary[cut..]
        )
    };
    let fleet = match &serving {
        Ok(()) => String::new(),
        Err(why) => format!("after fuzzing {path}, the fleet no longer serves: {why}\n"),
    };
    assert!(run.ok && serving.is_ok(), "{report}{fleet}");
}

/// Whether the fleet still does its job: every node Ready, and a new Service Ready and
/// answering 200 through a gateway, each within a deadline.
async fn still_serves(f: &TestFleet) -> Result<(), String> {
    let nodes: Vec<String> = f.gateways.iter().map(|(n, _)| n.clone()).collect();
    poll(Duration::from_secs(30), || async {
        let list = match f.client.list(NODES, None).await {
            Ok(list) => list,
            Err(e) => return Some(format!("listing nodes: {e}")),
        };
        let ready: Vec<&str> = list
            .iter()
            .filter(|n| {
                n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .filter_map(|n| n["metadata"]["name"].as_str())
            .collect();
        (!nodes.iter().all(|n| ready.contains(&n.as_str())))
            .then(|| format!("Ready: {ready:?} of {nodes:?}"))
    })
    .await
    .map_err(|why| format!("within 30 s, not every node was Ready ({why})"))?;
    let name = "after-fuzz";
    let docs = kantai_model::manifest::read(
        &hello(name, &[], ""),
        &kantai_model::ServingConfig::default(),
    )
    .map_err(|e| format!("{e:?}"))?;
    let obj = docs[0].object.as_ref().expect("an object").to_json();
    // The fuzzer may have left one of that name; a fresh one is what is asked of the fleet.
    let _ = f.client.delete(SERVICES, "default", name).await;
    poll(Duration::from_secs(20), || async {
        match f.client.create(SERVICES, "default", &obj).await {
            Ok(_) => None,
            Err(e) => Some(format!("creating {name}: {e}")),
        }
    })
    .await?;
    poll(Duration::from_secs(60), || async {
        let a = f.call("node1", name, "/").await;
        (a.status != 200)
            .then(|| format!("{name} through node1's gateway: {} {}", a.status, a.body))
    })
    .await
    .map_err(|why| format!("within 60 s, the new service did not answer 200 ({why})"))
}

/// Polls `probe` (None: done; Some(why): not yet) until it is done, for at most `limit`;
/// what it last said when it was not done in time (the report names it, not a panic).
async fn poll<F, Fut>(limit: Duration, probe: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let last = std::sync::Mutex::new(String::new());
    let done = common::wait_for(
        Duration::MAX,
        "(bounded by the timeout around it)",
        || async {
            match probe().await {
                None => Some(()),
                Some(why) => {
                    *last.lock().expect("the last reason") = why;
                    None
                }
            }
        },
    );
    match tokio::time::timeout(limit, done).await {
        Ok(()) => Ok(()),
        Err(_) => Err(last.into_inner().expect("the last reason")),
    }
}

/// Every document the API serves, with its share of the time (about 3 minutes in all, two at
/// a time where the tests run two at a time): v2 has every operation, so the longest.
const DOCUMENTS: &[(&str, u64)] = &[
    ("/openapi/v2", 60),
    ("/openapi/v3/api/v1", 30),
    ("/openapi/v3/apis/serving.knative.dev/v1", 50),
    ("/openapi/v3/apis/kantai.dev/v1alpha1", 50),
];

async fn fuzz_document(path: &str) {
    let (_, seconds) = DOCUMENTS
        .iter()
        .find(|(p, _)| *p == path)
        .expect("a listed document");
    fuzz(path, *seconds).await;
}

#[test]
fn every_document_of_the_index_is_fuzzed() {
    let index = kantai_api::openapi::v3_index();
    let mut served: Vec<String> = index["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(|k| format!("/openapi/v3/{k}"))
        .collect();
    served.push("/openapi/v2".to_owned());
    served.sort();
    let mut fuzzed: Vec<String> = DOCUMENTS.iter().map(|(p, _)| (*p).to_owned()).collect();
    fuzzed.sort();
    assert_eq!(served, fuzzed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v2_holds_under_fuzzing() {
    fuzz_document("/openapi/v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v3_core_v1_holds_under_fuzzing() {
    fuzz_document("/openapi/v3/api/v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v3_serving_knative_dev_v1_holds_under_fuzzing() {
    fuzz_document("/openapi/v3/apis/serving.knative.dev/v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v3_kantai_dev_v1alpha1_holds_under_fuzzing() {
    fuzz_document("/openapi/v3/apis/kantai.dev/v1alpha1").await;
}
