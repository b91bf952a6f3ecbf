//! The latency monitor: a round-trip estimator per peer, fed by forwarded requests and
//! probes, and the probing of a peer suspected down (its instances are left out meanwhile).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kantai_latency::RttEstimator;
use parking_lot::Mutex;

use crate::backends::Backends;
use crate::body::empty;
use crate::data_port::PING_PATH;
use crate::link::Link;
use crate::metrics::{LinkLabels, LinkQuantileLabels, Metrics};

/// How long a probe of a suspected peer may take (at least; three round trips of a slower
/// link) before the peer counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The latency monitor's estimate of the round trip to one peer.
#[derive(Clone, Debug, PartialEq)]
pub struct RttEstimate {
    /// The peer node.
    pub peer: String,
    /// Smoothed round trip (5 s half-life), ms.
    pub ewma_ms: f64,
    /// Median of the recent samples, ms.
    pub p50_ms: f64,
    /// 95th percentile of the recent samples, ms.
    pub p95_ms: f64,
}

/// Round trips to each peer and the peers being probed.
pub struct LatencyMonitor {
    link: Arc<Link>,
    backends: Arc<Backends>,
    estimators: Mutex<HashMap<String, RttEstimator>>,
    /// Peers being probed after a request to them timed out.
    suspects: Mutex<HashSet<String>>,
    epoch: tokio::time::Instant,
}

impl LatencyMonitor {
    /// Nothing measured yet; probes go over `link` to the peers `backends` knows.
    pub fn new(link: Arc<Link>, backends: Arc<Backends>) -> LatencyMonitor {
        LatencyMonitor {
            link,
            backends,
            estimators: Mutex::new(HashMap::new()),
            suspects: Mutex::new(HashSet::new()),
            epoch: tokio::time::Instant::now(),
        }
    }

    /// Records a round trip of `ms` milliseconds to `peer`.
    pub fn record(&self, peer: &str, ms: f64) {
        let now = self.epoch.elapsed();
        let mut l = self.estimators.lock();
        match l.get_mut(peer) {
            Some(e) => e.record(now, ms),
            None => {
                let mut e = RttEstimator::default();
                e.record(now, ms);
                l.insert(peer.to_owned(), e);
            }
        }
    }

    /// Whether the round trip to `peer` was not measured within `max_age`.
    pub fn is_stale(&self, peer: &str, max_age: Duration) -> bool {
        let now = self.epoch.elapsed();
        self.estimators
            .lock()
            .get(peer)
            .is_none_or(|e| e.is_stale(now, max_age))
    }

    /// Per peer: smoothed, median and 95th-percentile round trip in ms, by peer name.
    pub fn estimates(&self) -> Vec<RttEstimate> {
        let mut v: Vec<RttEstimate> = self
            .estimators
            .lock()
            .iter()
            .filter_map(|(peer, e)| {
                Some(RttEstimate {
                    peer: peer.clone(),
                    ewma_ms: e.ewma_ms()?,
                    p50_ms: e.quantile_ms(0.5)?,
                    p95_ms: e.quantile_ms(0.95)?,
                })
            })
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    /// The smoothed round trip to each measured peer, ms.
    pub fn smoothed(&self) -> HashMap<String, f64> {
        self.estimates()
            .into_iter()
            .map(|e| (e.peer, e.ewma_ms))
            .collect()
    }

    /// Sets the round-trip gauges to the current estimates.
    pub fn sample_metrics(&self, m: &Metrics) {
        let me = &self.link.node;
        m.rtt.clear();
        m.rtt_quantile.clear();
        for e in self.estimates() {
            m.rtt
                .get_or_create(&LinkLabels {
                    from: me.clone(),
                    to: e.peer.clone(),
                })
                .set(e.ewma_ms / 1e3);
            for (q, v) in [("50", e.p50_ms), ("95", e.p95_ms)] {
                m.rtt_quantile
                    .get_or_create(&LinkQuantileLabels {
                        from: me.clone(),
                        to: e.peer.clone(),
                        percentile: q.into(),
                    })
                    .set(v / 1e3);
            }
        }
    }

    /// A request forwarded to `peer` got no answer in time. Is the peer reachable? Its data
    /// port is probed; while it does not answer within [`PROBE_TIMEOUT`] (or three round trips
    /// of its link), its instances are left out of this node's choices and it is probed again
    /// every second, so that requests fail over to instances elsewhere instead of each paying
    /// its timeout. One probe loop per peer at a time.
    pub fn suspect(self: &Arc<Self>, peer: &str) {
        if !self.suspects.lock().insert(peer.to_owned()) {
            return;
        }
        let monitor = self.clone();
        let peer = peer.to_owned();
        tokio::spawn(async move {
            let backends = &monitor.backends;
            loop {
                if backends.peer(&peer).is_none() {
                    break;
                }
                if monitor.probe(&peer).await.is_some() {
                    backends.eject_node(&peer, None);
                    break;
                }
                tracing::warn!(
                    node = %monitor.link.node,
                    peer = %peer,
                    "node {peer} does not answer probes; its instances get no requests from here until it does"
                );
                backends.eject_node(&peer, Some(Duration::from_secs(3600)));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            monitor.suspects.lock().remove(&peer);
        });
    }

    /// Probes `peer`'s data port through the emulated link: the round trip in ms, or `None`
    /// when it does not answer within [`PROBE_TIMEOUT`] (or three round trips of its link).
    pub async fn probe(&self, peer: &str) -> Option<f64> {
        let addr = self.backends.peer(peer)?;
        let mut req = http::Request::get(format!("http://{addr}{PING_PATH}"))
            .body(empty())
            .ok()?;
        self.link.sign(req.headers_mut());
        let netem = &self.link.netem;
        let limit = PROBE_TIMEOUT.max(netem.link(peer).rtt * 3);
        let start = tokio::time::Instant::now();
        let exchange = async {
            netem.cross(peer, 0).await;
            let resp = self.link.client.request(req).await.ok()?;
            netem.cross(peer, 0).await;
            resp.status().is_success().then_some(())
        };
        tokio::time::timeout(limit, exchange).await.ok()??;
        Some(start.elapsed().as_secs_f64() * 1e3)
    }
}
