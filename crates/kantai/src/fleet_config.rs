//! The fleet config file as the binary reads it: the model's serving sections
//! (`autoscaler`, `defaults`, `deployment`, `domain`) and the runtime's `runtime` section.

use std::path::Path;

use anyhow::anyhow;
use kantai_model::decode::Decode;
use kantai_model::node::{ParseLimits, parse_documents};
use kantai_model::{FieldPath, Findings, ServingConfig};
use kantai_runtime::RuntimeConfig;

use crate::input;

/// Everything the fleet config sets.
#[derive(Clone, Debug, Default)]
pub struct FleetConfig {
    /// Serving defaults and limits.
    pub serving: ServingConfig,
    /// Image to command mapping.
    pub runtime: RuntimeConfig,
    /// Data-plane limits.
    pub dataplane: kantai_dataplane::Limits,
    /// The file's text (empty without a file), which the control plane hands to clients.
    pub text: String,
}

/// Loads the fleet config (Knative's defaults and the built-in image map without a file).
pub fn load(path: Option<&Path>) -> anyhow::Result<FleetConfig> {
    let Some(p) = path else {
        return Ok(FleetConfig::default());
    };
    let file = input::read(p)?;
    parse(&file.text).map_err(|e| anyhow!("invalid fleet config {}:\n{e}", file.name))
}

/// Parses a fleet config's text.
pub fn parse(text: &str) -> Result<FleetConfig, String> {
    let docs = parse_documents(text, ParseLimits::default()).map_err(|e| e.message)?;
    let Some(doc) = docs.first() else {
        return Ok(FleetConfig::default());
    };
    let mut out = Findings::new();
    let serving = ServingConfig::decode_sections(doc, &mut out, &["runtime", "dataplane"]);
    let runtime = match doc.get("runtime") {
        Some(n) => RuntimeConfig::decode(n, &FieldPath::root().field("runtime"), &mut out),
        None => Some(RuntimeConfig::default()),
    };
    let dataplane = match doc.get("dataplane") {
        Some(n) => decode_limits(n, &FieldPath::root().field("dataplane"), &mut out),
        None => Some(kantai_dataplane::Limits::default()),
    };
    out.locate_in(doc);
    match (serving, runtime, dataplane) {
        (Some(serving), Some(runtime), Some(dataplane)) if !out.has_errors() => Ok(FleetConfig {
            serving,
            runtime,
            dataplane,
            text: text.to_owned(),
        }),
        _ => Err(out
            .errors()
            .map(|e| {
                if e.pos.is_known() {
                    format!("line {}: {e}", e.pos.line)
                } else {
                    e.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

/// The `dataplane` section: `max-request-body-bytes`, `header-read-timeout`, `hold-limit`,
/// `serving-headers`.
fn decode_limits(
    node: &kantai_model::node::Node,
    path: &FieldPath,
    out: &mut Findings,
) -> Option<kantai_dataplane::Limits> {
    use kantai_model::FieldError;
    let mut f = kantai_model::decode::Fields::open(node, path, out)?;
    let mut l = kantai_dataplane::Limits::default();
    if let Some(b) = f.opt::<i64>("max-request-body-bytes", out) {
        match u64::try_from(b) {
            Ok(b) if b > 0 => l.max_body_bytes = b,
            _ => out.push(FieldError::error(
                path.field("max-request-body-bytes"),
                "must be positive",
            )),
        }
    }
    if let Some(t) = f.opt::<String>("header-read-timeout", out) {
        match kantai_model::units::parse_go_duration(&t) {
            Ok(n) if n > 0 => l.header_read_timeout = std::time::Duration::from_nanos(n as u64),
            _ => out.push(FieldError::invalid(
                path.field("header-read-timeout"),
                &t,
                "must be a positive duration such as 10s",
            )),
        }
    }
    if let Some(h) = f.opt::<i64>("hold-limit", out) {
        match u32::try_from(h) {
            Ok(h) if h > 0 => l.hold_limit = h,
            _ => out.push(FieldError::error(
                path.field("hold-limit"),
                "must be positive",
            )),
        }
    }
    if let Some(b) = f.opt::<bool>("serving-headers", out) {
        l.serving_headers = b;
    }
    f.finish(
        &[
            "max-request-body-bytes",
            "header-read-timeout",
            "hold-limit",
            "serving-headers",
        ],
        out,
    );
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_of_both_parts() {
        let c = parse(
            "domain: example.com\nruntime:\n  images:\n    - image: \"py:*\"\n      command: [python3, app.py]\n",
        )
        .expect("valid");
        assert_eq!(c.serving.domain, "example.com");
        assert_eq!(
            c.runtime.lookup("py:3").map(|e| e.command.clone()),
            Some(vec!["python3".into(), "app.py".into()])
        );
        // The built-in mapping of the seed's image stays.
        assert!(
            c.runtime
                .lookup("docker.io/bonavadeur/shuka:v1.3")
                .is_some()
        );
        let err = parse("runtime:\n  imgs: []\n").expect_err("typo");
        assert!(err.contains("line 2: runtime.imgs: unknown field"), "{err}");
    }
}
