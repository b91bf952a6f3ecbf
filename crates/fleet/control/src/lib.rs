//! The control plane: a Kubernetes-style API over an embedded store, the controllers that
//! derive Configurations, Revisions, Routes and every status from Services, and the
//! autoscaling loop that runs the KPA and the placement policy.

pub mod api;
mod configs;
pub mod digests;
pub mod encryption;
pub mod events;
mod logs;
pub mod metrics;
pub mod reconcile;
pub mod scaling;
pub mod ssa;
pub mod store;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use kantai_api::Report;
use kantai_autoscaler::Decision;
use kantai_model::ServingConfig;
use kantai_model::lifecycle::Lifecycle;
use kantai_model::topology::Topology;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tracing::info;

use crate::store::Store;

/// Everything the control plane needs to start.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// API listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// Where the store lives.
    pub state_dir: PathBuf,
    /// Serving defaults and limits.
    pub serving: ServingConfig,
    /// The text `serving` was read from (empty for the defaults), handed to clients.
    pub config_text: String,
    /// Where placement decisions are recorded, if anywhere.
    pub decision_log: Option<Arc<kantai_api::decisions::DecisionLog>>,
    /// The fleet's topology.
    pub topology: Topology,
    /// The bearer token every API request must carry (agents and users alike).
    pub token: String,
    /// The token node agents present to each other, handed to them with the fleet's info.
    pub peer_token: String,
    /// The secure port for kubectl: its address and the PEM certificate and key it serves.
    pub tls: Option<TlsConfig>,
}

/// The API's secure port.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// Listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// PEM certificate (chain).
    pub cert_pem: String,
    /// PEM private key.
    pub key_pem: String,
}

/// A value per node: `(node name, value)`.
pub type NodeValues = Vec<(String, f64)>;

/// State shared by the API, the controllers and the autoscaling loop.
pub struct Shared {
    /// The objects.
    pub store: Store,
    /// Serving defaults and limits.
    pub config: ServingConfig,
    /// The text `config` was read from.
    pub config_text: String,
    /// Where placement decisions are recorded, if anywhere.
    pub decision_log: Option<Arc<kantai_api::decisions::DecisionLog>>,
    /// The fleet's topology.
    pub topology: Topology,
    /// Load reports on their way to the autoscaling loop.
    pub reports: mpsc::Sender<(Report, tokio::time::Instant)>,
    /// Wakes the controllers.
    pub wake: Notify,
    /// The latest autoscaling decision of every revision.
    pub decisions: Mutex<HashMap<(String, String), Decision>>,
    /// Each node's last registration: a Node object deleted while its agent still reports
    /// is registered again by that agent within moments, and placement keeps its instances
    /// where they are meanwhile.
    pub known_nodes: Mutex<HashMap<String, kantai_model::fleet::Node>>,
    /// When each node agent last reported (for the Node's `lastHeartbeatTime`).
    pub nodes_seen: Mutex<HashMap<String, SystemTime>>,
    /// Node readiness and the giving up on silent nodes' instances, fed by the reports and
    /// passed by `reconcile::watch_nodes`.
    pub lifecycle: Mutex<Lifecycle>,
    /// The epoch of the times the lifecycle is given.
    pub epoch: tokio::time::Instant,
    /// When this control plane started.
    pub started: SystemTime,
    /// Per revision, the serving time measured on each node (for the agents' balancers).
    pub serving: Mutex<HashMap<(String, String), NodeValues>>,
    /// Per revision, the requests per second entering at each node.
    pub demand: Mutex<HashMap<(String, String), NodeValues>>,
    /// The latest measured round trip between nodes, in milliseconds.
    pub rtt: Mutex<HashMap<(String, String), f64>>,
    /// The routes version each node's gateway has programmed.
    pub route_acks: Mutex<HashMap<String, u64>>,
    /// Per route, the resourceVersion of the write that last changed its traffic.
    pub traffic_versions: Mutex<HashMap<(String, String), u64>>,
    /// Becomes true when the control plane stops (open watches end).
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The bearer token every API request must carry.
    pub token: String,
    /// The token node agents present to each other.
    pub peer_token: String,
    /// The resolution of revisions' image tags to digests.
    pub(crate) digests: digests::Digests,
}

impl Shared {
    /// The fleet's node order (`Topology::node_order`): the topology's nodes, then every other
    /// registered node by name.
    pub fn node_order(&self) -> Vec<String> {
        use kantai_model::meta::JsonMeta;
        let (nodes, _) = self.store.list(&kantai_api::resources::NODES, None);
        self.topology.node_order(nodes.iter().map(|n| n.name()))
    }

    /// Whether a node is Ready, as the lifecycle last judged it (on reports it had the chance
    /// to read).
    pub fn node_ready(&self, name: &str) -> bool {
        self.lifecycle.lock().ready(name)
    }

    /// Whether a node's instances count and stay where they are: false once the lifecycle
    /// gave up on them, until the node's agent reports again. A node that is not Ready is
    /// still serving while its eviction waits for the rate limit or is suspended.
    pub fn node_serving(&self, name: &str) -> bool {
        self.lifecycle.lock().serving(name)
    }

    /// `at` as the lifecycle's time.
    pub fn since_epoch(&self, at: tokio::time::Instant) -> std::time::Duration {
        at.saturating_duration_since(self.epoch)
    }

    /// Tells the controllers something changed.
    pub fn changed(&self) {
        self.wake.notify_one();
    }
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running control plane.
pub struct ControlPlane {
    /// The address the API listens on.
    pub addr: SocketAddr,
    /// The address of the API's TLS port, if it has one.
    pub tls_addr: Option<SocketAddr>,
    /// Shared state (for tests and embedding).
    pub shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    /// Opens the store, binds the API and starts the controllers; image tags are not
    /// resolved (see [`ControlPlane::start_with`]).
    pub async fn start(cfg: ControlConfig) -> Result<ControlPlane, StartError> {
        Self::start_with(cfg, digests::DigestConfig::default()).await
    }

    /// [`ControlPlane::start`], resolving each revision's image tags to digests as
    /// `digests` says before any instance of it is placed.
    pub async fn start_with(
        cfg: ControlConfig,
        digests: digests::DigestConfig,
    ) -> Result<ControlPlane, StartError> {
        let timeout = cfg.serving.digest_resolution_timeout;
        let store = Store::open(&cfg.state_dir)?;
        let (tx, rx) = mpsc::channel(10_000);
        let (stop_tx, stopping) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            config: cfg.serving,
            config_text: cfg.config_text,
            decision_log: cfg.decision_log,
            topology: cfg.topology,
            reports: tx,
            wake: Notify::new(),
            decisions: Mutex::new(HashMap::new()),
            known_nodes: Mutex::new(HashMap::new()),
            nodes_seen: Mutex::new(HashMap::new()),
            lifecycle: Mutex::new(Lifecycle::default()),
            epoch: tokio::time::Instant::now(),
            started: SystemTime::now(),
            rtt: Mutex::new(HashMap::new()),
            serving: Mutex::new(HashMap::new()),
            demand: Mutex::new(HashMap::new()),
            route_acks: Mutex::new(HashMap::new()),
            traffic_versions: Mutex::new(HashMap::new()),
            stopping,
            token: cfg.token,
            peer_token: cfg.peer_token,
            digests: digests::Digests::new(digests, timeout),
        });
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: cfg.listen,
            source,
        })?;
        info!(%addr, state = %cfg.state_dir.display(), "control plane listening");
        let app = api::router(shared.clone());
        let mut tasks = Vec::new();
        let mut tls_addr = None;
        if let Some(t) = &cfg.tls {
            let acceptor = tls::acceptor(&t.cert_pem, &t.key_pem)?;
            let l = tokio::net::TcpListener::bind(t.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: t.listen,
                    source,
                })?;
            let a = l.local_addr().map_err(|source| StartError::Listen {
                addr: t.listen,
                source,
            })?;
            info!(addr = %a, "API secure port (TLS) listening");
            tls_addr = Some(a);
            tasks.push(tokio::spawn(tls::serve(
                l,
                acceptor,
                app.clone(),
                shared.stopping.clone(),
            )));
        }
        let mut stop_rx = shared.stopping.clone();
        let server = tokio::spawn(async move {
            let graceful = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(graceful)
                .await
            {
                tracing::error!("the API server stopped: {e}");
            }
        });
        tasks.extend([
            tokio::spawn(reconcile::run(shared.clone())),
            tokio::spawn(scaling::run(shared.clone(), rx)),
            tokio::spawn(reconcile::watch_nodes(shared.clone())),
        ]);
        Ok(ControlPlane {
            addr,
            tls_addr,
            shared,
            server,
            stop: stop_tx,
            tasks,
        })
    }

    /// Stops serving: open watches end, connections close, the loops stop, and the store
    /// is closed once this returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.server).await;
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
