//! The scenario file: what to simulate (topology, services, workload, policies, seed) and
//! what to write. Paths in it are relative to the file. `docs/simulator.md` documents every
//! key with an example; errors name the key and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::SimError;
use crate::dist::Dist;

/// A scenario as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// Seed of every random draw; the same scenario and seed give the same output.
    #[serde(default = "one")]
    pub seed: u64,
    /// Simulated time: no request arrives after it; requests still in flight then finish.
    pub duration: Dur,
    /// Requests arriving before this are served but not counted (a warm-up).
    #[serde(default)]
    pub warmup: Dur,
    /// The fleet's nodes and links; the seed's three-node testbed when absent.
    #[serde(default)]
    pub topology: Option<TopologySpec>,
    /// A fleet config file (`autoscaler`, `defaults`, `policies`, `dataplane.hold-limit`).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Fleet-wide default policies, over the config file's `policies`.
    #[serde(default)]
    pub policies: Option<PolicyNames>,
    /// Knative manifest files whose Services are the functions.
    #[serde(default)]
    pub services: Vec<PathBuf>,
    /// Time the data plane and the client add to every answered request outside the
    /// instance (proxying, connection handling): added to its latency, occupying nothing.
    /// Calibrate it from a live fleet (docs/simulator.md); none by default.
    #[serde(default)]
    pub gateway_overhead: Option<Dist>,
    /// Annotations added to every service's revision template, over the manifest's
    /// (`autoscaling.knative.dev/*`, `kantai.dev/*`): how an experiment varies autoscaler
    /// settings.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// What the simulator needs to know of each service beyond its manifest.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionSpec>,
    /// Defaults for functions not listed in `functions`.
    #[serde(default)]
    pub function_defaults: FunctionSpec,
    /// Synthetic functions shaped like the Azure Functions 2019 trace, with their workload.
    #[serde(default)]
    pub synthetic: Option<Synthetic>,
    /// The requests.
    #[serde(default)]
    pub workload: Vec<WorkloadSpec>,
    /// What to record.
    #[serde(default)]
    pub output: OutputSpec,
}

fn one() -> u64 {
    1
}

/// A duration written as `500ms`, `2s`, `1m30s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a Go-style duration (`250ms`, `1m30s`); negative durations are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let ns = kantai_model::units::parse_go_duration(s.trim())?;
    if ns < 0 {
        return Err(format!(
            "{s:?} is negative; a duration here must be 0 or more"
        ));
    }
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| format!("{s:?} is too long"))
}

/// Where the nodes come from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum TopologySpec {
    /// The fleet's topology file (`kantai up --topology`), as is.
    File(PathBuf),
    /// A generated fleet of sites.
    Generate(GeneratedTopology),
}

/// A generated topology: `nodes` nodes spread evenly over `sites` sites placed at random on
/// a plane; round trips between sites grow with distance from `min-rtt` to `max-rtt`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GeneratedTopology {
    /// Number of nodes.
    pub nodes: u32,
    /// Number of sites (nodes of a site share a LAN).
    pub sites: u32,
    /// Round trip within a site.
    #[serde(default = "lan_rtt")]
    pub lan_rtt: Dur,
    /// Round trip between the two nearest possible sites.
    #[serde(default = "min_rtt")]
    pub min_rtt: Dur,
    /// Round trip between the two farthest possible sites.
    #[serde(default = "max_rtt")]
    pub max_rtt: Dur,
    /// Jitter between sites, as a fraction of the round trip.
    #[serde(default)]
    pub jitter: f64,
    /// Loss between sites (0 ≤ loss < 1).
    #[serde(default)]
    pub loss: f64,
    /// Most instances a node runs (unlimited when absent).
    #[serde(default)]
    pub instances_per_node: Option<u32>,
}

fn lan_rtt() -> Dur {
    Dur(Duration::from_micros(200))
}
fn min_rtt() -> Dur {
    Dur(Duration::from_millis(5))
}
fn max_rtt() -> Dur {
    Dur(Duration::from_millis(150))
}

/// Fleet-wide policy names.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyNames {
    /// Placement policy.
    pub placement: Option<String>,
    /// Load balancer.
    pub load_balancer: Option<String>,
    /// Queue discipline.
    pub queue: Option<String>,
    /// Keep-alive policy.
    pub keep_alive: Option<String>,
}

/// What a function does when it runs, which no manifest says.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FunctionSpec {
    /// Time an instance takes to serve one request.
    pub service_time: Option<Dist>,
    /// Time from an instance's start to its readiness.
    pub cold_start: Option<Dist>,
    /// Request and response size in bytes (for links with a bandwidth).
    pub request_bytes: Option<u64>,
    /// Response size in bytes.
    pub response_bytes: Option<u64>,
}

/// Synthetic functions and their load, shaped like the Azure Functions 2019 trace
/// (Shahrad et al., ATC'20).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Synthetic {
    /// Number of functions.
    pub functions: u32,
    /// Total requests per second over all functions (the per-function rates keep the
    /// trace's spread and are scaled to this sum).
    pub rate: f64,
    /// Nodes where each function's requests enter (drawn at random).
    #[serde(default = "three")]
    pub origins_per_function: u32,
    /// A manifest file whose (single) Service is the template of every function (its
    /// annotations and containerConcurrency); Knative's defaults when absent.
    #[serde(default)]
    pub template: Option<PathBuf>,
    /// σ of one request's service time around its function's mean (log-normal).
    #[serde(default = "half")]
    pub invocation_sigma: f64,
    /// Cold-start duration of every function.
    #[serde(default)]
    pub cold_start: Option<Dist>,
}

fn three() -> u32 {
    3
}
fn half() -> f64 {
    0.5
}

/// A stream of requests: `function` and `arrivals` (with `origins`, `start`, `end`,
/// `path`, `headers`), or `trace`.
#[derive(Clone, Debug)]
pub enum WorkloadSpec {
    /// Requests of one function from an arrival process.
    Generated(GeneratedLoad),
    /// Requests replayed from a trace file.
    Trace(TraceLoad),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWorkload {
    function: Option<String>,
    #[serde(default)]
    origins: BTreeMap<String, f64>,
    arrivals: Option<Arrivals>,
    #[serde(default)]
    start: Dur,
    end: Option<Dur>,
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    trace: Option<TraceFile>,
}

impl<'de> Deserialize<'de> for WorkloadSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = RawWorkload::deserialize(d)?;
        match (r.trace, r.function, r.arrivals) {
            (Some(trace), None, None) if r.origins.is_empty() => {
                Ok(WorkloadSpec::Trace(TraceLoad { trace }))
            }
            (Some(_), _, _) => Err(D::Error::custom(
                "a trace workload has only `trace` (the trace names functions and origins)",
            )),
            (None, Some(function), Some(arrivals)) => Ok(WorkloadSpec::Generated(GeneratedLoad {
                function,
                origins: r.origins,
                arrivals,
                start: r.start,
                end: r.end,
                path: r.path,
                headers: r.headers,
            })),
            (None, None, _) => Err(D::Error::custom(
                "a workload needs `function` and `arrivals`, or `trace`",
            )),
            (None, Some(_), None) => Err(D::Error::custom(
                "missing `arrivals`: constant, poisson, mmpp, diurnal or users",
            )),
        }
    }
}

/// Requests of one function.
#[derive(Clone, Debug)]
pub struct GeneratedLoad {
    /// The service (`name`, or `namespace/name`).
    pub function: String,
    /// Where requests enter: node name → weight. Every node equally when absent.
    pub origins: BTreeMap<String, f64>,
    /// The arrival process.
    pub arrivals: Arrivals,
    /// When it starts.
    pub start: Dur,
    /// When it ends (the scenario's duration when absent).
    pub end: Option<Dur>,
    /// The request path policies see (consistent-hash, priority rules, sjf).
    pub path: Option<String>,
    /// Request headers policies see (`kantai-priority`, `kantai-deadline`).
    pub headers: BTreeMap<String, String>,
}

/// An arrival process.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum Arrivals {
    /// Evenly spaced requests.
    Constant {
        /// Requests per second.
        rate: f64,
    },
    /// A Poisson process.
    Poisson {
        /// Requests per second.
        rate: f64,
    },
    /// Bursts: a two-state Markov-modulated Poisson process (on/off).
    #[serde(rename_all = "kebab-case")]
    Mmpp {
        /// Rate while on.
        on_rate: f64,
        /// Rate while off.
        #[serde(default)]
        off_rate: f64,
        /// Mean time on (exponentially distributed).
        mean_on: Dur,
        /// Mean time off.
        mean_off: Dur,
    },
    /// A Poisson process whose rate follows a sinusoid (a day's cycle, by default).
    #[serde(rename_all = "kebab-case")]
    Diurnal {
        /// The mean rate.
        mean_rate: f64,
        /// The swing, as a fraction of the mean (0–1).
        amplitude: f64,
        /// The cycle.
        #[serde(default = "day")]
        period: Dur,
        /// Where in the cycle the run starts (the peak is at a quarter period).
        #[serde(default)]
        phase: Dur,
    },
    /// Closed-loop users: each sends a request, waits for its answer, thinks, then sends the
    /// next; each user's first request comes one think time after `start`.
    Users {
        /// How many (a level multiplies them; rounded to the nearest whole user).
        count: f64,
        /// Time between an answer and the user's next request.
        think: Dist,
    },
}

fn day() -> Dur {
    Dur(Duration::from_secs(86_400))
}

/// A trace to replay.
#[derive(Clone, Debug)]
pub struct TraceLoad {
    /// The trace.
    pub trace: TraceFile,
}

/// The trace formats.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum TraceFile {
    /// kantai's CSV: `time,function,origin,duration` (seconds, service name, node name,
    /// seconds; `duration` may be empty to draw from the function's service time).
    Csv(PathBuf),
    /// The Azure Functions 2019 trace: per-minute invocation counts per function.
    #[serde(rename = "azure-2019")]
    Azure2019(Azure2019),
}

/// How to read the Azure Functions 2019 trace.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Azure2019 {
    /// `invocations_per_function_md.anon.dNN.csv`.
    pub invocations: PathBuf,
    /// `function_durations_percentiles.anon.dNN.csv` (service times per function); the
    /// trace's log-normal shape when absent.
    #[serde(default)]
    pub durations: Option<PathBuf>,
    /// At most this many functions (the first ones in the file).
    #[serde(default)]
    pub max_functions: Option<u32>,
    /// The first minute of the day to replay (0–1439).
    #[serde(default)]
    pub first_minute: u32,
    /// Where requests enter: node name → weight (every node equally when absent).
    #[serde(default)]
    pub origins: BTreeMap<String, f64>,
    /// A manifest file whose Service is every function's template.
    #[serde(default)]
    pub template: Option<PathBuf>,
}

/// What to record besides the summary.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutputSpec {
    /// Interval of the instances-per-node series.
    #[serde(default = "ten_seconds")]
    pub sample_every: Dur,
    /// Write placement decisions to `decisions.jsonl`.
    #[serde(default)]
    pub placement_decisions: bool,
    /// Write load-balancing decisions too (one record per request: small runs only).
    #[serde(default)]
    pub load_balancing_decisions: bool,
    /// A latency objective: results give the share of answered requests within it.
    #[serde(default)]
    pub slo: Option<Dur>,
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            sample_every: ten_seconds(),
            placement_decisions: false,
            load_balancing_decisions: false,
            slo: None,
        }
    }
}

fn ten_seconds() -> Dur {
    Dur(Duration::from_secs(10))
}

impl Scenario {
    /// Parses a scenario's text; `name` is how errors refer to it.
    pub fn parse(text: &str, name: &str) -> Result<Scenario, SimError> {
        let s: Scenario = serde_saphyr::from_str(text).map_err(|e| SimError::Scenario {
            file: name.to_owned(),
            message: e.to_string(),
        })?;
        s.check().map_err(|message| SimError::Scenario {
            file: name.to_owned(),
            message,
        })?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        if self.duration.0.is_zero() {
            return Err("duration: must be more than 0s".into());
        }
        if self.warmup.0 >= self.duration.0 {
            return Err("warmup: must be shorter than duration".into());
        }
        if self.output.sample_every.0.is_zero() {
            return Err("output.sample-every: must be more than 0s".into());
        }
        for (i, w) in self.workload.iter().enumerate() {
            if let WorkloadSpec::Generated(g) = w {
                let at = format!("workload[{i}]");
                g.arrivals
                    .check()
                    .map_err(|m| format!("{at}.arrivals: {m}"))?;
                for (node, weight) in &g.origins {
                    if !(weight.is_finite() && *weight >= 0.0) {
                        return Err(format!(
                            "{at}.origins.{node}: weight {weight} must be a number ≥ 0"
                        ));
                    }
                }
                if !g.origins.is_empty() && g.origins.values().all(|w| *w == 0.0) {
                    return Err(format!("{at}.origins: every weight is 0"));
                }
            }
        }
        if let Some(s) = &self.synthetic {
            if s.functions == 0 {
                return Err("synthetic.functions: must be at least 1".into());
            }
            if !(s.rate.is_finite() && s.rate > 0.0) {
                return Err(format!("synthetic.rate: {} must be more than 0", s.rate));
            }
            if s.origins_per_function == 0 {
                return Err("synthetic.origins-per-function: must be at least 1".into());
            }
            if !(s.invocation_sigma.is_finite() && s.invocation_sigma >= 0.0) {
                return Err("synthetic.invocation-sigma: must be ≥ 0".into());
            }
        }
        if let Some(TopologySpec::Generate(g)) = &self.topology {
            if g.nodes == 0 || g.sites == 0 || g.sites > g.nodes {
                return Err(format!(
                    "topology.generate: needs 1 ≤ sites ≤ nodes (got {} nodes, {} sites)",
                    g.nodes, g.sites
                ));
            }
            if g.sites > 4096 {
                return Err(format!(
                    "topology.generate.sites: {} is more than 4096 (round trips are kept per pair of sites)",
                    g.sites
                ));
            }
            if g.min_rtt > g.max_rtt {
                return Err("topology.generate: min-rtt is above max-rtt".into());
            }
            if !(0.0..1.0).contains(&g.loss) || !(0.0..=1.0).contains(&g.jitter) {
                return Err("topology.generate: loss must be in [0, 1), jitter in [0, 1]".into());
            }
        }
        Ok(())
    }

    /// A path written in the scenario, relative to the scenario's directory.
    pub fn resolve(base: &Path, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    }
}

impl Scenario {
    /// The same scenario with every arrival process's rates (and the synthetic total)
    /// multiplied by `factor`: a load level of an experiment. Traces are replayed as they are.
    pub fn scaled(&self, factor: f64) -> Scenario {
        let mut s = self.clone();
        for w in &mut s.workload {
            if let WorkloadSpec::Generated(g) = w {
                match &mut g.arrivals {
                    Arrivals::Constant { rate } | Arrivals::Poisson { rate } => *rate *= factor,
                    Arrivals::Mmpp {
                        on_rate, off_rate, ..
                    } => {
                        *on_rate *= factor;
                        *off_rate *= factor;
                    }
                    Arrivals::Diurnal { mean_rate, .. } => *mean_rate *= factor,
                    Arrivals::Users { count, .. } => *count *= factor,
                }
            }
        }
        if let Some(syn) = &mut s.synthetic {
            syn.rate *= factor;
        }
        s
    }
}

impl Arrivals {
    fn check(&self) -> Result<(), String> {
        let rate = |what: &str, r: f64| {
            if r.is_finite() && r >= 0.0 {
                Ok(())
            } else {
                Err(format!("{what} {r} must be a number ≥ 0"))
            }
        };
        match self {
            Arrivals::Constant { rate: r } | Arrivals::Poisson { rate: r } => rate("rate", *r),
            Arrivals::Mmpp {
                on_rate,
                off_rate,
                mean_on,
                mean_off,
            } => {
                rate("on-rate", *on_rate)?;
                rate("off-rate", *off_rate)?;
                if mean_on.0.is_zero() || mean_off.0.is_zero() {
                    return Err("mean-on and mean-off must be more than 0s".into());
                }
                Ok(())
            }
            Arrivals::Diurnal {
                mean_rate,
                amplitude,
                period,
                ..
            } => {
                rate("mean-rate", *mean_rate)?;
                if !(0.0..=1.0).contains(amplitude) {
                    return Err(format!("amplitude {amplitude} must be in [0, 1]"));
                }
                if period.0.is_zero() {
                    return Err("period must be more than 0s".into());
                }
                Ok(())
            }
            Arrivals::Users { count, .. } => {
                if count.is_finite() && (0.0..=1e6).contains(count) {
                    Ok(())
                } else {
                    Err(format!(
                        "users count {count} must be a number from 0 to 1,000,000"
                    ))
                }
            }
        }
    }
}
