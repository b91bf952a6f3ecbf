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
    let serving = ServingConfig::decode_fleet(doc, &mut out);
    let runtime = match doc.get("runtime") {
        Some(n) => RuntimeConfig::decode(n, &FieldPath::root().field("runtime"), &mut out),
        None => Some(RuntimeConfig::default()),
    };
    if let Some(s) = &serving
        && !s.plugins.is_empty()
    {
        // Refused rather than half-served: the node agents would answer with the default
        // balancer and queue under a plug-in's name.
        out.push(kantai_model::FieldError::error(
            FieldPath::root().field("plugins"),
            "the live fleet does not load plug-ins yet: the simulator (a scenario's `config:`) \
             and `kantai validate --config` do (docs/policies.md, \"Plug-ins\")",
        ));
    }
    out.locate_in(doc);
    match (serving, runtime) {
        (Some(serving), Some(runtime)) if !out.has_errors() => Ok(FleetConfig {
            dataplane: limits(&serving.dataplane),
            serving,
            runtime,
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

/// The data plane's limits under the fleet config's `dataplane` section (the data plane's
/// defaults for the keys it leaves out).
fn limits(c: &kantai_model::config::DataplaneConfig) -> kantai_dataplane::Limits {
    let d = kantai_dataplane::Limits::default();
    kantai_dataplane::Limits {
        max_body_bytes: c.max_request_body_bytes.unwrap_or(d.max_body_bytes),
        header_read_timeout: c.header_read_timeout.unwrap_or(d.header_read_timeout),
        hold_limit: c.hold_limit,
        serving_headers: c.serving_headers.unwrap_or(d.serving_headers),
    }
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

#[cfg(test)]
mod plugin_tests {
    #[test]
    fn the_live_fleet_refuses_plug_ins_it_cannot_serve_yet() {
        let e = super::parse("plugins:\n  - {name: a, kind: queue, module: a.wat}\n")
            .expect_err("refused");
        assert!(
            e.contains("line 1: plugins: the live fleet does not load plug-ins yet"),
            "{e}"
        );
    }
}
