//! The backends: the instances known per revision, this node's (with their queue-proxy
//! state) and other nodes' (reached through their data ports), turned into each revision's
//! list of backends whenever one of them changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kantai_api::RevisionLoad;
use parking_lot::RwLock;

use crate::instance::LocalInstance;
use crate::metrics::{InstanceLabels, Metrics, QueueLabels};
use crate::revision::{RevKey, Target};
use crate::revisions::Revisions;

/// The instances this node knows, and where other nodes' data ports are.
pub struct Backends {
    node: String,
    revisions: Arc<Revisions>,
    local: RwLock<HashMap<String, Arc<LocalInstance>>>,
    remote: RwLock<HashMap<RevKey, Vec<(String, String)>>>,
    peers: RwLock<HashMap<String, SocketAddr>>,
}

impl Backends {
    /// No instances; the lists go to `revisions`.
    pub fn new(node: &str, revisions: Arc<Revisions>) -> Backends {
        Backends {
            node: node.to_owned(),
            revisions,
            local: RwLock::new(HashMap::new()),
            remote: RwLock::new(HashMap::new()),
            peers: RwLock::new(HashMap::new()),
        }
    }

    /// Where `peer`'s data port is, if it is a known peer.
    pub fn peer(&self, peer: &str) -> Option<SocketAddr> {
        self.peers.read().get(peer).copied()
    }

    /// An instance on this node, by name.
    pub fn local(&self, name: &str) -> Option<Arc<LocalInstance>> {
        self.local.read().get(name).cloned()
    }

    /// The local instances.
    pub fn local_instances(&self) -> Vec<Arc<LocalInstance>> {
        self.local.read().values().cloned().collect()
    }

    /// Sets where other nodes' data ports are.
    pub fn set_peers(&self, peers: HashMap<String, SocketAddr>) {
        *self.peers.write() = peers;
        self.refresh_all();
    }

    /// Sets the ready instances of other nodes: per revision, `(instance, node)`.
    pub fn set_remote(&self, remote: HashMap<RevKey, Vec<(String, String)>>) {
        *self.remote.write() = remote;
        self.refresh_all();
    }

    /// Registers an instance started on this node (not ready yet). Its queue follows the
    /// revision's queue discipline.
    pub fn add_local(
        &self,
        name: &str,
        ns: &str,
        revision: &str,
        port: u16,
        cc: u32,
    ) -> Arc<LocalInstance> {
        let cfg = self.revisions.state(ns, revision).config();
        // The revision's protocol as known when the instance got its port (its settings
        // arrive before any of its instances start).
        let inst = Arc::new(
            LocalInstance::new(
                name.to_owned(),
                (ns.to_owned(), revision.to_owned()),
                port,
                cc,
                &cfg.queue,
                &cfg.params,
            )
            .speaking_h2c(cfg.h2c),
        );
        self.local.write().insert(name.to_owned(), inst.clone());
        inst
    }

    /// Marks a local instance ready or not.
    pub fn set_local_ready(&self, name: &str, ready: bool) {
        if let Some(i) = self.local(name) {
            i.set_ready(ready);
            self.refresh(&i.revision);
        }
    }

    /// Takes a local instance out of rotation, keeps it answering forwarded requests for
    /// `propagation`, waits until its requests are done (all within `timeout`), then forgets it.
    pub async fn drain_local(&self, name: &str, propagation: Duration, timeout: Duration) {
        if let Some(i) = self.local(name) {
            i.start_drain();
            self.refresh(&i.revision);
            let _ = tokio::time::timeout(timeout, async {
                tokio::time::sleep(propagation).await;
                i.drained().await;
            })
            .await;
            self.local.write().remove(name);
        }
    }

    /// Forgets a local instance at once.
    pub fn remove_local(&self, name: &str) {
        let inst = self.local.write().remove(name);
        if let Some(i) = inst {
            self.refresh(&i.revision);
        }
    }

    /// Leaves out (until `until`, as time since now) or lets back in (`None`) every instance
    /// on node `peer`, in every revision.
    pub fn eject_node(&self, peer: &str, until: Option<Duration>) {
        for r in self.revisions.all() {
            r.eject_node(peer, until);
        }
    }

    /// Recomputes every revision's backends.
    pub fn refresh_all(&self) {
        for k in self.revisions.keys() {
            self.refresh(&k);
        }
    }

    /// Recomputes a revision's backends: its ready local instances and the ready instances
    /// of reachable other nodes.
    pub fn refresh(&self, key: &RevKey) {
        let Some(state) = self.revisions.get(key) else {
            return;
        };
        let net = self.revisions.net();
        let mut list = Vec::new();
        let mut locals: Vec<Arc<LocalInstance>> = self
            .local
            .read()
            .values()
            .filter(|i| &i.revision == key && i.serving())
            .cloned()
            .collect();
        locals.sort_by(|a, b| a.name.cmp(&b.name));
        for i in locals {
            list.push((i.name.clone(), Target::Local(i), net.me));
        }
        let peers = self.peers.read();
        if let Some(remote) = self.remote.read().get(key) {
            let mut remote = remote.clone();
            remote.sort();
            for (name, node) in remote {
                if node == self.node {
                    continue;
                }
                if let Some(addr) = peers.get(&node) {
                    // A node outside the known order gets an index past the end: balancers
                    // treat it as unmeasured.
                    let idx = net.index_of(&node).unwrap_or(net.nodes.len());
                    list.push((name, Target::Remote { node, addr: *addr }, idx));
                }
            }
        }
        state.set_backends(list);
    }

    /// The load of every revision at this node since the last call (for the report).
    ///
    /// A revision with an instance on this node is always reported, zeros included, as
    /// Knative scrapes every queue-proxy: the autoscaler needs the zeros to see a revision
    /// go idle (an empty window means "no data, keep the scale", not "no load").
    pub fn take_loads(&self) -> Vec<RevisionLoad> {
        let revisions = self.revisions.all();
        // What this node's instances served, per revision: count and total time.
        let mut hosted: HashMap<RevKey, (u64, Duration, u32, u32)> = HashMap::new();
        for i in self.local.read().values() {
            // Once a second, so that idle connections close on time without traffic.
            i.upstream.close_idle();
            let (n, t) = i.take_serving();
            let waiting = i.waiting() as u32;
            let e = hosted.entry(i.revision.clone()).or_default();
            e.0 += n;
            e.1 += t;
            e.2 += i.in_flight().saturating_sub(waiting);
            e.3 += waiting;
        }
        revisions
            .iter()
            .filter_map(|r| {
                let (concurrency, requests, held, current) = r.take_load();
                let active = concurrency > 0.0 || requests > 0.0 || held > 0 || current > 0;
                let (served, total, in_instances, queued) =
                    hosted.get(&r.key).copied().unwrap_or_default();
                (active || hosted.contains_key(&r.key)).then(|| RevisionLoad {
                    namespace: r.key.0.clone(),
                    revision: r.key.1.clone(),
                    concurrency,
                    requests,
                    held,
                    served,
                    serving_ms: if served > 0 {
                        total.as_secs_f64() * 1e3 / served as f64
                    } else {
                        0.0
                    },
                    instance_in_flight: in_instances,
                    instance_queued: queued,
                })
            })
            .collect()
    }

    /// Sets the gauges of requests in flight, queue depths and instances.
    pub fn sample_metrics(&self, m: &Metrics) {
        let revisions = self.revisions.all();
        let mut instance_waiting: HashMap<RevKey, usize> = HashMap::new();
        let mut instances: HashMap<(RevKey, bool), usize> = HashMap::new();
        for i in self.local.read().values() {
            *instance_waiting.entry(i.revision.clone()).or_default() += i.waiting();
            *instances
                .entry((i.revision.clone(), i.is_ready()))
                .or_default() += 1;
        }
        m.in_flight.clear();
        m.queue_depth.clear();
        m.instances.clear();
        for r in revisions {
            let l = r.labels();
            m.in_flight
                .get_or_create(&l)
                .set(f64::from(r.in_flight_now()));
            for (queue, depth) in [
                ("activator", r.held() as usize),
                (
                    "instance",
                    instance_waiting.get(&r.key).copied().unwrap_or(0),
                ),
            ] {
                m.queue_depth
                    .get_or_create(&QueueLabels {
                        namespace: l.namespace.clone(),
                        service: l.service.clone(),
                        revision: l.revision.clone(),
                        node: l.node.clone(),
                        queue: queue.into(),
                    })
                    .set(depth as f64);
            }
        }
        for ((key, ready), n) in instances {
            m.instances
                .get_or_create(&InstanceLabels {
                    namespace: key.0,
                    revision: key.1,
                    node: self.node.clone(),
                    state: if ready { "ready" } else { "starting" }.into(),
                })
                .set(n as f64);
        }
    }
}
