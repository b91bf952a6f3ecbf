//! The KPA decider: from stable and panic averages to a desired instance count, panic state
//! and excess burst capacity (Knative's `pkg/autoscaler/scaling/autoscaler.go`).

use std::time::Duration;

use crate::spec::ScalingSpec;
use crate::window::MaxWindow;

/// The decision tick: the decider runs every 2 seconds (and when poked).
pub const TICK: Duration = Duration::from_secs(2);

/// One decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleResult {
    /// Instances wanted (before min/max bounds and scale-to-zero handling).
    pub desired: i32,
    /// `ready × total − TBC − panic load`, floored; negative keeps the activator in the path.
    pub excess_burst_capacity: i32,
    /// Whether the decider is in panic mode.
    pub panic: bool,
}

/// The decider's state for one revision.
#[derive(Clone, Debug)]
pub struct Decider {
    /// When the panic episode was last extended; `None` when not panicking.
    panic_time: Option<Duration>,
    /// The highest count chosen in this panic episode (panic never scales down).
    max_panic_pods: i32,
    /// Sliding maximum that delays scale-downs, when a scale-down delay is set.
    delay: Option<MaxWindow>,
}

impl Decider {
    /// A new decider. If the revision already has more than one ready instance (an
    /// autoscaler restart), it starts in panic mode holding that count, so that lost
    /// history cannot cause a scale-down.
    pub fn new(spec: &ScalingSpec, ready: u32, now: Duration) -> Decider {
        let ready = i32::try_from(ready).unwrap_or(i32::MAX);
        Decider {
            panic_time: (ready > 1).then_some(now),
            max_panic_pods: ready,
            delay: delay_window(spec),
        }
    }

    /// Re-reads a changed spec (the delay window restarts when its length changes).
    pub fn update(&mut self, old: &ScalingSpec, new: &ScalingSpec) {
        if old.scale_down_delay != new.scale_down_delay {
            self.delay = delay_window(new);
        }
    }

    /// Whether the decider is panicking.
    pub fn in_panic(&self) -> bool {
        self.panic_time.is_some()
    }

    /// One decision at `now`, given the ready instance count and the observed stable and
    /// panic values of the scaling metric.
    pub fn scale(
        &mut self,
        spec: &ScalingSpec,
        now: Duration,
        ready: u32,
        stable: f64,
        panic: f64,
    ) -> ScaleResult {
        let ready_f = f64::from(ready.max(1));
        let max_up = (spec.max_scale_up_rate * ready_f).ceil();
        let max_down = if spec.reachable {
            (ready_f / spec.max_scale_down_rate).floor()
        } else {
            0.0
        };
        let dspc = (stable / spec.target).ceil();
        let dppc = (panic / spec.target).ceil();
        let clamp = |x: f64| saturating_i32(x.max(max_down).min(max_up));
        let mut stable_pods = clamp(dspc);
        let mut panic_pods = clamp(dppc);
        let activation = i32::try_from(spec.activation_scale).unwrap_or(i32::MAX);
        if activation > 1 {
            if dspc > 0.0 && activation > stable_pods {
                stable_pods = activation;
            }
            if dppc > 0.0 && activation > panic_pods {
                panic_pods = activation;
            }
        }

        let over = dppc / ready_f >= spec.panic_threshold;
        match self.panic_time {
            _ if over => self.panic_time = Some(now),
            Some(t) if t + spec.stable_window < now => {
                // The surge has made its way into the stable window: leave panic.
                self.panic_time = None;
                self.max_panic_pods = 0;
            }
            _ => {}
        }

        let mut desired = stable_pods;
        if self.panic_time.is_some() {
            desired = desired.max(panic_pods);
            // Panic only scales up.
            self.max_panic_pods = self.max_panic_pods.max(desired);
            desired = self.max_panic_pods;
        }

        if let Some(w) = &mut self.delay {
            w.record(now.as_secs() / TICK.as_secs(), f64::from(desired));
            desired = saturating_i32(w.current());
        }

        let tbc = spec.target_burst_capacity;
        let ebc = if tbc == 0.0 {
            0.0
        } else if tbc < 0.0 {
            -1.0
        } else {
            (f64::from(ready) * spec.total - tbc - panic).floor()
        };
        ScaleResult {
            desired,
            excess_burst_capacity: saturating_i32(ebc),
            panic: self.panic_time.is_some(),
        }
    }
}

fn delay_window(spec: &ScalingSpec) -> Option<MaxWindow> {
    let delay = spec.scale_down_delay.as_secs();
    (delay > 0).then(|| MaxWindow::new(delay.div_ceil(TICK.as_secs())))
}

fn saturating_i32(x: f64) -> i32 {
    if x.is_nan() {
        0
    } else {
        x.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
    }
}

/// The excess burst capacity a revision starts with, before its first decision:
/// `initial-scale × total − TBC` (so that with defaults a new revision starts behind the
/// activator).
pub fn initial_excess_burst_capacity(spec: &ScalingSpec) -> i32 {
    let tbc = spec.target_burst_capacity;
    if tbc == 0.0 {
        0
    } else if tbc < 0.0 {
        -1
    } else {
        saturating_i32((f64::from(spec.initial_scale) * spec.total - tbc).floor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kantai_model::autoscaling::AutoscalingAnnotations;
    use kantai_model::config::AutoscalerConfig;

    fn spec() -> ScalingSpec {
        ScalingSpec::resolve(
            &AutoscalerConfig::default(),
            &AutoscalingAnnotations::default(),
            0,
            Duration::from_secs(600),
        )
    }

    /// Knative's worked example: CC 0, target 70, total 100, 2 ready, S 350, P 500.
    #[test]
    fn the_reference_worked_example() {
        let s = spec();
        let mut d = Decider::new(&s, 0, Duration::ZERO);
        let r = d.scale(&s, Duration::from_secs(10), 2, 350.0, 500.0);
        assert_eq!(r.desired, 8);
        assert!(r.panic);
        assert_eq!(r.excess_burst_capacity, -511);
    }

    #[test]
    fn a_restart_with_instances_starts_in_panic() {
        let s = spec();
        let mut d = Decider::new(&s, 5, Duration::ZERO);
        assert!(d.in_panic());
        let r = d.scale(&s, Duration::from_secs(2), 5, 0.0, 0.0);
        assert_eq!(r.desired, 5);
    }

    #[test]
    fn scale_down_delay_holds_the_maximum() {
        let mut s = spec();
        s.scale_down_delay = Duration::from_secs(10);
        let mut d = Decider::new(&s, 0, Duration::ZERO);
        assert_eq!(
            d.scale(&s, Duration::from_secs(0), 10, 700.0, 700.0)
                .desired,
            10
        );
        // The load drops; for 10 s (5 ticks) the earlier 10 is still the window's maximum.
        for t in [2, 4, 6, 8] {
            let r = d.scale(&s, Duration::from_secs(t), 10, 70.0, 70.0);
            assert_eq!(r.desired, 10, "at {t}");
        }
        assert_eq!(
            d.scale(&s, Duration::from_secs(10), 10, 70.0, 70.0).desired,
            5
        );
    }
}
