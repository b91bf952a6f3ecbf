//! The per-revision autoscaling spec, resolved from the fleet config, the revision's
//! annotations and its containerConcurrency (Knative's `MakeDecider`, `ResolveMetricTarget`
//! and `ScaleBounds`).

use std::time::Duration;

use kantai_model::autoscaling::{Aggregation, AutoscalingAnnotations, Metric};
use kantai_model::config::{AutoscalerConfig, TARGET_MIN};

/// Everything the KPA needs to know about one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingSpec {
    /// The metric scaled on.
    pub metric: Metric,
    /// How window buckets are averaged.
    pub aggregation: Aggregation,
    /// Per-instance target: `max(0.01, total × utilisation)`.
    pub target: f64,
    /// Per-instance capacity used for burst capacity and activator counts (not for scaling).
    pub total: f64,
    /// Target burst capacity; −1 keeps the activator in the path.
    pub target_burst_capacity: f64,
    /// Concurrency one activator is assumed to carry.
    pub activator_capacity: f64,
    /// Panic when the panic-window load needs this many times the ready instances.
    pub panic_threshold: f64,
    /// The stable window, whole seconds.
    pub stable_window: Duration,
    /// The panic window, whole seconds (at least 1).
    pub panic_window: Duration,
    /// Scale-down delay, whole seconds.
    pub scale_down_delay: Duration,
    /// At most this factor up per tick.
    pub max_scale_up_rate: f64,
    /// At most this divisor down per tick.
    pub max_scale_down_rate: f64,
    /// Lower bound while reachable.
    pub min_scale: u32,
    /// Upper bound; 0 = unlimited.
    pub max_scale: u32,
    /// Instances to start with (and to reach before the revision counts as initialised).
    pub initial_scale: u32,
    /// Minimum non-zero scale when waking from zero (0 or 1 = off).
    pub activation_scale: u32,
    /// Whether the revision may scale to zero at all.
    pub enable_scale_to_zero: bool,
    /// Minimum time the revision stays behind the activator before scaling to zero.
    pub scale_to_zero_grace_period: Duration,
    /// Minimum time the last instance is kept after the revision becomes inactive.
    pub scale_to_zero_pod_retention_period: Duration,
    /// How long activation may take before the revision is given up on (progress deadline +
    /// buffer).
    pub activation_timeout: Duration,
    /// Whether a route sends traffic to the revision. Unreachable revisions ignore min-scale
    /// and may drop to zero at once.
    pub reachable: bool,
}

/// Knative's buffer added to the progress deadline before an activation is given up.
pub const ACTIVATION_TIMEOUT_BUFFER: Duration = Duration::from_secs(30);

impl ScalingSpec {
    /// Resolves the spec of a revision. `container_concurrency` is the revision's
    /// `containerConcurrency` (0 = unlimited); `progress_deadline` comes from the fleet config.
    pub fn resolve(
        config: &AutoscalerConfig,
        annotations: &AutoscalingAnnotations,
        container_concurrency: u32,
        progress_deadline: Duration,
    ) -> ScalingSpec {
        let metric = annotations.metric.unwrap_or_default();
        let cc = f64::from(container_concurrency);
        let (mut total, mut utilization) = match metric {
            Metric::Rps => (config.rps_target_default, config.target_utilization),
            Metric::Concurrency => (
                if container_concurrency == 0 {
                    config.container_concurrency_target_default
                } else {
                    cc
                },
                config.container_concurrency_target_fraction,
            ),
        };
        if let Some(t) = annotations.target {
            total = t;
            if metric == Metric::Concurrency && container_concurrency != 0 {
                total = t.min(cc);
            }
        }
        if let Some(u) = annotations.target_utilization_percentage {
            utilization = u / 100.0;
        }
        let stable_window = annotations.window.unwrap_or(config.stable_window);
        let panic_pct = annotations
            .panic_window_percentage
            .unwrap_or(config.panic_window_percentage);
        // The panic window is a percentage of the stable window, rounded to whole seconds and
        // never shorter than one bucket.
        let panic_secs = (stable_window.as_secs_f64() * panic_pct / 100.0)
            .round()
            .max(1.0);
        let as_u32 = |i: i32| u32::try_from(i).unwrap_or(0);
        ScalingSpec {
            metric,
            aggregation: annotations.aggregation.unwrap_or_default(),
            target: (total * utilization).max(TARGET_MIN),
            total,
            target_burst_capacity: annotations
                .target_burst_capacity
                .unwrap_or(config.target_burst_capacity),
            activator_capacity: config.activator_capacity,
            panic_threshold: annotations
                .panic_threshold_percentage
                .unwrap_or(config.panic_threshold_percentage)
                / 100.0,
            stable_window,
            panic_window: Duration::from_secs(panic_secs as u64),
            scale_down_delay: annotations
                .scale_down_delay
                .unwrap_or(config.scale_down_delay),
            max_scale_up_rate: config.max_scale_up_rate,
            max_scale_down_rate: config.max_scale_down_rate,
            min_scale: as_u32(annotations.min_scale.unwrap_or(config.min_scale)),
            max_scale: as_u32(annotations.max_scale.unwrap_or(config.max_scale)),
            initial_scale: as_u32(annotations.initial_scale.unwrap_or(config.initial_scale)),
            activation_scale: as_u32(annotations.activation_scale.unwrap_or(0)),
            enable_scale_to_zero: config.enable_scale_to_zero,
            scale_to_zero_grace_period: config.scale_to_zero_grace_period,
            scale_to_zero_pod_retention_period: annotations
                .scale_to_zero_pod_retention_period
                .unwrap_or(config.scale_to_zero_pod_retention_period),
            activation_timeout: progress_deadline + ACTIVATION_TIMEOUT_BUFFER,
            reachable: true,
        }
    }

    /// The bounds applied to the decider's wish: `(min, max)`, max 0 = unlimited. An
    /// unreachable revision has no minimum.
    pub fn bounds(&self) -> (u32, u32) {
        let min = if self.reachable { self.min_scale } else { 0 };
        (min, self.max_scale)
    }

    /// Whether the activator stays in the request path whatever the load (TBC = −1).
    pub fn activator_always_in_path(&self) -> bool {
        self.target_burst_capacity < 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(anns: AutoscalingAnnotations, cc: u32) -> ScalingSpec {
        ScalingSpec::resolve(
            &AutoscalerConfig::default(),
            &anns,
            cc,
            Duration::from_secs(600),
        )
    }

    #[test]
    fn knative_default_targets() {
        let s = resolve(AutoscalingAnnotations::default(), 0);
        assert_eq!(s.target, 70.0);
        assert_eq!(s.total, 100.0);
        assert_eq!(s.panic_window, Duration::from_secs(6));
        assert_eq!(s.panic_threshold, 2.0);
        let rps = resolve(
            AutoscalingAnnotations {
                metric: Some(Metric::Rps),
                ..Default::default()
            },
            0,
        );
        assert_eq!(rps.target, 140.0);
    }

    #[test]
    fn container_concurrency_caps_the_target() {
        let s = resolve(
            AutoscalingAnnotations {
                target: Some(50.0),
                ..Default::default()
            },
            10,
        );
        assert_eq!(s.total, 10.0);
        assert_eq!(s.target, 7.0);
        let cc_only = resolve(AutoscalingAnnotations::default(), 4);
        assert_eq!(cc_only.total, 4.0);
    }

    #[test]
    fn panic_window_rounds_to_whole_seconds_at_least_one() {
        let s = resolve(
            AutoscalingAnnotations {
                window: Some(Duration::from_secs(12)),
                ..Default::default()
            },
            0,
        );
        assert_eq!(s.panic_window, Duration::from_secs(1));
        let tiny = resolve(
            AutoscalingAnnotations {
                window: Some(Duration::from_secs(6)),
                panic_window_percentage: Some(1.0),
                ..Default::default()
            },
            0,
        );
        assert_eq!(tiny.panic_window, Duration::from_secs(1));
    }
}
