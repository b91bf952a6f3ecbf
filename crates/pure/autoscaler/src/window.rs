//! Time windows over 1-second buckets, with Knative's exact semantics
//! (`pkg/autoscaler/aggregation/bucketing.go` and `aggregation/max`).
//!
//! Times are seconds since the driver's epoch; a value belongs to the bucket of the whole
//! second it falls in.

use kantai_model::autoscaling::Aggregation;

/// Knative floors averages to 6 decimal digits so that tiny float noise cannot add an
/// instance through a ceiling division.
fn round6(f: f64) -> f64 {
    (f * 1e6).floor() / 1e6
}

/// The minimum decay of the weighted-exponential average.
const MIN_EXPONENT: f64 = 0.2;
/// The weights of a weighted-exponential window sum to at least this.
const WEIGHT_PRECISION: f64 = 0.9999;

/// A ring of per-second sums over a window, averaged linearly over the valid part of the
/// window (partial windows after the first write or after data stops) or with exponentially
/// decaying weights.
#[derive(Clone, Debug)]
pub struct Buckets {
    buckets: Vec<f64>,
    /// Second of the first write of the current run of data; `None` before any write.
    first_write: Option<u64>,
    /// Second of the latest write.
    last_write: u64,
    /// Sum of all buckets.
    total: f64,
    aggregation: Aggregation,
    smoothing: f64,
}

impl Buckets {
    /// A window of `window_secs` one-second buckets (at least one).
    pub fn new(window_secs: u64, aggregation: Aggregation) -> Buckets {
        let n = window_secs.max(1) as usize;
        Buckets {
            buckets: vec![0.0; n],
            first_write: None,
            last_write: 0,
            total: 0.0,
            aggregation,
            smoothing: smoothing_for(n),
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn slot(&self, sec: u64) -> usize {
        (sec % self.len()) as usize
    }

    /// Whether nothing was written within the last window before `now`.
    pub fn is_empty(&self, now: u64) -> bool {
        self.first_write.is_none() || now.saturating_sub(self.last_write) > self.len()
    }

    /// Adds `value` to the bucket of second `now`. Values older than a window behind the
    /// latest write are ignored; gaps since the latest write are zeroed; a gap of a whole
    /// window starts a new partial window.
    pub fn record(&mut self, now: u64, value: f64) {
        let window = self.len();
        match self.first_write {
            None => {
                self.first_write = Some(now);
                self.last_write = now;
            }
            Some(first) if now != self.last_write => {
                if now + window <= self.last_write {
                    // Older than the window: it can no longer influence any average.
                    return;
                }
                if now < first {
                    self.first_write = Some(now);
                }
                if now > self.last_write {
                    if now - self.last_write >= window {
                        self.buckets.iter_mut().for_each(|b| *b = 0.0);
                        self.total = 0.0;
                        self.first_write = Some(now);
                    } else {
                        for sec in self.last_write + 1..=now {
                            let i = self.slot(sec);
                            self.total -= self.buckets[i];
                            self.buckets[i] = 0.0;
                        }
                    }
                    self.last_write = now;
                }
            }
            Some(_) => {}
        }
        let i = self.slot(now);
        self.buckets[i] += value;
        self.total += value;
    }

    /// The window's average as of second `now`.
    pub fn average(&self, now: u64) -> f64 {
        match self.aggregation {
            Aggregation::Linear => self.linear_average(now),
            Aggregation::WeightedExponential => self.weighted_average(now),
        }
    }

    fn linear_average(&self, now: u64) -> f64 {
        let Some(first) = self.first_write else {
            return 0.0;
        };
        let window = self.len();
        let span = self.last_write.saturating_sub(first) + 1;
        if now <= self.last_write {
            return round6(self.total / span.min(window) as f64);
        }
        let gap = now - self.last_write;
        if gap >= window {
            return 0.0;
        }
        // Data stopped `gap` seconds ago: those seconds are not part of the average, and the
        // buckets they overwrite in the ring hold data older than the window.
        let mut total = self.total;
        for sec in self.last_write + 1..=now {
            total -= self.buckets[self.slot(sec)];
        }
        round6(total / span.min(window - gap) as f64)
    }

    fn weighted_average(&self, now: u64) -> f64 {
        if self.is_empty(now) {
            return 0.0;
        }
        let n = self.len();
        let mut valid = n;
        let mut multiplier = self.smoothing;
        if now > self.last_write {
            let zeros = now - self.last_write;
            multiplier *= (1.0 - self.smoothing).powf(zeros as f64);
            valid = valid.saturating_sub(zeros);
        }
        let mut ret = 0.0;
        for i in 0..valid {
            // Walk back from the latest write.
            let sec = self.last_write + n - i;
            ret += self.buckets[self.slot(sec)] * multiplier;
            multiplier *= 1.0 - self.smoothing;
        }
        ret
    }

    /// Changes the window length, keeping the most recent data (Knative's `ResizeWindow`).
    pub fn resize(&mut self, window_secs: u64, now: u64) {
        let n = window_secs.max(1) as usize;
        if n == self.buckets.len() {
            return;
        }
        let mut fresh = Buckets::new(window_secs, self.aggregation);
        if let Some(_first) = self.first_write
            && now.saturating_sub(self.last_write) <= self.len()
        {
            let old = self.len();
            let keep = (n as u64).min(old);
            for back in 0..keep {
                let Some(sec) = self.last_write.checked_sub(back) else {
                    break;
                };
                let v = self.buckets[self.slot(sec)];
                let i = fresh.slot(sec);
                fresh.buckets[i] = v;
                fresh.total += v;
            }
            fresh.last_write = self.last_write;
            fresh.first_write = Some(self.last_write.saturating_sub(old - 1));
        }
        *self = fresh;
    }
}

fn smoothing_for(buckets: usize) -> f64 {
    (1.0 - (1.0 - WEIGHT_PRECISION).powf(1.0 / buckets as f64)).max(MIN_EXPONENT)
}

/// The maximum of the values recorded over the last `len` slots of a monotonically
/// increasing index (the "descending minima" sliding window used for scale-down delay).
#[derive(Clone, Debug)]
pub struct MaxWindow {
    /// (index, value), values strictly descending from front to back.
    maxima: std::collections::VecDeque<(u64, f64)>,
    len: u64,
}

impl MaxWindow {
    /// A window of `len` slots (at least one).
    pub fn new(len: u64) -> MaxWindow {
        MaxWindow {
            maxima: std::collections::VecDeque::with_capacity(len as usize + 1),
            len: len.max(1),
        }
    }

    /// Records `value` at slot `index`; indexes never decrease.
    pub fn record(&mut self, index: u64, value: f64) {
        let mut value = value;
        // A smaller, older value can never be the maximum again.
        while self.maxima.back().is_some_and(|&(_, v)| v <= value) {
            self.maxima.pop_back();
        }
        while self
            .maxima
            .front()
            .is_some_and(|&(i, _)| index.saturating_sub(i) >= self.len)
        {
            self.maxima.pop_front();
        }
        if let Some(&(i, v)) = self.maxima.back()
            && i == index
        {
            value = value.max(v);
            self.maxima.pop_back();
        }
        self.maxima.push_back((index, value));
    }

    /// The maximum over the window (0 before any record).
    pub fn current(&self) -> f64 {
        self.maxima.front().map_or(0.0, |&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(window: u64) -> Buckets {
        Buckets::new(window, Aggregation::Linear)
    }

    #[test]
    fn first_write_averages_over_the_partial_window() {
        let mut b = linear(60);
        b.record(100, 10.0);
        assert_eq!(b.average(100), 10.0);
        b.record(101, 20.0);
        assert_eq!(b.average(101), 15.0);
    }

    #[test]
    fn gaps_between_writes_count_as_zero() {
        let mut b = linear(10);
        b.record(0, 10.0);
        b.record(4, 10.0);
        // Seconds 0..=4 are valid: 20 / 5.
        assert_eq!(b.average(4), 4.0);
    }

    #[test]
    fn trailing_silence_is_excluded_then_expires() {
        let mut b = linear(10);
        for s in 0..10 {
            b.record(s, 10.0);
        }
        assert_eq!(b.average(9), 10.0);
        // Data stopped at 9; at 12 the three silent seconds are not counted.
        assert_eq!(b.average(12), 10.0);
        // A whole window of silence reads as 0.
        assert_eq!(b.average(19), 0.0);
        assert!(b.is_empty(20));
        assert!(!b.is_empty(19));
    }

    #[test]
    fn the_window_slides() {
        let mut b = linear(5);
        for s in 0..5 {
            b.record(s, 10.0);
        }
        for s in 5..10 {
            b.record(s, 0.0);
        }
        assert_eq!(b.average(9), 0.0);
        b.record(10, 5.0);
        assert_eq!(b.average(10), 1.0);
    }

    #[test]
    fn a_long_silence_starts_a_new_partial_window() {
        let mut b = linear(5);
        b.record(0, 100.0);
        b.record(50, 3.0);
        assert_eq!(b.average(50), 3.0);
    }

    #[test]
    fn values_in_one_second_add_up() {
        let mut b = linear(5);
        b.record(3, 2.0);
        b.record(3, 5.0);
        assert_eq!(b.average(3), 7.0);
    }

    #[test]
    fn weighted_exponential_prefers_recent_data() {
        let mut up = Buckets::new(6, Aggregation::WeightedExponential);
        let mut down = Buckets::new(6, Aggregation::WeightedExponential);
        for (s, v) in [(0, 5.0), (1, 5.0), (2, 10.0), (3, 10.0)] {
            up.record(s, v);
        }
        for (s, v) in [(0, 10.0), (1, 10.0), (2, 5.0), (3, 5.0)] {
            down.record(s, v);
        }
        assert!(up.average(3) > down.average(3));
        // m = max(0.2, 1 - 0.0001^(1/6)) ≈ 0.7846 for a 6-bucket window.
        let m = smoothing_for(6);
        assert!((m - 0.7846).abs() < 1e-3, "{m}");
        assert!((smoothing_for(60) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn resize_keeps_recent_data() {
        let mut b = linear(10);
        for s in 0..10 {
            b.record(s, s as f64);
        }
        b.resize(4, 9);
        // Keeps seconds 6..=9.
        assert_eq!(b.average(9), (6.0 + 7.0 + 8.0 + 9.0) / 4.0);
    }

    #[test]
    fn max_window_holds_the_maximum_for_its_length() {
        let mut w = MaxWindow::new(3);
        w.record(0, 5.0);
        w.record(1, 2.0);
        assert_eq!(w.current(), 5.0);
        w.record(2, 1.0);
        assert_eq!(w.current(), 5.0);
        w.record(3, 1.0);
        assert_eq!(w.current(), 2.0);
        w.record(4, 7.0);
        assert_eq!(w.current(), 7.0);
        w.record(4, 3.0);
        assert_eq!(w.current(), 7.0);
    }
}
