//! `kantai sim SCENARIO`: runs the discrete-event simulator (`kantai-sim`) and writes its
//! results. The simulator itself never reads a clock; this command does, for the progress
//! line and the speed it reports.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, anyhow};
use kantai_sim::{Progress, Scenario};

/// Arguments of `kantai sim`.
#[derive(clap::Args)]
pub struct Args {
    /// The scenario file (docs/simulator.md).
    scenario: PathBuf,
    /// Write summary.json, requests.csv, instances.csv, latency.csv, report.html,
    /// report.md with its charts (SVG), and decisions.jsonl when the scenario records
    /// decisions, into this directory.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the summary as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.scenario)
        .with_context(|| format!("cannot read the scenario {}", a.scenario.display()))?;
    let mut scenario = Scenario::parse(&text, &a.scenario.display().to_string())?;
    if let Some(s) = a.seed {
        scenario.seed = s;
    }
    let wants_log = scenario.output.placement_decisions || scenario.output.load_balancing_decisions;
    let log: Option<Box<dyn Write>> = match (&a.out, wants_log) {
        (Some(dir), true) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let p = dir.join("decisions.jsonl");
            let f = std::fs::File::create(&p)
                .with_context(|| format!("cannot create {}", p.display()))?;
            Some(Box::new(std::io::BufWriter::new(f)))
        }
        (None, true) => {
            return Err(anyhow!(
                "the scenario records decisions: give --out DIR for decisions.jsonl"
            ));
        }
        _ => None,
    };
    let mut prepared = kantai_sim::prepare_parsed(scenario, &a.scenario, log)?;
    let started = Instant::now();
    let show = !a.quiet && std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    let mut progress = |p: Progress| {
        if !show || last_line.elapsed().as_millis() < 200 {
            return;
        }
        last_line = Instant::now();
        eprint!("\r{}", progress_line(&p, started.elapsed().as_secs_f64()));
        let _ = std::io::stderr().flush();
    };
    let outcome =
        kantai_sim::run(&mut prepared, &mut progress).context("cannot write the decision log")?;
    let wall = started.elapsed().as_secs_f64();
    if show {
        eprintln!("\r{:<100}", "");
    }
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let title = format!("kantai sim {}", a.scenario.display());
        let page = outcome.page(&title);
        let (md, charts) = page.markdown();
        let mut files = vec![
            ("summary.json".to_owned(), outcome.summary_json()),
            ("requests.csv".to_owned(), outcome.requests_csv.clone()),
            ("instances.csv".to_owned(), outcome.instances_csv.clone()),
            ("latency.csv".to_owned(), outcome.latency_csv.clone()),
            ("report.html".to_owned(), page.html()),
            ("report.md".to_owned(), md),
        ];
        files.extend(charts);
        for (name, text) in &files {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    let s = &outcome.summary;
    if a.json {
        print!("{}", outcome.summary_json());
    } else {
        print_table(s);
    }
    let answered: u64 = s.results.kantai_requests_total.values().sum();
    eprintln!(
        "simulated {:.1} s: {} requests, {} events in {:.2} s of wall time ({:.0} requests/s)",
        s.simulated_seconds,
        answered,
        s.events,
        wall,
        answered as f64 / wall.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn progress_line(p: &Progress, wall: f64) -> String {
    let frac = (p.now_ns as f64 / p.duration_ns.max(1) as f64).min(1.0);
    let width = 30;
    let filled = (frac * width as f64) as usize;
    format!(
        "[{}{}] {:>3.0}%  {:.0}/{:.0} s simulated  {} requests  {:.0} req/s",
        "#".repeat(filled),
        ".".repeat(width - filled),
        frac * 100.0,
        p.now_ns as f64 / 1e9,
        p.duration_ns as f64 / 1e9,
        p.answered,
        p.answered as f64 / wall.max(1e-9)
    )
}

fn print_table(s: &kantai_sim::Summary) {
    println!(
        "{:<24} {:<8} {:>9} {:>6} {:>6} {:>9} {:>9} {:>9} {:>7} {:>10}",
        "SERVICE",
        "ORIGIN",
        "REQUESTS",
        "503",
        "504",
        "P50(ms)",
        "P95(ms)",
        "P99(ms)",
        "COLD",
        "INST-S"
    );
    let ms = |x: f64| x * 1e3;
    for f in s.by_function.iter().take(50) {
        for o in &f.origins {
            let r = &o.results;
            let total: u64 = r.kantai_requests_total.values().sum();
            let l = &r.kantai_request_duration_seconds;
            println!(
                "{:<24} {:<8} {:>9} {:>6} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>10}",
                f.service,
                o.origin_node,
                total,
                r.kantai_requests_total.get("503").unwrap_or(&0),
                r.kantai_requests_total.get("504").unwrap_or(&0),
                ms(l.p50),
                ms(l.p95),
                ms(l.p99),
                r.kantai_cold_starts_total,
                ""
            );
        }
        println!(
            "{:<24} {:<8} {:>9} {:>6} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>10.1}",
            "",
            "(all)",
            f.results.kantai_requests_total.values().sum::<u64>(),
            f.results.kantai_requests_total.get("503").unwrap_or(&0),
            f.results.kantai_requests_total.get("504").unwrap_or(&0),
            ms(f.results.kantai_request_duration_seconds.p50),
            ms(f.results.kantai_request_duration_seconds.p95),
            ms(f.results.kantai_request_duration_seconds.p99),
            f.results.kantai_cold_starts_total,
            f.kantai_instance_seconds_total
        );
    }
    if s.by_function.len() > 50 {
        println!(
            "... {} more functions (see --out or --json)",
            s.by_function.len() - 50
        );
    }
    let r = &s.results;
    println!(
        "fleet: {} requests ({} × 503, {} × 504), p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, {} cold starts, {:.1} instance-seconds",
        r.kantai_requests_total.values().sum::<u64>(),
        r.kantai_requests_total.get("503").unwrap_or(&0),
        r.kantai_requests_total.get("504").unwrap_or(&0),
        ms(r.kantai_request_duration_seconds.p50),
        ms(r.kantai_request_duration_seconds.p95),
        ms(r.kantai_request_duration_seconds.p99),
        r.kantai_cold_starts_total,
        s.kantai_instance_seconds_total
    );
}
