//! Tag-to-digest resolution through a control plane on loopback, with a scripted resolver:
//! what the Revision's status records, the ContainerMissing failure, and placement waiting
//! for the digest.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use kantai_api::Client;
use kantai_api::resources::{EVENTS, PLACEMENTS, REVISIONS, SERVICES};
use kantai_control::ControlPlane;
use kantai_control::digests::{DigestConfig, ResolveDigest, Resolving};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

mod common;

/// Answers from a script, in order (the last one repeated), each once the gate lets it.
struct Script {
    answers: Mutex<VecDeque<Result<String, String>>>,
    calls: Mutex<Vec<String>>,
    gate: Semaphore,
}

impl Script {
    fn new(answers: &[Result<&str, &str>], open: bool) -> Arc<Script> {
        Arc::new(Script {
            answers: Mutex::new(
                answers
                    .iter()
                    .map(|a| a.map(str::to_owned).map_err(str::to_owned))
                    .collect(),
            ),
            calls: Mutex::default(),
            gate: Semaphore::new(if open { Semaphore::MAX_PERMITS } else { 0 }),
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().clone()
    }
}

impl ResolveDigest for Script {
    fn resolve<'a>(&'a self, image: &'a str) -> Resolving<'a> {
        self.calls.lock().push(image.to_owned());
        Box::pin(async move {
            let _pass = self.gate.acquire().await;
            let mut a = self.answers.lock();
            let next = if a.len() > 1 {
                a.pop_front()
            } else {
                a.front().cloned()
            };
            drop(a);
            match next.expect("a scripted answer") {
                Ok(d) => Ok(d),
                Err(e) => Err(e.into()),
            }
        })
    }
}

async fn start(dir: &std::path::Path, resolver: Arc<Script>) -> (ControlPlane, Client) {
    let cp = common::control_plane_with(
        dir,
        DigestConfig {
            resolver: Some(resolver),
            ..DigestConfig::default()
        },
    )
    .await;
    let client = Client::new(&format!("http://{}", cp.addr))
        .expect("client")
        .with_token(Some(common::TOKEN.to_owned()));
    (cp, client)
}

fn service(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{"image": image}]}}}
    })
}

fn revision(cp: &ControlPlane, name: &str) -> Option<Arc<Value>> {
    cp.shared.store.get(&REVISIONS, "default", name)
}

fn recorded_digest(cp: &ControlPlane, name: &str) -> Option<String> {
    revision(cp, name)?["status"]["containerStatuses"][0]["imageDigest"]
        .as_str()
        .map(str::to_owned)
}

fn condition(v: &Value, kind: &str) -> Option<Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

const A: &str = "127.0.0.1:5055/fn/hello@sha256:aaaa";
const B: &str = "127.0.0.1:5055/fn/hello@sha256:bbbb";

#[tokio::test]
async fn a_revision_keeps_the_digest_it_resolved_when_the_tag_moves() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = Script::new(&[Ok(A), Ok(B)], true);
    let (cp, c) = start(dir.path(), script.clone()).await;
    c.create(
        SERVICES,
        "default",
        &service("hello", "127.0.0.1:5055/fn/hello:v1"),
    )
    .await
    .expect("create");
    let first = common::wait_for(Duration::from_secs(10), "the digest recorded", || async {
        recorded_digest(&cp, "hello-00001")
    })
    .await;
    assert_eq!(first, A);
    // The tag moves: a second service of the same image resolves to the new digest, and
    // the passes that recorded it left the first revision's alone.
    c.create(
        SERVICES,
        "default",
        &service("other", "127.0.0.1:5055/fn/hello:v1"),
    )
    .await
    .expect("create");
    let second = common::wait_for(Duration::from_secs(10), "the digest recorded", || async {
        recorded_digest(&cp, "other-00001")
    })
    .await;
    assert_eq!(second, B);
    assert_eq!(recorded_digest(&cp, "hello-00001").as_deref(), Some(A));
    assert_eq!(script.calls().len(), 2);
    cp.shutdown().await;
}

#[tokio::test]
async fn an_image_that_cannot_be_fetched_marks_the_revision_container_missing_until_a_retry_resolves_it()
 {
    let dir = tempfile::tempdir().expect("tmp");
    let script = Script::new(&[Err("manifest unknown"), Ok(A)], true);
    let (cp, c) = start(dir.path(), script.clone()).await;
    let image = "127.0.0.1:5055/fn/hello:v1";
    c.create(SERVICES, "default", &service("hello", image))
        .await
        .expect("create");
    let healthy = common::wait_for(
        Duration::from_secs(10),
        "ContainerHealthy False",
        || async {
            let rev = revision(&cp, "hello-00001")?;
            let c = condition(&rev, "ContainerHealthy")?;
            (c["status"] == "False").then_some(c)
        },
    )
    .await;
    assert_eq!(healthy["reason"], "ContainerMissing");
    assert_eq!(
        healthy["message"],
        format!(
            "Unable to fetch image \"{image}\": failed to resolve image to digest: manifest unknown"
        )
    );
    let ready =
        condition(&revision(&cp, "hello-00001").expect("revision"), "Ready").expect("Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ContainerMissing");
    // The retry resolves it: the digest is recorded and the failure is gone.
    let digest = common::wait_for(
        Duration::from_secs(10),
        "the digest after a retry",
        || async { recorded_digest(&cp, "hello-00001") },
    )
    .await;
    assert_eq!(digest, A);
    let healthy = common::wait_for(
        Duration::from_secs(10),
        "ContainerHealthy no longer False",
        || async {
            let rev = revision(&cp, "hello-00001")?;
            let c = condition(&rev, "ContainerHealthy")?;
            (c["status"] != "False").then_some(c)
        },
    )
    .await;
    assert_ne!(healthy["reason"], "ContainerMissing");
    assert_eq!(script.calls().len(), 2);
    cp.shutdown().await;
}

#[tokio::test]
async fn an_image_that_cannot_be_fetched_is_told_in_one_warning_event_on_its_revision() {
    let dir = tempfile::tempdir().expect("tmp");
    // It keeps failing: the event is written once, not once per retry.
    let script = Script::new(&[Err("manifest unknown"); 4], true);
    let (cp, c) = start(dir.path(), script.clone()).await;
    c.create(
        SERVICES,
        "default",
        &service("hello", "127.0.0.1:5055/fn/nope:v1"),
    )
    .await
    .expect("create");
    let event = common::wait_for(
        Duration::from_secs(10),
        "a ContainerMissing event",
        || async {
            let (events, _) = cp.shared.store.list(&EVENTS, Some("default"));
            events.into_iter().find(|e| {
                e["reason"] == "ContainerMissing" && e["involvedObject"]["name"] == "hello-00001"
            })
        },
    )
    .await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["involvedObject"]["kind"], "Revision");
    assert!(
        event["message"].as_str().is_some_and(
            |m| m.contains("127.0.0.1:5055/fn/nope:v1") && m.contains("manifest unknown")
        ),
        "{event}"
    );
    common::wait_for(Duration::from_secs(10), "a second attempt", || async {
        (script.calls().len() >= 2).then_some(())
    })
    .await;
    let (events, _) = cp.shared.store.list(&EVENTS, Some("default"));
    let count = events
        .iter()
        .find(|e| e["reason"] == "ContainerMissing")
        .and_then(|e| e["count"].as_u64());
    assert_eq!(count, Some(1), "one event for one failure: {events:?}");
    cp.shutdown().await;
}

#[tokio::test]
async fn a_revision_awaiting_its_digest_gets_no_placement_until_it_is_recorded() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = Script::new(&[Ok(A)], false);
    let (cp, c) = start(dir.path(), script.clone()).await;
    c.create(
        SERVICES,
        "default",
        &service("hello", "127.0.0.1:5055/fn/hello:v1"),
    )
    .await
    .expect("create");
    let key = ("default".to_owned(), "hello-00001".to_owned());
    common::wait_for(
        Duration::from_secs(10),
        "the autoscaler's decision",
        || async { cp.shared.decisions.lock().get(&key).map(|_| ()) },
    )
    .await;
    // A revision of a skipped registry is placed at once, after the one awaiting its digest
    // had its turn in the same loop.
    c.create(
        SERVICES,
        "default",
        &service("local", "ko.local/fn/hello:v1"),
    )
    .await
    .expect("create");
    common::wait_for(
        Duration::from_secs(10),
        "the skipped revision placed",
        || async { cp.shared.store.get(&PLACEMENTS, "default", "local-00001") },
    )
    .await;
    assert!(
        cp.shared
            .store
            .get(&PLACEMENTS, "default", "hello-00001")
            .is_none()
    );
    assert_eq!(script.calls(), ["127.0.0.1:5055/fn/hello:v1"]);
    // The registry answers: the digest is recorded, then the revision is placed.
    script.gate.add_permits(1);
    common::wait_for(
        Duration::from_secs(10),
        "the placement once resolved",
        || async { cp.shared.store.get(&PLACEMENTS, "default", "hello-00001") },
    )
    .await;
    assert_eq!(recorded_digest(&cp, "hello-00001").as_deref(), Some(A));
    cp.shutdown().await;
}
