//! Replaying a trace of observations through the autoscaler: "what would the KPA do on
//! this load?". Used by `kantai autoscale replay` and by the scenario tests, so both run
//! exactly the same loop.
//!
//! Trace format (CSV, one report per row, `#` starts a comment, an optional header):
//!
//! ```text
//! time_s,ready_instances,concurrency[,rps]
//! 0,1,5
//! 0.5,1,6.5,12
//! 2,-,0
//! ```
//!
//! * `time_s`: seconds since the start of the trace (fractions allowed; rows in the same
//!   whole second add up, like reports from several instances);
//! * `ready_instances`: ready instances from this row on, or `-` (or empty) for "the
//!   instances the autoscaler asked for are ready" (instant start);
//! * `concurrency`: average in-flight requests of the revision over that second;
//! * `rps`: requests that arrived in that second (optional, default 0).
//!
//! Ticks happen every 2 s from 0 up to the first tick at or after the last row (or `until`),
//! plus an immediate tick when a report reaches a revision the autoscaler wants at zero
//! (Knative's poke). A tick at time `t` sees every report with a time up to `t`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::decider::TICK;
use crate::revision::{Decision, Observation, RevisionAutoscaler};
use crate::spec::ScalingSpec;

/// Ready instances in a trace row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// This many are ready.
    Count(u32),
    /// Whatever the autoscaler last asked for is ready.
    Follow,
}

/// One report of a trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceRow {
    /// When the report arrives.
    pub time: Duration,
    /// Ready instances from now on.
    pub ready: Ready,
    /// Average concurrency over the last second.
    pub concurrency: f64,
    /// Requests in the last second.
    pub rps: f64,
}

/// A trace line that could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {message}")]
pub struct TraceError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Longest trace accepted, in rows (about 11 days at one report per second).
pub const MAX_ROWS: usize = 1_000_000;

/// Parses a trace (see the module documentation for the format).
pub fn parse_trace(text: &str) -> Result<Vec<TraceRow>, TraceError> {
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let fields: Vec<&str> = content.split(',').map(str::trim).collect();
        if rows.is_empty() && fields.first().is_some_and(|f| f.parse::<f64>().is_err()) {
            // A header such as `time_s,ready_instances,concurrency,rps`.
            continue;
        }
        let err = |message: String| TraceError { line, message };
        if !(3..=4).contains(&fields.len()) {
            return Err(err(format!(
                "expected 3 or 4 fields (time_s,ready_instances,concurrency[,rps]), found {}",
                fields.len()
            )));
        }
        let number = |name: &str, s: &str| -> Result<f64, TraceError> {
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(err(format!("{name} {s:?} is not a non-negative number"))),
            }
        };
        let time = number("time_s", fields[0])?;
        if time > 1e9 {
            return Err(err(format!(
                "time_s {time} is beyond the supported 1e9 seconds"
            )));
        }
        let ready = match fields[1] {
            "" | "-" => Ready::Follow,
            s => Ready::Count(s.parse::<u32>().map_err(|_| {
                err(format!(
                    "ready_instances {s:?} is not a whole number or \"-\""
                ))
            })?),
        };
        let concurrency = number("concurrency", fields[2])?;
        let rps = match fields.get(3) {
            Some(s) if !s.is_empty() => number("rps", s)?,
            _ => 0.0,
        };
        if rows.len() >= MAX_ROWS {
            return Err(err(format!("more than {MAX_ROWS} rows")));
        }
        rows.push(TraceRow {
            time: Duration::from_secs_f64(time),
            ready,
            concurrency,
            rps,
        });
    }
    Ok(rows)
}

/// One output line of a replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TickLine {
    /// When the tick happened.
    pub time: Duration,
    /// Ready instances the tick saw.
    pub ready: u32,
    /// Whether this was an immediate tick caused by load reaching a revision at zero.
    pub poked: bool,
    /// The decision.
    pub decision: Decision,
}

/// Runs a trace through a fresh autoscaler and returns every tick. `until` extends the run
/// past the last report (to watch a scale to zero, for example).
pub fn replay(spec: ScalingSpec, rows: &[TraceRow], until: Option<Duration>) -> Vec<TickLine> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.time);
    let last = rows.last().map_or(Duration::ZERO, |r| r.time);
    let end = until.map_or(last, |u| u.max(last));

    let initial_ready = match rows.first() {
        Some(r) if r.time.is_zero() => match r.ready {
            Ready::Count(n) => n,
            Ready::Follow => 0,
        },
        _ => 0,
    };
    let mut scaler = RevisionAutoscaler::new(spec, Duration::ZERO, initial_ready);
    let mut ready_mode = Ready::Count(initial_ready);
    let ready_now = |mode: Ready, scaler: &RevisionAutoscaler| match mode {
        Ready::Count(n) => n,
        Ready::Follow => scaler.replicas(),
    };

    let mut out = Vec::new();
    let mut next = rows.iter().peekable();
    let mut t = Duration::ZERO;
    loop {
        while let Some(row) = next.next_if(|r| r.time <= t) {
            ready_mode = row.ready;
            let obs = Observation {
                concurrency: row.concurrency,
                requests: row.rps,
                ..Observation::default()
            };
            if scaler.record(row.time, obs) {
                let ready = ready_now(ready_mode, &scaler);
                let decision = scaler.tick(row.time, ready);
                out.push(TickLine {
                    time: row.time,
                    ready,
                    poked: true,
                    decision,
                });
            }
        }
        let ready = ready_now(ready_mode, &scaler);
        let decision = scaler.tick(t, ready);
        out.push(TickLine {
            time: t,
            ready,
            poked: false,
            decision,
        });
        if t >= end {
            break;
        }
        t += TICK;
    }
    out
}

/// The CSV header of [`format_csv`].
pub const CSV_HEADER: &str = "time_s,desired,panic,excess_burst_capacity,activator_in_path";
/// Extra columns printed by [`format_csv`] in verbose mode.
pub const CSV_VERBOSE_HEADER: &str = ",ready,want,stable,panic_value,activity,poked";

/// Formats replay output as CSV, one line per tick.
pub fn format_csv(lines: &[TickLine], verbose: bool) -> String {
    let mut s = String::with_capacity(lines.len() * 40);
    s.push_str(CSV_HEADER);
    if verbose {
        s.push_str(CSV_VERBOSE_HEADER);
    }
    s.push('\n');
    for l in lines {
        let d = &l.decision;
        let _ = write!(
            s,
            "{},{},{},{},{}",
            format_secs(l.time),
            d.desired,
            d.panic,
            d.excess_burst_capacity,
            d.activator_in_path
        );
        if verbose {
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
            let _ = write!(
                s,
                ",{},{},{},{},{:?},{}",
                l.ready,
                d.want,
                opt(d.stable),
                opt(d.panic_value),
                d.activity,
                l.poked
            );
        }
        s.push('\n');
    }
    s
}

/// Seconds as `12` or `12.5`.
pub fn format_secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        s.trim_end_matches('0').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_parse_with_headers_comments_and_follow() {
        let rows = parse_trace(
            "# a trace\ntime_s,ready_instances,concurrency,rps\n0,1,5\n0.5, - ,6.5,12 # note\n\n2,,0\n",
        )
        .expect("valid");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].time, Duration::from_millis(500));
        assert_eq!(rows[1].ready, Ready::Follow);
        assert_eq!(rows[1].rps, 12.0);
        assert_eq!(rows[2].ready, Ready::Follow);
    }

    #[test]
    fn bad_rows_name_their_line() {
        let e = parse_trace("0,1,5\n1,x,5\n").expect_err("bad ready");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("ready_instances"), "{e}");
        let e = parse_trace("0,1\n").expect_err("too few");
        assert_eq!(
            e.to_string(),
            "line 1: expected 3 or 4 fields (time_s,ready_instances,concurrency[,rps]), found 2"
        );
        let e = parse_trace("0,1,-3\n").expect_err("negative");
        assert!(e.message.contains("concurrency"), "{e}");
        assert!(parse_trace("NaN,1,1\n").is_err());
    }

    #[test]
    fn seconds_format() {
        assert_eq!(format_secs(Duration::from_secs(12)), "12");
        assert_eq!(format_secs(Duration::from_millis(12_500)), "12.5");
    }
}
