//! Events (Kubernetes' core `v1` Event): what the controllers want an operator to see about
//! an object. A repeated event (same object and reason) updates its count and last time
//! instead of piling up, as Kubernetes' event recorder does.

use kantai_api::resources::{EVENTS, REVISIONS};
use serde_json::{Value, json};
use tracing::warn;

use crate::Shared;

/// The object an event is about.
pub struct Involved {
    api_version: String,
    kind: &'static str,
    name: String,
}

impl Involved {
    /// A Revision.
    pub fn revision(name: &str) -> Involved {
        Involved {
            api_version: REVISIONS.api_version(),
            kind: REVISIONS.kind,
            name: name.to_owned(),
        }
    }
}

/// Records a warning about `involved` in namespace `ns`.
pub fn record(s: &Shared, ns: &str, involved: &Involved, reason: &str, message: &str) {
    warn!(object = %involved.name, reason, "{message}");
    let now = kantai_api::time::now();
    // One event per object and reason, like the recorder's aggregation key.
    let name = format!("{}.{}", involved.name, reason.to_ascii_lowercase());
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
                    "apiVersion": involved.api_version,
                    "kind": involved.kind,
                    "name": involved.name,
                    "namespace": ns,
                },
                "reason": reason,
                "message": message,
                "type": "Warning",
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
