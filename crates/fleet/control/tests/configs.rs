//! Secrets and ConfigMaps through a control plane on loopback, with fake agents (Node and
//! Instance objects written as an agent writes them): what each node's config stream sends,
//! and a revision's readiness while a Secret it needs is missing.

use std::time::Duration;

use kantai_api::resources::{CONFIGMAPS, EVENTS, INSTANCES, NODES, REVISIONS, SECRETS, SERVICES};
use kantai_api::wire::ConfigEvent;
use kantai_api::{ApiError, Client};
use kantai_control::ControlPlane;
use serde_json::{Value, json};

mod common;

async fn start(dir: &std::path::Path) -> (ControlPlane, Client) {
    let cp = common::control_plane(dir).await;
    let client = Client::new(&format!("http://{}", cp.addr))
        .expect("client")
        .with_token(Some(common::TOKEN.to_owned()));
    (cp, client)
}

/// A Service whose container reads ConfigMap `app` (key `greeting`) from env and as a
/// volume, and, when `secret` is given, key `password` of that Secret from env.
fn service(name: &str, secret: Option<&str>) -> Value {
    let mut env = vec![json!({"name": "GREETING",
        "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}})];
    if let Some(s) = secret {
        env.push(json!({"name": "PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": s, "key": "password"}}}));
    }
    json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {
            "containers": [{"image": "kantai/hello", "env": env,
                            "volumeMounts": [{"name": "app", "mountPath": "/etc/app",
                                              "readOnly": true}]}],
            "volumes": [{"name": "app", "configMap": {"name": "app"}}],
        }}}
    })
}

fn config_map(greeting: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
           "data": {"greeting": greeting}})
}

async fn register_node(c: &Client, node: &str, port: u16) {
    c.replace(
        NODES,
        "",
        node,
        &json!({"metadata": {"name": node},
                "spec": {"gateway": format!("127.0.0.1:{port}"),
                         "data": format!("127.0.0.1:{}", port + 1),
                         "admin": format!("127.0.0.1:{}", port + 2)}}),
    )
    .await
    .expect("node");
}

/// An Instance object of `revision` on `node`, as its agent writes it.
async fn instance(c: &Client, name: &str, service: &str, revision: &str, node: &str, ready: bool) {
    c.replace(
        INSTANCES,
        "default",
        name,
        &json!({"metadata": {"name": name},
                "spec": {"revision": revision, "service": service, "node": node},
                "status": {"phase": if ready { "Running" } else { "Pending" }, "ready": ready,
                           "restarts": 0, "address": "127.0.0.1:40001"}}),
    )
    .await
    .expect("instance");
}

/// The next line of a config stream, within 10 s.
macro_rules! next_event {
    ($stream:expr, $what:expr) => {
        tokio::time::timeout(Duration::from_secs(10), $stream.next())
            .await
            .unwrap_or_else(|_| panic!("no config event within 10 s: {}", $what))
            .expect("the stream ended")
            .expect("a config event")
    };
}

fn set_of(e: ConfigEvent) -> (String, kantai_model::serving::resolve::ResolvedConfig) {
    match e {
        ConfigEvent::Set {
            revision, config, ..
        } => (revision, config),
        other => panic!("not a SET: {other:?}"),
    }
}

fn condition(v: &Value, kind: &str) -> Option<Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

#[tokio::test]
async fn a_node_is_sent_only_its_revisions_configs_and_their_updates() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    register_node(&c, "node1", 18080).await;
    register_node(&c, "node2", 18090).await;
    c.create(CONFIGMAPS, "default", &config_map("hello"))
        .await
        .expect("configmap");
    c.create(SERVICES, "default", &service("app", None))
        .await
        .expect("service");
    common::wait_for(Duration::from_secs(10), "the revision", || async {
        cp.shared.store.get(&REVISIONS, "default", "app-00001")
    })
    .await;
    instance(&c, "app-node1-bcdfg", "app", "app-00001", "node1", false).await;

    let mut one = c.configs("node1").await.expect("node1's stream");
    let mut two = c.configs("node2").await.expect("node2's stream");
    let (rev, config) = set_of(next_event!(one, "node1's config"));
    assert_eq!(rev, "app-00001");
    assert_eq!(config.env_values.get(&0).map(String::as_str), Some("hello"));
    let files = &config.volumes["app"];
    assert_eq!(files.len(), 1, "{config:?}");
    assert_eq!(
        (files[0].path.as_str(), files[0].data.as_slice()),
        ("greeting", b"hello".as_slice())
    );
    assert!(config.missing.is_empty(), "{config:?}");
    assert_eq!(next_event!(one, "node1's SYNCED"), ConfigEvent::Synced);
    assert_eq!(next_event!(two, "node2's SYNCED"), ConfigEvent::Synced);

    // An update of the ConfigMap reaches the node that runs the revision.
    c.replace(CONFIGMAPS, "default", "app", &config_map("bonjour"))
        .await
        .expect("update");
    let (rev, config) = set_of(next_event!(one, "node1's updated config"));
    assert_eq!(rev, "app-00001");
    assert_eq!(
        config.volumes["app"][0].data.as_slice(),
        b"bonjour".as_slice()
    );

    // node2 runs nothing of it: the first thing it is ever sent is a revision it runs,
    // which came after the update (its stream follows the store's order).
    c.create(SERVICES, "default", &service("other", None))
        .await
        .expect("service");
    common::wait_for(Duration::from_secs(10), "the other revision", || async {
        cp.shared.store.get(&REVISIONS, "default", "other-00001")
    })
    .await;
    instance(
        &c,
        "other-node2-hjklm",
        "other",
        "other-00001",
        "node2",
        false,
    )
    .await;
    let (rev, _) = set_of(next_event!(two, "node2's config"));
    assert_eq!(rev, "other-00001", "node2 was sent another node's revision");

    // The revision gone (with its placement and instance), the node drops its config.
    c.delete(SERVICES, "default", "app").await.expect("delete");
    loop {
        match next_event!(one, "node1's REMOVE") {
            ConfigEvent::Remove {
                namespace,
                revision,
            } if revision == "app-00001" => {
                assert_eq!(namespace, "default");
                break;
            }
            // The other revision may be placed on node1 too.
            ConfigEvent::Set { revision, .. } if revision == "other-00001" => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    cp.shutdown().await;
}

#[tokio::test]
async fn the_config_stream_needs_the_token() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, _) = start(dir.path()).await;
    let anonymous = Client::new(&format!("http://{}", cp.addr)).expect("client");
    match anonymous.configs("node1").await {
        Err(ApiError::Status(s)) => assert_eq!(s.code, 401, "{s:?}"),
        Err(e) => panic!("not a Status error: {e}"),
        Ok(_) => panic!("a config stream without the token"),
    }
    cp.shutdown().await;
}

#[tokio::test]
async fn a_missing_secret_keeps_the_revision_from_ready_until_it_is_created() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, c) = start(dir.path()).await;
    register_node(&c, "node1", 18100).await;
    c.create(CONFIGMAPS, "default", &config_map("hello"))
        .await
        .expect("configmap");
    c.create(SERVICES, "default", &service("app", Some("db")))
        .await
        .expect("service");
    let rev = common::wait_for(
        Duration::from_secs(10),
        "the revision not Ready for want of the secret",
        || async {
            let v = cp.shared.store.get(&REVISIONS, "default", "app-00001")?;
            let ready = condition(&v, "Ready")?;
            (ready["reason"] == "CreateContainerConfigError").then_some(v)
        },
    )
    .await;
    for kind in ["Ready", "ContainerHealthy", "ResourcesAvailable"] {
        let cond = condition(&rev, kind).expect(kind);
        assert_eq!(cond["status"], "False", "{kind}: {cond}");
        assert_eq!(cond["message"], "secret \"db\" not found", "{kind}: {cond}");
    }
    let events = |reason: &str| -> Vec<Value> {
        cp.shared
            .store
            .list(&EVENTS, Some("default"))
            .0
            .iter()
            .filter(|e| e["reason"] == reason && e["involvedObject"]["name"] == "app-00001")
            .map(|e| (**e).clone())
            .collect()
    };
    let warned = events("CreateContainerConfigError");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["type"], "Warning");
    assert_eq!(warned[0]["message"], "secret \"db\" not found");

    // The Secret created, the problem clears by itself; an instance that gets ready
    // makes the revision Ready.
    c.create(
        SECRETS,
        "default",
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                "stringData": {"password": "s3cret-value"}}),
    )
    .await
    .expect("secret");
    common::wait_for(Duration::from_secs(10), "the problem to clear", || async {
        let v = cp.shared.store.get(&REVISIONS, "default", "app-00001")?;
        (condition(&v, "ContainerHealthy")?["status"] != "False").then_some(())
    })
    .await;
    instance(&c, "app-node1-bcdfg", "app", "app-00001", "node1", true).await;
    common::wait_for(Duration::from_secs(10), "the revision Ready", || async {
        let v = cp.shared.store.get(&REVISIONS, "default", "app-00001")?;
        (condition(&v, "Ready")?["status"] == "True").then_some(())
    })
    .await;
    // One event for the problem, however many passes saw it; no value anywhere in events.
    let warned = events("CreateContainerConfigError");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["count"], 1, "{warned:?}");
    let all = cp.shared.store.list(&EVENTS, None).0;
    assert!(
        !all.iter().any(|e| e.to_string().contains("s3cret-value")),
        "a secret's value in an event: {all:?}"
    );
    cp.shutdown().await;
}
