//! An instance on this node as the queue-proxy role keeps it: containerConcurrency enforced
//! with a queue of 10 × containerConcurrency (served in the revision's queue-discipline
//! order), then 503; and the serving time the autoscaler and the balancers learn from.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use kantai_policy::{Admission, Params, QueueDiscipline, RequestInfo, RequestKey, registry};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::revision::RevKey;
use crate::upstream::Upstream;

/// Knative's queue depth per concurrency slot, shared with the simulator.
pub use kantai_driver::QUEUE_DEPTH_FACTOR;

/// An instance running on this node.
pub struct LocalInstance {
    /// Instance name.
    pub name: String,
    /// Its revision.
    pub revision: RevKey,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// containerConcurrency (0 = unlimited).
    pub cc: u32,
    /// Whether it speaks HTTP/2 cleartext (its revision's port is named `h2c`).
    pub h2c: bool,
    /// The connections to it.
    pub(crate) upstream: Upstream,
    /// Free slots and the requests waiting for one (only with a containerConcurrency).
    slots: Option<Mutex<Slots>>,
    in_flight: AtomicU32,
    ready: AtomicBool,
    draining: AtomicBool,
    idle: Notify,
    served: AtomicU64,
    serving_us: AtomicU64,
    epoch: Instant,
}

struct Slots {
    free: u32,
    queue: Box<dyn QueueDiscipline>,
    waiters: HashMap<u64, oneshot::Sender<Result<(), Refused>>>,
    next_id: u64,
}

/// Holds a concurrency slot and the in-flight count until the response ends.
pub struct Slot {
    instance: Arc<LocalInstance>,
    /// Whether it holds one of the containerConcurrency slots.
    has_slot: bool,
    /// Whether the request went on to the instance (and counts as served).
    served: bool,
    key: RequestKey,
    since: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let inst = &self.instance;
        let took = self.since.elapsed();
        if self.served {
            inst.served.fetch_add(1, Ordering::Relaxed);
            inst.serving_us
                .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        }
        if self.has_slot
            && let Some(slots) = &inst.slots
        {
            let now = inst.epoch.elapsed();
            let mut s = slots.lock();
            if self.served {
                s.queue.learn(self.key, took, now);
            }
            s.free += 1;
            // Hand the slot to the next waiting request that is still there.
            while s.free > 0 {
                let Some(id) = s.queue.peek() else { break };
                s.queue.remove(id);
                if let Some(tx) = s.waiters.remove(&id)
                    && tx.send(Ok(())).is_ok()
                {
                    s.free -= 1;
                }
            }
        }
        if inst.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            inst.idle.notify_waiters();
        }
    }
}

/// Why a request cannot enter an instance.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// 10 × containerConcurrency requests already wait (or the queue discipline pushed this
    /// one out for a more urgent one).
    QueueFull,
}

/// A request's way into an instance.
pub enum Entering {
    /// A slot, at once.
    Now(Slot),
    /// A place in the instance's queue.
    Queued(Queued),
}

/// A request waiting for a slot of an instance; dropping it gives its place up.
pub struct Queued {
    slot: Option<Slot>,
    id: u64,
    rx: oneshot::Receiver<Result<(), Refused>>,
}

impl Queued {
    /// Waits for the slot.
    pub async fn wait(mut self) -> Result<Slot, Refused> {
        match (&mut self.rx).await {
            Ok(Ok(())) => {
                let mut slot = self.slot.take().ok_or(Refused::QueueFull)?;
                slot.has_slot = true;
                slot.served = true;
                Ok(slot)
            }
            _ => Err(Refused::QueueFull),
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        if let Some(slots) = &slot.instance.slots {
            let mut s = slots.lock();
            if s.waiters.remove(&self.id).is_some() {
                s.queue.remove(self.id);
            } else if let Ok(Ok(())) = self.rx.try_recv() {
                // The slot was handed over just as it gave up: pass it on.
                slot.has_slot = true;
            }
        }
        // Not served; dropping returns the in-flight count (and a handed-over slot).
        drop(slot);
    }
}

impl LocalInstance {
    /// The instance, speaking HTTP/2 cleartext or not.
    pub fn speaking_h2c(mut self, h2c: bool) -> LocalInstance {
        self.h2c = h2c;
        self
    }

    /// A new, not yet ready instance whose queue follows the discipline named `queue`.
    pub fn new(
        name: String,
        revision: RevKey,
        port: u16,
        cc: u32,
        queue: &str,
        params: &Params,
    ) -> LocalInstance {
        LocalInstance {
            name,
            revision,
            port,
            cc,
            h2c: false,
            upstream: Upstream::new(port),
            slots: (cc > 0).then(|| {
                Mutex::new(Slots {
                    free: cc,
                    queue: registry::queue(queue, params)
                        .unwrap_or_else(|| Box::new(kantai_policy::queue::Fifo::default())),
                    waiters: HashMap::new(),
                    next_id: 0,
                })
            }),
            in_flight: AtomicU32::new(0),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
            served: AtomicU64::new(0),
            serving_us: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether it takes new requests.
    pub fn serving(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Whether it takes requests that another node's gateway forwarded: a draining instance
    /// still does, since those gateways may not have heard of the drain yet.
    pub fn takes_forwarded(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub(crate) fn start_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Requests in the instance or waiting for a slot.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.slots.as_ref().map_or(0, |s| s.lock().queue.len())
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Requests served since the last call and their total serving time (queueing here
    /// included).
    pub fn take_serving(&self) -> (u64, Duration) {
        let n = self.served.swap(0, Ordering::Relaxed);
        let us = self.serving_us.swap(0, Ordering::Relaxed);
        (n, Duration::from_micros(us))
    }

    /// A slot now, or a place in the queue (at most 10 × cc wait). Synchronous, so that the
    /// request is only borrowed for the decision.
    pub fn enter(self: &Arc<Self>, req: &dyn RequestInfo) -> Result<Entering, Refused> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // From here the in-flight count is held by the slot, so a drain also waits for
        // queued requests.
        let mut slot = Slot {
            instance: self.clone(),
            has_slot: false,
            served: false,
            key: RequestKey::of(req),
            since: Instant::now(),
        };
        let Some(slots) = &self.slots else {
            slot.served = true;
            return Ok(Entering::Now(slot));
        };
        let mut s = slots.lock();
        if s.free > 0 && s.queue.is_empty() {
            s.free -= 1;
            drop(s);
            slot.has_slot = true;
            slot.served = true;
            return Ok(Entering::Now(slot));
        }
        let id = s.next_id;
        s.next_id += 1;
        let now = self.epoch.elapsed();
        let limit = (self.cc * QUEUE_DEPTH_FACTOR) as usize;
        match s.queue.push(id, req, now, limit) {
            Admission::Rejected => {
                drop(s);
                drop(slot);
                return Err(Refused::QueueFull);
            }
            Admission::Evicted(victim) => {
                if let Some(tx) = s.waiters.remove(&victim) {
                    let _ = tx.send(Err(Refused::QueueFull));
                }
            }
            Admission::Queued => {}
        }
        let (tx, rx) = oneshot::channel();
        s.waiters.insert(id, tx);
        Ok(Entering::Queued(Queued {
            slot: Some(slot),
            id,
            rx,
        }))
    }

    /// Resolves when no request is in the instance or waiting for it.
    pub async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            idle.await;
        }
    }
}
