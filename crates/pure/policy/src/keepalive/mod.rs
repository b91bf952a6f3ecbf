//! Keep-alive and pre-warming: how long an idle revision keeps an instance, and when one is
//! started ahead of the demand a policy predicts.
//!
//! The driver's scaler tells [`Idleness`] at every autoscaler tick whether the revision had
//! a request since the tick before; it turns that into idle periods and, when a request
//! ends one, an [`Arrival`] carrying the idle time, the same in every driver. The policy
//! learns from the arrivals and answers each tick with a [`Hold`], which the KPA applies
//! over its own decision: [`Hold::Kpa`] leaves Knative's windows in charge, [`Hold::Keep`]
//! keeps (or starts) instances, [`Hold::Release`] lets an idle revision go to zero without
//! waiting for the stable window.

mod fixed;
mod greedy_dual;
mod hybrid_histogram;

use std::time::Duration;

pub use fixed::{Fixed, Knative};
pub use greedy_dual::GreedyDual;
pub use hybrid_histogram::{HybridHistogram, Windows};

use crate::fleet::Resources;
use crate::params::Params;

/// A request reached the revision after it had been idle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrival {
    /// When the driver noticed it (the tick whose interval held the request).
    pub now: Duration,
    /// How long the revision had been idle before it, in whole tick intervals (`None`: its
    /// first request).
    pub idle: Option<Duration>,
    /// The eviction clock of the revision's node (greedy-dual caching's `L`; 0 where
    /// nothing was evicted yet).
    pub clock: f64,
}

/// What a keep-alive policy decides on at a tick.
#[derive(Clone, Copy, Debug)]
pub struct KeepAliveInput<'a> {
    /// Time since the driver's epoch.
    pub now: Duration,
    /// Since when the revision has had no request (`None`: it had one in the last tick
    /// interval, or never had one).
    pub idle_since: Option<Duration>,
    /// Ready instances of the revision.
    pub ready: u32,
    /// What one instance asks of its node.
    pub resources: Resources,
    /// How long the revision's instances took to start, when measured.
    pub cold_start: Option<Duration>,
    /// The revision's policy parameters.
    pub params: &'a Params,
}

/// A keep-alive decision, applied over the KPA's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Knative's own rules decide: the stable window, the grace period and the retention.
    Kpa,
    /// At least this many instances, started if need be (a pre-warm from zero); the KPA may
    /// want more, and max-scale still bounds it.
    Keep(u32),
    /// An idle revision may go to zero now, without waiting for the stable window; the
    /// grace period that takes the activator into the path first still applies.
    Release,
}

/// A keep-alive policy. One value per revision.
pub trait KeepAlive: Send {
    /// A request ended an idle period (or came first).
    fn arrived(&mut self, arrival: Arrival);
    /// The decision at a tick.
    fn hold(&mut self, input: &KeepAliveInput<'_>) -> Hold;
    /// The rank by which the driver evicts an idle revision's kept instance when its node
    /// needs room (lowest first); `None`: the policy does not take part in eviction.
    fn priority(&self, input: &KeepAliveInput<'_>) -> Option<f64> {
        let _ = input;
        None
    }
    /// The driver evicted the revision's kept instances to make room at `now`.
    fn evicted(&mut self, now: Duration) {
        let _ = now;
    }
}

/// A revision's idle periods, from one "had a request" bit per tick.
///
/// An idle period starts at the end of the last tick interval with a request and ends at
/// the start of the next one: idle times are whole tick intervals, in every driver alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Idleness {
    /// The previous tick.
    last_tick: Option<Duration>,
    /// The end of the last interval with a request (`None`: busy now, or never busy).
    idle_since: Option<Duration>,
    /// Whether any request came yet.
    seen: bool,
}

impl Idleness {
    /// Takes the tick at `now`: `busy` says whether a request arrived or was in flight since
    /// the previous tick. Returns the arrival that ended an idle period (or came first).
    pub fn tick(&mut self, now: Duration, busy: bool) -> Option<Arrival> {
        let start = self.last_tick.unwrap_or(now);
        self.last_tick = Some(now);
        if !busy {
            if self.seen && self.idle_since.is_none() {
                self.idle_since = Some(start);
            }
            return None;
        }
        let idle = match (self.seen, self.idle_since.take()) {
            (false, _) => None,
            (true, Some(since)) => Some(start.saturating_sub(since)),
            (true, None) => return None,
        };
        self.seen = true;
        Some(Arrival {
            now,
            idle,
            clock: 0.0,
        })
    }

    /// Since when the revision has had no request (`None`: busy in the last interval, or
    /// never busy).
    pub fn idle_since(&self) -> Option<Duration> {
        self.idle_since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn an_idle_period_is_the_whole_tick_intervals_without_a_request() {
        let mut i = Idleness::default();
        assert_eq!(i.tick(s(0), false), None);
        let first = i.tick(s(2), true).expect("the first request");
        assert_eq!(first.idle, None);
        assert_eq!(i.tick(s(4), true), None, "still busy: no new arrival");
        assert_eq!(i.tick(s(6), false), None);
        // Busy in (2, 4]; idle in (4, 6] and (6, 8]; busy again in (8, 10].
        assert_eq!(i.idle_since(), Some(s(4)));
        assert_eq!(i.tick(s(8), false), None);
        let next = i.tick(s(10), true).expect("an arrival");
        assert_eq!(next.idle, Some(s(4)));
        assert_eq!(i.idle_since(), None);
    }

    #[test]
    fn no_idle_period_before_the_first_request() {
        let mut i = Idleness::default();
        for t in 0..5 {
            assert_eq!(i.tick(s(t * 2), false), None);
        }
        assert_eq!(i.idle_since(), None);
    }
}
