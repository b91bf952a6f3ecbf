//! The revision template: `spec.template` of a Service or Configuration, and `spec` of a
//! Revision (Knative's `RevisionSpec`, an inline subset of a Kubernetes `PodSpec`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decode::{Decode, Fields, wrong_type};
use crate::error::{FieldPath, Findings};
use crate::meta::TemplateMeta;
use crate::node::{Node, Value};
use crate::units::Quantity;

/// `spec.template`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RevisionTemplate {
    /// Template metadata: revision name, labels, annotations.
    pub metadata: TemplateMeta,
    /// The revision spec.
    pub spec: RevisionSpec,
}

impl Decode for RevisionTemplate {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let t = RevisionTemplate {
            metadata: f.opt("metadata", out).unwrap_or_default(),
            spec: f.req("spec", out).unwrap_or_default(),
        };
        f.finish(&["metadata", "spec"], out);
        Some(t)
    }
}

/// Knative's `RevisionSpec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSpec {
    /// Maximum in-flight requests per instance; 0 means unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i64>,
    /// The containers; kantai runs exactly one per revision.
    pub containers: Vec<Container>,
    /// `enableServiceLinks` (defaulted to false, as Knative does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_service_links: Option<bool>,
    /// Hard limit on a request's duration, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Limit on the time until the first response byte, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_start_timeout_seconds: Option<i64>,
    /// Limit on the time between response bytes, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i64>,
    /// PodSpec fields Knative accepts that kantai keeps but does not act on.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// PodSpec fields accepted by Knative that have no effect in kantai's process runtime.
const POD_SPEC_KEPT: &[&str] = &[
    "serviceAccountName",
    "volumes",
    "imagePullSecrets",
    "automountServiceAccountToken",
    "affinity",
    "nodeSelector",
    "tolerations",
    "topologySpreadConstraints",
    "securityContext",
    "runtimeClassName",
    "priorityClassName",
    "schedulerName",
    "hostAliases",
    "dnsPolicy",
    "dnsConfig",
    "shareProcessNamespace",
    "initContainers",
];

const REVISION_SPEC_FIELDS: &[&str] = &[
    "containerConcurrency",
    "containers",
    "enableServiceLinks",
    "timeoutSeconds",
    "responseStartTimeoutSeconds",
    "idleTimeoutSeconds",
];

impl RevisionSpec {
    /// The serving container (kantai runs one container per revision).
    pub fn container(&self) -> Option<&Container> {
        self.containers.first()
    }

    /// The port the instance listens on: `ports[0].containerPort`, else 8080 (Knative's default
    /// `$PORT`).
    pub fn port(&self) -> u16 {
        self.container()
            .and_then(|c| c.ports.first())
            .and_then(|p| u16::try_from(p.container_port).ok())
            .filter(|p| *p > 0)
            .unwrap_or(8080)
    }
}

impl Decode for RevisionSpec {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = RevisionSpec {
            container_concurrency: f.opt("containerConcurrency", out),
            containers: f.req("containers", out).unwrap_or_default(),
            enable_service_links: f.opt("enableServiceLinks", out),
            timeout_seconds: f.opt("timeoutSeconds", out),
            response_start_timeout_seconds: f.opt("responseStartTimeoutSeconds", out),
            idle_timeout_seconds: f.opt("idleTimeoutSeconds", out),
            extra: f.keep(
                POD_SPEC_KEPT,
                Some("accepted for Knative compatibility, but kantai's process runtime ignores it"),
                out,
            ),
        };
        let known: Vec<&str> = REVISION_SPEC_FIELDS
            .iter()
            .chain(POD_SPEC_KEPT)
            .copied()
            .collect();
        f.finish(&known, out);
        Some(s)
    }
}

/// One container of the revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Container name (defaulted to `user-container`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image reference; kantai maps it to a process (see the runtime).
    pub image: String,
    /// Entrypoint override.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment variables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// At most one port: the one the instance serves on (`$PORT`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Resource requests and limits.
    pub resources: Resources,
    /// Readiness probe (defaulted to a TCP probe on the serving port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Container fields Knative accepts that kantai keeps but does not act on.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

const CONTAINER_KEPT: &[&str] = &[
    "livenessProbe",
    "startupProbe",
    "securityContext",
    "volumeMounts",
    "imagePullPolicy",
    "envFrom",
    "terminationMessagePath",
    "terminationMessagePolicy",
];

const CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "env",
    "ports",
    "resources",
    "readinessProbe",
];

impl Decode for Container {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let c = Container {
            name: f.opt("name", out),
            image: f.req("image", out).unwrap_or_default(),
            command: f.or_default("command", out),
            args: f.or_default("args", out),
            working_dir: f.opt("workingDir", out),
            env: f.or_default("env", out),
            ports: f.or_default("ports", out),
            resources: f.opt("resources", out).unwrap_or_default(),
            readiness_probe: f.opt("readinessProbe", out),
            extra: f.keep(
                CONTAINER_KEPT,
                Some("accepted for Knative compatibility, but kantai's process runtime ignores it"),
                out,
            ),
        };
        let known: Vec<&str> = CONTAINER_FIELDS
            .iter()
            .chain(CONTAINER_KEPT)
            .copied()
            .collect();
        f.finish(&known, out);
        Some(c)
    }
}

/// An environment variable.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Kubernetes reference (secret, config map, field); kept but not resolved by kantai.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<serde_json::Value>,
}

impl Decode for EnvVar {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let e = EnvVar {
            name: f.req("name", out).unwrap_or_default(),
            value: f.opt("value", out),
            value_from: f.opt("valueFrom", out),
        };
        f.finish(&["name", "value", "valueFrom"], out);
        Some(e)
    }
}

/// A container port.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// `http1` or `h2c` (or empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port number the instance listens on.
    pub container_port: i64,
    /// Only `TCP`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl Decode for ContainerPort {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let p = ContainerPort {
            name: f.opt("name", out),
            container_port: f.req("containerPort", out).unwrap_or_default(),
            protocol: f.opt("protocol", out),
        };
        f.finish(&["name", "containerPort", "protocol"], out);
        Some(p)
    }
}

/// Resource requests and limits, by resource name (`cpu`, `memory`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Resources {
    /// Upper bounds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    /// Reservations used for placement.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

impl Resources {
    /// The CPU reservation in cores: the request, else the limit.
    pub fn cpu(&self) -> Option<f64> {
        self.requests
            .get("cpu")
            .or_else(|| self.limits.get("cpu"))
            .map(Quantity::value)
    }

    /// The memory reservation in bytes: the request, else the limit.
    pub fn memory(&self) -> Option<f64> {
        self.requests
            .get("memory")
            .or_else(|| self.limits.get("memory"))
            .map(Quantity::value)
    }
}

impl Decode for Resources {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let r = Resources {
            limits: f.or_default("limits", out),
            requests: f.or_default("requests", out),
        };
        f.finish(&["limits", "requests"], out);
        Some(r)
    }
}

/// A Kubernetes `IntOrString` (probe ports may be numbers or port names).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i64),
    /// A name.
    Str(String),
}

impl Decode for IntOrString {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Int(i) => Some(IntOrString::Int(*i)),
            Value::Str(s) => Some(IntOrString::Str(s.clone())),
            _ => {
                wrong_type(node, path, "integer or string", out);
                None
            }
        }
    }
}

/// A readiness probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// HTTP GET check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// TCP connect check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// Command check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// gRPC health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    /// Delay before the first check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i64>,
    /// Per-check timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Check period; 0 means Knative's aggressive probing (every 50 ms until ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
    /// Consecutive successes needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i64>,
    /// Consecutive failures tolerated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i64>,
}

impl Probe {
    /// How many handlers are set (exactly one is valid).
    pub fn handler_count(&self) -> usize {
        usize::from(self.http_get.is_some())
            + usize::from(self.tcp_socket.is_some())
            + usize::from(self.exec.is_some())
            + usize::from(self.grpc.is_some())
    }
}

impl Decode for Probe {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let p = Probe {
            http_get: f.opt("httpGet", out),
            tcp_socket: f.opt("tcpSocket", out),
            exec: f.opt("exec", out),
            grpc: f.opt("grpc", out),
            initial_delay_seconds: f.opt("initialDelaySeconds", out),
            timeout_seconds: f.opt("timeoutSeconds", out),
            period_seconds: f.opt("periodSeconds", out),
            success_threshold: f.opt("successThreshold", out),
            failure_threshold: f.opt("failureThreshold", out),
        };
        f.finish(
            &[
                "httpGet",
                "tcpSocket",
                "exec",
                "grpc",
                "initialDelaySeconds",
                "timeoutSeconds",
                "periodSeconds",
                "successThreshold",
                "failureThreshold",
            ],
            out,
        );
        Some(p)
    }
}

/// HTTP GET probe handler.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    /// Request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port (defaults to the serving port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// Host header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `HTTP` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Extra request headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

impl Decode for HttpGetAction {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let a = HttpGetAction {
            path: f.opt("path", out),
            port: f.opt("port", out),
            host: f.opt("host", out),
            scheme: f.opt("scheme", out),
            http_headers: f.or_default("httpHeaders", out),
        };
        f.finish(&["path", "port", "host", "scheme", "httpHeaders"], out);
        Some(a)
    }
}

/// A probe request header.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

impl Decode for HttpHeader {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let h = HttpHeader {
            name: f.req("name", out).unwrap_or_default(),
            value: f.req("value", out).unwrap_or_default(),
        };
        f.finish(&["name", "value"], out);
        Some(h)
    }
}

/// TCP probe handler.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TcpSocketAction {
    /// Port; absent or 0 means the serving port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// Host to connect to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Decode for TcpSocketAction {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let a = TcpSocketAction {
            port: f.opt("port", out),
            host: f.opt("host", out),
        };
        f.finish(&["port", "host"], out);
        Some(a)
    }
}

/// Command probe handler.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ExecAction {
    /// The command and its arguments (never run through a shell).
    pub command: Vec<String>,
}

impl Decode for ExecAction {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let a = ExecAction {
            command: f.req("command", out).unwrap_or_default(),
        };
        f.finish(&["command"], out);
        Some(a)
    }
}

/// gRPC probe handler.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GrpcAction {
    /// Port.
    pub port: i64,
    /// Health service name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Decode for GrpcAction {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let a = GrpcAction {
            port: f.req("port", out).unwrap_or_default(),
            service: f.opt("service", out),
        };
        f.finish(&["port", "service"], out);
        Some(a)
    }
}
