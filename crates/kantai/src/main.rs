//! The `kantai` command: one binary for every role and tool.

mod cmd;
mod input;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kantai (艦隊, "fleet"): serverless functions on nodes far apart, Knative-compatible.
#[derive(Parser)]
#[command(name = "kantai", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check Knative manifests (serving.knative.dev/v1) the way Knative's webhooks do.
    Validate(cmd::validate::Args),
    /// Ask the KPA autoscaler what it would do.
    #[command(subcommand)]
    Autoscale(cmd::autoscale::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Autoscale(c) => cmd::autoscale::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
