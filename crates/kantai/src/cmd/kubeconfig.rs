//! `kantai kubeconfig`: prints the kubeconfig of a fleet (its API address and token).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::kubeconfig;

/// Arguments of `kantai kubeconfig`.
#[derive(clap::Args)]
pub struct Args {
    /// The fleet's state directory (where `kantai up` or `kantai control` keeps it).
    #[arg(long, value_name = "DIR", env = "KANTAI_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Print the path of the file instead of its content.
    #[arg(long)]
    path: bool,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args
        .state_dir
        .unwrap_or_else(super::control::default_state_dir);
    let file = kubeconfig::kubeconfig_path(&dir);
    if !file.exists() {
        anyhow::bail!(
            "no kubeconfig in {}: it is written when the fleet starts (`kantai up` or `kantai control`, with --state-dir {})",
            dir.display(),
            dir.display()
        );
    }
    if args.path {
        println!("{}", file.display());
    } else {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}
