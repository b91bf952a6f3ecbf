//! Load accounting for the autoscaler: the time-weighted average of in-flight requests and
//! the arrivals of each revision at this node, taken once a second.

use tokio::time::Instant;

/// In-flight requests integrated over time since the last report.
#[derive(Debug)]
pub struct LoadStats {
    current: u32,
    last: Instant,
    period_start: Instant,
    integral: f64,
    arrivals: u64,
}

impl LoadStats {
    /// Empty stats starting at `now`.
    pub fn new(now: Instant) -> LoadStats {
        LoadStats {
            current: 0,
            last: now,
            period_start: now,
            integral: 0.0,
            arrivals: 0,
        }
    }

    fn integrate(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.integral += f64::from(self.current) * dt;
        self.last = now;
    }

    /// A request arrived.
    pub fn enter(&mut self, now: Instant) {
        self.integrate(now);
        self.current += 1;
        self.arrivals += 1;
    }

    /// A request finished.
    pub fn exit(&mut self, now: Instant) {
        self.integrate(now);
        self.current = self.current.saturating_sub(1);
    }

    /// Requests in flight now.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// Average concurrency and arrivals per second since the last call; starts a new period.
    pub fn take(&mut self, now: Instant) -> (f64, f64) {
        self.integrate(now);
        let elapsed = now
            .saturating_duration_since(self.period_start)
            .as_secs_f64();
        let r = if elapsed > 0.0 {
            (self.integral / elapsed, self.arrivals as f64 / elapsed)
        } else {
            (f64::from(self.current), 0.0)
        };
        self.integral = 0.0;
        self.arrivals = 0;
        self.period_start = now;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn time_weighted_average() {
        let t0 = Instant::now();
        let mut s = LoadStats::new(t0);
        s.enter(t0);
        s.enter(t0 + Duration::from_millis(500));
        s.exit(t0 + Duration::from_millis(750));
        // 1 for 0.5 s, 2 for 0.25 s, 1 for 0.25 s: 1.25 on average; 2 arrivals in 1 s.
        let (c, r) = s.take(t0 + Duration::from_secs(1));
        assert!((c - 1.25).abs() < 1e-9, "{c}");
        assert!((r - 2.0).abs() < 1e-9, "{r}");
        let (c, r) = s.take(t0 + Duration::from_secs(2));
        assert!((c - 1.0).abs() < 1e-9 && r == 0.0);
    }
}
