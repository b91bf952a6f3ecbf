//! kantai's own resources, group `kantai.dev/v1alpha1`: **Node** (a member of the fleet),
//! **Placement** (per revision, the desired and ready instances on each node: ikukantai's
//! Seika) and **Instance** (one running copy of a revision: the Pod equivalent).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decode::{Decode, Fields, wrong_type};
use crate::error::{FieldError, FieldPath, Findings};
use crate::meta::{NameRule, ObjectMeta};
use crate::node::{Node as DocNode, Value};
use crate::serving::Conditions;
use crate::serving::naming::dns1035_problem;
use crate::topology::Capacity;

/// The group and version of kantai's resources.
pub const API_VERSION: &str = "kantai.dev/v1alpha1";

/// A node of the fleet, registered by its agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Node {
    /// Name (the topology's node name), labels.
    pub metadata: ObjectMeta,
    /// How to reach the node.
    pub spec: NodeSpec,
    /// Health, maintained by the control plane from the agent's heartbeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

/// `Node.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// Where clients send requests (`host:port`).
    pub gateway: String,
    /// Where other nodes forward requests for this node's instances (`host:port`).
    pub data: String,
    /// The agent's own endpoint (logs, metrics).
    pub admin: String,
    /// What the node can run.
    pub capacity: Capacity,
}

/// `Node.status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// `Ready`.
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// RFC 3339 time of the last heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<String>,
}

/// Per revision: how many instances each node should run and how many are ready.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Placement {
    /// Named after the revision.
    pub metadata: ObjectMeta,
    /// The control plane's decision.
    pub spec: PlacementSpec,
    /// What the nodes report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PlacementStatus>,
}

/// `Placement.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// The revision placed.
    pub revision: String,
    /// Its service (for display and routing).
    pub service: String,
    /// Desired instances per node, in the fleet's node order.
    pub nodes: Vec<NodeCount>,
    /// Whether requests must pass an activator that waits for capacity (Knative's proxy mode).
    pub activator_in_path: bool,
    /// Instances the autoscaler wanted that fit on no node.
    #[serde(skip_serializing_if = "is_zero")]
    pub unschedulable: u32,
    /// The placement policy that decided (`spread`, `latency-aware`, ...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `Placement.status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    /// Ready instances per node, in the same order as the spec.
    pub nodes: Vec<NodeCount>,
    /// `Scheduled`: whether every instance the autoscaler wants fits on a node.
    #[serde(skip_serializing_if = "crate::serving::Conditions::is_empty")]
    pub conditions: crate::serving::Conditions,
}

/// A count of instances on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeCount {
    /// Node name.
    pub node: String,
    /// Instance count.
    pub count: u32,
}

impl Placement {
    /// Desired instances on a node.
    pub fn desired_on(&self, node: &str) -> u32 {
        self.spec
            .nodes
            .iter()
            .find(|n| n.node == node)
            .map_or(0, |n| n.count)
    }

    /// The Seika-style summary `desired/ready` over the given node order: `0-0-1/0-0-1`.
    pub fn summary(&self, nodes: &[String]) -> String {
        let get =
            |list: &[NodeCount], n: &str| list.iter().find(|c| c.node == n).map_or(0, |c| c.count);
        let ready = self
            .status
            .as_ref()
            .map(|s| s.nodes.as_slice())
            .unwrap_or(&[]);
        let d: Vec<String> = nodes
            .iter()
            .map(|n| get(&self.spec.nodes, n).to_string())
            .collect();
        let r: Vec<String> = nodes.iter().map(|n| get(ready, n).to_string()).collect();
        format!("{}/{}", d.join("-"), r.join("-"))
    }
}

/// One running copy of a revision on a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Instance {
    /// Named `{service}-{node}-{5 random letters}`, labelled with its revision.
    pub metadata: ObjectMeta,
    /// What runs where.
    pub spec: InstanceSpec,
    /// What the node agent observes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<InstanceStatus>,
}

/// `Instance.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    /// The revision.
    pub revision: String,
    /// The revision's service (may be empty for a bare Configuration).
    pub service: String,
    /// The node running it.
    pub node: String,
    /// The revision's containerConcurrency (0 = unlimited), for load balancing.
    pub container_concurrency: u32,
    /// The image it runs, as the revision names it: kept here so that the instance reads the
    /// same while it drains after its revision is gone.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// The lifecycle phase of an instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Starting, not yet ready.
    #[default]
    Pending,
    /// Running (ready or not).
    Running,
    /// Draining before stop.
    Terminating,
    /// Exited with an error and not restarted.
    Failed,
}

impl Phase {
    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Terminating => "Terminating",
            Phase::Failed => "Failed",
        }
    }
}

impl Decode for Phase {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Str(s) => match s.as_str() {
                "Pending" => Some(Phase::Pending),
                "Running" => Some(Phase::Running),
                "Terminating" => Some(Phase::Terminating),
                "Failed" => Some(Phase::Failed),
                _ => {
                    out.push(FieldError::invalid(
                        path.clone(),
                        s,
                        "must be Pending, Running, Terminating or Failed",
                    ));
                    None
                }
            },
            _ => {
                wrong_type(node, path, "string", out);
                None
            }
        }
    }
}

/// `Instance.status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Lifecycle phase.
    pub phase: Phase,
    /// Whether it passes its readiness probe and takes requests.
    pub ready: bool,
    /// Where the node's queue role reaches it (`127.0.0.1:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// How often the process was restarted.
    pub restarts: u32,
    /// RFC 3339 time the current process started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Why it is not ready or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Exit code of the last process that ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i32>,
    /// Kubernetes' reason for the state (`ContainerCreating` while pulling, `ErrImagePull`,
    /// `CreateContainerConfigError`, `OOMKilled`, `Error`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The image the instance runs, pinned to its digest (containers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
}

fn u32_field(f: &mut Fields<'_>, name: &'static str, out: &mut Findings) -> u32 {
    let v: Option<i64> = f.opt(name, out);
    v.map_or(0, |i| {
        u32::try_from(i).unwrap_or_else(|_| {
            out.push(FieldError::out_of_bounds(
                f.path().field(name),
                i,
                0,
                u32::MAX,
            ));
            0
        })
    })
}

impl Decode for Node {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let n = Node {
            metadata: f.req("metadata", out).unwrap_or_default(),
            spec: f.req("spec", out).unwrap_or_default(),
            status: f.opt("status", out),
        };
        f.skip("apiVersion");
        f.skip("kind");
        f.close(out);
        Some(n)
    }
}

impl Decode for NodeSpec {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = NodeSpec {
            gateway: f.req("gateway", out).unwrap_or_default(),
            data: f.req("data", out).unwrap_or_default(),
            admin: f.req("admin", out).unwrap_or_default(),
            capacity: f.opt("capacity", out).unwrap_or_default(),
        };
        f.close(out);
        Some(s)
    }
}

impl Decode for NodeStatus {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = NodeStatus {
            conditions: f.or_default("conditions", out),
            last_heartbeat_time: f.opt("lastHeartbeatTime", out),
        };
        f.close(out);
        Some(s)
    }
}

impl Decode for Placement {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let p = Placement {
            metadata: f.req("metadata", out).unwrap_or_default(),
            spec: f.req("spec", out).unwrap_or_default(),
            status: f.opt("status", out),
        };
        f.skip("apiVersion");
        f.skip("kind");
        f.close(out);
        Some(p)
    }
}

impl Decode for PlacementSpec {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = PlacementSpec {
            revision: f.req("revision", out).unwrap_or_default(),
            service: f.opt("service", out).unwrap_or_default(),
            nodes: f.or_default("nodes", out),
            activator_in_path: f.opt("activatorInPath", out).unwrap_or(true),
            unschedulable: u32_field(&mut f, "unschedulable", out),
            policy: f.opt("policy", out).unwrap_or_default(),
        };
        f.close(out);
        Some(s)
    }
}

impl Decode for PlacementStatus {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = PlacementStatus {
            nodes: f.or_default("nodes", out),
            conditions: f.or_default("conditions", out),
        };
        f.close(out);
        Some(s)
    }
}

impl Decode for NodeCount {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let c = NodeCount {
            node: f.req("node", out).unwrap_or_default(),
            count: u32_field(&mut f, "count", out),
        };
        f.close(out);
        Some(c)
    }
}

impl Decode for Instance {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let i = Instance {
            metadata: f.req("metadata", out).unwrap_or_default(),
            spec: f.req("spec", out).unwrap_or_default(),
            status: f.opt("status", out),
        };
        f.skip("apiVersion");
        f.skip("kind");
        f.close(out);
        Some(i)
    }
}

impl Decode for InstanceSpec {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = InstanceSpec {
            revision: f.req("revision", out).unwrap_or_default(),
            service: f.opt("service", out).unwrap_or_default(),
            node: f.req("node", out).unwrap_or_default(),
            container_concurrency: u32_field(&mut f, "containerConcurrency", out),
            image: f.opt("image", out).unwrap_or_default(),
        };
        f.close(out);
        Some(s)
    }
}

impl Decode for InstanceStatus {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let last_exit_code: Option<i64> = f.opt("lastExitCode", out);
        let s = InstanceStatus {
            phase: f.opt("phase", out).unwrap_or_default(),
            ready: f.opt("ready", out).unwrap_or(false),
            address: f.opt("address", out),
            restarts: u32_field(&mut f, "restarts", out),
            start_time: f.opt("startTime", out),
            message: f.opt("message", out),
            last_exit_code: last_exit_code.and_then(|c| i32::try_from(c).ok()),
            reason: f.opt("reason", out),
            image_digest: f.opt("imageDigest", out),
        };
        f.close(out);
        Some(s)
    }
}

/// Serializes a kantai object with `apiVersion` and `kind` first.
pub fn to_json<T: Serialize>(kind: &str, obj: &T) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("apiVersion".into(), API_VERSION.into());
    map.insert("kind".into(), kind.into());
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(obj) {
        map.extend(fields);
    }
    serde_json::Value::Object(map)
}

/// Checks a kantai object beyond its shape: names, addresses and times, as the API admits it.
pub trait Validate {
    /// Records every problem in `out`.
    fn validate(&self, out: &mut Findings);
}

impl Validate for Node {
    fn validate(&self, out: &mut Findings) {
        let meta = FieldPath::fields("metadata");
        crate::meta::validate(&self.metadata, &meta, NameRule::Dns1123Subdomain, out);
        let spec = FieldPath::fields("spec");
        check_address(&self.spec.gateway, &spec.field("gateway"), out);
        check_address(&self.spec.data, &spec.field("data"), out);
        check_address(&self.spec.admin, &spec.field("admin"), out);
        if let Some(st) = &self.status {
            let path = FieldPath::fields("status");
            st.conditions.validate(&path.field("conditions"), out);
            if let Some(t) = &st.last_heartbeat_time {
                crate::meta::check_time(t, &path.field("lastHeartbeatTime"), out);
            }
        }
    }
}

impl Validate for Instance {
    fn validate(&self, out: &mut Findings) {
        let meta = FieldPath::fields("metadata");
        crate::meta::validate(&self.metadata, &meta, NameRule::Dns1123Subdomain, out);
        let spec = FieldPath::fields("spec");
        if let Some(p) = dns1035_problem(&self.spec.revision) {
            out.push(FieldError::invalid(
                spec.field("revision"),
                &self.spec.revision,
                &p,
            ));
        }
        if !self.spec.service.is_empty()
            && let Some(p) = dns1035_problem(&self.spec.service)
        {
            out.push(FieldError::invalid(
                spec.field("service"),
                &self.spec.service,
                &p,
            ));
        }
        if let Some(p) = NameRule::Dns1123Subdomain.problem(&self.spec.node) {
            out.push(FieldError::invalid(spec.field("node"), &self.spec.node, &p));
        }
        if let Some(st) = &self.status {
            let path = FieldPath::fields("status");
            if let Some(a) = &st.address {
                check_address(a, &path.field("address"), out);
            }
            if let Some(t) = &st.start_time {
                crate::meta::check_time(t, &path.field("startTime"), out);
            }
        }
    }
}

/// Records a finding unless `value` is `IP:port` with a port other than 0 (where a node or an
/// instance listens: a wrong one would send requests nowhere until they time out).
fn check_address(value: &str, path: &FieldPath, out: &mut Findings) {
    match value.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => {}
        Ok(_) => out.push(FieldError::invalid(
            path.clone(),
            value,
            "the port must be 1 to 65535",
        )),
        Err(_) => out.push(FieldError::invalid(
            path.clone(),
            value,
            "must be IP:port, such as 127.0.0.1:8080 or [::1]:8080",
        )),
    }
}

/// Decodes and validates a kantai object an API client sent: every problem at once.
pub fn admit<T: Decode + Validate>(json: &serde_json::Value) -> Result<T, Findings> {
    let node = DocNode::from_json(json);
    let mut out = Findings::new();
    let v = T::decode(&node, &FieldPath::root(), &mut out);
    if let Some(v) = &v {
        v.validate(&mut out);
    }
    match v {
        Some(v) if !out.has_errors() => Ok(v),
        _ => Err(out),
    }
}

/// Decodes a kantai object from JSON (an API body or a stored object), all problems at once.
pub fn from_json<T: Decode>(json: &serde_json::Value) -> Result<T, Findings> {
    let node = DocNode::from_json(json);
    let mut out = Findings::new();
    let v = T::decode(&node, &FieldPath::root(), &mut out);
    match v {
        Some(v) if !out.has_errors() => Ok(v),
        _ => Err(out),
    }
}

/// Labels copied onto every instance of a revision (selectors use them).
pub fn instance_labels(service: &str, revision: &str, node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            crate::serving::derive::SERVICE_LABEL.to_owned(),
            service.to_owned(),
        ),
        (
            crate::serving::derive::REVISION_LABEL.to_owned(),
            revision.to_owned(),
        ),
        ("kantai.dev/node".to_owned(), node.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_summary_follows_node_order() {
        let p = Placement {
            spec: PlacementSpec {
                nodes: vec![NodeCount {
                    node: "node3".into(),
                    count: 1,
                }],
                ..PlacementSpec::default()
            },
            status: Some(PlacementStatus {
                nodes: vec![NodeCount {
                    node: "node3".into(),
                    count: 1,
                }],
                ..PlacementStatus::default()
            }),
            ..Placement::default()
        };
        let order = ["node1".to_owned(), "node2".to_owned(), "node3".to_owned()];
        assert_eq!(p.summary(&order), "0-0-1/0-0-1");
    }

    #[test]
    fn instances_round_trip_through_json() {
        let i = Instance {
            metadata: ObjectMeta {
                name: "hello-node3-xgvq5".into(),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: InstanceSpec {
                revision: "hello-00001".into(),
                service: "hello".into(),
                node: "node3".into(),
                container_concurrency: 0,
                image: "docker.io/bonavadeur/shuka:v1.3".into(),
            },
            status: Some(InstanceStatus {
                phase: Phase::Running,
                ready: true,
                address: Some("127.0.0.1:40001".into()),
                restarts: 2,
                start_time: Some("2026-11-26T00:00:00Z".into()),
                message: None,
                last_exit_code: Some(1),
                reason: Some("Error".into()),
                image_digest: Some("127.0.0.1:5000/fn/hello@sha256:00".into()),
            }),
        };
        let json = to_json("Instance", &i);
        assert_eq!(json["apiVersion"], API_VERSION);
        let back: Instance = from_json(&json).expect("decodes");
        assert_eq!(back, i);
    }
}
