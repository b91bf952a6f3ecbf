//! Events (Kubernetes' core `v1` Event): what the controllers want an operator to see about
//! an object. A repeated event (same object and reason) updates its count and last time
//! instead of piling up, as Kubernetes' event recorder does.

use kantai_api::Resource;
use kantai_api::resources::{CONFIGURATIONS, EVENTS, NODES, REVISIONS, SERVICES};
use kantai_model::meta::JsonMeta;
use serde_json::{Value, json};
use tracing::warn;

use crate::Shared;

/// The object an event is about.
pub struct Involved {
    resource: Resource,
    name: String,
}

impl Involved {
    /// A Revision.
    pub fn revision(name: &str) -> Involved {
        Involved {
            resource: REVISIONS,
            name: name.to_owned(),
        }
    }

    /// A Service.
    pub fn service(name: &str) -> Involved {
        Involved {
            resource: SERVICES,
            name: name.to_owned(),
        }
    }

    /// A Configuration.
    pub fn configuration(name: &str) -> Involved {
        Involved {
            resource: CONFIGURATIONS,
            name: name.to_owned(),
        }
    }

    /// A Node (cluster-scoped: its events go in `default`, as Kubernetes records them).
    pub fn node(name: &str) -> Involved {
        Involved {
            resource: NODES,
            name: name.to_owned(),
        }
    }
}

/// Records a warning about `involved` in namespace `ns`; a repeated one (same object and
/// reason) counts up, whatever its message.
pub fn record(s: &Shared, ns: &str, involved: &Involved, reason: &str, message: &str) {
    warn!(object = %involved.name, reason, "{message}");
    let name = format!("{}.{}", involved.name, reason.to_ascii_lowercase());
    write(s, ns, involved, "Warning", reason, message, &name);
}

/// Records a warning about `involved` once per distinct message: a problem that lasts is
/// one event, however many passes see it (a new problem, another event).
pub fn warn_once(s: &Shared, ns: &str, involved: &Involved, reason: &str, message: &str) {
    let name = distinct_name(&involved.name, reason, message);
    if s.store.get(&EVENTS, ns, &name).is_some() {
        return;
    }
    warn!(object = %involved.name, reason, "{message}");
    write(s, ns, involved, "Warning", reason, message, &name);
}

/// The name of an event kept once per distinct message: the object, the reason and a stable
/// hash of the message, so distinct messages stay apart under a short name that a later pass
/// (or a restarted controller) finds again.
fn distinct_name(object: &str, reason: &str, message: &str) -> String {
    let hash = kantai_policy::stable_hash(message.as_bytes()) as u32;
    format!("{object}.{}.{hash:08x}", reason.to_ascii_lowercase())
}

/// Records a normal event (`Created Route "hello"`), one per distinct message, as Knative's
/// controllers do on the objects they create.
pub fn normal(s: &Shared, ns: &str, involved: &Involved, reason: &str, message: &str) {
    let name = distinct_name(&involved.name, reason, message);
    write(s, ns, involved, "Normal", reason, message, &name);
}

fn write(
    s: &Shared,
    ns: &str,
    involved: &Involved,
    type_: &str,
    reason: &str,
    message: &str,
    name: &str,
) {
    let now = kantai_api::time::now();
    let object_ns = if involved.resource.namespaced { ns } else { "" };
    // kubectl describe finds an object's events by its uid too.
    let uid = s
        .store
        .get(&involved.resource, object_ns, &involved.name)
        .and_then(|o| o.uid().map(Value::from))
        .unwrap_or(Value::Null);
    let name = name.to_owned();
    let result = match s.store.get(&EVENTS, ns, &name) {
        Some(old) => {
            let mut e: Value = (*old).clone();
            e["count"] = json!(old["count"].as_u64().unwrap_or(1) + 1);
            e["lastTimestamp"] = json!(now);
            e["message"] = json!(message);
            s.store.update(&EVENTS, ns, &name, e, None).map(|_| ())
        }
        None => {
            let e = json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {
                    "apiVersion": involved.resource.api_version(),
                    "kind": involved.resource.kind,
                    "name": involved.name,
                    "namespace": object_ns,
                    "uid": uid,
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": "kantai-control"},
            });
            s.store.create(&EVENTS, ns, e, &now).map(|_| ())
        }
    };
    if let Err(e) = result {
        warn!("cannot record the event {name}: {e}");
    }
    s.changed();
}

#[cfg(test)]
mod tests {
    use super::distinct_name;

    #[test]
    fn an_event_kept_per_message_is_named_by_a_stable_hash_of_the_message() {
        // Events already stored under these names must be found again after an upgrade.
        assert_eq!(
            distinct_name("hello-00001", "Failed", "Revision \"hello-00001\" failed"),
            "hello-00001.failed.3691e71b"
        );
    }
}
