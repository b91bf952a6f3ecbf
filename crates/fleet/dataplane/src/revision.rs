//! The activator role for one revision at this node: the instances that can serve it, the
//! requests held while none has room, and the load accounting for the autoscaler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use kantai_policy::lb::{Candidate, KnativeBalancer};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::RevKey;
use crate::local::LocalInstance;
use crate::stats::LoadStats;

/// How a revision's requests are served.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionConfig {
    /// containerConcurrency (0 = unlimited).
    pub cc: u32,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// `responseStartTimeoutSeconds`, when below the timeout.
    pub response_start: Option<Duration>,
    /// `idleTimeoutSeconds`, when set.
    pub idle: Option<Duration>,
    /// Whether requests wait in the activator for a free slot (Knative's proxy mode) rather
    /// than queue at an instance.
    pub activator_in_path: bool,
}

impl Default for RevisionConfig {
    fn default() -> Self {
        RevisionConfig {
            cc: 0,
            timeout: Duration::from_secs(300),
            response_start: None,
            idle: None,
            activator_in_path: true,
        }
    }
}

/// Where a backend is.
pub enum Target {
    /// On this node.
    Local(Arc<LocalInstance>),
    /// On another node, reached through its data port.
    Remote {
        /// The node.
        node: String,
        /// Its data address.
        addr: SocketAddr,
    },
}

/// An instance that can serve the revision, as this node sees it.
pub struct Backend {
    /// Instance name.
    pub name: String,
    /// Where it is.
    pub target: Target,
    in_flight: Arc<AtomicU32>,
}

/// The activator state of one revision.
pub struct RevisionState {
    /// The revision.
    pub key: RevKey,
    config: ArcSwap<RevisionConfig>,
    backends: ArcSwap<Vec<Arc<Backend>>>,
    counters: Mutex<HashMap<String, Arc<AtomicU32>>>,
    balancer: Mutex<(KnativeBalancer, SmallRng)>,
    changed: Notify,
    held: AtomicU32,
    stats: Mutex<LoadStats>,
    last_poke: Mutex<Option<Instant>>,
    retired: AtomicBool,
}

/// A request's hold on a backend; releases it on drop.
pub struct Lease {
    /// The chosen backend.
    pub backend: Arc<Backend>,
    state: Arc<RevisionState>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::AcqRel);
        // A slot is free: the oldest held request may go.
        self.state.changed.notify_one();
    }
}

/// Counts a request in the revision's load from arrival to the end of its response.
pub struct Entry {
    state: Arc<RevisionState>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.state.stats.lock().exit(Instant::now());
    }
}

/// Why no backend was found.
#[derive(Debug, PartialEq, Eq)]
pub enum NoBackend {
    /// Too many requests are already held.
    HoldQueueFull,
    /// The deadline passed while waiting.
    TimedOut,
    /// The revision was removed while the request waited.
    Removed,
}

impl RevisionState {
    /// A revision without instances yet.
    pub fn new(key: RevKey, seed: u64) -> RevisionState {
        RevisionState {
            key,
            config: ArcSwap::from_pointee(RevisionConfig::default()),
            backends: ArcSwap::from_pointee(Vec::new()),
            counters: Mutex::new(HashMap::new()),
            balancer: Mutex::new((KnativeBalancer::new(), SmallRng::seed_from_u64(seed))),
            changed: Notify::new(),
            held: AtomicU32::new(0),
            stats: Mutex::new(LoadStats::new(Instant::now())),
            last_poke: Mutex::new(None),
            retired: AtomicBool::new(false),
        }
    }

    /// The revision's settings.
    pub fn config(&self) -> Arc<RevisionConfig> {
        self.config.load_full()
    }

    pub(crate) fn set_config(&self, c: RevisionConfig) {
        if *self.config.load_full() != c {
            self.config.store(Arc::new(c));
            self.changed.notify_waiters();
        }
    }

    /// Marks the revision gone from this node: held requests fail rather than wait.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Ready backends now.
    pub fn backend_count(&self) -> usize {
        self.backends.load().len()
    }

    /// Requests held now.
    pub fn held(&self) -> u32 {
        self.held.load(Ordering::Acquire)
    }

    /// Replaces the backends (keeping this node's in-flight counts of those that stay), and
    /// wakes every held request.
    pub(crate) fn set_backends(&self, list: Vec<(String, Target)>) {
        let mut counters = self.counters.lock();
        let mut next = Vec::with_capacity(list.len());
        let mut keep = HashMap::with_capacity(list.len());
        for (name, target) in list {
            let c = counters.get(&name).cloned().unwrap_or_default();
            keep.insert(name.clone(), c.clone());
            next.push(Arc::new(Backend {
                name,
                target,
                in_flight: c,
            }));
        }
        *counters = keep;
        drop(counters);
        self.backends.store(Arc::new(next));
        self.changed.notify_waiters();
    }

    /// Counts an arriving request.
    pub fn enter(self: &Arc<Self>) -> Entry {
        self.stats.lock().enter(Instant::now());
        Entry {
            state: self.clone(),
        }
    }

    /// Average concurrency and arrivals per second since the last call, and the held count.
    pub fn take_load(&self) -> (f64, f64, u32, u32) {
        let mut s = self.stats.lock();
        let (c, r) = s.take(Instant::now());
        (c, r, self.held(), s.current())
    }

    /// Whether a poke should go out now (at most one per revision every 100 ms).
    pub(crate) fn should_poke(&self) -> bool {
        let mut last = self.last_poke.lock();
        let now = Instant::now();
        if last.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_millis(100)) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn try_choose(self: &Arc<Self>) -> Option<Lease> {
        let backends = self.backends.load();
        if backends.is_empty() {
            return None;
        }
        let cfg = self.config.load();
        // With the activator out of the path, requests go straight to an instance and queue
        // there; the balancer then ignores capacity.
        let (cc, capacity) = if cfg.activator_in_path {
            (cfg.cc, cfg.cc)
        } else {
            (0, 0)
        };
        let candidates: Vec<Candidate> = backends
            .iter()
            .map(|b| Candidate {
                in_flight: b.in_flight.load(Ordering::Acquire),
                capacity,
            })
            .collect();
        let i = {
            let mut g = self.balancer.lock();
            let (lb, rng) = &mut *g;
            lb.choose(&candidates, cc, rng)?
        };
        let backend = backends[i].clone();
        backend.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Lease {
            backend,
            state: self.clone(),
        })
    }

    /// A backend with room, waiting (held) until one has room or `deadline` passes. `poke`
    /// is called when the request has to wait.
    pub async fn acquire(
        self: &Arc<Self>,
        deadline: Instant,
        hold_limit: u32,
        poke: impl Fn(),
    ) -> Result<Lease, NoBackend> {
        if let Some(l) = self.try_choose() {
            return Ok(l);
        }
        if self.held.fetch_add(1, Ordering::AcqRel) >= hold_limit {
            self.held.fetch_sub(1, Ordering::AcqRel);
            return Err(NoBackend::HoldQueueFull);
        }
        let _held = HeldGuard(&self.held);
        poke();
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before checking, so that a release between the check and the wait is
            // not missed.
            changed.as_mut().enable();
            if let Some(l) = self.try_choose() {
                return Ok(l);
            }
            if self.retired.load(Ordering::Acquire) {
                return Err(NoBackend::Removed);
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => return Err(NoBackend::TimedOut),
            }
        }
    }
}

struct HeldGuard<'a>(&'a AtomicU32);

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
