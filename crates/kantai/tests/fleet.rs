//! A real fleet on loopback: `kantai up`, a deployed hello, and what clients see.

use crate::common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{HELLO, SharedFleet, TestFleet, TestNode, hello};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_demo_cold_start_scale_to_zero_and_back() {
    let f = TestFleet::one_node().await;
    let svc = f.deploy(HELLO).await;
    assert_eq!(
        svc["status"]["url"],
        "http://hello.default.svc.cluster.local"
    );
    assert_eq!(svc["status"]["latestReadyRevisionName"], "hello-00001");

    // The initial instance goes after the 12 s window (the activator has been in the path
    // since the revision was created, so no further grace is needed).
    let t = Instant::now();
    f.wait_zero("hello-00001", Duration::from_secs(60)).await;
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(45),
        "scale to zero took {took:?}"
    );
    let p = f.placement("hello-00001").await.expect("placement");
    assert_eq!(p["spec"]["nodes"].as_array().map(Vec::len), Some(0));

    // The first request from zero succeeds.
    let a = f.call("node1", "hello", "/").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.starts_with("Konnichiwa from hello-node1-"),
        "{}",
        a.body
    );
    assert!(a.body.trim_end().ends_with(" in node1"), "{}", a.body);
    assert_eq!(
        a.headers.get("app").map(|v| v.as_bytes()),
        Some(&b"shuka"[..])
    );
    // Without `dataplane.serving-headers`, clients do not learn the fleet's layout.
    assert!(
        a.headers.get("kantai-served-by").is_none() && a.headers.get("kantai-cold-start").is_none()
    );

    // Warm requests are fast and served by the same instance.
    let warm = f.call("node1", "hello", "/").await;
    assert_eq!(warm.body, a.body);

    // No traffic: back to zero after the window, and a second cold start works.
    f.wait_zero("hello-00001", Duration::from_secs(60)).await;
    let again = f.call("node1", "hello", "/nodename").await;
    assert_eq!((again.status, again.body.as_str()), (200, "node1\n"));
    f.stop();
}

// --- Bad requests and bad manifests, one behaviour per test, on one shared fleet ---

/// A 1 KiB body limit, and initial-scale 0 allowed (Knative's default config refuses it).
const BAD_REQUESTS_CONFIG: &str =
    "dataplane:\n  max-request-body-bytes: 1024\nautoscaler:\n  allow-zero-initial-scale: true\n";

/// The one-node fleet the bad-request tests share, each on names of its own.
fn bad_requests_fleet() -> &'static SharedFleet {
    static FLEET: OnceLock<SharedFleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        SharedFleet::start(|| TestFleet::one_node_bound_to_this_thread(BAD_REQUESTS_CONFIG))
    })
}

/// `kantai apply` checks manifests with the fleet's config: initial-scale 0 is allowed
/// here although Knative's default config refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kantai_apply_checks_manifests_with_the_fleets_config() {
    let f = &bad_requests_fleet().fleet;
    let dir = tempfile::tempdir().expect("tempdir");
    let zero = dir.path().join("zero.yaml");
    std::fs::write(
        &zero,
        hello(
            "zero",
            &[("autoscaling.knative.dev/initial-scale", "0")],
            "",
        ),
    )
    .expect("write");
    let out = f
        .kantai()
        .args(["apply", "-f"])
        .arg(&zero)
        .output()
        .expect("kantai apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kantai_apply_of_a_file_with_one_invalid_document_applies_nothing_and_says_where() {
    let shared = bad_requests_fleet();
    let f = &shared.fleet;
    let dir = tempfile::tempdir().expect("tempdir");
    let mixed = dir.path().join("mixed.yaml");
    std::fs::write(
        &mixed,
        format!(
            "{}---\n{}",
            hello("first", &[], ""),
            hello("second", &[], "      containerConcurrency: -1\n")
        ),
    )
    .expect("write");
    let out = f
        .kantai()
        .args(["apply", "-f"])
        .arg(&mixed)
        .output()
        .expect("kantai apply");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 27") && err.contains("spec.template.spec.containerConcurrency"),
        "{err}"
    );
    let first = shared
        .run(|f| async move {
            f.client
                .get(kantai_api::resources::SERVICES, "default", "first")
                .await
        })
        .await;
    assert!(first.is_err_and(|e| e.is_not_found()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_an_unknown_host_gets_404_naming_it() {
    let unknown = bad_requests_fleet()
        .run(|f| async move {
            f.call_host(
                "node1",
                "nothing.default.svc.cluster.local",
                "/",
                Bytes::new(),
            )
            .await
        })
        .await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown
            .body
            .contains("\"nothing.default.svc.cluster.local\""),
        "{}",
        unknown.body
    );
}

/// Over the configured body limit: 413 (the shared fleet's config sets 1 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_body_limit_gets_413() {
    let big = bad_requests_fleet()
        .run(|f| async move {
            f.deploy(&hello(
                "small",
                &[("autoscaling.knative.dev/min-scale", "1")],
                "",
            ))
            .await;
            f.call_host(
                "node1",
                "small.default.svc.cluster.local",
                "/",
                Bytes::from(vec![b'x'; 4096]),
            )
            .await
        })
        .await;
    assert_eq!(big.status, 413, "{}", big.body);
}

/// An invalid update is refused with every cause, and the running service is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_update_is_refused_with_every_cause_and_changes_nothing() {
    bad_requests_fleet()
        .run(|f| async move {
            f.deploy(&hello(
                "untouched",
                &[("autoscaling.knative.dev/min-scale", "1")],
                "",
            ))
            .await;
            let bad = hello(
                "untouched",
                &[("autoscaling.knative.dev/window", "1s")],
                "      timeoutSeconds: 9999\n",
            );
            let docs = kantai_model::manifest::read(&bad, &Default::default()).expect("yaml");
            let mut obj = docs[0].object.as_ref().expect("object").to_json();
            let current = f
                .client
                .get(kantai_api::resources::SERVICES, "default", "untouched")
                .await
                .expect("get");
            obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            let err = f
                .client
                .replace(
                    kantai_api::resources::SERVICES,
                    "default",
                    "untouched",
                    &obj,
                )
                .await
                .expect_err("invalid");
            assert_eq!(err.code(), Some(422));
            let kantai_api::ApiError::Status(st) = &err else {
                panic!("{err}")
            };
            let fields: Vec<&str> = st
                .details
                .as_ref()
                .expect("details")
                .causes
                .iter()
                .map(|c| c.field.as_str())
                .collect();
            assert!(
                fields.contains(&"spec.template.spec.timeoutSeconds"),
                "{fields:?}"
            );
            assert!(
                fields.contains(
                    &"spec.template.metadata.annotations[autoscaling.knative.dev/window]"
                ),
                "{fields:?}"
            );
            let after = f
                .client
                .get(kantai_api::resources::SERVICES, "default", "untouched")
                .await
                .expect("get");
            assert_eq!(
                after["metadata"]["resourceVersion"],
                current["metadata"]["resourceVersion"]
            );
            let ok = f.call("node1", "untouched", "/").await;
            assert_eq!(ok.status, 200);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cross_emulated_links_to_other_nodes() {
    let f = TestFleet::start(
        &[
            TestNode {
                name: "node1",
                rtt_to_first_ms: 0,
            },
            TestNode {
                name: "node2",
                rtt_to_first_ms: 60,
            },
        ],
        "dataplane:\n  serving-headers: true\n",
    )
    .await;
    f.deploy(&hello(
        "far",
        &[("autoscaling.knative.dev/min-scale", "1")],
        "",
    ))
    .await;
    let instances = f.instances().await;
    let node = instances[0]["spec"]["node"]
        .as_str()
        .expect("node")
        .to_owned();
    let other = if node == "node1" { "node2" } else { "node1" };
    // Warm the path, then measure: a request entering the other node pays the round trip.
    let _ = f.call(other, "far", "/").await;
    let mut remote = Vec::new();
    let mut local = Vec::new();
    for _ in 0..5 {
        remote.push(f.call(other, "far", "/").await.elapsed);
        local.push(f.call(&node, "far", "/").await.elapsed);
    }
    let min = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    assert!(
        min(&remote) >= Duration::from_millis(55),
        "remote {remote:?}"
    );
    assert!(min(&local) < Duration::from_millis(30), "local {local:?}");
    let a = f.call(other, "far", "/").await;
    assert!(a.body.contains(&format!(" in {node}")), "{}", a.body);
    // The response names the instance and node that served it; a warm request is no cold start.
    let header = |a: &common::Answer, name: &str| {
        a.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header(&a, "kantai-served-on"), Some(node.clone()));
    let by = header(&a, "kantai-served-by").expect("served-by");
    assert!(by.starts_with(&format!("far-{node}-")), "{by}");
    assert_eq!(header(&a, "kantai-cold-start"), None);

    // Scale to zero does not strand the far node: the moment the instance is gone from the
    // API, the far node's gateway (which hears of it one link delay later) still gets an
    // answer, not a 503 from a stopped instance.
    f.deploy(&hello(
        "brief",
        &[("autoscaling.knative.dev/window", "6s")],
        "",
    ))
    .await;
    let host_node = common::wait_for(Duration::from_secs(20), "brief's instance", || async {
        f.instances()
            .await
            .iter()
            .find(|i| i["spec"]["revision"] == "brief-00001")
            .and_then(|i| i["spec"]["node"].as_str().map(str::to_owned))
    })
    .await;
    let far = if host_node == "node1" {
        "node2"
    } else {
        "node1"
    };
    let _ = f.call(far, "brief", "/").await;
    f.wait_zero("brief-00001", Duration::from_secs(60)).await;
    let after = f.call(far, "brief", "/").await;
    assert_eq!(after.status, 200, "{}", after.body);
    // It waited for an instance to start, and says so.
    assert_eq!(header(&after, "kantai-cold-start").as_deref(), Some("true"));
    assert!(header(&after, "kantai-served-on").is_some());
    f.stop();
}

/// Sends `n` requests from `clients` concurrent clients; returns the status of each.
async fn burst(
    f: &std::sync::Arc<TestFleet>,
    node: &'static str,
    service: &'static str,
    path: &'static str,
    clients: usize,
    n: usize,
) -> Vec<(u16, String)> {
    let per = n.div_ceil(clients);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..per {
                let a = f.call(node, service, path).await;
                out.push((a.status, a.body));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients_scale_to_the_target() {
    let f = std::sync::Arc::new(TestFleet::one_node().await);
    f.deploy(&hello(
        "load",
        &[("autoscaling.knative.dev/target", "10")],
        "",
    ))
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..50 {
        let f = f.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut failures = 0;
            // Bounded: at most 300 requests of 100 ms each, and the flag.
            for _ in 0..300 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if f.call("node1", "load", "/sleep/100").await.status != 200 {
                    failures += 1;
                }
            }
            failures
        }));
    }
    // ⌈50 / (10 × 0.7)⌉ = 8 instances; within 30 s there are between 6 and 9.
    let start = Instant::now();
    let mut reached = None;
    let mut max_seen = 0;
    while start.elapsed() < Duration::from_secs(30) {
        let n = f.ready_instances("load-00001").await;
        max_seen = max_seen.max(n);
        if (6..=9).contains(&n) && reached.is_none() {
            reached = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled = f.ready_instances("load-00001").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failures = 0;
    for c in clients {
        failures += c.await.expect("client");
    }
    assert!(
        reached.is_some(),
        "never between 6 and 9 ready instances (max {max_seen})"
    );
    assert!((6..=9).contains(&settled), "{settled} instances after 30 s");
    assert!(max_seen <= 9, "overshot to {max_seen} instances");
    assert_eq!(failures, 0, "requests failed under load");
    std::sync::Arc::try_unwrap(f)
        .ok()
        .expect("sole owner")
        .stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_one_queues_overflow_is_503_and_slow_requests_504() {
    let f = std::sync::Arc::new(
        TestFleet::start(
            &[TestNode {
                name: "node1",
                rtt_to_first_ms: 0,
            }],
            "dataplane:\n  hold-limit: 2\n",
        )
        .await,
    );
    let one = [
        ("autoscaling.knative.dev/min-scale", "1"),
        ("autoscaling.knative.dev/max-scale", "1"),
    ];
    f.deploy(&hello("serial", &one, "      containerConcurrency: 1\n"))
        .await;
    // Four parallel requests to one instance that takes one at a time: they queue, none fails.
    let t = Instant::now();
    let answers = burst(&f, "node1", "serial", "/sleep/300", 2, 2).await;
    let answers2 = burst(&f, "node1", "serial", "/sleep/300", 2, 2).await;
    assert!(
        answers.iter().chain(&answers2).all(|(s, _)| *s == 200),
        "{answers:?} {answers2:?}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1100),
        "the requests did not queue: {:?}",
        t.elapsed()
    );

    // The activator holds at most `hold-limit` requests beyond the instance's slot: 503.
    let over = burst(&f, "node1", "serial", "/sleep/1000", 6, 6).await;
    let rejected = over.iter().filter(|(s, _)| *s == 503).count();
    assert!(rejected >= 2, "{over:?}");
    assert!(
        over.iter().filter(|(s, _)| *s == 200).count() >= 3,
        "{over:?}"
    );

    // With the activator out of the path (TBC 0), the instance's own queue (10 × cc) overflows.
    let direct = [
        ("autoscaling.knative.dev/min-scale", "1"),
        ("autoscaling.knative.dev/max-scale", "1"),
        ("autoscaling.knative.dev/target-burst-capacity", "0"),
    ];
    f.deploy(&hello("direct", &direct, "      containerConcurrency: 1\n"))
        .await;
    common::wait_for(
        Duration::from_secs(20),
        "the activator to leave the path",
        || async {
            let p = f.placement("direct-00001").await?;
            (p["spec"]["activatorInPath"] == false).then_some(())
        },
    )
    .await;
    let flood = burst(&f, "node1", "direct", "/sleep/1500", 15, 15).await;
    let full: Vec<_> = flood.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        full.len() >= 3,
        "1 running + 10 queued leaves 4 of 15 out: {flood:?}"
    );
    assert!(full[0].1.contains("queued"), "{}", full[0].1);

    // timeoutSeconds: 1 and a 3-second request: 504 after about a second.
    f.deploy(&hello(
        "slow",
        &[("autoscaling.knative.dev/min-scale", "1")],
        "      timeoutSeconds: 1\n",
    ))
    .await;
    let a = f.call("node1", "slow", "/sleep/3000").await;
    assert_eq!(a.status, 504, "{}", a.body);
    assert!(a.body.contains("timeoutSeconds"), "{}", a.body);
    assert!(a.elapsed < Duration::from_millis(2500), "{:?}", a.elapsed);
    std::sync::Arc::try_unwrap(f)
        .ok()
        .expect("sole owner")
        .stop();
}

/// A service's revisions in turn: `split-00001`, then a changed template's `split-00002`,
/// which takes all traffic once ready, then 90 % to the latest and 10 % to the first (tagged
/// `old`), over 2,000 requests. Each step builds on the one before, so it runs once, in
/// order, and each test asserts one outcome.
struct TrafficSplit {
    /// The first revision's answer.
    v1: common::Answer,
    /// The service once `split-00002` is ready and takes the traffic, and its answer then.
    svc: serde_json::Value,
    v2: common::Answer,
    /// The answers to 2,000 requests under the 90/10 split.
    split: Vec<(u16, String)>,
    /// The answer to the `old` tag.
    tagged: common::Answer,
}

static TRAFFIC_SPLIT: common::Scenario<TrafficSplit> = common::Scenario::new();

/// Replaces Service `split` with `obj` at its current resourceVersion, reading it again
/// while the controllers' status writes make that version stale (409), as a client does.
async fn replace_split(f: &TestFleet, obj: &serde_json::Value) {
    common::wait_for(Duration::from_secs(10), "the update of split", || async {
        let cur = f
            .client
            .get(kantai_api::resources::SERVICES, "default", "split")
            .await
            .ok()?;
        let mut obj = obj.clone();
        obj["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
        match f
            .client
            .replace(kantai_api::resources::SERVICES, "default", "split", &obj)
            .await
        {
            Ok(_) => Some(()),
            Err(e) if e.is_conflict() => None,
            Err(e) => panic!("update of split: {e}"),
        }
    })
    .await;
}

fn traffic_split() -> &'static TrafficSplit {
    TRAFFIC_SPLIT.get(|| async {
        let f = std::sync::Arc::new(TestFleet::one_node().await);
        let keep = [("autoscaling.knative.dev/min-scale", "1")];
        f.deploy(&hello("split", &keep, "")).await;
        let v1 = f.call("node1", "split", "/").await;
        let v2_yaml = hello("split", &keep, "").replace("Konnichiwa", "Ohayo");
        let docs = kantai_model::manifest::read(&v2_yaml, &Default::default()).expect("yaml");
        let obj = docs[0].object.as_ref().expect("object").to_json();
        replace_split(&f, &obj).await;
        let svc = common::wait_for(
            Duration::from_secs(30),
            "split-00002 to be ready",
            || async {
                let v = f
                    .client
                    .get(kantai_api::resources::SERVICES, "default", "split")
                    .await
                    .ok()?;
                (v["status"]["latestReadyRevisionName"] == "split-00002"
                    && v["status"]["traffic"][0]["revisionName"] == "split-00002")
                    .then_some(v)
            },
        )
        .await;
        // Ready at the new generation: every ready node's gateway routes to split-00002 (the
        // status fields above can come before the route does).
        f.wait_ready("split").await;
        let v2 = f.call("node1", "split", "/").await;
        let mut obj = obj.clone();
        obj["spec"]["traffic"] = serde_json::json!([
            {"latestRevision": true, "percent": 90},
            {"revisionName": "split-00001", "percent": 10, "tag": "old"}
        ]);
        replace_split(&f, &obj).await;
        common::wait_for(Duration::from_secs(30), "the split", || async {
            let v = f
                .client
                .get(kantai_api::resources::SERVICES, "default", "split")
                .await
                .ok()?;
            (v["status"]["traffic"].as_array().map(Vec::len) == Some(2)
                && f.ready_instances("split-00001").await > 0)
                .then_some(())
        })
        .await;
        let split = burst(&f, "node1", "split", "/", 10, 2000).await;
        let tagged = f
            .call_host(
                "node1",
                "old-split.default.svc.cluster.local",
                "/",
                Bytes::new(),
            )
            .await;
        std::sync::Arc::try_unwrap(f)
            .ok()
            .expect("sole owner")
            .stop();
        TrafficSplit {
            v1,
            svc,
            v2,
            split,
            tagged,
        }
    })
}

#[test]
fn a_services_first_revision_serves_it() {
    let v1 = &traffic_split().v1;
    assert!(
        v1.body.starts_with("Konnichiwa from split-node1-"),
        "{}",
        v1.body
    );
}

#[test]
fn a_new_revision_takes_all_traffic_once_ready() {
    let t = traffic_split();
    assert_eq!(t.svc["status"]["latestCreatedRevisionName"], "split-00002");
    assert!(t.v2.body.starts_with("Ohayo from "), "{}", t.v2.body);
}

#[test]
fn a_traffic_split_sends_each_revision_its_percent() {
    // 90 % to the latest, 10 % to the first: within ±5 % over 2,000 requests.
    let answers = &traffic_split().split;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    let old = answers
        .iter()
        .filter(|(_, b)| b.starts_with("Konnichiwa"))
        .count();
    assert!(
        (100..=300).contains(&old),
        "{old} of 2000 went to the 10 % revision"
    );
}

#[test]
fn a_traffic_tag_reaches_its_revision_alone() {
    let tagged = &traffic_split().tagged;
    assert!(tagged.body.starts_with("Konnichiwa"), "{}", tagged.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_replaced() {
    let f = TestFleet::one_node().await;
    f.deploy(&hello(
        "sturdy",
        &[("autoscaling.knative.dev/min-scale", "1")],
        "",
    ))
    .await;
    let inst = f.instances().await;
    let name = inst[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let pid = common::pid_with_env(&format!("PODNAME={name}")).expect("the instance's process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    common::wait_for(
        Duration::from_secs(20),
        "the instance to come back",
        || async {
            let i = f.instances().await;
            let i = i.iter().find(|i| i["metadata"]["name"] == name.as_str())?;
            (i["status"]["restarts"].as_u64() >= Some(1) && i["status"]["ready"] == true)
                .then_some(())
        },
    )
    .await;
    let a = f.call("node1", "sturdy", "/").await;
    assert_eq!(a.status, 200, "{}", a.body);

    // A status write lost on the way (here: overwritten with a stale one) is written again by
    // the agent, so the control plane does not count a serving instance as Pending for long.
    let mut stale = f
        .client
        .get(kantai_api::resources::INSTANCES, "default", &name)
        .await
        .expect("instance");
    stale["status"] = serde_json::json!({"phase": "Pending", "ready": false, "restarts": 0});
    f.client
        .replace_status(kantai_api::resources::INSTANCES, "default", &name, &stale)
        .await
        .expect("overwrite");
    common::wait_for(
        Duration::from_secs(10),
        "the agent to restore the status",
        || async {
            let i = f
                .client
                .get(kantai_api::resources::INSTANCES, "default", &name)
                .await
                .ok()?;
            (i["status"]["ready"] == true && i["status"]["phase"] == "Running").then_some(())
        },
    )
    .await;
    f.stop();
}

/// A fleet that loses a part stops as a whole (exit status 1) and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_agent_stops_the_fleet() {
    let mut f = TestFleet::one_node().await;
    let state = f.state.path().display().to_string();
    let agent = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .find_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains(" node --join ") && cmd.contains(&state)).then_some(pid)
        })
        .expect("the node agent's process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the agent this test started");
    let status = common::wait_blocking(
        Duration::from_secs(30),
        "kantai up to stop without its node",
        || f.up.try_wait().expect("wait"),
    );
    assert_eq!(status.code(), Some(1));
    common::wait_for(
        Duration::from_secs(10),
        "the processes kantai up started to end",
        || async {
            common::processes_mentioning(&state)
                .is_empty()
                .then_some(())
        },
    )
    .await;
}

/// An instance that fits on no node is reported, never dropped: the placement says so in a
/// condition, and an Event names the revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_fits_nowhere_is_reported() {
    let f = TestFleet::one_node().await;
    let yaml = hello(
        "nowhere",
        &[
            ("kantai.dev/placement", "pinned"),
            ("kantai.dev/pinned", "node1=1,node9=2"),
        ],
        "",
    );
    let docs = kantai_model::manifest::read(&yaml, &Default::default()).expect("yaml");
    let obj = docs[0].object.as_ref().expect("object").to_json();
    f.client
        .create(kantai_api::resources::SERVICES, "default", &obj)
        .await
        .expect("create");
    let p = common::wait_for(
        Duration::from_secs(20),
        "the Scheduled condition",
        || async {
            let p = f.placement("nowhere-00001").await?;
            let c = p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Scheduled")?
                .clone();
            (c["status"] == "False").then_some((p, c))
        },
    )
    .await;
    let (placement, cond) = p;
    assert_eq!(placement["spec"]["unschedulable"], 2);
    assert_eq!(cond["reason"], "Unschedulable");
    assert!(
        cond["message"].as_str().is_some_and(
            |m| m.contains("2 instance(s) fit on no node under placement policy pinned")
        ),
        "{cond}"
    );
    // The pinned instance that fits runs.
    common::wait_for(Duration::from_secs(20), "node1's instance", || async {
        (f.ready_instances("nowhere-00001").await == 1).then_some(())
    })
    .await;
    let events = f
        .client
        .list(kantai_api::resources::EVENTS, Some("default"))
        .await
        .expect("events");
    let e = events
        .iter()
        .find(|e| e["reason"] == "Unschedulable")
        .expect("an Unschedulable event");
    assert_eq!(e["involvedObject"]["name"], "nowhere-00001");
    assert_eq!(e["involvedObject"]["kind"], "Revision");
    assert_eq!(e["type"], "Warning");
    f.stop();
}

/// An instance that dies while it serves: its request gets 502 at once (not a hang), the
/// other instance's request is answered, and the instance is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_crashes_mid_request_answers_502_at_once_its_held_requests_go_elsewhere_and_it_is_replaced()
 {
    let f = std::sync::Arc::new(TestFleet::one_node().await);
    let two = [
        ("autoscaling.knative.dev/min-scale", "2"),
        ("autoscaling.knative.dev/max-scale", "2"),
    ];
    f.deploy(&hello("crashy", &two, "      containerConcurrency: 1\n"))
        .await;
    common::wait_for(Duration::from_secs(20), "two ready instances", || async {
        (f.ready_instances("crashy-00001").await == 2).then_some(())
    })
    .await;
    let call = |path: &'static str| {
        let f = f.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let a = tokio::time::timeout(Duration::from_secs(30), f.call("node1", "crashy", path))
                .await
                .expect("a request hung");
            (a.status, t.elapsed())
        })
    };
    // Both instances busy for 3 s, and a third request held for room.
    let busy = [call("/sleep/3000"), call("/sleep/3000")];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = call("/");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = f.instances().await[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let pid = common::pid_with_env(&format!("PODNAME={victim}")).expect("the instance's process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let mut results = Vec::new();
    for b in busy {
        results.push(b.await.expect("task"));
    }
    results.sort();
    // One answered, one cut off with 502 — as soon as its instance died, not at its timeout.
    assert_eq!(
        results.iter().map(|r| r.0).collect::<Vec<_>>(),
        [200, 502],
        "{results:?}"
    );
    // It was sent 600 ms before the kill; its instance would have answered at 3 s.
    assert!(results[1].1 < Duration::from_millis(1800), "{results:?}");
    // The held request was freed by the crash, found the dead instance still listed (its
    // agent had not noticed yet), could not connect, and went to another instance instead.
    let (status, _) = held.await.expect("task");
    assert_eq!(status, 200, "the request held for room");
    common::wait_for(
        Duration::from_secs(20),
        "the instance to be replaced",
        || async {
            let i = f.instances().await;
            let i = i
                .iter()
                .find(|i| i["metadata"]["name"] == victim.as_str())?;
            (i["status"]["restarts"].as_u64() >= Some(1) && i["status"]["ready"] == true)
                .then_some(())
        },
    )
    .await;
    std::sync::Arc::try_unwrap(f)
        .ok()
        .expect("sole owner")
        .stop();
}

/// Under steady load, a scale-down (3 instances to 1) and then a rollout to a new revision
/// fail no request: instances are drained before they stop, and the route moves only to a
/// ready revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_and_a_rollout_under_steady_load_fail_no_request() {
    let f = std::sync::Arc::new(TestFleet::one_node().await);
    let anns = [
        ("autoscaling.knative.dev/initial-scale", "3"),
        ("autoscaling.knative.dev/min-scale", "1"),
        ("autoscaling.knative.dev/window", "6s"),
    ];
    let v1 = hello("steady", &anns, "");
    f.deploy(&v1).await;
    common::wait_for(Duration::from_secs(20), "three ready instances", || async {
        (f.ready_instances("steady-00001").await == 3).then_some(())
    })
    .await;
    // 20 requests per second until told to stop (60 s at most).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (f, stop) = (f.clone(), stop.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut tasks = Vec::new();
            for i in 0..1200u64 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep_until(start + Duration::from_millis(i * 50)).await;
                let f = f.clone();
                tasks.push(tokio::spawn(async move {
                    let a = f.call("node1", "steady", "/sleep/10").await;
                    (a.status, a.body)
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("request"));
            }
            out
        })
    };
    // The light load needs one instance: two are drained and stopped while it runs.
    common::wait_for(Duration::from_secs(40), "the scale-down to one", || async {
        (f.ready_instances("steady-00001").await == 1 && f.instances().await.len() == 1)
            .then_some(())
    })
    .await;
    // A new revision takes over while the load goes on.
    let docs =
        kantai_model::manifest::read(&v1.replace("Konnichiwa", "Ohayo"), &Default::default())
            .expect("yaml");
    let mut obj = docs[0].object.as_ref().expect("object").to_json();
    let cur = f
        .client
        .get(kantai_api::resources::SERVICES, "default", "steady")
        .await
        .expect("get");
    obj["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
    f.client
        .replace(kantai_api::resources::SERVICES, "default", "steady", &obj)
        .await
        .expect("update");
    common::wait_for(
        Duration::from_secs(30),
        "steady-00002 to take the traffic",
        || async {
            let a = f.call("node1", "steady", "/").await;
            a.body.starts_with("Ohayo").then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = load.await.expect("load");
    let failed: Vec<_> = answers.iter().filter(|a| a.0 != 200).collect();
    assert!(answers.len() > 100, "{} requests", answers.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(5)]
    );
    std::sync::Arc::try_unwrap(f)
        .ok()
        .expect("sole owner")
        .stop();
}

/// Faults on an emulated link between two nodes, in order: a lossy link (30 %), link changes
/// on the admin port with and without the token, a stalled link, and the link back. Each
/// fault is set on the one link, so the steps run once, in order, and each test asserts one
/// outcome.
struct LinkFaults {
    /// 40 calls from node1 of `far` (on node2) over the lossy link.
    lossy: Vec<common::Answer>,
    /// Link changes on node1's admin port: without the token; with it, a loss out of range;
    /// with it, an unknown node.
    no_token: u16,
    bad_loss: (u16, String),
    unknown_node: (u16, String),
    /// Stalling the link (the admin port's answer), and then a call of `far`.
    stall: (u16, String),
    stalled: common::Answer,
    /// 20 calls from node1 of `both` (on node1 and node2) once node1 found node2 unreachable.
    failed_over: Vec<common::Answer>,
    /// The link back (the admin port's answer), and the links node1 reports then.
    back: u16,
    links: (u16, String),
}

static LINK_FAULTS: common::Scenario<LinkFaults> = common::Scenario::new();

fn link_faults() -> &'static LinkFaults {
    LINK_FAULTS.get(|| async {
        let topo = "nodes:
  - {name: node1, address: 127.0.0.1, gateway: \"127.0.0.1:0\"}
  - {name: node2, address: 127.0.0.1, gateway: \"127.0.0.1:0\"}
links:
  pairs:
    - {between: [node1, node2], rtt: 20ms, loss: 0.3}
control: {node: node1, listen: \"127.0.0.1:0\"}
";
        let state = tempfile::tempdir().expect("tempdir");
        let f = TestFleet::start_topology(
            state,
            topo,
            &["node1", "node2"],
            "dataplane:\n  serving-headers: true\n",
        )
        .await;
        let pinned = |counts: &'static str| {
            [
                ("kantai.dev/placement", "pinned"),
                ("kantai.dev/pinned", counts),
                ("autoscaling.knative.dev/min-scale", "1"),
            ]
        };
        let timeouts = "      timeoutSeconds: 3\n      responseStartTimeoutSeconds: 1\n";
        f.deploy(&hello("far", &pinned("node2=1"), timeouts)).await;
        f.deploy(&hello("both", &pinned("node1=1,node2=1"), timeouts))
            .await;
        common::wait_for(Duration::from_secs(30), "the instances", || async {
            (f.ready_instances("far-00001").await == 1
                && f.ready_instances("both-00001").await == 2)
                .then_some(())
        })
        .await;
        let mut lossy = Vec::new();
        for _ in 0..40 {
            lossy.push(f.call("node1", "far", "/").await);
        }
        let admin = format!("http://{}/kantai/v1/links", f.admin("node1"));
        let auth = format!("Bearer {}", f.token);
        let with_token = [("authorization", auth.as_str())];
        let (no_token, _) = f
            .send("PUT", &format!("{admin}/node2"), &[], "{down: true}")
            .await;
        let bad_loss = f
            .send("PUT", &format!("{admin}/node2"), &with_token, "{loss: 2}")
            .await;
        let unknown_node = f
            .send(
                "PUT",
                &format!("{admin}/node9"),
                &with_token,
                "{down: true}",
            )
            .await;
        // Stall: nothing crosses from node1 to node2 any more.
        let stall = f
            .send(
                "PUT",
                &format!("{admin}/node2"),
                &with_token,
                "{rtt: 20ms, down: true}",
            )
            .await;
        let stalled = f.call("node1", "far", "/").await;
        // node1 finds node2 unreachable (a probe after that timeout); from then on, requests
        // go to the instance it can reach, at once.
        common::wait_for(
            Duration::from_secs(10),
            "node1 to serve both on node1 alone, at once",
            || async {
                let a = f.call("node1", "both", "/").await;
                (a.status == 200
                    && a.headers.get("kantai-served-on").map(|v| v.as_bytes())
                        == Some(&b"node1"[..])
                    && a.elapsed < Duration::from_millis(500))
                .then_some(())
            },
        )
        .await;
        let mut failed_over = Vec::new();
        for _ in 0..20 {
            failed_over.push(f.call("node1", "both", "/").await);
        }
        // The link is back: node2's instances serve node1's clients again.
        let (back, _) = f
            .send("PUT", &format!("{admin}/node2"), &with_token, "{rtt: 20ms}")
            .await;
        common::wait_for(
            Duration::from_secs(10),
            "far to answer over the link",
            || async { (f.call("node1", "far", "/").await.status == 200).then_some(()) },
        )
        .await;
        let links = f.send("GET", &admin, &with_token, "").await;
        f.stop();
        LinkFaults {
            lossy,
            no_token,
            bad_loss,
            unknown_node,
            stall,
            stalled,
            failed_over,
            back,
            links,
        }
    })
}

#[test]
fn a_lossy_link_costs_retransmission_time_and_nothing_else() {
    // 30 % of crossings pay a retransmission (200 ms); every request still answers.
    let mut slow = 0;
    for a in &link_faults().lossy {
        assert_eq!(a.status, 200, "over the lossy link: {}", a.body);
        assert!(a.elapsed < Duration::from_secs(1), "{:?}", a.elapsed);
        if a.elapsed >= Duration::from_millis(200) {
            slow += 1;
        }
    }
    assert!(slow >= 1, "no request paid for a lost message in 40");
}

#[test]
fn the_admin_port_changes_links_only_for_the_tokens_holder() {
    assert_eq!(
        link_faults().no_token,
        401,
        "a link change without the token"
    );
}

#[test]
fn the_admin_port_checks_the_link_change_it_is_told() {
    let l = link_faults();
    let (status, body) = &l.bad_loss;
    assert_eq!(*status, 422, "{body}");
    assert!(body.contains("loss: 2 must be in [0, 1)"), "{body}");
    let (status, body) = &l.unknown_node;
    assert_eq!(*status, 404, "{body}");
}

#[test]
fn a_stalled_link_costs_a_request_its_response_start_timeout_on_time() {
    let l = link_faults();
    let (status, body) = &l.stall;
    assert_eq!(
        (*status, body.contains("\"down\":true")),
        (200, true),
        "{body}"
    );
    let a = &l.stalled;
    assert_eq!(a.status, 504, "{}", a.body);
    assert!(a.body.contains("responseStartTimeoutSeconds"), "{}", a.body);
    assert!(
        a.elapsed >= Duration::from_millis(950) && a.elapsed < Duration::from_secs(2),
        "a 1 s response-start timeout answered after {:?}",
        a.elapsed
    );
}

#[test]
fn past_a_stalled_link_requests_fail_over_to_the_instances_in_reach() {
    for a in &link_faults().failed_over {
        assert_eq!(a.status, 200, "with node2 out of reach: {}", a.body);
        assert_eq!(
            a.headers.get("kantai-served-on").map(|v| v.as_bytes()),
            Some(&b"node1"[..])
        );
        assert!(a.elapsed < Duration::from_millis(500), "{:?}", a.elapsed);
    }
}

#[test]
fn a_link_that_is_back_carries_requests_again() {
    let l = link_faults();
    assert_eq!(l.back, 200);
    let (status, links) = &l.links;
    assert_eq!(*status, 200);
    let links: serde_json::Value = serde_json::from_str(links).expect("json");
    assert_eq!(links["node2"]["down"], false, "{links}");
    assert_eq!(links["node2"]["rtt"], "20ms", "{links}");
}

/// A function's process: an unprivileged user with no supplementary group when kantai runs
/// as root (kantai's own user otherwise), and only the environment Knative defines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_run_unprivileged_with_a_clean_environment() {
    let f = TestFleet::one_node().await;
    f.deploy(&hello(
        "plain",
        &[("autoscaling.knative.dev/min-scale", "1")],
        "",
    ))
    .await;
    f.wait_ready("plain").await;
    assert_eq!(f.call("node1", "plain", "/").await.status, 200);
    let name = f.instances().await[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let pid = common::pid_with_env(&format!("PODNAME={name}")).expect("the instance's process");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    let me = nix::unistd::Uid::effective();
    if me.is_root() {
        assert_eq!(field("Uid:"), [65534; 4], "{status}");
        assert_eq!(field("Gid:"), [65534; 4], "{status}");
        assert!(field("Groups:").is_empty(), "{status}");
    } else {
        assert_eq!(field("Uid:")[0], me.as_raw());
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let mut keys: Vec<String> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=').map(|(k, _)| k.to_owned())
        })
        .collect();
    keys.sort();
    // The agent runs with KANTAI_LOG and whatever the test harness has: none of it passes.
    let allowed = [
        "K_CONFIGURATION",
        "K_REVISION",
        "K_SERVICE",
        "LANG",
        "NODENAME",
        "PATH",
        "PODNAME",
        "PORT",
        "RUST_BACKTRACE",
        "TARGET",
        "TZ",
    ];
    assert!(
        keys.iter().all(|k| allowed.contains(&k.as_str())),
        "the instance's environment: {keys:?}"
    );
    f.stop();
}
