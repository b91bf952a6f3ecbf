//! Queue disciplines: the order in which waiting requests are served, and what happens when
//! the queue is full.
//!
//! Two queues use them: the requests a node's gateway holds while no instance of a revision
//! has room (the activator role) and the requests waiting for a slot of one instance (the
//! queue-proxy role). The driver gives each waiting request an id; the discipline orders the
//! ids and the driver serves [`QueueDiscipline::peek`] when capacity frees.

mod edf;
mod fifo;
mod priority;
mod sjf;

use std::time::Duration;

pub use edf::Edf;
pub use fifo::Fifo;
pub use priority::Priority;
pub use sjf::Sjf;

use crate::request::{RequestInfo, RequestKey};

/// The outcome of offering a request to a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It waits in the queue.
    Queued,
    /// The queue is full and it does not get in (the driver answers 503).
    Rejected,
    /// It waits, and the request with this id was pushed out to make room (503 for that one).
    Evicted(u64),
}

/// A queue discipline. One value per queue.
pub trait QueueDiscipline: Send {
    /// Offers request `id`, arriving at `now`, to a queue holding at most `limit` requests.
    fn push(&mut self, id: u64, req: &dyn RequestInfo, now: Duration, limit: usize) -> Admission;
    /// The request to serve next.
    fn peek(&self) -> Option<u64>;
    /// Takes a request out (served, timed out or cancelled); whether it was there.
    fn remove(&mut self, id: u64) -> bool;
    /// Requests waiting.
    fn len(&self) -> usize;
    /// Whether none waits.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Feedback: a request of kind `key` took `service` once it was served.
    fn learn(&mut self, key: RequestKey, service: Duration, now: Duration) {
        let _ = (key, service, now);
    }
}

/// Waiting requests ordered by a rank (then arrival): the lowest rank is served first, and a
/// full queue pushes out its highest-ranked (newest among equals) request for a newcomer
/// ranked strictly lower, else turns the newcomer away. `priority`, `edf` and `sjf` differ
/// only in how they rank.
#[derive(Clone, Debug)]
pub(crate) struct Ranked<R> {
    order: std::collections::BTreeMap<(R, u64), u64>,
    index: std::collections::HashMap<u64, (R, u64)>,
    /// Arrivals so far: ties in rank go in arrival order.
    seq: u64,
}

impl<R> Default for Ranked<R> {
    fn default() -> Self {
        Ranked {
            order: std::collections::BTreeMap::new(),
            index: std::collections::HashMap::new(),
            seq: 0,
        }
    }
}

impl<R: Ord + Copy> Ranked<R> {
    /// Queues `id` at `rank`, evicting to keep at most `limit` waiting.
    pub(crate) fn push(&mut self, id: u64, rank: R, limit: usize) -> Admission {
        let mut outcome = Admission::Queued;
        if self.order.len() >= limit {
            let Some((&(worst, seq), &victim)) = self.order.iter().next_back() else {
                return Admission::Rejected;
            };
            if worst <= rank {
                return Admission::Rejected;
            }
            self.order.remove(&(worst, seq));
            self.index.remove(&victim);
            outcome = Admission::Evicted(victim);
        }
        self.seq += 1;
        let key = (rank, self.seq);
        self.order.insert(key, id);
        self.index.insert(id, key);
        outcome
    }

    /// The request to serve next.
    pub(crate) fn peek(&self) -> Option<u64> {
        self.order.values().next().copied()
    }

    /// Takes a request out; whether it was there.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        match self.index.remove(&id) {
            Some(k) => self.order.remove(&k).is_some(),
            None => false,
        }
    }

    /// Requests waiting.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}
