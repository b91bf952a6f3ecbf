//! The agent's view of the fleet: every revision, route, placement, instance and node, kept
//! current by list-then-watch loops against the control plane's API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kantai_api::Resource;
use kantai_api::resources::{INSTANCES, NODES};
use kantai_model::meta::JsonMeta;
use parking_lot::Mutex;
use serde_json::Value;
use tracing::debug;

use crate::Agent;

/// A namespace and a name.
pub type Key = (String, String);

/// The watched objects.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// Revisions.
    pub revisions: HashMap<Key, Value>,
    /// Routes.
    pub routes: HashMap<Key, Value>,
    /// Placements.
    pub placements: HashMap<Key, Value>,
    /// Instances.
    pub instances: HashMap<Key, Value>,
    /// Nodes (namespace "").
    pub nodes: HashMap<Key, Value>,
}

impl Snapshot {
    fn map(&mut self, r: &Resource) -> &mut HashMap<Key, Value> {
        match r.plural {
            "revisions" => &mut self.revisions,
            "routes" => &mut self.routes,
            "placements" => &mut self.placements,
            "instances" => &mut self.instances,
            _ => &mut self.nodes,
        }
    }
}

/// The cache: a snapshot replaced copy-on-write, so readers never block writers for long.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Arc<Snapshot>>,
}

impl Cache {
    /// The current objects.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.lock().clone()
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut g = self.inner.lock();
        f(Arc::make_mut(&mut g));
    }
}

fn key(v: &Value) -> Key {
    (
        v.namespace().unwrap_or_default().to_owned(),
        v.name().to_owned(),
    )
}

/// Wakes the reconciler, and the node keeper for a change of nodes.
fn notify(agent: &Agent, r: &Resource) {
    agent.changed.notify_one();
    if r.plural == NODES.plural {
        agent.nodes_changed.notify_one();
    }
}

/// Keeps one resource's objects current, forever: list, then watch from the list's version;
/// on any interruption, list again.
pub async fn run(agent: Arc<Agent>, r: Resource) {
    let mut wait = Duration::from_millis(50);
    let mut failing = false;
    loop {
        let Ok(list) = agent.client.get_json(&r.collection_path(None)).await else {
            failing = true;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = agent.reconnected.notified() => {}
            }
            wait = (wait * 2).min(Duration::from_secs(2));
            continue;
        };
        if std::mem::take(&mut failing) {
            agent.reconnected.notify_waiters();
        }
        let rv = list.resource_version().unwrap_or("0").to_owned();
        let items: HashMap<Key, Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| (key(v), v.clone()))
            .collect();
        agent.cache.update(|s| *s.map(&r) = items);
        notify(&agent, &r);
        let path = format!(
            "{}?watch=true&resourceVersion={rv}",
            r.collection_path(None)
        );
        let mut watch = match agent.client.watch_path(&path).await {
            Ok(w) => w,
            Err(e) => {
                debug!("watch {} failed: {e}", r.plural);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        wait = Duration::from_millis(50);
        while let Some(Ok(ev)) = watch.next().await {
            let k = key(&ev.object);
            // The echo of this node's own Instance writes: the agent knows its instances
            // already (the data plane and the failures it tells come from them, not from
            // their objects), and a pass per echo would compete with the instance starting.
            // The periodic pass still sees it.
            let echo = r.plural == INSTANCES.plural
                && ev.type_ != "DELETED"
                && ev.object["spec"]["node"].as_str() == Some(agent.name.as_str());
            match ev.type_.as_str() {
                "ADDED" | "MODIFIED" => agent.cache.update(|s| {
                    s.map(&r).insert(k, ev.object);
                }),
                "DELETED" => agent.cache.update(|s| {
                    s.map(&r).remove(&k);
                }),
                _ => continue,
            }
            if !echo {
                notify(&agent, &r);
            }
        }
        debug!("watch of {} ended; listing again", r.plural);
    }
}
