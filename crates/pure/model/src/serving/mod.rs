//! `serving.knative.dev/v1`: Service, Configuration, Revision and Route.

mod env;
mod revision;
mod status;
mod volumes;

pub mod defaults;
pub mod derive;
pub mod naming;
pub mod resolve;
pub mod validate;

use serde::Serialize;

pub use self::env::{
    EnvFromSource, EnvVar, EnvVarSource, KeySelector, ObjectFieldSelector, ResourceFieldSelector,
    SourceRef,
};
pub(crate) use self::revision::ImageParts;
pub use self::revision::{
    Capabilities, Container, ContainerPort, ExecAction, GrpcAction, HttpGetAction, HttpHeader,
    IntOrString, LINUX_CAPABILITIES, PodSecurityContext, Probe, PullPolicy, Resources,
    RevisionSpec, RevisionTemplate, SecurityContext, TcpSocketAction,
};
pub use self::status::{
    Addressable, Condition, ConditionStatus, Conditions, ConfigurationStatus, ContainerStatus,
    RevisionStatus, RouteStatus, ServiceStatus, TrafficTarget,
};
pub use self::volumes::{
    ConfigMapVolume, EmptyDirVolume, KeyToPath, OTHER_MOUNT_FIELDS, OTHER_PROJECTIONS,
    OTHER_VOLUME_SOURCES, ProjectedObject, ProjectedVolume, Projection, SecretVolume, Volume,
    VolumeMount,
};

use crate::decode::{Decode, Fields};
use crate::error::{FieldError, FieldPath, Findings};
use crate::meta::ObjectMeta;
use crate::node::Node;

/// The API group and version of every kind in this module.
pub const API_VERSION: &str = "serving.knative.dev/v1";

/// A Knative Service: a template that stamps out revisions, and a traffic split over them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Service {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: ServiceSpec,
    /// Observed state, filled by the control plane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceStatus>,
}

/// `Service.spec`: a ConfigurationSpec and a RouteSpec in one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceSpec {
    /// The revision template.
    pub template: RevisionTemplate,
    /// The traffic split (defaulted to 100 % to the latest ready revision).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficTarget>,
}

/// A Configuration: the template half of a Service.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Configuration {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: ConfigurationSpec,
    /// Observed state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ConfigurationStatus>,
}

/// `Configuration.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ConfigurationSpec {
    /// The revision template.
    pub template: RevisionTemplate,
}

/// A Revision: an immutable snapshot of a template.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Revision {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// The snapshot.
    pub spec: RevisionSpec,
    /// Observed state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RevisionStatus>,
}

/// A Route: the traffic half of a Service.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Route {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: RouteSpec,
    /// Observed state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// `Route.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RouteSpec {
    /// The traffic split.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficTarget>,
}

/// Any object of this API group.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A Service.
    Service(Service),
    /// A Configuration.
    Configuration(Configuration),
    /// A Revision.
    Revision(Revision),
    /// A Route.
    Route(Route),
}

/// The kinds served in `serving.knative.dev/v1`.
pub const KINDS: &[&str] = &["Service", "Configuration", "Revision", "Route"];

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Service(_) => "Service",
            Object::Configuration(_) => "Configuration",
            Object::Revision(_) => "Revision",
            Object::Route(_) => "Route",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Service(o) => &o.metadata,
            Object::Configuration(o) => &o.metadata,
            Object::Revision(o) => &o.metadata,
            Object::Route(o) => &o.metadata,
        }
    }

    /// The object's metadata, mutably.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Service(o) => &mut o.metadata,
            Object::Configuration(o) => &mut o.metadata,
            Object::Revision(o) => &mut o.metadata,
            Object::Route(o) => &mut o.metadata,
        }
    }

    /// A stored Revision read back as the model's type (stored objects were admitted: nothing
    /// is defaulted again); `None` for anything else. The control plane and the agents read
    /// revisions' settings through it.
    pub fn stored_revision(v: &serde_json::Value) -> Option<Revision> {
        let mut out = Findings::new();
        match Object::decode(&Node::from_json(v), &mut out) {
            Some(Object::Revision(r)) => Some(r),
            _ => None,
        }
    }

    /// Decodes one document. Every problem is reported into `out`; `None` means the document
    /// is not an object of this group at all (wrong apiVersion or kind, or not an object).
    pub fn decode(doc: &Node, out: &mut Findings) -> Option<Object> {
        let root = FieldPath::root();
        let mut f = Fields::open(doc, &root, out)?;
        let api_version: Option<String> = f.req("apiVersion", out);
        let kind: Option<String> = f.req("kind", out);
        let (api_version, kind) = (api_version?, kind?);
        if api_version != API_VERSION {
            let msg = if api_version.starts_with("serving.knative.dev/") {
                format!("{api_version:?} is not served; kantai serves {API_VERSION:?}")
            } else {
                format!(
                    "{api_version:?} is not a Knative Serving API; kantai reads {API_VERSION:?} \
                     (kinds: {})",
                    KINDS.join(", ")
                )
            };
            out.push(FieldError {
                pos: doc.get("apiVersion").map_or(doc.pos, |n| n.pos),
                ..FieldError::error(FieldPath::fields("apiVersion"), msg)
            });
            return None;
        }
        let obj = match kind.as_str() {
            "Service" => {
                let (metadata, spec, status) = parts(&mut f, out, true);
                Object::Service(Service {
                    metadata,
                    spec,
                    status,
                })
            }
            "Configuration" => {
                let (metadata, spec, status) = parts(&mut f, out, true);
                Object::Configuration(Configuration {
                    metadata,
                    spec,
                    status,
                })
            }
            "Revision" => {
                let (metadata, spec, status) = parts(&mut f, out, true);
                Object::Revision(Revision {
                    metadata,
                    spec,
                    status,
                })
            }
            "Route" => {
                // A Route without spec has no traffic yet, which Knative accepts.
                let (metadata, spec, status) = parts(&mut f, out, false);
                Object::Route(Route {
                    metadata,
                    spec,
                    status,
                })
            }
            other => {
                let mut msg = format!(
                    "kind {other:?} is not part of {API_VERSION}; known kinds: {}",
                    KINDS.join(", ")
                );
                if let Some(s) = crate::decode::closest(other, KINDS) {
                    msg.push_str(&format!(" (did you mean {s:?}?)"));
                }
                out.push(FieldError {
                    pos: doc.get("kind").map_or(doc.pos, |n| n.pos),
                    ..FieldError::error(FieldPath::fields("kind"), msg)
                });
                return None;
            }
        };
        f.close(out);
        Some(obj)
    }

    /// The object as JSON, with `apiVersion` and `kind` first.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("apiVersion".into(), API_VERSION.into());
        map.insert("kind".into(), self.kind().into());
        let body = match self {
            Object::Service(o) => serde_json::to_value(o),
            Object::Configuration(o) => serde_json::to_value(o),
            Object::Revision(o) => serde_json::to_value(o),
            Object::Route(o) => serde_json::to_value(o),
        };
        // Serializing plain structs of strings, numbers and maps to a JSON value cannot fail.
        if let Ok(serde_json::Value::Object(fields)) = body {
            map.extend(fields);
        }
        serde_json::Value::Object(map)
    }
}

/// The `metadata`, `spec` and `status` of an object; `metadata` is always required.
fn parts<S: Decode + Default, T: Decode>(
    f: &mut Fields<'_>,
    out: &mut Findings,
    spec_required: bool,
) -> (ObjectMeta, S, Option<T>) {
    let metadata = f.req("metadata", out).unwrap_or_default();
    let spec = if spec_required {
        f.req("spec", out)
    } else {
        f.opt("spec", out)
    };
    (metadata, spec.unwrap_or_default(), f.opt("status", out))
}

impl Decode for ServiceSpec {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = ServiceSpec {
            template: f.req("template", out).unwrap_or_default(),
            traffic: f.or_default("traffic", out),
        };
        f.close(out);
        Some(s)
    }
}

impl Decode for ConfigurationSpec {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = ConfigurationSpec {
            template: f.req("template", out).unwrap_or_default(),
        };
        f.close(out);
        Some(s)
    }
}

impl Decode for RouteSpec {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = RouteSpec {
            traffic: f.or_default("traffic", out),
        };
        f.close(out);
        Some(s)
    }
}
