//! Where requests come from: arrival processes per function and origin mix, traces (kantai's
//! CSV and the Azure Functions 2019 format), and synthetic functions shaped like that trace.
//! Sources are pulled one arrival at a time, so a 10-million-request run never holds its
//! requests in memory (traces excepted: their rows are read up front, 24 bytes each).

pub mod arrivals;
pub mod azure;
pub mod requests;
pub mod synthetic;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::RngExt;
use rand::rngs::SmallRng;

use crate::dist::Dist;

pub use arrivals::Process;
pub use requests::{Planned, Requests, Target};

/// A request entering the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// When (ns since the start).
    pub t: u64,
    /// The function (index).
    pub function: u32,
    /// The node it enters (index).
    pub origin: u32,
    /// How long the instance works on it (`None`: drawn from the function's service time).
    pub service_ns: Option<u64>,
    /// Its method, path and headers (index into the kinds table).
    pub kind: u32,
}

/// One trace row, ready to replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// When (ns).
    pub t: u64,
    /// The function.
    pub function: u32,
    /// The origin node.
    pub origin: u32,
    /// The service time in ns (`u64::MAX`: drawn from the function's).
    pub service_ns: u64,
}

/// Nodes with weights, drawn from in proportion.
#[derive(Clone, Debug)]
pub struct Mix {
    /// (node, cumulative weight); the last is the total.
    cumulative: Vec<(u32, f64)>,
}

impl Mix {
    /// A mix of `(node, weight)`; nodes of weight 0 are never drawn.
    pub fn new(weights: &[(u32, f64)]) -> Mix {
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .filter(|(_, w)| *w > 0.0)
            .map(|&(n, w)| {
                acc += w;
                (n, acc)
            })
            .collect();
        Mix { cumulative }
    }

    /// One node, by weight (one draw from `rng` unless there is a single node).
    pub fn draw(&self, rng: &mut SmallRng) -> u32 {
        match self.cumulative.as_slice() {
            [(n, _)] => *n,
            list => {
                let total = list.last().map_or(0.0, |l| l.1);
                let x = rng.random::<f64>() * total;
                list.iter()
                    .find(|(_, c)| x < *c)
                    .or(list.last())
                    .map_or(0, |l| l.0)
            }
        }
    }
}

/// A stream of arrivals.
pub enum Source {
    /// An arrival process for one function.
    Process {
        /// The function.
        function: u32,
        /// Origin nodes by weight.
        origins: Mix,
        /// The process.
        process: Process,
        /// No arrival at or after this (ns).
        end: u64,
        /// The request kind.
        kind: u32,
        /// Its own generator, so one source's draws never shift another's.
        rng: SmallRng,
        /// The next arrival's time.
        next: Option<u64>,
    },
    /// Closed-loop users of one function: each has one request out at a time.
    Users {
        /// The function.
        function: u32,
        /// The request kind (the users' own: answers find their source by it).
        kind: u32,
        /// Think time after an answer.
        think: Dist,
        /// No request at or after this (ns).
        end: u64,
        /// Its own generator.
        rng: SmallRng,
        /// When each thinking user sends next, and from which node.
        pending: BinaryHeap<Reverse<(u64, u32)>>,
    },
    /// Rows of a trace, in time order.
    Trace {
        /// The rows.
        rows: Vec<Row>,
        /// The next row.
        pos: usize,
    },
}

impl Source {
    /// A process source; `origins` are (node, weight) with at least one weight above 0.
    pub fn process(
        function: u32,
        origins: &[(u32, f64)],
        mut process: Process,
        start: u64,
        end: u64,
        kind: u32,
        mut rng: SmallRng,
    ) -> Source {
        let origins = Mix::new(origins);
        let next = process.first(start, &mut rng).filter(|t| *t < end);
        Source::Process {
            function,
            origins,
            process,
            end,
            kind,
            rng,
            next,
        }
    }

    /// `count` closed-loop users, each at an origin drawn by weight; each sends its first
    /// request one think time after `start`.
    #[allow(clippy::too_many_arguments)]
    pub fn users(
        function: u32,
        origins: &[(u32, f64)],
        count: u32,
        think: Dist,
        start: u64,
        end: u64,
        kind: u32,
        mut rng: SmallRng,
    ) -> Source {
        let mix = Mix::new(origins);
        let mut pending = BinaryHeap::with_capacity(count as usize);
        for _ in 0..count {
            let origin = mix.draw(&mut rng);
            let t = start.saturating_add(think.sample_ns(&mut rng));
            if t < end {
                pending.push(Reverse((t, origin)));
            }
        }
        Source::Users {
            function,
            kind,
            think,
            end,
            rng,
            pending,
        }
    }

    /// Whether its arrivals follow its answers (closed-loop users): every pending arrival
    /// has an event of its own, scheduled by [`Source::wake`]'s caller.
    pub fn closed(&self) -> bool {
        matches!(self, Source::Users { .. })
    }

    /// The times of every pending arrival of closed-loop users (for their first events).
    pub fn pending_times(&self) -> Vec<u64> {
        match self {
            Source::Users { pending, .. } => pending.iter().map(|r| r.0.0).collect(),
            _ => self.peek().into_iter().collect(),
        }
    }

    /// A closed-loop user at `origin` got its answer at `now`: when it sends its next request
    /// (after its think time), if before the end. `None` for other sources.
    pub fn wake(&mut self, now: u64, origin: u32) -> Option<u64> {
        let Source::Users {
            think,
            end,
            rng,
            pending,
            ..
        } = self
        else {
            return None;
        };
        let t = now.saturating_add(think.sample_ns(rng));
        (t < *end).then(|| {
            pending.push(Reverse((t, origin)));
            t
        })
    }

    /// A trace source (the rows are sorted here, stably).
    pub fn trace(mut rows: Vec<Row>) -> Source {
        rows.sort_by_key(|r| r.t);
        Source::Trace { rows, pos: 0 }
    }

    /// The time of the next arrival.
    pub fn peek(&self) -> Option<u64> {
        match self {
            Source::Process { next, .. } => *next,
            Source::Users { pending, .. } => pending.peek().map(|r| r.0.0),
            Source::Trace { rows, pos } => rows.get(*pos).map(|r| r.t),
        }
    }

    /// Takes the next arrival.
    pub fn pop(&mut self) -> Option<Arrival> {
        match self {
            Source::Process {
                function,
                origins,
                process,
                end,
                kind,
                rng,
                next,
            } => {
                let t = (*next)?;
                let origin = origins.draw(rng);
                *next = process.next(t, rng).filter(|n| *n < *end);
                Some(Arrival {
                    t,
                    function: *function,
                    origin,
                    service_ns: None,
                    kind: *kind,
                })
            }
            Source::Users {
                function,
                kind,
                pending,
                ..
            } => {
                let Reverse((t, origin)) = pending.pop()?;
                Some(Arrival {
                    t,
                    function: *function,
                    origin,
                    service_ns: None,
                    kind: *kind,
                })
            }
            Source::Trace { rows, pos } => {
                let r = *rows.get(*pos)?;
                *pos += 1;
                Some(Arrival {
                    t: r.t,
                    function: r.function,
                    origin: r.origin,
                    service_ns: (r.service_ns != u64::MAX).then_some(r.service_ns),
                    kind: 0,
                })
            }
        }
    }

    /// Arrivals left (known for traces only).
    pub fn remaining(&self) -> Option<usize> {
        match self {
            Source::Trace { rows, pos } => Some(rows.len() - pos),
            Source::Process { .. } | Source::Users { .. } => None,
        }
    }
}

/// Reads kantai's CSV trace: a header `time,function,origin,duration`, then one request per
/// line (seconds from the start, service name, node name, seconds of service or empty).
/// `function` and `origin` resolve names; every problem names its line.
pub fn read_csv(
    text: &str,
    file: &str,
    function: impl Fn(&str) -> Option<u32>,
    origin: impl Fn(&str) -> Option<u32>,
) -> Result<Vec<Row>, String> {
    let mut lines = text.lines().enumerate();
    let header = lines
        .by_ref()
        .find(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let expected = ["time", "function", "origin", "duration"];
    match header {
        Some((_, h)) if h.split(',').map(str::trim).eq(expected) => {}
        Some((i, h)) => {
            return Err(format!(
                "{file}:{}: the header is {h:?}; a kantai trace starts with `time,function,origin,duration`",
                i + 1
            ));
        }
        None => return Err(format!("{file}: empty trace (no header)")),
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |m: String| format!("{file}:{}: {m}", i + 1);
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let [t, f, o, d] = cols.as_slice() else {
            return Err(at(format!("{} columns; expected 4", cols.len())));
        };
        let secs = |what: &str, v: &str| -> Result<u64, String> {
            match v.parse::<f64>() {
                Ok(s) if s.is_finite() && (0.0..=1e9).contains(&s) => Ok((s * 1e9) as u64),
                _ => Err(at(format!("{what} {v:?} is not a number of seconds ≥ 0"))),
            }
        };
        let t = secs("time", t)?;
        let function = function(f)
            .ok_or_else(|| at(format!("function {f:?} is not a service of this scenario")))?;
        let origin = origin(o).ok_or_else(|| at(format!("origin {o:?} is not a node")))?;
        let service_ns = if d.is_empty() {
            u64::MAX
        } else {
            secs("duration", d)?
        };
        rows.push(Row {
            t,
            function,
            origin,
            service_ns,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_resolve_names_and_report_lines() {
        let f = |n: &str| (n == "hello").then_some(0);
        let o = |n: &str| {
            ["node1", "node2"]
                .iter()
                .position(|x| *x == n)
                .map(|i| i as u32)
        };
        let rows = read_csv(
            "time,function,origin,duration\n0.5,hello,node2,0.01\n0.25,hello,node1,\n",
            "t.csv",
            f,
            o,
        )
        .expect("valid");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].origin, 1);
        assert_eq!(rows[0].service_ns, 10_000_000);
        assert_eq!(rows[1].service_ns, u64::MAX);
        let mut s = Source::trace(rows);
        assert_eq!(s.pop().map(|a| a.t), Some(250_000_000));
        for (text, needle) in [
            ("time,fn\n", "t.csv:1: the header"),
            (
                "time,function,origin,duration\n1,bye,node1,\n",
                "t.csv:2: function \"bye\"",
            ),
            (
                "time,function,origin,duration\n1,hello,node9,\n",
                "t.csv:2: origin \"node9\"",
            ),
            (
                "time,function,origin,duration\n\n-1,hello,node1,\n",
                "t.csv:3: time \"-1\"",
            ),
            (
                "time,function,origin,duration\n1,hello\n",
                "t.csv:2: 2 columns",
            ),
        ] {
            let e = read_csv(text, "t.csv", f, o).expect_err(text);
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn a_process_source_mixes_its_origins_by_weight() {
        use rand::SeedableRng;
        let p = Process::new(&crate::scenario::Arrivals::Constant { rate: 1000.0 }).expect("open");
        let mut s = Source::process(
            3,
            &[(0, 1.0), (1, 0.0), (2, 3.0)],
            p,
            0,
            10_000_000_000,
            0,
            SmallRng::seed_from_u64(1),
        );
        let mut counts = [0u32; 3];
        while let Some(a) = s.pop() {
            assert_eq!(a.function, 3);
            counts[a.origin as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<u32>(), 10_000);
        assert_eq!(counts[1], 0);
        assert!((7_200..7_800).contains(&counts[2]), "{counts:?}");
    }
}
