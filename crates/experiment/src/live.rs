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
            container_concurrency: t.container_concurrency,
            kantai_instance_seconds_total: round3(
                rev_seconds.get(&t.revision).copied().unwrap_or(0.0),
            ),
            instances_started: served.len() as u64,
            kantai_autoscaler_desired_instances_max: desired_max
                .get(&t.revision)
                .copied()
                .unwrap_or(0),
            results: all.results(slo_us),
            origins,
        });
    }

    // Latency over time: the 200s answered in each interval.
    let every = info.sample_every.as_secs_f64().max(0.1);
    let mut windows: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.status == 200) {
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
        assert!(!s.latency_over_time.is_empty());
    }
}
