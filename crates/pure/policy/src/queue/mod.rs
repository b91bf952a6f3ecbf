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

/// The next number in arrival order, for tie-breaking.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Seq(u64);

impl Seq {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}
