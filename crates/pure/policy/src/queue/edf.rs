//! `edf`: earliest deadline first. A request's deadline is its arrival plus the duration in
//! its `kantai-deadline` header (`150ms`, `2s`), or plus `kantai.dev/default-deadline`
//! (1 s unless set). A full queue pushes out the request with the latest deadline when the
//! newcomer's is earlier; otherwise the newcomer is turned away.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::{Admission, QueueDiscipline, Seq};
use crate::params::{DEADLINE_HEADER, Params, parse_duration};
use crate::request::RequestInfo;

/// The `edf` discipline.
#[derive(Clone, Debug, Default)]
pub struct Edf {
    default_deadline: Duration,
    order: BTreeMap<(Duration, u64), u64>,
    index: HashMap<u64, (Duration, u64)>,
    seq: Seq,
}

impl Edf {
    /// A discipline with the default deadline of `params`.
    pub fn new(params: &Params) -> Edf {
        Edf {
            default_deadline: params.default_deadline,
            ..Edf::default()
        }
    }
}

impl QueueDiscipline for Edf {
    fn push(&mut self, id: u64, req: &dyn RequestInfo, now: Duration, limit: usize) -> Admission {
        let within = req
            .header(DEADLINE_HEADER)
            .and_then(parse_duration)
            .unwrap_or(self.default_deadline);
        let deadline = now + within;
        let mut outcome = Admission::Queued;
        if self.order.len() >= limit {
            let Some((&(latest, seq), &victim)) = self.order.iter().next_back() else {
                return Admission::Rejected;
            };
            if latest <= deadline {
                return Admission::Rejected;
            }
            self.order.remove(&(latest, seq));
            self.index.remove(&victim);
            outcome = Admission::Evicted(victim);
        }
        let key = (deadline, self.seq.next());
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
}
