//! Knative's activator load balancing (`pkg/activator/net/lb_policy.go`): the instance a
//! held or arriving request goes to.
//!
//! - containerConcurrency 0 (unlimited): power of two random choices by in-flight requests;
//! - 1–3: the first instance, in address order, with a free slot;
//! - more: round robin from after the last choice, skipping full instances.

use rand::{Rng, RngExt};

/// One instance the balancer may choose, as the choosing agent sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Requests this agent has in flight to the instance.
    pub in_flight: u32,
    /// The most requests the instance takes at once (its containerConcurrency); 0 = unlimited.
    pub capacity: u32,
}

impl Candidate {
    /// Whether another request fits.
    pub fn has_room(&self) -> bool {
        self.capacity == 0 || self.in_flight < self.capacity
    }
}

/// The per-revision balancer state (the round-robin position).
#[derive(Clone, Debug, Default)]
pub struct KnativeBalancer {
    next: usize,
}

impl KnativeBalancer {
    /// A fresh balancer.
    pub fn new() -> KnativeBalancer {
        KnativeBalancer::default()
    }

    /// Picks an index into `candidates` (given in a stable order, such as by address), or
    /// `None` when every instance is full (the request must wait).
    pub fn choose<R: Rng + ?Sized>(
        &mut self,
        candidates: &[Candidate],
        container_concurrency: u32,
        rng: &mut R,
    ) -> Option<usize> {
        match (container_concurrency, candidates.len()) {
            (_, 0) => None,
            (0, 1) => Some(0),
            (0, n) => {
                // Two distinct random instances; the one with fewer in-flight requests wins,
                // ties broken by the first draw (itself random).
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn c(in_flight: u32, capacity: u32) -> Candidate {
        Candidate {
            in_flight,
            capacity,
        }
    }

    #[test]
    fn power_of_two_choices_prefers_the_less_loaded() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut b = KnativeBalancer::new();
        // With two instances both are always drawn: the idle one wins every time.
        for _ in 0..100 {
            assert_eq!(b.choose(&[c(5, 0), c(0, 0)], 0, &mut rng), Some(1));
        }
        // With many, the busiest is never chosen (it loses every pairing).
        let many = [c(1, 0), c(1, 0), c(9, 0), c(1, 0)];
        for _ in 0..200 {
            assert_ne!(b.choose(&many, 0, &mut rng), Some(2));
        }
    }

    #[test]
    fn small_concurrency_takes_the_first_free() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut b = KnativeBalancer::new();
        assert_eq!(b.choose(&[c(1, 1), c(0, 1), c(0, 1)], 1, &mut rng), Some(1));
        assert_eq!(b.choose(&[c(1, 1), c(1, 1)], 1, &mut rng), None);
    }

    #[test]
    fn larger_concurrency_round_robins_over_free_instances() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut b = KnativeBalancer::new();
        let cs = [c(0, 10), c(10, 10), c(0, 10)];
        let picks: Vec<_> = (0..4).map(|_| b.choose(&cs, 10, &mut rng)).collect();
        assert_eq!(picks, [Some(0), Some(2), Some(0), Some(2)]);
    }
}
