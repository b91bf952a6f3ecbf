//! `p2c-peak-ewma`: power of two choices scored by a peak-sensitive EWMA of each instance's
//! observed latency times its requests in flight plus one (Finagle, linkerd2-proxy, tower).
//! It folds the network round trip and the serving time into one number per instance, so a
//! far or slow instance is chosen only when the near ones are busy.
//!
//! Before an instance has answered anything, its estimate is the round trip to its node plus
//! the revision's serving time there (or 1 ms); after a slow answer the estimate relaxes back
//! towards that prior with time (as tower decays on every read), so an avoided instance is
//! tried again.

use std::collections::HashMap;
use std::time::Duration;

use kantai_latency::PeakEwma;
use rand::Rng;

use super::{Candidate, LbContext, LoadBalancer, two_distinct, with_room};
use crate::request::RequestInfo;

/// How fast an estimate decays back after a slow answer (linkerd's default).
pub const DECAY: Duration = Duration::from_secs(10);

/// The `p2c-peak-ewma` balancer.
#[derive(Clone, Debug, Default)]
pub struct P2cPeakEwma {
    estimates: HashMap<u64, PeakEwma>,
}

impl P2cPeakEwma {
    fn estimate(&mut self, c: &Candidate, ctx: &LbContext<'_>) -> f64 {
        // The prior: what the network and the measured serving time alone predict.
        let rtt = ctx.rtt(c.node).unwrap_or(0.0);
        let serving = ctx.serving_ms.get(c.node).copied().flatten().unwrap_or(1.0);
        let prior = (rtt + serving).max(0.001);
        let e = self
            .estimates
            .entry(c.id)
            .or_insert_with(|| PeakEwma::new(DECAY, prior, ctx.now));
        // A slow answer's penalty relaxes towards the prior while the instance is avoided.
        e.value_at(ctx.now, prior)
    }

    fn score(&mut self, c: &Candidate, ctx: &LbContext<'_>) -> f64 {
        self.estimate(c, ctx) * f64::from(c.in_flight + 1)
    }
}

impl LoadBalancer for P2cPeakEwma {
    fn pick(
        &mut self,
        _req: &dyn RequestInfo,
        candidates: &[Candidate],
        ctx: &LbContext<'_>,
        rng: &mut dyn Rng,
    ) -> Option<usize> {
        // Forget instances that are gone, so the map stays the size of the revision.
        if self.estimates.len() > 2 * candidates.len() + 8 {
            self.estimates
                .retain(|id, _| candidates.iter().any(|c| c.id == *id));
        }
        let free: Vec<usize> = with_room(candidates).collect();
        match free.len() {
            0 => None,
            1 => Some(free[0]),
            n => {
                let (a, b) = two_distinct(n, rng);
                let (a, b) = (free[a], free[b]);
                let (sa, sb) = (
                    self.score(&candidates[a], ctx),
                    self.score(&candidates[b], ctx),
                );
                Some(if sb < sa { b } else { a })
            }
        }
    }

    fn observe(&mut self, id: u64, latency: Duration, now: Duration) {
        let ms = latency.as_secs_f64() * 1e3;
        self.estimates
            .entry(id)
            .or_insert_with(|| PeakEwma::new(DECAY, ms, now))
            .record(now, ms);
    }
}
