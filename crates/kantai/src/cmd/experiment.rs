//! `kantai experiment FILE`: runs an experiment (`kantai-experiment`) and writes its report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kantai_experiment::Experiment;

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
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.experiment)
        .with_context(|| format!("cannot read the experiment {}", a.experiment.display()))?;
    let e = Experiment::parse(&text, &a.experiment.display().to_string())?;
    let show = !a.quiet && std::io::stderr().is_terminal();
    let runs = e.run(&a.experiment, &mut |done, total, policy| {
        if show {
            let width = 30;
            let filled = done * width / total.max(1);
            eprint!(
                "\r[{}{}] run {done}/{total} {policy:<20}",
                "#".repeat(filled),
                ".".repeat(width - filled)
            );
            let _ = std::io::stderr().flush();
        }
    })?;
    if show {
        eprintln!();
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
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
