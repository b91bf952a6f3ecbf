//! The baselines: `round-robin`, `random` and `least-request` (join the shortest queue as
//! this node sees it). Each considers only instances with room, and holds when none has.

use rand::{Rng, RngExt};

use super::{Candidate, LbContext, LoadBalancer, with_room};
use crate::request::RequestInfo;

/// `round-robin`: the next instance with room after the previous choice.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl LoadBalancer for RoundRobin {
    fn pick(
        &mut self,
        _req: &dyn RequestInfo,
        candidates: &[Candidate],
        _ctx: &LbContext<'_>,
        _rng: &mut dyn Rng,
    ) -> Option<usize> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let start = self.next % n;
        let found = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| candidates[i].has_room())?;
        self.next = found + 1;
        Some(found)
    }
}

/// `random`: uniformly among the instances with room.
#[derive(Clone, Debug, Default)]
pub struct Random;

impl LoadBalancer for Random {
    fn pick(
        &mut self,
        _req: &dyn RequestInfo,
        candidates: &[Candidate],
        _ctx: &LbContext<'_>,
        rng: &mut dyn Rng,
    ) -> Option<usize> {
        let free = with_room(candidates).count();
        if free == 0 {
            return None;
        }
        with_room(candidates).nth(rng.random_range(0..free))
    }
}

/// `least-request`: the instance with the fewest requests in flight from this node; ties
/// are broken at random so that several gateways do not all pick the same one.
#[derive(Clone, Debug, Default)]
pub struct LeastRequest;

impl LoadBalancer for LeastRequest {
    fn pick(
        &mut self,
        _req: &dyn RequestInfo,
        candidates: &[Candidate],
        _ctx: &LbContext<'_>,
        rng: &mut dyn Rng,
    ) -> Option<usize> {
        let min = with_room(candidates)
            .map(|i| candidates[i].in_flight)
            .min()?;
        let ties = with_room(candidates)
            .filter(|&i| candidates[i].in_flight == min)
            .count();
        with_room(candidates)
            .filter(|&i| candidates[i].in_flight == min)
            .nth(rng.random_range(0..ties))
    }
}
