//! A live run's records and timeline, summarized as the simulator summarizes its runs, so
//! that one report (and one plot) holds both.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kantai_loadgen::Record;
use kantai_loadgen::timeline::Point;
use kantai_sim::report::{
    FunctionResults, InstanceSample, LatencySample, NodeSample, OriginResults, Summary, Tally,
};
use kantai_sim::workload::Target;

/// What the summary needs to know of the run besides its records.
pub struct RunInfo<'a> {
    /// The functions, by index.
    pub targets: &'a [Target],
    /// The nodes, by index.
    pub nodes: &'a [String],
    /// The run's seed.
    pub seed: u64,
    /// How long arrivals lasted.
    pub duration: Duration,
    /// Requests planned before this are not counted.
    pub warmup: Duration,
    /// The latency objective.
    pub slo: Option<Duration>,
    /// The interval of the latency-over-time series.
    pub sample_every: Duration,
}

/// The timeline's metrics a summary reads (scrape them all).
pub const TIMELINE_METRICS: [&str; 7] = [
    "kantai_node_instances",
    "kantai_placement_instances",
    "kantai_autoscaler_desired_instances",
    "kantai_autoscaler_panic",
    "kantai_queue_depth",
    "kantai_requests_in_flight",
    "kantai_fleet_rtt_seconds",
];

/// Summarizes a live run: results per function and origin from the records (after the
/// warm-up), instances over time and instance-seconds from the agents' `kantai_node_instances`,
/// the autoscaler's largest desired count from `kantai_autoscaler_desired_instances`.
pub fn summarize(info: &RunInfo<'_>, records: &[Record], timeline: &[Point]) -> Summary {
    let slo_us = info.slo.map(|d| d.as_micros() as u64);
    let counted = || records.iter().filter(|r| r.at >= info.warmup);
    let mut fleet = Tally::new();
    let mut cells: BTreeMap<(u32, u32), Tally> = BTreeMap::new();
    for r in counted() {
        fleet.record(r.status, r.latency, r.cold);
        cells
            .entry((r.function, r.origin))
            .or_default()
            .record(r.status, r.latency, r.cold);
    }

    // Instances per node and revision at each scrape, from the agents.
    let mut per_t: BTreeMap<u64, BTreeMap<String, (u32, u32)>> = BTreeMap::new();
    let mut by_rev: BTreeMap<u64, BTreeMap<String, u32>> = BTreeMap::new();
    let mut desired_max: BTreeMap<String, u32> = BTreeMap::new();
    // Scrapes are a second apart and every endpoint is read within milliseconds of the
    // others, so samples are grouped by the scrape's time rounded to 100 ms.
    let key = |t: f64| (t * 10.0).round() as u64 * 100;
    for p in timeline {
        let ms = key(p.t);
        let s = &p.sample;
        match s.name.as_str() {
            "kantai_node_instances" => {
                let node = s.label("node").unwrap_or(&p.source).to_owned();
                let n = s.value.max(0.0) as u32;
                let e = per_t.entry(ms).or_default().entry(node).or_default();
                if s.label("state") == Some("ready") {
                    e.0 += n;
                    *by_rev
                        .entry(ms)
                        .or_default()
                        .entry(s.label("revision").unwrap_or("").to_owned())
                        .or_default() += n;
                } else {
                    e.1 += n;
                }
            }
            "kantai_autoscaler_desired_instances" => {
                let e = desired_max
                    .entry(s.label("revision").unwrap_or("").to_owned())
                    .or_default();
                *e = (*e).max(s.value.max(0.0) as u32);
            }
            _ => {}
        }
    }
    let mut instances = Vec::new();
    let mut nodes_over_time = Vec::new();
    let scrape_times: BTreeSet<u64> = timeline.iter().map(|p| key(p.t)).collect();
    // A scrape that saw no ready instance of a revision counts as none, not as a gap.
    for t in &scrape_times {
        by_rev.entry(*t).or_default();
    }
    for t in &scrape_times {
        let nodes = per_t.remove(t).unwrap_or_default();
        let (ready, starting) = nodes.values().fold((0, 0), |(a, b), (r, s)| (a + r, b + s));
        let ts = *t as f64 / 1e3;
        instances.push(InstanceSample {
            t: ts,
            ready,
            starting,
        });
        for (node, (ready, starting)) in nodes {
            if ready > 0 || starting > 0 {
                nodes_over_time.push(NodeSample {
                    t: ts,
                    node,
                    ready,
                    starting,
                });
            }
        }
    }
    // Instance-seconds from the warm-up to the end of the arrivals (as the simulator counts
    // them): ready instances held until the next scrape.
    let warm = info.warmup.as_secs_f64();
    let end = info.duration.as_secs_f64();
    let mut rev_seconds: BTreeMap<String, f64> = BTreeMap::new();
    let times: Vec<(u64, &BTreeMap<String, u32>)> = by_rev.iter().map(|(t, m)| (*t, m)).collect();
    for w in times.windows(2) {
        let (t0, t1) = (w[0].0 as f64 / 1e3, w[1].0 as f64 / 1e3);
        let span = (t1.min(end) - t0.max(warm)).max(0.0);
        for (rev, n) in w[0].1 {
            *rev_seconds.entry(rev.clone()).or_default() += f64::from(*n) * span;
        }
    }

    let mut by_function = Vec::new();
    for (i, t) in info.targets.iter().enumerate() {
        let mut all = Tally::new();
        let mut origins = Vec::new();
        for ((f, o), tally) in &cells {
            if *f as usize == i {
                all.merge(tally);
                origins.push(OriginResults {
                    origin_node: info.nodes.get(*o as usize).cloned().unwrap_or_default(),
                    results: tally.results(slo_us),
                });
            }
        }
        let served: BTreeSet<&str> = counted()
            .filter(|r| r.function as usize == i)
            .filter_map(|r| r.instance.as_deref())
            .collect();
        by_function.push(FunctionResults {
            namespace: t.namespace.clone(),
            service: t.service.clone(),
            revision: t.revision.clone(),
            placement: t.placement.clone(),
            load_balancer: t.load_balancer.clone(),
            queue: t.queue.clone(),
            keep_alive: t.keep_alive.clone(),
            container_concurrency: t.container_concurrency,
            kantai_instance_seconds_total: round3(
                rev_seconds.get(&t.revision).copied().unwrap_or(0.0),
            ),
            instances_started: served.len() as u64,
            kantai_local_starts_total: None,
            kantai_autoscaler_desired_instances_max: desired_max
                .get(&t.revision)
                .copied()
                .unwrap_or(0),
            results: all.results(slo_us),
            origins,
        });
    }

    // Latency over time: the counted 200s answered in each interval (as the simulator).
    let every = info.sample_every.as_secs_f64().max(0.1);
    let mut windows: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in counted().filter(|r| r.status == 200) {
        let end = (r.at + r.latency).as_secs_f64();
        windows
            .entry((end / every).ceil() as u64)
            .or_default()
            .push(r.latency.as_secs_f64());
    }
    let latency_over_time = windows
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            LatencySample {
                t: k as f64 * every,
                requests: v.len() as u64,
                p50: round6(q(0.5)),
                p95: round6(q(0.95)),
                p99: round6(q(0.99)),
            }
        })
        .collect();

    let last = records
        .iter()
        .map(|r| (r.at + r.latency).as_secs_f64())
        .fold(0.0, f64::max);
    Summary {
        seed: info.seed,
        nodes: info.nodes.len(),
        functions: info.targets.len(),
        duration_seconds: info.duration.as_secs_f64(),
        simulated_seconds: round3(last),
        warmup_seconds: warm,
        events: records.len() as u64,
        kantai_instance_seconds_total: round3(rev_seconds.values().sum()),
        nodes_over_time,
        results: fleet.results(slo_us),
        by_function,
        instances,
        latency_over_time,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Live runs read back from the raw data an earlier run wrote (`kantai experiment --replot`):
/// the report is rebuilt with today's code without repeating hours of live load.
pub struct Recorded;

impl crate::Live for Recorded {
    fn run(&mut self, run: crate::LiveRun<'_>) -> Result<Summary, String> {
        let crate::LiveRun {
            prepared,
            dir,
            slo,
            progress,
            ..
        } = run;
        progress("reading its raw data");
        // A file, or its gzip (committed reports keep their requests compressed).
        let read = |name: &str| {
            let p = dir.join(name);
            let gz = dir.join(format!("{name}.gz"));
            let text = if !p.exists() && gz.exists() {
                std::fs::File::open(&gz).and_then(|f| {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(f), &mut s)?;
                    Ok(s)
                })
            } else {
                std::fs::read_to_string(&p)
            };
            text.map_err(|e| {
                format!(
                    "cannot read {} ({e}): --replot needs the raw data of a live run",
                    p.display()
                )
            })
        };
        let seed = prepared.scenario.seed;
        let sample_every = prepared.scenario.output.sample_every.0;
        let requests = prepared.sim.into_requests();
        let (targets, nodes) = (requests.targets().to_vec(), requests.nodes().to_vec());
        let records = read_requests(&read("requests.csv")?, &targets, &nodes)
            .map_err(|e| format!("{}: {e}", dir.join("requests.csv").display()))?;
        let points = read_timeline(&read("timeline.csv")?)
            .map_err(|e| format!("{}: {e}", dir.join("timeline.csv").display()))?;
        let summary = summarize(
            &RunInfo {
                targets: &targets,
                nodes: &nodes,
                seed,
                duration: requests.duration(),
                warmup: requests.warmup(),
                slo,
                sample_every,
            },
            &records,
            &points,
        );
        let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())? + "\n";
        std::fs::write(dir.join("summary.json"), json)
            .map_err(|e| format!("cannot write {}: {e}", dir.join("summary.json").display()))?;
        Ok(summary)
    }
}

/// Reads `requests.csv` as [`kantai_loadgen::csv`] writes it; functions and origins by name.
pub fn read_requests(
    text: &str,
    targets: &[Target],
    nodes: &[String],
) -> Result<Vec<Record>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h))
            if h.starts_with("t,function,origin,status,latency_ms,lag_ms,node,instance,cold") => {}
        _ => return Err("line 1: not a requests.csv header".into()),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let bad = |what: &str| format!("line {}: {what}: {line}", i + 1);
        // The error, last, may hold commas (quoted); the rest cannot.
        let f: Vec<&str> = line.splitn(10, ',').collect();
        if f.len() < 9 {
            return Err(bad("too few fields"));
        }
        let secs = |s: &str, what: &str| -> Result<Duration, String> {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad(what))
        };
        let function = targets
            .iter()
            .position(|t| t.service == f[1])
            .ok_or_else(|| bad("unknown function"))? as u32;
        let origin = nodes
            .iter()
            .position(|n| n == f[2])
            .ok_or_else(|| bad("unknown origin"))? as u32;
        let text_or_none = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        out.push(Record {
            at: secs(f[0], "bad time")?,
            lag: secs(f[5], "bad lag")? / 1000,
            origin,
            function,
            status: f[3].parse().map_err(|_| bad("bad status"))?,
            latency: secs(f[4], "bad latency")? / 1000,
            instance: text_or_none(f[7]),
            node: text_or_none(f[6]),
            cold: f[8] == "true",
            error: f.get(9).and_then(|e| text_or_none(e.trim_matches('"'))),
        });
    }
    Ok(out)
}

/// Reads `timeline.csv` as [`kantai_loadgen::timeline::csv`] writes it.
pub fn read_timeline(text: &str) -> Result<Vec<Point>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, "t,source,metric,labels,value")) => {}
        _ => return Err("line 1: not a timeline.csv header".into()),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let bad = || format!("line {}: not t,source,metric,labels,value: {line}", i + 1);
        let f: Vec<&str> = line.split(',').collect();
        let [t, source, name, labels, value] = f[..] else {
            return Err(bad());
        };
        let labels = labels
            .split(';')
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Point {
            t: t.parse().map_err(|_| bad())?,
            source: source.to_owned(),
            sample: kantai_loadgen::prom::Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().map_err(|_| bad())?,
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use kantai_loadgen::prom::Sample;

    use super::*;

    fn rec(at_ms: u64, origin: u32, status: u16, ms: u64, node: &str, cold: bool) -> Record {
        Record {
            at: Duration::from_millis(at_ms),
            lag: Duration::ZERO,
            origin,
            function: 0,
            status,
            latency: Duration::from_millis(ms),
            instance: (!node.is_empty()).then(|| format!("hello-{node}-1")),
            node: (!node.is_empty()).then(|| node.into()),
            cold,
            error: None,
        }
    }

    fn point(t: f64, node: &str, state: &str, n: f64) -> Point {
        Point {
            t,
            source: node.into(),
            sample: Sample {
                name: "kantai_node_instances".into(),
                labels: vec![
                    ("namespace".into(), "default".into()),
                    ("revision".into(), "hello-00001".into()),
                    ("node".into(), node.into()),
                    ("state".into(), state.into()),
                ],
                value: n,
            },
        }
    }

    #[test]
    fn a_live_run_is_summarized_like_a_simulated_one() {
        let targets = [Target {
            namespace: "default".into(),
            service: "hello".into(),
            revision: "hello-00001".into(),
            timeout: Duration::from_secs(300),
            placement: "spread".into(),
            load_balancer: "knative".into(),
            queue: "fifo".into(),
            keep_alive: "knative".into(),
            container_concurrency: 0,
        }];
        let nodes = ["node1".to_owned(), "node2".to_owned()];
        let info = RunInfo {
            targets: &targets,
            nodes: &nodes,
            seed: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            slo: Some(Duration::from_millis(15)),
            sample_every: Duration::from_secs(1),
        };
        let records = vec![
            // In the warm-up: not counted.
            rec(1000, 0, 200, 900, "node1", true),
            rec(3000, 0, 200, 5, "node1", false),
            rec(3500, 1, 200, 60, "node1", false),
            rec(4000, 1, 503, 1, "", false),
            rec(5000, 0, 0, 0, "", false),
        ];
        let timeline = vec![
            point(2.0, "node1", "ready", 1.0),
            point(2.01, "node2", "starting", 1.0),
            point(3.0, "node1", "ready", 1.0),
            point(3.02, "node2", "ready", 1.0),
            point(4.0, "node1", "ready", 2.0),
        ];
        let s = summarize(&info, &records, &timeline);
        let r = &s.results;
        assert_eq!(r.kantai_requests_total.get("200"), Some(&2));
        assert_eq!(r.kantai_requests_total.get("503"), Some(&1));
        assert_eq!(r.kantai_requests_total.get("0"), Some(&1));
        assert_eq!(r.kantai_cold_starts_total, 0);
        // One of four answered within 15 ms.
        assert_eq!(r.share_within_slo, Some(0.25));
        let f = &s.by_function[0];
        assert_eq!(f.origins.len(), 2);
        assert_eq!(f.origins[1].origin_node, "node2");
        assert_eq!(f.instances_started, 1);
        // Scrapes at 2, 3 and 4 s: one ready instance for 1 s, then two for 1 s.
        assert_eq!(s.instances.len(), 3);
        assert_eq!((s.instances[0].ready, s.instances[0].starting), (1, 1));
        assert_eq!(s.instances[1].ready, 2);
        assert_eq!(s.kantai_instance_seconds_total, 3.0);
        assert!(
            s.nodes_over_time
                .iter()
                .any(|n| n.node == "node2" && n.ready == 1)
        );
        // The 200s after the warm-up, by the second they were answered in: 3.005 s, 3.56 s.
        let windows: Vec<(f64, u64)> = s
            .latency_over_time
            .iter()
            .map(|l| (l.t, l.requests))
            .collect();
        assert_eq!(windows, [(4.0, 2)]);
        // What a live run wrote reads back to the same summary (`--replot`).
        let csv = kantai_loadgen::csv(&records, &|f| targets[f as usize].service.clone(), &|o| {
            nodes[o as usize].clone()
        });
        let back = read_requests(&csv, &targets, &nodes).expect("requests.csv");
        let points = read_timeline(&kantai_loadgen::timeline::csv(&timeline)).expect("timeline");
        assert_eq!(summarize(&info, &back, &points), s);
        let err = read_requests("t,function,origin,status,latency_ms,lag_ms,node,instance,cold,error\n1,nope,node1,200,1,0,,,false,\n", &targets, &nodes)
            .expect_err("unknown function");
        assert!(err.starts_with("line 2: unknown function"), "{err}");
    }
}
