//! Arrival processes: each gives the time of its next request from the previous one.

use rand::Rng;
use rand::RngExt;
use rand_distr::{Distribution, Exp1};

use crate::scenario::Arrivals;

const NS: f64 = 1e9;

/// The state of one arrival process.
#[derive(Clone, Debug)]
pub enum Process {
    /// Every `interval` ns.
    Constant {
        /// Gap between requests.
        interval: u64,
    },
    /// Poisson at `rate` per second.
    Poisson {
        /// Requests per second.
        rate: f64,
    },
    /// Two-state MMPP.
    Mmpp {
        /// Rates while on and off.
        rates: [f64; 2],
        /// Mean sojourn in each state, in seconds.
        means: [f64; 2],
        /// Whether it is on now.
        on: bool,
        /// When it next switches (ns); `None` before the first draw.
        switch_at: Option<u64>,
    },
    /// Poisson with a sinusoidal rate, by thinning.
    Diurnal {
        /// Mean rate.
        mean: f64,
        /// Swing as a fraction of the mean.
        amplitude: f64,
        /// Cycle, in seconds.
        period: f64,
        /// Offset into the cycle, in seconds.
        phase: f64,
    },
    /// Periodic (timer triggers), each arrival shifted by up to ±`jitter` of the period.
    Periodic {
        /// The period in ns.
        period: u64,
        /// Fraction of the period.
        jitter: f64,
        /// The next unjittered tick.
        tick: Option<u64>,
    },
}

impl Process {
    /// The process a scenario describes; `None` for closed-loop users, whose arrivals
    /// follow their answers ([`crate::workload::Source::users`]).
    pub fn new(a: &Arrivals) -> Option<Process> {
        Some(match *a {
            Arrivals::Constant { rate } => Process::Constant {
                interval: if rate > 0.0 {
                    (NS / rate).max(1.0) as u64
                } else {
                    u64::MAX
                },
            },
            Arrivals::Poisson { rate } => Process::Poisson { rate },
            Arrivals::Mmpp {
                on_rate,
                off_rate,
                mean_on,
                mean_off,
            } => Process::Mmpp {
                rates: [off_rate, on_rate],
                means: [mean_off.0.as_secs_f64(), mean_on.0.as_secs_f64()],
                on: true,
                switch_at: None,
            },
            Arrivals::Diurnal {
                mean_rate,
                amplitude,
                period,
                phase,
            } => Process::Diurnal {
                mean: mean_rate,
                amplitude,
                period: period.0.as_secs_f64(),
                phase: phase.0.as_secs_f64(),
            },
            Arrivals::Users { .. } => return None,
        })
    }

    /// The first arrival at or after `start` (ns).
    pub fn first(&mut self, start: u64, rng: &mut impl Rng) -> Option<u64> {
        if let Process::Constant { interval } = *self {
            // The first one half a gap in, so that a rate over a window gives its count.
            return start.checked_add(interval / 2);
        }
        self.next(start, rng)
    }

    /// The arrival after one at `now` (ns); `None` when none ever comes.
    pub fn next(&mut self, now: u64, rng: &mut impl Rng) -> Option<u64> {
        let exp = |rng: &mut dyn rand::Rng, rate: f64| -> f64 {
            let e: f64 = Exp1.sample(rng);
            e / rate
        };
        match self {
            Process::Constant { interval } => now.checked_add(*interval),
            Process::Poisson { rate } => {
                if *rate <= 0.0 {
                    return None;
                }
                Some(now + (exp(rng, *rate) * NS) as u64)
            }
            Process::Mmpp {
                rates,
                means,
                on,
                switch_at,
            } => {
                if rates[0] <= 0.0 && rates[1] <= 0.0 {
                    return None;
                }
                let mut t = now;
                let mut sw = match *switch_at {
                    Some(s) => s,
                    None => now + (exp(rng, 1.0 / means[usize::from(*on)]) * NS) as u64,
                };
                loop {
                    let rate = rates[usize::from(*on)];
                    if rate > 0.0 {
                        let at = t + (exp(rng, rate) * NS) as u64;
                        if at < sw {
                            *switch_at = Some(sw);
                            return Some(at);
                        }
                    }
                    // Memoryless: start again from the switch in the other state.
                    t = sw;
                    *on = !*on;
                    sw = t + (exp(rng, 1.0 / means[usize::from(*on)]) * NS).max(1.0) as u64;
                }
            }
            Process::Diurnal {
                mean,
                amplitude,
                period,
                phase,
            } => {
                let peak = *mean * (1.0 + *amplitude);
                if peak <= 0.0 {
                    return None;
                }
                let mut t = now as f64 / NS;
                // Thinning (Lewis & Shedler): candidates at the peak rate, each kept with
                // probability rate(t) / peak. Bounded: the rate's minimum is mean·(1 − a).
                for _ in 0..1_000_000 {
                    t += exp(rng, peak);
                    let angle = std::f64::consts::TAU * (t + *phase) / *period;
                    let rate = *mean * (1.0 + *amplitude * angle.sin());
                    if rng.random::<f64>() * peak <= rate {
                        return Some((t * NS) as u64);
                    }
                }
                None
            }
            Process::Periodic {
                period,
                jitter,
                tick,
            } => {
                let next_tick = match *tick {
                    Some(t) => t + *period,
                    None => now + rng.random_range(0..(*period).max(1)),
                };
                *tick = Some(next_tick);
                let j = (*period as f64 * *jitter) as i64;
                let shift = if j > 0 { rng.random_range(-j..=j) } else { 0 };
                Some(next_tick.saturating_add_signed(shift).max(now))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Dur;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::time::Duration;

    fn count(p: &mut Process, secs: u64, seed: u64) -> (usize, Vec<u64>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let end = secs * 1_000_000_000;
        let mut times = Vec::new();
        let mut t = p.first(0, &mut rng);
        while let Some(x) = t {
            if x >= end {
                break;
            }
            times.push(x);
            t = p.next(x, &mut rng);
        }
        (times.len(), times)
    }

    #[test]
    fn rates_give_their_counts() {
        let (n, _) = count(
            &mut Process::new(&Arrivals::Constant { rate: 10.0 }).expect("open"),
            100,
            1,
        );
        assert_eq!(n, 1000);
        let (n, _) = count(
            &mut Process::new(&Arrivals::Poisson { rate: 10.0 }).expect("open"),
            1000,
            1,
        );
        assert!((9_500..10_500).contains(&n), "{n}");
        let d = Arrivals::Diurnal {
            mean_rate: 10.0,
            amplitude: 0.8,
            period: Dur(Duration::from_secs(100)),
            phase: Dur::default(),
        };
        let (n, times) = count(&mut Process::new(&d).expect("open"), 1000, 2);
        assert!((9_500..10_500).contains(&n), "{n}");
        // The first quarter of each cycle (rising to the peak) has more than the third.
        let q = |k: u64| {
            times
                .iter()
                .filter(|t| (**t / 25_000_000_000) % 4 == k)
                .count()
        };
        assert!(q(0) > 2 * q(2), "{} vs {}", q(0), q(2));
    }

    #[test]
    fn mmpp_is_bursty() {
        let m = Arrivals::Mmpp {
            on_rate: 100.0,
            off_rate: 0.0,
            mean_on: Dur(Duration::from_secs(1)),
            mean_off: Dur(Duration::from_secs(9)),
        };
        let (n, times) = count(&mut Process::new(&m).expect("open"), 2000, 3);
        // Mean rate 100 × 1/10 = 10 per second.
        assert!((16_000..24_000).contains(&n), "{n}");
        let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!(cv > 2.0, "inter-arrival CV {cv} should be ≫ 1");
    }
}
