//! What a run produces: a JSON summary (per function and per origin node, with the live
//! fleet's metric names as keys), `requests.csv` (a row per function and origin) and
//! `instances.csv` (instances per node over time). Everything is in a fixed order and
//! formatted the same way on every platform, so a run's output is byte-identical for the
//! same scenario and seed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use kantai_policy::registry::Kind as PolicyKind;

use crate::engine::{GateStats, Sim, histogram};

/// Percentiles of a histogram, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let s = |us: u64| round(us as f64 / 1e6);
        Percentiles {
            count: h.len(),
            mean: round(h.mean() / 1e6),
            p50: s(h.value_at_quantile(0.5)),
            p90: s(h.value_at_quantile(0.9)),
            p95: s(h.value_at_quantile(0.95)),
            p99: s(h.value_at_quantile(0.99)),
            p999: s(h.value_at_quantile(0.999)),
            max: s(h.max()),
        }
    }
}

/// Seconds to the microsecond: what the histograms resolve, and stable text.
fn round(s: f64) -> f64 {
    (s * 1e6).round() / 1e6
}

/// The results at one gateway, one function, or the whole fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Results {
    /// Answered requests by status code.
    pub kantai_requests_total: BTreeMap<String, u64>,
    /// Arrival at the gateway to the response back at it (holding, queueing, links and
    /// service included), of the requests answered 200 (503s and 504s are counted by code).
    pub kantai_request_duration_seconds: Percentiles,
    /// Requests that found no instance and waited for one to start.
    pub kantai_cold_starts_total: u64,
    /// Their share of the answered requests.
    pub cold_start_share: f64,
    /// How long those requests waited for it.
    pub kantai_cold_start_duration_seconds: Percentiles,
    /// The latency distribution of the 200s as (seconds, fraction at or below) points, for
    /// plotting a CDF: the quantiles in [`CDF_QUANTILES`].
    pub latency_cdf: Vec<(f64, f64)>,
    /// With an objective (`output.slo`): the share of answered requests (errors included)
    /// answered 200 within it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_within_slo: Option<f64>,
    /// Requests that waited (held at the gateway or queued at an instance).
    pub queued_requests: u64,
    /// How long they waited in all.
    pub kantai_queueing_seconds: Percentiles,
}

/// The quantiles of `latency_cdf`: every 2 % of requests (a smooth curve where most
/// are), then dense in the tail, where policies differ.
pub const CDF_QUANTILES: [f64; 56] = [
    0.0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.22, 0.24, 0.26, 0.28,
    0.3, 0.32, 0.34, 0.36, 0.38, 0.4, 0.42, 0.44, 0.46, 0.48, 0.5, 0.52, 0.54, 0.56, 0.58, 0.6,
    0.62, 0.64, 0.66, 0.68, 0.7, 0.72, 0.74, 0.76, 0.78, 0.8, 0.82, 0.84, 0.86, 0.88, 0.9, 0.92,
    0.94, 0.96, 0.98, 0.99, 0.995, 0.999, 0.9999, 1.0,
];

/// Requests tallied into [`Results`]: the simulator's gateways, or a live run's records.
pub struct Tally {
    latency: Histogram<u64>,
    cold_wait: Histogram<u64>,
    queueing: Histogram<u64>,
    ok: u64,
    overflow: u64,
    timeout: u64,
    /// Answers with other codes (a live fleet's 502, a client's 0 for no answer).
    other: BTreeMap<u16, u64>,
    cold: u64,
    queued: u64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new()
    }
}

impl Tally {
    /// Nothing yet.
    pub fn new() -> Tally {
        Tally {
            latency: histogram(),
            cold_wait: histogram(),
            queueing: histogram(),
            ok: 0,
            overflow: 0,
            timeout: 0,
            other: BTreeMap::new(),
            cold: 0,
            queued: 0,
        }
    }

    /// One answered request: its status (0: no answer), its latency and, if it waited for
    /// a cold start, that it did (a live client knows that it waited, not how long).
    pub fn record(&mut self, status: u16, latency: std::time::Duration, cold: bool) {
        match status {
            200 => {
                self.ok += 1;
                let _ = self
                    .latency
                    .record((latency.as_micros() as u64).clamp(1, 3_600_000_000));
            }
            503 => self.overflow += 1,
            504 => self.timeout += 1,
            c => *self.other.entry(c).or_default() += 1,
        }
        if cold {
            self.cold += 1;
        }
    }

    /// Adds another tally.
    pub fn merge(&mut self, o: &Tally) {
        let _ = self.latency.add(&o.latency);
        let _ = self.cold_wait.add(&o.cold_wait);
        let _ = self.queueing.add(&o.queueing);
        self.ok += o.ok;
        self.overflow += o.overflow;
        self.timeout += o.timeout;
        for (c, n) in &o.other {
            *self.other.entry(*c).or_default() += n;
        }
        self.cold += o.cold;
        self.queued += o.queued;
    }

    fn add(&mut self, s: &GateStats) {
        let _ = self.latency.add(&s.latency);
        if let Some(h) = &s.cold_wait {
            let _ = self.cold_wait.add(h.as_ref());
        }
        if let Some(h) = &s.queueing {
            let _ = self.queueing.add(h.as_ref());
        }
        self.ok += s.ok;
        self.overflow += s.overflow;
        self.timeout += s.timeout;
        self.cold += s.cold;
        self.queued += s.queued;
    }

    /// The results, with the share within `slo_us` when given.
    pub fn results(&self, slo_us: Option<u64>) -> Results {
        let total = self.ok + self.overflow + self.timeout + self.other.values().sum::<u64>();
        let mut codes = BTreeMap::new();
        for (c, n) in [
            ("200", self.ok),
            ("503", self.overflow),
            ("504", self.timeout),
        ] {
            if n > 0 {
                codes.insert(c.to_owned(), n);
            }
        }
        for (c, n) in &self.other {
            codes.insert(c.to_string(), *n);
        }
        Results {
            kantai_requests_total: codes,
            kantai_request_duration_seconds: Percentiles::of(&self.latency),
            kantai_cold_starts_total: self.cold,
            cold_start_share: if total > 0 {
                round(self.cold as f64 / total as f64)
            } else {
                0.0
            },
            kantai_cold_start_duration_seconds: Percentiles::of(&self.cold_wait),
            latency_cdf: if self.latency.is_empty() {
                Vec::new()
            } else {
                CDF_QUANTILES
                    .iter()
                    .map(|&q| (round(self.latency.value_at_quantile(q) as f64 / 1e6), q))
                    .collect()
            },
            share_within_slo: slo_us.map(|slo| {
                if total == 0 {
                    0.0
                } else {
                    round(self.latency.count_between(0, slo) as f64 / total as f64)
                }
            }),
            queued_requests: self.queued,
            kantai_queueing_seconds: Percentiles::of(&self.queueing),
        }
    }
}

/// One origin node's view of one function.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OriginResults {
    /// The node requests entered.
    pub origin_node: String,
    /// What they got.
    #[serde(flatten)]
    pub results: Results,
}

/// One function.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionResults {
    /// Namespace.
    pub namespace: String,
    /// Service.
    pub service: String,
    /// Revision.
    pub revision: String,
    /// Placement policy.
    pub placement: String,
    /// Load balancer.
    pub load_balancer: String,
    /// Queue discipline.
    pub queue: String,
    /// Keep-alive policy.
    pub keep_alive: String,
    /// containerConcurrency.
    pub container_concurrency: u32,
    /// Instance-seconds after the warm-up (the cost): from each start to its stop.
    pub kantai_instance_seconds_total: f64,
    /// Instances started.
    pub instances_started: u64,
    /// Of those, instances a node started on its own decision (a cold start at the node);
    /// absent from a live run's summary, whose agents count them per node, not per revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kantai_local_starts_total: Option<u64>,
    /// The most instances the autoscaler wanted at once.
    pub kantai_autoscaler_desired_instances_max: u32,
    /// All origins together.
    #[serde(flatten)]
    pub results: Results,
    /// Per origin node.
    pub origins: Vec<OriginResults>,
}

/// One node's instances at one time (nodes with instances only).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeSample {
    /// Seconds since the start.
    pub t: f64,
    /// The node.
    pub node: String,
    /// Ready instances on it.
    pub ready: u32,
    /// Instances starting on it.
    pub starting: u32,
}

/// The fleet's instances at one time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceSample {
    /// Seconds since the start.
    pub t: f64,
    /// Ready instances (draining ones included).
    pub ready: u32,
    /// Instances in their cold start.
    pub starting: u32,
}

/// The fleet's latency (200s) over one sampling interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySample {
    /// End of the interval, seconds since the start.
    pub t: f64,
    /// Requests answered 200 in it.
    pub requests: u64,
    /// Median, seconds.
    pub p50: f64,
    /// 95th percentile, seconds.
    pub p95: f64,
    /// 99th percentile, seconds.
    pub p99: f64,
}

/// A run's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// The scenario's seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Functions.
    pub functions: usize,
    /// The scenario's duration (arrivals stop then).
    pub duration_seconds: f64,
    /// When the last request was answered.
    pub simulated_seconds: f64,
    /// Requests arriving before this were not counted.
    pub warmup_seconds: f64,
    /// Events processed.
    pub events: u64,
    /// Instance-seconds of all functions after the warm-up.
    pub kantai_instance_seconds_total: f64,
    /// Instances per node over time (in instances.csv, not in summary.json).
    #[serde(skip)]
    pub nodes_over_time: Vec<NodeSample>,
    /// Every function at every origin.
    #[serde(flatten)]
    pub results: Results,
    /// Per function.
    pub by_function: Vec<FunctionResults>,
    /// The fleet's instances over time.
    pub instances: Vec<InstanceSample>,
    /// The fleet's latency over time (every `sample-every`; per function in `latency.csv`).
    pub latency_over_time: Vec<LatencySample>,
}

/// What a run writes.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The summary.
    pub summary: Summary,
    /// `requests.csv`.
    pub requests_csv: String,
    /// `instances.csv`.
    pub instances_csv: String,
    /// `latency.csv`: per function (and `*` for the fleet) and sampling interval.
    pub latency_csv: String,
}

impl Outcome {
    /// The summary as pretty JSON.
    pub fn summary_json(&self) -> String {
        serde_json::to_string_pretty(&self.summary).unwrap_or_default() + "\n"
    }
}

impl Sim {
    /// The results of a finished run.
    pub fn outcome(&self) -> Outcome {
        let mut fleet = Tally::new();
        let mut by_function = Vec::with_capacity(self.funcs.len());
        let mut csv = String::from(
            "namespace,service,revision,origin_node,requests,code_200,code_503,code_504,\
             p50_ms,p90_ms,p95_ms,p99_ms,max_ms,mean_ms,cold_starts,cold_start_p50_ms,\
             queued,queueing_p50_ms,queueing_p95_ms\n",
        );
        let mut total_instance_ns: u128 = 0;
        for f in &self.funcs {
            let mut acc = Tally::new();
            let mut gates: Vec<u32> = f.gates.clone();
            gates.sort_by_key(|g| self.gates[*g as usize].origin);
            let mut origins = Vec::with_capacity(gates.len());
            for g in gates {
                let gate = &self.gates[g as usize];
                acc.add(&gate.stats);
                fleet.add(&gate.stats);
                let mut one = Tally::new();
                one.add(&gate.stats);
                let r = one.results(self.slo_us);
                let node = self.net.nodes[gate.origin as usize].name.clone();
                csv_row(&mut csv, f, &node, &one, &r);
                origins.push(OriginResults {
                    origin_node: node,
                    results: r,
                });
            }
            total_instance_ns += f.instance_ns;
            by_function.push(FunctionResults {
                namespace: f.namespace.clone(),
                service: f.service.clone(),
                revision: f.revision.clone(),
                placement: f.scaler.policy().to_owned(),
                load_balancer: f.lb_name.clone(),
                queue: f.queue_name.clone(),
                keep_alive: f.scaler.keep_alive().to_owned(),
                container_concurrency: f.cc,
                kantai_instance_seconds_total: round(f.instance_ns as f64 / 1e9),
                instances_started: f.instances_started,
                kantai_local_starts_total: Some(f.local_starts),
                kantai_autoscaler_desired_instances_max: f.desired_max,
                results: acc.results(self.slo_us),
                origins,
            });
        }
        let mut instances_csv = String::from("t,node,ready,starting\n");
        let mut nodes_over_time = Vec::with_capacity(self.series.len());
        for &(t, node, ready, starting) in &self.series {
            nodes_over_time.push(NodeSample {
                t: round(t as f64 / 1e9),
                node: self.net.nodes[node as usize].name.clone(),
                ready,
                starting,
            });
            let _ = writeln!(
                instances_csv,
                "{:.3},{},{ready},{starting}",
                t as f64 / 1e9,
                self.net.nodes[node as usize].name
            );
        }
        let instances = self
            .totals
            .iter()
            .map(|&(t, ready, starting)| InstanceSample {
                t: round(t as f64 / 1e9),
                ready,
                starting,
            })
            .collect();
        let mut latency_csv = String::from("t,namespace,service,requests,p50_ms,p95_ms,p99_ms\n");
        let mut latency_over_time = Vec::new();
        for &(t, f, n, p50, p95, p99) in &self.latency_series {
            let (ns, svc) = match self.funcs.get(f as usize) {
                Some(f) => (f.namespace.as_str(), f.service.as_str()),
                None => {
                    latency_over_time.push(LatencySample {
                        t: round(t as f64 / 1e9),
                        requests: n,
                        p50: round(p50 as f64 / 1e6),
                        p95: round(p95 as f64 / 1e6),
                        p99: round(p99 as f64 / 1e6),
                    });
                    ("", "*")
                }
            };
            let _ = writeln!(
                latency_csv,
                "{:.3},{ns},{svc},{n},{:.3},{:.3},{:.3}",
                t as f64 / 1e9,
                p50 as f64 / 1e3,
                p95 as f64 / 1e3,
                p99 as f64 / 1e3
            );
        }
        Outcome {
            latency_csv,
            summary: Summary {
                latency_over_time,
                seed: self.seed,
                nodes: self.net.nodes.len(),
                functions: self.funcs.len(),
                duration_seconds: self.duration as f64 / 1e9,
                simulated_seconds: round(self.now as f64 / 1e9),
                warmup_seconds: self.warmup as f64 / 1e9,
                events: self.events,
                kantai_instance_seconds_total: round(total_instance_ns as f64 / 1e9),
                nodes_over_time,
                results: fleet.results(self.slo_us),
                by_function,
                instances,
            },
            requests_csv: csv,
            instances_csv,
        }
    }
}

fn csv_row(out: &mut String, f: &crate::engine::Func, node: &str, a: &Tally, r: &Results) {
    let ms = |s: f64| s * 1e3;
    let l = &r.kantai_request_duration_seconds;
    let _ = writeln!(
        out,
        "{},{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{:.3},{},{:.3},{:.3}",
        f.namespace,
        f.service,
        f.revision,
        node,
        a.ok + a.overflow + a.timeout,
        a.ok,
        a.overflow,
        a.timeout,
        ms(l.p50),
        ms(l.p90),
        ms(l.p95),
        ms(l.p99),
        ms(l.max),
        ms(l.mean),
        a.cold,
        ms(r.kantai_cold_start_duration_seconds.p50),
        a.queued,
        ms(r.kantai_queueing_seconds.p50),
        ms(r.kantai_queueing_seconds.p95),
    );
}

impl Outcome {
    /// The run as a report page: tables of results, the latency CDF of the busiest
    /// functions, the fleet's latency and instances over time.
    pub fn page(&self, title: &str) -> kantai_report::Page {
        use kantai_report::{Block, Chart, Page, Scale, Series, Table};
        let s = &self.summary;
        let ms = |x: f64| format!("{:.2}", x * 1e3);
        let total = |r: &Results| r.kantai_requests_total.values().sum::<u64>();
        let code = |r: &Results, c: &str| r.kantai_requests_total.get(c).copied().unwrap_or(0);
        let mut page = Page {
            title: title.to_owned(),
            blocks: Vec::new(),
        };
        page.push(Block::Text(format!(
            "{} nodes, {} functions, {:.0} s simulated ({:.0} s of arrivals, the first {:.0} s not counted), seed {}: {} requests answered, {} × 503, {} × 504, p50 {} ms, p95 {} ms, p99 {} ms, {} cold starts, {:.1} instance-seconds.",
            s.nodes,
            s.functions,
            s.simulated_seconds,
            s.duration_seconds,
            s.warmup_seconds,
            s.seed,
            total(&s.results),
            code(&s.results, "503"),
            code(&s.results, "504"),
            ms(s.results.kantai_request_duration_seconds.p50),
            ms(s.results.kantai_request_duration_seconds.p95),
            ms(s.results.kantai_request_duration_seconds.p99),
            s.results.kantai_cold_starts_total,
            s.kantai_instance_seconds_total,
        )));
        let mut busiest: Vec<&FunctionResults> = s.by_function.iter().collect();
        busiest.sort_by_key(|f| std::cmp::Reverse(total(&f.results)));
        let shown = busiest.len().min(20);
        page.push(Block::Heading(if shown < busiest.len() {
            format!("The {shown} busiest of {} functions", busiest.len())
        } else {
            "Functions".to_owned()
        }));
        let mut table = Table {
            headers: [
                "service",
                "origin",
                "policies",
                "requests",
                "503",
                "504",
                "p50 (ms)",
                "p95 (ms)",
                "p99 (ms)",
                "cold starts",
                "instance-s",
            ]
            .map(str::to_owned)
            .to_vec(),
            rows: Vec::new(),
        };
        for f in &busiest[..shown] {
            let mut policies = format!("{} + {} + {}", f.placement, f.load_balancer, f.queue);
            if f.keep_alive != PolicyKind::KeepAlive.default_name() {
                policies.push_str(&format!(" + keep-alive {}", f.keep_alive));
            }
            let row = |origin: &str, r: &Results, cost: String| {
                vec![
                    f.service.clone(),
                    origin.to_owned(),
                    policies.clone(),
                    total(r).to_string(),
                    code(r, "503").to_string(),
                    code(r, "504").to_string(),
                    ms(r.kantai_request_duration_seconds.p50),
                    ms(r.kantai_request_duration_seconds.p95),
                    ms(r.kantai_request_duration_seconds.p99),
                    r.kantai_cold_starts_total.to_string(),
                    cost,
                ]
            };
            table.rows.push(row(
                "all",
                &f.results,
                format!("{:.1}", f.kantai_instance_seconds_total),
            ));
            if f.origins.len() > 1 && f.origins.len() <= 5 {
                for o in &f.origins {
                    table
                        .rows
                        .push(row(&o.origin_node, &o.results, String::new()));
                }
            }
        }
        page.push(Block::Table(table));
        page.push(Block::Heading("Latency".to_owned()));
        let cdf = cdf_chart(
            "Latency distribution (answered requests)".to_owned(),
            busiest
                .iter()
                .take(8)
                .filter(|f| !f.results.latency_cdf.is_empty())
                .map(|f| f.results.cdf_series(&f.service))
                .collect(),
        );
        page.push(Block::Chart("latency-cdf.svg".to_owned(), cdf));
        let over = |pick: fn(&LatencySample) -> f64, label: &str| Series {
            label: label.to_owned(),
            points: s
                .latency_over_time
                .iter()
                .map(|l| (l.t, pick(l) * 1e3))
                .collect(),
            // Each point is the interval ending there.
            step: false,
            style: None,
        };
        page.push(Block::Chart(
            "latency-over-time.svg".to_owned(),
            Chart {
                title: "The fleet's latency over time".to_owned(),
                x_label: "time (s)".to_owned(),
                y_label: "latency (ms)".to_owned(),
                x_scale: Scale::Linear,
                y_range: None,
                series: vec![
                    over(|l| l.p50, "p50"),
                    over(|l| l.p95, "p95"),
                    over(|l| l.p99, "p99"),
                ],
            },
        ));
        page.push(Block::Heading("Instances".to_owned()));
        let count = |pick: fn(&InstanceSample) -> u32, label: &str| Series {
            label: label.to_owned(),
            points: s
                .instances
                .iter()
                .map(|i| (i.t, f64::from(pick(i))))
                .collect(),
            step: true,
            style: None,
        };
        page.push(Block::Chart(
            "instances.svg".to_owned(),
            Chart {
                title: "Instances in the fleet".to_owned(),
                x_label: "time (s)".to_owned(),
                y_label: "instances".to_owned(),
                x_scale: Scale::Linear,
                y_range: None,
                series: vec![
                    count(|i| i.ready, "ready"),
                    count(|i| i.starting, "starting"),
                ],
            },
        ));
        page.push(Block::Text(
            "Per node: instances.csv. Raw results: summary.json, requests.csv, latency.csv."
                .to_owned(),
        ));
        page
    }
}

impl Results {
    /// The latency CDF as a chart line (x in ms).
    pub fn cdf_series(&self, label: &str) -> kantai_report::Series {
        kantai_report::Series {
            label: label.to_owned(),
            points: self
                .latency_cdf
                .iter()
                .map(|&(x, q)| (x * 1e3, q))
                .collect(),
            step: false,
            style: None,
        }
    }
}

/// A chart of latency CDFs: log-scale milliseconds against the share at or below.
pub fn cdf_chart(title: String, series: Vec<kantai_report::Series>) -> kantai_report::Chart {
    kantai_report::Chart {
        title,
        x_label: "latency (ms, log scale)".to_owned(),
        y_label: "share of requests at or below".to_owned(),
        x_scale: kantai_report::Scale::Log,
        y_range: Some((0.0, 1.0)),
        series,
    }
}
