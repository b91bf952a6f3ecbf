//! `kantai validate`: check manifests as Knative's webhooks would, print a summary of each
//! object or every error, and exit 0 (all valid) or 1.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use kantai_autoscaler::ScalingSpec;
use kantai_model::autoscaling::{AutoscalingAnnotations, Metric};
use kantai_model::manifest::{self, Document};
use kantai_model::serving::naming::{revision_name, route_host, tag_host};
use kantai_model::serving::{Object, RevisionSpec, TrafficTarget};
use kantai_model::units::format_go_duration;
use kantai_model::{FieldPath, Findings, ServingConfig};

use crate::input;

/// Arguments of `kantai validate`.
#[derive(clap::Args)]
pub struct Args {
    /// Manifest files or directories (YAML with several documents, or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Fleet config whose defaults and limits apply (Knative's defaults without one).
    #[arg(long, value_name = "FILE", env = "KANTAI_CONFIG")]
    config: Option<PathBuf>,
    /// What to print for valid objects: a summary, or the defaulted objects as YAML or JSON.
    #[arg(short, long, value_enum, default_value_t = Output::Summary)]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Summary,
    Yaml,
    Json,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = input::config(args.config.as_deref())?;
    let mut all_valid = true;
    let mut objects = Vec::new();
    for path in input::expand(&args.files)? {
        let file = input::read(&path)?;
        let docs = match manifest::read(&file.text, &config) {
            Ok(docs) => docs,
            Err(e) => {
                all_valid = false;
                let at = if e.pos.is_known() {
                    format!(":{}", e.pos.line)
                } else {
                    String::new()
                };
                eprintln!(
                    "{}{at}: error: not valid YAML or JSON:\n{}",
                    file.name, e.message
                );
                continue;
            }
        };
        if docs.is_empty() {
            all_valid = false;
            eprintln!("{}: error: no objects in the file", file.name);
        }
        for doc in docs {
            let valid = doc.is_valid();
            all_valid &= valid;
            match args.output {
                Output::Summary => print!("{}", summary(&file.name, &doc, &config)),
                Output::Yaml | Output::Json => {
                    if !valid || !doc.findings.all().is_empty() {
                        eprint!("{}", summary(&file.name, &doc, &config));
                    }
                }
            }
            if valid && let Some(o) = doc.object {
                objects.push(o);
            }
        }
    }
    match args.output {
        Output::Summary => {}
        Output::Yaml => print!("{}", manifest::to_yaml(&objects)),
        Output::Json => println!("{}", manifest::to_json(&objects)),
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report of one document: a title line, every finding as `FILE:LINE: error: ...`, and
/// for a valid object what kantai understood of it.
fn summary(file: &str, doc: &Document, config: &ServingConfig) -> String {
    let mut s = String::new();
    let errors = doc.findings.errors().count();
    let warnings = doc.findings.warnings().count();
    let verdict = match (doc.is_valid(), errors, warnings) {
        (true, _, 0) => "valid".to_owned(),
        (true, _, w) => format!("valid, {w} warning{}", plural(w)),
        (false, e, 0) => format!("invalid, {e} error{}", plural(e)),
        (false, e, w) => format!("invalid, {e} error{}, {w} warning{}", plural(e), plural(w)),
    };
    let _ = writeln!(s, "{file}: {}: {verdict}", doc.title());
    for e in doc.findings.all() {
        let at = if e.pos.is_known() {
            format!("{file}:{}", e.pos.line)
        } else {
            file.to_owned()
        };
        let kind = if e.is_error() { "error" } else { "warning" };
        let _ = writeln!(s, "  {at}: {kind}: {e}");
    }
    if doc.is_valid()
        && let Some(obj) = &doc.object
    {
        describe(&mut s, obj, config);
    }
    s
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn describe(s: &mut String, obj: &Object, config: &ServingConfig) {
    let mut row = |k: &str, v: String| {
        let _ = writeln!(s, "  {k:<12} {v}");
    };
    let meta = obj.metadata();
    let ns = meta.namespace();
    match obj {
        Object::Service(svc) => {
            row(
                "url",
                format!("http://{}", route_host(&meta.name, ns, &config.domain)),
            );
            let t = &svc.spec.template;
            let rev = t
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| revision_name(&meta.name, 1));
            row("revision", format!("{rev} (the first revision's name)"));
            describe_spec(&mut row, &t.spec, &t.metadata.annotations, config);
            row(
                "traffic",
                traffic(&svc.spec.traffic, &meta.name, ns, &config.domain),
            );
        }
        Object::Configuration(c) => {
            let t = &c.spec.template;
            describe_spec(&mut row, &t.spec, &t.metadata.annotations, config);
        }
        Object::Revision(r) => describe_spec(&mut row, &r.spec, &meta.annotations, config),
        Object::Route(r) => {
            row(
                "url",
                format!("http://{}", route_host(&meta.name, ns, &config.domain)),
            );
            row(
                "traffic",
                traffic(&r.spec.traffic, &meta.name, ns, &config.domain),
            );
        }
    }
}

fn describe_spec(
    row: &mut impl FnMut(&str, String),
    spec: &RevisionSpec,
    annotations: &std::collections::BTreeMap<String, String>,
    config: &ServingConfig,
) {
    if let Some(c) = spec.container() {
        row("image", c.image.clone());
    }
    let cc = spec.container_concurrency.unwrap_or(0);
    let cc_text = if cc == 0 {
        "unlimited".to_owned()
    } else {
        format!("{cc} per instance")
    };
    row(
        "requests",
        format!(
            "concurrency {cc_text}, port {}, timeout {}s",
            spec.port(),
            spec.timeout_seconds
                .unwrap_or(config.defaults.revision_timeout_seconds)
        ),
    );
    // Valid objects parse without findings; the findings were already reported otherwise.
    let mut ignore = Findings::new();
    let anns = AutoscalingAnnotations::parse(
        annotations,
        &config.autoscaler,
        &FieldPath::root(),
        &mut ignore,
    );
    let a = ScalingSpec::resolve(
        &config.autoscaler,
        &anns,
        u32::try_from(cc).unwrap_or(0),
        config.progress_deadline,
    );
    let metric = match a.metric {
        Metric::Concurrency => "concurrency",
        Metric::Rps => "requests/s",
    };
    let max = if a.max_scale == 0 {
        "unlimited".to_owned()
    } else {
        a.max_scale.to_string()
    };
    row(
        "autoscaling",
        format!(
            "KPA on {metric}, target {} per instance, window {} (panic {}), scale {}..{max}",
            trim(a.target),
            format_go_duration(a.stable_window),
            format_go_duration(a.panic_window),
            a.min_scale,
        ),
    );
    let tbc = if a.activator_always_in_path() {
        "-1 (activator always in the path)".to_owned()
    } else {
        trim(a.target_burst_capacity)
    };
    row(
        "",
        format!(
            "burst capacity {tbc}, scale to zero {} (retention {})",
            if a.enable_scale_to_zero { "on" } else { "off" },
            format_go_duration(a.scale_to_zero_pod_retention_period)
        ),
    );
}

fn trim(f: f64) -> String {
    let s = format!("{f:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn traffic(targets: &[TrafficTarget], name: &str, ns: &str, domain: &str) -> String {
    targets
        .iter()
        .map(|t| {
            let to = if t.latest_revision.unwrap_or(false) {
                match &t.configuration_name {
                    Some(c) => format!("latest ready revision of {c}"),
                    None => "latest ready revision".to_owned(),
                }
            } else {
                t.revision_name
                    .clone()
                    .or_else(|| t.configuration_name.clone())
                    .unwrap_or_default()
            };
            let mut s = format!("{}% {to}", t.percent.unwrap_or(0));
            if let Some(tag) = &t.tag {
                let _ = write!(
                    s,
                    " (tag {tag}: http://{})",
                    tag_host(tag, name, ns, domain)
                );
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}
