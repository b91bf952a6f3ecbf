//! An experiment's live runs: for each run a fresh fleet on this machine (`launch`), its
//! Services deployed, the scenario's requests sent open-loop from each origin node's gateway
//! (`kantai-loadgen`), the fleet's metrics scraped every second, then everything stopped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use kantai_api::FleetInfo;
use kantai_api::resources::SERVICES;
use kantai_experiment::live::{RunInfo, TIMELINE_METRICS, summarize};
use kantai_experiment::{Live, LiveRun};
use kantai_loadgen::timeline::Endpoint;
use kantai_loadgen::{Options, Shot};
use kantai_model::serving::Object;
use kantai_model::topology::Topology;
use kantai_sim::Summary;
use kantai_sim::scenario::TopologySpec;
use serde_json::{Value, json};

use crate::launch::{Fleet, Launch};

/// Starts a fleet per live run.
pub struct LiveFleets {
    rt: tokio::runtime::Runtime,
    verbose: bool,
    interrupt: Arc<Interrupt>,
}

/// Ctrl-C or SIGTERM during an experiment: a live run stops its fleet and removes its state
/// before the experiment ends; between live runs (a simulated run, the report) the process
/// ends at once; a second signal ends it at once too (the fleet's processes die with it).
#[derive(Default)]
struct Interrupt {
    in_live_run: std::sync::atomic::AtomicBool,
    asked: tokio::sync::Notify,
}

impl LiveFleets {
    /// A driver; `verbose` shows the fleets' logs.
    pub fn new(verbose: bool) -> anyhow::Result<LiveFleets> {
        let rt = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
        let interrupt = Arc::new(Interrupt::default());
        let watch = interrupt.clone();
        rt.spawn(async move {
            crate::launch::stop_signal().await;
            if watch.in_live_run.load(std::sync::atomic::Ordering::SeqCst) {
                eprintln!(
                    "\nkantai: interrupted; stopping the run's fleet (again to quit at once)"
                );
                watch.asked.notify_one();
                crate::launch::stop_signal().await;
            }
            eprintln!("\nkantai: interrupted");
            std::process::exit(130);
        });
        Ok(LiveFleets {
            rt,
            verbose,
            interrupt,
        })
    }
}

impl Live for LiveFleets {
    fn run(&mut self, run: LiveRun<'_>) -> Result<Summary, String> {
        use std::sync::atomic::Ordering::SeqCst;
        self.interrupt.in_live_run.store(true, SeqCst);
        let r = self
            .rt
            .block_on(one_run(run, self.verbose, &self.interrupt.asked))
            .map_err(|e| format!("{e:#}"));
        self.interrupt.in_live_run.store(false, SeqCst);
        r
    }
}

/// How long a Service may take to become Ready on a fresh fleet.
const READY_LIMIT: Duration = Duration::from_secs(120);
/// How long after its planned end a run may go on (slow answers, timeouts).
const GRACE: Duration = Duration::from_secs(60);

async fn one_run(
    run: LiveRun<'_>,
    verbose: bool,
    interrupted: &tokio::sync::Notify,
) -> anyhow::Result<Summary> {
    let LiveRun {
        prepared,
        scenario_path,
        dir,
        slo,
        progress,
    } = run;
    let base = scenario_path.parent().unwrap_or(Path::new("."));
    let scenario = &prepared.scenario;
    let mut topology = match &scenario.topology {
        None => Topology::seed_testbed(),
        Some(TopologySpec::File(p)) => {
            let p = kantai_sim::Scenario::resolve(base, p);
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read the topology {}", p.display()))?;
            Topology::parse(&text)
                .map_err(|e| anyhow!("{}: invalid topology:\n{e}", p.display()))?
        }
        Some(TopologySpec::Generate(_)) => bail!(
            "the scenario generates its fleet, which exists only in the simulator; give `topology: {{file: ...}}` for live runs"
        ),
    };
    // Any free ports, so that runs follow each other (and a `kantai up`) without clashing.
    for n in &mut topology.nodes {
        let ip = n.address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        n.gateway = Some(SocketAddr::new(ip, 0));
    }
    let state = tempdir()?;
    let config = state.join("fleet.yaml");
    std::fs::write(&config, fleet_config(&prepared, base)?)
        .with_context(|| format!("cannot write {}", config.display()))?;
    progress("starting the fleet");
    let decisions = dir.join("decisions");
    let started = tokio::select! {
        f = Fleet::start(Launch {
            topology: &topology,
            config: Some(&config),
            state_dir: &state,
            listen: "127.0.0.1:0".parse()?,
            show_logs: verbose,
            decision_log: Some((&decisions, false)),
        }) => f,
        // The half-started fleet's processes are killed as it is dropped.
        () = interrupted.notified() => Err(anyhow!("interrupted while the fleet started")),
    };
    let mut fleet = match started {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&state);
            return Err(e);
        }
    };
    let result = tokio::select! {
        r = drive(&fleet, prepared, dir, slo, &mut *progress) => r,
        () = interrupted.notified() => Err(anyhow!("interrupted (Ctrl-C or SIGTERM)")),
    };
    progress("stopping the fleet");
    fleet.stop().await;
    let _ = std::fs::remove_dir_all(&state);
    result
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static RUN: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "kantai-experiment-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(d)
}

/// The scenario's fleet config with the run's policies, and serving headers on (the
/// records name the instance and node that served each request).
fn fleet_config(prepared: &kantai_sim::Prepared, base: &Path) -> anyhow::Result<String> {
    let s = &prepared.scenario;
    let mut cfg: Value = match &s.config {
        Some(p) => {
            let p = kantai_sim::Scenario::resolve(base, p);
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read the fleet config {}", p.display()))?;
            serde_saphyr::from_str(&text)
                .map_err(|e| anyhow!("{}: invalid fleet config: {e}", p.display()))?
        }
        None => json!({}),
    };
    if !cfg.is_object() {
        cfg = json!({});
    }
    if let Some(p) = &s.policies {
        for (key, v) in [
            ("placement", &p.placement),
            ("load-balancer", &p.load_balancer),
            ("queue", &p.queue),
            ("keep-alive", &p.keep_alive),
        ] {
            if let Some(v) = v {
                cfg["policies"][key] = json!(v);
            }
        }
    }
    cfg["dataplane"]["serving-headers"] = json!(true);
    Ok(kantai_model::manifest::to_yaml_one(&cfg))
}

async fn drive(
    fleet: &Fleet,
    prepared: kantai_sim::Prepared,
    dir: &Path,
    slo: Option<Duration>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Summary> {
    let client = fleet.client()?;
    let info: FleetInfo =
        serde_json::from_value(client.get_json(kantai_api::wire::FLEET_PATH).await?)?;
    progress("deploying");
    for svc in &prepared.services {
        let ns = svc.metadata.namespace();
        client
            .create(SERVICES, ns, &Object::Service(svc.clone()).to_json())
            .await
            .with_context(|| format!("cannot deploy service {}", svc.metadata.name))?;
    }
    for svc in &prepared.services {
        let ns = svc.metadata.namespace();
        let name = &svc.metadata.name;
        let start = Instant::now();
        loop {
            if let Ok(v) = client.get(SERVICES, ns, name).await
                && ready(&v)
            {
                break;
            }
            if start.elapsed() > READY_LIMIT {
                bail!("service {ns}/{name} was not Ready within {READY_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let mut requests = prepared.sim.into_requests();
    let sim_users = requests.take_users();
    let targets = requests.targets().to_vec();
    let nodes = requests.nodes().to_vec();
    let kinds = requests.kinds().to_vec();
    let given: Vec<bool> = (0..kinds.len() as u32)
        .map(|k| requests.has_path(k))
        .collect();
    let (duration, warmup) = (requests.duration(), requests.warmup());
    let gateways = nodes
        .iter()
        .map(|n| {
            fleet
                .gateways
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, g)| *g)
                .ok_or_else(|| anyhow!("node {n} of the scenario has no gateway in the fleet"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let hosts: Vec<Arc<str>> = targets
        .iter()
        .map(|t| Arc::from(format!("{}.{}.{}", t.service, t.namespace, info.domain)))
        .collect();
    let mut bad_header = None;
    let mut headers_of = |kind: &kantai_policy::SimpleRequest| {
        let headers = kind
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let h = (
                    http::HeaderName::from_bytes(k.as_bytes()).ok()?,
                    http::HeaderValue::from_str(v).ok()?,
                );
                Some(h)
            })
            .collect::<Vec<_>>();
        if headers.len() != kind.headers.len() {
            bad_header.get_or_insert_with(|| format!("{:?}", kind.headers));
        }
        headers
    };
    let method_of = |kind: &kantai_policy::SimpleRequest| {
        http::Method::from_bytes(kind.method.as_bytes()).unwrap_or(http::Method::GET)
    };
    let path_of = |kind: u32, service: Duration| {
        request_path(given[kind as usize], &kinds[kind as usize].path, service)
    };
    let users: Vec<kantai_loadgen::User> = sim_users
        .into_iter()
        .map(|mut u| {
            let kind = &kinds[u.kind as usize];
            let (path_given, own) = (given[u.kind as usize], kind.path.clone());
            kantai_loadgen::User {
                origin: u.origin,
                function: u.function,
                first: u.first,
                end: u.end,
                host: hosts[u.function as usize].clone(),
                method: method_of(kind),
                headers: headers_of(kind),
                timeout: targets[u.function as usize].timeout + Duration::from_secs(5),
                next: Box::new(move || {
                    let (service, think) = u.draw();
                    (request_path(path_given, &own, service), think)
                }),
            }
        })
        .collect();
    let shots = requests.map(|p| {
        let t = &targets[p.function as usize];
        let kind = &kinds[p.kind as usize];
        Shot {
            at: p.at,
            origin: p.origin,
            function: p.function,
            host: hosts[p.function as usize].clone(),
            method: method_of(kind),
            path: path_of(p.kind, p.service),
            headers: headers_of(kind),
            timeout: t.timeout + Duration::from_secs(5),
        }
    });

    // Both the control plane and the agents' admin ports want the API token.
    let token = fleet.token()?;
    let mut endpoints = vec![Endpoint {
        name: "control".to_owned(),
        url: format!("{}/metrics", fleet.api),
        token: token.clone(),
    }];
    endpoints.extend(fleet.admins.iter().map(|(n, a)| Endpoint {
        name: n.clone(),
        url: format!("http://{a}/metrics"),
        token: token.clone(),
    }));
    let timeline =
        kantai_loadgen::timeline::start(endpoints, &TIMELINE_METRICS, Duration::from_secs(1));
    let total = duration.as_secs_f64();
    let records = kantai_loadgen::fire(
        shots,
        users,
        &gateways,
        &Options {
            deadline: duration + GRACE,
            ..Options::default()
        },
        &mut |p| {
            progress(&format!(
                "{:.0}/{total:.0} s, {} sent, {} answered",
                p.elapsed.as_secs_f64().min(total),
                p.sent,
                p.done
            ));
        },
    )
    .await?;
    let (points, problems) = timeline.finish().await;
    if let Some(h) = bad_header {
        tracing::warn!("headers {h} are not valid HTTP headers; they were left out");
    }

    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
    };
    write(
        "requests.csv",
        kantai_loadgen::csv(
            &records,
            &|f| {
                targets
                    .get(f as usize)
                    .map_or_else(String::new, |t| t.service.clone())
            },
            &|o| nodes.get(o as usize).cloned().unwrap_or_default(),
        ),
    )?;
    write("timeline.csv", kantai_loadgen::timeline::csv(&points))?;
    if !problems.is_empty() {
        write("timeline-problems.txt", problems.join("\n") + "\n")?;
    }
    let summary = summarize(
        &RunInfo {
            targets: &targets,
            nodes: &nodes,
            seed: prepared.scenario.seed,
            duration,
            warmup,
            slo,
            sample_every: prepared.scenario.output.sample_every.0,
        },
        &records,
        &points,
    );
    write(
        "summary.json",
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    Ok(summary)
}

/// A request's path: the workload's own, or else the built-in function's `/sleep/<ms>` for
/// the drawn service time.
fn request_path(given: bool, own: &str, service: Duration) -> String {
    if given {
        own.to_owned()
    } else {
        format!("/sleep/{:.3}", service.as_secs_f64() * 1e3)
    }
}

fn ready(v: &Value) -> bool {
    v["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}
