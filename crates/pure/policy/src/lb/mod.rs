//! Load balancing: which instance serves a request that entered node *i*, or whether the
//! request waits.
//!
//! The node agent calls a [`LoadBalancer`] for every request (and again for a held request
//! whenever capacity changes) with the revision's ready instances on every node. Candidates
//! come in a stable order (by instance name). A balancer that finds no instance with room
//! returns `None` and the request is held (the activator role) until one has.

mod consistent_hash;
mod faast;
mod knative;
mod least_latency;
mod local_first;
mod peak_ewma;
mod simple;

use std::time::Duration;

use rand::{Rng, RngExt};

pub use consistent_hash::ConsistentHash;
pub use faast::{Faast, faast_weights};
pub use knative::Knative;
pub use least_latency::LeastLatency;
pub use local_first::LocalFirst;
pub use peak_ewma::P2cPeakEwma;
pub use simple::{LeastRequest, Random, RoundRobin};

use crate::request::RequestInfo;

/// One ready instance a balancer may choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// A stable identity of the instance (for balancers that keep per-instance state).
    pub id: u64,
    /// The node it runs on (index into the fleet's nodes).
    pub node: usize,
    /// Requests this node has in flight to it.
    pub in_flight: u32,
    /// The most requests it takes at once; 0 = unlimited.
    pub capacity: u32,
}

impl Candidate {
    /// Whether another request fits.
    pub fn has_room(&self) -> bool {
        self.capacity == 0 || self.in_flight < self.capacity
    }
}

/// What a balancer knows besides the candidates. Slices are indexed by node.
#[derive(Clone, Copy, Debug)]
pub struct LbContext<'a> {
    /// The node the request entered.
    pub origin: usize,
    /// Measured round trip from the origin to each node, in ms (`None`: not measured).
    pub rtt_ms: &'a [Option<f64>],
    /// Average serving time of the revision's instances on each node, in ms.
    pub serving_ms: &'a [Option<f64>],
    /// The revision's containerConcurrency (0 = unlimited).
    pub container_concurrency: u32,
    /// Time since the driver's epoch.
    pub now: Duration,
}

impl LbContext<'_> {
    /// The round trip from the origin to `node` (0 for the origin itself).
    pub fn rtt(&self, node: usize) -> Option<f64> {
        if node == self.origin {
            return Some(0.0);
        }
        self.rtt_ms.get(node).copied().flatten()
    }
}

/// A load-balancing policy. One value per revision and node, so it may keep state (a
/// round-robin position, latency estimates, cached weights).
pub trait LoadBalancer: Send {
    /// The index of the candidate to send the request to, or `None` to hold it.
    fn pick(
        &mut self,
        req: &dyn RequestInfo,
        candidates: &[Candidate],
        ctx: &LbContext<'_>,
        rng: &mut dyn Rng,
    ) -> Option<usize>;

    /// Feedback: a request to instance `id` took `latency` (sent to answered), seen at `now`.
    fn observe(&mut self, id: u64, latency: Duration, now: Duration) {
        let _ = (id, latency, now);
    }
}

/// The indices of the candidates with room.
pub fn with_room(candidates: &[Candidate]) -> impl Iterator<Item = usize> + '_ {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.has_room())
        .map(|(i, _)| i)
}

/// Two distinct random indices out of `n` (n ≥ 2), in draw order.
pub fn two_distinct(n: usize, rng: &mut dyn Rng) -> (usize, usize) {
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}
