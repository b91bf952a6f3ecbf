//! `fifo`: first come, first served; a newcomer to a full queue is turned away (Knative's
//! queue-proxy and activator breakers).

use std::collections::VecDeque;
use std::time::Duration;

use super::{Admission, QueueDiscipline};
use crate::request::RequestInfo;

/// The `fifo` discipline.
#[derive(Clone, Debug, Default)]
pub struct Fifo {
    q: VecDeque<u64>,
}

impl QueueDiscipline for Fifo {
    fn push(&mut self, id: u64, _req: &dyn RequestInfo, _now: Duration, limit: usize) -> Admission {
        if self.q.len() >= limit {
            return Admission::Rejected;
        }
        self.q.push_back(id);
        Admission::Queued
    }

    fn peek(&self) -> Option<u64> {
        self.q.front().copied()
    }

    fn remove(&mut self, id: u64) -> bool {
        // The served request is almost always the head.
        if self.q.front() == Some(&id) {
            self.q.pop_front();
            return true;
        }
        match self.q.iter().position(|x| *x == id) {
            Some(i) => {
                self.q.remove(i);
                true
            }
            None => false,
        }
    }

    fn len(&self) -> usize {
        self.q.len()
    }
}
