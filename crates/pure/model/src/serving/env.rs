//! A container's environment sources: `env[].valueFrom` (Secret and ConfigMap keys, the
//! Downward API's fields and resources) and `envFrom` (every key of a Secret or ConfigMap).

use serde::Serialize;

use crate::decode::{Decode, Fields};
use crate::error::{FieldPath, Findings};
use crate::node::Node;
use crate::units::Quantity;

/// An environment variable.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where the value comes from instead: a Secret's or ConfigMap's key, or a field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

impl Decode for EnvVar {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let e = EnvVar {
            name: f.req("name", out).unwrap_or_default(),
            value: f.opt("value", out),
            value_from: f.opt("valueFrom", out),
        };
        f.close(out);
        Some(e)
    }
}

/// `valueFrom`: exactly one of its references (checked by validation).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A key of a ConfigMap in the revision's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
    /// A key of a Secret in the revision's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
    /// A field of the instance (Downward API), behind `kubernetes.podspec-fieldref`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
    /// A resource request or limit of the container, behind `kubernetes.podspec-fieldref`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_field_ref: Option<ResourceFieldSelector>,
}

impl Decode for EnvVarSource {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = EnvVarSource {
            config_map_key_ref: f.opt("configMapKeyRef", out),
            secret_key_ref: f.opt("secretKeyRef", out),
            field_ref: f.opt("fieldRef", out),
            resource_field_ref: f.opt("resourceFieldRef", out),
        };
        f.close(out);
        Some(s)
    }
}

/// A key of a Secret or ConfigMap (`secretKeyRef`, `configMapKeyRef`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySelector {
    /// The object's name.
    pub name: String,
    /// The key.
    pub key: String,
    /// Whether a missing object or key leaves the variable unset instead of failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl Decode for KeySelector {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = KeySelector {
            name: f.opt("name", out).unwrap_or_default(),
            key: f.req("key", out).unwrap_or_default(),
            optional: f.opt("optional", out),
        };
        f.close(out);
        Some(s)
    }
}

/// `fieldRef`: a field of the instance seen as a pod (`metadata.name`, `status.podIP`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectFieldSelector {
    /// `v1` when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The field's path.
    pub field_path: String,
}

impl Decode for ObjectFieldSelector {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = ObjectFieldSelector {
            api_version: f.opt("apiVersion", out),
            field_path: f.req("fieldPath", out).unwrap_or_default(),
        };
        f.close(out);
        Some(s)
    }
}

/// `resourceFieldRef`: a request or limit of a container (`limits.memory`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFieldSelector {
    /// The container, when not this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// `limits.cpu`, `requests.memory`, ...
    pub resource: String,
    /// The unit the value is expressed in (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divisor: Option<Quantity>,
}

impl Decode for ResourceFieldSelector {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = ResourceFieldSelector {
            container_name: f.opt("containerName", out),
            resource: f.req("resource", out).unwrap_or_default(),
            divisor: f.opt("divisor", out),
        };
        f.close(out);
        Some(s)
    }
}

/// `envFrom`: every key of a ConfigMap or Secret as a variable, with an optional prefix.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    /// Prepended to every key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The ConfigMap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<SourceRef>,
    /// The Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SourceRef>,
}

impl Decode for EnvFromSource {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = EnvFromSource {
            prefix: f.opt("prefix", out),
            config_map_ref: f.opt("configMapRef", out),
            secret_ref: f.opt("secretRef", out),
        };
        f.close(out);
        Some(s)
    }
}

/// A whole Secret or ConfigMap by name (`envFrom[].secretRef`, `configMapRef`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    /// The object's name.
    pub name: String,
    /// Whether a missing object is no error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl Decode for SourceRef {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = SourceRef {
            name: f.opt("name", out).unwrap_or_default(),
            optional: f.opt("optional", out),
        };
        f.close(out);
        Some(s)
    }
}
