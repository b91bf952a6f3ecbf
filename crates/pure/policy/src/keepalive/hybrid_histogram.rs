//! The hybrid histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC
//! 2020), Azure Functions' keep-alive: per function, a range-limited histogram of idle
//! times decides a pre-warm window (unload after a request, load again just before the next
//! one is likely) and a keep-alive window (how long to stay loaded then).
//!
//! - The histogram has `kantai.dev/keep-alive-bin` wide bins (default 1 minute) over
//!   `kantai.dev/keep-alive-range` (default 4 hours), the paper's.
//! - When it is representative (at least [`MIN_SAMPLES`] idle times, the coefficient of
//!   variation of its bin counts above [`CV_THRESHOLD`], at most [`MAX_OUT_OF_BOUNDS`] of
//!   the idle times beyond the range), the pre-warm window is the [`HEAD`] percentile's bin
//!   start less [`MARGIN`], and the keep-alive window ends at the [`TAIL`] percentile's bin
//!   end plus [`MARGIN`].
//! - Otherwise the paper's standard keep-alive: no pre-warm, loaded for the whole range. The
//!   paper forecasts with ARIMA when many idle times fall beyond the range; kantai falls back
//!   to the standard keep-alive there too (documented in docs/policies.md).

use std::time::Duration;

use super::{Arrival, Hold, KeepAlive, KeepAliveInput};
use crate::params::Params;

/// The percentile of idle times the pre-warm window starts from (the paper's head).
pub const HEAD: f64 = 0.05;
/// The percentile of idle times the keep-alive window reaches (the paper's tail).
pub const TAIL: f64 = 0.99;
/// The margin taken off the pre-warm window and added to the keep-alive window's end.
pub const MARGIN: f64 = 0.10;
/// Fewer idle times than this are not a pattern yet.
pub const MIN_SAMPLES: u32 = 10;
/// A histogram whose bin counts vary less than this (standard deviation over mean) is too
/// flat to predict from.
pub const CV_THRESHOLD: f64 = 2.0;
/// The most idle times beyond the range, as a share of all, for the histogram to decide.
pub const MAX_OUT_OF_BOUNDS: f64 = 0.5;

/// The two windows after a request, from the end of the revision's last request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// How long the revision stays unloaded (0: it stays loaded).
    pub prewarm: Duration,
    /// How long it stays loaded after the pre-warm window.
    pub keep_alive: Duration,
    /// Whether the histogram decided (false: the standard keep-alive).
    pub from_histogram: bool,
}

impl Windows {
    /// The paper's standard keep-alive: no pre-warm, loaded for the whole `range`.
    fn standard(range: Duration) -> Windows {
        Windows {
            prewarm: Duration::ZERO,
            keep_alive: range,
            from_histogram: false,
        }
    }
}

/// The hybrid histogram policy's state for one revision.
#[derive(Clone, Debug)]
pub struct HybridHistogram {
    bin: Duration,
    range: Duration,
    counts: Vec<u32>,
    in_bounds: u32,
    out_of_bounds: u32,
    /// The windows the idle times so far give: they change only when one arrives, so the
    /// ticks between arrivals do not walk the histogram.
    windows: Windows,
}

impl HybridHistogram {
    /// A policy with the revision's bin width and range.
    pub fn new(params: &Params) -> HybridHistogram {
        let bin = params.keep_alive_bin;
        let range = params.keep_alive_range.max(bin);
        let bins = range.as_nanos().div_ceil(bin.as_nanos().max(1));
        let mut h = HybridHistogram {
            bin,
            range,
            counts: vec![0; usize::try_from(bins).unwrap_or(usize::MAX).min(1 << 20)],
            in_bounds: 0,
            out_of_bounds: 0,
            windows: Windows::standard(range),
        };
        h.windows = h.compute_windows();
        h
    }

    /// The windows the idle times so far give.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    fn compute_windows(&self) -> Windows {
        let standard = Windows::standard(self.range);
        let all = self.in_bounds + self.out_of_bounds;
        if all < MIN_SAMPLES
            || f64::from(self.out_of_bounds) > MAX_OUT_OF_BOUNDS * f64::from(all)
            || self.cv() <= CV_THRESHOLD
        {
            return standard;
        }
        let head = self.bin * self.percentile_bin(HEAD);
        let tail = self.bin * (self.percentile_bin(TAIL) + 1);
        let prewarm = head.mul_f64(1.0 - MARGIN);
        let end = tail.mul_f64(1.0 + MARGIN);
        Windows {
            prewarm,
            keep_alive: end.saturating_sub(prewarm),
            from_histogram: true,
        }
    }

    /// The coefficient of variation of the bin counts.
    fn cv(&self) -> f64 {
        let n = self.counts.len() as f64;
        let mean = f64::from(self.in_bounds) / n;
        if mean == 0.0 {
            return 0.0;
        }
        let var = self
            .counts
            .iter()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / n;
        var.sqrt() / mean
    }

    /// The first bin by which `p` of the in-bounds idle times are counted.
    fn percentile_bin(&self, p: f64) -> u32 {
        let want = (p * f64::from(self.in_bounds)).ceil().max(1.0);
        let mut seen = 0u32;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if f64::from(seen) >= want {
                return u32::try_from(i).unwrap_or(u32::MAX);
            }
        }
        u32::try_from(self.counts.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }
}

impl KeepAlive for HybridHistogram {
    fn arrived(&mut self, arrival: Arrival) {
        let Some(idle) = arrival.idle else { return };
        if idle >= self.range {
            self.out_of_bounds += 1;
        } else {
            let i = idle.as_nanos() / self.bin.as_nanos().max(1);
            if let Some(c) = usize::try_from(i).ok().and_then(|i| self.counts.get_mut(i)) {
                *c += 1;
                self.in_bounds += 1;
            }
        }
        self.windows = self.compute_windows();
    }

    fn hold(&mut self, input: &KeepAliveInput<'_>) -> Hold {
        let Some(since) = input.idle_since else {
            return Hold::Kpa;
        };
        let idle = input.now.saturating_sub(since);
        let w = self.windows;
        if idle < w.prewarm || idle >= w.prewarm + w.keep_alive {
            Hold::Release
        } else {
            Hold::Keep(1)
        }
    }
}
