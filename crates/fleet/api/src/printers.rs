//! What `get` shows of each resource: the columns (Knative's printer columns for its kinds,
//! kubectl's for pods and nodes) and each object's cells. The server sends them as a
//! `meta.k8s.io/v1` Table to kubectl; `kantai get` renders the same ones.

use std::time::SystemTime;

use kantai_model::meta::JsonMeta;
use serde_json::{Value, json};

use crate::resources::Resource;
use crate::time::{age, parse_rfc3339};

/// One column of a table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Column {
    /// Header, as Kubernetes spells it (kubectl prints it upper-cased).
    pub name: &'static str,
    /// OpenAPI type of the cells: `string` or `integer`.
    pub kind: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: u8,
    /// What the column shows.
    pub description: &'static str,
}

const fn col(name: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind: "string",
        priority: 0,
        description,
    }
}

const fn wide(name: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind: "string",
        priority: 1,
        description,
    }
}

const NAME: Column = col("Name", "Name must be unique within a namespace.");
const READY: Column = col("Ready", "The Ready condition's status.");
const REASON: Column = col("Reason", "The Ready condition's reason.");
const AGE: Column = col("Age", "Time since the object was created.");

/// The columns of a resource's table, `Name` first (events: last, and only when wide, as
/// kubectl shows them).
pub fn columns(r: &Resource) -> Vec<Column> {
    if r.plural == "events" {
        return vec![
            col("Last Seen", "Time since the event was last seen."),
            col("Type", "Normal or Warning."),
            col("Reason", "Why."),
            col("Object", "The object concerned."),
            col("Message", "What happened."),
            Column {
                kind: "integer",
                ..wide("Count", "How often it happened.")
            },
            Column {
                priority: 1,
                ..NAME
            },
        ];
    }
    let mut c = vec![NAME];
    c.extend(match (r.group, r.plural) {
        (_, "services") => vec![
            col("URL", "The service's external URL."),
            col("LatestCreated", "The latest revision created."),
            col("LatestReady", "The latest revision ready."),
            READY,
            REASON,
        ],
        (_, "configurations") => vec![
            col("LatestCreated", "The latest revision created."),
            col("LatestReady", "The latest revision ready."),
            READY,
            REASON,
        ],
        (_, "revisions") => vec![
            col("Config Name", "The configuration the revision belongs to."),
            col(
                "Generation",
                "The configuration generation it was created from.",
            ),
            READY,
            REASON,
            col("Actual Replicas", "Instances running."),
            col("Desired Replicas", "Instances the autoscaler wants."),
        ],
        (_, "routes") => vec![col("URL", "The route's external URL."), READY, REASON],
        (_, "placements") => vec![
            col("Nodes", "The fleet's nodes, in the order of the counts."),
            col(
                "Ready",
                "Desired-per-node / ready-per-node instance counts.",
            ),
            wide(
                "Activator",
                "Whether requests go through the activator role.",
            ),
            wide("Unschedulable", "Desired instances that fit on no node."),
        ],
        (_, "instances") => vec![
            col("Ready", "Ready containers / containers."),
            col("Status", "The instance's phase."),
            Column {
                kind: "integer",
                ..col("Restarts", "How often the process was restarted.")
            },
            AGE,
            wide("IP", "Where the node's queue role reaches it."),
            wide("Node", "The node running it."),
            wide("Revision", "The revision it runs."),
            wide(
                "Message",
                "Why it is not ready: the image pull's progress, a failure.",
            ),
        ],
        ("", "pods") => vec![
            col("Ready", "Ready containers / containers."),
            col("Status", "The aggregate status of the containers."),
            Column {
                kind: "integer",
                ..col("Restarts", "The number of times the containers restarted.")
            },
            AGE,
            wide("IP", "The pod's IP address."),
            wide("Node", "The node the pod runs on."),
            wide("Nominated Node", "Not used by kantai."),
            wide("Readiness Gates", "Not used by kantai."),
        ],
        ("", "nodes") => vec![
            col(
                "Status",
                "Ready when its agent reported within the timeout.",
            ),
            col("Roles", "The node's tier label."),
            AGE,
            col("Version", "The node agent's version."),
            wide("Internal-IP", "The node's address."),
        ],
        (_, "nodes") => vec![
            col(
                "Status",
                "Ready when its agent reported within the timeout.",
            ),
            AGE,
            wide("Gateway", "Where clients send requests."),
            wide("Tier", "The node's tier label."),
        ],
        (_, "namespaces") => vec![col("Status", "The namespace's phase."), AGE],
        ("", "secrets") => vec![
            col("Type", "The type of the secret."),
            Column {
                kind: "integer",
                ..col("Data", "The number of keys in the secret.")
            },
            AGE,
        ],
        ("", "configmaps") => vec![
            Column {
                kind: "integer",
                ..col(
                    "Data",
                    "The number of keys in the config map (data and binaryData).",
                )
            },
            AGE,
        ],
        _ => vec![AGE],
    });
    c
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn keys(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len)
}

fn condition(v: &Value, t: &str) -> (String, String) {
    v["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .map(|c| (s(&c["status"]), s(&c["reason"])))
        .unwrap_or_else(|| ("Unknown".into(), String::new()))
}

fn age_at(v: &Value, now: SystemTime) -> String {
    v.as_str()
        .and_then(parse_rfc3339)
        .map(|t| age(t, now))
        .unwrap_or_else(|| "<unknown>".into())
}

/// The cells of one object's row, one per column of [`columns`]. `order` is the fleet's
/// node order (placement counts follow it).
pub fn cells(r: &Resource, v: &Value, order: &[String], now: SystemTime) -> Vec<Value> {
    let name = json!(v.name());
    let created = age_at(&v.metadata()["creationTimestamp"], now);
    let (ready, reason) = condition(v, "Ready");
    let st = &v["status"];
    if r.plural == "events" {
        let o = &v["involvedObject"];
        let last = if v["lastTimestamp"].is_string() {
            &v["lastTimestamp"]
        } else {
            &v.metadata()["creationTimestamp"]
        };
        return vec![
            json!(age_at(last, now)),
            json!(s(&v["type"])),
            json!(s(&v["reason"])),
            json!(format!(
                "{}/{}",
                s(&o["kind"]).to_ascii_lowercase(),
                s(&o["name"])
            )),
            json!(s(&v["message"])),
            json!(v["count"].as_u64().unwrap_or(1)),
            name,
        ];
    }
    let mut row = vec![name];
    row.extend(match (r.group, r.plural) {
        (_, "services") => vec![
            json!(s(&st["url"])),
            json!(s(&st["latestCreatedRevisionName"])),
            json!(s(&st["latestReadyRevisionName"])),
            json!(ready),
            json!(reason),
        ],
        (_, "configurations") => vec![
            json!(s(&st["latestCreatedRevisionName"])),
            json!(s(&st["latestReadyRevisionName"])),
            json!(ready),
            json!(reason),
        ],
        (_, "revisions") => vec![
            json!(
                v.label("serving.knative.dev/configuration")
                    .unwrap_or_default()
            ),
            json!(
                v.label("serving.knative.dev/configurationGeneration")
                    .unwrap_or_default()
            ),
            json!(ready),
            json!(reason),
            json!(s(&st["actualReplicas"])),
            json!(s(&st["desiredReplicas"])),
        ],
        (_, "routes") => vec![json!(s(&st["url"])), json!(ready), json!(reason)],
        (_, "placements") => {
            let p = kantai_model::fleet::from_json::<kantai_model::fleet::Placement>(v)
                .unwrap_or_default();
            let nodes = format!(
                "[{}]",
                order
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            vec![
                json!(nodes),
                json!(p.summary(order)),
                json!(p.spec.activator_in_path.to_string()),
                json!(p.spec.unschedulable.to_string()),
            ]
        }
        (_, "instances") => {
            let phase = s(&st["phase"]);
            // As kubectl shows a pod: the reason while it is not running well
            // (ContainerCreating, ErrImagePull, OOMKilled), else the phase.
            let status = match st["reason"].as_str() {
                Some(r) if st["ready"] != true && phase != "Terminating" && !r.is_empty() => {
                    r.to_owned()
                }
                _ if phase.is_empty() => "Pending".into(),
                _ => phase,
            };
            vec![
                json!(format!("{}/1", u8::from(st["ready"] == true))),
                json!(status),
                json!(st["restarts"].as_u64().unwrap_or(0)),
                json!(match st["startTime"].as_str() {
                    Some(_) => age_at(&st["startTime"], now),
                    None => created,
                }),
                json!(s(&st["address"])),
                json!(s(&v["spec"]["node"])),
                json!(s(&v["spec"]["revision"])),
                json!(s(&st["message"])),
            ]
        }
        ("", "pods") => {
            let cs = &st["containerStatuses"][0];
            let status = if v.metadata()["deletionTimestamp"].is_string() {
                "Terminating".to_owned()
            } else if st["phase"] == "Unknown" {
                // Its node stopped reporting: whatever the container last said is stale.
                "Unknown".to_owned()
            } else if let Some(w) = cs["state"]["waiting"]["reason"].as_str() {
                w.to_owned()
            } else if let Some(t) = cs["state"]["terminated"]["reason"].as_str() {
                t.to_owned()
            } else {
                s(&st["phase"])
            };
            vec![
                json!(format!("{}/1", u8::from(cs["ready"] == true))),
                json!(status),
                json!(cs["restartCount"].as_u64().unwrap_or(0)),
                json!(created),
                json!(st["podIP"].as_str().unwrap_or("<none>")),
                json!(s(&v["spec"]["nodeName"])),
                json!("<none>"),
                json!("<none>"),
            ]
        }
        ("", "nodes") => {
            let ip = st["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .map(|x| s(&x["address"]))
                .unwrap_or_default();
            vec![
                json!(if ready == "True" { "Ready" } else { "NotReady" }),
                json!(v.label("tier").unwrap_or("<none>")),
                json!(created),
                json!(s(&st["nodeInfo"]["kubeletVersion"])),
                json!(ip),
            ]
        }
        (_, "nodes") => vec![
            json!(if ready == "True" { "Ready" } else { "NotReady" }),
            json!(created),
            json!(s(&v["spec"]["gateway"])),
            json!(v.label("tier").unwrap_or_default()),
        ],
        (_, "namespaces") => vec![json!(s(&st["phase"])), json!(created)],
        // Counts only: a table never carries a secret's values.
        ("", "secrets") => vec![
            json!(s(&v["type"])),
            json!(keys(&v["data"])),
            json!(created),
        ],
        ("", "configmaps") => vec![
            json!(keys(&v["data"]) + keys(&v["binaryData"])),
            json!(created),
        ],
        _ => vec![json!(created)],
    });
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{ALL, INSTANCES, PODS, SERVICES};

    #[test]
    fn every_resource_has_as_many_cells_as_columns() {
        let now = SystemTime::now();
        let v = json!({"metadata": {"name": "x"}, "status": {}, "spec": {}});
        for r in ALL {
            assert_eq!(
                columns(r).len(),
                cells(r, &v, &["node1".into()], now).len(),
                "{}",
                r.plural
            );
            assert!(columns(r).iter().any(|c| c.name == "Name"), "{}", r.plural);
        }
    }

    #[test]
    fn secrets_and_config_maps_show_kubectls_columns_and_counts_only() {
        use crate::resources::{CONFIGMAPS, SECRETS};
        let names = |r| columns(r).iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(names(&SECRETS), ["Name", "Type", "Data", "Age"]);
        assert_eq!(names(&CONFIGMAPS), ["Name", "Data", "Age"]);
        let secret = json!({"metadata": {"name": "db"}, "type": "Opaque",
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="}});
        let c = cells(&SECRETS, &secret, &[], SystemTime::now());
        assert_eq!((&c[1], &c[2]), (&json!("Opaque"), &json!(2)));
        assert!(!format!("{c:?}").contains("aHVudGVyMg"), "{c:?}");
        let cm =
            json!({"metadata": {"name": "app"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
        assert_eq!(cells(&CONFIGMAPS, &cm, &[], SystemTime::now())[1], 2);
    }

    #[test]
    fn services_show_knative_columns() {
        let names: Vec<_> = columns(&SERVICES).iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "URL",
                "LatestCreated",
                "LatestReady",
                "Ready",
                "Reason"
            ]
        );
        let v = json!({"metadata": {"name": "hello"}, "status": {
            "url": "http://hello.default.svc.cluster.local",
            "latestCreatedRevisionName": "hello-00001", "latestReadyRevisionName": "hello-00001",
            "conditions": [{"type": "Ready", "status": "True"}]}});
        let c = cells(&SERVICES, &v, &[], SystemTime::now());
        assert_eq!(c[4], "True");
        assert_eq!(c[1], "http://hello.default.svc.cluster.local");
    }

    #[test]
    fn pods_show_waiting_reasons_and_wide_columns() {
        let v = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "node3"},
            "status": {"phase": "Pending", "containerStatuses": [{"ready": false, "restartCount": 2,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        let c = cells(&PODS, &v, &[], SystemTime::now());
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "ContainerCreating");
        assert_eq!(c[3], 2);
        assert_eq!(c[6], "node3");
        assert_eq!(columns(&PODS)[6].priority, 1);
    }

    #[test]
    fn pods_on_a_lost_node_show_unknown() {
        let v = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "node3"},
            "status": {"phase": "Unknown", "reason": "NodeLost", "containerStatuses": [{
                "ready": false, "restartCount": 0, "state": {"running": {}}}]}});
        let c = cells(&PODS, &v, &[], SystemTime::now());
        assert_eq!(
            (c[1].as_str(), c[2].as_str()),
            (Some("0/1"), Some("Unknown"))
        );
    }

    #[test]
    fn instances_waiting_for_their_image_show_the_reason_and_the_pulls_progress() {
        let v = json!({"metadata": {"name": "app-node1-abcde"},
            "spec": {"node": "node1", "revision": "app-00001"},
            "status": {"phase": "Pending", "ready": false, "restarts": 0,
                "reason": "ContainerCreating",
                "message": "pulling image 127.0.0.1:5000/fn/app:v1: pulling 1/3 layers, 2.0 of 9.5 MB"}});
        let names: Vec<&str> = columns(&INSTANCES).iter().map(|c| c.name).collect();
        let c = cells(&INSTANCES, &v, &[], SystemTime::now());
        let at = |n: &str| &c[names.iter().position(|x| *x == n).expect(n)];
        assert_eq!(at("Status"), "ContainerCreating");
        assert!(
            at("Message")
                .as_str()
                .is_some_and(|m| m.ends_with("pulling 1/3 layers, 2.0 of 9.5 MB")),
            "{c:?}"
        );
    }

    #[test]
    fn a_ready_instance_shows_its_phase_even_after_a_restart_with_a_reason() {
        let v = json!({"metadata": {"name": "app-node1-abcde"}, "spec": {"node": "node1"},
            "status": {"phase": "Running", "ready": true, "restarts": 1, "reason": "OOMKilled"}});
        let c = cells(&INSTANCES, &v, &[], SystemTime::now());
        assert_eq!(c[2], "Running");
    }
}
