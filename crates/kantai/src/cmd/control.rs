//! `kantai control`: the control plane on its own (one host of a multi-host fleet).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kantai_control::{ControlConfig, ControlPlane};
use kantai_model::topology::Topology;
use serde_json::json;

use crate::{fleet_config, input, launch};

/// Arguments of `kantai control`.
#[derive(clap::Args)]
pub struct Args {
    /// Address of the API (default: the topology's control.listen, 127.0.0.1:7400).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where objects are stored (created if missing, readable by its owner only).
    #[arg(long, value_name = "DIR", env = "KANTAI_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Fleet config file (defaults, limits, domain, image map).
    #[arg(long, value_name = "FILE", env = "KANTAI_CONFIG")]
    config: Option<PathBuf>,
    /// Topology file; without one, the seed's three-node testbed.
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// Record every placement decision, with its inputs (JSON lines), in FILE.
    #[arg(long, value_name = "FILE")]
    decision_log: Option<PathBuf>,
    /// Write the API address to this file once serving (for scripts and `kantai up`).
    #[arg(long, value_name = "FILE", hide = true)]
    ready_file: Option<PathBuf>,
}

/// Loads a topology file, or the seed's testbed.
pub fn load_topology(path: Option<&std::path::Path>) -> anyhow::Result<Topology> {
    match path {
        None => Ok(Topology::seed_testbed()),
        Some(p) => {
            let f = input::read(p)?;
            Topology::parse(&f.text)
                .map_err(|e| anyhow::anyhow!("invalid topology {}:\n{e}", f.name))
        }
    }
}

/// The default state directory: `$XDG_STATE_HOME/kantai` or `~/.local/state/kantai`.
pub fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(x).join("kantai");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/kantai")
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = fleet_config::load(args.config.as_deref())?;
    let topology = load_topology(args.topology.as_deref())?;
    let state_dir = args.state_dir.unwrap_or_else(default_state_dir);
    let rt = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    rt.block_on(async move {
        let cp = ControlPlane::start(ControlConfig {
            listen: args.listen.unwrap_or(topology.control.listen),
            state_dir,
            serving: cfg.serving,
            config_text: cfg.text,
            decision_log: match &args.decision_log {
                Some(f) => Some(std::sync::Arc::new(
                    kantai_api::decisions::DecisionLog::open(f, false)
                        .with_context(|| format!("cannot open the decision log {}", f.display()))?,
                )),
                None => None,
            },
            topology,
        })
        .await?;
        if let Some(f) = &args.ready_file {
            launch::write_ready(f, &json!({"api": format!("http://{}", cp.addr)}))?;
        }
        launch::stop_signal().await;
        cp.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
