//! The revision template: `spec.template` of a Service or Configuration, and `spec` of a
//! Revision (Knative's `RevisionSpec`, an inline subset of a Kubernetes `PodSpec`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decode::{Decode, Fields, wrong_type};
use crate::error::{FieldError, FieldPath, Findings};
use crate::meta::TemplateMeta;
use crate::node::{Node, Value};
use crate::units::Quantity;

use super::env::{EnvFromSource, EnvVar};
use super::volumes::{Volume, VolumeMount};

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
        f.close(out);
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
    /// Pod-level security settings; each container's own settings win (see
    /// [`RevisionSpec::security_for`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// The volumes the containers mount.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// PodSpec fields Knative accepts that kantai keeps but does not act on.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// PodSpec fields accepted by Knative that have no effect in either of kantai's runtimes.
const POD_SPEC_KEPT: &[&str] = &[
    "serviceAccountName",
    "imagePullSecrets",
    "automountServiceAccountToken",
    "affinity",
    "nodeSelector",
    "tolerations",
    "topologySpreadConstraints",
    "runtimeClassName",
    "priorityClassName",
    "schedulerName",
    "hostAliases",
    "dnsPolicy",
    "dnsConfig",
    "shareProcessNamespace",
];

/// PodSpec fields kept for validation to judge (and refuse, saying why), without the
/// "ignored" warning: they are never ignored.
const POD_SPEC_JUDGED: &[&str] = &["initContainers"];

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

    /// Whether the instance speaks HTTP/2 cleartext: Knative's rule, `ports[0].name` is
    /// `h2c` (otherwise HTTP/1.1).
    pub fn h2c(&self) -> bool {
        self.container()
            .and_then(|c| c.ports.first())
            .is_some_and(|p| p.name.as_deref() == Some(H2C_PORT_NAME))
    }

    /// The security settings `c` runs with: the pod's `runAsUser`, `runAsGroup`,
    /// `runAsNonRoot` and `seccompProfile` under the container's own, field by field, as
    /// Kubernetes merges them (the container's value wins where it sets one).
    pub fn security_for(&self, c: &Container) -> SecurityContext {
        let mut sc = c.security_context.clone().unwrap_or_default();
        if let Some(pod) = &self.security_context {
            sc.run_as_user = sc.run_as_user.or(pod.run_as_user);
            sc.run_as_group = sc.run_as_group.or(pod.run_as_group);
            sc.run_as_non_root = sc.run_as_non_root.or(pod.run_as_non_root);
            if let Some(profile) = pod.extra.get("seccompProfile") {
                sc.extra
                    .entry("seccompProfile".to_owned())
                    .or_insert_with(|| profile.clone());
            }
        }
        sc
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
            security_context: f.opt("securityContext", out),
            volumes: f.or_default("volumes", out),
            extra: {
                let mut kept = f.keep(
                    POD_SPEC_KEPT,
                    Some("accepted for Knative compatibility, but kantai's runtimes ignore it"),
                    out,
                );
                kept.extend(f.keep(POD_SPEC_JUDGED, None, out));
                kept
            },
        };
        f.close(out);
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
    /// Image reference: pulled and run as an OCI container, or mapped to a program by the fleet
    /// config (see the runtime).
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
    /// Whole Secrets and ConfigMaps as variables, before `env` (which wins).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// The revision's volumes mounted into this container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// At most one port: the one the instance serves on (`$PORT`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Resource requests and limits.
    pub resources: Resources,
    /// Readiness probe (defaulted to a TCP probe on the serving port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Liveness probe: failing it restarts the container. Not defaulted (Kubernetes applies
    /// its probe defaults to the zero and absent fields when it runs the probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Startup probe: liveness checks wait until it has passed once. Not defaulted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// When the node fetches the image; absent means [`PullPolicy::effective`]'s default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Container-level security settings (merged with the pod's by
    /// [`RevisionSpec::security_for`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Container fields Knative accepts that kantai keeps but does not act on.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

const CONTAINER_KEPT: &[&str] = &["terminationMessagePath", "terminationMessagePolicy"];

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
            env_from: f.or_default("envFrom", out),
            volume_mounts: f.or_default("volumeMounts", out),
            ports: f.or_default("ports", out),
            resources: f.opt("resources", out).unwrap_or_default(),
            readiness_probe: f.opt("readinessProbe", out),
            liveness_probe: f.opt("livenessProbe", out),
            startup_probe: f.opt("startupProbe", out),
            image_pull_policy: f.opt("imagePullPolicy", out),
            security_context: f.opt("securityContext", out),
            extra: f.keep(
                CONTAINER_KEPT,
                Some("accepted for Knative compatibility, but kantai's runtimes ignore it"),
                out,
            ),
        };
        f.close(out);
        Some(c)
    }
}

/// Kubernetes' `imagePullPolicy`: when a node asks the registry for the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PullPolicy {
    /// Ask the registry on every start; download only the layers that are missing.
    Always,
    /// Use the stored image when there is one; ask the registry otherwise.
    IfNotPresent,
    /// Use only what is stored; never ask the registry.
    Never,
}

impl PullPolicy {
    /// The policy as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }

    /// The policy a container runs with: the declared one, else Kubernetes' default, which
    /// is `Always` for a tag of `latest` or for a reference with neither tag nor digest (an
    /// implied `latest`, which may move), and `IfNotPresent` otherwise.
    pub fn effective(image: &str, declared: Option<PullPolicy>) -> PullPolicy {
        if let Some(p) = declared {
            return p;
        }
        let parts = ImageParts::of(image);
        match (parts.tag, parts.digest) {
            (Some("latest"), _) | (None, None) => PullPolicy::Always,
            _ => PullPolicy::IfNotPresent,
        }
    }
}

impl Decode for PullPolicy {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let Value::Str(s) = &node.value else {
            wrong_type(node, path, "string", out);
            return None;
        };
        match s.as_str() {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => {
                out.push(FieldError {
                    pos: node.pos,
                    ..FieldError::invalid(
                        path.clone(),
                        s,
                        "must be \"Always\", \"IfNotPresent\" or \"Never\"",
                    )
                });
                None
            }
        }
    }
}

/// An image reference split as Docker reads it: `[host[:port]/]path[:tag][@digest]`.
pub(crate) struct ImageParts<'a> {
    /// The registry host (with its port); `docker.io` when the reference names none.
    pub registry: &'a str,
    /// The tag, when one is written.
    pub tag: Option<&'a str>,
    /// The digest (`sha256:...`), when one is written.
    pub digest: Option<&'a str>,
}

impl<'a> ImageParts<'a> {
    /// Splits `image`; never fails, since a malformed reference is the registry's to reject.
    pub fn of(image: &'a str) -> ImageParts<'a> {
        let image = image.trim();
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest).filter(|d| !d.is_empty())),
            None => (image, None),
        };
        // A colon before the last slash belongs to the registry's port, not to a tag.
        let last = name.rfind('/').map_or(0, |i| i + 1);
        let tag = name[last..]
            .split_once(':')
            .map(|(_, t)| t)
            .filter(|t| !t.is_empty());
        // Docker's normalisation: the first component names a registry only when it looks
        // like a host (a dot, a port, `localhost`, or upper case, which repositories cannot
        // have); `app` and `library/app` live on Docker Hub.
        let registry = match name.split_once('/') {
            Some((first, _))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                first
            }
            _ => "docker.io",
        };
        ImageParts {
            registry,
            tag,
            digest,
        }
    }
}

/// The Linux capabilities, as Kubernetes names them (without the `CAP_` prefix), in the
/// kernel's order.
pub const LINUX_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

const NOT_APPLIED: &str = "accepted for Knative compatibility, but kantai does not apply it";

/// Reports fields that Kubernetes knows but Knative's webhook refuses, in Knative's words,
/// so they read as refused rather than as typos.
fn refuse(f: &mut Fields<'_>, names: &[&'static str], out: &mut Findings) {
    for name in names {
        if let Some(node) = f.refused(name) {
            out.push(FieldError {
                pos: node.pos,
                ..FieldError::error(f.path().field(*name), "must not set the field(s)")
            });
        }
    }
}

/// A container's `securityContext`, the fields Knative admits.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    /// UID the process runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// Primary GID the process runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// Refuse to start the container when it would run as UID 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// Mount the image's root filesystem read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// Whether the process may gain privileges (`no_new_privs` when false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Capabilities added to and dropped from the runtime's default set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Fields Knative admits that kantai keeps but does not apply (`seccompProfile`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

const SECURITY_CONTEXT_KEPT: &[&str] = &["seccompProfile"];
/// Kubernetes' container security fields outside Knative's `SecurityContextMask`.
const SECURITY_CONTEXT_REFUSED: &[&str] = &[
    "privileged",
    "seLinuxOptions",
    "procMount",
    "windowsOptions",
    "appArmorProfile",
];

impl Decode for SecurityContext {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = SecurityContext {
            run_as_user: f.opt("runAsUser", out),
            run_as_group: f.opt("runAsGroup", out),
            run_as_non_root: f.opt("runAsNonRoot", out),
            read_only_root_filesystem: f.opt("readOnlyRootFilesystem", out),
            allow_privilege_escalation: f.opt("allowPrivilegeEscalation", out),
            capabilities: f.opt("capabilities", out),
            extra: f.keep(SECURITY_CONTEXT_KEPT, Some(NOT_APPLIED), out),
        };
        refuse(&mut f, SECURITY_CONTEXT_REFUSED, out);
        f.close(out);
        Some(s)
    }
}

/// `securityContext.capabilities`: names from [`LINUX_CAPABILITIES`], or `ALL`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Capabilities {
    /// Capabilities granted on top of the runtime's default set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Capabilities removed from the default set (`ALL` removes every one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

impl Decode for Capabilities {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let c = Capabilities {
            add: f.or_default("add", out),
            drop: f.or_default("drop", out),
        };
        f.close(out);
        Some(c)
    }
}

/// The pod-level `securityContext` of a revision: defaults for every container.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    /// UID of every container that sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// GID of every container that sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// `runAsNonRoot` of every container that sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// Fields Knative admits that kantai keeps but does not apply (`fsGroup`,
    /// `supplementalGroups`, `seccompProfile`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

const POD_SECURITY_CONTEXT_KEPT: &[&str] = &["fsGroup", "supplementalGroups", "seccompProfile"];
/// Kubernetes' pod security fields outside Knative's `PodSecurityContextMask`.
const POD_SECURITY_CONTEXT_REFUSED: &[&str] = &[
    "seLinuxOptions",
    "windowsOptions",
    "sysctls",
    "fsGroupChangePolicy",
    "supplementalGroupsPolicy",
    "appArmorProfile",
    "seLinuxChangePolicy",
];

impl Decode for PodSecurityContext {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let s = PodSecurityContext {
            run_as_user: f.opt("runAsUser", out),
            run_as_group: f.opt("runAsGroup", out),
            run_as_non_root: f.opt("runAsNonRoot", out),
            extra: f.keep(POD_SECURITY_CONTEXT_KEPT, Some(NOT_APPLIED), out),
        };
        refuse(&mut f, POD_SECURITY_CONTEXT_REFUSED, out);
        f.close(out);
        Some(s)
    }
}

/// The port name of an instance that speaks HTTP/2 cleartext (`http1`, or none, is HTTP/1.1).
pub const H2C_PORT_NAME: &str = "h2c";
/// The port name of an instance that speaks HTTP/1.1.
pub const HTTP1_PORT_NAME: &str = "http1";

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
        f.close(out);
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
        f.close(out);
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

/// A health check: the readiness, liveness or startup probe of a container.
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
    /// Check period; 0 in a readiness probe means Knative's aggressive probing (every 50 ms
    /// until ready), in a liveness or startup probe Kubernetes' default of 10 s.
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
        f.close(out);
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
        f.close(out);
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
        f.close(out);
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
        f.close(out);
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
        f.close(out);
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
        f.close(out);
        Some(a)
    }
}
