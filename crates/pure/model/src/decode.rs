//! Strict, error-collecting decoding from a [`Node`] tree into typed structs.
//!
//! serde's derive stops at the first error; Kubernetes users expect every problem of a document
//! at once. Each type therefore decodes itself field by field, recording a [`FieldError`] for
//! every wrong type, missing field and unknown field, and carrying on.

use std::collections::BTreeMap;

use crate::error::{FieldError, FieldPath, Findings, Segment};
use crate::node::{Key, Node, Value};

/// A type that can be decoded from a document node, reporting every problem into `out`.
pub trait Decode: Sized {
    /// Decodes `node` found at `path`. Returns `None` when the value is unusable (the reason is
    /// in `out`).
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self>;
}

/// Records a wrong-type error with the node's position.
pub(crate) fn wrong_type(node: &Node, path: &FieldPath, want: &str, out: &mut Findings) {
    let got = match &node.value {
        Value::Str(s) => format!("string {s:?}"),
        Value::Int(i) => format!("integer {i}"),
        Value::Float(f) => format!("number {f}"),
        Value::Bool(b) => format!("boolean {b}"),
        other => other.kind().to_owned(),
    };
    let mut hint = String::new();
    if want == "string" && matches!(node.value, Value::Int(_) | Value::Float(_) | Value::Bool(_)) {
        hint = " (quote it, for example \"10\" or \"true\")".to_owned();
    }
    out.push(FieldError {
        pos: node.pos,
        ..FieldError::error(path.clone(), format!("expected {want}, got {got}{hint}"))
    });
}

impl Decode for String {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                wrong_type(node, path, "string", out);
                None
            }
        }
    }
}

impl Decode for i64 {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Int(i) => Some(*i),
            // JSON clients sometimes send 300.0; accept integral floats like encoding/json does.
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => {
                wrong_type(node, path, "integer", out);
                None
            }
        }
    }
}

impl Decode for f64 {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => {
                wrong_type(node, path, "number", out);
                None
            }
        }
    }
}

impl Decode for bool {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                wrong_type(node, path, "boolean", out);
                None
            }
        }
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Null => Some(Vec::new()),
            Value::Seq(items) => {
                let mut p = path.clone();
                let mut v = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    p.push(Segment::Index(i));
                    if let Some(x) = T::decode(item, &p, out) {
                        v.push(x);
                    }
                    p.pop();
                }
                Some(v)
            }
            _ => {
                wrong_type(node, path, "list", out);
                None
            }
        }
    }
}

impl<T: Decode> Decode for BTreeMap<String, T> {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Null => Some(BTreeMap::new()),
            Value::Map(entries) => {
                let mut m = BTreeMap::new();
                let mut p = path.clone();
                for (k, v) in entries {
                    p.push(Segment::Key(k.name.clone()));
                    if let Some(x) = T::decode(v, &p, out) {
                        m.insert(k.name.clone(), x);
                    }
                    p.pop();
                }
                Some(m)
            }
            _ => {
                wrong_type(node, path, "object", out);
                None
            }
        }
    }
}

impl Decode for serde_json::Value {
    fn decode(node: &Node, _path: &FieldPath, _out: &mut Findings) -> Option<Self> {
        Some(node.to_json())
    }
}

/// How a type takes one of its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Decoded into the type's own field, or read by a caller (`skip`).
    Read,
    /// Kept verbatim, not acted on (a type's `extra` or `other` map).
    Kept,
    /// Taken by the caller to accept only when `null`, or to drop: not a field users should
    /// write, so never suggested for a misspelt one.
    Handled,
    /// Taken to be refused, saying why (a Kubernetes field Knative does not admit): never
    /// suggested either.
    Refused,
}

/// The fields a type asks its document for, in the order it asks, recorded by its reader
/// (see [`fields_of`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldNames(Vec<(&'static str, Use)>);

impl FieldNames {
    /// Every field, however taken.
    pub fn all(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(n, _)| *n)
    }

    /// The fields taken as `how`.
    pub fn used(&self, how: Use) -> impl Iterator<Item = &'static str> + '_ {
        self.0
            .iter()
            .filter(move |(_, u)| *u == how)
            .map(|(n, _)| *n)
    }
}

/// The fields `T`'s decoder asks for, found by decoding an empty object: the one list a
/// type's fields are named in, so that schemas and documentation can be checked against it.
/// Decoders therefore ask for every field whatever the document holds; a field asked for only
/// when another is present would be known to the decoder yet missing here.
pub fn fields_of<T: Decode>() -> FieldNames {
    let empty = Node {
        value: Value::Map(Vec::new()),
        pos: Default::default(),
    };
    let mut out = Findings::listing();
    let _ = T::decode(&empty, &FieldPath::root(), &mut out);
    let mut names = FieldNames::default();
    for (name, how) in out.take_listing() {
        if !names.0.iter().any(|(n, _)| *n == name) {
            names.0.push((name, how));
        }
    }
    names
}

/// Which entries of an object were taken: one word for the usual object, a list beyond.
enum Taken {
    Few(u64),
    Many(Vec<bool>),
}

impl Taken {
    fn new(len: usize) -> Taken {
        if len <= 64 {
            Taken::Few(0)
        } else {
            Taken::Many(vec![false; len])
        }
    }

    fn set(&mut self, i: usize) {
        match self {
            Taken::Few(bits) => *bits |= 1 << i,
            Taken::Many(v) => v[i] = true,
        }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Taken::Few(bits) => bits & (1 << i) != 0,
            Taken::Many(v) => v[i],
        }
    }
}

/// Reads the fields of one object. Every name it is asked for is recorded: the names asked
/// for are the type's known fields, so the rest of the object is reported as unknown, with the
/// nearest known name suggested, and no type lists its fields a second time.
pub struct Fields<'n> {
    node: &'n Node,
    entries: &'n [(Key, Node)],
    taken: Taken,
    path: FieldPath,
    asked: Vec<(&'static str, Use)>,
}

impl<'n> Fields<'n> {
    /// Opens `node` as an object. `null` reads as an empty object; anything else that is not
    /// an object is reported and yields `None`.
    pub fn open(node: &'n Node, path: &FieldPath, out: &mut Findings) -> Option<Fields<'n>> {
        let entries: &[(Key, Node)] = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => &[],
            _ => {
                wrong_type(node, path, "object", out);
                return None;
            }
        };
        Some(Fields {
            node,
            entries,
            taken: Taken::new(entries.len()),
            path: path.clone(),
            // Most of the model's objects have fewer fields than this: one allocation.
            asked: Vec::with_capacity(16),
        })
    }

    /// The path of the object being read.
    pub fn path(&self) -> &FieldPath {
        &self.path
    }

    /// The object's node.
    pub fn node(&self) -> &'n Node {
        self.node
    }

    fn take(&mut self, name: &str) -> Option<&'n Node> {
        let i = self.entries.iter().position(|(k, _)| k.name == name)?;
        self.taken.set(i);
        Some(&self.entries[i].1)
    }

    fn ask(&mut self, name: &'static str, how: Use) -> Option<&'n Node> {
        self.asked.push((name, how));
        self.take(name)
    }

    /// An optional field; absent or `null` reads as `None`.
    pub fn opt<T: Decode>(&mut self, name: &'static str, out: &mut Findings) -> Option<T> {
        let node = self.ask(name, Use::Read)?;
        if node.value == Value::Null {
            return None;
        }
        T::decode(node, &self.path.field(name), out)
    }

    /// An optional field whose absence means its `Default` (empty list, empty map).
    pub fn or_default<T: Decode + Default>(&mut self, name: &'static str, out: &mut Findings) -> T {
        self.opt(name, out).unwrap_or_default()
    }

    /// A required field; absence is reported as a missing field.
    pub fn req<T: Decode>(&mut self, name: &'static str, out: &mut Findings) -> Option<T> {
        match self.ask(name, Use::Read) {
            Some(node) if node.value != Value::Null => T::decode(node, &self.path.field(name), out),
            _ => {
                out.push(FieldError {
                    pos: self.node.pos,
                    ..FieldError::missing(self.path.field(name))
                });
                None
            }
        }
    }

    /// A known field that is not decoded here (it is read elsewhere, or accepted and dropped).
    pub fn skip(&mut self, name: &'static str) {
        let _ = self.ask(name, Use::Read);
    }

    /// A field the caller handles itself ([`Use::Handled`]): taken, so not reported as
    /// unknown, but never suggested for a misspelt name.
    pub fn handle(&mut self, name: &'static str) -> Option<&'n Node> {
        self.ask(name, Use::Handled)
    }

    /// A field the caller refuses ([`Use::Refused`]): taken, so that it is reported as refused
    /// rather than as unknown, and never suggested.
    pub fn refused(&mut self, name: &'static str) -> Option<&'n Node> {
        self.ask(name, Use::Refused)
    }

    /// Keeps fields that Knative accepts but kantai does not act on, verbatim, so that nothing
    /// the user wrote is lost; each present one is reported as a warning when `why` is given.
    pub fn keep(
        &mut self,
        names: &[&'static str],
        why: Option<&str>,
        out: &mut Findings,
    ) -> BTreeMap<String, serde_json::Value> {
        let mut kept = BTreeMap::new();
        for name in names {
            if let Some(node) = self.ask(name, Use::Kept) {
                if let Some(why) = why {
                    out.push(FieldError {
                        pos: node.pos,
                        ..FieldError::warning(self.path.field(*name), why.to_owned())
                    });
                }
                kept.insert((*name).to_owned(), node.to_json());
            }
        }
        kept
    }

    /// Reports every field that was not asked for as unknown, suggesting the closest name
    /// that was.
    pub fn close(self, out: &mut Findings) {
        // The names are gathered only when there is something to report.
        let known: Vec<&str> = self.unread().next().map_or_else(Vec::new, |_| {
            self.asked
                .iter()
                .filter(|(_, how)| matches!(how, Use::Read | Use::Kept))
                .map(|(n, _)| *n)
                .collect()
        });
        self.report_unread(&known, out);
        if self.path.is_root() {
            out.list(&self.asked);
        }
    }

    fn unread(&self) -> impl Iterator<Item = &'n Key> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.taken.get(*i))
            .map(|(_, (k, _))| k)
    }

    fn report_unread(&self, known: &[&str], out: &mut Findings) {
        for k in self.unread() {
            let mut msg = format!("unknown field {:?}", k.name);
            if let Some(s) = closest(&k.name, known) {
                msg.push_str(&format!(", did you mean {s:?}?"));
            }
            out.push(FieldError {
                pos: k.pos,
                ..FieldError::error(self.path.field(k.name.clone()), msg)
            });
        }
    }
}

/// The known name nearest to `name` when it is a likely typo (case or a couple of letters).
pub(crate) fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.len() / 4).max(1) && *d < k.len().min(lower.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{ParseLimits, parse_documents};

    #[test]
    fn suggestions_catch_typos_and_case() {
        assert_eq!(closest("imag", &["image", "name"]), Some("image"));
        assert_eq!(
            closest("containerconcurrency", &["containerConcurrency"]),
            Some("containerConcurrency")
        );
        assert_eq!(closest("zzz", &["image", "name"]), None);
        assert_eq!(closest("d", &["a", "b"]), None);
    }

    #[test]
    fn every_problem_of_an_object_is_reported() {
        let doc = &parse_documents("a: x\nb: 3\nc: [1]\nd: 1\n", ParseLimits::default())
            .expect("parses")[0];
        let mut out = Findings::new();
        let mut f = Fields::open(doc, &FieldPath::root(), &mut out).expect("object");
        let a: Option<i64> = f.opt("a", &mut out);
        let b: Option<String> = f.opt("b", &mut out);
        let c: Option<Vec<String>> = f.opt("c", &mut out);
        let e: Option<String> = f.req("e", &mut out);
        f.close(&mut out);
        assert_eq!((a, b, e), (None, None, None));
        assert_eq!(c, Some(vec![]));
        let msgs: Vec<String> = out.all().iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "a: expected integer, got string \"x\"",
                "b: expected string, got integer 3 (quote it, for example \"10\" or \"true\")",
                "c[0]: expected string, got integer 1 (quote it, for example \"10\" or \"true\")",
                "e: required field is missing",
                "d: unknown field \"d\"",
            ]
        );
        assert_eq!(out.all()[4].pos.line, 4);
    }

    fn decode_str<T: Decode>(text: &str) -> Vec<String> {
        let doc = &parse_documents(text, ParseLimits::default()).expect("parses")[0];
        let mut out = Findings::new();
        let _ = T::decode(doc, &FieldPath::root(), &mut out);
        out.all().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_field_asked_for_is_suggested_though_absent() {
        assert_eq!(
            decode_str::<crate::serving::Container>("image: app\nimagePullPolicyy: Always\n"),
            [
                "imagePullPolicyy: unknown field \"imagePullPolicyy\", did you mean \"imagePullPolicy\"?"
            ]
        );
    }

    #[test]
    fn a_kept_field_is_suggested() {
        assert_eq!(
            decode_str::<crate::serving::Container>("image: app\nterminationMessagePat: x\n"),
            [
                "terminationMessagePat: unknown field \"terminationMessagePat\", did you mean \"terminationMessagePath\"?"
            ]
        );
    }

    #[test]
    fn a_handled_field_is_taken_but_never_suggested() {
        let doc = &parse_documents(
            "privileged: true\nprivilegd: true\n",
            ParseLimits::default(),
        )
        .expect("parses")[0];
        let mut out = Findings::new();
        let mut f = Fields::open(doc, &FieldPath::root(), &mut out).expect("object");
        assert!(f.handle("privileged").is_some());
        f.close(&mut out);
        let msgs: Vec<String> = out.all().iter().map(ToString::to_string).collect();
        assert_eq!(msgs, ["privilegd: unknown field \"privilegd\""]);
    }

    #[test]
    fn fields_of_lists_read_then_kept_fields_in_the_order_asked() {
        let names = fields_of::<crate::serving::VolumeMount>();
        assert_eq!(
            names.used(Use::Read).collect::<Vec<_>>(),
            ["name", "mountPath", "readOnly", "subPath"]
        );
        assert_eq!(
            names.used(Use::Kept).collect::<Vec<_>>(),
            crate::serving::OTHER_MOUNT_FIELDS
        );
        assert_eq!(names.all().count(), 7);
    }

    #[test]
    fn fields_of_lists_handled_fields_apart() {
        let names = fields_of::<crate::meta::TemplateMeta>();
        assert_eq!(
            names.used(Use::Handled).collect::<Vec<_>>(),
            ["creationTimestamp"]
        );
        assert_eq!(
            names.used(Use::Read).collect::<Vec<_>>(),
            ["name", "labels", "annotations"]
        );
    }

    #[test]
    fn fields_of_does_not_list_nested_objects_fields() {
        let names: Vec<_> = fields_of::<crate::serving::RevisionTemplate>()
            .all()
            .collect();
        assert_eq!(names, ["metadata", "spec"]);
    }
}
