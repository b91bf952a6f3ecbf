//! `kantai decisions`: what a decision log (`kantai up --decision-log DIR`) says, and whether
//! the policies decide the same again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use kantai_api::decisions::{self, Decision, PlacementRecord};
use kantai_policy::{Params, PlacementDecision, PlacementInput, Resources, registry};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::input;

/// `kantai decisions ...`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Replay every placement decision of a log through the same policy, by name, and report
    /// any decision that comes out different (exit status 1). Load-balancing decisions are
    /// counted, not replayed: they depend on the balancer's state and random draws.
    Replay(ReplayArgs),
}

/// Arguments of `kantai decisions replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The log (JSON lines); `-` reads stdin.
    log: PathBuf,
    /// The fleet config the log was made with: its plug-ins (`plugins:`) are loaded, so
    /// that placements a plug-in made are replayed by it.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs the command.
pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Replay(a) => replay(&a),
    }
}

fn replay(a: &ReplayArgs) -> anyhow::Result<ExitCode> {
    input::config(a.config.as_deref())?;
    let file = input::read(&a.log)?;
    let records = decisions::read(&file.text)
        .map_err(|e| anyhow!("{} is not a decision log: {e}", file.name))?;
    let (mut placements, mut same, mut lb, mut scaling) = (0, 0, 0, 0);
    for (i, r) in records.iter().enumerate() {
        match r {
            Decision::LoadBalance(_) => lb += 1,
            // The scaler's inputs and ticks: replayed by the seam test, counted here.
            Decision::Report(_) | Decision::Tick(_) => scaling += 1,
            Decision::Placement(p) => {
                placements += 1;
                match replay_placement(p) {
                    Ok(d) if d.per_node == p.choice && d.unschedulable == p.unschedulable => {
                        same += 1;
                    }
                    Ok(d) => println!(
                        "record {}: {} at t={:.1}s ({}): logged {:?} (+{} unschedulable), replayed {:?} (+{})",
                        i + 1,
                        p.revision,
                        p.t,
                        p.policy,
                        p.choice,
                        p.unschedulable,
                        d.per_node,
                        d.unschedulable
                    ),
                    Err(e) => println!("record {}: {}: {e}", i + 1, p.revision),
                }
            }
        }
    }
    println!(
        "{placements} placement decisions replayed, {same} identical; {lb} load-balancing decisions"
    );
    if scaling > 0 {
        println!("{scaling} scaling records (reports and ticks)");
    }
    Ok(if same == placements {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A logged placement decision decided again.
pub fn replay_placement(p: &PlacementRecord) -> Result<PlacementDecision, String> {
    let (params, errors) = Params::parse(&p.annotations);
    if let Some(e) = errors.first() {
        return Err(format!("{}: {}", e.key, e.message));
    }
    let mut policy = registry::placement(&p.policy, &params)
        .ok_or_else(|| registry::unknown(registry::Kind::Placement, &p.policy))?;
    let fleet = p.fleet();
    let input = PlacementInput {
        fleet: &fleet,
        revision: &p.revision,
        desired: p.desired,
        current: &p.current,
        demand: &p.demand,
        serving_ms: &p.serving_ms,
        in_flight: &p.in_flight,
        queued: &p.queued,
        resources: Resources {
            cpu: p.resources.0,
            memory: p.resources.1,
        },
        params: &params,
        now: Duration::from_secs_f64(p.t.max(0.0)),
    };
    // The built-in placement policies draw nothing; a policy that does gets a fixed seed.
    let mut rng = SmallRng::seed_from_u64(0);
    Ok(policy.place(&input, &mut rng))
}
