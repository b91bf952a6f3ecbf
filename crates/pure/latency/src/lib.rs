//! Latency estimation from samples, for the latency monitor of every node agent and for the
//! policies that weigh nodes by how far and how busy they are.
//!
//! Pure: every call takes `now` (time since the driver's epoch); nothing reads a clock.
//!
//! - [`Ewma`]: a time-decayed moving average (a sample's weight halves every half-life,
//!   whatever the sampling rate), the estimator monlat lacked;
//! - [`PeakEwma`]: Finagle's and linkerd's peak-sensitive EWMA, which jumps up at once on a
//!   slow sample and decays down slowly;
//! - [`Recent`]: the last samples in a fixed ring, for percentiles;
//! - [`RttEstimator`]: both, with the time of the latest sample, as exported per node pair.

use std::time::Duration;

/// A moving average whose memory is a time constant rather than a sample count, so that a
/// burst of samples does not erase history faster than a trickle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ewma {
    half_life: Duration,
    value: Option<f64>,
    at: Duration,
}

impl Ewma {
    /// An empty average whose samples lose half their weight every `half_life`.
    pub fn new(half_life: Duration) -> Ewma {
        Ewma {
            half_life,
            value: None,
            at: Duration::ZERO,
        }
    }

    /// Adds a sample taken at `now`.
    pub fn record(&mut self, now: Duration, sample: f64) {
        if !sample.is_finite() {
            return;
        }
        self.value = Some(match self.value {
            None => sample,
            Some(v) => {
                let w = self.decay(now);
                v * w + sample * (1.0 - w)
            }
        });
        self.at = self.at.max(now);
    }

    /// The weight the current value keeps when a sample arrives at `now`.
    fn decay(&self, now: Duration) -> f64 {
        let dt = now.saturating_sub(self.at).as_secs_f64();
        let hl = self.half_life.as_secs_f64();
        if hl <= 0.0 {
            return 0.0;
        }
        // A sample at the same instant as the previous one still counts: treat it as if a
        // tenth of a half-life had passed, so that simultaneous samples average.
        let dt = dt.max(hl / 10.0);
        0.5f64.powf(dt / hl)
    }

    /// The average, or `None` before the first sample.
    pub fn value(&self) -> Option<f64> {
        self.value
    }

    /// When the latest sample was taken.
    pub fn updated(&self) -> Option<Duration> {
        self.value.map(|_| self.at)
    }
}

/// Peak-sensitive EWMA (Finagle's `PeakEwma`, as in linkerd2-proxy and tower): a sample above
/// the current value replaces it at once; below, the value decays towards it with time
/// constant `tau`. A balancer multiplies it by the requests in flight plus one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakEwma {
    tau: Duration,
    value: f64,
    at: Duration,
}

impl PeakEwma {
    /// Starts at `initial` (a guess before any sample, such as the network round trip).
    pub fn new(tau: Duration, initial: f64, now: Duration) -> PeakEwma {
        PeakEwma {
            tau,
            value: initial,
            at: now,
        }
    }

    /// Adds a sample taken at `now`.
    pub fn record(&mut self, now: Duration, sample: f64) {
        if !sample.is_finite() {
            return;
        }
        if sample > self.value {
            self.value = sample;
        } else {
            let dt = now.saturating_sub(self.at).as_secs_f64();
            let tau = self.tau.as_secs_f64().max(f64::MIN_POSITIVE);
            let w = (-dt / tau).exp();
            self.value = self.value * w + sample * (1.0 - w);
        }
        self.at = self.at.max(now);
    }

    /// The current estimate.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The estimate at `now` decayed towards `floor` since the latest sample, as tower's
    /// `PeakEwma` decays on every read: an instance that answered slowly once and was then
    /// avoided is tried again once its estimate has relaxed, instead of never.
    pub fn value_at(&self, now: Duration, floor: f64) -> f64 {
        if self.value <= floor {
            return self.value;
        }
        let dt = now.saturating_sub(self.at).as_secs_f64();
        let tau = self.tau.as_secs_f64().max(f64::MIN_POSITIVE);
        floor + (self.value - floor) * (-dt / tau).exp()
    }
}

/// The most recent samples (a ring of fixed size), for percentiles over recent history.
#[derive(Clone, Debug, PartialEq)]
pub struct Recent {
    ring: Vec<f64>,
    next: usize,
    len: usize,
}

impl Recent {
    /// Keeps the last `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Recent {
        Recent {
            ring: vec![0.0; capacity.max(1)],
            next: 0,
            len: 0,
        }
    }

    /// Adds a sample, dropping the oldest when full.
    pub fn record(&mut self, sample: f64) {
        if !sample.is_finite() {
            return;
        }
        self.ring[self.next] = sample;
        self.next = (self.next + 1) % self.ring.len();
        self.len = (self.len + 1).min(self.ring.len());
    }

    /// Samples kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) of the kept samples, nearest rank; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.len == 0 {
            return None;
        }
        let mut v: Vec<f64> = self.ring[..self.len].to_vec();
        v.sort_by(f64::total_cmp);
        let q = q.clamp(0.0, 1.0);
        let rank = (q * self.len as f64).ceil() as usize;
        Some(v[rank.saturating_sub(1).min(self.len - 1)])
    }
}

/// What a node agent knows about the round trip to one peer: a smoothed value, recent
/// percentiles, and how fresh it is.
#[derive(Clone, Debug, PartialEq)]
pub struct RttEstimator {
    ewma: Ewma,
    recent: Recent,
}

/// How many recent samples an [`RttEstimator`] keeps for percentiles.
pub const RECENT_SAMPLES: usize = 128;

/// The half-life of an [`RttEstimator`]'s average.
pub const RTT_HALF_LIFE: Duration = Duration::from_secs(5);

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator {
            ewma: Ewma::new(RTT_HALF_LIFE),
            recent: Recent::new(RECENT_SAMPLES),
        }
    }
}

impl RttEstimator {
    /// Adds a round trip of `ms` milliseconds measured at `now`.
    pub fn record(&mut self, now: Duration, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        self.ewma.record(now, ms);
        self.recent.record(ms);
    }

    /// The smoothed round trip in milliseconds.
    pub fn ewma_ms(&self) -> Option<f64> {
        self.ewma.value()
    }

    /// A recent percentile (0 ≤ q ≤ 1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        self.recent.quantile(q)
    }

    /// When the latest sample was taken.
    pub fn updated(&self) -> Option<Duration> {
        self.ewma.updated()
    }

    /// Whether the latest sample is older than `max_age` at `now` (or there is none).
    pub fn is_stale(&self, now: Duration, max_age: Duration) -> bool {
        self.updated()
            .is_none_or(|t| now.saturating_sub(t) > max_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn ewma_forgets_by_time_not_by_count() {
        let mut e = Ewma::new(s(1.0));
        e.record(s(0.0), 10.0);
        // One half-life later, a new value weighs half.
        e.record(s(1.0), 20.0);
        assert!((e.value().unwrap() - 15.0).abs() < 1e-9);
        // Ten half-lives later the old value is all but gone.
        e.record(s(11.0), 100.0);
        assert!(e.value().unwrap() > 99.9);
        assert_eq!(e.updated(), Some(s(11.0)));
    }

    #[test]
    fn ewma_ignores_garbage() {
        let mut e = Ewma::new(s(1.0));
        e.record(s(0.0), f64::NAN);
        assert_eq!(e.value(), None);
        e.record(s(0.0), 3.0);
        e.record(s(1.0), f64::INFINITY);
        assert_eq!(e.value(), Some(3.0));
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let mut p = PeakEwma::new(s(10.0), 1.0, s(0.0));
        p.record(s(0.1), 50.0);
        assert_eq!(p.value(), 50.0);
        p.record(s(10.1), 1.0);
        // One time constant later: 1/e of the way back.
        let expected = 50.0 * (-1.0f64).exp() + 1.0 * (1.0 - (-1.0f64).exp());
        assert!((p.value() - expected).abs() < 1e-9, "{}", p.value());
    }

    #[test]
    fn peak_ewma_relaxes_towards_a_floor_when_read_later() {
        let mut p = PeakEwma::new(s(10.0), 1.0, s(0.0));
        p.record(s(0.0), 500.0);
        assert_eq!(p.value_at(s(0.0), 2.0), 500.0);
        let later = p.value_at(s(10.0), 2.0);
        assert!(
            (later - (2.0 + 498.0 * (-1.0f64).exp())).abs() < 1e-9,
            "{later}"
        );
        assert!(p.value_at(s(100.0), 2.0) < 2.1);
        // Never below the floor, and a value under it stays as it is.
        let q = PeakEwma::new(s(10.0), 1.0, s(0.0));
        assert_eq!(q.value_at(s(50.0), 2.0), 1.0);
    }

    #[test]
    fn recent_percentiles_use_the_last_samples() {
        let mut r = Recent::new(4);
        assert_eq!(r.quantile(0.5), None);
        for v in [100.0, 1.0, 2.0, 3.0, 4.0] {
            r.record(v);
        }
        // 100 fell out of the ring.
        assert_eq!(r.len(), 4);
        assert_eq!(r.quantile(1.0), Some(4.0));
        assert_eq!(r.quantile(0.5), Some(2.0));
        assert_eq!(r.quantile(0.0), Some(1.0));
    }

    #[test]
    fn rtt_estimator_tracks_freshness() {
        let mut r = RttEstimator::default();
        assert!(r.is_stale(s(0.0), s(5.0)));
        r.record(s(1.0), 50.0);
        r.record(s(2.0), -1.0);
        assert_eq!(r.ewma_ms(), Some(50.0));
        assert!(!r.is_stale(s(5.0), s(5.0)));
        assert!(r.is_stale(s(6.5), s(5.0)));
        assert_eq!(r.quantile_ms(0.95), Some(50.0));
    }

    proptest! {
        #[test]
        fn ewma_stays_within_the_samples(samples in proptest::collection::vec((0u64..10_000, 0.0f64..1e6), 1..50)) {
            let mut e = Ewma::new(s(2.0));
            let mut t = 0;
            let (mut lo, mut hi) = (f64::MAX, f64::MIN);
            for (dt, v) in samples {
                t += dt;
                e.record(Duration::from_millis(t), v);
                lo = lo.min(v);
                hi = hi.max(v);
                let x = e.value().unwrap();
                prop_assert!(x >= lo - 1e-6 && x <= hi + 1e-6);
            }
        }
    }
}
