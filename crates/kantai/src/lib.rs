//! kantai as a library: the whole `kantai` command ([`Cli`]), to which a program of its own
//! adds policies beside the built-ins, without touching kantai's source. Such a program is
//! kantai with more policy names: it runs every role (`up`, `control`, `node`, `sim`,
//! `decisions replay`, `validate`), and the processes it starts for a fleet are itself, so
//! the names work everywhere at once (docs/policies.md, "kantai as a library";
//! `examples/own-policy` is one).
//!
//! ```no_run
//! use kantai::policy::lb::{Candidate, LbContext, LoadBalancer, with_room};
//! use kantai::policy::RequestInfo;
//!
//! /// The first instance with room, always.
//! struct FirstWithRoom;
//!
//! impl LoadBalancer for FirstWithRoom {
//!     fn pick(
//!         &mut self,
//!         _req: &dyn RequestInfo,
//!         candidates: &[Candidate],
//!         _ctx: &LbContext<'_>,
//!         _rng: &mut dyn kantai::policy::rand::Rng,
//!     ) -> Option<usize> {
//!         with_room(candidates).next()
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     kantai::Cli::new()
//!         .load_balancer("first-with-room", |_| Box::new(FirstWithRoom))
//!         .run()
//! }
//! ```

mod cmd;
mod fleet_config;
mod input;
mod kubeconfig;
mod launch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kantai_policy::registry::{Extensions, NewKeepAlive, NewLoadBalancer, NewPlacement, NewQueue};

/// The policy traits and the views they decide on, for a program's own policies.
pub use kantai_policy as policy;

/// kantai (艦隊, "fleet"): serverless functions on nodes far apart, Knative-compatible.
#[derive(Parser)]
#[command(name = "kantai", version, about, long_about = None, propagate_version = true)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The `kantai` command, with the policies a program adds beside the built-ins.
#[derive(Default)]
pub struct Cli {
    policies: Extensions,
}

impl Cli {
    /// kantai's command with the built-in policies only (what the `kantai` binary runs).
    pub fn new() -> Cli {
        Cli::default()
    }

    /// Adds a placement policy under `name` (`kantai.dev/placement: NAME`).
    pub fn placement(mut self, name: &'static str, new: NewPlacement) -> Cli {
        self.policies = self.policies.placement(name, new);
        self
    }

    /// Adds a load balancer under `name` (`kantai.dev/load-balancer: NAME`).
    pub fn load_balancer(mut self, name: &'static str, new: NewLoadBalancer) -> Cli {
        self.policies = self.policies.load_balancer(name, new);
        self
    }

    /// Adds a queue discipline under `name` (`kantai.dev/queue: NAME`).
    pub fn queue(mut self, name: &'static str, new: NewQueue) -> Cli {
        self.policies = self.policies.queue(name, new);
        self
    }

    /// Adds a keep-alive policy under `name` (`kantai.dev/keep-alive: NAME`).
    pub fn keep_alive(mut self, name: &'static str, new: NewKeepAlive) -> Cli {
        self.policies = self.policies.keep_alive(name, new);
        self
    }

    /// Runs the command line this process was given, as the `kantai` binary does; a name
    /// that cannot be added (a built-in's, or one added twice) fails it at once.
    pub fn run(self) -> ExitCode {
        if !self.policies.is_empty()
            && let Err(e) = kantai_policy::registry::install(self.policies)
        {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        main()
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the seed's demo end to end: a three-node fleet, hello deployed, requests from the
    /// edge node, scale to zero and a second cold start.
    Demo(cmd::demo::Args),
    /// Run a whole fleet on this machine in the foreground: a control plane and one node
    /// agent per node of the topology.
    Up(cmd::up::Args),
    /// Run the control plane on its own (multi-host mode).
    Control(cmd::control::Args),
    /// Run a node agent that joins a control plane (multi-host mode).
    Node(cmd::node::Args),
    /// Print the fleet's kubeconfig (API address and bearer token) for kubectl.
    Kubeconfig(cmd::kubeconfig::Args),
    /// Create or update the objects of manifests.
    Apply(cmd::client::ApplyArgs),
    /// List or show objects.
    Get(cmd::client::GetArgs),
    /// Delete objects.
    Delete(cmd::client::DeleteArgs),
    /// Create a Secret or a ConfigMap from literals, files and directories.
    #[command(subcommand)]
    Create(cmd::create::Command),
    /// Show an object in detail (a Secret's values are never shown).
    Describe(cmd::describe::Args),
    /// Edit an object in $KUBE_EDITOR, $EDITOR or vi, then replace it.
    Edit(cmd::edit::Args),
    /// Send a request to a service through a node's gateway.
    Invoke(cmd::client::InvokeArgs),
    /// Print an instance's output.
    Logs(cmd::client::LogsArgs),
    /// Check Knative manifests (serving.knative.dev/v1) the way Knative's webhooks do.
    Validate(cmd::validate::Args),
    /// Ask the KPA autoscaler what it would do.
    #[command(subcommand)]
    Autoscale(cmd::autoscale::Command),
    /// Read a decision log: replay its placement decisions through the same policies.
    #[command(subcommand)]
    Decisions(cmd::decisions::Command),
    /// Built-in functions.
    #[command(subcommand)]
    Fn(cmd::func::Command),
    /// Simulate a fleet in virtual time (deterministic, up to 10,000 nodes) with the same
    /// autoscaler and policies as the live fleet.
    Sim(cmd::sim::Args),
    /// Compare policy sets over load levels (simulated today) and write a report.
    Experiment(cmd::experiment::Args),
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KANTAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The container shim runs before anything else: it must become the container quickly.
    if args.get(1).map(String::as_str) == Some("__oci-shim") {
        return match kantai_runtime::oci_shim::parse(&args[2..]) {
            Ok(a) => ExitCode::from(u8::try_from(kantai_runtime::oci_shim::run(&a)).unwrap_or(1)),
            Err(e) => {
                eprintln!("kantai oci shim: {e}");
                ExitCode::from(2)
            }
        };
    }
    launch::bind_to_parent();
    let cli = Args::parse();
    let result = match cli.command {
        Command::Demo(a) => {
            init_logs("warn");
            cmd::demo::run(a)
        }
        Command::Up(a) => {
            init_logs("warn");
            cmd::up::run(a)
        }
        Command::Control(a) => {
            init_logs("info");
            cmd::control::run(a)
        }
        Command::Node(a) => {
            init_logs("info");
            cmd::node::run(a)
        }
        Command::Kubeconfig(a) => cmd::kubeconfig::run(a),
        Command::Apply(a) => cmd::client::apply(a),
        Command::Get(a) => cmd::client::get(a),
        Command::Delete(a) => cmd::client::delete(a),
        Command::Create(c) => cmd::create::run(c),
        Command::Describe(a) => cmd::describe::run(a),
        Command::Edit(a) => cmd::edit::run(a),
        Command::Invoke(a) => cmd::client::invoke(a),
        Command::Logs(a) => cmd::client::logs(a),
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Autoscale(c) => cmd::autoscale::run(c),
        Command::Decisions(c) => cmd::decisions::run(c),
        Command::Fn(c) => cmd::func::run(c),
        Command::Sim(a) => cmd::sim::run(a),
        Command::Experiment(a) => cmd::experiment::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
