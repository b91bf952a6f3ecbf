//! `sjf`: shortest (expected) job first. The expected duration of a request is learned per
//! kind (method and path) from the durations of those served before, as a time-decayed
//! average; a kind never seen is expected to take as long as the time-decayed average of all
//! recent durations, so it is neither starved nor favoured. A full queue pushes out the request expected to take
//! longest when the newcomer is expected to be shorter; otherwise the newcomer is turned
//! away.

use std::collections::HashMap;
use std::time::Duration;

use kantai_latency::Ewma;

use super::{Admission, QueueDiscipline, Ranked};
use crate::request::{RequestInfo, RequestKey};

/// How long a learned duration is remembered (half-life).
pub const HALF_LIFE: Duration = Duration::from_secs(30);
/// Most kinds remembered; beyond, the least recently updated are forgotten.
pub const MAX_KINDS: usize = 4096;

/// The `sjf` discipline.
#[derive(Clone, Debug)]
pub struct Sjf {
    learned: HashMap<RequestKey, Ewma>,
    overall: Ewma,
    /// Ranked by expected nanoseconds.
    queue: Ranked<u64>,
}

impl Default for Sjf {
    fn default() -> Self {
        Sjf {
            learned: HashMap::new(),
            overall: Ewma::new(HALF_LIFE),
            queue: Ranked::default(),
        }
    }
}

impl Sjf {
    /// The expected duration of a request, in nanoseconds.
    pub fn expected(&self, req: &dyn RequestInfo) -> u64 {
        let v = self
            .learned
            .get(&RequestKey::of(req))
            .and_then(Ewma::value)
            .or(self.overall.value())
            .unwrap_or(0.0);
        v.max(0.0) as u64
    }
}

impl QueueDiscipline for Sjf {
    fn push(&mut self, id: u64, req: &dyn RequestInfo, _now: Duration, limit: usize) -> Admission {
        let expected = self.expected(req);
        self.queue.push(id, expected, limit)
    }

    fn peek(&self) -> Option<u64> {
        self.queue.peek()
    }

    fn remove(&mut self, id: u64) -> bool {
        self.queue.remove(id)
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    fn learn(&mut self, key: RequestKey, service: Duration, now: Duration) {
        let ns = service.as_nanos() as f64;
        self.overall.record(now, ns);
        if self.learned.len() >= MAX_KINDS && !self.learned.contains_key(&key) {
            // Forget the kind updated longest ago.
            if let Some(old) = self
                .learned
                .iter()
                .min_by_key(|(_, e)| e.updated())
                .map(|(k, _)| *k)
            {
                self.learned.remove(&old);
            }
        }
        self.learned
            .entry(key)
            .or_insert_with(|| Ewma::new(HALF_LIFE))
            .record(now, ns);
    }
}
