//! Core `v1` views kubectl expects of any cluster: pods (kantai's instances), nodes
//! (kantai's nodes) and namespaces. They are computed from the stored objects on every
//! read, never stored, so they cannot drift from what they show.

use std::collections::BTreeSet;

use kantai_api::resources::{self, Resource};
use kantai_model::meta::JsonMeta;
use serde_json::{Value, json};

use crate::Shared;

/// The container name Knative gives the user's container.
const USER_CONTAINER: &str = "user-container";

/// The stored resource a view is computed from, if `r` is a view.
pub fn backing(r: &Resource) -> Option<Resource> {
    match (r.group, r.plural) {
        ("", "pods") => Some(resources::INSTANCES),
        ("", "nodes") => Some(resources::NODES),
        _ => None,
    }
}

/// Converts a stored object of `backing(r)` into its view.
pub fn view(s: &Shared, r: &Resource, stored: &Value) -> Value {
    match r.plural {
        "pods" => pod(s, stored),
        "nodes" => node(stored),
        _ => stored.clone(),
    }
}

fn meta(stored: &Value, labels: Value) -> Value {
    let m = &stored["metadata"];
    let mut out = json!({
        "name": m["name"],
        "uid": m["uid"],
        "resourceVersion": m["resourceVersion"],
        "creationTimestamp": m["creationTimestamp"],
        "labels": labels,
    });
    if let Some(ns) = m.get("namespace") {
        out["namespace"] = ns.clone();
    }
    if let Some(d) = m.get("deletionTimestamp") {
        out["deletionTimestamp"] = d.clone();
    }
    out
}

/// An instance as a Pod: its node, its one container (Knative's `user-container`), its
/// phase, readiness, restarts and address.
fn pod(s: &Shared, inst: &Value) -> Value {
    let ns = inst.namespace().unwrap_or("");
    let spec = &inst["spec"];
    let st = &inst["status"];
    let revision = spec["revision"].as_str().unwrap_or("");
    let rev = s.store.get(&resources::REVISIONS, ns, revision);
    let container = rev
        .as_ref()
        .map(|r| r["spec"]["containers"][0].clone())
        .unwrap_or(Value::Null);
    // The instance names its image itself: its revision may be gone while it drains.
    let image = spec["image"]
        .as_str()
        .filter(|i| !i.is_empty())
        .or_else(|| container["image"].as_str())
        .unwrap_or("")
        .to_owned();
    let mut labels = inst["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (k, v) in [
        ("serving.knative.dev/revision", revision),
        (
            "serving.knative.dev/service",
            spec["service"].as_str().unwrap_or(""),
        ),
        (
            "serving.knative.dev/configuration",
            rev.as_ref()
                .and_then(|r| r.label("serving.knative.dev/configuration"))
                .unwrap_or(""),
        ),
    ] {
        if !v.is_empty() {
            labels.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    }
    let node_name = spec["node"].as_str().unwrap_or("");
    let node = s.store.get(&resources::NODES, "", node_name);
    // As Kubernetes' node lifecycle controller does for the pods of a node that stopped
    // reporting: what runs there is not known, so the pod says Unknown, not Running.
    let node_lost = node.as_ref().is_none_or(|n| {
        n["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .is_some_and(|c| c["status"] != "True")
    });
    let ready = st["ready"] == true && !node_lost;
    // An instance that cannot start (its image cannot be pulled, its config is refused) is
    // what Kubernetes shows as a Pending pod whose container waits with that reason.
    let waiting_reason = st["reason"]
        .as_str()
        .filter(|r| st["phase"] == "Failed" && !r.is_empty());
    let phase = match st["phase"].as_str() {
        _ if node_lost => "Unknown",
        Some("Running" | "Terminating") => "Running",
        Some("Failed") if waiting_reason.is_some() => "Pending",
        Some("Failed") => "Failed",
        _ => "Pending",
    };
    let address = st["address"].as_str().unwrap_or("");
    let ip = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host_ip = node
        .as_ref()
        .and_then(|n| {
            let data = n["spec"]["data"].as_str()?.to_owned();
            Some(
                data.rsplit_once(':')
                    .map_or(data.clone(), |(h, _)| h.to_owned()),
            )
        })
        .unwrap_or_default();
    let started = st["startTime"].clone();
    let state = match (st["phase"].as_str(), ready) {
        (Some("Running" | "Terminating"), _) => json!({"running": {"startedAt": started}}),
        (Some("Failed"), _) if waiting_reason.is_some() => {
            json!({"waiting": {"reason": waiting_reason, "message": st["message"]}})
        }
        (Some("Failed"), _) => json!({"terminated": {
            "exitCode": st["lastExitCode"].as_i64().unwrap_or(1),
            "reason": "Error",
            "message": st["message"],
        }}),
        _ => json!({"waiting": {"reason": "ContainerCreating", "message": st["message"]}}),
    };
    let condition = |t: &str, ok: bool| {
        json!({"type": t, "status": if ok { "True" } else { "False" },
               "lastTransitionTime": started})
    };
    let mut c = json!({"name": USER_CONTAINER, "image": image});
    for k in [
        "command",
        "args",
        "env",
        "ports",
        "resources",
        "readinessProbe",
    ] {
        if let Some(v) = container.get(k) {
            c[k] = v.clone();
        }
    }
    let mut out = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(inst, Value::Object(labels)),
        "spec": {
            "nodeName": node_name,
            "containers": [c],
            "restartPolicy": "Always",
        },
        "status": {
            "phase": phase,
            "conditions": [
                condition("PodScheduled", true),
                condition("Initialized", true),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
            "hostIP": host_ip,
            "podIP": ip,
            "startTime": started,
            "containerStatuses": [{
                "name": USER_CONTAINER,
                "image": image,
                "imageID": st["imageDigest"].as_str().unwrap_or(""),
                "ready": ready,
                "started": phase == "Running",
                "restartCount": st["restarts"].as_u64().unwrap_or(0),
                "state": state,
            }],
        },
    });
    // Why the last run ended (OOMKilled, Error), as kubectl describe shows it.
    let restarts = st["restarts"].as_u64().unwrap_or(0);
    if restarts > 0
        && phase == "Running"
        && let Some(r) = st["reason"].as_str()
    {
        out["status"]["containerStatuses"][0]["lastState"] = json!({"terminated": {
            "exitCode": st["lastExitCode"].as_i64().unwrap_or(1),
            "reason": r,
        }});
    }
    if ip.is_empty()
        && let Some(o) = out["status"].as_object_mut()
    {
        o.remove("podIP");
    }
    if let Some(m) = st["message"].as_str() {
        out["status"]["message"] = Value::String(m.to_owned());
    }
    if node_lost {
        out["status"]["reason"] = Value::from("NodeLost");
        out["status"]["message"] = Value::from(format!(
            "node {node_name} is not ready: its agent stopped reporting or its node object is gone, so this instance's state is unknown"
        ));
    }
    if let Some(owner) = rev {
        out["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": true, "blockOwnerDeletion": true,
        }]);
    }
    out
}

/// A kantai node as a Kubernetes Node: Ready condition, addresses, capacity.
fn node(n: &Value) -> Value {
    let spec = &n["spec"];
    let host = |addr: &str| addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned();
    let mut capacity = serde_json::Map::new();
    if let Some(i) = spec["capacity"]["instances"].as_u64() {
        capacity.insert("pods".into(), Value::String(i.to_string()));
    }
    for k in ["cpu", "memory"] {
        if let Some(v) = spec["capacity"].get(k).filter(|v| !v.is_null()) {
            capacity.insert(
                k.into(),
                Value::String(v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            );
        }
    }
    let mut labels = n["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(name) = n["metadata"]["name"].as_str() {
        labels.insert(
            "kubernetes.io/hostname".into(),
            Value::String(name.to_owned()),
        );
    }
    // kubectl describe node shows when each condition was last heard of: the heartbeat.
    let mut conditions = n["status"]["conditions"].clone();
    if let Some(cs) = conditions.as_array_mut() {
        for c in cs {
            c["lastHeartbeatTime"] = n["status"]["lastHeartbeatTime"].clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta(n, Value::Object(labels)),
        "spec": {},
        "status": {
            "conditions": if conditions.is_array() { conditions } else { json!([]) },
            "addresses": [
                {"type": "InternalIP", "address": host(spec["data"].as_str().unwrap_or(""))},
                {"type": "Hostname", "address": n["metadata"]["name"]},
            ],
            "capacity": capacity.clone(),
            "allocatable": capacity,
            "nodeInfo": {
                "kubeletVersion": concat!("kantai-", env!("CARGO_PKG_VERSION")),
                "containerRuntimeVersion": "kantai-process",
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH,
                "osImage": "", "kernelVersion": "", "kubeProxyVersion": "",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        },
    })
}

/// Every namespace: those created through the API, `default`, and any other holding an
/// object, as Namespace objects.
pub fn namespaces(s: &Shared) -> Vec<Value> {
    let stored = s.store.list(&resources::NAMESPACES, None).0;
    let mut names: BTreeSet<String> = BTreeSet::from(["default".to_owned()]);
    for r in resources::ALL
        .iter()
        .filter(|r| r.namespaced && backing(r).is_none())
    {
        for o in s.store.list(r, None).0 {
            if let Some(ns) = o.namespace() {
                names.insert(ns.to_owned());
            }
        }
    }
    for o in &stored {
        names.remove(o.name());
    }
    let started = kantai_api::time::rfc3339(s.started);
    let mut all: Vec<Value> = stored.iter().map(|o| (**o).clone()).collect();
    all.extend(names.into_iter().map(|n| {
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": n,
                "uid": format!("kantai-namespace-{n}"),
                "creationTimestamp": started,
                "labels": {"kubernetes.io/metadata.name": n},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        })
    }));
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all
}

/// A namespace to store, from what a client sent and admission let through: its name and
/// labels.
pub fn new_namespace(body: &Value) -> Value {
    let name = body.name();
    let mut labels = body["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(
        "kubernetes.io/metadata.name".into(),
        Value::String(name.to_owned()),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}
