//! Kubernetes object metadata.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::decode::{Decode, Fields};
use crate::error::{FieldError, FieldPath, Findings};
use crate::node::Node;
use crate::serving::naming::{
    dns1035_problem, is_dns1123_label, is_dns1123_subdomain, is_label_value, qualified_name_problem,
};
use crate::time::rfc3339_problem;

/// Kubernetes' limit on the total size of an object's annotations.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// The rule an object's name follows, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Knative's objects: a DNS-1035 label (starts with a letter, at most 63 characters).
    Dns1035Label,
    /// Nodes, instances and most Kubernetes objects: a DNS-1123 subdomain (at most 253).
    Dns1123Subdomain,
    /// Namespaces: a DNS-1123 label (may start with a digit, at most 63 characters).
    Dns1123Label,
}

impl NameRule {
    /// Why `name` breaks the rule, if it does.
    pub fn problem(self, name: &str) -> Option<String> {
        match self {
            NameRule::Dns1035Label => dns1035_problem(name),
            NameRule::Dns1123Subdomain => (!is_dns1123_subdomain(name)).then(|| {
                "a DNS-1123 subdomain must consist of lower case alphanumeric characters, '-' \
                 or '.', start and end with an alphanumeric character, and be at most 253 \
                 characters"
                    .to_owned()
            }),
            NameRule::Dns1123Label => (!is_dns1123_label(name)).then(|| {
                "a DNS-1123 label must consist of lower case alphanumeric characters or '-', \
                 start and end with an alphanumeric character, and be at most 63 characters"
                    .to_owned()
            }),
        }
    }
}

/// Kubernetes' rules for `metadata`, every kind alike: the name by `rule`, the namespace,
/// label and annotation keys and values, and the timestamps a client may send back.
pub fn validate(meta: &ObjectMeta, path: &FieldPath, rule: NameRule, out: &mut Findings) {
    if meta.name.is_empty() {
        out.push(FieldError::missing(path.field("name")));
    } else if let Some(p) = rule.problem(&meta.name) {
        out.push(FieldError::invalid(path.field("name"), &meta.name, &p));
    }
    if let Some(ns) = &meta.namespace
        && !is_dns1123_label(ns)
    {
        out.push(FieldError::invalid(
            path.field("namespace"),
            ns,
            "a namespace must be a DNS-1123 label (lowercase letters, digits, '-')",
        ));
    }
    validate_labels(&meta.labels, &path.field("labels"), out);
    validate_annotations(&meta.annotations, &path.field("annotations"), out);
    if let Some(t) = &meta.creation_timestamp {
        check_time(t, &path.field("creationTimestamp"), out);
    }
    if let Some(serde_json::Value::String(t)) = meta.extra.get("deletionTimestamp") {
        check_time(t, &path.field("deletionTimestamp"), out);
    }
    if let Some(serde_json::Value::Array(entries)) = meta.extra.get("managedFields") {
        for (i, e) in entries.iter().enumerate() {
            if let Some(serde_json::Value::String(t)) = e.get("time") {
                check_time(t, &path.field("managedFields").index(i).field("time"), out);
            }
        }
    }
}

/// Records a finding if `value` is not an RFC 3339 time.
pub fn check_time(value: &str, path: &FieldPath, out: &mut Findings) {
    if let Some(p) = rfc3339_problem(value) {
        out.push(FieldError::invalid(path.clone(), value, p));
    }
}

/// Label keys are qualified names, values at most 63 characters of `[A-Za-z0-9_.-]`.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &FieldPath, out: &mut Findings) {
    for (k, v) in labels {
        if let Some(p) = qualified_name_problem(k) {
            out.push(FieldError::error(
                path.key(k.clone()),
                format!("invalid label key: {p}"),
            ));
        }
        if !is_label_value(v) {
            out.push(FieldError::invalid(
                path.key(k.clone()),
                v,
                "a label value must be at most 63 characters of [A-Za-z0-9_.-], starting and \
                 ending with an alphanumeric character",
            ));
        }
    }
}

/// Annotation keys are qualified names; all annotations together at most 256 KiB.
pub fn validate_annotations(anns: &BTreeMap<String, String>, path: &FieldPath, out: &mut Findings) {
    let mut size = 0;
    for (k, v) in anns {
        size += k.len() + v.len();
        if let Some(p) = qualified_name_problem(k) {
            out.push(FieldError::error(
                path.key(k.clone()),
                format!("invalid annotation key: {p}"),
            ));
        }
    }
    if size > MAX_ANNOTATIONS_BYTES {
        out.push(FieldError::error(
            path.clone(),
            format!("annotations total {size} bytes, must be at most {MAX_ANNOTATIONS_BYTES}"),
        ));
    }
}

/// `metadata` of a top-level object.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name (DNS-1035 label for Knative objects).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespace; `default` when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (autoscaling and kantai settings live here).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Incremented by the API server on every spec change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Unique id assigned by the API server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Opaque version for optimistic concurrency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// RFC 3339 creation time, set by the API server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Owners (a Revision is owned by its Configuration, which is owned by its Service).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    /// Kubernetes bookkeeping fields kantai keeps verbatim (finalizers, managedFields, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Kubernetes bookkeeping fields accepted in `metadata` and kept as they are.
const META_KEPT: &[&str] = &[
    "generateName",
    "finalizers",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

impl ObjectMeta {
    /// The namespace, defaulting to `default` like kubectl does.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

impl Decode for ObjectMeta {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let meta = ObjectMeta {
            name: f.opt("name", out).unwrap_or_default(),
            namespace: f.opt("namespace", out),
            labels: f.or_default("labels", out),
            annotations: f.or_default("annotations", out),
            generation: f.opt("generation", out),
            uid: f.opt("uid", out),
            resource_version: f.opt("resourceVersion", out),
            creation_timestamp: f.opt("creationTimestamp", out),
            owner_references: f.or_default("ownerReferences", out),
            extra: f.keep(META_KEPT, None, out),
        };
        f.close(out);
        Some(meta)
    }
}

/// A reference from a child object to the object that owns it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// Owner's API version.
    pub api_version: String,
    /// Owner's kind.
    pub kind: String,
    /// Owner's name.
    pub name: String,
    /// Owner's uid.
    pub uid: String,
    /// Whether the owner is the managing controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// Whether deletion of the owner waits for this object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

impl Decode for OwnerReference {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let r = OwnerReference {
            api_version: f.req("apiVersion", out).unwrap_or_default(),
            kind: f.req("kind", out).unwrap_or_default(),
            name: f.req("name", out).unwrap_or_default(),
            uid: f.req("uid", out).unwrap_or_default(),
            controller: f.opt("controller", out),
            block_owner_deletion: f.opt("blockOwnerDeletion", out),
        };
        f.close(out);
        Some(r)
    }
}

/// `spec.template.metadata`: Knative allows only a name, labels and annotations here.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMeta {
    /// Explicit ("bring your own") revision name; must start with the Service name and `-`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels copied onto the revision.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations copied onto the revision (autoscaling settings live here).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Decode for TemplateMeta {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let m = TemplateMeta {
            name: f.opt("name", out),
            labels: f.or_default("labels", out),
            annotations: f.or_default("annotations", out),
        };
        // `kubectl get -o yaml` prints `creationTimestamp: null` here; accept it when null.
        let ts = f
            .handle("creationTimestamp")
            .filter(|n| n.value != crate::node::Value::Null)
            .and_then(|n| String::decode(n, &path.field("creationTimestamp"), out));
        if ts.is_some() {
            out.push(crate::error::FieldError::error(
                path.field("creationTimestamp"),
                "must not be set in a revision template",
            ));
        }
        f.close(out);
        Some(m)
    }
}

/// The metadata of an object kept as JSON (as the store and the API hold objects), read in one
/// way everywhere instead of by hand-written `["metadata"][...]` lookups.
pub trait JsonMeta {
    /// The object's `metadata` (JSON `null` when it has none).
    fn metadata(&self) -> &Value;

    /// `metadata.name`, or `""` when absent.
    fn name(&self) -> &str {
        self.metadata()["name"].as_str().unwrap_or_default()
    }

    /// `metadata.namespace`, if set.
    fn namespace(&self) -> Option<&str> {
        self.metadata()["namespace"].as_str()
    }

    /// `metadata.namespace`, or `default` as Kubernetes reads an unset one.
    fn namespace_or_default(&self) -> &str {
        self.namespace().unwrap_or("default")
    }

    /// The label `key`, if set.
    fn label(&self, key: &str) -> Option<&str> {
        self.metadata()["labels"][key].as_str()
    }

    /// The annotation `key`, if set.
    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata()["annotations"][key].as_str()
    }

    /// Every label (values that are not strings left out).
    fn labels(&self) -> BTreeMap<String, String> {
        string_map(&self.metadata()["labels"])
    }

    /// Every annotation (values that are not strings left out).
    fn annotations(&self) -> BTreeMap<String, String> {
        string_map(&self.metadata()["annotations"])
    }

    /// `metadata.uid`, if set.
    fn uid(&self) -> Option<&str> {
        self.metadata()["uid"].as_str()
    }

    /// `metadata.resourceVersion`, if set.
    fn resource_version(&self) -> Option<&str> {
        self.metadata()["resourceVersion"].as_str()
    }

    /// `metadata.generation`, if set.
    fn generation(&self) -> Option<i64> {
        self.metadata()["generation"].as_i64()
    }
}

impl JsonMeta for Value {
    fn metadata(&self) -> &Value {
        &self["metadata"]
    }
}

/// The store shares objects as `Arc<Value>`.
impl<T: JsonMeta + ?Sized> JsonMeta for std::sync::Arc<T> {
    fn metadata(&self) -> &Value {
        (**self).metadata()
    }
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod json_meta_tests {
    use super::JsonMeta;

    #[test]
    fn reads_name_namespace_labels_and_annotations_of_a_json_object() {
        let v = serde_json::json!({"metadata": {"name": "hello", "labels": {"a": "1", "n": 2},
            "annotations": {"k": "v"}, "resourceVersion": "7", "generation": 3}});
        assert_eq!(v.name(), "hello");
        assert_eq!(v.namespace(), None);
        assert_eq!(v.namespace_or_default(), "default");
        assert_eq!(v.label("a"), Some("1"));
        assert_eq!(v.labels().len(), 1, "a non-string label value is left out");
        assert_eq!(v.annotation("k"), Some("v"));
        assert_eq!(v.resource_version(), Some("7"));
        assert_eq!(v.generation(), Some(3));
        assert_eq!(serde_json::json!({}).name(), "");
    }
}
