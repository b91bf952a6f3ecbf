//! `kantai experiment FILE`: a comparison of policy sets over load levels and repetitions,
//! run in the simulator (live mode comes next), written as a report with tables and charts.
//!
//! ```yaml
//! name: FaaSt's experiment, simulated
//! scenario: ../sim/faast-paper.yaml      # a `kantai sim` scenario: fleet, functions, load per unit
//! mode: sim
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
use kantai_sim::{Progress, Scenario, Summary};
use serde::Deserialize;

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
}

/// Where an experiment runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// In the simulator.
    #[default]
    Sim,
    /// On a live fleet (not yet).
    Live,
    /// Both, compared (not yet).
    Both,
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
}

fn one() -> u32 {
    1
}

/// One run's result.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The policy set.
    pub policy: String,
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
        if e.mode != Mode::Sim {
            return Err(bad(
                "mode: only `sim` runs today; live and live-vs-sim experiments are not implemented yet".into(),
            ));
        }
        Ok(e)
    }

    fn levels(&self) -> Vec<f64> {
        self.levels
            .as_ref()
            .map_or_else(|| vec![1.0], |l| l.values.clone())
    }

    /// Runs every policy set at every level, `repetitions` times, in the simulator.
    /// `path` is the experiment file (the scenario is relative to it); `progress` hears
    /// (runs done, runs in all) before each run.
    pub fn run(
        &self,
        path: &Path,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<Vec<RunResult>, ExperimentError> {
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let scenario_path = Scenario::resolve(base_dir, &self.scenario);
        let text = std::fs::read_to_string(&scenario_path).map_err(|e| ExperimentError::File {
            file: scenario_path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = Scenario::parse(&text, &scenario_path.display().to_string())?;
        let levels = self.levels();
        let total = self.policies.len() * levels.len() * self.repetitions as usize;
        let mut out = Vec::with_capacity(total);
        for p in &self.policies {
            for &level in &levels {
                for k in 0..self.repetitions {
                    progress(out.len(), total, &p.name);
                    let mut s = base.scaled(level);
                    s.seed = base.seed.wrapping_add(u64::from(k));
                    s.policies = Some(PolicyNames {
                        placement: p.placement.clone(),
                        load_balancer: p.load_balancer.clone(),
                        queue: p.queue.clone(),
                    });
                    s.output.slo = self.slo.or(s.output.slo);
                    s.annotations.extend(p.annotations.clone());
                    s.output.placement_decisions = false;
                    s.output.load_balancing_decisions = false;
                    let mut prepared = kantai_sim::prepare_parsed(s, &scenario_path, None)?;
                    let outcome = kantai_sim::run(&mut prepared, &mut |_: Progress| {})?;
                    out.push(RunResult {
                        policy: p.name.clone(),
                        level,
                        repetition: k,
                        summary: outcome.summary,
                    });
                }
            }
        }
        progress(total, total, "");
        Ok(out)
    }

    /// `results.csv`: a row per run.
    pub fn csv(&self, runs: &[RunResult]) -> String {
        let level = self.levels.as_ref().map_or("level", |l| l.name.as_str());
        let mut s = format!(
            "policy,{level},repetition,seed,requests,code_503,code_504,p50_ms,p95_ms,p99_ms,share_within_slo,cold_starts,instance_seconds\n"
        );
        for r in runs {
            let x = &r.summary.results;
            let d = &x.kantai_request_duration_seconds;
            let code = |c: &str| x.kantai_requests_total.get(c).copied().unwrap_or(0);
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{},{},{:.1}",
                r.policy,
                r.level,
                r.repetition,
                r.summary.seed,
                x.kantai_requests_total.values().sum::<u64>(),
                code("503"),
                code("504"),
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

    /// The report: a table per policy set and level (repetitions averaged), the share within
    /// the objective and the p95 over the levels, and the latency CDF at the highest level.
    pub fn page(&self, runs: &[RunResult]) -> Page {
        let levels = self.levels();
        let level_name = self.levels.as_ref().map_or("level", |l| l.name.as_str());
        let slo_ms = self.slo.map(|d| d.0.as_secs_f64() * 1e3);
        let mean = |pol: &str, lvl: f64, f: &dyn Fn(&Summary) -> f64| {
            let v: Vec<f64> = runs
                .iter()
                .filter(|r| r.policy == pol && r.level == lvl)
                .map(|r| f(&r.summary))
                .collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let mut page = Page {
            title: self.name.clone(),
            blocks: Vec::new(),
        };
        page.push(Block::Text(format!(
            "Simulated with kantai sim: {} policy sets × {} {level_name} levels × {} repetition(s). Latencies are of the requests answered 200; errors count against the share within the objective.",
            self.policies.len(),
            levels.len(),
            self.repetitions
        )));
        let mut headers: Vec<String> = [
            "policies", level_name, "requests", "p50 (ms)", "p95 (ms)", "p99 (ms)",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(ms) = slo_ms {
            headers.push(format!("within {ms} ms"));
        }
        headers.extend(["503", "504", "cold starts", "instance-s"].map(str::to_owned));
        // Without levels there is one level: no column for it.
        let leveled = self.levels.is_some();
        if !leveled {
            headers.remove(1);
        }
        let mut table = Table {
            headers,
            rows: Vec::new(),
        };
        for p in &self.policies {
            for &l in &levels {
                let r = |f: &dyn Fn(&Summary) -> f64| mean(&p.name, l, f);
                let code = |c: &'static str| {
                    move |s: &Summary| {
                        s.results.kantai_requests_total.get(c).copied().unwrap_or(0) as f64
                    }
                };
                let mut row = vec![
                    p.name.clone(),
                    format!("{l}"),
                    format!(
                        "{:.0}",
                        r(&|s| s.results.kantai_requests_total.values().sum::<u64>() as f64)
                    ),
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
                    r(&|s| s.results.kantai_cold_starts_total as f64)
                ));
                row.push(format!("{:.1}", r(&|s| s.kantai_instance_seconds_total)));
                if !leveled {
                    row.remove(1);
                }
                table.rows.push(row);
            }
        }
        page.push(Block::Heading("Results".into()));
        page.push(Block::Table(table));
        let per_level = |f: &dyn Fn(&Summary) -> f64| -> Vec<Series> {
            self.policies
                .iter()
                .map(|p| Series {
                    label: p.name.clone(),
                    points: levels.iter().map(|&l| (l, mean(&p.name, l, f))).collect(),
                    step: false,
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
        page.push(Block::Chart(
            "latency-cdf.svg".into(),
            kantai_sim::report::cdf_chart(
                if leveled {
                    format!("Latency distribution at {top} {level_name}")
                } else {
                    "Latency distribution".to_owned()
                },
                self.policies
                    .iter()
                    .filter_map(|p| {
                        let r = runs.iter().find(|r| r.policy == p.name && r.level == top)?;
                        Some(r.summary.results.cdf_series(&p.name))
                    })
                    .collect(),
            ),
        ));
        page.push(Block::Heading("Instances".into()));
        page.push(Block::Chart(
            "instances.svg".into(),
            Chart {
                title: if leveled {
                    format!("Ready instances at {top} {level_name} (first repetition)")
                } else {
                    "Ready instances (first repetition)".to_owned()
                },
                x_label: "time (s)".into(),
                y_label: "ready instances".into(),
                x_scale: Scale::Linear,
                y_range: None,
                series: self
                    .policies
                    .iter()
                    .filter_map(|p| {
                        let r = runs
                            .iter()
                            .find(|r| r.policy == p.name && r.level == top && r.repetition == 0)?;
                        Some(Series {
                            label: p.name.clone(),
                            points: r
                                .summary
                                .instances
                                .iter()
                                .map(|i| (i.t, f64::from(i.ready)))
                                .collect(),
                            step: true,
                        })
                    })
                    .collect(),
            },
        ));
        page.push(Block::Text(
            "Raw data: results.csv (a row per run). Each run's scenario is the base scenario with its policies and rates replaced.".into(),
        ));
        page
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
            .run(&dir.join("t.yaml"), &mut |done, total, _| {
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
        assert!(csv.starts_with("policy,users,repetition,seed,"));
        assert_eq!(csv.lines().count(), 5);
        let page = e.page(&runs);
        let html = page.html();
        assert!(html.contains("within 15 ms") && html.matches("<svg").count() == 4);
    }

    #[test]
    fn bad_experiments_say_what_is_wrong() {
        for (text, needle) in [
            (
                "name: t\nscenario: s.yaml\npolicies: []\n",
                "at least one policy set",
            ),
            (
                "name: t\nscenario: s.yaml\nmode: live\npolicies: [{name: a}]\n",
                "only `sim` runs today",
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
