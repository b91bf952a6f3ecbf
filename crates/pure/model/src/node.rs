//! A position-carrying document tree: the common input of every decoder.
//!
//! YAML and JSON (a subset of YAML) are parsed by `serde-saphyr` into [`Node`]s that remember
//! their line and column, so that every later error, even one found by semantic validation,
//! can point at the line it is about. JSON that arrives as a `serde_json::Value` (API bodies)
//! converts into the same tree without positions.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::error::{FieldPath, Segment};

/// A line and column in the source text, 1-based; `line == 0` means "unknown".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
}

impl Pos {
    /// The position of a node that did not come from text.
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    /// Whether the position is known.
    pub fn is_known(self) -> bool {
        self.line > 0
    }
}

/// One value of a parsed document, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts in the source.
    pub pos: Pos,
}

/// The shape of a node's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string (quoted or plain).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order. Keys are always strings (see [`Node::deserialize`]).
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where the key starts.
    pub pos: Pos,
}

impl Value {
    /// A short, human name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "list",
            Value::Map(_) => "object",
        }
    }
}

impl Node {
    /// A node without a source position.
    pub fn new(value: Value) -> Node {
        Node {
            value,
            pos: Pos::UNKNOWN,
        }
    }

    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string value under `key`, when present and a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key).map(|n| &n.value) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The position of the deepest node along `path` that exists (for error messages): an error
    /// about a missing field points at the object that should hold it.
    pub fn locate(&self, path: &FieldPath) -> Pos {
        let mut here = self;
        let mut best = self.pos;
        for seg in path.segments() {
            let next = match (seg, &here.value) {
                (Segment::Field(name), Value::Map(entries)) => {
                    entries
                        .iter()
                        .find(|(k, _)| k.name == **name)
                        .map(|(k, v)| {
                            // A value on the next line (a nested block) is best shown at its key.
                            (k.pos, v)
                        })
                }
                (Segment::Key(name), Value::Map(entries)) => entries
                    .iter()
                    .find(|(k, _)| &k.name == name)
                    .map(|(k, v)| (k.pos, v)),
                (Segment::Index(i), Value::Seq(items)) => items.get(*i).map(|v| (v.pos, v)),
                _ => None,
            };
            match next {
                Some((pos, node)) => {
                    if pos.is_known() {
                        best = pos;
                    }
                    here = node;
                }
                None => break,
            }
        }
        best
    }

    /// Converts to a `serde_json::Value` (positions are dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Converts a `serde_json::Value` (for example an API request body) into a tree without
    /// positions.
    pub fn from_json(json: &serde_json::Value) -> Node {
        use serde_json::Value as J;
        let value = match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(items) => Value::Seq(items.iter().map(Node::from_json).collect()),
            J::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                name: k.clone(),
                                pos: Pos::UNKNOWN,
                            },
                            Node::from_json(v),
                        )
                    })
                    .collect(),
            ),
        };
        Node::new(value)
    }
}

/// Limits applied to every parsed text; inputs beyond them are rejected, never truncated.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of lists and objects. Kubernetes objects, managedFields
    /// included, stay well under 30; the bound keeps the recursive decoder within a 2 MiB
    /// thread stack even in debug builds.
    pub max_depth: usize,
    /// Most documents in one YAML stream.
    pub max_documents: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_bytes: 8 * 1024 * 1024,
            max_depth: 40,
            max_documents: 1024,
        }
    }
}

/// A syntax error in YAML/JSON text, with the parser's own rendering (it includes a snippet).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// Human-readable message, possibly multi-line with a source snippet.
    pub message: String,
    /// Where the parser stopped, when known.
    pub pos: Pos,
}

/// Parses a YAML stream (or JSON text) into one node per non-empty document.
pub fn parse_documents(text: &str, limits: ParseLimits) -> Result<Vec<Node>, SyntaxError> {
    if text.len() > limits.max_bytes {
        return Err(SyntaxError {
            message: format!(
                "input is {} bytes, more than the limit of {} bytes",
                text.len(),
                limits.max_bytes
            ),
            pos: Pos::UNKNOWN,
        });
    }
    // YAML 1.2 booleans only: `image: y` or `value: on` stay strings, as users mean them.
    // Zero-prefixed integers are octal, as kubectl (YAML 1.1) reads them: Kubernetes
    // manifests write file modes so (`defaultMode: 0400` is 256).
    let options = serde_saphyr::options! {
        strict_booleans: true,
        legacy_octal_numbers: true,
        budget: serde_saphyr::budget! {
            max_depth: limits.max_depth,
            max_documents: limits.max_documents,
        },
    };
    let docs: Vec<Option<Node>> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: u32::try_from(l.line()).unwrap_or(u32::MAX),
                    column: u32::try_from(l.column()).unwrap_or(u32::MAX),
                })
                .unwrap_or(Pos::UNKNOWN);
            SyntaxError {
                message: e.to_string(),
                pos,
            }
        })?;
    // `---` followed by nothing, or a document that is only `~`, is not an object to apply.
    Ok(docs
        .into_iter()
        .flatten()
        .filter(|n| n.value != Value::Null)
        .collect())
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned: Spanned<Value> = Spanned::deserialize(deserializer)?;
        let loc = spanned.referenced;
        Ok(Node {
            value: spanned.value,
            pos: Pos {
                line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
                column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
            },
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML or JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_i128<E>(self, i: i128) -> Result<Value, E> {
        Ok(i64::try_from(i).map_or(Value::Float(i as f64), Value::Int))
    }
    fn visit_u128<E>(self, u: u128) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            // Kubernetes objects only have string keys; YAML also allows `1: x` or `true: y`,
            // which are kept as their text so that the decoder can name them in an error.
            let name = match key.value {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_owned(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(de::Error::custom(
                        "a mapping key must be a plain value, not a list or an object",
                    ));
                }
            };
            let value = map.next_value::<Node>()?;
            entries.push((Key { name, pos: key.pos }, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Node> {
        parse_documents(text, ParseLimits::default()).expect("parses")
    }

    #[test]
    fn multi_document_streams_skip_empty_documents() {
        let docs = parse("---\na: 1\n---\n---\nb: [x, 2]\n...\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].get("b").map(|n| n.pos.line), Some(5));
    }

    #[test]
    fn json_is_parsed_with_positions() {
        let docs = parse("{\n  \"a\": {\"b\": true}\n}");
        let b = docs[0].get("a").and_then(|a| a.get("b")).expect("b");
        assert_eq!(b.value, Value::Bool(true));
        assert_eq!(b.pos.line, 2);
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let docs = parse("a: \"10\"\nb: 10\nc: 1.5\nd: ~\n");
        assert_eq!(
            docs[0].get("a").map(|n| &n.value),
            Some(&Value::Str("10".into()))
        );
        assert_eq!(docs[0].get("b").map(|n| &n.value), Some(&Value::Int(10)));
        assert_eq!(docs[0].get("c").map(|n| &n.value), Some(&Value::Float(1.5)));
        assert_eq!(docs[0].get("d").map(|n| &n.value), Some(&Value::Null));
    }

    #[test]
    fn zero_prefixed_integers_are_octal_as_kubectl_reads_them() {
        let docs = parse("mode: 0644\nport: 8080\nzero: 0\n");
        assert_eq!(
            docs[0].get("mode").map(|n| &n.value),
            Some(&Value::Int(0o644))
        );
        assert_eq!(
            docs[0].get("port").map(|n| &n.value),
            Some(&Value::Int(8080))
        );
        assert_eq!(docs[0].get("zero").map(|n| &n.value), Some(&Value::Int(0)));
    }

    #[test]
    fn limits_are_enforced() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        let err = parse_documents(&deep, ParseLimits::default()).expect_err("too deep");
        assert!(
            err.message.contains("depth") || err.message.contains("nest"),
            "{err}"
        );
        let big = "a: 1\n".repeat(10);
        let limits = ParseLimits {
            max_bytes: 10,
            ..Default::default()
        };
        let err = parse_documents(&big, limits).expect_err("too big");
        assert!(err.message.contains("limit of 10 bytes"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_errors_with_a_line() {
        let err = parse_documents("a: 1\na: 2\n", ParseLimits::default()).expect_err("dup");
        assert_eq!(err.pos.line, 2);
        assert!(err.message.contains("duplicate"), "{err}");
    }

    #[test]
    fn json_round_trip_drops_positions_only() {
        let docs = parse("a: [1, 2.5, x, null, {b: false}]\n");
        let json = docs[0].to_json();
        let back = Node::from_json(&json);
        assert_eq!(back.to_json(), json);
    }
}
