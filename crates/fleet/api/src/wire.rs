//! Wire types of the API that are not resources: Kubernetes `Status` errors, watch events,
//! the node agents' load reports and the stream of their revisions' Secret and ConfigMap
//! values.

use kantai_model::serving::resolve::ResolvedConfig;
use serde::{Deserialize, Serialize};

/// A Kubernetes `Status` object: how every API error is returned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always `Status`.
    pub kind: String,
    /// Always `v1`.
    pub api_version: String,
    /// `Failure` (or `Success` for deletes).
    pub status: String,
    /// Human-readable explanation.
    pub message: String,
    /// Machine-readable reason: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...
    pub reason: String,
    /// The object concerned and, for `Invalid`, every cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    /// The HTTP status code.
    pub code: u16,
}

/// `Status.details`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// Object name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Object group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Object kind (plural resource name, as Kubernetes does).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Every problem, for validation failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// One cause of a failure.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusCause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    #[serde(default)]
    pub reason: String,
    /// What is wrong.
    #[serde(default)]
    pub message: String,
    /// The field path.
    #[serde(default)]
    pub field: String,
}

impl Status {
    /// A failure.
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Status {
        Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            details: None,
            code,
        }
    }

    /// A success (the answer to a delete).
    pub fn success(message: impl Into<String>) -> Status {
        Status {
            status: "Success".into(),
            reason: String::new(),
            code: 200,
            ..Status::failure(200, "", message)
        }
    }

    /// With details naming the object.
    pub fn with_details(mut self, group: &str, kind: &str, name: &str) -> Status {
        let d = self.details.get_or_insert_with(StatusDetails::default);
        d.group = group.into();
        d.kind = kind.into();
        d.name = name.into();
        self
    }
}

/// A watch event, as Kubernetes streams them (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The object (a `Status` for `ERROR`).
    pub object: serde_json::Value,
}

/// Path of the load reports endpoint.
pub const REPORTS_PATH: &str = "/kantai/v1/reports";
/// Path of the fleet description (topology and serving settings) served to node agents.
pub const FLEET_PATH: &str = "/kantai/v1/fleet";

/// What a node agent tells the control plane every second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting node.
    pub node: String,
    /// Load per revision, counted where requests entered the fleet (so no request is counted
    /// twice), over the last period.
    #[serde(default)]
    pub revisions: Vec<RevisionLoad>,
    /// Round-trip times measured to other nodes.
    #[serde(default)]
    pub rtt: Vec<RttSample>,
    /// A request reached a revision without capacity: decide now, not at the next tick.
    #[serde(default)]
    pub poke: bool,
    /// The highest resourceVersion among the Routes this node's gateway has programmed: the
    /// control plane marks a route's ingress ready once every ready node has it.
    #[serde(default)]
    pub routes_version: u64,
    /// Instances this node started on its own (a cold start decided at the node, or while
    /// it could not reach the control plane) that no Placement counts yet: the control plane
    /// counts them in the revision's next placement (adopts them) instead of placing others.
    /// Every report carries all of them; absent from older agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<LocalStarts>,
}

/// Instances of one revision a node started on its own (the decision log keeps them as
/// the report named them).
pub use kantai_decisions::LocalStarts;

/// Load of one revision at one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RevisionLoad {
    /// Namespace.
    pub namespace: String,
    /// Revision.
    pub revision: String,
    /// Time-weighted average of in-flight requests (held ones included).
    pub concurrency: f64,
    /// Requests that arrived, per second.
    pub requests: f64,
    /// Requests held right now for lack of capacity.
    #[serde(default)]
    pub held: u32,
    /// Requests this node's instances of the revision finished in the period (whatever
    /// node they entered).
    #[serde(default)]
    pub served: u64,
    /// Their average serving time in milliseconds (queueing at the instance included), as
    /// Knative's queue-proxy measures `revision_request_latencies`.
    #[serde(default)]
    pub serving_ms: f64,
    /// Requests in this node's instances of the revision now.
    #[serde(default)]
    pub instance_in_flight: u32,
    /// Requests waiting for a slot of this node's instances of the revision now.
    #[serde(default)]
    pub instance_queued: u32,
}

/// The control plane's answer to a report: what the node's load balancers need from the
/// whole fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportReply {
    /// Per revision, the serving time measured on each node.
    #[serde(default)]
    pub serving: Vec<RevisionServing>,
}

/// The serving time of one revision's instances on each node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RevisionServing {
    /// Namespace.
    pub namespace: String,
    /// Revision.
    pub revision: String,
    /// Node name → average serving time in milliseconds.
    pub nodes: Vec<(String, f64)>,
}

/// One round-trip measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RttSample {
    /// The other node.
    pub peer: String,
    /// Round trip in milliseconds.
    pub rtt_ms: f64,
}

/// The fleet as node agents need it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetInfo {
    /// The topology (nodes, links, emulation), as the model serializes it.
    pub topology: serde_json::Value,
    /// Domain of external URLs.
    pub domain: String,
    /// The fleet config file as the control plane read it (empty: Knative's defaults), so
    /// clients check manifests against the fleet's own limits before sending anything.
    #[serde(default)]
    pub config: String,
    /// The token node agents present to each other's data ports
    /// ([`crate::auth::PEER_TOKEN_HEADER`]); only holders of the API token get it.
    #[serde(default, rename = "peerToken")]
    pub peer_token: String,
}

/// Path of a node's stream of the Secret and ConfigMap values its revisions need:
/// `/kantai/v1/nodes/{node}/configs` (see [`configs_path`]).
pub const CONFIGS_PATH: &str = "/kantai/v1/nodes/{node}/configs";

/// [`CONFIGS_PATH`] for one node.
pub fn configs_path(node: &str) -> String {
    CONFIGS_PATH.replace("{node}", node)
}

/// One line of a node's config stream ([`CONFIGS_PATH`]): newline-delimited JSON, first a
/// `SET` for every revision the node needs a config for, then `SYNCED`, then changes. Only
/// revisions that refer to Secrets or ConfigMaps and run (or are placed) on the node are
/// ever sent. Its `Debug` shows no value (see [`ResolvedConfig`]'s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Through a plain struct: an internally tagged enum would buffer the config, and serde's
// buffer cannot read `envValues`' numeric keys back from JSON's strings.
#[serde(try_from = "RawConfigEvent", into = "RawConfigEvent")]
pub enum ConfigEvent {
    /// The revision's resolved config, new or changed.
    Set {
        /// Namespace.
        namespace: String,
        /// Revision.
        revision: String,
        /// Changes whenever the config does (keyed per control plane: it reveals nothing of
        /// the values, and is only compared).
        hash: String,
        /// The values.
        config: ResolvedConfig,
    },
    /// The node no longer needs the revision's config: drop it.
    Remove {
        /// Namespace.
        namespace: String,
        /// Revision.
        revision: String,
    },
    /// Every config the node needs was sent: whatever it holds that was not (since it
    /// connected) is no longer its.
    Synced,
}

/// [`ConfigEvent`] as it is written: `{"type": "SET", "namespace": …, "revision": …,
/// "hash": …, "config": {…}}`, `{"type": "REMOVE", "namespace": …, "revision": …}`,
/// `{"type": "SYNCED"}`.
#[derive(Serialize, Deserialize)]
struct RawConfigEvent {
    #[serde(rename = "type")]
    type_: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    revision: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<ResolvedConfig>,
}

impl From<ConfigEvent> for RawConfigEvent {
    fn from(e: ConfigEvent) -> Self {
        let raw = |type_: &str| RawConfigEvent {
            type_: type_.to_owned(),
            namespace: String::new(),
            revision: String::new(),
            hash: String::new(),
            config: None,
        };
        match e {
            ConfigEvent::Set {
                namespace,
                revision,
                hash,
                config,
            } => RawConfigEvent {
                namespace,
                revision,
                hash,
                config: Some(config),
                ..raw("SET")
            },
            ConfigEvent::Remove {
                namespace,
                revision,
            } => RawConfigEvent {
                namespace,
                revision,
                ..raw("REMOVE")
            },
            ConfigEvent::Synced => raw("SYNCED"),
        }
    }
}

impl TryFrom<RawConfigEvent> for ConfigEvent {
    type Error = String;

    fn try_from(r: RawConfigEvent) -> Result<Self, String> {
        match (r.type_.as_str(), r.config) {
            ("SET", Some(config)) => Ok(ConfigEvent::Set {
                namespace: r.namespace,
                revision: r.revision,
                hash: r.hash,
                config,
            }),
            ("SET", None) => Err("a SET config event without its config".to_owned()),
            ("REMOVE", _) => Ok(ConfigEvent::Remove {
                namespace: r.namespace,
                revision: r.revision,
            }),
            ("SYNCED", _) => Ok(ConfigEvent::Synced),
            (other, _) => Err(format!(
                "unknown config event type {other:?} (SET, REMOVE or SYNCED)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_events_round_trip_as_flat_lines() {
        let config = ResolvedConfig {
            env_values: [(2, "v".to_owned())].into(),
            ..ResolvedConfig::default()
        };
        let events = [
            ConfigEvent::Set {
                namespace: "default".into(),
                revision: "app-00001".into(),
                hash: "00ff".into(),
                config,
            },
            ConfigEvent::Remove {
                namespace: "default".into(),
                revision: "app-00001".into(),
            },
            ConfigEvent::Synced,
        ];
        let lines: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(e).expect("json"))
            .collect();
        assert_eq!(
            lines,
            [
                r#"{"type":"SET","namespace":"default","revision":"app-00001","hash":"00ff","config":{"envValues":{"2":"v"}}}"#,
                r#"{"type":"REMOVE","namespace":"default","revision":"app-00001"}"#,
                r#"{"type":"SYNCED"}"#,
            ]
        );
        for (line, event) in lines.iter().zip(events) {
            let back: ConfigEvent = serde_json::from_str(line).expect("read back");
            assert_eq!(back, event);
        }
        assert!(serde_json::from_str::<ConfigEvent>(r#"{"type":"SET"}"#).is_err());
    }
}
