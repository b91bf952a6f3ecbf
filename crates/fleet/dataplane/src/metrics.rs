//! The node agent's Prometheus metrics (text format 0.0.4, base units, `kantai_` prefix):
//! requests and their latency by service, revision, serving node and origin node; requests
//! in flight and waiting; cold starts; the round trip to every other node. Every metric is
//! documented in `docs/metrics.md`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets: 0.5 ms to about 16 s, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Labels of a request served (or refused) through this node's gateway.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Namespace of the service.
    pub namespace: String,
    /// The service.
    pub service: String,
    /// The revision.
    pub revision: String,
    /// The node whose instance served it (empty when none did).
    pub node: String,
    /// The node where it entered the fleet (this node).
    pub origin_node: String,
    /// The HTTP status code of the answer.
    pub code: String,
}

/// Labels of a revision at this node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    /// Namespace.
    pub namespace: String,
    /// The service.
    pub service: String,
    /// The revision.
    pub revision: String,
    /// This node.
    pub node: String,
}

/// Labels of a queue at this node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Namespace.
    pub namespace: String,
    /// The service.
    pub service: String,
    /// The revision.
    pub revision: String,
    /// This node.
    pub node: String,
    /// `activator` (held at the gateway) or `instance` (waiting for a slot).
    pub queue: String,
}

/// Labels of a pair of nodes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    /// The measuring node.
    pub from: String,
    /// The other node.
    pub to: String,
}

/// Labels of a percentile of a pair of nodes' round trip.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkQuantileLabels {
    /// The measuring node.
    pub from: String,
    /// The other node.
    pub to: String,
    /// `50` or `95` (a `quantile` label is reserved for summaries).
    pub percentile: String,
}

/// Labels of the instances of a revision on this node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// Namespace.
    pub namespace: String,
    /// The revision.
    pub revision: String,
    /// This node.
    pub node: String,
    /// `ready` or `starting`.
    pub state: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// Every metric of a node agent.
pub struct Metrics {
    registry: Registry,
    /// Requests answered through the gateway.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from a request's arrival at the gateway to its response head.
    pub request_duration: Family<RequestLabels, Histogram>,
    /// Requests in flight (held ones included), sampled every second.
    pub in_flight: Family<RevisionLabels, FGauge>,
    /// Requests waiting, by queue, sampled every second.
    pub queue_depth: Family<QueueLabels, FGauge>,
    /// Requests that found no instance at all and waited for one to start.
    pub cold_starts: Family<RevisionLabels, Counter>,
    /// How long those waited.
    pub cold_start_duration: Family<RevisionLabels, Histogram>,
    /// Instances on this node.
    pub instances: Family<InstanceLabels, FGauge>,
    /// Smoothed round trip to each other node.
    pub rtt: Family<LinkLabels, FGauge>,
    /// Recent round-trip quantiles to each other node.
    pub rtt_quantile: Family<LinkQuantileLabels, FGauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All metrics, registered and at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kantai");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered through this node's gateway, by serving node, origin node and status code",
            requests.clone(),
        );
        let request_duration =
            Family::<RequestLabels, Histogram>::new_with_constructor(latency_buckets as fn() -> _);
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival at this node's gateway to its response head",
            Unit::Seconds,
            request_duration.clone(),
        );
        let in_flight = Family::<RevisionLabels, FGauge>::default();
        registry.register(
            "requests_in_flight",
            "Requests of a revision in flight at this node's gateway, held ones included (sampled every second)",
            in_flight.clone(),
        );
        let queue_depth = Family::<QueueLabels, FGauge>::default();
        registry.register(
            "queue_depth",
            "Requests waiting at this node: held by the activator role, or queued for an instance slot (sampled every second)",
            queue_depth.clone(),
        );
        let cold_starts = Family::<RevisionLabels, Counter>::default();
        registry.register(
            "cold_starts",
            "Requests that found no ready instance anywhere and waited for one to start",
            cold_starts.clone(),
        );
        let cold_start_duration =
            Family::<RevisionLabels, Histogram>::new_with_constructor(latency_buckets as fn() -> _);
        registry.register_with_unit(
            "cold_start_duration",
            "How long requests that found no instance waited for one",
            Unit::Seconds,
            cold_start_duration.clone(),
        );
        let instances = Family::<InstanceLabels, FGauge>::default();
        registry.register(
            "node_instances",
            "Instances on this node by revision and state",
            instances.clone(),
        );
        let rtt = Family::<LinkLabels, FGauge>::default();
        registry.register_with_unit(
            "node_rtt",
            "Round trip from this node to another, smoothed (5 s half-life), measured on forwarded requests and probes",
            Unit::Seconds,
            rtt.clone(),
        );
        let rtt_quantile = Family::<LinkQuantileLabels, FGauge>::default();
        registry.register_with_unit(
            "node_rtt_percentile",
            "Round trip from this node to another: 50th and 95th percentile of the last 128 samples",
            Unit::Seconds,
            rtt_quantile.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            in_flight,
            queue_depth,
            cold_starts,
            cold_start_duration,
            instances,
            rtt,
            rtt_quantile,
        }
    }

    /// The metrics in Prometheus' text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_type_and_a_base_unit() {
        let m = Metrics::new();
        let labels = RequestLabels {
            namespace: "default".into(),
            service: "hello".into(),
            revision: "hello-00001".into(),
            node: "node3".into(),
            origin_node: "node3".into(),
            code: "200".into(),
        };
        m.requests.get_or_create(&labels).inc();
        m.request_duration.get_or_create(&labels).observe(0.004);
        let rev = RevisionLabels {
            namespace: "default".into(),
            service: "hello".into(),
            revision: "hello-00001".into(),
            node: "node3".into(),
        };
        m.in_flight.get_or_create(&rev).set(1.0);
        m.cold_starts.get_or_create(&rev).inc();
        m.cold_start_duration.get_or_create(&rev).observe(0.01);
        m.queue_depth
            .get_or_create(&QueueLabels {
                namespace: "default".into(),
                service: "hello".into(),
                revision: "hello-00001".into(),
                node: "node3".into(),
                queue: "activator".into(),
            })
            .set(0.0);
        m.instances
            .get_or_create(&InstanceLabels {
                namespace: "default".into(),
                revision: "hello-00001".into(),
                node: "node3".into(),
                state: "ready".into(),
            })
            .set(1.0);
        let link = LinkLabels {
            from: "node3".into(),
            to: "node1".into(),
        };
        m.rtt.get_or_create(&link).set(0.05);
        m.rtt_quantile
            .get_or_create(&LinkQuantileLabels {
                from: "node3".into(),
                to: "node1".into(),
                percentile: "95".into(),
            })
            .set(0.06);
        let text = m.encode();
        for name in [
            "kantai_requests_total",
            "kantai_request_duration_seconds",
            "kantai_requests_in_flight",
            "kantai_queue_depth",
            "kantai_cold_starts_total",
            "kantai_cold_start_duration_seconds",
            "kantai_node_instances",
            "kantai_node_rtt_seconds",
            "kantai_node_rtt_percentile_seconds",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
        assert!(text.contains(
            "kantai_requests_total{namespace=\"default\",service=\"hello\",revision=\"hello-00001\",node=\"node3\",origin_node=\"node3\",code=\"200\"} 1"
        ), "{text}");
        assert!(
            text.contains("kantai_request_duration_seconds_bucket{"),
            "{text}"
        );
    }
}
