//! Synthetic functions shaped like the Azure Functions 2019 trace (Shahrad et al., ATC'20;
//! `../shared/reference/peers.md` §5):
//!
//! - mean execution time per function ~ LogNormal(μ = −0.38, σ = 2.36) in ln seconds,
//!   clipped to the revision's timeout; one request's time is log-normal around that mean;
//! - daily invocations per function ~ LogNormal(3.69, 4.08) in ln counts, the fit of the
//!   published popularity (45 % of functions at most once an hour, 81 % at most once a
//!   minute, the top 18.6 % taking ≈ 99.8 % of invocations), scaled to the requested total;
//! - triggers by the trace's share of functions: HTTP 55 %, queue 15 %, event 2 %, timer
//!   16 %, orchestration 7 %, others 5 %. Timers are periodic (±1 % jitter); queue and event
//!   triggers are bursty (on/off MMPP, on 10 % of the time); the rest are Poisson.

use std::time::Duration;

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, LogNormal};

use super::arrivals::Process;

/// Per-function mean execution time: μ in ln seconds.
pub const EXEC_MU: f64 = -0.38;
/// Per-function mean execution time: σ in ln seconds.
pub const EXEC_SIGMA: f64 = 2.36;
/// Daily invocations per function: μ in ln counts.
pub const DAILY_MU: f64 = 3.691;
/// Daily invocations per function: σ in ln counts.
pub const DAILY_SIGMA: f64 = 4.079;

/// A function's trigger class, which shapes its arrivals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// HTTP: Poisson.
    Http,
    /// Queue: bursty.
    Queue,
    /// Event: bursty.
    Event,
    /// Timer: periodic.
    Timer,
    /// Orchestration: Poisson.
    Orchestration,
    /// Others: Poisson.
    Other,
}

/// Share of functions per trigger (percent), in the trace.
pub const TRIGGERS: [(Trigger, u32); 6] = [
    (Trigger::Http, 55),
    (Trigger::Queue, 15),
    (Trigger::Event, 2),
    (Trigger::Timer, 16),
    (Trigger::Orchestration, 7),
    (Trigger::Other, 5),
];

/// One synthetic function.
#[derive(Clone, Debug)]
pub struct SyntheticFunction {
    /// Mean execution time.
    pub mean_exec: Duration,
    /// Requests per second.
    pub rate: f64,
    /// Trigger class.
    pub trigger: Trigger,
    /// Origin nodes.
    pub origins: Vec<u32>,
}

/// Draws `count` functions whose rates sum to `total_rate`, each entering at `origins`
/// distinct nodes out of `nodes`; means are clipped to `max_exec`.
pub fn functions(
    count: u32,
    total_rate: f64,
    origins: u32,
    nodes: u32,
    max_exec: Duration,
    rng: &mut SmallRng,
) -> Vec<SyntheticFunction> {
    let exec = LogNormal::new(EXEC_MU, EXEC_SIGMA).ok();
    let daily = LogNormal::new(DAILY_MU, DAILY_SIGMA).ok();
    let mut out: Vec<SyntheticFunction> = (0..count)
        .map(|_| {
            let mean = exec
                .map_or(0.68, |d| d.sample(rng))
                .min(max_exec.as_secs_f64());
            let rate = daily.map_or(1.0, |d| d.sample(rng)) / 86_400.0;
            let pick = rng.random_range(0..100u32);
            let mut acc = 0;
            let trigger = TRIGGERS
                .iter()
                .find(|(_, p)| {
                    acc += p;
                    pick < acc
                })
                .map_or(Trigger::Http, |t| t.0);
            let k = origins.min(nodes) as usize;
            let mut chosen: Vec<u32> = Vec::with_capacity(k);
            while chosen.len() < k {
                let n = rng.random_range(0..nodes);
                if !chosen.contains(&n) {
                    chosen.push(n);
                }
            }
            SyntheticFunction {
                mean_exec: Duration::from_secs_f64(mean.max(1e-6)),
                rate,
                trigger,
                origins: chosen,
            }
        })
        .collect();
    let sum: f64 = out.iter().map(|f| f.rate).sum();
    if sum > 0.0 {
        for f in &mut out {
            f.rate *= total_rate / sum;
        }
    }
    out
}

/// The arrival process of a synthetic function.
pub fn process(f: &SyntheticFunction) -> Process {
    match f.trigger {
        Trigger::Timer => Process::Periodic {
            period: if f.rate > 0.0 {
                (1e9 / f.rate).max(1.0) as u64
            } else {
                u64::MAX / 4
            },
            jitter: 0.01,
            tick: None,
        },
        Trigger::Queue | Trigger::Event => Process::Mmpp {
            // On a tenth of the time, at ten times the mean rate.
            rates: [0.0, f.rate * 10.0],
            means: [45.0, 5.0],
            on: false,
            switch_at: None,
        },
        _ => Process::Poisson { rate: f.rate },
    }
}

/// A generator for function `i`'s arrivals, independent of every other function's.
pub fn rng_for(seed: u64, i: u32) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ (u64::from(i) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_matches_the_trace() {
        let mut rng = SmallRng::seed_from_u64(11);
        let n = 20_000;
        let fs = functions(n, 1000.0, 3, 50, Duration::from_secs(600), &mut rng);
        let total: f64 = fs.iter().map(|f| f.rate).sum();
        assert!((total - 1000.0).abs() < 1e-6);
        // Mean execution: median e^−0.38 ≈ 0.68 s; about half under 1 s (the paper's 50 %).
        let mut execs: Vec<f64> = fs.iter().map(|f| f.mean_exec.as_secs_f64()).collect();
        execs.sort_by(f64::total_cmp);
        let median = execs[execs.len() / 2];
        assert!((0.55..0.85).contains(&median), "{median}");
        let under_1s = execs.iter().filter(|e| **e < 1.0).count() as f64 / n as f64;
        assert!((0.5..0.62).contains(&under_1s), "{under_1s}");
        // Popularity: the top 18.6 % take more than 99 % of the requests.
        let mut rates: Vec<f64> = fs.iter().map(|f| f.rate).collect();
        rates.sort_by(|a, b| b.total_cmp(a));
        let top = (n as f64 * 0.186) as usize;
        let share = rates[..top].iter().sum::<f64>() / total;
        assert!(share > 0.99, "{share}");
        // Rates spread over many orders of magnitude.
        let spread = (rates[0] / rates[n as usize - 1]).log10();
        assert!(spread > 8.0, "{spread}");
        // Triggers in the trace's proportions.
        let timers = fs.iter().filter(|f| f.trigger == Trigger::Timer).count() as f64;
        assert!((timers / n as f64 - 0.16).abs() < 0.02);
        assert!(fs.iter().all(|f| f.origins.len() == 3));
    }
}
