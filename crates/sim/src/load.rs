//! Building a run from a scenario: files are read here (the only file input of the
//! simulator), functions are made from Knative Services exactly as the control plane makes
//! revisions from them, and the workload is resolved to function and node indices.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kantai_driver::{RevisionScaler, RevisionSettings};
use kantai_model::manifest;
use kantai_model::serving::Object;
use kantai_model::serving::Service;
use kantai_model::serving::derive::{configuration_for, revision_for};
use kantai_model::topology::Topology;
use kantai_model::{Findings, ServingConfig};
use kantai_policy::registry::{self, Kind as PolicyKind};

use crate::SimError;
use crate::dist::Dist;
use crate::engine::{Func, Kind, Setup, Sim, stream};
use crate::network::Network;
use crate::scenario::{Arrivals, FunctionSpec, Scenario, TopologySpec, TraceFile, WorkloadSpec};
use crate::workload::{self, Process, Row, Source, azure, synthetic};

/// Cold start when a scenario gives none: a second, the order of a container's start.
pub const DEFAULT_COLD_START: Duration = Duration::from_secs(1);
/// Service time when a scenario gives none.
pub const DEFAULT_SERVICE_TIME: Duration = Duration::from_millis(10);
/// Above this many nodes, the placement records (an n×n matrix each) are refused.
pub const MAX_NODES_FOR_DECISIONS: usize = 2_000;

/// A function's definition before the run.
struct FunctionDef {
    service: Service,
    spec: FunctionSpec,
}

/// Everything needed to run, read from the scenario's files.
pub struct Prepared {
    /// The simulator, ready to run.
    pub sim: Sim,
    /// The scenario.
    pub scenario: Scenario,
    /// The Services the functions are made from, with the scenario's annotations over their
    /// templates': what a live fleet would be given.
    pub services: Vec<Service>,
}

fn read(path: &Path) -> Result<String, SimError> {
    std::fs::read_to_string(path).map_err(|e| SimError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn bad(file: &Path, message: impl Into<String>) -> SimError {
    SimError::Scenario {
        file: file.display().to_string(),
        message: message.into(),
    }
}

/// Reads a scenario file and everything it names. `decisions` receives the decision log
/// when the scenario asks for one.
pub fn prepare(path: &Path, decisions: Option<Box<dyn Write>>) -> Result<Prepared, SimError> {
    let text = read(path)?;
    let scenario = Scenario::parse(&text, &path.display().to_string())?;
    prepare_parsed(scenario, path, decisions)
}

/// [`prepare`] for a scenario already parsed; `path` is the file relative paths start from.
pub fn prepare_parsed(
    scenario: Scenario,
    path: &Path,
    decisions: Option<Box<dyn Write>>,
) -> Result<Prepared, SimError> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let at = |p: &Path| Scenario::resolve(&base, p);
    let seed = scenario.seed;

    // The fleet config, as the control plane reads it.
    let config = match &scenario.config {
        Some(p) => {
            let p = at(p);
            let config = read_config(&p)?;
            // Its plug-ins, by the same names as in the fleet: loaded from their files
            // beside the config, as the control plane loads them.
            let dir = p.parent().unwrap_or(Path::new(".")).to_path_buf();
            kantai_plugin::install(&config.plugins, |m| {
                std::fs::read(dir.join(m)).map_err(|e| e.to_string())
            })
            .map_err(|e| bad(&p, e.to_string()))?;
            config
        }
        None => ServingConfig::default(),
    };
    let mut config = config;
    if let Some(p) = &scenario.policies {
        for (kind, name, slot) in [
            (
                PolicyKind::Placement,
                &p.placement,
                &mut config.policies.placement,
            ),
            (
                PolicyKind::LoadBalancer,
                &p.load_balancer,
                &mut config.policies.load_balancer,
            ),
            (PolicyKind::Queue, &p.queue, &mut config.policies.queue),
            (
                PolicyKind::KeepAlive,
                &p.keep_alive,
                &mut config.policies.keep_alive,
            ),
        ] {
            if let Some(n) = name {
                if !kind.knows(n) {
                    return Err(bad(
                        path,
                        format!("policies: {}", registry::unknown(kind, n)),
                    ));
                }
                *slot = n.clone();
            }
        }
    }

    let net = match &scenario.topology {
        None => Network::from_topology(&Topology::seed_testbed()),
        Some(TopologySpec::File(p)) => {
            let p = at(p);
            let t = Topology::parse(&read(&p)?)
                .map_err(|e| bad(&p, format!("invalid topology:\n{e}")))?;
            Network::from_topology(&t)
        }
        Some(TopologySpec::Generate(g)) => Network::generate(g, &mut stream(seed, 4)),
    };
    if (scenario.output.placement_decisions || scenario.output.load_balancing_decisions)
        && net.nodes.len() > MAX_NODES_FOR_DECISIONS
    {
        return Err(bad(
            path,
            format!(
                "output: decision records hold a row per node (placement: the n×n round-trip matrix); \
                 with {} nodes they would not fit. Record decisions on {MAX_NODES_FOR_DECISIONS} nodes or fewer.",
                net.nodes.len()
            ),
        ));
    }
    let node_index: HashMap<String, u32> = net
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i as u32))
        .collect();

    // Functions: the services of the manifests, then synthetic and trace functions.
    let mut defs: Vec<FunctionDef> = Vec::new();
    for p in &scenario.services {
        let p = at(p);
        for svc in services(&read(&p)?, &p, &config)? {
            let spec = scenario
                .functions
                .get(&svc.metadata.name)
                .cloned()
                .unwrap_or_default();
            defs.push(FunctionDef { service: svc, spec });
        }
    }
    for name in scenario.functions.keys() {
        if !defs.iter().any(|d| d.service.metadata.name == *name) {
            return Err(bad(
                path,
                format!("functions.{name}: no service of that name in `services`"),
            ));
        }
    }
    let template = |p: &Option<PathBuf>| -> Result<Service, SimError> {
        match p {
            Some(p) => {
                let p = at(p);
                let mut list = services(&read(&p)?, &p, &config)?;
                if list.len() != 1 {
                    return Err(bad(&p, "a template file holds exactly one Service"));
                }
                Ok(list.remove(0))
            }
            None => Ok(
                services(DEFAULT_TEMPLATE, Path::new("(built-in template)"), &config)?.remove(0),
            ),
        }
    };

    let duration = scenario.duration.0.as_nanos() as u64;
    let mut sources: Vec<Source> = Vec::new();
    let mut kinds: Vec<Kind> = vec![Kind::get("/")];
    // Whether each kind's path and headers came from the scenario (not the default `GET /`).
    let mut kinds_given: Vec<bool> = vec![false];

    if let Some(s) = &scenario.synthetic {
        let tpl = template(&s.template)?;
        let timeout = timeout_of(&tpl, &config);
        let mut rng = stream(seed, 5);
        let list = synthetic::functions(
            s.functions,
            s.rate,
            s.origins_per_function,
            net.nodes.len() as u32,
            timeout,
            &mut rng,
        );
        let width = s.functions.to_string().len();
        for (i, sf) in list.iter().enumerate() {
            let index = defs.len() as u32;
            let mut svc = tpl.clone();
            svc.metadata.name = format!("fn-{i:0width$}");
            svc.spec.template.metadata.name = None;
            defs.push(FunctionDef {
                service: svc,
                spec: FunctionSpec {
                    service_time: Some(Dist::lognormal_mean(sf.mean_exec, s.invocation_sigma)),
                    cold_start: s.cold_start.clone(),
                    ..FunctionSpec::default()
                },
            });
            let origins: Vec<(u32, f64)> = sf.origins.iter().map(|&o| (o, 1.0)).collect();
            sources.push(Source::process(
                index,
                &origins,
                synthetic::process(sf),
                0,
                duration,
                0,
                synthetic::rng_for(seed, i as u32),
            ));
        }
    }

    let by_name = |defs: &[FunctionDef], name: &str| -> Option<u32> {
        let (ns, n) = name.split_once('/').unwrap_or(("", name));
        defs.iter()
            .position(|d| {
                d.service.metadata.name == n
                    && (ns.is_empty()
                        || d.service.metadata.namespace.as_deref().unwrap_or("default") == ns)
            })
            .map(|i| i as u32)
    };
    let weights =
        |origins: &BTreeMap<String, f64>, at: &str| -> Result<Vec<(u32, f64)>, SimError> {
            if origins.is_empty() {
                return Ok((0..net.nodes.len() as u32).map(|i| (i, 1.0)).collect());
            }
            origins
                .iter()
                .map(|(n, w)| {
                    node_index.get(n).map(|&i| (i, *w)).ok_or_else(|| {
                        bad(
                            path,
                            format!("{at}.origins: {n:?} is not a node of the topology"),
                        )
                    })
                })
                .collect()
        };

    for (k, w) in scenario.workload.iter().enumerate() {
        let here = format!("workload[{k}]");
        match w {
            WorkloadSpec::Generated(g) => {
                let f = by_name(&defs, &g.function).ok_or_else(|| {
                    bad(
                        path,
                        format!(
                            "{here}.function: {:?} is not a service of this scenario (services: {})",
                            g.function,
                            defs.iter()
                                .take(10)
                                .map(|d| d.service.metadata.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                let origins = weights(&g.origins, &here)?;
                let given = g.path.is_some() || !g.headers.is_empty();
                let closed = matches!(g.arrivals, Arrivals::Users { .. });
                // Closed-loop users get a kind of their own: an answer finds its user's source
                // by it.
                let kind = if !given && !closed {
                    0
                } else {
                    let mut kind = Kind::get(g.path.as_deref().unwrap_or("/"));
                    for (k, v) in &g.headers {
                        kind = kind.with_header(k, v);
                    }
                    kinds.push(kind);
                    kinds_given.push(given);
                    (kinds.len() - 1) as u32
                };
                let end = g
                    .end
                    .map_or(duration, |e| (e.0.as_nanos() as u64).min(duration));
                let start = g.start.0.as_nanos() as u64;
                let rng = stream(seed, 100 + k as u64);
                sources.push(match &g.arrivals {
                    Arrivals::Users { count, think } => Source::users(
                        f,
                        &origins,
                        count.round() as u32,
                        think.clone(),
                        start,
                        end,
                        kind,
                        rng,
                    ),
                    open => match Process::new(open) {
                        Some(p) => Source::process(f, &origins, p, start, end, kind, rng),
                        None => Source::trace(Vec::new()),
                    },
                });
            }
            WorkloadSpec::Trace(t) => match &t.trace {
                TraceFile::Csv(p) => {
                    let p = at(p);
                    let text = read(&p)?;
                    let rows = workload::read_csv(
                        &text,
                        &p.display().to_string(),
                        |n| by_name(&defs, n),
                        |n| node_index.get(n).copied(),
                    )
                    .map_err(|m| bad(&p, m))?;
                    let rows = rows.into_iter().filter(|r| r.t < duration).collect();
                    sources.push(Source::trace(rows));
                }
                TraceFile::Azure2019(a) => {
                    let inv = at(&a.invocations);
                    let minutes = scenario.duration.0.as_secs().div_ceil(60) as u32;
                    let list = azure::read_invocations(
                        &read(&inv)?,
                        &inv.display().to_string(),
                        a.max_functions,
                        a.first_minute,
                        minutes,
                    )
                    .map_err(|m| bad(&inv, m))?;
                    let durations = match &a.durations {
                        Some(d) => {
                            let d = at(d);
                            azure::read_durations(&read(&d)?, &d.display().to_string())
                                .map_err(|m| bad(&d, m))?
                        }
                        None => HashMap::new(),
                    };
                    let tpl = template(&a.template)?;
                    let origins = workload::Mix::new(&weights(&a.origins, &here)?);
                    let mut rng = stream(seed, 200 + k as u64);
                    let mut rows: Vec<Row> = Vec::new();
                    for tf in list {
                        let index = defs.len() as u32;
                        let mut svc = tpl.clone();
                        let short: String = tf
                            .hash
                            .chars()
                            .filter(char::is_ascii_alphanumeric)
                            .take(12)
                            .collect();
                        svc.metadata.name = format!("f-{}", short.to_ascii_lowercase());
                        svc.spec.template.metadata.name = None;
                        let service_time = durations.get(&tf.hash).cloned().unwrap_or_else(|| {
                            use rand_distr::{Distribution, LogNormal};
                            let mean = LogNormal::new(synthetic::EXEC_MU, synthetic::EXEC_SIGMA)
                                .map_or(0.68, |d| d.sample(&mut rng))
                                .min(timeout_of(&tpl, &config).as_secs_f64());
                            Dist::lognormal_mean(Duration::from_secs_f64(mean), 0.5)
                        });
                        defs.push(FunctionDef {
                            service: svc,
                            spec: FunctionSpec {
                                service_time: Some(service_time),
                                ..scenario.function_defaults.clone()
                            },
                        });
                        for t in azure::spread(&tf.minutes, &mut rng) {
                            if t >= duration {
                                break;
                            }
                            let origin = origins.draw(&mut rng);
                            rows.push(Row {
                                t,
                                function: index,
                                origin,
                                service_ns: u64::MAX,
                            });
                        }
                    }
                    sources.push(Source::trace(rows));
                }
            },
        }
    }
    if kinds.len() > usize::from(u16::MAX) {
        return Err(bad(
            path,
            "more than 65,535 workloads with a path or headers",
        ));
    }
    if defs.is_empty() {
        return Err(bad(
            path,
            "no function: give `services` (Knative manifests), `synthetic`, or an azure-2019 trace",
        ));
    }
    if sources.is_empty() {
        return Err(bad(path, "no workload: give `workload` or `synthetic`"));
    }

    let n = net.nodes.len();
    let mut funcs = Vec::with_capacity(defs.len());
    for d in &defs {
        funcs.push(function(d, &config, &scenario, n, seed).map_err(|m| bad(path, m))?);
    }
    let sim = Sim::new(
        net,
        Setup {
            duration,
            warmup: scenario.warmup.0.as_nanos() as u64,
            seed,
            funcs,
            sources,
            kinds,
            kinds_given,
            hold_limit: config.dataplane.hold_limit,
            sample_every: scenario.output.sample_every.0.as_nanos() as u64,
            decisions: if scenario.output.placement_decisions
                || scenario.output.load_balancing_decisions
            {
                decisions
            } else {
                None
            },
            lb_decisions: scenario.output.load_balancing_decisions,
            overhead: scenario.gateway_overhead.clone(),
            slo_us: scenario.output.slo.map(|d| d.0.as_micros() as u64),
        },
    );
    let services = defs
        .into_iter()
        .map(|d| {
            let mut svc = d.service;
            svc.spec
                .template
                .metadata
                .annotations
                .extend(scenario.annotations.clone());
            svc
        })
        .collect();
    Ok(Prepared {
        sim,
        scenario,
        services,
    })
}

/// The hello function's manifest: the template of generated functions without one.
const DEFAULT_TEMPLATE: &str = "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: template
spec:
  template:
    spec:
      containers:
        - image: kantai/hello
";

/// A template's request timeout, as its revisions' settings give it.
fn timeout_of(svc: &Service, config: &ServingConfig) -> Duration {
    RevisionSettings::of(&revision_for(&configuration_for(svc), 1), config)
        .0
        .timeout
}

/// The Services of a manifest file, defaulted and validated as the API admits them.
fn services(text: &str, file: &Path, config: &ServingConfig) -> Result<Vec<Service>, SimError> {
    let docs = manifest::read(text, config).map_err(|e| bad(file, e.to_string()))?;
    let mut out = Vec::new();
    for d in docs {
        if d.findings.has_errors() {
            let errs = kantai_model::config::ConfigError(d.findings.errors().cloned().collect());
            return Err(bad(file, errs.to_string()));
        }
        match d.object {
            Some(Object::Service(s)) => out.push(s),
            Some(_) => {
                return Err(bad(
                    file,
                    format!(
                        "line {}: only Services are simulated (a Configuration or Route alone has no traffic of its own)",
                        d.line
                    ),
                ));
            }
            None => {}
        }
    }
    Ok(out)
}

fn read_config(p: &Path) -> Result<ServingConfig, SimError> {
    use kantai_model::node::{ParseLimits, parse_documents};
    let text = read(p)?;
    let docs = parse_documents(&text, ParseLimits::default())
        .map_err(|e| bad(p, format!("line {}: {}", e.pos.line, e.message)))?;
    let Some(doc) = docs.first() else {
        return Ok(ServingConfig::default());
    };
    let mut out = Findings::new();
    let cfg = ServingConfig::decode_fleet(doc, &mut out);
    out.locate_in(doc);
    match cfg {
        Some(c) if !out.has_errors() => Ok(c),
        _ => {
            let errs = kantai_model::config::ConfigError(out.errors().cloned().collect());
            Err(bad(p, errs.to_string()))
        }
    }
}

/// A function as the control plane and the agents would run it.
fn function(
    d: &FunctionDef,
    config: &ServingConfig,
    scenario: &Scenario,
    nodes: usize,
    seed: u64,
) -> Result<Func, String> {
    let revision = revision_for(&configuration_for(&d.service), 1);
    let mut revision = revision;
    // The scenario's annotations go over the manifest's (an experiment's autoscaler settings).
    for (k, v) in &scenario.annotations {
        revision.metadata.annotations.insert(k.clone(), v.clone());
    }
    let name = revision.metadata.name.clone();
    let who_svc = &d.service.metadata.name;
    let settings = RevisionSettings::checked(&revision, config)
        .map_err(|p| format!("service {who_svc}: {p}"))?;
    let mut settings = settings;
    settings.scaling.reachable = true;
    if registry::placement(&settings.placement, &settings.params).is_none() {
        return Err(registry::unknown(
            PolicyKind::Placement,
            &settings.placement,
        ));
    }
    let defaults = &scenario.function_defaults;
    let ns = d
        .service
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    // The control plane's seed for the revision, mixed with the run's.
    let placement_seed = kantai_driver::scaler::seed(&ns, &name) ^ seed;
    Ok(Func {
        namespace: ns,
        service: d.service.metadata.name.clone(),
        revision: name,
        cc: settings.container_concurrency,
        timeout_ns: settings.timeout.as_nanos() as u64,
        service_time: d
            .spec
            .service_time
            .clone()
            .or_else(|| defaults.service_time.clone())
            .unwrap_or(Dist::Constant(DEFAULT_SERVICE_TIME)),
        cold_start: d
            .spec
            .cold_start
            .clone()
            .or_else(|| defaults.cold_start.clone())
            .unwrap_or(Dist::Constant(DEFAULT_COLD_START)),
        request_bytes: d
            .spec
            .request_bytes
            .or(defaults.request_bytes)
            .unwrap_or(200),
        response_bytes: d
            .spec
            .response_bytes
            .or(defaults.response_bytes)
            .unwrap_or(200),
        scaler: RevisionScaler::with_rng(&settings, stream(placement_seed, 6), Duration::ZERO, 0),
        lb_name: settings.load_balancer.clone(),
        queue_name: settings.queue.clone(),
        local: BTreeMap::new(),
        adopted: BTreeMap::new(),
        local_starts: 0,
        settings,
        activator_in_path: true,
        ready: Vec::new(),
        ready_version: 1,
        on_node: BTreeMap::new(),
        placed: vec![0; nodes],
        free_slots: Vec::new(),
        next_slot: 0,
        in_flight: 0,
        area: 0.0,
        last_change: 0,
        arrivals: 0,
        last_take: 0,
        served_since: BTreeMap::new(),
        serving_dense: Vec::new(),
        gates: Vec::new(),
        instance_ns: 0,
        instances_started: 0,
        desired_max: 0,
        window: None,
    })
}
