//! FaasCache's Greedy-Dual keep-alive (Fuerst and Sharma, ASPLOS 2021): keep-alive as
//! caching. An idle revision keeps an instance for as long as its node has room; when the
//! node needs room, the driver evicts the kept instance of lowest priority:
//!
//! `priority = clock + frequency × cost / size`
//!
//! where `clock` is the node's eviction clock when the revision last had a request (the
//! priority of the last instance evicted there), `frequency` the requests since the
//! revision was last evicted, `cost` its measured cold start in seconds and `size` the
//! memory one instance asks, in MiB.

use std::time::Duration;

use super::{Arrival, Hold, KeepAlive, KeepAliveInput};

/// The cold start a revision is charged before one is measured.
pub const UNMEASURED_COST: Duration = Duration::from_secs(1);
/// The memory a revision that declares none is charged, in MiB.
pub const UNDECLARED_MIB: f64 = 128.0;

/// Greedy-Dual keep-alive state for one revision.
#[derive(Clone, Copy, Debug, Default)]
pub struct GreedyDual {
    /// Arrivals since the last eviction.
    frequency: u64,
    /// The node's clock at the last arrival.
    clock: f64,
    /// Evicted since the last arrival: nothing is kept.
    evicted: bool,
}

impl KeepAlive for GreedyDual {
    fn arrived(&mut self, arrival: Arrival) {
        self.frequency += 1;
        self.clock = arrival.clock;
        self.evicted = false;
    }

    fn hold(&mut self, input: &KeepAliveInput<'_>) -> Hold {
        match input.idle_since {
            None => Hold::Kpa,
            Some(_) if self.evicted => Hold::Release,
            Some(_) => Hold::Keep(1),
        }
    }

    fn priority(&self, input: &KeepAliveInput<'_>) -> Option<f64> {
        let cost = input.cold_start.unwrap_or(UNMEASURED_COST).as_secs_f64();
        let mib = input.resources.memory / f64::from(1u32 << 20);
        let size = if mib > 0.0 { mib } else { UNDECLARED_MIB };
        Some(self.clock + self.frequency as f64 * cost / size)
    }

    fn evicted(&mut self, _: Duration) {
        self.frequency = 0;
        self.evicted = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Resources;
    use crate::params::Params;

    fn input<'a>(params: &'a Params, idle: bool, memory_mib: f64) -> KeepAliveInput<'a> {
        KeepAliveInput {
            now: Duration::from_secs(100),
            idle_since: idle.then_some(Duration::from_secs(50)),
            ready: 1,
            resources: Resources {
                cpu: 0.0,
                memory: memory_mib * f64::from(1u32 << 20),
            },
            cold_start: Some(Duration::from_millis(500)),
            params,
        }
    }

    fn arrival(clock: f64) -> Arrival {
        Arrival {
            now: Duration::from_secs(1),
            idle: Some(Duration::from_secs(1)),
            clock,
        }
    }

    #[test]
    fn priority_is_the_clock_plus_frequency_times_cost_over_size() {
        let p = Params::default();
        let mut g = GreedyDual::default();
        for clock in [0.0, 0.0, 3.0] {
            g.arrived(arrival(clock));
        }
        // clock 3 at the last arrival; 3 arrivals × 0.5 s / 256 MiB.
        let got = g.priority(&input(&p, true, 256.0)).expect("ranked");
        assert!((got - (3.0 + 3.0 * 0.5 / 256.0)).abs() < 1e-12, "{got}");
    }

    #[test]
    fn an_idle_revision_is_kept_until_evicted_then_released_until_its_next_request() {
        let p = Params::default();
        let mut g = GreedyDual::default();
        g.arrived(arrival(0.0));
        assert_eq!(g.hold(&input(&p, true, 128.0)), Hold::Keep(1));
        g.evicted(Duration::from_secs(100));
        assert_eq!(g.hold(&input(&p, true, 128.0)), Hold::Release);
        // Frequency starts again from the next request.
        g.arrived(arrival(7.0));
        assert_eq!(g.hold(&input(&p, true, 128.0)), Hold::Keep(1));
        let got = g.priority(&input(&p, true, 128.0)).expect("ranked");
        assert!((got - (7.0 + 0.5 / 128.0)).abs() < 1e-12, "{got}");
    }

    #[test]
    fn a_busy_revision_is_the_kpas() {
        let p = Params::default();
        assert_eq!(
            GreedyDual::default().hold(&input(&p, false, 128.0)),
            Hold::Kpa
        );
    }
}
