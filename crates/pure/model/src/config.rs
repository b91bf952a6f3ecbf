//! The fleet config file: Knative's `config-autoscaler`, `config-defaults`, `config-deployment`,
//! `config-domain` and `config-features` as sections of one YAML file, with Knative's key
//! spellings and defaults.
//!
//! ```yaml
//! autoscaler:
//!   stable-window: 60s
//!   container-concurrency-target-default: 100
//! defaults:
//!   revision-timeout-seconds: 300
//! deployment:
//!   progress-deadline: 600s
//!   registries-skipping-tag-resolving: kind.local,ko.local,dev.local
//! domain: svc.cluster.local
//! features:
//!   kubernetes.podspec-fieldref: enabled
//! ```
//!
//! Values may be written as YAML strings (as in a ConfigMap) or as plain numbers and booleans.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::decode::Fields;
use crate::error::{FieldError, FieldPath, Findings};
use crate::node::{Node, ParseLimits, Value, parse_documents};
use crate::units::parse_go_duration;

/// Knative's autoscaler class for the KPA, the only class kantai implements.
pub const KPA_CLASS: &str = "kpa.autoscaling.knative.dev";
/// Knative's HPA class (CPU/memory autoscaling through Kubernetes), not implemented by kantai.
pub const HPA_CLASS: &str = "hpa.autoscaling.knative.dev";

/// Lower bound of stable windows (`autoscaling.WindowMin`).
pub const WINDOW_MIN: Duration = Duration::from_secs(6);
/// Upper bound of stable windows and delays (`autoscaling.WindowMax`).
pub const WINDOW_MAX: Duration = Duration::from_secs(3600);
/// Smallest target value (`autoscaling.TargetMin`).
pub const TARGET_MIN: f64 = 0.01;
/// Knative's `revision-timeout-seconds` default (`config-defaults`), also the timeout of a
/// revision that carries none.
pub const REVISION_TIMEOUT_SECONDS: i64 = 300;
/// The `dataplane.hold-limit` default: requests a gateway holds per revision while no
/// instance has room, as Knative's activator breaker (`breakerQueueDepth`, 10,000).
pub const DEFAULT_HOLD_LIMIT: u32 = 10_000;

/// `config-autoscaler`: fleet-wide autoscaling defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoscalerConfig {
    /// `pod-autoscaler-class`.
    pub pod_autoscaler_class: String,
    /// `enable-scale-to-zero`.
    pub enable_scale_to_zero: bool,
    /// `allow-zero-initial-scale`.
    pub allow_zero_initial_scale: bool,
    /// `max-scale-up-rate`: at most this factor up per tick.
    pub max_scale_up_rate: f64,
    /// `max-scale-down-rate`: at most this divisor down per tick.
    pub max_scale_down_rate: f64,
    /// `container-concurrency-target-percentage`, stored as a fraction in (0, 1].
    pub container_concurrency_target_fraction: f64,
    /// `container-concurrency-target-default`.
    pub container_concurrency_target_default: f64,
    /// Utilisation applied to the RPS target; fixed at 0.7 in Knative (annotation overrides it).
    pub target_utilization: f64,
    /// `requests-per-second-target-default`.
    pub rps_target_default: f64,
    /// `target-burst-capacity`; −1 keeps the activator in the path.
    pub target_burst_capacity: f64,
    /// `panic-window-percentage`.
    pub panic_window_percentage: f64,
    /// `panic-threshold-percentage`.
    pub panic_threshold_percentage: f64,
    /// `activator-capacity`.
    pub activator_capacity: f64,
    /// `initial-scale`.
    pub initial_scale: i32,
    /// `min-scale`.
    pub min_scale: i32,
    /// `max-scale` (0 = unlimited).
    pub max_scale: i32,
    /// `max-scale-limit` (0 = none).
    pub max_scale_limit: i32,
    /// `stable-window`.
    pub stable_window: Duration,
    /// `scale-down-delay`.
    pub scale_down_delay: Duration,
    /// `scale-to-zero-grace-period`.
    pub scale_to_zero_grace_period: Duration,
    /// `scale-to-zero-pod-retention-period`.
    pub scale_to_zero_pod_retention_period: Duration,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        AutoscalerConfig {
            pod_autoscaler_class: KPA_CLASS.to_owned(),
            enable_scale_to_zero: true,
            allow_zero_initial_scale: false,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            container_concurrency_target_fraction: 0.7,
            container_concurrency_target_default: 100.0,
            target_utilization: 0.7,
            rps_target_default: 200.0,
            target_burst_capacity: 211.0,
            panic_window_percentage: 10.0,
            panic_threshold_percentage: 200.0,
            activator_capacity: 100.0,
            initial_scale: 1,
            min_scale: 0,
            max_scale: 0,
            max_scale_limit: 0,
            stable_window: Duration::from_secs(60),
            scale_down_delay: Duration::ZERO,
            scale_to_zero_grace_period: Duration::from_secs(30),
            scale_to_zero_pod_retention_period: Duration::ZERO,
        }
    }
}

/// `config-defaults`: defaults and limits for revision specs.
#[derive(Clone, Debug, PartialEq)]
pub struct DefaultsConfig {
    /// `revision-timeout-seconds`.
    pub revision_timeout_seconds: i64,
    /// `max-revision-timeout-seconds`.
    pub max_revision_timeout_seconds: i64,
    /// `revision-response-start-timeout-seconds` (0 = same as the timeout).
    pub revision_response_start_timeout_seconds: i64,
    /// `revision-idle-timeout-seconds` (0 = off).
    pub revision_idle_timeout_seconds: i64,
    /// `container-concurrency`.
    pub container_concurrency: i64,
    /// `container-concurrency-max-limit`.
    pub container_concurrency_max_limit: i64,
    /// `allow-container-concurrency-zero`.
    pub allow_container_concurrency_zero: bool,
    /// `enable-service-links`.
    pub enable_service_links: bool,
    /// `container-name-template`.
    pub container_name: String,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        DefaultsConfig {
            revision_timeout_seconds: REVISION_TIMEOUT_SECONDS,
            max_revision_timeout_seconds: 600,
            revision_response_start_timeout_seconds: 0,
            revision_idle_timeout_seconds: 0,
            container_concurrency: 0,
            container_concurrency_max_limit: 1000,
            allow_container_concurrency_zero: true,
            enable_service_links: false,
            container_name: "user-container".to_owned(),
        }
    }
}

/// The serving settings the model needs: defaults, limits, domain.
#[derive(Clone, Debug, PartialEq)]
pub struct ServingConfig {
    /// `config-autoscaler`.
    pub autoscaler: AutoscalerConfig,
    /// `config-defaults`.
    pub defaults: DefaultsConfig,
    /// `config-deployment` `progress-deadline`: how long a revision may take to become ready.
    pub progress_deadline: Duration,
    /// `config-deployment` `registries-skipping-tag-resolving`: registry hosts (with their
    /// port, if any) whose tags are used as they are, never resolved to a digest.
    pub registries_skipping_tag_resolving: BTreeSet<String>,
    /// `config-deployment` `digest-resolution-timeout`: how long resolving one tag may take.
    pub digest_resolution_timeout: Duration,
    /// `config-domain`: the domain of external URLs.
    pub domain: String,
    /// kantai's `policies`: the fleet-wide default policy of each kind.
    pub policies: PoliciesConfig,
    /// `config-features`: which optional PodSpec fields the validating webhook lets through.
    pub features: FeaturesConfig,
    /// kantai's `dataplane`: the gateways' limits (read by [`ServingConfig::decode_fleet`]).
    pub dataplane: DataplaneConfig,
    /// kantai's `plugins`: policies loaded from WebAssembly components, by name.
    pub plugins: Vec<PluginConfig>,
}

/// One entry of the `plugins` section: a policy of `kind` loaded from the WebAssembly
/// component (or core module) in `module` and registered as `name`, so that `policies` and
/// revisions' `kantai.dev/*` annotations name it as they name a built-in.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginConfig {
    /// `name`: the policy's name (not a built-in's).
    pub name: String,
    /// `kind`: `placement`, `load-balancer`, `queue` or `keep-alive`.
    pub kind: kantai_policy::registry::Kind,
    /// `module`: the file, relative to the config file's directory.
    pub module: String,
    /// `memory`: the most linear memory one instance may have, in bytes (a quantity such
    /// as `64Mi`); `None`: the plug-in host's default.
    pub memory: Option<u64>,
}

impl PluginConfig {
    fn decode_list(node: &Node, path: &FieldPath, out: &mut Findings) -> Vec<PluginConfig> {
        use kantai_policy::registry::{KINDS, Kind};
        let Value::Seq(items) = &node.value else {
            out.push(FieldError::error(
                path.clone(),
                "must be a list of plug-ins (name, kind, module)",
            ));
            return Vec::new();
        };
        let mut list: Vec<PluginConfig> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = path.index(i);
            let Some(mut f) = Fields::open(item, &path, out) else {
                continue;
            };
            let name = f.req::<String>("name", out);
            let kind = f.req::<String>("kind", out);
            let module = f.req::<String>("module", out);
            let memory = f.opt::<crate::units::Quantity>("memory", out);
            f.close(out);
            let kind = match kind.as_deref().map(|k| (k, Kind::from_key(k))) {
                Some((_, Some(k))) => Some(k),
                Some((k, None)) => {
                    let known: Vec<&str> = KINDS.iter().map(|k| k.key()).collect();
                    out.push(FieldError::invalid(
                        path.field("kind"),
                        k,
                        &format!("must be one of {}", known.join(", ")),
                    ));
                    None
                }
                None => None,
            };
            let memory = match memory.map(|q| q.value()) {
                Some(b) if b >= 65_536.0 && b.is_finite() => Some(b as u64),
                Some(_) => {
                    out.push(FieldError::error(
                        path.field("memory"),
                        "must be at least 64Ki (one WebAssembly page)",
                    ));
                    None
                }
                None => None,
            };
            let (Some(name), Some(kind), Some(module)) = (name, kind, module) else {
                continue;
            };
            if let Err(e) = kantai_policy::registry::check_plug_in_name(kind, &name) {
                out.push(FieldError::invalid(
                    path.field("name"),
                    &name,
                    &e.to_string(),
                ));
            } else if list.iter().any(|p| p.kind == kind && p.name == name) {
                out.push(FieldError::invalid(
                    path.field("name"),
                    &name,
                    &format!("a {} of that name comes earlier in the list", kind.noun()),
                ));
            } else {
                list.push(PluginConfig {
                    name,
                    kind,
                    module,
                    memory,
                });
            }
        }
        list
    }
}

/// kantai's `dataplane` section of the fleet config. The hold limit is both drivers' (the
/// fleet's gateways and the simulator's), so its default is here; the other keys are the
/// fleet data plane's alone, and `None` leaves its default.
#[derive(Clone, Debug, PartialEq)]
pub struct DataplaneConfig {
    /// `hold-limit`: requests a gateway holds per revision while no instance has room.
    pub hold_limit: u32,
    /// `max-request-body-bytes`.
    pub max_request_body_bytes: Option<u64>,
    /// `header-read-timeout`.
    pub header_read_timeout: Option<Duration>,
    /// `serving-headers`.
    pub serving_headers: Option<bool>,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            hold_limit: DEFAULT_HOLD_LIMIT,
            max_request_body_bytes: None,
            header_read_timeout: None,
            serving_headers: None,
        }
    }
}

impl DataplaneConfig {
    /// Parses the `dataplane` section.
    pub fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<DataplaneConfig> {
        let mut f = Fields::open(node, path, out)?;
        let mut c = DataplaneConfig::default();
        if let Some(b) = f.opt::<i64>("max-request-body-bytes", out) {
            match u64::try_from(b) {
                Ok(b) if b > 0 => c.max_request_body_bytes = Some(b),
                _ => out.push(FieldError::error(
                    path.field("max-request-body-bytes"),
                    "must be positive",
                )),
            }
        }
        if let Some(t) = f.opt::<String>("header-read-timeout", out) {
            match parse_go_duration(&t) {
                Ok(n) if n > 0 => c.header_read_timeout = Some(Duration::from_nanos(n as u64)),
                _ => out.push(FieldError::invalid(
                    path.field("header-read-timeout"),
                    &t,
                    "must be a positive duration such as 10s",
                )),
            }
        }
        if let Some(h) = f.opt::<i64>("hold-limit", out) {
            match u32::try_from(h) {
                Ok(h) if h > 0 => c.hold_limit = h,
                _ => out.push(FieldError::error(
                    path.field("hold-limit"),
                    "must be positive",
                )),
            }
        }
        c.serving_headers = f.opt::<bool>("serving-headers", out);
        f.close(out);
        Some(c)
    }
}

impl Default for ServingConfig {
    fn default() -> Self {
        ServingConfig {
            autoscaler: AutoscalerConfig::default(),
            defaults: DefaultsConfig::default(),
            progress_deadline: Duration::from_secs(600),
            registries_skipping_tag_resolving: DEFAULT_REGISTRIES_SKIPPING_TAG_RESOLVING
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
            digest_resolution_timeout: Duration::from_secs(10),
            domain: "svc.cluster.local".to_owned(),
            policies: PoliciesConfig::default(),
            features: FeaturesConfig::default(),
            dataplane: DataplaneConfig::default(),
            plugins: Vec::new(),
        }
    }
}

/// A `config-features` flag, as Knative spells it (`enabled`, `disabled`, `allowed`, in any
/// case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// The feature is on.
    Enabled,
    /// The feature is off: its fields are refused as fields Knative does not know.
    Disabled,
    /// Knative's middle ground: the fields pass the field mask, but the checks that want the
    /// feature `Enabled` still refuse them.
    Allowed,
}

impl Flag {
    /// Knative's spelling in its ConfigMap.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Enabled => "enabled",
            Flag::Disabled => "disabled",
            Flag::Allowed => "allowed",
        }
    }

    /// Knative's `asFlag`: case-insensitive.
    fn parse(text: &str) -> Option<Flag> {
        [Flag::Enabled, Flag::Disabled, Flag::Allowed]
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(text))
    }
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kubernetes.podspec-fieldref`: `env[].valueFrom.fieldRef` and `resourceFieldRef`.
pub const FEATURE_FIELD_REF: &str = "kubernetes.podspec-fieldref";
/// `kubernetes.podspec-volumes-emptydir`: `emptyDir` volumes.
pub const FEATURE_EMPTY_DIR: &str = "kubernetes.podspec-volumes-emptydir";
/// `kubernetes.podspec-persistent-volume-claim`: `persistentVolumeClaim` volumes.
pub const FEATURE_PV_CLAIM: &str = "kubernetes.podspec-persistent-volume-claim";
/// `kubernetes.podspec-persistent-volume-write`: claims mounted writable.
pub const FEATURE_PV_WRITE: &str = "kubernetes.podspec-persistent-volume-write";
/// `kubernetes.podspec-volumes-hostpath`: `hostPath` volumes.
pub const FEATURE_HOST_PATH: &str = "kubernetes.podspec-volumes-hostpath";
/// `kubernetes.podspec-init-containers`: `initContainers`.
pub const FEATURE_INIT_CONTAINERS: &str = "kubernetes.podspec-init-containers";

/// `config-features`: the flags of Knative's that decide what the validating webhook accepts
/// in a revision's PodSpec. Knative's defaults (`config/core/configmaps/features.yaml`).
#[derive(Clone, Debug, PartialEq)]
pub struct FeaturesConfig {
    /// `kubernetes.podspec-fieldref` (default disabled).
    pub field_ref: Flag,
    /// `kubernetes.podspec-volumes-emptydir` (default enabled).
    pub volumes_empty_dir: Flag,
    /// `kubernetes.podspec-persistent-volume-claim` (default disabled).
    pub persistent_volume_claim: Flag,
    /// `kubernetes.podspec-persistent-volume-write` (default disabled).
    pub persistent_volume_write: Flag,
    /// `kubernetes.podspec-volumes-hostpath` (default disabled).
    pub volumes_host_path: Flag,
    /// `kubernetes.podspec-init-containers` (default disabled).
    pub init_containers: Flag,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            field_ref: Flag::Disabled,
            volumes_empty_dir: Flag::Enabled,
            persistent_volume_claim: Flag::Disabled,
            persistent_volume_write: Flag::Disabled,
            volumes_host_path: Flag::Disabled,
            init_containers: Flag::Disabled,
        }
    }
}

impl FeaturesConfig {
    /// Parses a `config-features` section given as a mapping. Unlike Knative, which keeps the
    /// default when a value is not a flag, a wrong value is an error: a typo must not leave a
    /// feature silently off.
    pub fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<FeaturesConfig> {
        let before = out.errors().count();
        let mut s = Section::open(node, path, out)?;
        let mut c = FeaturesConfig::default();
        read!(s, c, out, "kubernetes.podspec-fieldref", field_ref, flag);
        read!(
            s,
            c,
            out,
            "kubernetes.podspec-volumes-emptydir",
            volumes_empty_dir,
            flag
        );
        read!(
            s,
            c,
            out,
            "kubernetes.podspec-persistent-volume-claim",
            persistent_volume_claim,
            flag
        );
        read!(
            s,
            c,
            out,
            "kubernetes.podspec-persistent-volume-write",
            persistent_volume_write,
            flag
        );
        read!(
            s,
            c,
            out,
            "kubernetes.podspec-volumes-hostpath",
            volumes_host_path,
            flag
        );
        read!(
            s,
            c,
            out,
            "kubernetes.podspec-init-containers",
            init_containers,
            flag
        );
        s.finish(out);
        (out.errors().count() == before).then_some(c)
    }
}

/// Knative's default `registries-skipping-tag-resolving`: the local registries of kind and ko,
/// which images are loaded into without a registry to ask.
pub const DEFAULT_REGISTRIES_SKIPPING_TAG_RESOLVING: &[&str] =
    &["kind.local", "ko.local", "dev.local"];

impl ServingConfig {
    /// Whether the control plane must leave `image` as written instead of resolving its tag
    /// to a digest: its registry host is in `registries-skipping-tag-resolving`, or it already
    /// names a digest (there is nothing to resolve). An image without a registry host lives on
    /// `docker.io`, as Docker normalises it (`index.docker.io` counts as the same host).
    pub fn skips_tag_resolution(&self, image: &str) -> bool {
        let parts = crate::serving::ImageParts::of(image);
        if parts.digest.is_some() {
            return true;
        }
        let host = docker_hub_alias(parts.registry);
        self.registries_skipping_tag_resolving
            .iter()
            .any(|r| docker_hub_alias(r).eq_ignore_ascii_case(host))
    }
}

/// Docker Hub answers to two names; go-containerregistry, which Knative uses, writes the other.
fn docker_hub_alias(host: &str) -> &str {
    if host.eq_ignore_ascii_case("index.docker.io") {
        "docker.io"
    } else {
        host
    }
}

/// The `policies` section: which placement, load balancer, queue discipline and keep-alive
/// policy a revision gets when its annotations do not choose one.
#[derive(Clone, Debug, PartialEq)]
pub struct PoliciesConfig {
    /// `placement` (default `spread`).
    pub placement: String,
    /// `load-balancer` (default `knative`).
    pub load_balancer: String,
    /// `queue` (default `fifo`).
    pub queue: String,
    /// `keep-alive` (default `knative`).
    pub keep_alive: String,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        use kantai_policy::registry::Kind;
        PoliciesConfig {
            placement: Kind::Placement.default_name().to_owned(),
            load_balancer: Kind::LoadBalancer.default_name().to_owned(),
            queue: Kind::Queue.default_name().to_owned(),
            keep_alive: Kind::KeepAlive.default_name().to_owned(),
        }
    }
}

impl PoliciesConfig {
    /// The policy of `kind` a revision with these annotations uses.
    pub fn chosen<'a>(
        &'a self,
        kind: kantai_policy::registry::Kind,
        annotations: &'a std::collections::BTreeMap<String, String>,
    ) -> &'a str {
        use kantai_policy::registry::Kind;
        if let Some(v) = annotations.get(kind.annotation()) {
            return v.trim();
        }
        match kind {
            Kind::Placement => &self.placement,
            Kind::LoadBalancer => &self.load_balancer,
            Kind::Queue => &self.queue,
            Kind::KeepAlive => &self.keep_alive,
        }
    }

    /// Parses the section; a name is known if the registry knows it or `plugins` declares
    /// it (registered once the driver has loaded it).
    fn decode(
        node: &Node,
        path: &FieldPath,
        plugins: &[PluginConfig],
        out: &mut Findings,
    ) -> Option<PoliciesConfig> {
        use kantai_policy::registry::{KINDS, Kind, unknown};
        let mut f = Fields::open(node, path, out)?;
        let mut c = PoliciesConfig::default();
        for kind in KINDS {
            let key = kind.key();
            if let Some(v) = f.opt::<String>(key, out) {
                let declared = plugins.iter().any(|p| p.kind == kind && p.name == v);
                if declared || kind.knows(&v) {
                    match kind {
                        Kind::Placement => c.placement = v,
                        Kind::LoadBalancer => c.load_balancer = v,
                        Kind::Queue => c.queue = v,
                        Kind::KeepAlive => c.keep_alive = v,
                    }
                } else {
                    out.push(FieldError::error(path.field(key), unknown(kind, &v)));
                }
            }
        }
        f.close(out);
        Some(c)
    }
}

/// A config file that could not be used: every problem, with its line.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ConfigError(pub Vec<FieldError>);

fn render(errs: &[FieldError]) -> String {
    errs.iter()
        .map(|e| {
            if e.pos.is_known() {
                format!("line {}: {e}", e.pos.line)
            } else {
                e.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ServingConfig {
    /// Parses a fleet config file. An empty file gives Knative's defaults.
    pub fn parse(text: &str) -> Result<ServingConfig, ConfigError> {
        let docs = parse_documents(text, ParseLimits::default()).map_err(|e| {
            ConfigError(vec![FieldError {
                pos: e.pos,
                ..FieldError::error(FieldPath::root(), e.message)
            }])
        })?;
        match docs.as_slice() {
            [] => Ok(ServingConfig::default()),
            [doc] => ServingConfig::from_node(doc),
            [_, second, ..] => Err(ConfigError(vec![FieldError {
                pos: second.pos,
                ..FieldError::error(
                    FieldPath::root(),
                    "a config file holds one YAML document, found more",
                )
            }])),
        }
    }

    /// Reads the config from a parsed document (sections unknown to the model are rejected).
    pub fn from_node(doc: &Node) -> Result<ServingConfig, ConfigError> {
        let mut out = Findings::new();
        let cfg = Self::decode_sections(doc, &mut out, &[]);
        finish(cfg, out, doc)
    }

    /// Reads the fleet config file's document: the model's sections and `dataplane`; its
    /// `runtime` section is the binary's to read. The fleet's processes and the simulator
    /// all read the file with this, so a file means the same to each.
    pub fn decode_fleet(doc: &Node, out: &mut Findings) -> Option<ServingConfig> {
        let mut cfg = Self::decode_sections(doc, out, &["runtime", "dataplane"])?;
        if let Some(n) = doc.get("dataplane") {
            cfg.dataplane = DataplaneConfig::decode(n, &FieldPath::root().field("dataplane"), out)?;
        }
        Some(cfg)
    }

    /// Reads the model's sections from a document that may hold other sections (`extra`),
    /// which the caller reads itself. Used by the fleet config of the binary.
    pub fn decode_sections(
        doc: &Node,
        out: &mut Findings,
        extra: &[&'static str],
    ) -> Option<ServingConfig> {
        let root = FieldPath::root();
        let mut f = Fields::open(doc, &root, out)?;
        let mut cfg = ServingConfig::default();
        f.skip("autoscaler");
        if let Some(n) = doc.get("autoscaler")
            && let Some(a) = AutoscalerConfig::decode(n, &root.field("autoscaler"), out)
        {
            cfg.autoscaler = a;
        }
        f.skip("defaults");
        if let Some(n) = doc.get("defaults")
            && let Some(d) = DefaultsConfig::decode(n, &root.field("defaults"), out)
        {
            cfg.defaults = d;
        }
        f.skip("deployment");
        if let Some(n) = doc.get("deployment") {
            let path = root.field("deployment");
            if let Some(mut s) = Section::open(n, &path, out) {
                if let Some(d) = s.duration("progress-deadline", out) {
                    if d.is_zero() {
                        s.error("progress-deadline", "must be positive", out);
                    } else {
                        cfg.progress_deadline = d;
                    }
                }
                if let Some(list) = s.string("registries-skipping-tag-resolving", out) {
                    // As Knative's `AsStringSet`: entries trimmed, empty ones dropped, so an
                    // empty value resolves every registry's tags.
                    cfg.registries_skipping_tag_resolving = list
                        .split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                if let Some(d) = s.duration("digest-resolution-timeout", out) {
                    if d.is_zero() {
                        s.error("digest-resolution-timeout", "must be positive", out);
                    } else {
                        cfg.digest_resolution_timeout = d;
                    }
                }
                s.finish(out);
            }
        }
        if let Some(d) = f.opt::<String>("domain", out) {
            if !crate::serving::naming::is_dns1123_subdomain(&d) {
                out.push(FieldError::invalid(
                    root.field("domain"),
                    &d,
                    "must be a DNS name such as example.com",
                ));
            } else {
                cfg.domain = d;
            }
        }
        f.skip("plugins");
        if let Some(n) = doc.get("plugins") {
            cfg.plugins = PluginConfig::decode_list(n, &root.field("plugins"), out);
        }
        f.skip("policies");
        if let Some(n) = doc.get("policies")
            && let Some(p) = PoliciesConfig::decode(n, &root.field("policies"), &cfg.plugins, out)
        {
            cfg.policies = p;
        }
        f.skip("features");
        if let Some(n) = doc.get("features")
            && let Some(c) = FeaturesConfig::decode(n, &root.field("features"), out)
        {
            cfg.features = c;
        }
        for e in extra {
            f.skip(e);
        }
        f.close(out);
        Some(cfg)
    }
}

fn finish<T>(v: Option<T>, mut out: Findings, doc: &Node) -> Result<T, ConfigError> {
    out.locate_in(doc);
    match v {
        Some(v) if !out.has_errors() => Ok(v),
        _ => Err(ConfigError(out.errors().cloned().collect())),
    }
}

impl AutoscalerConfig {
    /// Parses a `config-autoscaler` section given as a mapping, applying Knative's validation.
    pub fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<AutoscalerConfig> {
        let mut s = Section::open(node, path, out)?;
        let mut c = AutoscalerConfig::default();
        if let Some(v) = s.string("pod-autoscaler-class", out) {
            c.pod_autoscaler_class = v;
        }
        read!(
            s,
            c,
            out,
            "enable-scale-to-zero",
            enable_scale_to_zero,
            boolean
        );
        read!(
            s,
            c,
            out,
            "allow-zero-initial-scale",
            allow_zero_initial_scale,
            boolean
        );
        read!(s, c, out, "max-scale-up-rate", max_scale_up_rate, float);
        read!(s, c, out, "max-scale-down-rate", max_scale_down_rate, float);
        read!(
            s,
            c,
            out,
            "container-concurrency-target-percentage",
            container_concurrency_target_fraction,
            float
        );
        read!(
            s,
            c,
            out,
            "container-concurrency-target-default",
            container_concurrency_target_default,
            float
        );
        read!(
            s,
            c,
            out,
            "requests-per-second-target-default",
            rps_target_default,
            float
        );
        read!(
            s,
            c,
            out,
            "target-burst-capacity",
            target_burst_capacity,
            float
        );
        read!(
            s,
            c,
            out,
            "panic-window-percentage",
            panic_window_percentage,
            float
        );
        read!(
            s,
            c,
            out,
            "panic-threshold-percentage",
            panic_threshold_percentage,
            float
        );
        read!(s, c, out, "activator-capacity", activator_capacity, float);
        read!(s, c, out, "initial-scale", initial_scale, int32);
        read!(s, c, out, "min-scale", min_scale, int32);
        read!(s, c, out, "max-scale", max_scale, int32);
        read!(s, c, out, "max-scale-limit", max_scale_limit, int32);
        read!(s, c, out, "stable-window", stable_window, duration);
        read!(s, c, out, "scale-down-delay", scale_down_delay, duration);
        read!(
            s,
            c,
            out,
            "scale-to-zero-grace-period",
            scale_to_zero_grace_period,
            duration
        );
        read!(
            s,
            c,
            out,
            "scale-to-zero-pod-retention-period",
            scale_to_zero_pod_retention_period,
            duration
        );
        // For legacy reasons Knative accepts the utilisation as a fraction in (0, 1] too.
        if c.container_concurrency_target_fraction > 1.0 {
            c.container_concurrency_target_fraction /= 100.0;
        }
        let errors_before = out.errors().count();
        c.validate(&mut s, out);
        s.finish(out);
        (out.errors().count() == errors_before).then_some(c)
    }

    fn validate(&self, s: &mut Section<'_>, out: &mut Findings) {
        if self.pod_autoscaler_class != KPA_CLASS {
            s.error(
                "pod-autoscaler-class",
                &format!("kantai implements only {KPA_CLASS:?}"),
                out,
            );
        }
        if self.scale_to_zero_grace_period.is_zero() {
            s.error("scale-to-zero-grace-period", "must be positive", out);
        }
        if self.scale_down_delay.subsec_nanos() != 0 {
            s.error(
                "scale-down-delay",
                "must be specified with at most second precision",
                out,
            );
        }
        if self.target_burst_capacity < 0.0 && self.target_burst_capacity != -1.0 {
            s.error(
                "target-burst-capacity",
                &format!(
                    "{} must be either non-negative or -1 (activator always in the path)",
                    self.target_burst_capacity
                ),
                out,
            );
        }
        let frac = self.container_concurrency_target_fraction;
        if frac <= 0.0 || frac > 1.0 {
            s.error(
                "container-concurrency-target-percentage",
                "is outside of the valid range (0, 100]",
                out,
            );
        } else if frac * self.container_concurrency_target_default < TARGET_MIN {
            s.error(
                "container-concurrency-target-default",
                &format!(
                    "together with container-concurrency-target-percentage yields a target \
                     concurrency of {}, which is less than {TARGET_MIN}",
                    frac * self.container_concurrency_target_default
                ),
                out,
            );
        }
        if self.rps_target_default < TARGET_MIN {
            s.error(
                "requests-per-second-target-default",
                &format!("must be at least {TARGET_MIN}"),
                out,
            );
        }
        if self.activator_capacity < 1.0 {
            s.error("activator-capacity", "must be at least 1", out);
        }
        if self.max_scale_up_rate <= 1.0 {
            s.error("max-scale-up-rate", "must be greater than 1", out);
        }
        if self.max_scale_down_rate <= 1.0 {
            s.error("max-scale-down-rate", "must be greater than 1", out);
        }
        if self.stable_window < WINDOW_MIN || self.stable_window > WINDOW_MAX {
            s.error("stable-window", "must be in [6s, 1h]", out);
        } else if self.stable_window.subsec_nanos() != 0 {
            s.error(
                "stable-window",
                "must be specified with at most second precision",
                out,
            );
        }
        if !(1.0..=100.0).contains(&self.panic_window_percentage) {
            s.error("panic-window-percentage", "must be in [1, 100]", out);
        }
        if !(110.0..=1000.0).contains(&self.panic_threshold_percentage) {
            s.error("panic-threshold-percentage", "must be in [110, 1000]", out);
        }
        if self.initial_scale < 0 || (self.initial_scale == 0 && !self.allow_zero_initial_scale) {
            s.error(
                "initial-scale",
                "must be at least 1 (or 0 when allow-zero-initial-scale is true)",
                out,
            );
        }
        if self.min_scale < 0 {
            s.error("min-scale", "must be at least 0", out);
        }
        if self.max_scale_limit < 0 {
            s.error("max-scale-limit", "must be at least 0", out);
        }
        let min_max = i32::from(self.max_scale_limit > 0);
        if self.max_scale < min_max
            || (self.max_scale_limit > 0 && self.max_scale > self.max_scale_limit)
        {
            s.error(
                "max-scale",
                &format!(
                    "{} must be in [{min_max}, max-scale-limit ({})]",
                    self.max_scale, self.max_scale_limit
                ),
                out,
            );
        }
        if self.max_scale != 0 && self.min_scale > self.max_scale {
            s.error("min-scale", "must not be greater than max-scale", out);
        }
    }
}

impl DefaultsConfig {
    /// Parses a `config-defaults` section given as a mapping, applying Knative's validation.
    pub fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<DefaultsConfig> {
        let mut s = Section::open(node, path, out)?;
        let mut c = DefaultsConfig::default();
        read!(
            s,
            c,
            out,
            "revision-timeout-seconds",
            revision_timeout_seconds,
            int64
        );
        read!(
            s,
            c,
            out,
            "max-revision-timeout-seconds",
            max_revision_timeout_seconds,
            int64
        );
        read!(
            s,
            c,
            out,
            "revision-response-start-timeout-seconds",
            revision_response_start_timeout_seconds,
            int64
        );
        read!(
            s,
            c,
            out,
            "revision-idle-timeout-seconds",
            revision_idle_timeout_seconds,
            int64
        );
        read!(
            s,
            c,
            out,
            "container-concurrency",
            container_concurrency,
            int64
        );
        read!(
            s,
            c,
            out,
            "container-concurrency-max-limit",
            container_concurrency_max_limit,
            int64
        );
        read!(
            s,
            c,
            out,
            "allow-container-concurrency-zero",
            allow_container_concurrency_zero,
            boolean
        );
        read!(
            s,
            c,
            out,
            "enable-service-links",
            enable_service_links,
            boolean
        );
        read!(s, c, out, "container-name-template", container_name, string);
        let before = out.errors().count();
        if c.revision_timeout_seconds < 1 {
            s.error("revision-timeout-seconds", "must be at least 1", out);
        }
        if c.revision_timeout_seconds > c.max_revision_timeout_seconds {
            s.error(
                "revision-timeout-seconds",
                &format!(
                    "{} cannot be greater than max-revision-timeout-seconds ({})",
                    c.revision_timeout_seconds, c.max_revision_timeout_seconds
                ),
                out,
            );
        }
        if c.revision_response_start_timeout_seconds < 0
            || c.revision_response_start_timeout_seconds > c.revision_timeout_seconds
        {
            s.error(
                "revision-response-start-timeout-seconds",
                "must be in [0, revision-timeout-seconds]",
                out,
            );
        }
        if c.revision_idle_timeout_seconds < 0
            || c.revision_idle_timeout_seconds > c.max_revision_timeout_seconds
        {
            s.error(
                "revision-idle-timeout-seconds",
                "must be in [0, max-revision-timeout-seconds]",
                out,
            );
        }
        if c.container_concurrency_max_limit < 1 {
            s.error("container-concurrency-max-limit", "must be at least 1", out);
        }
        if c.container_concurrency < 0
            || c.container_concurrency > c.container_concurrency_max_limit
            || (c.container_concurrency == 0 && !c.allow_container_concurrency_zero)
        {
            s.error(
                "container-concurrency",
                "must be in [0 (or 1 when zero is not allowed), container-concurrency-max-limit]",
                out,
            );
        }
        if !crate::serving::naming::is_dns1123_label(&c.container_name) {
            s.error("container-name-template", "must be a DNS-1123 label", out);
        }
        s.finish(out);
        (out.errors().count() == before).then_some(c)
    }
}

/// Reads `$key` from section `$s` with `$getter` into `$c.$field` when present (invalid values
/// are reported by the getter and leave the default).
macro_rules! read {
    ($s:ident, $c:ident, $out:ident, $key:literal, $field:ident, $getter:ident) => {
        if let Some(v) = $s.$getter($key, $out) {
            $c.$field = v;
        }
    };
}
use read;

/// A ConfigMap-like section: scalar values under kebab-case keys, each typed by its reader.
struct Section<'n> {
    fields: Fields<'n>,
    node: &'n Node,
}

impl<'n> Section<'n> {
    fn open(node: &'n Node, path: &FieldPath, out: &mut Findings) -> Option<Section<'n>> {
        Some(Section {
            fields: Fields::open(node, path, out)?,
            node,
        })
    }

    fn text(&mut self, key: &'static str, out: &mut Findings) -> Option<(String, &'n Node)> {
        // Asked for whether present or not: the reader's names are the section's keys.
        self.fields.skip(key);
        let node = self.node.get(key)?;
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => return None,
            other => {
                out.push(FieldError {
                    pos: node.pos,
                    ..FieldError::error(
                        self.fields.path().field(key),
                        format!("expected a single value, got {}", other.kind()),
                    )
                });
                return None;
            }
        };
        Some((text, node))
    }

    fn parse<T>(
        &mut self,
        key: &'static str,
        out: &mut Findings,
        what: &str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let (text, node) = self.text(key, out)?;
        let v = f(text.trim());
        if v.is_none() {
            out.push(FieldError {
                pos: node.pos,
                ..FieldError::invalid(self.fields.path().field(key), &text, what)
            });
        }
        v
    }

    fn string(&mut self, key: &'static str, out: &mut Findings) -> Option<String> {
        self.text(key, out).map(|(t, _)| t)
    }
    fn boolean(&mut self, key: &'static str, out: &mut Findings) -> Option<bool> {
        self.parse(key, out, "must be true or false", |t| {
            match t.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }
        })
    }
    fn flag(&mut self, key: &'static str, out: &mut Findings) -> Option<Flag> {
        self.parse(
            key,
            out,
            "must be enabled, disabled or allowed",
            Flag::parse,
        )
    }
    fn float(&mut self, key: &'static str, out: &mut Findings) -> Option<f64> {
        self.parse(key, out, "must be a number", |t| {
            t.parse::<f64>().ok().filter(|f| f.is_finite())
        })
    }
    fn int32(&mut self, key: &'static str, out: &mut Findings) -> Option<i32> {
        self.parse(key, out, "must be a whole number", |t| t.parse().ok())
    }
    fn int64(&mut self, key: &'static str, out: &mut Findings) -> Option<i64> {
        self.parse(key, out, "must be a whole number", |t| t.parse().ok())
    }
    fn duration(&mut self, key: &'static str, out: &mut Findings) -> Option<Duration> {
        let (text, node) = self.text(key, out)?;
        match parse_go_duration(text.trim()) {
            Ok(n) if n >= 0 => Some(Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))),
            Ok(_) => {
                out.push(FieldError {
                    pos: node.pos,
                    ..FieldError::error(self.fields.path().field(key), "cannot be negative")
                });
                None
            }
            Err(e) => {
                out.push(FieldError {
                    pos: node.pos,
                    ..FieldError::error(self.fields.path().field(key), e)
                });
                None
            }
        }
    }

    fn error(&self, key: &'static str, msg: &str, out: &mut Findings) {
        let pos = self.node.get(key).map_or(self.node.pos, |n| n.pos);
        out.push(FieldError {
            pos,
            ..FieldError::error(self.fields.path().field(key), msg.to_owned())
        });
    }

    fn finish(self, out: &mut Findings) {
        self.fields.close(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_are_declared_by_name_kind_and_module_and_may_be_chosen_by_policies() {
        let text = "plugins:\n  - name: my-lb\n    kind: load-balancer\n    module: lb.wasm\n    \
                    memory: 64Mi\n  - {name: my-queue, kind: queue, module: q.wat}\n\
                    policies:\n  load-balancer: my-lb\n";
        let c = ServingConfig::parse(text).expect("valid");
        assert_eq!(c.plugins.len(), 2);
        assert_eq!(c.plugins[0].name, "my-lb");
        assert_eq!(
            c.plugins[0].kind,
            kantai_policy::registry::Kind::LoadBalancer
        );
        assert_eq!(c.plugins[0].module, "lb.wasm");
        assert_eq!(c.plugins[0].memory, Some(64 << 20));
        assert_eq!(c.plugins[1].memory, None);
        assert_eq!(c.policies.load_balancer, "my-lb");
    }

    #[test]
    fn a_plugin_entry_that_cannot_be_used_is_refused_with_its_line() {
        for (text, want) in [
            (
                "plugins:\n  - {name: x, kind: balancer, module: a.wasm}\n",
                "line 2: plugins[0].kind: invalid value \"balancer\": must be one of placement, load-balancer, queue, keep-alive",
            ),
            (
                "plugins:\n  - {name: knative, kind: load-balancer, module: a.wasm}\n",
                "a built-in load balancer has that name",
            ),
            (
                "plugins:\n  - {name: x, kind: queue, module: a.wasm}\n  - {name: x, kind: queue, module: b.wasm}\n",
                "plugins[1].name: invalid value \"x\": a queue discipline of that name comes earlier",
            ),
            (
                "plugins:\n  - {name: x, kind: queue}\n",
                "plugins[0].module",
            ),
            (
                "plugins:\n  - {name: x, kind: queue, module: a.wasm, memory: 1Ki}\n",
                "plugins[0].memory: must be at least 64Ki",
            ),
            (
                "policies:\n  load-balancer: my-lb\n",
                "unknown load balancer \"my-lb\"",
            ),
        ] {
            let e = ServingConfig::parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn empty_file_gives_knative_defaults() {
        let c = ServingConfig::parse("").expect("valid");
        assert_eq!(c, ServingConfig::default());
        assert_eq!(c.autoscaler.target_burst_capacity, 211.0);
        assert_eq!(c.autoscaler.stable_window, Duration::from_secs(60));
        assert_eq!(c.autoscaler.container_concurrency_target_fraction, 0.7);
        assert_eq!(c.autoscaler.max_scale_down_rate, 2.0);
        assert_eq!(c.autoscaler.activator_capacity, 100.0);
        assert_eq!(c.defaults.revision_timeout_seconds, 300);
    }

    #[test]
    fn values_override_defaults_in_both_spellings() {
        let c = ServingConfig::parse(
            "autoscaler:\n  stable-window: 30s\n  container-concurrency-target-percentage: \"80\"\n  \
             target-burst-capacity: -1\n  enable-scale-to-zero: \"false\"\ndomain: example.com\n",
        )
        .expect("valid");
        assert_eq!(c.autoscaler.stable_window, Duration::from_secs(30));
        assert!((c.autoscaler.container_concurrency_target_fraction - 0.8).abs() < 1e-12);
        assert_eq!(c.autoscaler.target_burst_capacity, -1.0);
        assert!(!c.autoscaler.enable_scale_to_zero);
        assert_eq!(c.domain, "example.com");
    }

    #[test]
    fn every_bad_key_is_reported_with_its_line() {
        let err = ServingConfig::parse(
            "autoscaler:\n  stable-window: 2s\n  max-scale-down-rate: 1\n  stable-windw: 10s\n\
             defaults:\n  revision-timeout-seconds: 900\n",
        )
        .expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains("line 2: autoscaler.stable-window: must be in [6s, 1h]"),
            "{text}"
        );
        assert!(
            text.contains("line 3: autoscaler.max-scale-down-rate: must be greater than 1"),
            "{text}"
        );
        assert!(text.contains("line 4: autoscaler.stable-windw: unknown field \"stable-windw\", did you mean \"stable-window\"?"), "{text}");
        assert!(text.contains("line 6: defaults.revision-timeout-seconds: 900 cannot be greater than max-revision-timeout-seconds (600)"), "{text}");
    }

    #[test]
    fn features_default_to_knatives_flags() {
        let f = ServingConfig::parse("").expect("valid").features;
        assert_eq!(f.field_ref, Flag::Disabled);
        assert_eq!(f.volumes_empty_dir, Flag::Enabled);
        assert_eq!(f.persistent_volume_claim, Flag::Disabled);
        assert_eq!(f.persistent_volume_write, Flag::Disabled);
        assert_eq!(f.volumes_host_path, Flag::Disabled);
        assert_eq!(f.init_containers, Flag::Disabled);
    }

    #[test]
    fn feature_flags_are_read_in_any_case() {
        let text = format!(
            "features:\n  {FEATURE_FIELD_REF}: Enabled\n  {FEATURE_EMPTY_DIR}: \"disabled\"\n  \
             {FEATURE_PV_CLAIM}: ALLOWED\n  {FEATURE_PV_WRITE}: enabled\n  \
             {FEATURE_HOST_PATH}: allowed\n  {FEATURE_INIT_CONTAINERS}: enabled\n"
        );
        let f = ServingConfig::parse(&text).expect("valid").features;
        assert_eq!(
            f,
            FeaturesConfig {
                field_ref: Flag::Enabled,
                volumes_empty_dir: Flag::Disabled,
                persistent_volume_claim: Flag::Allowed,
                persistent_volume_write: Flag::Enabled,
                volumes_host_path: Flag::Allowed,
                init_containers: Flag::Enabled,
            }
        );
    }

    #[test]
    fn a_feature_value_that_is_no_flag_is_an_error_with_its_line() {
        let err = ServingConfig::parse(
            "domain: example.com\nfeatures:\n  kubernetes.podspec-fieldref: yes please\n",
        )
        .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "line 3: features.kubernetes.podspec-fieldref: invalid value \"yes please\": \
             must be enabled, disabled or allowed"
        );
    }

    #[test]
    fn an_unknown_feature_key_is_an_error_with_a_suggestion() {
        let err = ServingConfig::parse("features:\n  kubernetes.podspec-fieldrefs: enabled\n")
            .expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains(
                "line 2: features.kubernetes.podspec-fieldrefs: unknown field \
                 \"kubernetes.podspec-fieldrefs\", did you mean \"kubernetes.podspec-fieldref\"?"
            ),
            "{text}"
        );
    }

    fn fleet(text: &str) -> Result<ServingConfig, ConfigError> {
        let docs = parse_documents(text, ParseLimits::default()).expect("YAML");
        let mut out = Findings::new();
        let cfg = ServingConfig::decode_fleet(&docs[0], &mut out);
        finish(cfg, out, &docs[0])
    }

    #[test]
    fn the_fleet_file_sets_the_hold_limit() {
        let c = fleet("dataplane:\n  hold-limit: 50\nruntime: {}\n").expect("valid");
        assert_eq!(c.dataplane.hold_limit, 50);
    }

    #[test]
    fn the_hold_limit_defaults_to_the_activators_queue_depth() {
        let c = fleet("domain: example.com\n").expect("valid");
        assert_eq!(c.dataplane, DataplaneConfig::default());
        assert_eq!(c.dataplane.hold_limit, DEFAULT_HOLD_LIMIT);
    }

    #[test]
    fn a_hold_limit_of_zero_is_an_error_with_its_line() {
        let err = fleet("dataplane:\n  hold-limit: 0\n").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "line 2: dataplane.hold-limit: must be positive"
        );
    }

    #[test]
    fn an_unknown_dataplane_key_is_an_error() {
        let err = fleet("dataplane:\n  hold-limt: 5\n").expect_err("invalid");
        assert!(
            err.to_string()
                .contains("line 2: dataplane.hold-limt: unknown field"),
            "{err}"
        );
    }
}
