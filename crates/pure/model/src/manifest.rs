//! Manifests: YAML streams (several documents) or JSON, read into defaulted, validated
//! objects with every finding located by line; and objects written back as YAML or JSON.

use crate::config::ServingConfig;
use crate::error::{FieldError, FieldPath, Findings};
use crate::node::{Node, ParseLimits, SyntaxError, Value, parse_documents};
use crate::serving::Object;
use crate::serving::defaults::set_defaults;
use crate::serving::validate::validate;

/// One document of a manifest, decoded.
#[derive(Clone, Debug)]
pub struct Document {
    /// 0-based position in the stream (items of a `kind: List` count one each).
    pub index: usize,
    /// Line where the document starts.
    pub line: u32,
    /// The object, defaulted, when the document is one of the served kinds. It is present even
    /// when validation found errors, so that tools can show what was understood.
    pub object: Option<Object>,
    /// Every error and warning, sorted by line.
    pub findings: Findings,
}

impl Document {
    /// Whether the document is an object that passed validation.
    pub fn is_valid(&self) -> bool {
        self.object.is_some() && !self.findings.has_errors()
    }

    /// One line per finding: `line 12: spec.traffic: percentages sum to 90, must be 100`,
    /// warnings prefixed with `warning: `.
    pub fn report_lines(&self) -> Vec<String> {
        self.findings
            .all()
            .iter()
            .map(|e| {
                let kind = if e.is_error() { "" } else { "warning: " };
                if e.pos.is_known() {
                    format!("{kind}line {}: {e}", e.pos.line)
                } else {
                    format!("{kind}{e}")
                }
            })
            .collect()
    }

    /// A one-line description of the object: `Service default/hello`.
    pub fn title(&self) -> String {
        match &self.object {
            Some(o) => format!(
                "{} {}/{}",
                o.kind(),
                o.metadata().namespace(),
                o.metadata().name
            ),
            None => format!("document {}", self.index + 1),
        }
    }
}

/// Reads every document of a YAML stream or JSON text. A syntax error rejects the whole text
/// (the parser cannot know where the next document starts); anything else is reported per
/// document, all problems at once.
pub fn read(text: &str, config: &ServingConfig) -> Result<Vec<Document>, SyntaxError> {
    read_with_limits(text, config, ParseLimits::default())
}

/// [`read`] with explicit input limits.
pub fn read_with_limits(
    text: &str,
    config: &ServingConfig,
    limits: ParseLimits,
) -> Result<Vec<Document>, SyntaxError> {
    let docs = parse_documents(text, limits)?;
    let mut out = Vec::new();
    for doc in &docs {
        match list_items(doc) {
            Some(items) => {
                for item in items {
                    out.push(read_one(item, out.len(), config));
                }
            }
            None => out.push(read_one(doc, out.len(), config)),
        }
    }
    Ok(out)
}

/// The items of a `kind: List` document (what `kubectl get -o yaml` prints for many objects).
fn list_items(doc: &Node) -> Option<&[Node]> {
    if doc.get_str("kind") == Some("List") && doc.get_str("apiVersion") == Some("v1") {
        match doc.get("items").map(|n| &n.value) {
            Some(Value::Seq(items)) => Some(items),
            _ => Some(&[]),
        }
    } else {
        None
    }
}

/// Decodes, defaults and validates one document.
pub fn read_one(doc: &Node, index: usize, config: &ServingConfig) -> Document {
    let mut findings = Findings::new();
    let mut object = Object::decode(doc, &mut findings);
    if let Some(obj) = &mut object {
        set_defaults(obj, config);
        // A field the decoder already rejected (missing, wrong type) is not validated again:
        // the follow-on findings about it would only be noise.
        let rejected: Vec<FieldPath> = findings.errors().map(|e| e.path.clone()).collect();
        findings.extend(
            validate(obj, config)
                .into_iter()
                .filter(|e| !rejected.iter().any(|r| e.path.starts_with(r))),
        );
    } else if !findings.has_errors() {
        findings.push(FieldError::error(
            FieldPath::root(),
            "not a Kubernetes object",
        ));
    }
    findings.locate_in(doc);
    Document {
        index,
        line: doc.pos.line,
        object,
        findings,
    }
}

/// Writes objects as a YAML stream, one document each, separated by `---`.
pub fn to_yaml(objects: &[Object]) -> String {
    let mut out = String::new();
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&to_yaml_one(&o.to_json()));
    }
    out
}

/// Writes any JSON value as YAML.
pub fn to_yaml_one(v: &serde_json::Value) -> String {
    // Serializing a JSON value (strings, numbers, maps, lists) to YAML cannot fail; an empty
    // string is the safe fallback should the emitter ever refuse.
    serde_saphyr::to_string(v).unwrap_or_default()
}

/// Writes objects as JSON: one object as itself, several as a `kind: List` like kubectl does.
pub fn to_json(objects: &[Object]) -> String {
    let v = match objects {
        [one] => one.to_json(),
        many => serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": many.iter().map(Object::to_json).collect::<Vec<_>>(),
        }),
    };
    serde_json::to_string_pretty(&v).unwrap_or_default()
}
