//! `kantai up`: a whole fleet on this machine, in the foreground: a control plane and one node
//! agent per node of the topology, with the topology's links emulated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cmd::control::{default_state_dir, load_topology};
use crate::fleet_config;
use crate::launch::{self, Fleet, Launch};

/// Arguments of `kantai up`.
#[derive(clap::Args)]
pub struct Args {
    /// Topology file; without one, the seed's testbed: node1 and node2 in the cloud, node3 at
    /// the edge, 50 ms ± 10 ms round trip from both.
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// Fleet config file.
    #[arg(long, value_name = "FILE", env = "KANTAI_CONFIG")]
    config: Option<PathBuf>,
    /// Where the control plane keeps its objects.
    #[arg(long, value_name = "DIR", env = "KANTAI_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// API listen address (default: the topology's control.listen, 127.0.0.1:7400).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Record every placement decision (and, with --log-load-balancing, every load-balancing
    /// decision) with its inputs in DIR: control.jsonl and one NODE.jsonl per node.
    #[arg(long, value_name = "DIR")]
    decision_log: Option<PathBuf>,
    /// With --decision-log: record load-balancing decisions too (one per request).
    #[arg(long, requires = "decision_log")]
    log_load_balancing: bool,
    /// Show the control plane's and the agents' logs.
    #[arg(short, long)]
    verbose: bool,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let topology = load_topology(args.topology.as_deref())?;
    // Check the config here, so that a mistake is reported once and not by every child.
    fleet_config::load(args.config.as_deref())?;
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let listen = args.listen.unwrap_or(topology.control.listen);
    let rt = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    rt.block_on(async move {
        let mut fleet = Fleet::start(Launch {
            topology: &topology,
            config: args.config.as_deref(),
            state_dir: &state_dir,
            listen,
            show_logs: args.verbose,
            decision_log: args
                .decision_log
                .as_deref()
                .map(|d| (d, args.log_load_balancing)),
        })
        .await?;
        println!(
            "kantai is up: API {} (state in {})",
            fleet.api,
            state_dir.display()
        );
        for (name, gw) in &fleet.gateways {
            let spec = topology.node(name);
            let tier = spec
                .and_then(|n| n.labels.get("tier"))
                .map(|t| format!("  tier={t}"))
                .unwrap_or_default();
            let far: Vec<String> = topology
                .nodes
                .iter()
                .filter(|o| o.name != *name)
                .filter_map(|o| {
                    let l = topology.link(name, &o.name);
                    (!l.rtt.is_zero()).then(|| format!("{} {:?}±{:?}", o.name, l.rtt, l.jitter))
                })
                .collect();
            let far = if far.is_empty() {
                String::new()
            } else {
                format!("  round trip to {}", far.join(", "))
            };
            println!("  {name:<8} gateway {gw}{tier}{far}");
        }
        if let Some(k) = &fleet.kubeconfig {
            println!("Credentials (API address and token) for kubectl and kantai: {}", k.display());
            println!("  export KUBECONFIG={}", k.display());
        }
        if let Some((name, gw)) = fleet.gateways.last() {
            println!("Try:");
            println!("  kubectl apply -f examples/hello.yaml; kubectl get ksvc,pod,seika");
            println!("  kantai apply -f examples/hello.yaml");
            println!("  kantai invoke hello --from {name}");
            println!("  curl -H 'Host: hello.default.svc.cluster.local' http://{gw}/");
            println!("  kantai get services; kantai get placements; kantai get instances -o wide");
        }
        println!("Stop with Ctrl-C.");
        let code = tokio::select! {
            _ = launch::stop_signal() => ExitCode::SUCCESS,
            (name, status) = fleet.exited() => {
                // A fleet without its control plane or one of its nodes is not the fleet the
                // user asked for: say which part died and stop the rest.
                eprintln!("kantai: {name} exited ({status}); stopping the fleet (run with --verbose to see its log)");
                ExitCode::FAILURE
            }
        };
        println!("kantai: stopping the fleet");
        fleet.stop().await;
        Ok(code)
    })
}
