//! The node agent: joins the control plane through its API, watches what should run where,
//! runs this node's instances, serves the node's data plane (gateway, activator, queue role),
//! reports load every second and measures round trips to the other nodes.

mod configs;
mod edge;
mod instances;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kantai_api::resources::{INSTANCES, NODES, PLACEMENTS, REVISIONS, ROUTES};
use kantai_api::wire::{FLEET_PATH, REPORTS_PATH};
use kantai_api::{Client, FleetInfo, Report, ReportReply, RttSample};
use kantai_dataplane::{DataPlane, Limits, Listeners, RevisionConfig, RouteSpec};
use kantai_driver::RevisionSettings;
use kantai_model::config::ServingConfig;
use kantai_model::fleet::{self, Instance, Placement};
use kantai_model::meta::JsonMeta;
use kantai_model::node::Node as DocNode;
use kantai_model::serving::derive::{
    CONFIGURATION_GENERATION_LABEL, CONFIGURATION_LABEL, SERVICE_LABEL,
};
use kantai_model::topology::{Capacity, Topology};
use kantai_runtime::{Runtime, RuntimeConfig};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::instances::Local;
use crate::watch::Cache;

/// What a node agent needs to start. Addresses, labels and capacity left out are taken from
/// the node's entry in the fleet's topology.
#[derive(Clone, Debug, Default)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// The control plane's API URL.
    pub control: String,
    /// The node's host address (default: the topology's, else 127.0.0.1).
    pub address: Option<IpAddr>,
    /// Gateway listen address (default: the topology's, else address:8080).
    pub gateway: Option<SocketAddr>,
    /// Data port listen address (default: address, any port).
    pub data: Option<SocketAddr>,
    /// Admin (logs) listen address (default: address, any port).
    pub admin: Option<SocketAddr>,
    /// Labels of the node (added to the topology's).
    pub labels: BTreeMap<String, String>,
    /// Capacity of the node (default: the topology's).
    pub capacity: Option<Capacity>,
    /// Image to command mapping.
    pub runtime: RuntimeConfig,
    /// The kantai executable, used as the instances' launcher.
    pub launcher: Option<PathBuf>,
    /// Where the node keeps its images and containers' roots; without one, only images
    /// mapped to a command (processes) can run.
    pub state_dir: Option<PathBuf>,
    /// Data-plane limits.
    pub limits: Limits,
    /// Where this node's load-balancing decisions are recorded, if anywhere.
    pub decision_log: Option<Arc<kantai_api::decisions::DecisionLog>>,
    /// The fleet's bearer token, sent with every API request.
    pub token: Option<String>,
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A listener could not be bound.
    #[error("node {node}: cannot listen on {addr}: {source}")]
    Listen {
        /// The node.
        node: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The fleet description could not be read.
    #[error("node {node}: the control plane's fleet description is invalid: {detail}")]
    Fleet {
        /// The node.
        node: String,
        /// What is wrong.
        detail: String,
    },
}

/// The addresses an agent actually listens on.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// Gateway.
    pub gateway: SocketAddr,
    /// Data port.
    pub data: SocketAddr,
    /// Admin endpoint.
    pub admin: SocketAddr,
}

pub(crate) struct Agent {
    pub(crate) name: String,
    pub(crate) client: Client,
    pub(crate) dp: DataPlane,
    pub(crate) runtime: Runtime,
    pub(crate) cache: Cache,
    pub(crate) changed: Notify,
    /// Held by a pass that starts and stops instances: the reconcile loop's, or a start
    /// this node decided for held requests, made at once from the task that decided it.
    /// Neither sees the other's instances half-started, so neither starts one twice.
    pub(crate) reconciling: Mutex<()>,
    /// Wakes every watch loop waiting to retry once one of them reaches the control plane
    /// again, so after a control-plane restart all resources resume together rather than
    /// each at the end of its own back-off (routes seen seconds after placements).
    pub(crate) reconnected: Notify,
    pub(crate) local: Mutex<HashMap<String, Local>>,
    /// The fleet config the control plane serves (its default policies, its data plane's
    /// hold limit), as every revision's settings are computed from it.
    pub(crate) config: ServingConfig,
    /// The fleet's topology, whose node order placement strings and balancer indices follow.
    pub(crate) topology: kantai_model::topology::Topology,
    /// The highest route resourceVersion the gateway has programmed.
    pub(crate) routes_version: std::sync::atomic::AtomicU64,
    /// Wakes the reporter to acknowledge new routes at once.
    pub(crate) routes_applied: Notify,
    /// This node's Node object as the agent registers it, and what the API stored of it.
    pub(crate) registration: Registration,
    /// Wakes the node keeper when a Node object changed in the cache.
    pub(crate) nodes_changed: Notify,
    /// Instance objects naming this node that the agent does not run, and since when it
    /// has seen them (removed once they outlast a grace).
    pub(crate) foreign: Mutex<HashMap<(String, String), std::time::Instant>>,
    /// Containers created ahead of demand, not started, one per revision at most.
    pub(crate) standby:
        Mutex<HashMap<(String, String), (instances::Planned, kantai_runtime::Instance)>>,
    /// Revisions that ran on this node (the ones worth a container created ahead).
    pub(crate) ran_here: Mutex<std::collections::HashSet<(String, String)>>,
    /// The Secret and ConfigMap values of the revisions wanted here (memory only).
    pub(crate) configs: configs::Configs,
    /// The node's host address (an instance's `status.hostIP`).
    pub(crate) address: IpAddr,
    /// Instances started on the node's own decision, and whether the control plane answers.
    pub(crate) edge: edge::Edge,
}

/// The Node object an agent keeps registered.
pub(crate) struct Registration {
    /// The object the agent writes (no status: that is the control plane's).
    object: Value,
    /// The spec the API answered the last registration with: what the stored object
    /// should still say (the API's own rendering, so defaults it fills in are no change).
    stored_spec: Mutex<Value>,
}

impl Registration {
    fn new(cfg: &NodeConfig, capacity: &Capacity, bound: Bound) -> Registration {
        let node = fleet::Node {
            metadata: kantai_model::meta::ObjectMeta {
                name: cfg.name.clone(),
                labels: cfg.labels.clone(),
                ..Default::default()
            },
            spec: fleet::NodeSpec {
                gateway: bound.gateway.to_string(),
                data: bound.data.to_string(),
                admin: bound.admin.to_string(),
                capacity: capacity.clone(),
            },
            status: None,
        };
        let object = fleet::to_json("Node", &node);
        Registration {
            stored_spec: Mutex::new(object["spec"].clone()),
            object,
        }
    }
}

async fn bind(node: &str, addr: SocketAddr) -> Result<TcpListener, AgentError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Listen {
            node: node.to_owned(),
            addr,
            source,
        })
}

/// Runs a node agent until `shutdown` completes; then stops its instances gracefully.
/// `ready` receives the bound addresses once the agent serves.
pub async fn run(
    mut cfg: NodeConfig,
    shutdown: impl Future<Output = ()>,
    ready: Option<tokio::sync::oneshot::Sender<Bound>>,
) -> Result<(), AgentError> {
    let base = Client::new(&cfg.control)
        .map_err(|e| AgentError::Fleet {
            node: cfg.name.clone(),
            detail: e.to_string(),
        })?
        .with_token(cfg.token.clone());
    let fleet = fetch_fleet(&base, &cfg.name).await?;
    let topology = Topology::from_node(&DocNode::from_json(&fleet.topology)).map_err(|e| {
        AgentError::Fleet {
            node: cfg.name.clone(),
            detail: e.to_string(),
        }
    })?;
    let me = topology.node(&cfg.name).cloned();
    let address = cfg
        .address
        .or_else(|| me.as_ref().and_then(|n| n.address))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let gw_addr = cfg
        .gateway
        .or_else(|| me.as_ref().and_then(|n| n.gateway_addr()))
        .unwrap_or(SocketAddr::new(
            address,
            kantai_model::topology::DEFAULT_GATEWAY_PORT,
        ));
    let data_addr = cfg.data.unwrap_or(SocketAddr::new(address, 0));
    let admin_addr = cfg.admin.unwrap_or(SocketAddr::new(address, 0));
    if let Some(m) = &me {
        for (k, v) in &m.labels {
            cfg.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let capacity = cfg
        .capacity
        .clone()
        .or_else(|| me.map(|m| m.capacity))
        .unwrap_or_default();
    let gateway = bind(&cfg.name, gw_addr).await?;
    let data = bind(&cfg.name, data_addr).await?;
    let admin = bind(&cfg.name, admin_addr).await?;
    let local = |l: &TcpListener, addr| {
        l.local_addr().map_err(|source| AgentError::Listen {
            node: cfg.name.clone(),
            addr,
            source,
        })
    };
    let bound = Bound {
        gateway: local(&gateway, gw_addr)?,
        data: local(&data, data_addr)?,
        admin: local(&admin, admin_addr)?,
    };
    let seed = cfg
        .name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let (dp, pokes) = DataPlane::new(&cfg.name, cfg.limits.clone(), seed);
    if fleet.peer_token.is_empty() {
        return Err(AgentError::Fleet {
            node: cfg.name.clone(),
            detail: "it has no peer token (is the control plane an older kantai?)".to_owned(),
        });
    }
    dp.set_peer_token(&fleet.peer_token)
        .map_err(|_| AgentError::Fleet {
            node: cfg.name.clone(),
            detail: "its peer token is not a valid header value".to_owned(),
        })?;
    if let Some(log) = &cfg.decision_log {
        dp.set_decision_log(log.clone());
    }
    // Links to every other node, and to the node the control plane sits next to.
    let links = topology
        .nodes
        .iter()
        .filter(|n| n.name != cfg.name)
        .map(|n| (n.name.clone(), topology.link(&cfg.name, &n.name)))
        .collect();
    dp.netem().set_links(links);
    let control_node = topology.control.node.clone().unwrap_or_default();
    let client = {
        let dp = dp.clone();
        let control_node = control_node.clone();
        base.with_delay(Arc::new(move || dp.netem().one_way(&control_node, 0)))
    };
    let runtime = match &cfg.state_dir {
        Some(dir) => Runtime::open(cfg.runtime.clone(), cfg.launcher.clone(), &cfg.name, dir).await,
        None => Runtime::new(cfg.runtime.clone(), cfg.launcher.clone(), &cfg.name),
    };
    let agent = Arc::new(Agent {
        name: cfg.name.clone(),
        client,
        runtime,
        dp: dp.clone(),
        cache: Cache::default(),
        changed: Notify::new(),
        reconciling: Mutex::new(()),
        reconnected: Notify::new(),
        local: Mutex::new(HashMap::new()),
        config: fleet_serving_config(&fleet.config, &cfg.name),
        topology: topology.clone(),
        routes_version: std::sync::atomic::AtomicU64::new(0),
        routes_applied: Notify::new(),
        registration: Registration::new(&cfg, &capacity, bound),
        nodes_changed: Notify::new(),
        foreign: Mutex::new(HashMap::new()),
        standby: Mutex::new(HashMap::new()),
        ran_here: Mutex::new(std::collections::HashSet::new()),
        configs: configs::Configs::default(),
        address,
        edge: edge::Edge::default(),
    });
    register(&agent).await;
    remove_stale_instances(&agent).await;
    info!(node = %cfg.name, gateway = %bound.gateway, data = %bound.data, "node agent serving");

    let mut tasks = Vec::new();
    for r in [REVISIONS, ROUTES, PLACEMENTS, INSTANCES, NODES] {
        tasks.push(tokio::spawn(watch::run(agent.clone(), r)));
    }
    tasks.push(tokio::spawn(configs::run(agent.clone())));
    tasks.push(tokio::spawn(reconcile_loop(
        agent.clone(),
        fleet.domain.clone(),
    )));
    tasks.push(tokio::spawn(report_loop(agent.clone(), pokes)));
    tasks.push(tokio::spawn(probe_loop(agent.clone())));
    tasks.push(tokio::spawn(edge::run(agent.clone())));
    tasks.push(tokio::spawn(keep_node_loop(agent.clone())));
    tasks.push(tokio::spawn(admin_server(
        agent.clone(),
        admin,
        cfg.token.clone().unwrap_or_default(),
    )));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(kantai_dataplane::serve(
        dp.clone(),
        Listeners { gateway, data },
        async move {
            let _ = stop_rx.await;
        },
    ));
    if let Some(r) = ready {
        let _ = r.send(bound);
    }
    shutdown.await;
    info!(node = %cfg.name, "node agent stopping");
    for t in &tasks {
        t.abort();
    }
    instances::stop_all(&agent).await;
    agent.runtime.close();
    let _ = stop_tx.send(());
    let _ = serving.await;
    Ok(())
}

/// The fleet config the control plane serves (Knative's and kantai's defaults when it has
/// none, or when it cannot be read here).
fn fleet_serving_config(config: &str, node: &str) -> ServingConfig {
    if config.trim().is_empty() {
        return ServingConfig::default();
    }
    let docs = match kantai_model::node::parse_documents(
        config,
        kantai_model::node::ParseLimits::default(),
    ) {
        Ok(d) => d,
        Err(e) => {
            warn!(
                node,
                "the fleet config does not parse here ({}); using the default policies", e.message
            );
            return ServingConfig::default();
        }
    };
    let Some(doc) = docs.first() else {
        return ServingConfig::default();
    };
    let mut out = kantai_model::Findings::new();
    match ServingConfig::decode_fleet(doc, &mut out) {
        Some(c) if !out.has_errors() => c,
        _ => ServingConfig::default(),
    }
}

async fn fetch_fleet(client: &Client, node: &str) -> Result<FleetInfo, AgentError> {
    let mut wait = Duration::from_millis(50);
    loop {
        match client.get_json(FLEET_PATH).await {
            Ok(v) => {
                return serde_json::from_value(v).map_err(|e| AgentError::Fleet {
                    node: node.to_owned(),
                    detail: e.to_string(),
                });
            }
            Err(e) => {
                warn!(node, "waiting for the control plane: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Registers this node (create or replace its Node object), retrying with back-off until
/// the API takes it.
async fn register(agent: &Agent) {
    let mut wait = Duration::from_millis(50);
    while let Err(e) = register_once(agent).await {
        warn!(node = %agent.name, "cannot register the node yet: {e}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// One registration attempt; on success, remembers the spec as stored.
async fn register_once(agent: &Agent) -> Result<(), kantai_api::ApiError> {
    let r = &agent.registration;
    let stored = agent
        .client
        .replace(NODES, "", &agent.name, &r.object)
        .await?;
    let spec = match stored.get("spec") {
        Some(spec) if spec.is_object() => spec.clone(),
        _ => r.object["spec"].clone(),
    };
    *r.stored_spec.lock() = spec;
    Ok(())
}

/// How often the node keeper looks at the cache when no Node event woke it.
const NODE_CHECK: Duration = Duration::from_secs(1);
/// Restores closer together than this count as a fight over the object.
const FIGHT_WINDOW: Duration = Duration::from_secs(10);
/// Restores within `FIGHT_WINDOW` before the keeper backs off.
const FIGHT_RESTORES: usize = 3;

/// Why this node's Node object needs registering again.
#[derive(Debug, PartialEq)]
enum Drift {
    /// The object is gone.
    Deleted,
    /// The object's spec is not what this agent registered.
    Replaced {
        /// The spec stored now.
        found: Value,
    },
}

/// Compares the stored Node object (if any) with what this agent registered.
fn drift(stored: Option<&Value>, registered: &Value) -> Option<Drift> {
    match stored {
        None => Some(Drift::Deleted),
        Some(v) if v.get("spec") == Some(registered) => None,
        Some(v) => Some(Drift::Replaced {
            found: v.get("spec").cloned().unwrap_or(Value::Null),
        }),
    }
}

/// Keeps this node's Node object registered, like the kubelet keeps its Node: an object
/// another client deleted, or whose spec it replaced, while this agent lives is written
/// again. Driven by the watch cache (woken by Node events, and every second), confirmed
/// with a read of the object so that a cache that is merely behind changes nothing.
async fn keep_node_loop(agent: Arc<Agent>) {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    let mut retry = FIRST_RETRY;
    let mut hold = FIRST_RETRY;
    let mut restores: Vec<std::time::Instant> = Vec::new();
    let key = (String::new(), agent.name.clone());
    loop {
        tokio::select! {
            _ = agent.nodes_changed.notified() => {}
            _ = tokio::time::sleep(NODE_CHECK) => {}
        }
        let registered = agent.registration.stored_spec.lock().clone();
        if drift(agent.cache.snapshot().nodes.get(&key), &registered).is_none() {
            continue;
        }
        let why = match agent.client.get(NODES, "", &agent.name).await {
            Ok(v) => drift(Some(&v), &registered),
            Err(e) if e.is_not_found() => Some(Drift::Deleted),
            Err(e) => {
                warn!(node = %agent.name, "cannot read this node's Node object (retrying in {retry:?}): {e}");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // None: the cache was behind, and the stored object is this agent's.
        let Some(why) = why else { continue };
        match &why {
            Drift::Deleted => info!(
                node = %agent.name,
                "node {}'s Node object was deleted while its agent runs; registering it again (to remove a node for good, stop its agent first, then delete the object)",
                agent.name
            ),
            Drift::Replaced { found } => info!(
                node = %agent.name,
                %found,
                "node {}'s Node object no longer has the spec its agent registered (another client replaced it); restoring it",
                agent.name
            ),
        }
        if let Err(e) = register_once(&agent).await {
            warn!(node = %agent.name, "cannot register the node again (retrying in {retry:?}): {e}");
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(Duration::from_secs(5));
            continue;
        }
        retry = FIRST_RETRY;
        // A deleted node's instance objects may be gone too: the next pass writes them again.
        agent.changed.notify_one();
        restores.retain(|t| t.elapsed() < FIGHT_WINDOW);
        restores.push(std::time::Instant::now());
        if restores.len() > FIGHT_RESTORES {
            // Someone keeps rewriting it (a second agent under this name, or a controller):
            // restoring at full speed would only feed the fight.
            hold = (hold * 2).min(Duration::from_secs(30));
            warn!(
                node = %agent.name,
                "node {}'s Node object was changed by another client {} times in {FIGHT_WINDOW:?}; is a second agent running under this name? Waiting {hold:?} before restoring it again",
                agent.name,
                restores.len(),
            );
            tokio::time::sleep(hold).await;
        } else {
            hold = FIRST_RETRY;
        }
    }
}

/// Instance objects of this node left by an earlier run of the agent describe processes that
/// no longer exist: remove them before anything counts them as ready.
async fn remove_stale_instances(agent: &Agent) {
    let Ok(items) = agent.client.list(INSTANCES, None).await else {
        return;
    };
    for i in items {
        if i["spec"]["node"].as_str() == Some(agent.name.as_str()) {
            let ns = ns_of(&i);
            let name = i.name();
            info!(instance = %name, "removing an instance left by an earlier run");
            let _ = agent.client.delete(INSTANCES, &ns, name).await;
        }
    }
}

/// Re-derives the data plane's tables and this node's instances whenever a watched object
/// changes (and every second, for timers).
async fn reconcile_loop(agent: Arc<Agent>, domain: String) {
    loop {
        apply_dataplane(&agent, &domain);
        edge::settle(&agent);
        instances::reconcile(&agent);
        tokio::select! {
            _ = agent.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn ns_of(v: &Value) -> String {
    v.namespace_or_default().to_owned()
}

fn apply_dataplane(agent: &Agent, domain: &str) {
    let snap = agent.cache.snapshot();
    let mut failures = revision_failures(agent, &snap);
    // Routes: the resolved traffic of each Route.
    let routes: Vec<RouteSpec> = snap
        .routes
        .values()
        .map(|r| RouteSpec {
            namespace: ns_of(r),
            name: r.name().to_owned(),
            traffic: r["status"]["traffic"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some((
                        t["revisionName"].as_str()?.to_owned(),
                        t["percent"].as_u64().unwrap_or(0) as u32,
                        t["tag"].as_str().map(str::to_owned),
                    ))
                })
                .collect(),
            unavailable: route_unavailable(&snap, &failures, r),
        })
        .collect();
    // Revisions: their settings, plus the activator mode of the placement.
    let mut configs = HashMap::new();
    for r in snap.revisions.values() {
        let key = (r.namespace_or_default().to_owned(), r.name().to_owned());
        let Some(revision) = kantai_model::Object::stored_revision(r) else {
            debug!(revision = %key.1, "cannot read the revision");
            continue;
        };
        let (settings, _) = RevisionSettings::of(&revision, &agent.config);
        let placement = snap.placements.get(&key);
        configs.insert(
            key,
            RevisionConfig {
                cc: settings.container_concurrency,
                timeout: settings.timeout,
                response_start: settings.response_start,
                idle: settings.idle,
                h2c: settings.h2c,
                activator_in_path: placement
                    .is_none_or(|p| p["spec"]["activatorInPath"].as_bool().unwrap_or(true)),
                load_balancer: settings.load_balancer,
                queue: settings.queue,
                params: settings.params,
                service: r.label(SERVICE_LABEL).unwrap_or_default().to_owned(),
            },
        );
    }
    // Other nodes' data ports, and their ready instances.
    let peers = snap
        .nodes
        .values()
        .filter_map(|n| {
            let name = Some(n.name()).filter(|n| !n.is_empty())?.to_owned();
            let addr: SocketAddr = n["spec"]["data"].as_str()?.parse().ok()?;
            (name != agent.name).then_some((name, addr))
        })
        .collect();
    let mut remote: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
    for i in snap.instances.values() {
        let Ok(inst) = fleet::from_json::<Instance>(i) else {
            continue;
        };
        let st = inst.status.unwrap_or_default();
        if inst.spec.node != agent.name && st.ready && st.phase == fleet::Phase::Running {
            remote
                .entry((inst.metadata.namespace().to_owned(), inst.spec.revision))
                .or_default()
                .push((inst.metadata.name, inst.spec.node));
        }
    }
    agent.dp.set_revisions(configs);
    for r in snap.revisions.values() {
        let key = (r.namespace_or_default().to_owned(), r.name().to_owned());
        let failure = failures.remove(&key);
        agent.dp.set_revision_failure(&key.0, &key.1, failure);
    }
    agent.dp.set_routes(domain, routes);
    agent.dp.set_peers(peers);
    agent.dp.set_remote(remote);
    let version = snap
        .routes
        .values()
        .filter_map(|r| r.resource_version()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    if agent
        .routes_version
        .fetch_max(version, std::sync::atomic::Ordering::AcqRel)
        < version
    {
        agent.routes_applied.notify_one();
    }
}

/// Why each revision that cannot start cannot, in one pass over what the agent knows: what
/// its Secrets and ConfigMaps lack (or that they did not arrive), else one
/// of this node's instances of it failed to start (the image cannot be pulled, the program
/// is missing), else an instance elsewhere says so, else the revision's own status does
/// (its tag could not be resolved, its containers crash before they are ever ready).
fn revision_failures(agent: &Agent, snap: &watch::Snapshot) -> HashMap<(String, String), String> {
    // First what the revision's Secrets and ConfigMaps lack now: an instance that failed
    // for it earlier may be stale, this is current.
    let wanted = desired_here(agent)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, _)| k)
        .collect();
    let mut failures = agent.configs.failures(&wanted);
    for l in agent.local.lock().values() {
        if let Some(f) = &l.failure {
            failures.entry(l.key.clone()).or_insert_with(|| f.clone());
        }
    }
    for i in snap.instances.values() {
        if i["status"]["phase"] == "Failed"
            && i["spec"]["node"] != agent.name.as_str()
            && let Some(rev) = i["spec"]["revision"].as_str()
        {
            let why = i["status"]["message"].as_str().unwrap_or("it failed");
            failures
                .entry((ns_of(i), rev.to_owned()))
                .or_insert_with(|| why.to_owned());
        }
    }
    for r in snap.revisions.values() {
        let unhealthy = r["status"]["conditions"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "ContainerHealthy" && c["status"] == "False")
        });
        if let (Some(c), Some(name)) = (unhealthy, Some(r.name()).filter(|n| !n.is_empty())) {
            let why = c["message"]
                .as_str()
                .or(c["reason"].as_str())
                .unwrap_or("its container is not healthy");
            failures
                .entry((ns_of(r), name.to_owned()))
                .or_insert_with(|| why.to_owned());
        }
    }
    failures
}

/// Why a route that has no traffic yet has none, when its newest revision cannot start:
/// its hosts then answer 503 saying so instead of 404 (the revision was never ready, so
/// Knative would not route to it at all).
fn route_unavailable(
    snap: &watch::Snapshot,
    failures: &HashMap<(String, String), String>,
    route: &Value,
) -> Option<String> {
    let has_traffic = route["status"]["traffic"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["percent"].as_u64().unwrap_or(0) > 0));
    if has_traffic {
        return None;
    }
    let ns = ns_of(route);
    let name = Some(route.name()).filter(|n| !n.is_empty())?;
    let newest = snap
        .revisions
        .values()
        .filter(|r| ns_of(r) == ns && r.label(CONFIGURATION_LABEL) == Some(name))
        .max_by_key(|r| {
            r.label(CONFIGURATION_GENERATION_LABEL)
                .and_then(|g| g.parse::<u64>().ok())
                .unwrap_or(0)
        })?;
    let rev = Some(newest.name()).filter(|n| !n.is_empty())?;
    failures
        .get(&(ns, rev.to_owned()))
        .map(|f| format!("revision {rev} cannot start: {f}"))
}

/// Desired instances of each revision on this node: the placements' count, or the instances
/// the node started on its own while no placement counts them, whichever is more.
pub(crate) fn desired_here(agent: &Agent) -> HashMap<(String, String), u32> {
    let mut desired: HashMap<(String, String), u32> = agent
        .cache
        .snapshot()
        .placements
        .values()
        .filter_map(|p| fleet::from_json::<Placement>(p).ok())
        .map(|p| {
            (
                (p.metadata.namespace().to_owned(), p.spec.revision.clone()),
                p.desired_on(&agent.name),
            )
        })
        .collect();
    for (key, n) in agent.edge.counts() {
        let e = desired.entry(key).or_default();
        *e = kantai_driver::counted(*e, n);
    }
    desired
}

async fn report_loop(
    agent: Arc<Agent>,
    mut pokes: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    // The control plane judges a node's readiness by this interval.
    let mut tick = tokio::time::interval(kantai_model::lifecycle::REPORT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One periodic report in flight at a time: a stalled link to the control plane holds it
    // up to the client's timeout, and neither the pokes nor the loads wait behind it.
    let in_flight = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Revisions poked lately: the demand last told, and when the first poke went.
    let mut trailing: HashMap<(String, String), (u32, std::time::Instant)> = HashMap::new();
    let mut recheck = tokio::time::interval(kantai_driver::POKE_INTERVAL);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // The balancers see the latency monitor's latest estimates.
                agent.dp.publish_net(node_order(&agent));
                let rtt = agent
                    .dp
                    .rtt_estimates()
                    .into_iter()
                    .map(|e| RttSample { peer: e.peer, rtt_ms: e.ewma_ms })
                    .collect();
                let revisions = agent.dp.take_loads();
                agent.edge.observe(&revisions);
                let report = Report {
                    node: agent.name.clone(),
                    revisions,
                    rtt,
                    poke: false,
                    routes_version: agent.routes_version.load(std::sync::atomic::Ordering::Acquire),
                    local: agent.edge.reports(),
                };
                if !in_flight.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    let (agent, in_flight) = (agent.clone(), in_flight.clone());
                    tokio::spawn(async move {
                        send_report(&agent, &report).await;
                        in_flight.store(false, std::sync::atomic::Ordering::Release);
                    });
                }
            }
            _ = agent.routes_applied.notified() => {
                let report = Report {
                    node: agent.name.clone(),
                    routes_version: agent.routes_version.load(std::sync::atomic::Ordering::Acquire),
                    local: agent.edge.reports(),
                    ..Report::default()
                };
                let agent = agent.clone();
                tokio::spawn(async move { send_report(&agent, &report).await });
            }
            Some(key) = pokes.recv() => {
                // A cold start this node may decide itself starts now; the control plane
                // learns of it from this very report.
                let local = edge::poke(&agent, &key);
                // Knative's activator: the first request for a revision without room is
                // reported at once, as one request in flight.
                let rev = agent.dp.revision(&key.0, &key.1);
                let held = rev.held().max(1);
                let demand = rev.in_flight_now().max(held);
                debug!(revision = %key.1, held, local, "poke");
                if agent.edge.autonomous() {
                    // Nobody answers: the periodic report finds out when someone does.
                    continue;
                }
                if trailing.is_empty() {
                    // The first look comes a poke interval from now, not at once.
                    recheck.reset();
                }
                trailing.insert(key.clone(), (demand, std::time::Instant::now()));
                send_poke(&agent, key, held, demand);
            }
            _ = recheck.tick(), if !trailing.is_empty() => {
                // The requests of a burst come after its first poke, within the gateway's
                // poke interval: its demand (requests in flight here, held ones included) is
                // told again while it grows, so that the control plane sees the burst now,
                // not at the next periodic report.
                // Until the next periodic report, which carries the load anyway.
                let mut grew = Vec::new();
                trailing.retain(|key, (told, since)| {
                    let rev = agent.dp.revision(&key.0, &key.1);
                    let (held, demand) = (rev.held(), rev.in_flight_now());
                    if held == 0 || since.elapsed() > kantai_model::lifecycle::REPORT_INTERVAL {
                        return false;
                    }
                    if demand > *told {
                        *told = demand;
                        grew.push((key.clone(), held, demand));
                    }
                    true
                });
                for (key, held, demand) in grew {
                    debug!(revision = %key.1, held, demand, "poke: the burst grew");
                    send_poke(&agent, key, held, demand);
                }
            }
        }
    }
}

/// Reports a revision's `held` requests and its `demand` (requests in flight here, the held
/// ones included) at once, as Knative's activator reports the requests it buffers.
fn send_poke(agent: &Arc<Agent>, key: (String, String), held: u32, demand: u32) {
    let report = Report {
        node: agent.name.clone(),
        revisions: vec![kantai_api::RevisionLoad {
            namespace: key.0,
            revision: key.1,
            concurrency: f64::from(demand),
            requests: 1.0,
            held,
            ..Default::default()
        }],
        rtt: Vec::new(),
        poke: true,
        routes_version: agent
            .routes_version
            .load(std::sync::atomic::Ordering::Acquire),
        local: agent.edge.reports(),
    };
    let agent = agent.clone();
    tokio::spawn(async move { send_report(&agent, &report).await });
}

async fn send_report(agent: &Agent, report: &Report) {
    let body = serde_json::to_value(report).unwrap_or_default();
    // A report unanswered this long is lost (the node is about to count the control plane
    // unreachable); the next one goes out in its place rather than behind it.
    let send = agent
        .client
        .send_json(http::Method::POST, REPORTS_PATH, &body);
    let answer = match tokio::time::timeout(kantai_driver::AUTONOMOUS_AFTER, send).await {
        Ok(answer) => answer,
        Err(_) => {
            warn!(node = %agent.name, "the control plane did not answer a load report within {:?}", kantai_driver::AUTONOMOUS_AFTER);
            return;
        }
    };
    match answer {
        // The reply carries what the balancers need from the whole fleet.
        Ok(v) => {
            agent.edge.heard(&agent.name);
            if let Ok(reply) = serde_json::from_value::<ReportReply>(v) {
                let serving = reply
                    .serving
                    .into_iter()
                    .map(|r| ((r.namespace, r.revision), r.nodes))
                    .collect();
                agent.dp.set_serving(&serving);
            }
        }
        Err(e) => warn!(node = %agent.name, "cannot report load: {e}"),
    }
}

/// The fleet's nodes in order: the topology's, then any other registered node by name.
fn node_order(agent: &Agent) -> Vec<String> {
    let snap = agent.cache.snapshot();
    agent
        .topology
        .node_order(snap.nodes.keys().map(|(_, name)| name.as_str()))
}

/// How long without a round-trip sample (from forwarded requests) before a peer is probed.
const PROBE_WHEN_STALE: Duration = Duration::from_secs(4);

/// The latency monitor's active part: every 2 s, probes each other node's data port whose
/// round trip no forwarded request measured recently (through the emulated links, like any
/// other traffic). Forwarded requests measure it passively otherwise.
async fn probe_loop(agent: Arc<Agent>) {
    loop {
        let peers: Vec<(String, String)> = agent
            .cache
            .snapshot()
            .nodes
            .values()
            .filter_map(|n| {
                Some((
                    Some(n.name()).filter(|n| !n.is_empty())?.to_owned(),
                    n["spec"]["data"].as_str()?.to_owned(),
                ))
            })
            .filter(|(name, _)| *name != agent.name)
            .collect();
        // Each peer probed on its own, within a bound: a stalled link must not hold up the
        // probes of the others.
        let probes = peers
            .into_iter()
            .filter(|(peer, _)| agent.dp.rtt_is_stale(peer, PROBE_WHEN_STALE))
            .map(|(peer, _)| {
                let agent = agent.clone();
                async move {
                    match agent.dp.probe_rtt(&peer).await {
                        Some(ms) => agent.dp.record_rtt(&peer, ms),
                        // Silent: its instances get no requests from here until it answers,
                        // whatever their requests' timeouts.
                        None => agent.dp.suspect(&peer),
                    }
                }
            });
        futures_util::future::join_all(probes).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `logs -f`: what is there, then each new line as it comes, until the instance stops here
/// (or the client goes away).
fn follow_logs(
    agent: Arc<Agent>,
    ns: String,
    name: String,
    buf: Arc<kantai_runtime::LogBuffer>,
    tail: Option<usize>,
) -> axum::body::Body {
    // Subscribed before reading, and the text read with its count: no line falls between.
    let mut rx = buf.subscribe();
    rx.borrow_and_update();
    let (first, seen) = buf.text_and_count(tail);
    let start =
        futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes::Bytes::from(first))]);
    let rest = futures_util::stream::unfold((seen, rx), move |(seen, mut rx)| {
        let (agent, ns, name, buf) = (agent.clone(), ns.clone(), name.clone(), buf.clone());
        async move {
            loop {
                if !instances::is_here(&agent, &ns, &name) {
                    return None;
                }
                let (text, total) = buf.since(seen);
                if !text.is_empty() {
                    return Some((Ok(bytes::Bytes::from(text)), (total, rx)));
                }
                // Woken by a new line, or every 2 s to notice the instance is gone.
                let _ = tokio::time::timeout(Duration::from_secs(2), rx.changed()).await;
            }
        }
    });
    axum::body::Body::from_stream(futures_util::StreamExt::chain(start, rest))
}

/// The emulated links from this node as set now: `{peer: {rtt, jitter, loss, bandwidth, down}}`.
fn links_json(agent: &Agent) -> Value {
    let mut out = serde_json::Map::new();
    for (peer, s) in agent.dp.netem().settings() {
        let mut v = serde_json::to_value(s.link).unwrap_or_default();
        v["down"] = Value::Bool(s.down);
        out.insert(peer, v);
    }
    Value::Object(out)
}

/// Changes the emulated link from this node to `peer` (fault injection: loss, delay, or a
/// stall with `down: true`); the other direction is the peer's to change.
fn set_link(agent: &Agent, peer: &str, body: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    if peer == agent.name || !node_order(agent).iter().any(|n| n == peer) {
        return (
            http::StatusCode::NOT_FOUND,
            format!(
                "{peer:?} is not another node of this fleet; node {} has links to: {}\n",
                agent.name,
                node_order(agent)
                    .into_iter()
                    .filter(|n| *n != agent.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
            .into_response();
    }
    match kantai_model::topology::LinkSetting::parse(body) {
        Ok(setting) => {
            info!(node = %agent.name, peer, ?setting, "link changed");
            agent.dp.netem().set(peer, setting);
            axum::Json(links_json(agent)[peer].clone()).into_response()
        }
        Err(e) => (
            http::StatusCode::UNPROCESSABLE_ENTITY,
            format!("the link setting for {peer} is invalid: {e}\n"),
        )
            .into_response(),
    }
}

/// The admin port answers only requests with the fleet's API token (`/healthz` aside): it
/// shows every instance's output and changes the emulated links.
async fn require_token(
    axum::extract::State(token): axum::extract::State<Arc<String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ok = req.uri().path() == "/healthz"
        || req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(kantai_api::auth::bearer)
            .is_some_and(|t| {
                !token.is_empty() && kantai_api::auth::tokens_match(t.as_bytes(), token.as_bytes())
            });
    if ok {
        next.run(req).await
    } else {
        (
            http::StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, "Bearer")],
            "the admin port needs the fleet's API token (Authorization: Bearer TOKEN; STATE_DIR/token)\n",
        )
            .into_response()
    }
}

async fn admin_server(agent: Arc<Agent>, listener: TcpListener, token: String) {
    use axum::extract::{Path, Query};
    let a = agent.clone();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/metrics", {
            let a = agent.clone();
            axum::routing::get(move || {
                let a = a.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            kantai_dataplane::metrics::CONTENT_TYPE,
                        )],
                        a.dp.metrics_text() + &a.edge.metrics(&a.name),
                    )
                }
            })
        })
        .route(
            "/kantai/v1/links",
            axum::routing::get({
                let a = agent.clone();
                move || {
                    let a = a.clone();
                    async move { axum::Json(links_json(&a)) }
                }
            }),
        )
        .route(
            "/kantai/v1/links/{peer}",
            axum::routing::put({
                let a = agent.clone();
                move |Path(peer): Path<String>, body: String| {
                    let a = a.clone();
                    async move { set_link(&a, &peer, &body) }
                }
            }),
        )
        .route(
            "/kantai/v1/logs/{ns}/{name}",
            axum::routing::get(
                move |Path((ns, name)): Path<(String, String)>,
                      Query(q): Query<HashMap<String, String>>| {
                    let a = a.clone();
                    async move {
                        use axum::response::IntoResponse;
                        let tail = q.get("tailLines").and_then(|t| t.parse().ok());
                        let follow = q.get("follow").is_some_and(|f| f == "true");
                        let Some(text) = instances::logs(&a, &ns, &name, tail) else {
                            return (
                                http::StatusCode::NOT_FOUND,
                                format!("instance {ns}/{name} is not on node {}\n", a.name),
                            )
                                .into_response();
                        };
                        match instances::log_buffer(&a, &ns, &name).filter(|_| follow) {
                            Some(buf) => follow_logs(a, ns, name, buf, tail).into_response(),
                            None => (http::StatusCode::OK, text).into_response(),
                        }
                    }
                },
            ),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ));
    if let Err(e) = axum::serve(listener, app).await {
        warn!(node = %agent.name, "admin server stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Drift, drift};

    #[test]
    fn a_node_object_drifts_when_gone_or_its_spec_differs_but_not_for_status_or_metadata() {
        let spec = json!({"gateway": "127.0.0.1:8080", "data": "127.0.0.1:9000"});
        assert_eq!(drift(None, &spec), Some(Drift::Deleted));
        let same = json!({
            "metadata": {"name": "n1", "resourceVersion": "7", "labels": {"k": "v"}},
            "spec": spec.clone(),
            "status": {"conditions": []},
        });
        assert_eq!(drift(Some(&same), &spec), None);
        let moved = json!({"spec": {"gateway": "127.0.0.1:8080", "data": "10.0.0.9:9000"}});
        assert_eq!(
            drift(Some(&moved), &spec),
            Some(Drift::Replaced {
                found: moved["spec"].clone()
            })
        );
        assert_eq!(
            drift(Some(&json!({"metadata": {}})), &spec),
            Some(Drift::Replaced { found: json!(null) })
        );
    }
}
