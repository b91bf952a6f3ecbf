//! The data plane as its node agent drives it: revisions held, failed, balanced and served
//! through the activator role, the backends and the instances' queues.

use super::*;
use crate::revision::{Acquired, NoBackend};
use kantai_policy::SimpleRequest;
use parking_lot::Mutex;
use tokio::time::Instant;

/// Acquires for a GET of `path` (with `headers`), waiting until `within` has passed.
fn request(
    state: &Arc<RevisionState>,
    req: SimpleRequest,
    within: Duration,
    limit: u32,
) -> tokio::task::JoinHandle<Result<String, NoBackend>> {
    let deadline = Instant::now() + within;
    let acquired = state.acquire(&req, OwnedRequest::default, limit, || {});
    tokio::spawn(async move {
        let lease = match acquired? {
            Acquired::Now(l) => l,
            Acquired::Held(h) => h.wait(deadline).await?,
        };
        Ok(lease.backend.name.clone())
    })
}

fn get(path: &str) -> SimpleRequest {
    SimpleRequest::get(path)
}

fn dp() -> DataPlane {
    DataPlane::new("node1", Limits::default(), 7).0
}

fn route(ns: &str, name: &str, rev: &str) -> RouteSpec {
    RouteSpec {
        namespace: ns.into(),
        name: name.into(),
        traffic: vec![(rev.into(), 100, None)],
        unavailable: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_routed_revision_not_yet_known_keeps_its_held_requests() {
    let dp = dp();
    // The route arrives before the revision: a request is held on the route's state.
    dp.set_routes(
        "svc.cluster.local",
        vec![route("default", "hello", "hello-00001")],
    );
    let state = dp.revision("default", "hello-00001");
    let held = request(&state, get("/"), Duration::from_secs(30), 10);
    tokio::task::yield_now().await;
    assert_eq!(state.held(), 1);
    // An update of the revisions that does not list it yet must not orphan that state.
    dp.set_revisions(HashMap::new());
    assert!(Arc::ptr_eq(&state, &dp.revision("default", "hello-00001")));
    // The instance comes up: the held request goes to it.
    dp.add_local("hello-node1-abcde", "default", "hello-00001", 1, 0);
    dp.set_local_ready("hello-node1-abcde", true);
    let got = held.await.expect("task");
    assert_eq!(got, Ok("hello-node1-abcde".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_removed_revision_fails_its_held_requests() {
    let dp = dp();
    dp.set_routes(
        "svc.cluster.local",
        vec![route("default", "hello", "hello-00001")],
    );
    let state = dp.revision("default", "hello-00001");
    let held = request(&state, get("/"), Duration::from_secs(30), 10);
    tokio::task::yield_now().await;
    // The service is deleted: no route and no revision.
    dp.set_routes("svc.cluster.local", Vec::new());
    dp.set_revisions(HashMap::new());
    assert_eq!(held.await.expect("task"), Err(NoBackend::Removed));
}

#[tokio::test(start_paused = true)]
async fn idle_revisions_with_local_instances_report_zeros() {
    let dp = dp();
    dp.set_routes(
        "svc.cluster.local",
        vec![
            route("default", "hosted", "hosted-00001"),
            route("default", "elsewhere", "elsewhere-00001"),
        ],
    );
    dp.add_local("hosted-node1-abcde", "default", "hosted-00001", 1, 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    let loads = dp.take_loads();
    let names: Vec<&str> = loads.iter().map(|l| l.revision.as_str()).collect();
    assert_eq!(names, ["hosted-00001"]);
    assert_eq!(loads[0].concurrency, 0.0);
    assert_eq!(loads[0].requests, 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_held_request_times_out_at_its_deadline() {
    let dp = dp();
    let state = dp.revision("default", "hello-00001");
    let start = Instant::now();
    let r = request(&state, get("/"), Duration::from_secs(5), 10)
        .await
        .expect("task");
    assert_eq!(r, Err(NoBackend::TimedOut));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(state.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_hold_limit_is_enforced() {
    let dp = dp();
    let state = dp.revision("default", "hello-00001");
    let waiting: Vec<_> = (0..2)
        .map(|_| request(&state, get("/"), Duration::from_secs(5), 2))
        .collect();
    tokio::task::yield_now().await;
    let third = request(&state, get("/"), Duration::from_secs(5), 2)
        .await
        .expect("task");
    assert_eq!(third, Err(NoBackend::HoldQueueFull));
    for w in waiting {
        assert_eq!(w.await.expect("task"), Err(NoBackend::TimedOut));
    }
}

const MISSING: &str =
    "image 127.0.0.1:5055/fn/nope:v1: not found in registry 127.0.0.1:5055 (manifest unknown)";

fn cannot_start() -> Result<String, NoBackend> {
    Err(NoBackend::CannotStart(MISSING.into()))
}

#[tokio::test(start_paused = true)]
async fn held_requests_are_released_at_once_when_the_revision_cannot_start() {
    let dp = dp();
    let state = dp.revision("default", "hello-00001");
    let held = request(&state, get("/"), Duration::from_secs(30), 10);
    tokio::task::yield_now().await;
    assert_eq!(state.held(), 1);
    let start = Instant::now();
    dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
    assert_eq!(held.await.expect("task"), cannot_start());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(state.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_new_request_for_a_revision_that_cannot_start_is_answered_at_once() {
    let dp = dp();
    dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
    let state = dp.revision("default", "hello-00001");
    let start = Instant::now();
    let r = request(&state, get("/"), Duration::from_secs(30), 10)
        .await
        .expect("task");
    assert_eq!(r, cannot_start());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(state.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_revision_that_cannot_start_is_still_poked() {
    let (dp, mut pokes) = DataPlane::new("node1", Limits::default(), 7);
    dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
    let state = dp.revision("default", "hello-00001");
    let tx = dp.inner.gateway.activator.pokes.clone();
    let r = state.acquire(&get("/"), OwnedRequest::default, 10, || {
        let _ = tx.send(state.key.clone());
    });
    assert!(matches!(r, Err(NoBackend::CannotStart(_))));
    assert_eq!(
        pokes.try_recv().ok(),
        Some(("default".to_owned(), "hello-00001".to_owned()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_cleared_failure_holds_requests_again() {
    let dp = dp();
    dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
    dp.set_revision_failure("default", "hello-00001", None);
    let state = dp.revision("default", "hello-00001");
    let r = request(&state, get("/"), Duration::from_secs(5), 10)
        .await
        .expect("task");
    assert_eq!(r, Err(NoBackend::TimedOut));
}

#[tokio::test(start_paused = true)]
async fn a_ready_instance_serves_a_revision_reported_as_unable_to_start() {
    let dp = dp();
    dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
    dp.add_local("hello-node1-abcde", "default", "hello-00001", 1, 0);
    dp.set_local_ready("hello-node1-abcde", true);
    let state = dp.revision("default", "hello-00001");
    let r = request(&state, get("/"), Duration::from_secs(5), 10)
        .await
        .expect("task");
    assert_eq!(r, Ok("hello-node1-abcde".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_got_ready_clears_the_failure() {
    let dp = dp();
    dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
    dp.add_local("hello-node1-abcde", "default", "hello-00001", 1, 0);
    dp.set_local_ready("hello-node1-abcde", true);
    // Scaled back to zero: the next request waits for a cold start, as any would.
    dp.remove_local("hello-node1-abcde");
    let state = dp.revision("default", "hello-00001");
    assert_eq!(state.failure(), None);
    let r = request(&state, get("/"), Duration::from_secs(5), 10)
        .await
        .expect("task");
    assert_eq!(r, Err(NoBackend::TimedOut));
}

#[tokio::test(start_paused = true)]
async fn a_failure_does_not_release_requests_waiting_for_a_busy_ready_instance() {
    let dp = dp();
    let key = ("default".to_owned(), "hello-00001".to_owned());
    dp.set_revisions(HashMap::from([(key, config("knative", "fifo", 1))]));
    dp.add_local("hello-node1-abcde", "default", "hello-00001", 1, 1);
    dp.set_local_ready("hello-node1-abcde", true);
    let state = dp.revision("default", "hello-00001");
    let Ok(Acquired::Now(busy)) = state.acquire(&get("/"), OwnedRequest::default, 10, || {}) else {
        panic!("the instance has room for the first request");
    };
    let waiting = request(&state, get("/"), Duration::from_secs(30), 10);
    tokio::task::yield_now().await;
    assert_eq!(state.held(), 1);
    // Another node's instance failed: this revision still has one that serves.
    dp.set_revision_failure("default", "hello-00001", Some(MISSING.into()));
    assert_eq!(state.held(), 1);
    drop(busy);
    assert_eq!(
        waiting.await.expect("task"),
        Ok("hello-node1-abcde".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn clearing_the_failure_of_an_unknown_revision_creates_no_state() {
    let dp = dp();
    dp.set_revision_failure("default", "gone-00001", None);
    assert!(dp.inner.revisions.is_empty());
}

fn config(lb: &str, queue: &str, cc: u32) -> RevisionConfig {
    RevisionConfig {
        cc,
        load_balancer: lb.into(),
        queue: queue.into(),
        ..RevisionConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn held_requests_are_served_in_the_queue_disciplines_order() {
    let dp = dp();
    let key = ("default".to_owned(), "q-00001".to_owned());
    dp.set_revisions(HashMap::from([(
        key.clone(),
        config("knative", "priority", 1),
    )]));
    let state = dp.revision("default", "q-00001");
    // No instance yet: three requests wait, the high-priority one arriving last. Each
    // holds its instance for 10 ms once served.
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for class in ["low", "normal", "high"] {
        let req = get("/").with_header("kantai-priority", class);
        let acquired = state
            .acquire(&req, OwnedRequest::default, 10, || {})
            .expect("held");
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let Acquired::Held(h) = acquired else {
                panic!("nothing can serve it yet");
            };
            let lease = h.wait(Instant::now() + Duration::from_secs(30)).await;
            order.lock().push(class);
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(lease);
        }));
    }
    assert_eq!(state.held(), 3);
    // One instance with one slot (containerConcurrency 1): one at a time, by class.
    dp.add_local("q-node1-aaaaa", "default", "q-00001", 1, 1);
    dp.set_local_ready("q-node1-aaaaa", true);
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(*order.lock(), ["high", "normal", "low"]);
    assert_eq!(state.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_changed_load_balancer_takes_effect_at_once() {
    let dp = dp();
    dp.set_net(
        vec!["node1".into(), "node2".into()],
        &HashMap::from([("node2".to_owned(), 50.0)]),
    );
    let key = ("default".to_owned(), "lb-00001".to_owned());
    dp.set_revisions(HashMap::from([(
        key.clone(),
        config("round-robin", "fifo", 0),
    )]));
    dp.set_peers(HashMap::from([(
        "node2".to_owned(),
        "127.0.0.1:9".parse().expect("addr"),
    )]));
    dp.set_remote(HashMap::from([(
        key.clone(),
        vec![("lb-node2-bbbbb".to_owned(), "node2".to_owned())],
    )]));
    dp.add_local("lb-node1-aaaaa", "default", "lb-00001", 1, 0);
    dp.set_local_ready("lb-node1-aaaaa", true);
    let state = dp.revision("default", "lb-00001");
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(
            request(&state, get("/"), Duration::from_secs(1), 10)
                .await
                .expect("task"),
        );
    }
    // Round robin alternates between the two nodes.
    assert!(
        names.iter().any(|n| n.as_deref() == Ok("lb-node2-bbbbb")),
        "{names:?}"
    );
    // local-first keeps everything on this node.
    dp.set_revisions(HashMap::from([(key, config("local-first", "fifo", 0))]));
    for _ in 0..4 {
        let n = request(&state, get("/"), Duration::from_secs(1), 10)
            .await
            .expect("task");
        assert_eq!(n, Ok("lb-node1-aaaaa".into()));
    }
}

#[tokio::test(start_paused = true)]
async fn an_instance_queue_follows_the_discipline_and_reports_serving_time() {
    let dp = dp();
    let key = ("default".to_owned(), "s-00001".to_owned());
    dp.set_revisions(HashMap::from([(key, config("knative", "priority", 1))]));
    let inst = dp.add_local("s-node1-aaaaa", "default", "s-00001", 1, 1);
    let Ok(Entering::Now(first)) = inst.enter(&get("/")) else {
        panic!("the first request gets the slot");
    };
    let Ok(Entering::Queued(low)) = inst.enter(&get("/").with_header("kantai-priority", "low"))
    else {
        panic!("queued");
    };
    let Ok(Entering::Queued(high)) = inst.enter(&get("/").with_header("kantai-priority", "high"))
    else {
        panic!("queued");
    };
    let low = tokio::spawn(low.wait());
    let high = tokio::spawn(high.wait());
    tokio::time::advance(Duration::from_millis(40)).await;
    drop(first);
    let slot = high.await.expect("task").expect("the high one goes next");
    assert!(!low.is_finished());
    drop(slot);
    drop(low.await.expect("task").expect("then the low one"));
    let (served, total) = inst.take_serving();
    assert_eq!(served, 3);
    // The first took 40 ms; the others waited at least as long in the queue.
    assert!(total >= Duration::from_millis(120), "{total:?}");
    assert_eq!(inst.in_flight(), 0);
}
