//! `sjf`: shortest (expected) job first. The expected duration of a request is learned per
//! kind (method and path) from the durations of those served before, as a time-decayed
//! average; a kind never seen is expected to take as long as the time-decayed average of all
//! recent durations, so it is neither starved nor favoured. A full queue pushes out the request expected to take
//! longest when the newcomer is expected to be shorter; otherwise the newcomer is turned
//! away.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kantai_latency::Ewma;

use super::{Admission, QueueDiscipline, Seq};
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
    /// (expected nanoseconds, arrival order) → id.
    order: BTreeMap<(u64, u64), u64>,
    index: HashMap<u64, (u64, u64)>,
    seq: Seq,
}

impl Default for Sjf {
    fn default() -> Self {
        Sjf {
            learned: HashMap::new(),
            overall: Ewma::new(HALF_LIFE),
            order: BTreeMap::new(),
            index: HashMap::new(),
            seq: Seq::default(),
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
        let mut outcome = Admission::Queued;
        if self.order.len() >= limit {
            let Some((&(longest, seq), &victim)) = self.order.iter().next_back() else {
                return Admission::Rejected;
            };
            if longest <= expected {
                return Admission::Rejected;
            }
            self.order.remove(&(longest, seq));
            self.index.remove(&victim);
            outcome = Admission::Evicted(victim);
        }
        let key = (expected, self.seq.next());
        self.order.insert(key, id);
        self.index.insert(id, key);
        outcome
    }

    fn peek(&self) -> Option<u64> {
        self.order.values().next().copied()
    }

    fn remove(&mut self, id: u64) -> bool {
        match self.index.remove(&id) {
            Some(k) => self.order.remove(&k).is_some(),
            None => false,
        }
    }

    fn len(&self) -> usize {
        self.order.len()
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
