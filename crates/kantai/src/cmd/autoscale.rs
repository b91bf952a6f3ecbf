//! `kantai autoscale replay`: run a trace of observations through the KPA and print one CSV
//! line per tick.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use kantai_autoscaler::ScalingSpec;
use kantai_autoscaler::replay;
use kantai_model::autoscaling::{AutoscalingAnnotations, PREFIX};
use kantai_model::manifest;
use kantai_model::serving::Object;
use kantai_model::{FieldPath, Findings};

use crate::input;

/// `kantai autoscale` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Replay a CSV trace (`time_s,ready_instances,concurrency[,rps]`) through the KPA and
    /// print `time_s,desired,panic,excess_burst_capacity,activator_in_path` per tick.
    ///
    /// Ticks run every 2 s from 0 to the end of the trace (or --until), plus an immediate
    /// tick when load reaches a revision that is at zero. `ready_instances` may be `-` for
    /// "whatever the autoscaler asked for is ready". Rows in the same second add up.
    Replay(ReplayArgs),
}

/// Arguments of `kantai autoscale replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The trace (CSV); `-` reads stdin.
    trace: PathBuf,
    /// A manifest (Service, Configuration or Revision) whose template annotations and
    /// containerConcurrency configure the autoscaler.
    #[arg(short, long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Which object of the manifest to use when it holds several.
    #[arg(long, value_name = "NAME", requires = "manifest")]
    name: Option<String>,
    /// An autoscaling annotation, `KEY=VALUE`; the `autoscaling.knative.dev/` prefix may be
    /// left out (`-a window=12s`). Overrides the manifest's.
    #[arg(short, long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// The revision's containerConcurrency (overrides the manifest's).
    #[arg(long, value_name = "N")]
    container_concurrency: Option<u32>,
    /// Fleet config whose config-autoscaler section applies.
    #[arg(long, value_name = "FILE", env = "KANTAI_CONFIG")]
    config: Option<PathBuf>,
    /// Keep ticking until this many seconds, past the end of the trace.
    #[arg(long, value_name = "SECONDS")]
    until: Option<f64>,
    /// Treat the revision as unreachable (no route sends it traffic): min-scale is ignored.
    #[arg(long)]
    unreachable: bool,
    /// Add columns: ready, want, stable, panic_value, activity, poked.
    #[arg(short, long)]
    verbose: bool,
}

/// Runs the command.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Replay(args) => replay_cmd(&args),
    }
}

fn replay_cmd(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = input::config(args.config.as_deref())?;
    let (mut annotations, mut cc) = match &args.manifest {
        Some(path) => from_manifest(path, args.name.as_deref(), &config)?,
        None => (BTreeMap::new(), 0),
    };
    for a in &args.annotations {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("annotation {a:?} is not KEY=VALUE"))?;
        let key = if k.contains('/') {
            k.to_owned()
        } else {
            format!("{PREFIX}{k}")
        };
        annotations.insert(key, v.to_owned());
    }
    if let Some(n) = args.container_concurrency {
        cc = n;
    }
    let mut findings = Findings::new();
    let parsed = AutoscalingAnnotations::parse(
        &annotations,
        &config.autoscaler,
        &FieldPath::fields("annotations"),
        &mut findings,
    );
    for w in findings.warnings() {
        eprintln!("warning: {w}");
    }
    if findings.has_errors() {
        let errs: Vec<String> = findings.errors().map(ToString::to_string).collect();
        bail!("invalid autoscaling settings:\n  {}", errs.join("\n  "));
    }
    let mut spec = ScalingSpec::resolve(&config.autoscaler, &parsed, cc, config.progress_deadline);
    spec.reachable = !args.unreachable;

    let trace = input::read(&args.trace)?;
    let rows =
        replay::parse_trace(&trace.text).with_context(|| format!("in trace {}", trace.name))?;
    if rows.is_empty() {
        bail!("trace {} has no rows", trace.name);
    }
    let until = match args.until {
        Some(u) if !(0.0..=1e9).contains(&u) => bail!("--until must be between 0 and 1e9"),
        Some(u) => Some(Duration::from_secs_f64(u)),
        None => None,
    };
    let lines = replay::replay(spec, &rows, until);
    print!("{}", replay::format_csv(&lines, args.verbose));
    Ok(ExitCode::SUCCESS)
}

/// The template annotations and containerConcurrency of the chosen object of a manifest.
fn from_manifest(
    path: &std::path::Path,
    name: Option<&str>,
    config: &kantai_model::ServingConfig,
) -> anyhow::Result<(BTreeMap<String, String>, u32)> {
    let file = input::read(path)?;
    let docs = manifest::read(&file.text, config)
        .map_err(|e| anyhow::anyhow!("{} is not valid YAML or JSON:\n{}", file.name, e.message))?;
    let mut candidates = Vec::new();
    for doc in docs {
        if !doc.is_valid() {
            bail!(
                "{}: {} is invalid:\n  {}\n(run `kantai validate -f {}` for details)",
                file.name,
                doc.title(),
                doc.report_lines().join("\n  "),
                file.name
            );
        }
        if let Some(obj) = doc.object {
            let picked = match &obj {
                Object::Service(s) => {
                    Some((&s.spec.template.metadata.annotations, &s.spec.template.spec))
                }
                Object::Configuration(c) => {
                    Some((&c.spec.template.metadata.annotations, &c.spec.template.spec))
                }
                Object::Revision(r) => Some((&r.metadata.annotations, &r.spec)),
                Object::Route(_) => None,
            };
            if let Some((anns, spec)) = picked
                && name.is_none_or(|n| n == obj.metadata().name)
            {
                let cc = u32::try_from(spec.container_concurrency.unwrap_or(0)).unwrap_or(0);
                candidates.push((obj.metadata().name.clone(), anns.clone(), cc));
            }
        }
    }
    match candidates.len() {
        0 => bail!(
            "{} has no Service, Configuration or Revision{}",
            file.name,
            name.map(|n| format!(" named {n:?}")).unwrap_or_default()
        ),
        1 => {
            let (_, anns, cc) = candidates.remove(0);
            Ok((anns, cc))
        }
        _ => {
            let names: Vec<_> = candidates.iter().map(|c| c.0.as_str()).collect();
            bail!(
                "{} holds several objects ({}); choose one with --name",
                file.name,
                names.join(", ")
            )
        }
    }
}
