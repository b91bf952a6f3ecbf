//! `priority`: higher classes first, first come first served within a class (nonna's
//! priority queue). The class comes from the `kantai-priority` header (`high`, `normal`,
//! `low` or 0–9), else from the first matching path rule of `kantai.dev/priority-rules`,
//! else `normal`. A full queue pushes out its newest request of the lowest class when the
//! newcomer's class is higher; otherwise the newcomer is turned away.

use std::cmp::Reverse;
use std::time::Duration;

use super::{Admission, QueueDiscipline, Ranked};
use crate::params::{PRIORITY_HEADER, Params, parse_class, rule_class};
use crate::request::RequestInfo;

/// The class of requests that say nothing.
pub const NORMAL: u8 = 4;

/// The `priority` discipline.
#[derive(Clone, Debug, Default)]
pub struct Priority {
    rules: Vec<(String, u8)>,
    /// Higher classes rank lower (served first).
    queue: Ranked<Reverse<u8>>,
}

impl Priority {
    /// A discipline using the path rules of `params`.
    pub fn new(params: &Params) -> Priority {
        Priority {
            rules: params.priority_rules.clone(),
            ..Priority::default()
        }
    }

    /// The class of a request.
    pub fn class_of(&self, req: &dyn RequestInfo) -> u8 {
        if let Some(c) = req.header(PRIORITY_HEADER).and_then(parse_class) {
            return c;
        }
        rule_class(&self.rules, req.path()).unwrap_or(NORMAL)
    }
}

impl QueueDiscipline for Priority {
    fn push(&mut self, id: u64, req: &dyn RequestInfo, _now: Duration, limit: usize) -> Admission {
        let class = self.class_of(req);
        self.queue.push(id, Reverse(class), limit)
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
