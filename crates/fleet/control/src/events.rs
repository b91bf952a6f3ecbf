//! Events (Kubernetes' core `v1` Event): what the controllers want an operator to see about
//! an object. A repeated event (same object and reason) updates its count and last time
//! instead of piling up, as Kubernetes' event recorder does.

use kantai_api::Resource;
use kantai_api::resources::{CONFIGURATIONS, EVENTS, NODES, REVISIONS, SERVICES};
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
    let name = format!(
        "{}.{}.{:08x}",
        involved.name,
        reason.to_ascii_lowercase(),
        fnv(message) as u32
    );
    if s.store.get(&EVENTS, ns, &name).is_some() {
        return;
    }
    warn!(object = %involved.name, reason, "{message}");
    write(s, ns, involved, "Warning", reason, message, &name);
}

/// FNV-1a of a message: keeps distinct messages apart under a short, stable name.
fn fnv(message: &str) -> u64 {
    message.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Records a normal event (`Created Route "hello"`), one per distinct message, as Knative's
/// controllers do on the objects they create.
pub fn normal(s: &Shared, ns: &str, involved: &Involved, reason: &str, message: &str) {
    let hash = fnv(message);
    let name = format!(
        "{}.{}.{:08x}",
        involved.name,
        reason.to_ascii_lowercase(),
        hash as u32
    );
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
        .map(|o| o["metadata"]["uid"].clone())
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
