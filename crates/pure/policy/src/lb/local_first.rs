//! `local-first`: an instance on the node the request entered when one has room, else the
//! nearest node (smallest measured round trip; unmeasured nodes last) that has one; within a
//! node, the instance with the fewest requests in flight.

use std::cmp::Ordering;

use rand::Rng;

use super::{Candidate, LbContext, LoadBalancer, with_room};
use crate::request::RequestInfo;

/// The `local-first` balancer.
#[derive(Clone, Debug, Default)]
pub struct LocalFirst;

impl LoadBalancer for LocalFirst {
    fn pick(
        &mut self,
        _req: &dyn RequestInfo,
        candidates: &[Candidate],
        ctx: &LbContext<'_>,
        _rng: &mut dyn Rng,
    ) -> Option<usize> {
        with_room(candidates).min_by(|&a, &b| {
            let (ca, cb) = (&candidates[a], &candidates[b]);
            let ra = ctx.rtt(ca.node).unwrap_or(f64::INFINITY);
            let rb = ctx.rtt(cb.node).unwrap_or(f64::INFINITY);
            ra.total_cmp(&rb)
                .then(ca.in_flight.cmp(&cb.in_flight))
                .then(Ordering::Equal)
        })
    }
}
