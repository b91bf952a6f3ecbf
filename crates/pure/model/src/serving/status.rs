//! Traffic targets, conditions and the status of each kind.

use serde::Serialize;

use crate::decode::{Decode, Fields, wrong_type};
use crate::error::{FieldPath, Findings};
use crate::node::{Node, Value};

/// One entry of `spec.traffic` / `status.traffic`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficTarget {
    /// Gives the target its own URL `http://TAG-NAME.NAMESPACE.DOMAIN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A fixed revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    /// The configuration whose latest ready revision is meant (Routes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration_name: Option<String>,
    /// Follow the latest ready revision; defaults to true iff no revisionName is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<bool>,
    /// Share of requests, 0–100; the shares sum to 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
    /// The tag's URL (status only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Decode for TrafficTarget {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let t = TrafficTarget {
            tag: f.opt("tag", out),
            revision_name: f.opt("revisionName", out),
            configuration_name: f.opt("configurationName", out),
            latest_revision: f.opt("latestRevision", out),
            percent: f.opt("percent", out),
            url: f.opt("url", out),
        };
        f.close(out);
        Some(t)
    }
}

/// A condition's truth value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum ConditionStatus {
    /// Satisfied.
    True,
    /// Not satisfied.
    False,
    /// Not yet known (in progress).
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// The status as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl Decode for ConditionStatus {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Str(s) if s == "True" => Some(ConditionStatus::True),
            Value::Str(s) if s == "False" => Some(ConditionStatus::False),
            Value::Str(s) if s == "Unknown" => Some(ConditionStatus::Unknown),
            _ => {
                wrong_type(node, path, "\"True\", \"False\" or \"Unknown\"", out);
                None
            }
        }
    }
}

/// A Knative condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: `Ready`, `ConfigurationsReady`, `RoutesReady`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// Machine-readable reason (CamelCase).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 time of the last change of `status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// `Error` (default) or `Warning`/`Info` for non-terminal conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

impl Decode for Condition {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let c = Condition {
            type_: f.req("type", out).unwrap_or_default(),
            status: f.req("status", out).unwrap_or_default(),
            reason: f.opt("reason", out),
            message: f.opt("message", out),
            last_transition_time: f.opt("lastTransitionTime", out),
            severity: f.opt("severity", out),
        };
        f.close(out);
        Some(c)
    }
}

impl Conditions {
    /// Checks conditions a client wrote: each has a type, appears once and carries an
    /// RFC 3339 `lastTransitionTime` if any (clients parse it as a time).
    pub fn validate(&self, path: &FieldPath, out: &mut Findings) {
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in self.0.iter().enumerate() {
            let at = path.index(i);
            if c.type_.is_empty() {
                out.push(crate::error::FieldError::missing(at.field("type")));
            } else if !seen.insert(c.type_.as_str()) {
                out.push(crate::error::FieldError::invalid(
                    at.field("type"),
                    &c.type_,
                    "each condition type may appear only once",
                ));
            }
            if let Some(t) = &c.last_transition_time {
                crate::meta::check_time(t, &at.field("lastTransitionTime"), out);
            }
        }
    }
}

/// A list of conditions with Knative's set/get semantics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Conditions(pub Vec<Condition>);

impl Conditions {
    /// The condition of a type.
    pub fn get(&self, type_: &str) -> Option<&Condition> {
        self.0.iter().find(|c| c.type_ == type_)
    }

    /// The status of a condition type (`Unknown` when absent).
    pub fn status(&self, type_: &str) -> ConditionStatus {
        self.get(type_)
            .map_or(ConditionStatus::Unknown, |c| c.status)
    }

    /// Whether a condition is True.
    pub fn is_true(&self, type_: &str) -> bool {
        self.status(type_) == ConditionStatus::True
    }

    /// Sets a condition; `lastTransitionTime` changes only when the status changes, as in
    /// Knative's condition manager. Conditions stay sorted by type.
    pub fn set(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: Option<&str>,
        message: Option<&str>,
        now: &str,
    ) {
        let reason = reason.map(str::to_owned);
        let message = message.map(str::to_owned);
        if let Some(c) = self.0.iter_mut().find(|c| c.type_ == type_) {
            if c.status != status {
                c.last_transition_time = Some(now.to_owned());
            }
            c.status = status;
            c.reason = reason;
            c.message = message;
            return;
        }
        self.0.push(Condition {
            type_: type_.to_owned(),
            status,
            reason,
            message,
            last_transition_time: Some(now.to_owned()),
            severity: None,
        });
        self.0.sort_by(|a, b| a.type_.cmp(&b.type_));
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Decode for Conditions {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        Vec::<Condition>::decode(node, path, out).map(Conditions)
    }
}

/// `status.address`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Addressable {
    /// Cluster-local URL.
    pub url: String,
}

impl Decode for Addressable {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let a = Addressable {
            url: f.opt("url", out).unwrap_or_default(),
        };
        f.close(out);
        Some(a)
    }
}

/// Status of a Service.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// The generation this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, ConfigurationsReady, RoutesReady.
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// External URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Cluster-local address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    /// Newest revision created from the template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_created_revision_name: Option<String>,
    /// Newest revision that became ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_ready_revision_name: Option<String>,
    /// Traffic resolved to concrete revisions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficTarget>,
}

impl Decode for ServiceStatus {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = ServiceStatus {
            observed_generation: f.opt("observedGeneration", out),
            conditions: f.or_default("conditions", out),
            url: f.opt("url", out),
            address: f.opt("address", out),
            latest_created_revision_name: f.opt("latestCreatedRevisionName", out),
            latest_ready_revision_name: f.opt("latestReadyRevisionName", out),
            traffic: f.or_default("traffic", out),
        };
        f.close(out);
        Some(s)
    }
}

/// Status of a Configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationStatus {
    /// The generation this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready.
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// Newest revision created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_created_revision_name: Option<String>,
    /// Newest ready revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_ready_revision_name: Option<String>,
}

impl Decode for ConfigurationStatus {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = ConfigurationStatus {
            observed_generation: f.opt("observedGeneration", out),
            conditions: f.or_default("conditions", out),
            latest_created_revision_name: f.opt("latestCreatedRevisionName", out),
            latest_ready_revision_name: f.opt("latestReadyRevisionName", out),
        };
        f.close(out);
        Some(s)
    }
}

/// Status of a Revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    /// The generation this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, ResourcesAvailable, ContainerHealthy, Active.
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// Ready instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_replicas: Option<i64>,
    /// Instances the autoscaler wants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i64>,
    /// The image each container resolved to, written by the control plane when it resolves
    /// the tag (one entry per container, in the spec's order).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
}

impl Decode for RevisionStatus {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = RevisionStatus {
            observed_generation: f.opt("observedGeneration", out),
            conditions: f.or_default("conditions", out),
            actual_replicas: f.opt("actualReplicas", out),
            desired_replicas: f.opt("desiredReplicas", out),
            container_statuses: f.or_default("containerStatuses", out),
        };
        // Knative reports these; kantai keeps nothing of them but accepts them in input.
        f.handle("logUrl");
        f.handle("imageDigest");
        f.close(out);
        Some(s)
    }
}

/// `status.containerStatuses[]` of a Revision (Knative's `ContainerStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The full reference with the digest the tag resolved to, for example
    /// `127.0.0.1:5055/fn/hello@sha256:...`; instances of the revision run exactly this image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
}

impl Decode for ContainerStatus {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = ContainerStatus {
            name: f.opt("name", out).unwrap_or_default(),
            image_digest: f.opt("imageDigest", out),
        };
        f.close(out);
        Some(s)
    }
}

/// Status of a Route.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// The generation this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, AllTrafficAssigned, IngressReady, CertificateProvisioned.
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// External URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Cluster-local address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    /// Traffic resolved to concrete revisions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficTarget>,
}

impl Decode for RouteStatus {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = RouteStatus {
            observed_generation: f.opt("observedGeneration", out),
            conditions: f.or_default("conditions", out),
            url: f.opt("url", out),
            address: f.opt("address", out),
            traffic: f.or_default("traffic", out),
        };
        f.close(out);
        Some(s)
    }
}
