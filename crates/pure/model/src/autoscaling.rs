//! `autoscaling.knative.dev/*` annotations: keys (with their legacy camelCase aliases), typed
//! parsing, and Knative's validation rules (`pkg/apis/autoscaling/annotation_validation.go`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{AutoscalerConfig, HPA_CLASS, KPA_CLASS, TARGET_MIN, WINDOW_MAX, WINDOW_MIN};
use crate::error::{FieldError, FieldPath, Findings};
use crate::units::parse_go_duration;

/// The annotation prefix.
pub const PREFIX: &str = "autoscaling.knative.dev/";

/// One annotation: its canonical key and the legacy spellings Knative still accepts.
#[derive(Clone, Copy, Debug)]
pub struct AnnotationKey {
    /// The kebab-case key.
    pub key: &'static str,
    /// Older camelCase spellings.
    pub aliases: &'static [&'static str],
}

macro_rules! keys {
    ($($name:ident = $key:literal $([$($alias:literal),*])?;)*) => {
        $(
            #[doc = concat!("`", $key, "`")]
            pub const $name: AnnotationKey = AnnotationKey {
                key: $key,
                aliases: &[$($($alias),*)?],
            };
        )*
        /// Every autoscaling annotation kantai understands.
        pub const ALL: &[AnnotationKey] = &[$($name),*];
    };
}

keys! {
    CLASS = "autoscaling.knative.dev/class";
    METRIC = "autoscaling.knative.dev/metric";
    TARGET = "autoscaling.knative.dev/target";
    TARGET_UTILIZATION = "autoscaling.knative.dev/target-utilization-percentage"
        ["autoscaling.knative.dev/targetUtilizationPercentage"];
    WINDOW = "autoscaling.knative.dev/window";
    PANIC_WINDOW_PERCENTAGE = "autoscaling.knative.dev/panic-window-percentage"
        ["autoscaling.knative.dev/panicWindowPercentage"];
    PANIC_THRESHOLD_PERCENTAGE = "autoscaling.knative.dev/panic-threshold-percentage"
        ["autoscaling.knative.dev/panicThresholdPercentage"];
    MIN_SCALE = "autoscaling.knative.dev/min-scale" ["autoscaling.knative.dev/minScale"];
    MAX_SCALE = "autoscaling.knative.dev/max-scale" ["autoscaling.knative.dev/maxScale"];
    INITIAL_SCALE = "autoscaling.knative.dev/initial-scale" ["autoscaling.knative.dev/initialScale"];
    ACTIVATION_SCALE = "autoscaling.knative.dev/activation-scale";
    SCALE_DOWN_DELAY = "autoscaling.knative.dev/scale-down-delay"
        ["autoscaling.knative.dev/scaleDownDelay"];
    SCALE_TO_ZERO_POD_RETENTION_PERIOD = "autoscaling.knative.dev/scale-to-zero-pod-retention-period"
        ["autoscaling.knative.dev/scaleToZeroPodRetentionPeriod"];
    TARGET_BURST_CAPACITY = "autoscaling.knative.dev/target-burst-capacity"
        ["autoscaling.knative.dev/targetBurstCapacity"];
    METRIC_AGGREGATION_ALGORITHM = "autoscaling.knative.dev/metric-aggregation-algorithm"
        ["autoscaling.knative.dev/metricAggregationAlgorithm"];
}

/// The metric the KPA scales on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Metric {
    /// In-flight requests per instance (default).
    #[default]
    Concurrency,
    /// Requests per second per instance.
    Rps,
}

/// How a window's 1-second buckets are averaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Aggregation {
    /// Plain average of the valid buckets (default).
    #[default]
    Linear,
    /// Exponentially weighted, most recent first.
    WeightedExponential,
}

/// The autoscaling annotations of one revision, parsed. `None` means "not set: use the fleet
/// config".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AutoscalingAnnotations {
    /// `class`.
    pub class: Option<String>,
    /// `metric`.
    pub metric: Option<Metric>,
    /// `target`.
    pub target: Option<f64>,
    /// `target-utilization-percentage` (1–100).
    pub target_utilization_percentage: Option<f64>,
    /// `window`: the stable window.
    pub window: Option<Duration>,
    /// `panic-window-percentage`.
    pub panic_window_percentage: Option<f64>,
    /// `panic-threshold-percentage`.
    pub panic_threshold_percentage: Option<f64>,
    /// `min-scale`.
    pub min_scale: Option<i32>,
    /// `max-scale`.
    pub max_scale: Option<i32>,
    /// `initial-scale`.
    pub initial_scale: Option<i32>,
    /// `activation-scale`.
    pub activation_scale: Option<i32>,
    /// `scale-down-delay`.
    pub scale_down_delay: Option<Duration>,
    /// `scale-to-zero-pod-retention-period`.
    pub scale_to_zero_pod_retention_period: Option<Duration>,
    /// `target-burst-capacity`.
    pub target_burst_capacity: Option<f64>,
    /// `metric-aggregation-algorithm`.
    pub aggregation: Option<Aggregation>,
}

/// Reads annotations for one key, reporting a conflict when two spellings are both set.
struct Reader<'a> {
    anns: &'a BTreeMap<String, String>,
    path: &'a FieldPath,
    out: &'a mut Findings,
}

impl Reader<'_> {
    fn get(&mut self, k: AnnotationKey) -> Option<(&'static str, String)> {
        let mut found: Option<(&'static str, String)> = None;
        for key in std::iter::once(&k.key).chain(k.aliases) {
            if let Some(v) = self.anns.get(*key) {
                if let Some((first, _)) = &found {
                    self.out.push(FieldError::error(
                        self.path.key(*key),
                        format!("conflicts with {first}: set only one spelling ({})", k.key),
                    ));
                    continue;
                }
                found = Some((*key, v.clone()));
            }
        }
        found
    }

    fn err(&mut self, key: &str, msg: String) {
        self.out.push(FieldError::error(self.path.key(key), msg));
    }

    fn float(&mut self, k: AnnotationKey) -> Option<(&'static str, f64)> {
        let (key, v) = self.get(k)?;
        match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Some((key, f)),
            _ => {
                self.err(key, format!("invalid value {v:?}: must be a number"));
                None
            }
        }
    }

    fn float_in(&mut self, k: AnnotationKey, min: f64, max: f64) -> Option<f64> {
        let (key, f) = self.float(k)?;
        if f < min || f > max {
            self.err(
                key,
                format!("{f} is out of range, must be in [{min}, {max}]"),
            );
            return None;
        }
        Some(f)
    }

    fn int(&mut self, k: AnnotationKey) -> Option<(&'static str, i32)> {
        let (key, v) = self.get(k)?;
        match v.trim().parse::<i64>() {
            Ok(i) if (0..=i64::from(i32::MAX)).contains(&i) => Some((key, i as i32)),
            Ok(i) => {
                self.err(
                    key,
                    format!("{i} is out of range, must be in [0, {}]", i32::MAX),
                );
                None
            }
            Err(_) => {
                self.err(key, format!("invalid value {v:?}: must be a whole number"));
                None
            }
        }
    }

    fn duration(&mut self, k: AnnotationKey) -> Option<(&'static str, i128)> {
        let (key, v) = self.get(k)?;
        match parse_go_duration(v.trim()) {
            Ok(n) => Some((key, n)),
            Err(e) => {
                self.err(key, format!("invalid value: {e}"));
                None
            }
        }
    }
}

fn to_duration(nanos: i128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

impl AutoscalingAnnotations {
    /// Parses and validates the autoscaling annotations of a revision template. `path` is the
    /// path of the annotations map (for example `spec.template.metadata.annotations`). Problems
    /// are reported into `out`; invalid values are left unset.
    pub fn parse(
        anns: &BTreeMap<String, String>,
        config: &AutoscalerConfig,
        path: &FieldPath,
        out: &mut Findings,
    ) -> AutoscalingAnnotations {
        let mut a = AutoscalingAnnotations::default();
        let mut r = Reader { anns, path, out };

        if let Some((key, v)) = r.get(CLASS) {
            if v == KPA_CLASS {
                a.class = Some(v);
            } else if v == HPA_CLASS {
                r.err(
                    key,
                    format!("{v:?} (Kubernetes HPA) is not supported by kantai; use {KPA_CLASS:?}"),
                );
            } else if v.ends_with(".knative.dev") {
                r.err(
                    key,
                    format!("invalid value {v:?}: must be {KPA_CLASS:?} or {HPA_CLASS:?}"),
                );
            } else {
                r.err(
                    key,
                    format!("custom autoscaler class {v:?} is not supported by kantai; use {KPA_CLASS:?}"),
                );
            }
        }
        if let Some((key, v)) = r.get(METRIC) {
            match v.as_str() {
                "concurrency" => a.metric = Some(Metric::Concurrency),
                "rps" => a.metric = Some(Metric::Rps),
                _ => r.err(
                    key,
                    format!("invalid value {v:?}: the KPA scales on \"concurrency\" or \"rps\""),
                ),
            }
        }
        if let Some((key, v)) = r.get(TARGET) {
            match v.trim().parse::<f64>() {
                Ok(f) if f.is_finite() && f >= TARGET_MIN => a.target = Some(f),
                _ => r.err(key, format!("target {v} should be at least {TARGET_MIN}")),
            }
        }
        a.target_utilization_percentage = r.float_in(TARGET_UTILIZATION, 1.0, 100.0);
        a.panic_window_percentage = r.float_in(PANIC_WINDOW_PERCENTAGE, 1.0, 100.0);
        a.panic_threshold_percentage = r.float_in(PANIC_THRESHOLD_PERCENTAGE, 110.0, 1000.0);
        if let Some((key, f)) = r.float(TARGET_BURST_CAPACITY) {
            if f < 0.0 && f != -1.0 {
                r.err(
                    key,
                    format!("invalid value {f}: must be non-negative, or -1 (activator always in the path)"),
                );
            } else {
                a.target_burst_capacity = Some(f);
            }
        }
        if let Some((key, n)) = r.duration(WINDOW) {
            let d = to_duration(n);
            if n < 0 || d < WINDOW_MIN || d > WINDOW_MAX {
                r.err(key, "must be in [6s, 1h]".to_owned());
            } else if d.subsec_nanos() != 0 {
                r.err(
                    key,
                    "must be specified with at most second precision".to_owned(),
                );
            } else {
                a.window = Some(d);
            }
        }
        if let Some((key, n)) = r.duration(SCALE_DOWN_DELAY) {
            let d = to_duration(n);
            if n < 0 || d > WINDOW_MAX {
                r.err(key, "must be in [0s, 1h]".to_owned());
            } else if d.subsec_nanos() != 0 {
                r.err(
                    key,
                    "must be specified with at most second precision".to_owned(),
                );
            } else {
                a.scale_down_delay = Some(d);
            }
        }
        if let Some((key, n)) = r.duration(SCALE_TO_ZERO_POD_RETENTION_PERIOD) {
            let d = to_duration(n);
            if n < 0 || d > WINDOW_MAX {
                r.err(key, "must be in [0s, 1h]".to_owned());
            } else {
                a.scale_to_zero_pod_retention_period = Some(d);
            }
        }
        if let Some((key, v)) = r.get(METRIC_AGGREGATION_ALGORITHM) {
            match v.as_str() {
                "linear" => a.aggregation = Some(Aggregation::Linear),
                "weighted-exponential" | "weightedExponential" => {
                    a.aggregation = Some(Aggregation::WeightedExponential)
                }
                _ => r.err(
                    key,
                    format!("invalid value {v:?}: must be \"linear\" or \"weighted-exponential\""),
                ),
            }
        }

        let min = r.int(MIN_SCALE);
        let max = r.int(MAX_SCALE);
        a.min_scale = min.map(|(_, v)| v);
        a.max_scale = max.map(|(_, v)| v);
        let (min_v, max_v) = (a.min_scale.unwrap_or(0), a.max_scale.unwrap_or(0));
        if let Some((key, _)) = max {
            if max_v != 0 && max_v < min_v {
                r.err(
                    key,
                    format!("max-scale={max_v} is less than min-scale={min_v}"),
                );
            }
            let limit = config.max_scale_limit;
            if limit > 0 {
                if max_v > limit {
                    r.err(
                        key,
                        format!(
                            "{max_v} is out of range, must be in [1, {limit}] (max-scale-limit)"
                        ),
                    );
                }
                if max_v == 0 {
                    r.err(
                        key,
                        format!(
                            "max-scale=0 (unlimited), must be less than {limit} (max-scale-limit)"
                        ),
                    );
                }
            }
        }
        if let Some((key, v)) = r.get(INITIAL_SCALE) {
            match v.trim().parse::<i32>() {
                Ok(i) if max_v != 0 && i > max_v => r.err(
                    key,
                    format!("initial-scale={i} is greater than max-scale={max_v}"),
                ),
                Ok(i) if i > 0 || (i == 0 && config.allow_zero_initial_scale) => {
                    a.initial_scale = Some(i)
                }
                _ => r.err(
                    key,
                    format!(
                        "invalid value {v:?}: must be at least 1 (0 only when the fleet config \
                         sets allow-zero-initial-scale)"
                    ),
                ),
            }
        }
        if let Some((key, v)) = r.int(ACTIVATION_SCALE) {
            if v < 2 {
                r.err(key, format!("{v} is out of range, must be at least 2"));
            } else if (a.min_scale.is_some() && v < min_v) || (max_v != 0 && v > max_v) {
                r.err(key, format!("{v} must be within min-scale and max-scale"));
            } else {
                a.activation_scale = Some(v);
            }
        }

        // A typo in an annotation key silently does nothing in Knative; say so.
        let known: Vec<&str> = ALL
            .iter()
            .flat_map(|k| std::iter::once(k.key).chain(k.aliases.iter().copied()))
            .collect();
        for key in anns.keys().filter(|k| k.starts_with(PREFIX)) {
            if !known.contains(&key.as_str()) {
                let mut msg = "unknown autoscaling annotation; it has no effect".to_owned();
                if let Some(s) = crate::decode::closest(key, &known) {
                    msg.push_str(&format!(" (did you mean {s:?}?)"));
                }
                r.out.push(FieldError::warning(path.key(key.clone()), msg));
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> (AutoscalingAnnotations, Vec<String>) {
        let anns = pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned()))
            .collect();
        let mut out = Findings::new();
        let a = AutoscalingAnnotations::parse(
            &anns,
            &AutoscalerConfig::default(),
            &FieldPath::fields("metadata.annotations"),
            &mut out,
        );
        (a, out.all().iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_seed_demo_annotations_parse() {
        let (a, errs) = parse(&[
            ("scale-to-zero-pod-retention-period", "0s"),
            ("target-burst-capacity", "-1"),
            ("window", "12s"),
            ("target", "10"),
        ]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(a.window, Some(Duration::from_secs(12)));
        assert_eq!(a.target, Some(10.0));
        assert_eq!(a.target_burst_capacity, Some(-1.0));
        assert_eq!(a.scale_to_zero_pod_retention_period, Some(Duration::ZERO));
    }

    #[test]
    fn camel_case_aliases_are_accepted_and_conflicts_reported() {
        let (a, errs) = parse(&[("minScale", "2"), ("maxScale", "5")]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!((a.min_scale, a.max_scale), (Some(2), Some(5)));
        let (_, errs) = parse(&[("minScale", "2"), ("min-scale", "3")]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("conflicts with"), "{errs:?}");
    }

    #[test]
    fn ranges_are_enforced_all_at_once() {
        let (_, errs) = parse(&[
            ("window", "5s"),
            ("panic-threshold-percentage", "100"),
            ("target", "0"),
            ("min-scale", "5"),
            ("max-scale", "2"),
            ("target-burst-capacity", "-2"),
            ("metric", "cpu"),
            ("initial-scale", "0"),
            ("activation-scale", "1"),
            ("scale-down-delay", "1.5s"),
        ]);
        assert_eq!(errs.len(), 9, "{errs:#?}");
        assert!(
            errs.iter().any(|e| e
                == "metadata.annotations[autoscaling.knative.dev/window]: must be in [6s, 1h]"),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("max-scale=2 is less than min-scale=5"))
        );
    }

    #[test]
    fn unknown_keys_warn_with_a_suggestion() {
        let (_, errs) = parse(&[("windw", "10s")]);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].contains("did you mean \"autoscaling.knative.dev/window\""),
            "{errs:?}"
        );
    }
}
