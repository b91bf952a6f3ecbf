//! `least-latency`: the instance with the lowest expected response time, as this node sees
//! it: the round trip to the instance's node, plus the serving time measured there times the
//! requests already waiting for it plus one. The worked example of `docs/policies.md`.

use rand::Rng;

use super::{Candidate, LbContext, LoadBalancer, with_room};
use crate::request::RequestInfo;

/// The `least-latency` balancer.
#[derive(Clone, Debug, Default)]
pub struct LeastLatency;

impl LeastLatency {
    /// The expected response time of `c` in ms; an unmeasured round trip counts as
    /// infinitely far, an unmeasured serving time as 1 ms.
    pub fn expected_ms(c: &Candidate, ctx: &LbContext<'_>) -> f64 {
        let rtt = ctx.rtt(c.node).unwrap_or(f64::INFINITY);
        let serving = ctx.serving_ms.get(c.node).copied().flatten().unwrap_or(1.0);
        rtt + serving * f64::from(c.in_flight + 1)
    }
}

impl LoadBalancer for LeastLatency {
    fn pick(
        &mut self,
        _req: &dyn RequestInfo,
        candidates: &[Candidate],
        ctx: &LbContext<'_>,
        _rng: &mut dyn Rng,
    ) -> Option<usize> {
        // Among the instances with room, the lowest expected time; ties go to the first.
        with_room(candidates).min_by(|&a, &b| {
            let ea = Self::expected_ms(&candidates[a], ctx);
            let eb = Self::expected_ms(&candidates[b], ctx);
            ea.total_cmp(&eb).then(a.cmp(&b))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;
    use crate::request::SimpleRequest;

    fn c(node: usize, in_flight: u32) -> Candidate {
        Candidate {
            id: node as u64,
            node,
            in_flight,
            capacity: 0,
        }
    }

    #[test]
    fn prefers_near_until_queueing_there_costs_more_than_the_trip() {
        // This node is node 0; node 1 is 20 ms away; both serve in 5 ms.
        let rtt = [Some(0.0), Some(20.0)];
        let serving = [Some(5.0), Some(5.0)];
        let ctx = LbContext {
            origin: 0,
            rtt_ms: &rtt,
            serving_ms: &serving,
            container_concurrency: 0,
            now: Duration::ZERO,
        };
        let mut lb = LeastLatency;
        let mut rng = SmallRng::seed_from_u64(1);
        let req = SimpleRequest::get("/");
        // Local: 0 + 5 × 1 = 5 against 20 + 5 = 25.
        assert_eq!(lb.pick(&req, &[c(0, 0), c(1, 0)], &ctx, &mut rng), Some(0));
        // Local with 4 waiting: 0 + 5 × 5 = 25, a tie: the first wins.
        assert_eq!(lb.pick(&req, &[c(0, 4), c(1, 0)], &ctx, &mut rng), Some(0));
        // With 5 waiting: 30 against 25: the far one.
        assert_eq!(lb.pick(&req, &[c(0, 5), c(1, 0)], &ctx, &mut rng), Some(1));
    }
}
