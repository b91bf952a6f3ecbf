//! `kantai experiment FILE`: a comparison of policy sets over load levels and repetitions,
//! run in the simulator, on a live fleet, or both, written as a report with tables and charts.
//!
//! ```yaml
//! name: FaaSt's experiment
//! scenario: ../sim/faast-paper.yaml      # a `kantai sim` scenario: fleet, functions, load per unit
//! mode: both                              # sim, live, or both (live and simulated on one plot)
//! slo: 15ms
//! repetitions: 1                          # seeds: the scenario's, +1, +2, ...
//! policies:
//!   - {name: knative, placement: spread, load-balancer: knative}
//!   - {name: faast, placement: latency-aware, load-balancer: faast}
//! levels: {name: users, values: [5, 10, 15]}   # every arrival rate × the level
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kantai_report::{Block, Chart, Page, Scale, Series, Table};
use kantai_sim::scenario::{Dur, PolicyNames};
use kantai_sim::{Prepared, Progress, Scenario, Summary};
use serde::Deserialize;

pub mod live;

/// Why an experiment cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The file is wrong.
    #[error("{file}: {message}")]
    File {
        /// The experiment or scenario file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A run could not start.
    #[error(transparent)]
    Sim(#[from] kantai_sim::SimError),
    /// A run could not finish (its output could not be written).
    #[error("a run could not finish: {0}")]
    Io(#[from] std::io::Error),
    /// A live run failed.
    #[error("live run {run}: {message}")]
    Live {
        /// Which run.
        run: String,
        /// Why.
        message: String,
    },
}

/// Runs one run on a live fleet. The `kantai` binary implements it: it starts fleets.
pub trait Live {
    /// Runs `run.prepared` (its scenario holds the run's policies, rates and seed) on a fresh
    /// fleet, writes the raw data under `run.dir`, and summarizes it ([`live::summarize`]).
    fn run(&mut self, run: LiveRun<'_>) -> Result<Summary, String>;
}

/// One live run's inputs.
pub struct LiveRun<'a> {
    /// The run, ready: its requests (`prepared.sim.into_requests()`), its Services.
    pub prepared: Prepared,
    /// The scenario file (relative paths start from its directory).
    pub scenario_path: &'a Path,
    /// Where its raw data goes.
    pub dir: &'a Path,
    /// The latency objective.
    pub slo: Option<std::time::Duration>,
    /// Hears how far the run is, as a short text.
    pub progress: &'a mut dyn FnMut(&str),
}

/// Where an experiment runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// On a live fleet on this machine (`kantai up`'s processes, emulated latency).
    Live,
    /// In the simulator.
    #[default]
    Sim,
    /// Both, each run live and simulated, compared on the same plots.
    Both,
}

impl Mode {
    fn word(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Sim => "sim",
            Mode::Both => "both",
        }
    }

    /// The modes a run is made in.
    fn runs(self) -> &'static [Mode] {
        match self {
            Mode::Live => &[Mode::Live],
            Mode::Sim => &[Mode::Sim],
            Mode::Both => &[Mode::Live, Mode::Sim],
        }
    }
}

/// A set of policies to compare.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicySet {
    /// Its name in tables and legends.
    pub name: String,
    /// Placement.
    #[serde(default)]
    pub placement: Option<String>,
    /// Load balancer.
    #[serde(default)]
    pub load_balancer: Option<String>,
    /// Queue discipline.
    #[serde(default)]
    pub queue: Option<String>,
    /// Keep-alive policy.
    #[serde(default)]
    pub keep_alive: Option<String>,
    /// Annotations over every service's (autoscaler settings such as
    /// `autoscaling.knative.dev/scale-to-zero-pod-retention-period`).
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Load levels: every arrival rate of the scenario is multiplied by each value.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Levels {
    /// What a level counts (`users`, `clients`, ...).
    pub name: String,
    /// The levels.
    pub values: Vec<f64>,
}

/// An experiment file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Experiment {
    /// Its title.
    pub name: String,
    /// The base scenario, relative to the experiment file.
    pub scenario: PathBuf,
    /// Where it runs.
    #[serde(default)]
    pub mode: Mode,
    /// The latency objective reported as a share.
    #[serde(default)]
    pub slo: Option<Dur>,
    /// Runs per policy set and level, each with the next seed.
    #[serde(default = "one")]
    pub repetitions: u32,
    /// The policy sets compared.
    pub policies: Vec<PolicySet>,
    /// Load levels (one level of 1 when absent).
    #[serde(default)]
    pub levels: Option<Levels>,
    /// Also plot each set's share of cold-started requests against its instance-seconds,
    /// one point per set (the keep-alive papers' figure).
    #[serde(default)]
    pub cold_start_tradeoff: bool,
}

fn one() -> u32 {
    1
}

/// A run's directory: its policy set's name made safe for a path, its level and repetition.
fn run_dir(policy: &str, level: f64, k: u32) -> String {
    let slug: String = policy
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug
        .split('-')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    format!("{slug}-{level}-{k}")
}

/// A CSV field, quoted when it holds a comma or a quote.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One run's result.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The policy set.
    pub policy: String,
    /// Where it ran ([`Mode::Live`] or [`Mode::Sim`]).
    pub mode: Mode,
    /// The level.
    pub level: f64,
    /// The repetition (0-based).
    pub repetition: u32,
    /// What the simulator reported.
    pub summary: Summary,
}

impl Experiment {
    /// Parses an experiment file.
    pub fn parse(text: &str, name: &str) -> Result<Experiment, ExperimentError> {
        let bad = |m: String| ExperimentError::File {
            file: name.to_owned(),
            message: m,
        };
        let e: Experiment = serde_saphyr::from_str(text).map_err(|e| bad(e.to_string()))?;
        if e.policies.is_empty() {
            return Err(bad("policies: give at least one policy set".into()));
        }
        if e.repetitions == 0 {
            return Err(bad("repetitions: must be at least 1".into()));
        }
        if let Some(l) = &e.levels
            && (l.values.is_empty() || l.values.iter().any(|v| !(v.is_finite() && *v > 0.0)))
        {
            return Err(bad("levels.values: give numbers above 0".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &e.policies {
            if !names.insert(p.name.as_str()) {
                return Err(bad(format!(
                    "policies: two policy sets are named {:?}; names label the results",
                    p.name
                )));
            }
        }
        Ok(e)
    }

    fn levels(&self) -> Vec<f64> {
        self.levels
            .as_ref()
            .map_or_else(|| vec![1.0], |l| l.values.clone())
    }

    /// Runs every policy set at every level, `repetitions` times, in each of the
    /// experiment's modes. `path` is the experiment file (the scenario is relative to it);
    /// live runs write their raw data under `out/runs/` and need `live`; `progress` hears
    /// (runs done, runs in all, what runs now).
    pub fn run(
        &self,
        path: &Path,
        out: &Path,
        mut live: Option<&mut dyn Live>,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<Vec<RunResult>, ExperimentError> {
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let scenario_path = Scenario::resolve(base_dir, &self.scenario);
        let text = std::fs::read_to_string(&scenario_path).map_err(|e| ExperimentError::File {
            file: scenario_path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = Scenario::parse(&text, &scenario_path.display().to_string())?;
        if self.mode != Mode::Sim && live.is_none() {
            return Err(ExperimentError::File {
                file: path.display().to_string(),
                message: format!(
                    "mode: {}: live runs start fleets, which only the kantai binary does (`kantai experiment`)",
                    self.mode.word()
                ),
            });
        }
        let levels = self.levels();
        let modes = self.mode.runs();
        let total = self.policies.len() * levels.len() * self.repetitions as usize * modes.len();
        let mut results = Vec::with_capacity(total);
        for p in &self.policies {
            for &level in &levels {
                for k in 0..self.repetitions {
                    let mut s = base.scaled(level);
                    s.seed = base.seed.wrapping_add(u64::from(k));
                    s.policies = Some(PolicyNames {
                        placement: p.placement.clone(),
                        load_balancer: p.load_balancer.clone(),
                        queue: p.queue.clone(),
                        keep_alive: p.keep_alive.clone(),
                    });
                    s.output.slo = self.slo.or(s.output.slo);
                    s.annotations.extend(p.annotations.clone());
                    s.output.placement_decisions = false;
                    s.output.load_balancing_decisions = false;
                    // Latency and instances over time in about 60 points (a second at least).
                    let fine = (s.duration.0 / 60).max(std::time::Duration::from_secs(1));
                    s.output.sample_every.0 = s.output.sample_every.0.min(fine);
                    // Where a live run (and, in `both`, its simulated twin) keeps its data.
                    let dir = out.join("runs").join(run_dir(&p.name, level, k));
                    for &mode in modes {
                        let label = format!("{} {level} #{k} {}", p.name, mode.word());
                        let done = results.len();
                        progress(done, total, &label);
                        let prepared = kantai_sim::prepare_parsed(s.clone(), &scenario_path, None)?;
                        let summary = match (mode, live.as_deref_mut()) {
                            (Mode::Live, Some(l)) => {
                                std::fs::create_dir_all(&dir)?;
                                l.run(LiveRun {
                                    prepared,
                                    scenario_path: &scenario_path,
                                    dir: &dir,
                                    slo: s.output.slo.map(|d| d.0),
                                    progress: &mut |what: &str| {
                                        progress(done, total, &format!("{label}: {what}"));
                                    },
                                })
                                .map_err(|message| {
                                    ExperimentError::Live {
                                        run: label.clone(),
                                        message,
                                    }
                                })?
                            }
                            _ => {
                                let mut prepared = prepared;
                                let summary =
                                    kantai_sim::run(&mut prepared, &mut |_: Progress| {})?.summary;
                                // Next to its live twin, for a closer look than the report's.
                                if self.mode == Mode::Both {
                                    std::fs::create_dir_all(&dir)?;
                                    std::fs::write(
                                        dir.join("sim-summary.json"),
                                        serde_json::to_string_pretty(&summary)
                                            .map_err(std::io::Error::other)?
                                            + "\n",
                                    )?;
                                }
                                summary
                            }
                        };
                        results.push(RunResult {
                            policy: p.name.clone(),
                            mode,
                            level,
                            repetition: k,
                            summary,
                        });
                    }
                }
            }
        }
        progress(total, total, "");
        Ok(results)
    }

    /// `results.csv`: a row per run.
    pub fn csv(&self, runs: &[RunResult]) -> String {
        let level = self.levels.as_ref().map_or("level", |l| l.name.as_str());
        let mut s = format!(
            "policy,mode,{level},repetition,seed,requests,code_503,code_504,other_errors,p50_ms,p95_ms,p99_ms,share_within_slo,cold_starts,instance_seconds\n"
        );
        for r in runs {
            let x = &r.summary.results;
            let d = &x.kantai_request_duration_seconds;
            let code = |c: &str| x.kantai_requests_total.get(c).copied().unwrap_or(0);
            let all = x.kantai_requests_total.values().sum::<u64>();
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{},{},{:.1}",
                csv_field(&r.policy),
                r.mode.word(),
                r.level,
                r.repetition,
                r.summary.seed,
                all,
                code("503"),
                code("504"),
                all - code("200") - code("503") - code("504"),
                d.p50 * 1e3,
                d.p95 * 1e3,
                d.p99 * 1e3,
                x.share_within_slo
                    .map_or(String::new(), |v| format!("{v:.4}")),
                x.kantai_cold_starts_total,
                r.summary.kantai_instance_seconds_total,
            );
        }
        s
    }

    /// The (policy set, mode) pairs of the report, with their legend labels and styles:
    /// live and simulated runs of one policy set share a colour, simulated ones dashed.
    fn variants(&self) -> Vec<(&PolicySet, Mode, String, (usize, usize))> {
        let both = self.mode == Mode::Both;
        let mut out = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            for &m in self.mode.runs() {
                let label = if both {
                    format!("{} ({})", p.name, m.word())
                } else {
                    p.name.clone()
                };
                let dash = if both { usize::from(m == Mode::Sim) } else { i };
                out.push((p, m, label, (i, dash)));
            }
        }
        out
    }

    /// The report: a table per policy set and level (repetitions averaged), the share within
    /// the objective and the p95 over the levels, the latency CDF, latency and instances over
    /// time at the highest level; with `mode: both`, live and simulated curves on one plot.
    pub fn page(&self, runs: &[RunResult]) -> Page {
        let levels = self.levels();
        let level_name = self.levels.as_ref().map_or("level", |l| l.name.as_str());
        let slo_ms = self.slo.map(|d| d.0.as_secs_f64() * 1e3);
        let both = self.mode == Mode::Both;
        let mean = |pol: &str, mode: Mode, lvl: f64, f: &dyn Fn(&Summary) -> f64| {
            let v: Vec<f64> = runs
                .iter()
                .filter(|r| r.policy == pol && r.mode == mode && r.level == lvl)
                .map(|r| f(&r.summary))
                .collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let mut page = Page {
            title: self.name.clone(),
            blocks: Vec::new(),
        };
        let how = match self.mode {
            Mode::Sim => "Simulated with kantai sim".to_owned(),
            Mode::Live => "Run on a live kantai fleet on one machine (a process per node, inter-node latency emulated in user space)".to_owned(),
            Mode::Both => "Run on a live kantai fleet on one machine (a process per node, inter-node latency emulated in user space) and simulated with kantai sim from the same requests; solid lines are live, dashed lines simulated".to_owned(),
        };
        let levels_text = if self.levels.is_some() {
            format!(" × {} {level_name} levels", levels.len())
        } else {
            String::new()
        };
        page.push(Block::Text(format!(
            "{how}: {} policy sets{levels_text} × {} repetition(s). Latencies are of the requests answered 200; errors count against the share within the objective.",
            self.policies.len(),
            self.repetitions
        )));
        let mut headers: Vec<String> = [
            "policies", "run", level_name, "requests", "p50 (ms)", "p95 (ms)", "p99 (ms)",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(ms) = slo_ms {
            headers.push(format!("within {ms} ms"));
        }
        headers
            .extend(["503", "504", "other errors", "cold starts", "instance-s"].map(str::to_owned));
        // Without levels there is one level: no column for it; one mode: no column for it.
        let leveled = self.levels.is_some();
        let drop_cols = |row: &mut Vec<String>| {
            if !leveled {
                row.remove(2);
            }
            if !both {
                row.remove(1);
            }
        };
        drop_cols(&mut headers);
        let mut table = Table {
            headers,
            rows: Vec::new(),
        };
        let code = |c: &'static str| {
            move |s: &Summary| s.results.kantai_requests_total.get(c).copied().unwrap_or(0) as f64
        };
        for (p, mode, _, _) in self.variants() {
            for &l in &levels {
                let r = |f: &dyn Fn(&Summary) -> f64| mean(&p.name, mode, l, f);
                let all =
                    |s: &Summary| s.results.kantai_requests_total.values().sum::<u64>() as f64;
                let mut row = vec![
                    p.name.clone(),
                    mode.word().to_owned(),
                    format!("{l}"),
                    format!("{:.0}", r(&all)),
                    format!(
                        "{:.2}",
                        r(&|s| s.results.kantai_request_duration_seconds.p50 * 1e3)
                    ),
                    format!(
                        "{:.2}",
                        r(&|s| s.results.kantai_request_duration_seconds.p95 * 1e3)
                    ),
                    format!(
                        "{:.2}",
                        r(&|s| s.results.kantai_request_duration_seconds.p99 * 1e3)
                    ),
                ];
                if slo_ms.is_some() {
                    row.push(format!(
                        "{:.1} %",
                        r(&|s| s.results.share_within_slo.unwrap_or(0.0)) * 100.0
                    ));
                }
                row.push(format!("{:.0}", r(&code("503"))));
                row.push(format!("{:.0}", r(&code("504"))));
                row.push(format!(
                    "{:.0}",
                    r(&|s| all(s) - code("200")(s) - code("503")(s) - code("504")(s))
                ));
                row.push(format!(
                    "{:.0}",
                    r(&|s| s.results.kantai_cold_starts_total as f64)
                ));
                row.push(format!("{:.1}", r(&|s| s.kantai_instance_seconds_total)));
                drop_cols(&mut row);
                table.rows.push(row);
            }
        }
        page.push(Block::Heading("Results".into()));
        page.push(Block::Table(table));
        if self.cold_start_tradeoff {
            let top = levels.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            page.push(Block::Heading(
                "Cold starts against instance-seconds".into(),
            ));
            page.push(Block::Chart(
                "cold-start-tradeoff.svg".into(),
                Chart {
                    title: "Requests that waited for a cold start against instance-seconds kept (mean of the repetitions)".into(),
                    x_label: "instance-seconds".into(),
                    y_label: "cold-started requests (%)".into(),
                    x_scale: Scale::Linear,
                    y_range: None,
                    series: self
                        .variants()
                        .into_iter()
                        .map(|(p, mode, label, style)| Series {
                            label,
                            points: vec![(
                                mean(&p.name, mode, top, &|s| s.kantai_instance_seconds_total),
                                mean(&p.name, mode, top, &|s| s.results.cold_start_share * 100.0),
                            )],
                            step: false,
                            // Filled dots; with live runs beside, the simulated ones hollow.
                            style: Some((style.0, if both { style.1 } else { 0 })),
                        })
                        .collect(),
                },
            ));
        }
        let per_level = |f: &dyn Fn(&Summary) -> f64| -> Vec<Series> {
            self.variants()
                .into_iter()
                .map(|(p, mode, label, style)| Series {
                    label,
                    points: levels
                        .iter()
                        .map(|&l| (l, mean(&p.name, mode, l, f)))
                        .collect(),
                    step: false,
                    style: Some(style),
                })
                .collect()
        };
        if let (Some(ms), true) = (slo_ms, leveled) {
            page.push(Block::Heading(format!("Requests within {ms} ms")));
            page.push(Block::Chart(
                "share-within-slo.svg".into(),
                Chart {
                    title: format!("Share of requests answered within {ms} ms"),
                    x_label: level_name.to_string(),
                    y_label: format!("share within {ms} ms (%)"),
                    x_scale: Scale::Linear,
                    y_range: Some((0.0, 100.0)),
                    series: per_level(&|s| s.results.share_within_slo.unwrap_or(0.0) * 100.0),
                },
            ));
        }
        page.push(Block::Heading("Latency".into()));
        if leveled {
            page.push(Block::Chart(
                "p95.svg".into(),
                Chart {
                    title: "95th percentile latency".into(),
                    x_label: level_name.to_string(),
                    y_label: "p95 latency (ms)".into(),
                    x_scale: Scale::Linear,
                    y_range: None,
                    series: per_level(&|s| s.results.kantai_request_duration_seconds.p95 * 1e3),
                },
            ));
        }
        let top = levels.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let at_top = if leveled {
            format!(" at {top} {level_name}")
        } else {
            String::new()
        };
        // The first repetition at the highest level, per variant.
        let first = |p: &PolicySet, mode: Mode| {
            runs.iter().find(|r| {
                r.policy == p.name && r.mode == mode && r.level == top && r.repetition == 0
            })
        };
        page.push(Block::Chart(
            "latency-cdf.svg".into(),
            kantai_sim::report::cdf_chart(
                format!("Latency distribution{at_top}"),
                self.variants()
                    .into_iter()
                    .filter_map(|(p, mode, label, style)| {
                        let mut s = first(p, mode)?.summary.results.cdf_series(&label);
                        s.style = Some(style);
                        Some(s)
                    })
                    .collect(),
            ),
        ));
        let over_time = |f: &dyn Fn(&kantai_sim::report::LatencySample) -> f64| -> Vec<Series> {
            self.variants()
                .into_iter()
                .filter_map(|(p, mode, label, style)| {
                    Some(Series {
                        label,
                        points: first(p, mode)?
                            .summary
                            .latency_over_time
                            .iter()
                            .map(|l| (l.t, f(l)))
                            .collect(),
                        step: false,
                        style: Some(style),
                    })
                })
                .collect()
        };
        page.push(Block::Chart(
            "latency-over-time.svg".into(),
            Chart {
                title: format!("95th percentile latency over time{at_top} (first repetition)"),
                x_label: "time (s)".into(),
                y_label: "p95 latency (ms)".into(),
                x_scale: Scale::Linear,
                y_range: None,
                series: over_time(&|l| l.p95 * 1e3),
            },
        ));
        page.push(Block::Heading("Instances".into()));
        page.push(Block::Chart(
            "instances.svg".into(),
            Chart {
                title: format!("Ready instances{at_top} (first repetition)"),
                x_label: "time (s)".into(),
                y_label: "ready instances".into(),
                x_scale: Scale::Linear,
                y_range: None,
                series: self
                    .variants()
                    .into_iter()
                    .filter_map(|(p, mode, label, style)| {
                        Some(Series {
                            label,
                            points: first(p, mode)?
                                .summary
                                .instances
                                .iter()
                                .map(|i| (i.t, f64::from(i.ready)))
                                .collect(),
                            step: true,
                            style: Some(style),
                        })
                    })
                    .collect(),
            },
        ));
        for (k, (p, mode, label, _)) in self.variants().into_iter().enumerate() {
            let Some(r) = first(p, mode) else { continue };
            page.push(Block::Chart(
                format!("instances-per-node-{}.svg", k + 1),
                per_node_chart(
                    &r.summary,
                    format!("Ready instances per node: {label}{at_top}"),
                ),
            ));
        }
        page.push(Block::Text(
            if self.mode == Mode::Sim {
                "Raw data: results.csv (a row per run). Each run's scenario is the base scenario with its policies and rates replaced."
            } else {
                "Raw data: results.csv (a row per run); each live run's directory under runs/ holds requests.csv (every request: planned time, origin, serving node and instance, status, latency, cold or warm), timeline.csv (the fleet's metrics every second) and the decision logs."
            }
            .into(),
        ));
        page
    }
}

/// Ready instances over time on the nodes that held the most instance-time (eight at most).
fn per_node_chart(s: &Summary, title: String) -> Chart {
    let mut weight: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for n in &s.nodes_over_time {
        *weight.entry(&n.node).or_default() += u64::from(n.ready);
    }
    let mut nodes: Vec<(&str, u64)> = weight.into_iter().collect();
    nodes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    nodes.truncate(8);
    nodes.sort_by(|a, b| a.0.cmp(b.0));
    // A node missing from a sample had none then.
    let times: Vec<f64> = s.instances.iter().map(|i| i.t).collect();
    let series = nodes
        .iter()
        .map(|(node, _)| {
            let mut at = s
                .nodes_over_time
                .iter()
                .filter(|n| n.node == *node)
                .peekable();
            let points = times
                .iter()
                .map(|&t| {
                    while at.peek().is_some_and(|n| n.t < t) {
                        at.next();
                    }
                    let v = at.peek().filter(|n| n.t == t).map_or(0, |n| n.ready);
                    (t, f64::from(v))
                })
                .collect();
            Series {
                label: (*node).to_owned(),
                points,
                step: true,
                style: None,
            }
        })
        .collect();
    Chart {
        title,
        x_label: "time (s)".into(),
        y_label: "ready instances".into(),
        x_scale: Scale::Linear,
        y_range: None,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_experiment_compares_its_policy_sets_over_levels() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/experiments");
        let e = Experiment::parse(
            "name: t\nscenario: ../sim/seed-demo.yaml\nslo: 15ms\npolicies:\n  - {name: knative, placement: spread, load-balancer: knative}\n  - {name: faast, placement: latency-aware, load-balancer: faast}\nlevels: {name: users, values: [0.5, 1]}\n",
            "t.yaml",
        )
        .expect("parses");
        let mut seen = Vec::new();
        let runs = e
            .run(&dir.join("t.yaml"), &dir, None, &mut |done, total, _| {
                seen.push((done, total))
            })
            .expect("runs");
        assert_eq!(runs.len(), 4);
        assert_eq!(seen.last(), Some(&(4, 4)));
        let share = |p: &str, l: f64| {
            runs.iter()
                .find(|r| r.policy == p && r.level == l)
                .and_then(|r| r.summary.results.share_within_slo)
                .expect("share")
        };
        // From the edge, ikukantai's pair answers nearly all within 15 ms; Knative's none.
        assert!(share("faast", 1.0) > 0.95 && share("knative", 1.0) < 0.05);
        // Half the users, about half the requests.
        let n = |l: f64| {
            runs.iter()
                .find(|r| r.policy == "knative" && r.level == l)
                .map(|r| {
                    r.summary
                        .results
                        .kantai_requests_total
                        .values()
                        .sum::<u64>()
                })
                .expect("n")
        };
        assert!((n(0.5) as f64 / n(1.0) as f64 - 0.5).abs() < 0.1);
        let csv = e.csv(&runs);
        assert!(csv.starts_with("policy,mode,users,repetition,seed,"));
        assert!(
            csv.lines()
                .nth(1)
                .expect("row")
                .starts_with("knative,sim,0.5,0,")
        );
        assert_eq!(csv.lines().count(), 5);
        let page = e.page(&runs);
        let html = page.html();
        // Share and p95 over the levels, CDF, latency and instances over time, instances per
        // node of each policy set.
        assert!(html.contains("within 15 ms") && html.matches("<svg").count() == 7);
        assert!(!html.contains("<th>run</th>"));
    }

    #[test]
    fn live_modes_need_a_live_driver() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/experiments");
        let e = Experiment::parse(
            "name: t\nscenario: ../sim/seed-demo.yaml\nmode: both\npolicies: [{name: a}]\n",
            "t.yaml",
        )
        .expect("parses");
        let err = e
            .run(&dir.join("t.yaml"), &dir, None, &mut |_, _, _| {})
            .expect_err("no driver");
        assert!(err.to_string().contains("only the kantai binary"), "{err}");
    }

    /// A stand-in for the live fleet: it checks what a live run is given and answers with
    /// the simulator's summary, so that the report's live-vs-sim layout can be checked here.
    struct Replay(Vec<String>);

    impl Live for Replay {
        fn run(&mut self, mut run: LiveRun<'_>) -> Result<Summary, String> {
            (run.progress)("halfway");
            self.0.push(run.dir.display().to_string());
            let o = kantai_sim::run(&mut run.prepared, &mut |_| {}).map_err(|e| e.to_string())?;
            Ok(o.summary)
        }
    }

    #[test]
    fn both_modes_put_live_and_simulated_runs_side_by_side() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/experiments");
        let out = std::env::temp_dir().join(format!("kantai-exp-{}", std::process::id()));
        let e = Experiment::parse(
            "name: t\nscenario: ../sim/seed-demo.yaml\nmode: both\nslo: 15ms\npolicies:\n  - {name: \"faast, edge\", placement: latency-aware, load-balancer: faast}\nlevels: {name: users, values: [0.5, 1]}\n",
            "t.yaml",
        )
        .expect("parses");
        let mut replay = Replay(Vec::new());
        let mut heard = Vec::new();
        let runs = e
            .run(
                &dir.join("t.yaml"),
                &out,
                Some(&mut replay),
                &mut |d, t, what| heard.push(format!("{d}/{t} {what}")),
            )
            .expect("runs");
        let _ = std::fs::remove_dir_all(&out);
        assert_eq!(runs.len(), 4);
        assert_eq!(
            runs.iter().map(|r| r.mode).collect::<Vec<_>>(),
            [Mode::Live, Mode::Sim, Mode::Live, Mode::Sim]
        );
        assert!(
            replay.0[0].ends_with("runs/faast-edge-0.5-0"),
            "{:?}",
            replay.0
        );
        assert!(
            heard.contains(&"0/4 faast, edge 0.5 #0 live: halfway".to_owned()),
            "{heard:?}"
        );
        let csv = e.csv(&runs);
        assert!(
            csv.lines()
                .nth(1)
                .expect("row")
                .starts_with("\"faast, edge\",live,0.5,"),
            "{csv}"
        );
        let page = e.page(&runs);
        let (md, charts) = page.markdown();
        assert!(md.contains("| faast, edge | live | 0.5 |"), "{md}");
        let share = &charts
            .iter()
            .find(|(n, _)| n == "share-within-slo.svg")
            .expect("chart")
            .1;
        assert!(share.contains("faast, edge (live)") && share.contains("faast, edge (sim)"));
        // One colour for the pair, the simulated curve dashed.
        assert_eq!(share.matches("stroke-dasharray").count(), 2, "{share}");
    }

    #[test]
    fn bad_experiments_say_what_is_wrong() {
        for (text, needle) in [
            (
                "name: t\nscenario: s.yaml\npolicies: []\n",
                "at least one policy set",
            ),
            (
                "name: t\nscenario: s.yaml\nmode: lve\npolicies: [{name: a}]\n",
                "live",
            ),
            (
                "name: t\nscenario: s.yaml\npolicies: [{name: a}, {name: a}]\n",
                "two policy sets are named \"a\"",
            ),
            (
                "name: t\nscenario: s.yaml\npolicies: [{name: a}]\nlevels: {name: u, values: [0]}\n",
                "above 0",
            ),
            (
                "name: t\nscenario: s.yaml\npolicies: [{name: a, balancer: x}]\n",
                "unknown field `balancer`",
            ),
        ] {
            let e = Experiment::parse(text, "e.yaml")
                .expect_err(text)
                .to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
