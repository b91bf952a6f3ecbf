//! `edf`: earliest deadline first. A request's deadline is its arrival plus the duration in
//! its `kantai-deadline` header (`150ms`, `2s`), or plus `kantai.dev/default-deadline`
//! (1 s unless set). A full queue pushes out the request with the latest deadline when the
//! newcomer's is earlier; otherwise the newcomer is turned away.

use std::time::Duration;

use super::{Admission, QueueDiscipline, Ranked};
use crate::params::{DEADLINE_HEADER, Params, parse_duration};
use crate::request::RequestInfo;

/// The `edf` discipline.
#[derive(Clone, Debug, Default)]
pub struct Edf {
    default_deadline: Duration,
    /// Ranked by deadline.
    queue: Ranked<Duration>,
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
        self.queue.push(id, now + within, limit)
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
}
