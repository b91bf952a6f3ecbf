//! A node agent owns its Node object and the Instance objects naming its node: what another
//! client deletes or writes there, the live agent puts back (or removes) while its instances
//! keep serving.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TWO_NODES, TestFleet, hello};
use kantai_api::resources::{INSTANCES, NODES};
use serde_json::{Value, json};

fn pinned(counts: &'static str) -> [(&'static str, &'static str); 2] {
    [
        ("kantai.dev/placement", "pinned"),
        ("kantai.dev/pinned", counts),
    ]
}

fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Waits until every one of `names` has a Ready Node object again; how long that took.
async fn wait_nodes_back(f: &TestFleet, names: &[&str], limit: Duration) -> Duration {
    let t = Instant::now();
    common::wait_for(limit, "the deleted nodes to be back and Ready", || async {
        for n in names {
            let node = f.client.get(NODES, "", n).await.ok()?;
            if !is_ready(&node) {
                return None;
            }
        }
        Some(())
    })
    .await;
    t.elapsed()
}

/// The names of the revision's instance objects.
async fn instance_names(f: &TestFleet, revision: &str) -> BTreeSet<String> {
    f.instances()
        .await
        .iter()
        .filter(|i| i["spec"]["revision"] == revision)
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_of_a_live_agent_is_registered_again_and_gets_its_instances() {
    let f = TestFleet::start(&TWO_NODES, "").await;
    f.client
        .delete(NODES, "", "node2")
        .await
        .expect("delete node2's object");
    let took = wait_nodes_back(&f, &["node2"], Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_secs(5),
        "node2 came back after {took:?}"
    );

    // The node is usable again: an instance pinned to it runs and serves.
    f.deploy(&hello("there", &pinned("node2=1"), "")).await;
    let a = f.call("node1", "there", "/nodename").await;
    assert_eq!((a.status, a.body.as_str()), (200, "node2\n"), "{}", a.body);
    f.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_every_node_keeps_running_instances_serving_and_new_services_deploy() {
    let f = TestFleet::start(&TWO_NODES, "").await;
    f.deploy(&hello("steady", &pinned("node1=1,node2=1"), ""))
        .await;
    common::wait_for(Duration::from_secs(20), "both instances ready", || async {
        (f.ready_instances("steady-00001").await == 2).then_some(())
    })
    .await;
    let before = instance_names(&f, "steady-00001").await;

    // Requests through both gateways all along: before, while and after the Node objects
    // are gone, through two of the control plane's 2 s placement ticks.
    const PER_REQUEST: Duration = Duration::from_secs(3);
    let deleted = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let load = async {
        let mut answers = Vec::new();
        let mut since_deleted: Option<Instant> = None;
        let limit = Instant::now() + Duration::from_secs(20);
        for i in 0..2_000 {
            if deleted.load(Ordering::Acquire) {
                let t = *since_deleted.get_or_insert_with(Instant::now);
                if t.elapsed() > Duration::from_secs(5) {
                    break;
                }
            }
            if Instant::now() > limit {
                break;
            }
            let node = if i % 2 == 0 { "node1" } else { "node2" };
            let t = Instant::now();
            let status = tokio::time::timeout(PER_REQUEST, f.call(node, "steady", "/"))
                .await
                .map(|a| a.status)
                .ok();
            answers.push((node, status, t.elapsed()));
            answered.fetch_add(1, Ordering::Release);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answers
    };
    let delete = async {
        // Some requests first, so the load is seen to be answered before.
        common::wait_for(Duration::from_secs(5), "the first answers", || async {
            (answered.load(Ordering::Acquire) >= 4).then_some(())
        })
        .await;
        for n in ["node1", "node2"] {
            f.client.delete(NODES, "", n).await.expect("delete a node");
        }
        deleted.store(true, Ordering::Release);
        wait_nodes_back(&f, &["node1", "node2"], Duration::from_secs(10)).await
    };
    let (answers, took) = tokio::join!(load, delete);
    assert!(
        took < Duration::from_secs(5),
        "the nodes came back after {took:?}"
    );
    assert!(
        answers.len() > 20,
        "only {} requests were sent",
        answers.len()
    );
    let failed: Vec<_> = answers
        .iter()
        .filter(|(_, status, _)| *status != Some(200))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed or took over {PER_REQUEST:?}: {failed:?}",
        failed.len(),
        answers.len()
    );
    // The very instances that ran before still serve: none was stopped and replaced.
    assert_eq!(instance_names(&f, "steady-00001").await, before);

    f.deploy(&hello("later", &[], "")).await;
    for n in ["node1", "node2"] {
        let a = f.call(n, "later", "/").await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    f.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_object_naming_a_node_whose_agent_does_not_run_it_is_removed() {
    let f = TestFleet::start(&TWO_NODES, "").await;
    f.deploy(&hello("real", &pinned("node1=1"), "")).await;
    let real = instance_names(&f, "real-00001").await;
    assert_eq!(real.len(), 1, "{real:?}");

    // Valid, for a revision that exists, on a live node: only its agent knows it runs no
    // such instance.
    let fake = json!({
        "apiVersion": "kantai.dev/v1alpha1",
        "kind": "Instance",
        "metadata": {
            "name": "real-node2-zzzzz",
            "namespace": "default",
            "labels": {
                "serving.knative.dev/service": "real",
                "serving.knative.dev/revision": "real-00001",
                "kantai.dev/node": "node2",
            },
        },
        "spec": {
            "revision": "real-00001",
            "service": "real",
            "node": "node2",
            "containerConcurrency": 0,
        },
    });
    // POST is refused for instances; PUT is how agents (and anyone with the token) write them.
    f.client
        .replace(INSTANCES, "default", "real-node2-zzzzz", &fake)
        .await
        .expect("create an instance object for node2");
    let t = Instant::now();
    common::wait_for(
        Duration::from_secs(15),
        "node2's agent to remove the instance object it does not run",
        || async {
            f.client
                .get(INSTANCES, "default", "real-node2-zzzzz")
                .await
                .is_err_and(|e| e.is_not_found())
                .then_some(())
        },
    )
    .await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "removed after {took:?}");
    // Only the made-up one: the instance that runs is untouched.
    assert_eq!(instance_names(&f, "real-00001").await, real);
    f.stop();
}
