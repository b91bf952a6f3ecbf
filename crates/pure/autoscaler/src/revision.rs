//! One revision's autoscaler: metric windows, decider and the PodAutoscaler reconciler
//! (bounds, initial scale, scale to zero, activator in or out of the path), as a state
//! machine driven by timestamped observations and ticks.
//!
//! Sources: Knative's `pkg/autoscaler/metrics/collector.go`,
//! `pkg/reconciler/autoscaling/kpa/{kpa,scaler}.go` and the reference spec §2.5.

use std::time::Duration;

use kantai_model::autoscaling::Metric;
use kantai_policy::Hold;

use crate::decider::{Decider, ScaleResult, initial_excess_burst_capacity};
use crate::spec::ScalingSpec;
use crate::window::Buckets;

/// One report about a revision's load over the last second, from an instance's queue role or
/// from an activator. Reports of the same second add up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observation {
    /// Average in-flight requests (queued requests count) over the period.
    pub concurrency: f64,
    /// Part of `concurrency` that came through an activator, which reports it itself.
    pub proxied_concurrency: f64,
    /// Requests that arrived in the period (per second).
    pub requests: f64,
    /// Part of `requests` that came through an activator.
    pub proxied_requests: f64,
}

/// The PodAutoscaler's `Active` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Scaling up from zero, or waiting for the minimum number of ready instances.
    Activating,
    /// Serving with enough ready instances.
    Active,
    /// Scaled (or scaling) to zero.
    Inactive,
}

/// Why a revision became inactive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InactiveReason {
    /// No traffic.
    NoTraffic,
    /// Activation took longer than the progress deadline.
    TimedOut,
}

/// The outcome of one tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// Instances to run now (the scale applied to the revision).
    pub desired: u32,
    /// What the autoscaler wants after bounds (−1: unknown yet). Differs from `desired` while
    /// a scale to zero waits for its grace period.
    pub want: i32,
    /// Whether the decider is in panic mode.
    pub panic: bool,
    /// Excess burst capacity; negative keeps the activator in the path.
    pub excess_burst_capacity: i32,
    /// Whether requests must go through the activator (SKS proxy mode).
    pub activator_in_path: bool,
    /// How many activators should share the revision's traffic.
    pub activators: u32,
    /// The `Active` condition after this tick.
    pub activity: Activity,
    /// The observed stable value of the scaling metric (`None` without data).
    pub stable: Option<f64>,
    /// The observed panic value of the scaling metric (`None` without data).
    pub panic_value: Option<f64>,
    /// Whether the revision reached its initial scale once (immediately for initial-scale 0):
    /// Knative's `ScaleTargetInitialized`, which makes a revision Ready.
    pub initialized: bool,
}

/// Knative's minimum number of activators behind a revision.
pub const MIN_ACTIVATORS: u32 = 2;

/// The autoscaler of one revision.
#[derive(Clone, Debug)]
pub struct RevisionAutoscaler {
    spec: ScalingSpec,
    concurrency_stable: Buckets,
    concurrency_panic: Buckets,
    rps_stable: Buckets,
    rps_panic: Buckets,
    decider: Decider,
    /// The decider's latest valid result (`None`: no data yet, desired is −1).
    latest: Option<ScaleResult>,
    activity: Activity,
    activity_since: Duration,
    inactive_reason: Option<InactiveReason>,
    /// Whether the initial scale was reached once.
    initialized: bool,
    /// Since when the activator is in the path.
    proxy_since: Option<Duration>,
    /// The scale applied to the revision.
    replicas: u32,
}

impl RevisionAutoscaler {
    /// A new revision's autoscaler at `now`, with `ready` instances already running (more than
    /// one means the autoscaler restarted: it then starts in panic, holding them).
    pub fn new(spec: ScalingSpec, now: Duration, ready: u32) -> RevisionAutoscaler {
        let stable = spec.stable_window.as_secs();
        let panic = spec.panic_window.as_secs();
        let agg = spec.aggregation;
        RevisionAutoscaler {
            decider: Decider::new(&spec, ready, now),
            concurrency_stable: Buckets::new(stable, agg),
            concurrency_panic: Buckets::new(panic, agg),
            rps_stable: Buckets::new(stable, agg),
            rps_panic: Buckets::new(panic, agg),
            latest: None,
            activity: Activity::Activating,
            activity_since: now,
            inactive_reason: None,
            initialized: false,
            proxy_since: None,
            replicas: if ready > 0 {
                ready
            } else if spec.max_scale != 0 {
                spec.initial_scale.min(spec.max_scale)
            } else {
                spec.initial_scale
            },
            spec,
        }
    }

    /// The spec in force.
    pub fn spec(&self) -> &ScalingSpec {
        &self.spec
    }

    /// The scale applied to the revision.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// The `Active` condition and since when it holds.
    pub fn activity(&self) -> (Activity, Duration) {
        (self.activity, self.activity_since)
    }

    /// Why the revision is inactive, when it is.
    pub fn inactive_reason(&self) -> Option<InactiveReason> {
        self.inactive_reason
    }

    /// Applies a changed spec (annotations or fleet config changed) without losing history.
    pub fn update_spec(&mut self, spec: ScalingSpec, now: Duration) {
        let now_s = now.as_secs();
        let (stable, panic) = (spec.stable_window.as_secs(), spec.panic_window.as_secs());
        if spec.aggregation != self.spec.aggregation {
            // A different averaging starts from fresh windows (Knative recreates them).
            self.concurrency_stable = Buckets::new(stable, spec.aggregation);
            self.concurrency_panic = Buckets::new(panic, spec.aggregation);
            self.rps_stable = Buckets::new(stable, spec.aggregation);
            self.rps_panic = Buckets::new(panic, spec.aggregation);
        } else {
            self.concurrency_stable.resize(stable, now_s);
            self.concurrency_panic.resize(panic, now_s);
            self.rps_stable.resize(stable, now_s);
            self.rps_panic.resize(panic, now_s);
        }
        self.decider.update(&self.spec, &spec);
        self.spec = spec;
    }

    /// Records a report received at `now`. Returns `true` when the caller should tick at once
    /// instead of waiting for the next 2-second tick: the revision is at zero and load
    /// arrived (Knative's poke).
    pub fn record(&mut self, now: Duration, obs: Observation) -> bool {
        let s = now.as_secs();
        let concurrency = obs.concurrency - obs.proxied_concurrency;
        let rps = obs.requests - obs.proxied_requests;
        self.concurrency_stable.record(s, concurrency);
        self.concurrency_panic.record(s, concurrency);
        self.rps_stable.record(s, rps);
        self.rps_panic.record(s, rps);
        self.latest.is_some_and(|r| r.desired == 0) && obs.concurrency > 0.0
    }

    /// The stable and panic values at `now`, or `None` when there is no data and a metrics
    /// source exists (the previous decision then stands).
    fn observed(&self, now: u64) -> Option<(f64, f64)> {
        let (stable, panic) = match self.spec.metric {
            Metric::Concurrency => (&self.concurrency_stable, &self.concurrency_panic),
            Metric::Rps => (&self.rps_stable, &self.rps_panic),
        };
        // With TBC = −1 there is no scrape target: all load passes the activator, so an empty
        // window really means zero.
        if stable.is_empty(now) && !self.spec.activator_always_in_path() {
            return None;
        }
        Some((stable.average(now), panic.average(now)))
    }

    /// One tick at `now` with `ready` ready instances, under Knative's own keep-alive.
    pub fn tick(&mut self, now: Duration, ready: u32) -> Decision {
        self.tick_held(now, ready, Hold::Kpa)
    }

    /// One tick at `now` with `ready` ready instances and the revision's keep-alive
    /// decision: [`Hold::Keep`] raises the count to at least its instances (max-scale still
    /// bounds it); [`Hold::Release`] takes an idle revision without a min-scale to zero
    /// without waiting for the stable window or the last pod's retention, only for the
    /// grace period that puts the activator in the path first.
    pub fn tick_held(&mut self, now: Duration, ready: u32, hold: Hold) -> Decision {
        let observed = self.observed(now.as_secs());
        if let Some((stable, panic)) = observed {
            self.latest = Some(self.decider.scale(&self.spec, now, ready, stable, panic));
        }
        let decider_desired = self.latest.map_or(-1, |r| r.desired);
        let ebc = self.latest.map_or_else(
            || initial_excess_burst_capacity(&self.spec),
            |r| r.excess_burst_capacity,
        );

        let want = self.reconcile_scale(now, decider_desired, hold);

        let inactive = self.activity == Activity::Inactive;
        let proxy_mode = want == 0 || ebc < 0 || (want == -1 && inactive);
        // Without ready instances only the activator can take requests.
        let activator_in_path = proxy_mode || ready == 0;
        match (activator_in_path, self.proxy_since) {
            (true, None) => self.proxy_since = Some(now),
            (false, Some(_)) => self.proxy_since = None,
            _ => {}
        }

        self.compute_activity(now, want, ready);

        Decision {
            desired: self.replicas,
            want,
            panic: self.decider.in_panic(),
            excess_burst_capacity: ebc,
            activator_in_path,
            activators: self.num_activators(ready),
            activity: self.activity,
            stable: observed.map(|o| o.0),
            panic_value: observed.map(|o| o.1),
            initialized: self.initialized,
        }
    }

    /// Knative's `scaler.scale`: bounds, initial scale, then scale-to-zero handling. Applies
    /// the scale when allowed and returns what is wanted.
    fn reconcile_scale(&mut self, now: Duration, desired: i32, hold: Hold) -> i32 {
        let keep = match hold {
            Hold::Keep(n) => n,
            _ => 0,
        };
        if desired < 0 && self.activity != Activity::Activating && keep == 0 {
            return desired;
        }
        let (mut min, max) = self.spec.bounds();
        if self.spec.initial_scale > 1 && !self.initialized && self.spec.reachable {
            min = min.max(self.spec.initial_scale);
        }
        let mut want = i64::from(desired).max(i64::from(min)).max(i64::from(keep));
        if max != 0 {
            want = want.min(i64::from(max));
        }
        // min-scale is the user's floor: no keep-alive policy releases below it.
        let release = hold == Hold::Release && min == 0;
        if release {
            want = 0;
        }
        let want = i32::try_from(want).unwrap_or(i32::MAX);
        let (want, apply) = self.handle_scale_to_zero(now, want, release);
        if apply {
            self.replicas = u32::try_from(want).unwrap_or(0);
        }
        want
    }

    fn handle_scale_to_zero(&self, now: Duration, want: i32, release: bool) -> (i32, bool) {
        if want != 0 {
            return (want, true);
        }
        let spec = &self.spec;
        if !spec.enable_scale_to_zero {
            return (1, true);
        }
        let for_how_long = now.saturating_sub(self.activity_since);
        match self.activity {
            Activity::Activating => {
                if for_how_long > spec.activation_timeout {
                    (0, true)
                } else {
                    (-1, false)
                }
            }
            Activity::Active => {
                if release || for_how_long >= spec.stable_window {
                    // Mark the revision inactive first; instances stay until the activator
                    // has been in the path long enough.
                    (0, false)
                } else {
                    (1, true)
                }
            }
            Activity::Inactive => {
                let activator_in_path =
                    spec.activator_always_in_path() || self.proxy_since.is_some();
                if !activator_in_path {
                    return (0, false);
                }
                let retention = if release {
                    Duration::ZERO
                } else {
                    spec.scale_to_zero_pod_retention_period
                };
                let grace = spec.scale_to_zero_grace_period;
                if for_how_long >= grace.max(retention) {
                    return (0, true);
                }
                if !retention.is_zero() && for_how_long < retention {
                    return (0, false);
                }
                let proxy_for = self
                    .proxy_since
                    .map_or(Duration::ZERO, |t| now.saturating_sub(t));
                (0, proxy_for >= grace)
            }
        }
    }

    /// Knative's `computeActiveCondition`.
    fn compute_activity(&mut self, now: Duration, want: i32, ready: u32) {
        let (min, _) = self.spec.bounds();
        let min_ready = if self.initialized {
            min.max(1)
        } else {
            min.max(self.spec.initial_scale)
        };
        if ready >= min_ready {
            self.initialized = true;
        }
        let inactive = self.activity == Activity::Inactive;
        let next = if want == 0 || min_ready == 0 {
            let reason = if self.activity == Activity::Activating && min_ready > 0 {
                InactiveReason::TimedOut
            } else {
                InactiveReason::NoTraffic
            };
            self.inactive_reason = Some(reason);
            Activity::Inactive
        } else if ready < min_ready {
            if want > 0 || !inactive {
                Activity::Activating
            } else {
                Activity::Inactive
            }
        } else if want > 0 || !inactive {
            Activity::Active
        } else {
            Activity::Inactive
        };
        if next != Activity::Inactive {
            self.inactive_reason = None;
        }
        if next != self.activity {
            self.activity = next;
            self.activity_since = now;
        }
    }

    fn num_activators(&self, ready: u32) -> u32 {
        let tbc = self.spec.target_burst_capacity;
        if tbc == 0.0 {
            return MIN_ACTIVATORS;
        }
        let capacity = f64::from(ready) * self.spec.total + tbc.max(0.0);
        let n = (capacity / self.spec.activator_capacity).ceil();
        MIN_ACTIVATORS.max(if n.is_finite() {
            n.min(f64::from(u32::MAX)) as u32
        } else {
            0
        })
    }
}
