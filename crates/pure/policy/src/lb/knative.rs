//! `knative`: Knative's activator load balancing (`pkg/activator/net/lb_policy.go`).
//!
//! - containerConcurrency 0 (unlimited): power of two random choices by in-flight requests;
//! - 1–3: the first instance, in the stable order, with a free slot;
//! - more: round robin from after the last choice, skipping full instances.

use rand::Rng;

use super::{Candidate, LbContext, LoadBalancer, two_distinct};
use crate::request::RequestInfo;

/// The `knative` balancer (its state is the round-robin position).
#[derive(Clone, Debug, Default)]
pub struct Knative {
    next: usize,
}

impl Knative {
    /// A fresh balancer.
    pub fn new() -> Knative {
        Knative::default()
    }

    /// Knative's choice for a containerConcurrency, without a request.
    pub fn choose(
        &mut self,
        candidates: &[Candidate],
        container_concurrency: u32,
        rng: &mut dyn Rng,
    ) -> Option<usize> {
        match (container_concurrency, candidates.len()) {
            (_, 0) => None,
            (0, 1) => Some(0),
            (0, n) => {
                // The one with fewer in-flight requests wins; ties go to the first draw.
                let (a, b) = two_distinct(n, rng);
                Some(if candidates[b].in_flight < candidates[a].in_flight {
                    b
                } else {
                    a
                })
            }
            (1..=3, _) => candidates.iter().position(Candidate::has_room),
            (_, n) => {
                let start = self.next % n;
                let found = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|&i| candidates[i].has_room())?;
                self.next = found + 1;
                Some(found)
            }
        }
    }
}

impl LoadBalancer for Knative {
    fn pick(
        &mut self,
        _req: &dyn RequestInfo,
        candidates: &[Candidate],
        ctx: &LbContext<'_>,
        rng: &mut dyn Rng,
    ) -> Option<usize> {
        self.choose(candidates, ctx.container_concurrency, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn c(in_flight: u32, capacity: u32) -> Candidate {
        Candidate {
            id: 0,
            node: 0,
            in_flight,
            capacity,
        }
    }

    #[test]
    fn power_of_two_choices_prefers_the_less_loaded() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut b = Knative::new();
        for _ in 0..100 {
            assert_eq!(b.choose(&[c(5, 0), c(0, 0)], 0, &mut rng), Some(1));
        }
        let many = [c(1, 0), c(1, 0), c(9, 0), c(1, 0)];
        for _ in 0..200 {
            assert_ne!(b.choose(&many, 0, &mut rng), Some(2));
        }
    }

    #[test]
    fn small_concurrency_takes_the_first_free() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut b = Knative::new();
        assert_eq!(b.choose(&[c(1, 1), c(0, 1), c(0, 1)], 1, &mut rng), Some(1));
        assert_eq!(b.choose(&[c(1, 1), c(1, 1)], 1, &mut rng), None);
    }

    #[test]
    fn larger_concurrency_round_robins_over_free_instances() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut b = Knative::new();
        let cs = [c(0, 10), c(10, 10), c(0, 10)];
        let picks: Vec<_> = (0..4).map(|_| b.choose(&cs, 10, &mut rng)).collect();
        assert_eq!(picks, [Some(0), Some(2), Some(0), Some(2)]);
    }
}
