//! The control plane's Prometheus metrics, computed at each scrape from what it holds: the
//! autoscaler's decisions, the placements, the measured demand, serving times and round
//! trips, and which nodes are alive. Every metric is documented in `docs/metrics.md`.

use std::sync::atomic::AtomicU64;

use kantai_api::resources::{NODES, PLACEMENTS};
use kantai_model::fleet::{self, Placement};
use kantai_model::meta::JsonMeta;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::Shared;

type FGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rev {
    namespace: String,
    revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevWindow {
    namespace: String,
    revision: String,
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevNodeState {
    namespace: String,
    revision: String,
    node: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevNode {
    namespace: String,
    revision: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevOrigin {
    namespace: String,
    revision: String,
    origin_node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Link {
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

/// Every control-plane metric, in Prometheus' text format (0.0.4).
pub fn text(s: &Shared) -> String {
    let mut reg = Registry::with_prefix("kantai");
    let desired = Family::<Rev, FGauge>::default();
    reg.register(
        "autoscaler_desired_instances",
        "Instances the KPA wants for a revision (its latest decision)",
        desired.clone(),
    );
    let panic = Family::<Rev, FGauge>::default();
    reg.register(
        "autoscaler_panic",
        "Whether the KPA is in panic mode for a revision (1) or not (0)",
        panic.clone(),
    );
    let observed = Family::<RevWindow, FGauge>::default();
    reg.register(
        "autoscaler_observed_concurrency",
        "Average concurrency the KPA sees for a revision over its stable and panic windows",
        observed.clone(),
    );
    let placed = Family::<RevNodeState, FGauge>::default();
    reg.register(
        "placement_instances",
        "Instances of a revision on a node: desired by the placement policy, and ready",
        placed.clone(),
    );
    let unschedulable = Family::<Rev, FGauge>::default();
    reg.register(
        "placement_unschedulable_instances",
        "Instances of a revision that fit on no node",
        unschedulable.clone(),
    );
    let demand = Family::<RevOrigin, FGauge>::default();
    reg.register(
        "revision_origin_requests_per_second",
        "Requests per second of a revision entering the fleet at each node (smoothed, 10 s half-life)",
        demand.clone(),
    );
    let serving = Family::<RevNode, FGauge>::default();
    reg.register_with_unit(
        "revision_serving_time",
        "Average time a revision's instances on a node take per request, queueing at the instance included (smoothed)",
        Unit::Seconds,
        serving.clone(),
    );
    let rtt = Family::<Link, FGauge>::default();
    reg.register_with_unit(
        "fleet_rtt",
        "Round trip between two nodes as the measuring node last reported it",
        Unit::Seconds,
        rtt.clone(),
    );
    let ready = Family::<NodeLabel, FGauge>::default();
    reg.register(
        "node_ready",
        "Whether a node's agent reports (1) or not (0)",
        ready.clone(),
    );

    for ((ns, rev), d) in s.decisions.lock().iter() {
        let l = Rev {
            namespace: ns.clone(),
            revision: rev.clone(),
        };
        desired.get_or_create(&l).set(f64::from(d.desired));
        panic.get_or_create(&l).set(if d.panic { 1.0 } else { 0.0 });
        for (window, v) in [("stable", d.stable), ("panic", d.panic_value)] {
            if let Some(v) = v {
                observed
                    .get_or_create(&RevWindow {
                        namespace: ns.clone(),
                        revision: rev.clone(),
                        window: window.into(),
                    })
                    .set(v);
            }
        }
    }
    for v in s.store.list(&PLACEMENTS, None).0 {
        let ns = v.namespace_or_default().to_owned();
        let Ok(p) = fleet::from_json::<Placement>(&v) else {
            continue;
        };
        let rev = p.spec.revision.clone();
        let mut counts: Vec<(String, &str, u32)> = p
            .spec
            .nodes
            .iter()
            .map(|c| (c.node.clone(), "desired", c.count))
            .collect();
        if let Some(st) = &p.status {
            counts.extend(st.nodes.iter().map(|c| (c.node.clone(), "ready", c.count)));
        }
        for (node, state, n) in counts {
            placed
                .get_or_create(&RevNodeState {
                    namespace: ns.clone(),
                    revision: rev.clone(),
                    node,
                    state: state.into(),
                })
                .set(f64::from(n));
        }
        unschedulable
            .get_or_create(&Rev {
                namespace: ns,
                revision: rev,
            })
            .set(f64::from(p.spec.unschedulable));
    }
    for ((ns, rev), nodes) in s.demand.lock().iter() {
        for (node, v) in nodes {
            demand
                .get_or_create(&RevOrigin {
                    namespace: ns.clone(),
                    revision: rev.clone(),
                    origin_node: node.clone(),
                })
                .set(*v);
        }
    }
    for ((ns, rev), nodes) in s.serving.lock().iter() {
        for (node, ms) in nodes {
            serving
                .get_or_create(&RevNode {
                    namespace: ns.clone(),
                    revision: rev.clone(),
                    node: node.clone(),
                })
                .set(ms / 1e3);
        }
    }
    for ((from, to), ms) in s.rtt.lock().iter() {
        rtt.get_or_create(&Link {
            from: from.clone(),
            to: to.clone(),
        })
        .set(ms / 1e3);
    }
    for v in s.store.list(&NODES, None).0 {
        let name = v.name();
        ready
            .get_or_create(&NodeLabel {
                node: name.to_owned(),
            })
            .set(if s.node_ready(name) { 1.0 } else { 0.0 });
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &reg);
    out
}
