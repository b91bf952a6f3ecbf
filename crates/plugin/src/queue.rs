//! A plug-in queue discipline behind [`QueueDiscipline`].
//!
//! The adapter keeps the ids waiting, in arrival order, beside the guest: it checks every
//! answer against them (a `peek` must name a waiting request, and may say none only when
//! none waits), and when the guest fails it hands them to the default discipline, so that
//! no waiting request is lost or stuck.

use std::collections::VecDeque;
use std::time::Duration;

use kantai_policy::queue::{Admission, QueueDiscipline};
use kantai_policy::registry::{self, Kind};
use kantai_policy::{Params, RequestInfo, RequestKey, SimpleRequest};
use parking_lot::Mutex;

use crate::bindings::queue::exports::kantai::policy::queue as wit;
use crate::bindings::{nanos, request_of};
use crate::fallback::Reason;
use crate::sandbox::{Bindings, Plugin, Value};

/// One queue in a plug-in.
struct Queue {
    /// Behind a lock because the trait asks for `peek` without `&mut`.
    value: Mutex<Value>,
    headers: Vec<String>,
    /// The ids waiting, in arrival order, with when each came.
    waiting: VecDeque<(u64, Duration)>,
    /// The default discipline, holding the waiting requests once the guest failed.
    fallback: Option<Box<dyn QueueDiscipline>>,
    params: Params,
}

fn guest(b: &Bindings) -> &wit::Guest {
    match b {
        Bindings::Queue(b) => b.kantai_policy_queue(),
        _ => unreachable!("a queue plug-in has queue bindings"),
    }
}

impl Plugin {
    /// A queue discipline of this plug-in (which must be one).
    pub(crate) fn queue(&self, params: &Params) -> Box<dyn QueueDiscipline> {
        let mut value = Value::new(&self.shared, params);
        let fuel = value.limits().fuel.per_request;
        let headers = value
            .call(fuel, 0, |b, s, h| guest(b).call_headers(s, h))
            .unwrap_or_default();
        let mut q = Queue {
            value: Mutex::new(value),
            headers,
            waiting: VecDeque::new(),
            fallback: None,
            params: params.clone(),
        };
        if !q.value.get_mut().is_live() {
            q.fail(None);
        }
        Box::new(q)
    }
}

impl Queue {
    /// Hands the waiting requests to the default discipline, in arrival order, and counts
    /// `reason` (when the guest answered out of range; a failed call is counted already).
    fn fail(&mut self, reason: Option<Reason>) {
        if let Some(r) = reason {
            self.value.get_mut().fell_back(&r);
        }
        let mut d = registry::queue(Kind::Queue.default_name(), &self.params)
            .unwrap_or_else(|| unreachable!("the default queue discipline is built in"));
        let nobody = SimpleRequest::default();
        let limit = self.waiting.len().max(1);
        for &(id, at) in &self.waiting {
            d.push(id, &nobody, at, limit);
        }
        self.fallback = Some(d);
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.waiting.iter().position(|(w, _)| *w == id)
    }
}

impl QueueDiscipline for Queue {
    fn push(&mut self, id: u64, req: &dyn RequestInfo, now: Duration, limit: usize) -> Admission {
        if self.fallback.is_none() {
            let request = request_of(req, &self.headers);
            let v = self.value.get_mut();
            let fuel = v.limits().fuel.per_request;
            let limit32 = u32::try_from(limit).unwrap_or(u32::MAX);
            let answer = v.call(fuel, 0, |b, s, h| {
                guest(b).call_push(s, h, id, &request, nanos(now), limit32)
            });
            match answer {
                Some(wit::Admission::Queued) if self.waiting.len() < limit => {
                    self.waiting.push_back((id, now));
                    return Admission::Queued;
                }
                Some(wit::Admission::Rejected) => return Admission::Rejected,
                Some(wit::Admission::Evicted(out)) => {
                    if let Some(at) = self.position(out) {
                        self.waiting.remove(at);
                        self.waiting.push_back((id, now));
                        return Admission::Evicted(out);
                    }
                    self.fail(Some(Reason::OutOfRange(format!(
                        "pushed out request {out}, which is not waiting"
                    ))));
                }
                Some(_) => self.fail(Some(Reason::OutOfRange(format!(
                    "queued a request beyond the limit of {limit}"
                )))),
                None => self.fail(None),
            }
        }
        let d = self
            .fallback
            .as_mut()
            .unwrap_or_else(|| unreachable!("failed over"));
        let a = d.push(id, req, now, limit);
        match a {
            Admission::Queued => self.waiting.push_back((id, now)),
            Admission::Evicted(out) => {
                if let Some(at) = self.position(out) {
                    self.waiting.remove(at);
                }
                self.waiting.push_back((id, now));
            }
            Admission::Rejected => {}
        }
        a
    }

    fn peek(&self) -> Option<u64> {
        if let Some(d) = &self.fallback {
            return d.peek();
        }
        let mut v = self.value.lock();
        let fuel = v.limits().fuel.per_request;
        let answer = v.call(fuel, 0, |b, s, h| guest(b).call_peek(s, h));
        match answer {
            Some(Some(id)) if self.position(id).is_some() => return Some(id),
            Some(None) if self.waiting.is_empty() => return None,
            Some(Some(id)) => v.kill(&Reason::OutOfRange(format!(
                "named request {id} next, which is not waiting"
            ))),
            Some(None) => v.kill(&Reason::OutOfRange(format!(
                "named no request next while {} wait",
                self.waiting.len()
            ))),
            None => {}
        }
        // Served in arrival order until the next call that may change the queue hands
        // the waiting requests to the default discipline.
        self.waiting.front().map(|(id, _)| *id)
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some(at) = self.position(id) else {
            return false;
        };
        self.waiting.remove(at);
        if let Some(d) = &mut self.fallback {
            d.remove(id);
            return true;
        }
        let v = self.value.get_mut();
        let fuel = v.limits().fuel.per_request;
        match v.call(fuel, 0, |b, s, h| guest(b).call_remove(s, h, id)) {
            Some(true) => {}
            Some(false) => self.fail(Some(Reason::OutOfRange(format!(
                "did not hold request {id}, which was waiting"
            )))),
            None => self.fail(None),
        }
        true
    }

    fn len(&self) -> usize {
        self.waiting.len()
    }

    fn learn(&mut self, key: RequestKey, service: Duration, now: Duration) {
        match &mut self.fallback {
            Some(d) => d.learn(key, service, now),
            None => {
                let v = self.value.get_mut();
                let fuel = v.limits().fuel.per_request;
                if v.call(fuel, 0, |b, s, h| {
                    guest(b).call_learn(s, h, key.0, nanos(service), nanos(now))
                })
                .is_none()
                {
                    self.fail(None);
                }
            }
        }
    }
}
