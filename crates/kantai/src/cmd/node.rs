//! `kantai node`: a node agent joining a control plane (one host of a multi-host fleet).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use kantai_node::NodeConfig;
use serde_json::json;

use crate::{fleet_config, launch};

/// Arguments of `kantai node`.
#[derive(clap::Args)]
pub struct Args {
    /// The control plane's API, `http://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    join: String,
    /// This node's name (its entry in the topology, if it has one).
    #[arg(long)]
    name: String,
    /// This host's address (default: the topology's, else 127.0.0.1).
    #[arg(long, value_name = "IP")]
    address: Option<IpAddr>,
    /// Gateway listen address (default: the topology's, else ADDRESS:8080).
    #[arg(long, value_name = "ADDR")]
    gateway: Option<SocketAddr>,
    /// Data port listen address (default: ADDRESS, any port).
    #[arg(long, value_name = "ADDR")]
    data: Option<SocketAddr>,
    /// Admin listen address (default: ADDRESS, any port).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// A label of the node, `KEY=VALUE` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The fleet's token (the control plane's `STATE_DIR/token`, copied to this host).
    #[arg(long, value_name = "FILE", env = "KANTAI_TOKEN_FILE")]
    token_file: PathBuf,
    /// Fleet config file (for the image map).
    #[arg(long, value_name = "FILE", env = "KANTAI_CONFIG")]
    config: Option<PathBuf>,
    /// Record this node's decisions (JSON lines) in FILE.
    #[arg(long, value_name = "FILE")]
    decision_log: Option<PathBuf>,
    /// With --decision-log: record every load-balancing decision too (one per request).
    #[arg(long, requires = "decision_log")]
    log_load_balancing: bool,
    /// Where the node keeps its images and container roots (default: /var/lib/kantai/NAME
    /// as root, else $XDG_STATE_HOME/kantai/NAME or ~/.local/state/kantai/NAME).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Write the bound addresses to this file once serving.
    #[arg(long, value_name = "FILE", hide = true)]
    ready_file: Option<PathBuf>,
}

/// A node's state directory when none is given.
fn default_state_dir(node: &str) -> PathBuf {
    if nix::unistd::Uid::effective().is_root() {
        return PathBuf::from("/var/lib/kantai").join(node);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kantai").join(node)
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = fleet_config::load(args.config.as_deref())?;
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("label {l:?} is not KEY=VALUE");
        };
        labels.insert(k.to_owned(), v.to_owned());
    }
    let token = crate::kubeconfig::read_token(&args.token_file)?;
    let node = NodeConfig {
        token: Some(token),
        name: args.name.clone(),
        control: args.join.clone(),
        address: args.address,
        gateway: args.gateway,
        data: args.data,
        admin: args.admin,
        labels,
        capacity: None,
        runtime: cfg.runtime,
        launcher: std::env::current_exe().ok(),
        state_dir: Some(match &args.state_dir {
            Some(d) => d.clone(),
            None => default_state_dir(&args.name),
        }),
        limits: cfg.dataplane,
        decision_log: match &args.decision_log {
            Some(f) => Some(std::sync::Arc::new(
                kantai_api::decisions::DecisionLog::open(f, args.log_load_balancing)
                    .with_context(|| format!("cannot open the decision log {}", f.display()))?,
            )),
            None => None,
        },
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::oneshot::channel::<kantai_node::Bound>();
        let ready_file = args.ready_file.clone();
        tokio::spawn(async move {
            if let (Ok(b), Some(f)) = (rx.await, ready_file) {
                let v = json!({"gateway": b.gateway.to_string(), "data": b.data.to_string(), "admin": b.admin.to_string()});
                if let Err(e) = launch::write_ready(&f, &v) {
                    tracing::error!("{e:#}");
                }
            }
        });
        kantai_node::run(node, launch::stop_signal(), Some(tx)).await?;
        Ok(ExitCode::SUCCESS)
    })
}
