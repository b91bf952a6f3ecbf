//! The revisions this node knows: their activator states, created on first use and
//! forgotten when neither listed nor routed to, and the fleet view their balancers share.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use kantai_api::decisions::DecisionLog;
use kantai_policy::stable_hash;
use parking_lot::RwLock;

use crate::metrics::Metrics;
use crate::revision::{NetView, RevKey, RevisionConfig, RevisionState};

/// The activator states of the revisions this node knows, and what they share: the fleet
/// as the balancers see it, the metrics and the decision log.
pub struct Revisions {
    node: String,
    seed: u64,
    states: RwLock<HashMap<RevKey, Arc<RevisionState>>>,
    net: Arc<ArcSwap<NetView>>,
    metrics: Arc<Metrics>,
    decisions: Arc<OnceLock<Arc<DecisionLog>>>,
}

impl Revisions {
    /// No revisions yet; the fleet is this node alone.
    pub fn new(node: &str, seed: u64, metrics: Arc<Metrics>) -> Revisions {
        Revisions {
            node: node.to_owned(),
            seed,
            states: RwLock::new(HashMap::new()),
            net: Arc::new(ArcSwap::from_pointee(NetView {
                nodes: vec![node.to_owned()],
                me: 0,
                rtt: vec![Some(0.0)],
            })),
            metrics,
            decisions: Arc::new(OnceLock::new()),
        }
    }

    /// Records the balancers' decisions in `log` (set once, before serving).
    pub fn set_decision_log(&self, log: Arc<DecisionLog>) {
        let _ = self.decisions.set(log);
    }

    /// The activator state of a revision, created on first use.
    pub fn state(&self, ns: &str, name: &str) -> Arc<RevisionState> {
        let key = (ns.to_owned(), name.to_owned());
        if let Some(r) = self.states.read().get(&key) {
            return r.clone();
        }
        let seed = self.seed ^ stable_hash(key.1.as_bytes());
        self.states
            .write()
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(RevisionState::new(
                    key,
                    seed,
                    self.net.clone(),
                    self.metrics.clone(),
                    self.decisions.clone(),
                ))
            })
            .clone()
    }

    /// The state of a revision, if it is known.
    pub fn get(&self, key: &RevKey) -> Option<Arc<RevisionState>> {
        self.states.read().get(key).cloned()
    }

    /// Every known revision's state (a copy of the list, so that no lock is held while the
    /// caller works on them).
    pub fn all(&self) -> Vec<Arc<RevisionState>> {
        self.states.read().values().cloned().collect()
    }

    /// The known revisions.
    pub fn keys(&self) -> Vec<RevKey> {
        self.states.read().keys().cloned().collect()
    }

    /// Whether no revision is known.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.states.read().is_empty()
    }

    /// Sets the settings of the revisions in `configs` and forgets those neither listed
    /// nor in `routed` (their held requests fail).
    pub fn set_configs(&self, configs: &HashMap<RevKey, RevisionConfig>, routed: &HashSet<RevKey>) {
        for (key, cfg) in configs {
            self.state(&key.0, &key.1).set_config(cfg.clone());
        }
        self.states.write().retain(|k, state| {
            let keep = configs.contains_key(k) || routed.contains(k);
            if !keep {
                state.retire();
            }
            keep
        });
    }

    /// Records why a revision cannot start (`None`: it can again); see
    /// [`RevisionState::set_failure`].
    pub fn set_failure(&self, ns: &str, revision: &str, failure: Option<String>) {
        match failure {
            Some(why) => self.state(ns, revision).set_failure(Some(&why)),
            None => {
                // Clearing a revision this node never heard of must not create its state.
                let key = (ns.to_owned(), revision.to_owned());
                if let Some(state) = self.get(&key) {
                    state.set_failure(None);
                }
            }
        }
    }

    /// The fleet as the balancers see it.
    pub fn net(&self) -> Arc<NetView> {
        self.net.load_full()
    }

    /// Sets the fleet's nodes in order (this node among them) and the measured round trip
    /// from this node to each (`None`: not measured). Whether the order changed (backends
    /// carry node indices).
    pub fn set_net(&self, nodes: Vec<String>, rtt: &HashMap<String, f64>) -> bool {
        let me = nodes.iter().position(|n| *n == self.node).unwrap_or(0);
        let row = nodes
            .iter()
            .map(|n| {
                if *n == self.node {
                    Some(0.0)
                } else {
                    rtt.get(n).copied()
                }
            })
            .collect();
        let view = NetView {
            nodes,
            me,
            rtt: row,
        };
        let order_changed = self.net.load().nodes != view.nodes;
        if **self.net.load() != view {
            self.net.store(Arc::new(view));
        }
        order_changed
    }

    /// Sets, per revision, the serving time measured on each node (node name → ms).
    pub fn set_serving(&self, serving: &HashMap<RevKey, Vec<(String, f64)>>) {
        let net = self.net.load();
        for r in self.all() {
            let row = serving.get(&r.key).map(|nodes| {
                net.nodes
                    .iter()
                    .map(|n| nodes.iter().find(|(m, _)| m == n).map(|(_, v)| *v))
                    .collect()
            });
            r.set_serving(row.unwrap_or_default());
        }
    }
}
