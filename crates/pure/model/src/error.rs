//! Field paths and field errors, in the shape of Kubernetes' `field.Path` and Knative's
//! `apis.FieldError`: every problem names the field it is about and the rule it breaks.

use std::borrow::Cow;
use std::fmt;

use crate::decode::Use;
use crate::node::Pos;

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A struct field: `.spec`.
    Field(Cow<'static, str>),
    /// A list index: `[0]`.
    Index(usize),
    /// A map key chosen by the user (labels, annotations, resource names): `[app]`.
    Key(String),
}

/// A path to a field, printed as `spec.template.spec.containers[0].image` or
/// `metadata.annotations[autoscaling.knative.dev/target]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The document root.
    pub fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    /// Parses a dotted path made only of field names (`spec.template.spec`).
    pub fn fields(dotted: &'static str) -> FieldPath {
        FieldPath(
            dotted
                .split('.')
                .filter(|s| !s.is_empty())
                .map(|s| Segment::Field(Cow::Borrowed(s)))
                .collect(),
        )
    }

    /// This path extended by a field.
    pub fn field(&self, name: impl Into<Cow<'static, str>>) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Field(name.into()));
        p
    }

    /// This path extended by a list index.
    pub fn index(&self, i: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    /// This path extended by a map key.
    pub fn key(&self, k: impl Into<String>) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(k.into()));
        p
    }

    /// Pushes a segment in place (used by the decoder to avoid clones on the happy path).
    pub(crate) fn push(&mut self, seg: Segment) {
        self.0.push(seg);
    }

    /// Pops the last segment.
    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }

    /// The segments from the root.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Field(name) if i == 0 => write!(f, "{name}")?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(idx) => write!(f, "[{idx}]")?,
                Segment::Key(k) => write!(f, "[{k}]")?,
            }
        }
        Ok(())
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Accepted, but the user should know (for example a field kantai keeps but ignores).
    Warning,
    /// The object is rejected.
    Error,
}

/// One finding about one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field the finding is about.
    pub path: FieldPath,
    /// The rule that is broken, written for the person who has to fix it.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
    /// Where the field is in the source, when it came from text.
    pub pos: Pos,
}

impl FieldError {
    /// A rejecting finding.
    pub fn error(path: FieldPath, message: impl Into<String>) -> FieldError {
        FieldError {
            path,
            message: message.into(),
            severity: Severity::Error,
            pos: Pos::UNKNOWN,
        }
    }

    /// A non-rejecting finding.
    pub fn warning(path: FieldPath, message: impl Into<String>) -> FieldError {
        FieldError {
            path,
            message: message.into(),
            severity: Severity::Warning,
            pos: Pos::UNKNOWN,
        }
    }

    /// `missing field`: Knative's `apis.ErrMissingField`.
    pub fn missing(path: FieldPath) -> FieldError {
        FieldError::error(path, "required field is missing")
    }

    /// Knative's `apis.ErrOutOfBoundsValue`.
    pub fn out_of_bounds(
        path: FieldPath,
        value: impl fmt::Display,
        min: impl fmt::Display,
        max: impl fmt::Display,
    ) -> FieldError {
        FieldError::error(
            path,
            format!("{value} is out of range, must be in [{min}, {max}]"),
        )
    }

    /// Knative's `apis.ErrInvalidValue`, with the rule that is broken.
    pub fn invalid(path: FieldPath, value: impl fmt::Display, rule: &str) -> FieldError {
        FieldError::error(
            path,
            format!("invalid value {value:?}: {rule}", value = value.to_string()),
        )
    }

    /// Whether this finding rejects the object.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The findings about one document: all of them, not just the first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings(Vec<FieldError>, Option<Vec<(&'static str, Use)>>);

impl Findings {
    /// No findings.
    pub fn new() -> Findings {
        Findings(Vec::new(), None)
    }

    /// Findings that also take the field names the top-level object's reader was asked for
    /// (see [`crate::decode::fields_of`]).
    pub(crate) fn listing() -> Findings {
        Findings(Vec::new(), Some(Vec::new()))
    }

    /// Records the names a top-level reader was asked for, when listing.
    pub(crate) fn list(&mut self, names: &[(&'static str, Use)]) {
        if let Some(l) = &mut self.1 {
            l.extend_from_slice(names);
        }
    }

    /// The names listed so far.
    pub(crate) fn take_listing(&mut self) -> Vec<(&'static str, Use)> {
        self.1.take().unwrap_or_default()
    }

    /// Records a finding.
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    /// Records many findings.
    pub fn extend(&mut self, es: impl IntoIterator<Item = FieldError>) {
        self.0.extend(es);
    }

    /// Whether any finding rejects the object.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(FieldError::is_error)
    }

    /// The rejecting findings.
    pub fn errors(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter().filter(|e| e.is_error())
    }

    /// The non-rejecting findings.
    pub fn warnings(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter().filter(|e| !e.is_error())
    }

    /// All findings, in the order found.
    pub fn all(&self) -> &[FieldError] {
        &self.0
    }

    /// Consumes into the list of findings.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// Fills in unknown source positions by looking each path up in the document tree, and
    /// sorts findings by position so that reports read top to bottom.
    pub fn locate_in(&mut self, doc: &crate::node::Node) {
        for e in &mut self.0 {
            if !e.pos.is_known() {
                e.pos = doc.locate(&e.path);
            }
        }
        let mut seen = std::collections::HashSet::new();
        self.0
            .retain(|e| seen.insert((e.path.to_string(), e.message.clone(), e.severity)));
        self.0.sort_by_key(|e| (e.pos.line, e.pos.column));
    }
}

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl IntoIterator for Findings {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_kubernetes_field_paths() {
        let p = FieldPath::fields("spec.template.spec")
            .field("containers")
            .index(0)
            .field("image");
        assert_eq!(p.to_string(), "spec.template.spec.containers[0].image");
        let a = FieldPath::fields("metadata.annotations").key("autoscaling.knative.dev/target");
        assert_eq!(
            a.to_string(),
            "metadata.annotations[autoscaling.knative.dev/target]"
        );
    }

    #[test]
    fn findings_print_path_then_rule() {
        let e = FieldError::error(
            FieldPath::fields("spec.traffic"),
            "percentages sum to 90, must be 100",
        );
        assert_eq!(
            e.to_string(),
            "spec.traffic: percentages sum to 90, must be 100"
        );
    }
}
