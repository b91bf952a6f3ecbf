//! The control plane's API in-process on loopback: Kubernetes REST semantics, Status errors,
//! watches, and the objects the controllers derive.

use std::time::{Duration, Instant};

use axum::http::Method;
use kantai_api::resources::{CONFIGURATIONS, REVISIONS, ROUTES, SERVICES};
use kantai_api::{ApiError, Client};
use kantai_control::ControlPlane;
use serde_json::{Value, json};

mod common;
use common::TOKEN;

async fn start(dir: &std::path::Path) -> (ControlPlane, Client) {
    let cp = common::control_plane(dir).await;
    let client = Client::new(&format!("http://{}", cp.addr))
        .expect("client")
        .with_token(Some(TOKEN.to_owned()));
    (cp, client)
}

fn service(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{"image": image}]}}}
    })
}

fn status_of(e: &ApiError) -> &kantai_api::Status {
    match e {
        ApiError::Status(s) => s,
        other => panic!("not a Status error: {other}"),
    }
}

#[tokio::test]
async fn crud_with_kubernetes_semantics() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;

    let created = c
        .create(SERVICES, "default", &service("hello", "a"))
        .await
        .expect("create");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    // Defaults applied, as Knative's webhook does.
    assert_eq!(created["spec"]["template"]["spec"]["timeoutSeconds"], 300);
    assert_eq!(created["spec"]["traffic"][0]["percent"], 100);

    // 409 on a second create.
    let dup = c
        .create(SERVICES, "default", &service("hello", "a"))
        .await
        .expect_err("exists");
    assert_eq!(
        (status_of(&dup).code, status_of(&dup).reason.as_str()),
        (409, "AlreadyExists")
    );

    // 404 with a Status.
    let missing = c
        .get(SERVICES, "default", "nope")
        .await
        .expect_err("missing");
    assert_eq!(status_of(&missing).code, 404);
    assert!(status_of(&missing).message.contains("\"nope\" not found"));

    // 422 with every cause, nothing stored.
    let mut bad = service("Bad_Name", "");
    bad["spec"]["traffic"] = json!([{"latestRevision": true, "percent": 90}]);
    let invalid = c
        .create(SERVICES, "default", &bad)
        .await
        .expect_err("invalid");
    let st = status_of(&invalid);
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
    let fields: Vec<&str> = st
        .details
        .as_ref()
        .expect("details")
        .causes
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    assert!(fields.contains(&"metadata.name"), "{fields:?}");
    assert!(fields.contains(&"spec.traffic"), "{fields:?}");
    assert!(
        fields.contains(&"spec.template.spec.containers[0].image"),
        "{fields:?}"
    );

    // Replace with a stale resourceVersion: 409 Conflict. (The controllers write the status
    // too, which also changes the version, as in Kubernetes.)
    let current = c.get(SERVICES, "default", "hello").await.expect("get");
    let rv = current["metadata"]["resourceVersion"].clone();
    let mut v2 = service("hello", "b");
    v2["metadata"]["resourceVersion"] = rv.clone();
    let updated = c
        .replace(SERVICES, "default", "hello", &v2)
        .await
        .expect("replace");
    assert_eq!(updated["metadata"]["generation"], 2);
    let stale = c
        .replace(SERVICES, "default", "hello", &v2)
        .await
        .expect_err("stale");
    assert_eq!(status_of(&stale).reason, "Conflict");

    // JSON merge patch.
    let patched = c
        .merge_patch(
            SERVICES,
            "default",
            "hello",
            &json!({"metadata": {"labels": {"team": "edge"}}}),
        )
        .await
        .expect("patch");
    assert_eq!(patched["metadata"]["labels"]["team"], "edge");
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"][0]["image"],
        "b"
    );

    // The controllers derive a configuration, two revisions and a route.
    let revs = common::wait_for(Duration::from_secs(10), "two revisions", || async {
        let r = c.list(REVISIONS, Some("default")).await.ok()?;
        (r.len() == 2).then_some(r)
    })
    .await;
    let mut names: Vec<&str> = revs
        .iter()
        .filter_map(|r| r["metadata"]["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["hello-00001", "hello-00002"]);
    let cfg = c
        .get(CONFIGURATIONS, "default", "hello")
        .await
        .expect("configuration");
    assert_eq!(cfg["metadata"]["ownerReferences"][0]["kind"], "Service");
    let route = common::wait_for(Duration::from_secs(10), "the route", || async {
        c.get(ROUTES, "default", "hello").await.ok()
    })
    .await;
    assert_eq!(
        route["status"]["url"],
        "http://hello.default.svc.cluster.local"
    );

    // Revisions are the controllers' to write.
    let ro = c
        .replace(REVISIONS, "default", "hello-00001", &revs[0])
        .await
        .expect_err("read-only");
    assert_eq!(status_of(&ro).code, 405);

    // A body over 3 MiB: 413.
    let huge = "x".repeat(4 * 1024 * 1024);
    let too_big = c
        .call(
            Method::POST,
            &SERVICES.collection_path(Some("default")),
            Some((huge.into_bytes(), "application/json")),
        )
        .await
        .expect_err("too large");
    assert_eq!(status_of(&too_big).code, 413);
    // Malformed JSON: 400.
    let garbage = c
        .call(
            Method::POST,
            &SERVICES.collection_path(Some("default")),
            Some((b"{nope".to_vec(), "application/json")),
        )
        .await
        .expect_err("bad json");
    assert_eq!(status_of(&garbage).code, 400);

    // Delete takes the children along.
    c.delete(SERVICES, "default", "hello")
        .await
        .expect("delete");
    assert!(
        c.list(REVISIONS, Some("default"))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(c.get(ROUTES, "default", "hello").await.is_err());
    cp.shutdown().await;
}

#[tokio::test]
async fn watches_stream_changes_and_the_store_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    c.create(SERVICES, "default", &service("one", "a"))
        .await
        .expect("create");
    let mut w = c.watch(SERVICES, Some("default")).await.expect("watch");
    let first = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("event")
        .expect("open")
        .expect("ok");
    assert_eq!(
        (
            first.type_.as_str(),
            first.object["metadata"]["name"].as_str()
        ),
        ("ADDED", Some("one"))
    );
    c.create(SERVICES, "default", &service("two", "a"))
        .await
        .expect("create");
    c.delete(SERVICES, "default", "one").await.expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("event")
            .expect("open")
            .expect("ok");
        // Status updates by the controllers are MODIFIED events; look for the two changes.
        if e.type_ != "MODIFIED" {
            seen.push((
                e.type_,
                e.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            ));
        }
    }
    assert_eq!(
        seen,
        [
            ("ADDED".to_owned(), "two".to_owned()),
            ("DELETED".to_owned(), "one".to_owned())
        ]
    );
    cp.shutdown().await;

    // A new control plane on the same state finds every service.
    let (cp, c) = start(dir.path()).await;
    let two = c.get(SERVICES, "default", "two").await.expect("kept");
    assert_eq!(
        two["spec"]["template"]["spec"]["containers"][0]["image"],
        "a"
    );
    assert!(c.get(SERVICES, "default", "one").await.is_err());
    cp.shutdown().await;
}

#[tokio::test]
async fn routes_can_stand_alone_but_not_replace_a_services() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    c.create(SERVICES, "default", &service("web", "a"))
        .await
        .expect("service");
    let own = json!({"apiVersion": "serving.knative.dev/v1", "kind": "Route", "metadata": {"name": "web"},
                     "spec": {"traffic": [{"configurationName": "web", "percent": 100}]}});
    common::wait_for(Duration::from_secs(10), "the service's route", || async {
        c.get(ROUTES, "default", "web").await.ok()
    })
    .await;
    let clash = c
        .replace(ROUTES, "default", "web", &own)
        .await
        .expect_err("owned");
    assert_eq!(status_of(&clash).code, 409);
    let mut alone = own.clone();
    alone["metadata"]["name"] = json!("front");
    let created = c
        .create(ROUTES, "default", &alone)
        .await
        .expect("standalone route");
    assert_eq!(created["spec"]["traffic"][0]["configurationName"], "web");
    let front = common::wait_for(
        Duration::from_secs(10),
        "the standalone route's url",
        || async {
            let r = c.get(ROUTES, "default", "front").await.ok()?;
            r["status"]["url"].as_str().is_some().then_some(r)
        },
    )
    .await;
    assert_eq!(
        front["status"]["url"],
        "http://front.default.svc.cluster.local"
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn what_a_deleted_service_owned_does_not_outlive_it() {
    // What a reconcile pass racing with a Service's delete can leave: an object labelled and
    // owned by the Service, written again after the delete's cascade (a Route here: clients
    // may write those, not Configurations).
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    let orphan = json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Route",
        "metadata": {"name": "gone", "labels": {"serving.knative.dev/service": "gone"},
                     "ownerReferences": [{"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                          "name": "gone", "uid": "0c1d5e1e-0000-4000-8000-000000000000",
                                          "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"traffic": [{"configurationName": "gone", "percent": 100}]}
    });
    c.create(ROUTES, "default", &orphan).await.expect("route");
    common::wait_for(
        Duration::from_secs(10),
        "the orphaned route removed",
        || async {
            matches!(
                c.get(ROUTES, "default", "gone").await,
                Err(ApiError::Status(ref s)) if s.code == 404
            )
            .then_some(())
        },
    )
    .await;
    cp.shutdown().await;
}

async fn call_json(c: &Client, method: Method, path: &str, body: &Value, ct: &str) -> Value {
    let b = c
        .call(
            method,
            path,
            Some((serde_json::to_vec(body).expect("json"), ct)),
        )
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&b).expect("json answer")
}

#[tokio::test]
async fn kubectl_needs_the_token_discovery_views_selectors_and_apply() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;

    // No token, or another one: 401 with a Status; health checks stay open.
    let anonymous = Client::new(&format!("http://{}", cp.addr)).expect("client");
    let e = anonymous.get_json("/api").await.expect_err("no token");
    assert_eq!(status_of(&e).reason, "Unauthorized");
    let wrong = anonymous.clone().with_token(Some("nope".into()));
    assert_eq!(
        wrong.get_json("/version").await.expect_err("wrong").code(),
        Some(401)
    );
    anonymous
        .call(Method::GET, "/healthz", None)
        .await
        .expect("healthz");

    // Discovery: groups, versions, resources with short names and verbs.
    let groups = c.get_json("/apis").await.expect("apis");
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["serving.knative.dev", "kantai.dev"]);
    let serving = c
        .get_json("/apis/serving.knative.dev/v1")
        .await
        .expect("serving");
    let ksvc = serving["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "services")
        .expect("services");
    assert_eq!(ksvc["shortNames"], json!(["ksvc", "kservice"]));
    assert!(
        ksvc["verbs"]
            .as_array()
            .expect("verbs")
            .contains(&json!("patch"))
    );
    let core = c.get_json("/api/v1").await.expect("core");
    for want in ["pods", "pods/log", "nodes", "namespaces", "events"] {
        assert!(
            core["resources"]
                .as_array()
                .expect("r")
                .iter()
                .any(|r| r["name"] == want),
            "{want}"
        );
    }
    assert_eq!(c.get_json("/version").await.expect("version")["major"], "1");
    let index = c.get_json("/openapi/v3").await.expect("openapi");
    assert!(index["paths"]["apis/serving.knative.dev/v1"].is_object());

    // dryRun admits and answers without storing.
    let dry = c
        .send_json(
            Method::POST,
            &format!("{}?dryRun=All", SERVICES.collection_path(Some("default"))),
            &service("dry", "img"),
        )
        .await
        .expect("dry run");
    assert_eq!(dry["spec"]["template"]["spec"]["timeoutSeconds"], 300);
    assert!(c.get(SERVICES, "default", "dry").await.is_err());

    // Server-side apply creates, records its manager, and re-applies without a change.
    let path = format!(
        "{}?fieldManager=kubectl&force=false",
        SERVICES.object_path("default", "applied")
    );
    let ssa = call_json(
        &c,
        Method::PATCH,
        &path,
        &service("applied", "img:1"),
        "application/apply-patch+yaml",
    )
    .await;
    assert_eq!(ssa["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(ssa["metadata"]["managedFields"][0]["operation"], "Apply");
    // A JSON patch (RFC 6902) changes the image; a stale resourceVersion test fails.
    let patched = call_json(
        &c,
        Method::PATCH,
        &SERVICES.object_path("default", "applied"),
        &json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "img:2"}]),
        "application/json-patch+json",
    )
    .await;
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:2"
    );
    assert_eq!(patched["metadata"]["generation"], 2);
    let stale = c
        .call(
            Method::PATCH,
            &SERVICES.object_path("default", "applied"),
            Some((
                br#"[{"op":"test","path":"/metadata/resourceVersion","value":"1"}]"#.to_vec(),
                "application/json-patch+json",
            )),
        )
        .await
        .expect_err("stale test");
    assert_eq!(stale.code(), Some(422));

    // Selectors, URL-encoded as kubectl sends them.
    c.create(SERVICES, "default", &service("other", "img"))
        .await
        .expect("other");
    let only = c
        .get_json(&format!(
            "{}?fieldSelector=metadata.name%3Dother",
            SERVICES.collection_path(Some("default"))
        ))
        .await
        .expect("field selector");
    assert_eq!(only["items"].as_array().expect("items").len(), 1);
    assert_eq!(only["items"][0]["metadata"]["name"], "other");
    let bad = c
        .get_json(&format!(
            "{}?fieldSelector=spam%3Deggs",
            SERVICES.collection_path(None)
        ))
        .await
        .expect_err("unsupported field");
    assert_eq!(bad.code(), Some(400));

    // Knative's events on the Service, with its uid (kubectl describe searches by it).
    let uid = c.get(SERVICES, "default", "other").await.expect("svc")["metadata"]["uid"].clone();
    let events = common::wait_for(Duration::from_secs(10), "the service's events", || async {
        let list = c
            .get_json(&format!(
                "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dother,involvedObject.uid%3D{}",
                uid.as_str().unwrap_or("")
            ))
            .await
            .ok()?;
        let items = list["items"].as_array()?.clone();
        (items.len() >= 2).then_some(items)
    })
    .await;
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "Created Route \"other\"")
    );

    // Core views: namespaces from the objects; pods and nodes are read-only.
    let ns = c.get_json("/api/v1/namespaces").await.expect("namespaces");
    assert_eq!(ns["items"][0]["metadata"]["name"], "default");
    let refused = c
        .send_json(Method::POST, "/api/v1/namespaces/default/pods", &json!({}))
        .await
        .expect_err("read-only");
    assert_eq!(refused.code(), Some(405));
    cp.shutdown().await;
}

#[tokio::test]
async fn watches_end_at_their_timeout_with_a_bookmark_when_allowed() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    c.create(SERVICES, "default", &service("marked", "img"))
        .await
        .expect("create");
    let path = format!(
        "{}?watch=true&allowWatchBookmarks=true&timeoutSeconds=1",
        SERVICES.collection_path(Some("default"))
    );
    let started = Instant::now();
    let mut w = c.watch_path(&path).await.expect("watch");
    let mut types = Vec::new();
    let mut last = Value::Null;
    while let Some(ev) = w.next().await {
        let ev = ev.expect("event");
        types.push(ev.type_.clone());
        last = ev.object;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the watch outlived its timeout"
    );
    assert_eq!(types.first().map(String::as_str), Some("ADDED"));
    assert_eq!(
        types.last().map(String::as_str),
        Some("BOOKMARK"),
        "{types:?}"
    );
    let rv: u64 = last["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a resourceVersion");
    let listed = c
        .get_json(&SERVICES.collection_path(Some("default")))
        .await
        .expect("list");
    let now: u64 = listed["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("rv");
    assert!(rv > 0 && rv <= now, "bookmark {rv}, store {now}");
    // Without the flag, no bookmark.
    let path = format!(
        "{}?watch=true&timeoutSeconds=1",
        SERVICES.collection_path(Some("default"))
    );
    let mut w = c.watch_path(&path).await.expect("watch");
    while let Some(ev) = w.next().await {
        assert_ne!(ev.expect("event").type_, "BOOKMARK");
    }
    cp.shutdown().await;
}

#[tokio::test]
async fn dry_runs_bad_metadata_and_filtered_watches_behave_as_kubernetes() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    let mut svc = service("labelled", "img");
    svc["metadata"]["labels"] = json!({"app": "x"});
    c.create(SERVICES, "default", &svc).await.expect("create");

    // A dry-run delete (kubectl puts dryRun in the DeleteOptions body) deletes nothing.
    c.call(
        Method::DELETE,
        &SERVICES.object_path("default", "labelled"),
        Some((
            br#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"]}"#.to_vec(),
            "application/json",
        )),
    )
    .await
    .expect("dry-run delete");
    assert!(c.get(SERVICES, "default", "labelled").await.is_ok());

    // metadata that is not an object, and a create without a namespace: 400, no panic.
    let bad = c
        .call(
            Method::POST,
            &SERVICES.collection_path(Some("default")),
            Some((br#"{"metadata":1}"#.to_vec(), "application/json")),
        )
        .await
        .expect_err("bad metadata");
    assert_eq!(bad.code(), Some(400));
    let nowhere = c
        .send_json(
            Method::POST,
            &SERVICES.collection_path(None),
            &service("nowhere", "img"),
        )
        .await
        .expect_err("no namespace");
    assert_eq!(nowhere.code(), Some(404));

    // A label-selected watch sees the object leave the selection as DELETED.
    let path = format!(
        "{}?watch=true&labelSelector=app%3Dx&timeoutSeconds=2",
        SERVICES.collection_path(Some("default"))
    );
    let mut w = c.watch_path(&path).await.expect("watch");
    let first = w.next().await.expect("event").expect("ok");
    assert_eq!(first.type_, "ADDED");
    c.merge_patch(
        SERVICES,
        "default",
        "labelled",
        &json!({"metadata": {"labels": {"app": "y"}}}),
    )
    .await
    .expect("relabel");
    let mut types = Vec::new();
    while let Some(ev) = w.next().await {
        types.push(ev.expect("event").type_);
    }
    assert_eq!(
        types.first().map(String::as_str),
        Some("DELETED"),
        "{types:?}"
    );
    cp.shutdown().await;
}

async fn register_node_and_instance(c: &Client, instance: Value) {
    c.replace(
        kantai_api::resources::NODES,
        "",
        "node1",
        &json!({"metadata": {"name": "node1"},
                "spec": {"gateway": "127.0.0.1:8080", "data": "127.0.0.1:9000",
                         "admin": "127.0.0.1:9001"}}),
    )
    .await
    .expect("node");
    let name = instance["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    c.replace(
        kantai_api::resources::INSTANCES,
        "default",
        &name,
        &instance,
    )
    .await
    .expect("instance");
}

fn instance(name: &str, revision: &str, image: Option<&str>) -> Value {
    let mut i = json!({"metadata": {"name": name},
                       "spec": {"revision": revision, "service": "gone", "node": "node1"},
                       "status": {"phase": "Running", "ready": true, "restarts": 0,
                                  "address": "127.0.0.1:40001",
                                  "startTime": "2026-11-26T15:08:55Z"}});
    if let Some(img) = image {
        i["spec"]["image"] = Value::from(img);
    }
    i
}

#[tokio::test]
async fn a_draining_pod_keeps_its_image_when_its_revision_is_gone() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    register_node_and_instance(
        &c,
        instance("gone-node1-bcdfg", "gone-00001", Some("hello")),
    )
    .await;
    let pod = c
        .get_json("/api/v1/namespaces/default/pods/gone-node1-bcdfg")
        .await
        .expect("pod");
    assert_eq!(pod["spec"]["containers"][0]["image"], "hello", "{pod}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["image"], "hello",
        "{pod}"
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn a_pod_whose_image_is_unknown_names_an_empty_image_not_null() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    register_node_and_instance(&c, instance("gone-node1-hjklm", "gone-00001", None)).await;
    let pods = c.get_json("/api/v1/pods").await.expect("pods");
    let cs = &pods["items"][0]["status"]["containerStatuses"][0];
    assert_eq!(cs["image"], "", "{pods}");
    cp.shutdown().await;
}

#[tokio::test]
async fn a_pod_on_a_node_that_stopped_reporting_is_unknown() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    // node1's agent never reports: once the control plane's grace is over it is NotReady.
    register_node_and_instance(
        &c,
        instance("lost-node1-npqrs", "lost-00001", Some("hello")),
    )
    .await;
    let pod = common::wait_for(
        Duration::from_secs(10),
        "the pod to turn Unknown",
        || async {
            let p = c
                .get_json("/api/v1/namespaces/default/pods/lost-node1-npqrs")
                .await
                .ok()?;
            (p["status"]["phase"] == "Unknown").then_some(p)
        },
    )
    .await;
    assert_eq!(pod["status"]["reason"], "NodeLost", "{pod}");
    assert_eq!(pod["status"]["containerStatuses"][0]["ready"], false);
    cp.shutdown().await;
}

#[tokio::test]
async fn a_pod_whose_image_cannot_be_pulled_is_pending_with_the_reason_as_kubernetes_shows_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    let mut i = instance(
        "app-node1-bcdfg",
        "app-00001",
        Some("127.0.0.1:5000/fn/app:v1"),
    );
    i["status"] = json!({"phase": "Failed", "ready": false, "restarts": 0,
        "reason": "ErrImagePull",
        "message": "image 127.0.0.1:5000/fn/app:v1 not found at registry 127.0.0.1:5000"});
    register_node_and_instance(&c, i).await;
    let pod = c
        .get_json("/api/v1/namespaces/default/pods/app-node1-bcdfg")
        .await
        .expect("pod");
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
    let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "ErrImagePull", "{pod}");
    assert!(
        waiting["message"]
            .as_str()
            .is_some_and(|m| m.contains("not found at registry")),
        "{pod}"
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn a_pod_names_the_digest_its_container_runs_and_why_its_last_run_ended() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    let mut i = instance(
        "app-node1-hjklm",
        "app-00001",
        Some("127.0.0.1:5000/fn/app:v1"),
    );
    i["status"]["imageDigest"] = json!("127.0.0.1:5000/fn/app@sha256:0123");
    i["status"]["restarts"] = json!(1);
    i["status"]["reason"] = json!("OOMKilled");
    i["status"]["lastExitCode"] = json!(137);
    register_node_and_instance(&c, i).await;
    let pod = c
        .get_json("/api/v1/namespaces/default/pods/app-node1-hjklm")
        .await
        .expect("pod");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["imageID"], "127.0.0.1:5000/fn/app@sha256:0123", "{pod}");
    assert_eq!(
        cs["lastState"]["terminated"]["reason"], "OOMKilled",
        "{pod}"
    );
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 137, "{pod}");
    cp.shutdown().await;
}
