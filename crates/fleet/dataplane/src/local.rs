//! The queue-proxy role for an instance on this node: containerConcurrency enforced with a
//! queue of 10 × containerConcurrency, then 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::RevKey;

/// Knative's queue depth: 10 requests waiting per concurrency slot.
pub const QUEUE_DEPTH_FACTOR: u32 = 10;

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
    slots: Option<Arc<Semaphore>>,
    waiting: AtomicU32,
    in_flight: AtomicU32,
    ready: AtomicBool,
    draining: AtomicBool,
    idle: Notify,
}

/// Holds a concurrency slot and the in-flight count until the response ends.
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    instance: Arc<LocalInstance>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.instance.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.instance.idle.notify_waiters();
        }
    }
}

struct WaitingGuard<'a>(&'a AtomicU32);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a request cannot enter an instance.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// 10 × containerConcurrency requests already wait.
    QueueFull,
}

impl LocalInstance {
    /// A new, not yet ready instance.
    pub fn new(name: String, revision: RevKey, port: u16, cc: u32) -> LocalInstance {
        LocalInstance {
            name,
            revision,
            port,
            cc,
            slots: (cc > 0).then(|| Arc::new(Semaphore::new(cc as usize))),
            waiting: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
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

    /// Waits for a concurrency slot (queueing behind at most 10 × cc others). A request that
    /// is cancelled while it waits gives its place up.
    pub async fn enter(self: &Arc<Self>) -> Result<Slot, Refused> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // From here the in-flight count is held by the slot, so a drain also waits for
        // queued requests.
        let mut slot = Slot {
            _permit: None,
            instance: self.clone(),
        };
        let Some(sem) = &self.slots else {
            return Ok(slot);
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            slot._permit = Some(p);
            return Ok(slot);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.cc * QUEUE_DEPTH_FACTOR {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::QueueFull);
        }
        let _waiting = WaitingGuard(&self.waiting);
        slot._permit = sem.clone().acquire_owned().await.ok();
        Ok(slot)
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
