//! A revision's volumes (`spec.volumes`) and a container's mounts of them
//! (`volumeMounts`): Secrets and ConfigMaps as files, projections of several, and scratch
//! directories. Which types a fleet accepts is Knative's feature flags' say (validation).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decode::{Decode, Fields};
use crate::error::{FieldPath, Findings};
use crate::node::Node;
use crate::units::Quantity;

/// One volume of the revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// The name mounts refer to.
    pub name: String,
    /// A Secret's keys as files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolume>,
    /// A ConfigMap's keys as files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolume>,
    /// Several Secrets' and ConfigMaps' keys in one directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected: Option<ProjectedVolume>,
    /// A scratch directory that lives as long as the instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolume>,
    /// Other volume sources (`persistentVolumeClaim`, `hostPath`, ...), kept verbatim for
    /// validation to accept or refuse by the fleet's feature flags.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Volume sources Kubernetes has that kantai reads only to judge (and refuse) them.
pub const OTHER_VOLUME_SOURCES: &[&str] = &[
    "persistentVolumeClaim",
    "hostPath",
    "downwardAPI",
    "csi",
    "ephemeral",
    "nfs",
    "image",
];

impl Volume {
    /// The names of the sources this volume sets (validation wants exactly one).
    pub fn sources(&self) -> Vec<&str> {
        let mut s = Vec::new();
        if self.secret.is_some() {
            s.push("secret");
        }
        if self.config_map.is_some() {
            s.push("configMap");
        }
        if self.projected.is_some() {
            s.push("projected");
        }
        if self.empty_dir.is_some() {
            s.push("emptyDir");
        }
        s.extend(self.other.keys().map(String::as_str));
        s
    }
}

impl Decode for Volume {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let v = Volume {
            name: f.req("name", out).unwrap_or_default(),
            secret: f.opt("secret", out),
            config_map: f.opt("configMap", out),
            projected: f.opt("projected", out),
            empty_dir: f.opt("emptyDir", out),
            other: f.keep(OTHER_VOLUME_SOURCES, None, out),
        };
        f.close(out);
        Some(v)
    }
}

/// `secret`: a Secret's keys (or the listed `items`) as files.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolume {
    /// The Secret's name.
    pub secret_name: String,
    /// Which keys, at which paths; all keys at their own names when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// Permission bits of the files (0644 when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i64>,
    /// Whether a missing Secret (or key) is no error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl Decode for SecretVolume {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let v = SecretVolume {
            secret_name: f.opt("secretName", out).unwrap_or_default(),
            items: f.or_default("items", out),
            default_mode: f.opt("defaultMode", out),
            optional: f.opt("optional", out),
        };
        f.close(out);
        Some(v)
    }
}

/// `configMap`: a ConfigMap's keys (or the listed `items`) as files.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolume {
    /// The ConfigMap's name.
    pub name: String,
    /// Which keys, at which paths; all keys at their own names when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// Permission bits of the files (0644 when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i64>,
    /// Whether a missing ConfigMap (or key) is no error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl Decode for ConfigMapVolume {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let v = ConfigMapVolume {
            name: f.opt("name", out).unwrap_or_default(),
            items: f.or_default("items", out),
            default_mode: f.opt("defaultMode", out),
            optional: f.opt("optional", out),
        };
        f.close(out);
        Some(v)
    }
}

/// One key as one file (`items[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyToPath {
    /// The key.
    pub key: String,
    /// The file's path, relative to the mount.
    pub path: String,
    /// This file's permission bits, instead of the volume's `defaultMode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i64>,
}

impl Decode for KeyToPath {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let k = KeyToPath {
            key: f.req("key", out).unwrap_or_default(),
            path: f.req("path", out).unwrap_or_default(),
            mode: f.opt("mode", out),
        };
        f.close(out);
        Some(k)
    }
}

/// `projected`: several sources in one directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedVolume {
    /// The sources, in order (a later file of the same path is an error, as in Kubernetes).
    pub sources: Vec<Projection>,
    /// Permission bits of the files (0644 when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i64>,
}

impl Decode for ProjectedVolume {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let v = ProjectedVolume {
            sources: f.or_default("sources", out),
            default_mode: f.opt("defaultMode", out),
        };
        f.close(out);
        Some(v)
    }
}

/// One source of a projected volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Projection {
    /// A Secret's keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<ProjectedObject>,
    /// A ConfigMap's keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ProjectedObject>,
    /// Sources kantai cannot project (`serviceAccountToken`, `downwardAPI`,
    /// `clusterTrustBundle`), kept for validation to refuse.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Projection sources kantai reads only to refuse them.
pub const OTHER_PROJECTIONS: &[&str] =
    &["serviceAccountToken", "downwardAPI", "clusterTrustBundle"];

impl Decode for Projection {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let p = Projection {
            secret: f.opt("secret", out),
            config_map: f.opt("configMap", out),
            other: f.keep(OTHER_PROJECTIONS, None, out),
        };
        f.close(out);
        Some(p)
    }
}

/// A Secret or ConfigMap in a projected volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedObject {
    /// The object's name.
    pub name: String,
    /// Which keys, at which paths; all keys when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// Whether a missing object (or key) is no error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl Decode for ProjectedObject {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let p = ProjectedObject {
            name: f.opt("name", out).unwrap_or_default(),
            items: f.or_default("items", out),
            optional: f.opt("optional", out),
        };
        f.close(out);
        Some(p)
    }
}

/// `emptyDir`: a scratch directory, on the node's disk or (`medium: Memory`) a tmpfs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirVolume {
    /// `""` (disk) or `Memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// The most it may hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

impl EmptyDirVolume {
    /// Whether it is a tmpfs.
    pub fn in_memory(&self) -> bool {
        self.medium.as_deref() == Some("Memory")
    }
}

impl Decode for EmptyDirVolume {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let v = EmptyDirVolume {
            medium: f.opt("medium", out),
            size_limit: f.opt("sizeLimit", out),
        };
        f.close(out);
        Some(v)
    }
}

/// One mount of a volume into the container.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// Where it appears in the container (absolute).
    pub mount_path: String,
    /// Whether the container sees it read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// One file or directory of the volume instead of its root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Fields Kubernetes has that Knative refuses (`mountPropagation`, `subPathExpr`,
    /// `recursiveReadOnly`), kept for validation to name.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Mount fields Knative's field mask leaves out.
pub const OTHER_MOUNT_FIELDS: &[&str] = &["mountPropagation", "subPathExpr", "recursiveReadOnly"];

impl Decode for VolumeMount {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let m = VolumeMount {
            name: f.req("name", out).unwrap_or_default(),
            mount_path: f.req("mountPath", out).unwrap_or_default(),
            read_only: f.opt("readOnly", out),
            sub_path: f.opt("subPath", out),
            other: f.keep(OTHER_MOUNT_FIELDS, None, out),
        };
        f.close(out);
        Some(m)
    }
}
