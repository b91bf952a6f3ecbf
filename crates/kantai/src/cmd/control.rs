//! `kantai control`: the control plane on its own (one host of a multi-host fleet).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kantai_control::{ControlConfig, ControlPlane};
use kantai_model::topology::Topology;
use serde_json::json;

use crate::{fleet_config, input, kubeconfig, launch};

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
    /// Address of the API's secure (TLS) port, which kubectl uses (default: the API's
    /// address and the next port, 7401 beside 7400; written to the kubeconfig).
    #[arg(long, value_name = "ADDR")]
    secure_listen: Option<SocketAddr>,
    /// The fleet's bearer token (created, mode 0600, if missing; default STATE_DIR/token).
    /// Node agents and clients need the same token.
    #[arg(long, value_name = "FILE", env = "KANTAI_TOKEN_FILE")]
    token_file: Option<PathBuf>,
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
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(|| kubeconfig::token_path(&state_dir));
    let token = kubeconfig::ensure_token(&token_file)?;
    // Node agents present it to each other; kept across restarts like the API token, so
    // agents that outlive a control-plane restart keep talking.
    let peer_token = kubeconfig::ensure_token(&state_dir.join("peer-token"))?;
    let kubeconfig_file = kubeconfig::kubeconfig_path(&state_dir);
    let listen = args.listen.unwrap_or(topology.control.listen);
    // The port after the API's, so a kubeconfig handed out stays valid across restarts
    // (any free port when the API's is picked by the system).
    let secure_listen = args.secure_listen.unwrap_or(SocketAddr::new(
        listen.ip(),
        if listen.port() == 0 {
            0
        } else {
            listen.port().saturating_add(1)
        },
    ));
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for ip in [listen.ip(), secure_listen.ip()] {
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    let (cert_pem, key_pem) = kubeconfig::ensure_certificate(&state_dir, &names)?;
    let ca_file = state_dir.join("tls.crt");
    let rt = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    rt.block_on(async move {
        // Tags are resolved with the nodes' registry settings; images that run as local
        // processes need no registry.
        let registry = kantai_images::Registry::new(&cfg.runtime.oci.images())
            .context("cannot set up the registry client (runtime.oci in the fleet config)")?;
        let runtime = cfg.runtime.clone();
        let digests = kantai_control::digests::DigestConfig {
            resolver: Some(std::sync::Arc::new(registry)),
            runs_locally: std::sync::Arc::new(move |image: &str| runtime.lookup(image).is_some()),
            ..Default::default()
        };
        let cp = ControlPlane::start_with(
            ControlConfig {
                listen,
                state_dir,
                serving: cfg.serving,
                config_text: cfg.text,
                decision_log: match &args.decision_log {
                    Some(f) => Some(std::sync::Arc::new(
                        kantai_api::decisions::DecisionLog::open(f, false).with_context(|| {
                            format!("cannot open the decision log {}", f.display())
                        })?,
                    )),
                    None => None,
                },
                topology,
                token: token.clone(),
                peer_token,
                tls: Some(kantai_control::TlsConfig {
                    listen: secure_listen,
                    cert_pem,
                    key_pem,
                }),
            },
            digests,
        )
        .await?;
        let api = format!("http://{}", cp.addr);
        let secure = cp
            .tls_addr
            .map(|a| {
                // A wildcard listen address is reached on loopback from this host.
                let ip = if a.ip().is_unspecified() {
                    std::net::IpAddr::from([127, 0, 0, 1])
                } else {
                    a.ip()
                };
                format!("https://{}", SocketAddr::new(ip, a.port()))
            })
            .unwrap_or_default();
        kubeconfig::write_private(
            &kubeconfig_file,
            &kubeconfig::render(&secure, &ca_file, &api, &token),
        )?;
        tracing::info!(kubeconfig = %kubeconfig_file.display(), "credentials written");
        if let Some(f) = &args.ready_file {
            launch::write_ready(
                f,
                &json!({
                    "api": api,
                    "kubeconfig": kubeconfig_file.display().to_string(),
                    "token_file": token_file.display().to_string(),
                }),
            )?;
        }
        launch::stop_signal().await;
        cp.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
