//! A plug-in load balancer behind [`LoadBalancer`].

use std::time::Duration;

use kantai_policy::lb::{Candidate, LbContext, LoadBalancer};
use kantai_policy::rand::Rng;
use kantai_policy::registry::{self, Kind};
use kantai_policy::{Params, RequestInfo};

use crate::bindings::lb::exports::kantai::policy::load_balancer as wit;
use crate::bindings::{nanos, request_of};
use crate::fallback::Reason;
use crate::sandbox::{Bindings, Plugin, Value};

/// A revision's balancer on one node, in a plug-in; the default balancer answers for it
/// when it cannot.
struct Balancer {
    value: Value,
    /// The headers its picks read; `None`: it does not read the request.
    headers: Option<Vec<String>>,
    fallback: Box<dyn LoadBalancer>,
    /// The candidates as the WIT has them, kept to reuse their allocations.
    candidates: wit::Candidates,
}

fn guest(b: &Bindings) -> &wit::Guest {
    match b {
        Bindings::LoadBalancer(b) => b.kantai_policy_load_balancer(),
        _ => unreachable!("a load-balancer plug-in has load-balancer bindings"),
    }
}

impl Plugin {
    /// A load balancer of this plug-in (which must be one).
    pub(crate) fn load_balancer(&self, params: &Params) -> Box<dyn LoadBalancer> {
        let mut value = Value::new(&self.shared, params);
        let fuel = value.limits().fuel.per_request;
        let headers = value
            .call(fuel, 0, |b, s, h| guest(b).call_reads(s, h))
            .and_then(|r| r.request.then_some(r.headers));
        Box::new(Balancer {
            value,
            headers,
            fallback: default(params),
            candidates: wit::Candidates {
                id: Vec::new(),
                node: Vec::new(),
                in_flight: Vec::new(),
                capacity: Vec::new(),
                rtt_ms: Vec::new(),
                serving_ms: Vec::new(),
            },
        })
    }
}

/// The plug point's default balancer.
fn default(params: &Params) -> Box<dyn LoadBalancer> {
    registry::load_balancer(Kind::LoadBalancer.default_name(), params)
        .unwrap_or_else(|| unreachable!("the default balancer is built in"))
}

impl LoadBalancer for Balancer {
    fn pick(
        &mut self,
        req: &dyn RequestInfo,
        candidates: &[Candidate],
        ctx: &LbContext<'_>,
        rng: &mut dyn Rng,
    ) -> Option<usize> {
        if self.value.is_live() {
            let request = self.headers.as_ref().map(|h| request_of(req, h));
            let cols = &mut self.candidates;
            cols.id.clear();
            cols.node.clear();
            cols.in_flight.clear();
            cols.capacity.clear();
            cols.rtt_ms.clear();
            cols.serving_ms.clear();
            for c in candidates {
                cols.id.push(c.id);
                cols.node.push(c.node as u32);
                cols.in_flight.push(c.in_flight);
                cols.capacity.push(c.capacity);
                cols.rtt_ms.push(ctx.rtt(c.node).unwrap_or(f64::NAN));
                let serving = ctx.serving_ms.get(c.node).copied().flatten();
                cols.serving_ms.push(serving.unwrap_or(f64::NAN));
            }
            let context = wit::Context {
                origin: ctx.origin as u32,
                container_concurrency: ctx.container_concurrency,
                now: nanos(ctx.now),
            };
            let fuel = self.value.limits().fuel.per_request;
            let cands = &self.candidates;
            let answer = self.value.call(fuel, self.value.seed(rng), |b, s, h| {
                guest(b).call_pick(s, h, request.as_ref(), cands, context)
            });
            match answer {
                Some(None) => return None,
                Some(Some(i)) if (i as usize) < candidates.len() => return Some(i as usize),
                Some(Some(i)) => self.value.fell_back(&Reason::OutOfRange(format!(
                    "picked candidate {i} of {}",
                    candidates.len()
                ))),
                None => {}
            }
        }
        self.fallback.pick(req, candidates, ctx, rng)
    }

    fn observe(&mut self, id: u64, latency: Duration, now: Duration) {
        if self.value.is_live() {
            let fuel = self.value.limits().fuel.per_request;
            self.value.call(fuel, 0, |b, s, h| {
                guest(b).call_observe(s, h, id, nanos(latency), nanos(now))
            });
        }
        self.fallback.observe(id, latency, now);
    }
}
