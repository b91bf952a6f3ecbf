//! `kantai experiment FILE`: runs an experiment (`kantai-experiment`) in the simulator, on
//! live fleets (`live`), or both, and writes its report.

mod live;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kantai_experiment::{Experiment, Live, Mode};

/// Arguments of `kantai experiment`.
#[derive(clap::Args)]
pub struct Args {
    /// The experiment file (docs/experiments.md).
    experiment: PathBuf,
    /// Where to write report.html, report.md, its charts and results.csv.
    #[arg(long, short)]
    out: PathBuf,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
    /// Show the live fleets' logs.
    #[arg(long, short)]
    verbose: bool,
    /// Run in this mode instead of the file's.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Run this many repetitions instead of the file's.
    #[arg(long, value_name = "N")]
    repetitions: Option<u32>,
    /// Run these levels instead of the file's (comma-separated, e.g. 5,25,50).
    #[arg(long, value_delimiter = ',', value_name = "LEVELS")]
    levels: Option<Vec<f64>>,
    /// Rebuild the report from the raw data an earlier live run left in --out (requests.csv
    /// and timeline.csv of each run) instead of starting fleets; simulated runs are repeated
    /// (they are deterministic).
    #[arg(long)]
    replot: bool,
}

/// `--mode`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ModeArg {
    /// In the simulator.
    Sim,
    /// On live fleets on this machine.
    Live,
    /// Both, on the same plots.
    Both,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.experiment)
        .with_context(|| format!("cannot read the experiment {}", a.experiment.display()))?;
    let mut e = Experiment::parse(&text, &a.experiment.display().to_string())?;
    if let Some(n) = a.repetitions {
        anyhow::ensure!(n > 0, "--repetitions: must be at least 1");
        e.repetitions = n;
    }
    if let Some(values) = a.levels {
        anyhow::ensure!(
            !values.is_empty() && values.iter().all(|v| v.is_finite() && *v > 0.0),
            "--levels: give numbers above 0"
        );
        let name = e
            .levels
            .as_ref()
            .map_or_else(|| "level".to_owned(), |l| l.name.clone());
        e.levels = Some(kantai_experiment::Levels { name, values });
    }
    if let Some(m) = a.mode {
        e.mode = match m {
            ModeArg::Sim => Mode::Sim,
            ModeArg::Live => Mode::Live,
            ModeArg::Both => Mode::Both,
        };
    }
    let show = !a.quiet && std::io::stderr().is_terminal();
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut fleets = match (e.mode, a.replot) {
        (Mode::Sim, _) => None,
        (_, true) => Some(Box::new(kantai_experiment::live::Recorded) as Box<dyn Live>),
        (Mode::Live | Mode::Both, false) => {
            Some(Box::new(live::LiveFleets::new(a.verbose)?) as Box<dyn Live>)
        }
    };
    let runs = e.run(
        &a.experiment,
        &a.out,
        fleets.as_mut().map(|f| &mut **f as &mut dyn Live),
        &mut |done, total, what| {
            if show {
                let width = 30;
                let filled = done * width / total.max(1);
                // Clear the line: a live run's status shortens as it goes.
                eprint!(
                    "\r\x1b[2K[{}{}] run {}/{total} {what}",
                    "#".repeat(filled),
                    ".".repeat(width - filled),
                    (done + 1).min(total)
                );
                let _ = std::io::stderr().flush();
            }
        },
    )?;
    if show {
        eprintln!();
    }
    let page = e.page(&runs);
    let (md, charts) = page.markdown();
    let mut files = vec![
        ("report.html".to_owned(), page.html()),
        ("report.md".to_owned(), md),
        ("results.csv".to_owned(), e.csv(&runs)),
    ];
    files.extend(charts);
    for (name, text) in &files {
        let p = a.out.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    println!(
        "{} runs; report: {}",
        runs.len(),
        a.out.join("report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}
