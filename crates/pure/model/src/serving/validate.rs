//! Knative's validating admission webhook (`Validate` in `pkg/apis/serving/v1/*_validation.go`,
//! Kubernetes' name rules), returning every finding at once.
//!
//! Run it on a defaulted object (see [`super::defaults::set_defaults`]), as the API server does.

use std::collections::{BTreeMap, BTreeSet};

use crate::autoscaling::AutoscalingAnnotations;
use crate::config::{
    FEATURE_EMPTY_DIR, FEATURE_FIELD_REF, FEATURE_HOST_PATH, FEATURE_INIT_CONTAINERS,
    FEATURE_PV_CLAIM, FEATURE_PV_WRITE, FeaturesConfig, Flag, ServingConfig,
};
use crate::error::{FieldError, FieldPath, Findings};
use crate::meta::{NameRule, ObjectMeta};
use crate::serving::naming::{
    dns1035_problem, is_dns1123_label, is_dns1123_subdomain, qualified_name_problem, tag_host,
};
use crate::serving::revision::{H2C_PORT_NAME, HTTP1_PORT_NAME, IntOrString};
use crate::serving::{
    Container, EnvVarSource, KeyToPath, LINUX_CAPABILITIES, Object, ObjectFieldSelector, Probe,
    ProjectedVolume, ResourceFieldSelector, RevisionSpec, RevisionTemplate, SecurityContext,
    TrafficTarget, Volume,
};

/// Ports the platform itself uses inside an instance's network view (Knative's reserved ports).
pub const RESERVED_PORTS: &[i64] = &[8012, 8013, 8022, 9090, 9091];
/// Environment variables the platform sets for every instance.
pub const RESERVED_ENV: &[&str] = &["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"];

/// Validates an object; every problem is in the result, errors and warnings.
pub fn validate(obj: &Object, config: &ServingConfig) -> Findings {
    let mut out = Findings::new();
    let meta_path = FieldPath::fields("metadata");
    crate::meta::validate(obj.metadata(), &meta_path, NameRule::Dns1035Label, &mut out);
    match obj {
        Object::Service(s) => {
            let path = FieldPath::fields("spec.template");
            validate_template(&s.spec.template, &s.metadata.name, &path, config, &mut out);
            validate_traffic(
                &s.spec.traffic,
                TrafficOwner::Service(&s.metadata),
                &FieldPath::fields("spec.traffic"),
                config,
                &mut out,
            );
        }
        Object::Configuration(c) => {
            let path = FieldPath::fields("spec.template");
            validate_template(&c.spec.template, &c.metadata.name, &path, config, &mut out);
        }
        Object::Revision(r) => {
            validate_autoscaling(
                &r.metadata.annotations,
                &meta_path.field("annotations"),
                config,
                &mut out,
            );
            validate_spec(&r.spec, &FieldPath::fields("spec"), config, &mut out);
        }
        Object::Route(r) => validate_traffic(
            &r.spec.traffic,
            TrafficOwner::Route(&r.metadata),
            &FieldPath::fields("spec.traffic"),
            config,
            &mut out,
        ),
    }
    out
}

fn validate_autoscaling(
    anns: &BTreeMap<String, String>,
    path: &FieldPath,
    config: &ServingConfig,
    out: &mut Findings,
) {
    AutoscalingAnnotations::parse(anns, &config.autoscaler, path, out);
    // kantai's policy annotations: known names (listed when not), well-formed parameters.
    for e in kantai_policy::registry::validate(anns) {
        let value = anns.get(e.key).map(String::as_str).unwrap_or_default();
        out.push(FieldError::invalid(path.key(e.key), value, &e.message));
    }
    for k in anns.keys() {
        if k.starts_with("kantai.dev/") && !kantai_policy::params::KEYS.contains(&k.as_str()) {
            out.push(FieldError::warning(
                path.key(k.clone()),
                format!(
                    "kantai does not read this annotation; it reads {}",
                    kantai_policy::params::KEYS.join(", ")
                ),
            ));
        }
    }
}

fn validate_template(
    t: &RevisionTemplate,
    owner: &str,
    path: &FieldPath,
    config: &ServingConfig,
    out: &mut Findings,
) {
    let meta = path.field("metadata");
    if let Some(name) = &t.metadata.name {
        let prefix = format!("{owner}-");
        if let Some(p) = dns1035_problem(name) {
            out.push(FieldError::invalid(meta.field("name"), name, &p));
        } else if !owner.is_empty() && !name.starts_with(&prefix) {
            out.push(FieldError::invalid(
                meta.field("name"),
                name,
                &format!(
                    "a revision name must start with {prefix:?} (the owner's name and a dash)"
                ),
            ));
        }
    }
    crate::meta::validate_labels(&t.metadata.labels, &meta.field("labels"), out);
    crate::meta::validate_annotations(&t.metadata.annotations, &meta.field("annotations"), out);
    validate_autoscaling(
        &t.metadata.annotations,
        &meta.field("annotations"),
        config,
        out,
    );
    validate_spec(&t.spec, &path.field("spec"), config, out);
}

/// Validates a revision spec (`spec.template.spec` or a Revision's `spec`).
pub fn validate_spec(
    spec: &RevisionSpec,
    path: &FieldPath,
    config: &ServingConfig,
    out: &mut Findings,
) {
    let d = &config.defaults;
    match spec.containers.len() {
        0 => out.push(FieldError::missing(path.field("containers"))),
        1 => {}
        n => out.push(FieldError::error(
            path.field("containers"),
            format!("kantai runs exactly one container per revision, found {n}"),
        )),
    }
    if let Some(sc) = &spec.security_context {
        let sp = path.field("securityContext");
        check_id(sc.run_as_user, sp.field("runAsUser"), out);
        check_id(sc.run_as_group, sp.field("runAsGroup"), out);
    }
    let volumes = validate_volumes(spec, path, &config.features, out);
    validate_init_containers(spec, path, &config.features, out);
    for (i, c) in spec.containers.iter().enumerate() {
        let cp = path.field("containers").index(i);
        validate_container(c, &cp, &config.features, out);
        validate_mounts(c, &cp, &volumes, out);
        let merged = spec.security_for(c);
        if merged.run_as_non_root == Some(true) && merged.run_as_user == Some(0) {
            // Kubernetes admits this and the kubelet then refuses to start the container.
            out.push(FieldError::warning(
                cp.field("securityContext"),
                "runAsNonRoot is true but runAsUser is 0: the container will not start",
            ));
        }
    }
    if let Some(cc) = spec.container_concurrency {
        let min = if d.allow_container_concurrency_zero {
            0
        } else {
            1
        };
        if cc < min || cc > d.container_concurrency_max_limit {
            out.push(FieldError::out_of_bounds(
                path.field("containerConcurrency"),
                cc,
                min,
                d.container_concurrency_max_limit,
            ));
        }
    }
    let max_timeout = d.max_revision_timeout_seconds;
    if let Some(t) = spec.timeout_seconds
        && !(0..=max_timeout).contains(&t)
    {
        out.push(FieldError::out_of_bounds(
            path.field("timeoutSeconds"),
            t,
            0,
            max_timeout,
        ));
    }
    let timeout = spec.timeout_seconds.unwrap_or(d.revision_timeout_seconds);
    if let Some(t) = spec.response_start_timeout_seconds
        && !(0..=timeout).contains(&t)
    {
        out.push(FieldError::out_of_bounds(
            path.field("responseStartTimeoutSeconds"),
            t,
            0,
            format!("{timeout} (timeoutSeconds)"),
        ));
    }
    if let Some(t) = spec.idle_timeout_seconds
        && !(0..=max_timeout).contains(&t)
    {
        out.push(FieldError::out_of_bounds(
            path.field("idleTimeoutSeconds"),
            t,
            0,
            max_timeout,
        ));
    }
}

fn validate_container(
    c: &Container,
    path: &FieldPath,
    features: &FeaturesConfig,
    out: &mut Findings,
) {
    if let Some(name) = &c.name
        && !name.is_empty()
        && !is_dns1123_label(name)
    {
        out.push(FieldError::invalid(
            path.field("name"),
            name,
            "must be a DNS-1123 label",
        ));
    }
    if c.image.trim().is_empty() {
        out.push(FieldError::missing(path.field("image")));
    }
    if c.ports.len() > 1 {
        out.push(FieldError::error(
            path.field("ports"),
            format!(
                "more than one container port is set ({}); an instance serves on one port",
                c.ports.len()
            ),
        ));
    }
    for (i, p) in c.ports.iter().enumerate() {
        let pp = path.field("ports").index(i);
        if !(1..=65535).contains(&p.container_port) {
            out.push(FieldError::out_of_bounds(
                pp.field("containerPort"),
                p.container_port,
                1,
                65535,
            ));
        } else if RESERVED_PORTS.contains(&p.container_port) {
            out.push(FieldError::error(
                pp.field("containerPort"),
                format!(
                    "{} is a reserved port (reserved: {:?})",
                    p.container_port, RESERVED_PORTS
                ),
            ));
        }
        if let Some(n) = &p.name
            && !matches!(n.as_str(), "" | HTTP1_PORT_NAME | H2C_PORT_NAME)
        {
            out.push(FieldError::invalid(
                pp.field("name"),
                n,
                "must be \"http1\" or \"h2c\"",
            ));
        }
        if let Some(proto) = &p.protocol
            && proto != "TCP"
        {
            out.push(FieldError::invalid(
                pp.field("protocol"),
                proto,
                "only TCP is supported",
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, e) in c.env.iter().enumerate() {
        let ep = path.field("env").index(i);
        if e.name.is_empty() {
            out.push(FieldError::missing(ep.field("name")));
        } else if !is_env_name(&e.name) {
            out.push(FieldError::invalid(
                ep.field("name"),
                &e.name,
                "an environment variable name must consist of letters, digits, '_', '-' or '.', \
                 and must not start with a digit",
            ));
        } else if RESERVED_ENV.contains(&e.name.as_str()) {
            out.push(FieldError::error(
                ep.field("name"),
                format!(
                    "{} is a reserved environment variable, set by kantai",
                    e.name
                ),
            ));
        }
        if !e.name.is_empty() && !seen.insert(e.name.as_str()) {
            out.push(FieldError::warning(
                ep.field("name"),
                format!("{} is set more than once; the last value wins", e.name),
            ));
        }
        if let Some(src) = &e.value_from {
            if e.value.is_some() {
                out.push(FieldError::error(
                    ep.clone(),
                    "value and valueFrom are mutually exclusive",
                ));
            }
            validate_value_from(
                src,
                c.name.as_deref(),
                &ep.field("valueFrom"),
                features,
                out,
            );
        }
    }
    validate_env_from(c, path, out);
    let rp = path.field("resources");
    for (section, map) in [
        ("limits", &c.resources.limits),
        ("requests", &c.resources.requests),
    ] {
        for (name, q) in map {
            if q.value() < 0.0 {
                out.push(FieldError::error(
                    rp.field(section).key(name.clone()),
                    "must not be negative",
                ));
            }
            if !matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                out.push(FieldError::warning(
                    rp.field(section).key(name.clone()),
                    "kantai accounts only for cpu and memory; this resource is ignored",
                ));
            }
        }
    }
    for (name, req) in &c.resources.requests {
        if let Some(lim) = c.resources.limits.get(name)
            && req.value() > lim.value()
        {
            out.push(FieldError::error(
                rp.field("requests").key(name.clone()),
                format!("request {req} is greater than the limit {lim}"),
            ));
        }
    }
    let port = c.ports.first().map(|p| p.container_port);
    for (probe, kind, field) in [
        (&c.readiness_probe, ProbeKind::Readiness, "readinessProbe"),
        (&c.liveness_probe, ProbeKind::Liveness, "livenessProbe"),
        (&c.startup_probe, ProbeKind::Startup, "startupProbe"),
    ] {
        if let Some(p) = probe {
            validate_probe(p, kind, port, &path.field(field), out);
        }
    }
    if let Some(sc) = &c.security_context {
        validate_security_context(sc, &path.field("securityContext"), out);
    }
}

/// Kubernetes' user and group ids: non-negative 32-bit (Knative's `minUserID`..`maxUserID`).
fn check_id(id: Option<i64>, path: FieldPath, out: &mut Findings) {
    if let Some(id) = id
        && !(0..=i64::from(i32::MAX)).contains(&id)
    {
        out.push(FieldError::out_of_bounds(path, id, 0, i32::MAX));
    }
}

fn validate_security_context(sc: &SecurityContext, path: &FieldPath, out: &mut Findings) {
    check_id(sc.run_as_user, path.field("runAsUser"), out);
    check_id(sc.run_as_group, path.field("runAsGroup"), out);
    let Some(caps) = &sc.capabilities else {
        return;
    };
    let cp = path.field("capabilities");
    for (list, names) in [("add", &caps.add), ("drop", &caps.drop)] {
        for (i, name) in names.iter().enumerate() {
            if let Some(rule) = capability_problem(name) {
                out.push(FieldError::invalid(cp.field(list).index(i), name, &rule));
            }
        }
    }
}

/// What is wrong with a capability name, if anything: the runtime maps `NET_ADMIN` to the
/// kernel's `CAP_NET_ADMIN`, so only the bare upper-case names (or `ALL`) mean something.
fn capability_problem(name: &str) -> Option<String> {
    if name == "ALL" || LINUX_CAPABILITIES.contains(&name) {
        return None;
    }
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    let upper = bare.to_ascii_uppercase();
    if LINUX_CAPABILITIES.contains(&upper.as_str()) || upper == "ALL" {
        return Some(format!(
            "capabilities are named in upper case without the CAP_ prefix: {upper}"
        ));
    }
    let mut rule = "not a Linux capability (an upper-case name such as NET_BIND_SERVICE, \
                    without the CAP_ prefix, or ALL)"
        .to_owned();
    if let Some(s) = crate::decode::closest(&upper, LINUX_CAPABILITIES) {
        rule.push_str(&format!("; did you mean {s:?}?"));
    }
    Some(rule)
}

fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// Which probe of a container is checked: the rules on thresholds and timing differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    /// Defaulted by Knative before validation; period 0 is Knative's aggressive probing.
    Readiness,
    /// Not defaulted: a zero field means Kubernetes' default when the probe runs.
    Liveness,
    /// As liveness.
    Startup,
}

fn validate_probe(
    p: &Probe,
    kind: ProbeKind,
    container_port: Option<i64>,
    path: &FieldPath,
    out: &mut Findings,
) {
    let mut handlers = Vec::new();
    if p.http_get.is_some() {
        handlers.push("httpGet");
    }
    if p.tcp_socket.is_some() {
        handlers.push("tcpSocket");
    }
    if p.exec.is_some() {
        handlers.push("exec");
    }
    if p.grpc.is_some() {
        handlers.push("grpc");
    }
    match handlers.len() {
        0 => out.push(FieldError::error(
            path.clone(),
            "expected exactly one handler: httpGet, tcpSocket, exec or grpc",
        )),
        1 => {}
        _ => out.push(FieldError::error(
            path.clone(),
            format!(
                "expected exactly one handler, got {}",
                handlers.join(" and ")
            ),
        )),
    }
    let check_port = |port: &Option<IntOrString>, field: FieldPath, out: &mut Findings| {
        if let Some(IntOrString::Int(n)) = port
            && *n != 0
            && Some(*n) != container_port
            && !(container_port.is_none() && *n == 8080)
        {
            out.push(FieldError::error(
                field,
                format!("may not probe port {n}, only the container port"),
            ));
        }
    };
    if let Some(h) = &p.http_get {
        check_port(&h.port, path.field("httpGet").field("port"), out);
        if let Some(s) = &h.scheme
            && s != "HTTP"
        {
            out.push(FieldError::invalid(
                path.field("httpGet").field("scheme"),
                s,
                "kantai probes instances over plain HTTP only",
            ));
        }
    }
    if let Some(t) = &p.tcp_socket {
        check_port(&t.port, path.field("tcpSocket").field("port"), out);
    }
    if let Some(e) = &p.exec
        && e.command.is_empty()
    {
        out.push(FieldError::missing(path.field("exec").field("command")));
    }
    // Readiness thresholds are defaulted to at least 1 before this runs; the other probes'
    // zeros are Kubernetes' "use the default", so only negatives are wrong there.
    let threshold_min = if kind == ProbeKind::Readiness { 1 } else { 0 };
    for (name, v, min) in [
        ("initialDelaySeconds", p.initial_delay_seconds, 0),
        ("timeoutSeconds", p.timeout_seconds, 0),
        ("periodSeconds", p.period_seconds, 0),
        ("successThreshold", p.success_threshold, threshold_min),
        ("failureThreshold", p.failure_threshold, threshold_min),
    ] {
        if let Some(v) = v
            && v < min
        {
            out.push(FieldError::error(
                path.field(name),
                format!("{v} must be at least {min}"),
            ));
        }
    }
    if kind != ProbeKind::Readiness
        && let Some(n) = p.success_threshold
        && n > 1
    {
        // Kubernetes: a liveness or startup probe passes or fails on one check.
        out.push(FieldError::error(
            path.field("successThreshold"),
            format!("{n} must be 1 for liveness and startup probes"),
        ));
    }
    if kind == ProbeKind::Readiness
        && p.period_seconds.is_some_and(|s| s > 0)
        && p.timeout_seconds.is_some_and(|t| t < 1)
    {
        out.push(FieldError::error(
            path.field("timeoutSeconds"),
            "must be at least 1 when periodSeconds is set",
        ));
    }
}

enum TrafficOwner<'a> {
    Service(&'a ObjectMeta),
    Route(&'a ObjectMeta),
}

fn validate_traffic(
    traffic: &[TrafficTarget],
    owner: TrafficOwner<'_>,
    path: &FieldPath,
    config: &ServingConfig,
    out: &mut Findings,
) {
    let meta = match owner {
        TrafficOwner::Service(m) | TrafficOwner::Route(m) => m,
    };
    let is_service = matches!(owner, TrafficOwner::Service(_));
    let mut sum = 0i64;
    let mut tags = BTreeSet::new();
    for (i, t) in traffic.iter().enumerate() {
        let tp = path.index(i);
        let percent = t.percent.unwrap_or(0);
        if !(0..=100).contains(&percent) {
            out.push(FieldError::out_of_bounds(
                tp.field("percent"),
                percent,
                0,
                100,
            ));
        }
        sum = sum.saturating_add(percent);
        let rev = t.revision_name.as_deref().unwrap_or("");
        let latest = t.latest_revision.unwrap_or(rev.is_empty());
        if latest && !rev.is_empty() {
            out.push(FieldError::error(
                tp.field("revisionName"),
                format!("may not set revisionName {rev:?} when latestRevision is true"),
            ));
        }
        if !latest && rev.is_empty() {
            out.push(FieldError::error(
                tp.field("revisionName"),
                "required when latestRevision is false",
            ));
        }
        if !rev.is_empty()
            && let Some(p) = dns1035_problem(rev)
        {
            out.push(FieldError::invalid(tp.field("revisionName"), rev, &p));
        }
        match (&t.configuration_name, is_service) {
            (Some(_), true) => out.push(FieldError::error(
                tp.field("configurationName"),
                "not allowed in a Service; its own configuration is used",
            )),
            (Some(c), false) if !rev.is_empty() => out.push(FieldError::error(
                tp.field("configurationName"),
                format!("set together with revisionName {rev:?}; use one of them ({c:?})"),
            )),
            (None, false) if rev.is_empty() => out.push(FieldError::error(
                tp.clone(),
                "a Route target needs revisionName or configurationName",
            )),
            _ => {}
        }
        if t.url.is_some() {
            out.push(FieldError::error(
                tp.field("url"),
                "is set by kantai in status; remove it from spec",
            ));
        }
        if let Some(tag) = &t.tag {
            if !is_dns1123_label(tag) {
                out.push(FieldError::invalid(
                    tp.field("tag"),
                    tag,
                    "a tag must be a DNS-1123 label (lowercase letters, digits, '-')",
                ));
            } else {
                let host = tag_host(tag, &meta.name, meta.namespace(), &config.domain);
                let label = host.split('.').next().unwrap_or("");
                if label.len() > 63 {
                    out.push(FieldError::error(
                        tp.field("tag"),
                        format!("the tag's host label {label:?} is longer than 63 characters"),
                    ));
                }
            }
            if !tags.insert(tag.as_str()) {
                out.push(FieldError::error(
                    tp.field("tag"),
                    format!("tag {tag:?} is used by more than one traffic target"),
                ));
            }
        }
    }
    if !traffic.is_empty() && sum != 100 {
        out.push(FieldError::error(
            path.clone(),
            format!("percentages sum to {sum}, must be 100"),
        ));
    }
}

/// Paths no volume may be mounted at (Knative's `reservedPaths`).
pub const RESERVED_MOUNT_PATHS: &[&str] = &["/", "/dev", "/dev/log"];

/// `fieldRef.fieldPath` values Kubernetes lets an environment variable read (besides
/// `metadata.labels['<key>']` and `metadata.annotations['<key>']`).
pub const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// `resourceFieldRef.resource` values Kubernetes lets an environment variable read.
pub const ENV_RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

const FILE_MODE_RULE: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const FEATURES: &str = "the fleet config's features section";

/// Knative's answer to a field its field mask leaves out.
fn disallowed(path: FieldPath, why: Option<String>) -> FieldError {
    match why {
        Some(why) => FieldError::error(path, format!("must not set the field(s): {why}")),
        None => FieldError::error(path, "must not set the field(s)"),
    }
}

/// Why a feature's fields are refused by Knative's field mask.
fn flag_off(flag: &str) -> Option<String> {
    Some(format!("{flag} is disabled in {FEATURES}"))
}

/// `apis.ErrMultipleOneOf` and `apis.ErrMissingOneOf`: exactly one of `set` (out of `allowed`).
fn exactly_one(set: &[&str], allowed: &[&str], path: &FieldPath, out: &mut Findings) {
    match set.len() {
        0 => out.push(FieldError::error(
            path.clone(),
            format!("expected exactly one, got neither: {}", allowed.join(", ")),
        )),
        1 => {}
        _ => out.push(FieldError::error(
            path.clone(),
            format!("expected exactly one, got both: {}", set.join(", ")),
        )),
    }
}

/// Go's `path.Clean`, lexically: what Knative compares mount paths by.
fn clean_path(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Kubernetes' `validateLocalDescendingPath`: relative, and never above its root.
fn descending_path_problem(p: &str) -> Option<&'static str> {
    if p.starts_with('/') {
        Some("must be a relative path")
    } else if p.split('/').any(|part| part == "..") {
        Some("must not contain '..'")
    } else {
        None
    }
}

fn check_mode(mode: Option<i64>, path: FieldPath, out: &mut Findings) {
    if let Some(m) = mode
        && !(0..=0o777).contains(&m)
    {
        let digits = m.to_string();
        let rule = match i64::from_str_radix(&digits, 8) {
            // `0644` in Kubernetes' YAML is octal; in YAML 1.2 it is the decimal 644.
            Ok(octal) if (0..=0o777).contains(&octal) => {
                format!("{FILE_MODE_RULE}; if you meant octal {digits}, write 0{digits} or {octal}")
            }
            _ => FILE_MODE_RULE.to_owned(),
        };
        out.push(FieldError::invalid(path, m, &rule));
    }
}

/// The name of a Secret or ConfigMap a revision refers to: required, and a name such an
/// object can have.
fn check_object_name(name: &str, path: FieldPath, out: &mut Findings) {
    if name.is_empty() {
        out.push(FieldError::missing(path));
    } else if !is_dns1123_subdomain(name) {
        out.push(FieldError::invalid(
            path,
            name,
            "must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.'), as the \
             names of Secrets and ConfigMaps are",
        ));
    }
}

/// Kubernetes' `validateKeyToPath`.
fn check_items(items: &[KeyToPath], path: &FieldPath, out: &mut Findings) {
    for (i, item) in items.iter().enumerate() {
        let ip = path.field("items").index(i);
        if item.key.is_empty() {
            out.push(FieldError::missing(ip.field("key")));
        }
        if item.path.is_empty() {
            out.push(FieldError::missing(ip.field("path")));
        } else if let Some(rule) = descending_path_problem(&item.path) {
            out.push(FieldError::invalid(ip.field("path"), &item.path, rule));
        } else if item.path.starts_with("..") {
            // `..data` and its kin are the atomic writer's own entries.
            out.push(FieldError::invalid(
                ip.field("path"),
                &item.path,
                "must not start with '..'",
            ));
        }
        check_mode(item.mode, ip.field("mode"), out);
    }
}

/// Validates `spec.volumes` (Knative's `ValidateVolumes`, with Kubernetes' rules on the
/// sources) and returns the volumes by name for the mounts to be checked against.
fn validate_volumes<'s>(
    spec: &'s RevisionSpec,
    path: &FieldPath,
    features: &FeaturesConfig,
    out: &mut Findings,
) -> BTreeMap<&'s str, &'s Volume> {
    let mounted: BTreeSet<&str> = spec
        .containers
        .iter()
        .flat_map(|c| &c.volume_mounts)
        .map(|m| m.name.as_str())
        .collect();
    let mut volumes = BTreeMap::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let vp = path.field("volumes").index(i);
        if v.name.is_empty() {
            out.push(FieldError::missing(vp.field("name")));
        } else {
            if !is_dns1123_label(&v.name) {
                out.push(FieldError::invalid(
                    vp.field("name"),
                    &v.name,
                    "must be a DNS-1123 label",
                ));
            }
            if volumes.insert(v.name.as_str(), v).is_some() {
                out.push(FieldError::error(
                    vp.field("name"),
                    format!("duplicate volume name {:?}", v.name),
                ));
            }
            if !mounted.contains(v.name.as_str()) {
                out.push(FieldError::error(
                    vp.field("name"),
                    format!("volume with name {:?} not mounted", v.name),
                ));
            }
        }
        validate_volume(v, &vp, features, out);
    }
    volumes
}

fn validate_volume(v: &Volume, vp: &FieldPath, features: &FeaturesConfig, out: &mut Findings) {
    let mut allowed = vec!["secret", "configMap", "projected"];
    for (flag, source) in [
        (features.volumes_empty_dir, "emptyDir"),
        (features.persistent_volume_claim, "persistentVolumeClaim"),
        (features.volumes_host_path, "hostPath"),
    ] {
        if flag == Flag::Enabled {
            allowed.push(source);
        }
    }
    exactly_one(&v.sources(), &allowed, vp, out);
    if let Some(s) = &v.secret {
        let sp = vp.field("secret");
        check_object_name(&s.secret_name, sp.field("secretName"), out);
        check_items(&s.items, &sp, out);
        check_mode(s.default_mode, sp.field("defaultMode"), out);
    }
    if let Some(c) = &v.config_map {
        let cp = vp.field("configMap");
        check_object_name(&c.name, cp.field("name"), out);
        check_items(&c.items, &cp, out);
        check_mode(c.default_mode, cp.field("defaultMode"), out);
    }
    if let Some(p) = &v.projected {
        validate_projected(p, &vp.field("projected"), out);
    }
    if let Some(e) = &v.empty_dir {
        let ep = vp.field("emptyDir");
        match features.volumes_empty_dir {
            Flag::Enabled => {}
            Flag::Disabled => out.push(disallowed(ep.clone(), flag_off(FEATURE_EMPTY_DIR))),
            Flag::Allowed => out.push(FieldError::error(
                ep.clone(),
                format!(
                    "EmptyDir volume support is disabled, but found EmptyDir volume {:?} \
                     ({FEATURE_EMPTY_DIR} is \"allowed\", not \"enabled\", in {FEATURES})",
                    v.name
                ),
            )),
        }
        if let Some(m) = &e.medium
            && !matches!(m.as_str(), "" | "Memory")
        {
            out.push(FieldError::invalid(
                ep.field("medium"),
                m,
                "must be \"\" (the node's disk) or \"Memory\" (a tmpfs)",
            ));
        }
        if let Some(q) = &e.size_limit
            && q.value() < 0.0
        {
            out.push(FieldError::invalid(
                ep.field("sizeLimit"),
                q,
                "must not be negative",
            ));
        }
    }
    for (source, value) in &v.other {
        let op = vp.field(source.clone());
        match source.as_str() {
            "persistentVolumeClaim" => validate_claim(value, &op, features, out),
            "hostPath" => match features.volumes_host_path {
                Flag::Disabled => out.push(disallowed(op, flag_off(FEATURE_HOST_PATH))),
                Flag::Allowed => out.push(FieldError::error(
                    op,
                    format!(
                        "HostPath volume support is disabled, but found HostPath volume {:?} \
                         ({FEATURE_HOST_PATH} is \"allowed\", not \"enabled\", in {FEATURES})",
                        v.name
                    ),
                )),
                Flag::Enabled => out.push(FieldError::error(
                    op,
                    "kantai gives functions no paths of the node's file system: hostPath \
                     volumes cannot be mounted (use an emptyDir, or a Secret or ConfigMap)",
                )),
            },
            _ => out.push(disallowed(op, None)),
        }
    }
}

/// A `persistentVolumeClaim`: Knative's flags first, then kantai's own refusal.
fn validate_claim(
    value: &serde_json::Value,
    path: &FieldPath,
    features: &FeaturesConfig,
    out: &mut Findings,
) {
    let claim = value
        .get("claimName")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let read_only = value
        .get("readOnly")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    match features.persistent_volume_claim {
        Flag::Disabled => {
            out.push(disallowed(path.clone(), flag_off(FEATURE_PV_CLAIM)));
            return;
        }
        Flag::Allowed => {
            out.push(FieldError::error(
                path.clone(),
                format!(
                    "Persistent volume claim support is disabled, but found persistent volume \
                     claim {claim} ({FEATURE_PV_CLAIM} is \"allowed\", not \"enabled\", in \
                     {FEATURES})"
                ),
            ));
            return;
        }
        Flag::Enabled => {}
    }
    if !read_only && features.persistent_volume_write != Flag::Enabled {
        out.push(FieldError::error(
            path.field("readOnly"),
            format!(
                "Persistent volume write support is disabled, but found persistent volume \
                 claim {claim} that is not read-only ({FEATURE_PV_WRITE} in {FEATURES})"
            ),
        ));
    }
    out.push(FieldError::error(
        path.clone(),
        "kantai provides no persistent volumes: persistentVolumeClaim volumes cannot be \
         mounted (use an emptyDir, or a Secret or ConfigMap)",
    ));
}

/// Knative's `validateProjectedVolumeSource` for each source, and Kubernetes' rule that no
/// two files of the volume share a path.
fn validate_projected(p: &ProjectedVolume, path: &FieldPath, out: &mut Findings) {
    const SOURCES: &[&str] = &["secret", "configMap", "serviceAccountToken", "downwardAPI"];
    check_mode(p.default_mode, path.field("defaultMode"), out);
    let mut paths = BTreeSet::new();
    for (i, s) in p.sources.iter().enumerate() {
        let sp = path.field("sources").index(i);
        let mut set = Vec::new();
        for (name, obj) in [("secret", &s.secret), ("configMap", &s.config_map)] {
            let Some(o) = obj else { continue };
            set.push(name);
            let op = sp.field(name);
            check_object_name(&o.name, op.field("name"), out);
            check_items(&o.items, &op, out);
            for (j, item) in o.items.iter().enumerate() {
                if !item.path.is_empty() && !paths.insert(clean_path(&item.path)) {
                    out.push(FieldError::error(
                        op.field("items").index(j).field("path"),
                        format!("conflicting duplicate paths: {:?}", item.path),
                    ));
                }
            }
        }
        for other in s.other.keys() {
            let op = sp.field(other.clone());
            match other.as_str() {
                "serviceAccountToken" => {
                    set.push("serviceAccountToken");
                    out.push(FieldError::error(
                        op,
                        "kantai cannot project service account tokens: it has no service \
                         accounts or token issuer (project Secrets and ConfigMaps only)",
                    ));
                }
                "downwardAPI" => {
                    set.push("downwardAPI");
                    out.push(FieldError::error(
                        op,
                        "kantai cannot project Downward API files (project Secrets and \
                         ConfigMaps only; env valueFrom.fieldRef gives the same fields when \
                         kubernetes.podspec-fieldref is enabled)",
                    ));
                }
                _ => out.push(disallowed(op, None)),
            }
        }
        exactly_one(&set, SOURCES, &sp, out);
    }
}

/// Knative's `validateVolumeMounts`, with Kubernetes' rule on `subPath`.
fn validate_mounts(
    c: &Container,
    path: &FieldPath,
    volumes: &BTreeMap<&str, &Volume>,
    out: &mut Findings,
) {
    let mut seen = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mp = path.field("volumeMounts").index(i);
        for field in m.other.keys() {
            out.push(disallowed(mp.field(field.clone()), None));
        }
        let volume = volumes.get(m.name.as_str());
        if !m.name.is_empty() && volume.is_none() {
            out.push(FieldError::error(
                mp.field("name"),
                format!("volumeMount has no matching volume {:?}", m.name),
            ));
        }
        if m.mount_path.is_empty() {
            out.push(FieldError::missing(mp.field("mountPath")));
        } else {
            let clean = clean_path(&m.mount_path);
            if RESERVED_MOUNT_PATHS.contains(&clean.as_str()) {
                out.push(FieldError::error(
                    mp.field("mountPath"),
                    format!("mountPath {clean:?} is a reserved path"),
                ));
            } else if !m.mount_path.starts_with('/') {
                out.push(FieldError::invalid(
                    mp.field("mountPath"),
                    &m.mount_path,
                    "must be an absolute path",
                ));
            } else if seen.contains(&clean) {
                out.push(FieldError::invalid(
                    mp.field("mountPath"),
                    &m.mount_path,
                    "must be unique: another volumeMount of this container has it",
                ));
            }
            seen.insert(clean);
        }
        if let Some(v) = volume {
            let claim = v.other.get("persistentVolumeClaim");
            // Knative lets only scratch space and claims be written.
            if v.empty_dir.is_none() && claim.is_none() && m.read_only != Some(true) {
                out.push(FieldError::error(
                    mp.field("readOnly"),
                    "volume mount should be readOnly for this type of volume (set readOnly: \
                     true; only emptyDir volumes are writable)",
                ));
            }
            if claim
                .and_then(|c| c.get("readOnly"))
                .and_then(serde_json::Value::as_bool)
                == Some(true)
                && m.read_only != Some(true)
            {
                out.push(FieldError::error(
                    mp.field("readOnly"),
                    "volume is readOnly but volume mount is not",
                ));
            }
        }
        if let Some(sub) = &m.sub_path
            && let Some(rule) = descending_path_problem(sub)
        {
            out.push(FieldError::invalid(mp.field("subPath"), sub, rule));
        }
    }
}

/// `env[].valueFrom`: Knative's field mask (`fieldRef` and `resourceFieldRef` behind
/// `kubernetes.podspec-fieldref`), then Kubernetes' rules on each reference.
fn validate_value_from(
    src: &EnvVarSource,
    container: Option<&str>,
    path: &FieldPath,
    features: &FeaturesConfig,
    out: &mut Findings,
) {
    let mut set = Vec::new();
    for (name, sel) in [
        ("configMapKeyRef", &src.config_map_key_ref),
        ("secretKeyRef", &src.secret_key_ref),
    ] {
        let Some(sel) = sel else { continue };
        set.push(name);
        let sp = path.field(name);
        check_object_name(&sel.name, sp.field("name"), out);
        if sel.key.is_empty() {
            out.push(FieldError::missing(sp.field("key")));
        } else if let Some(rule) = crate::core::key_problems(&sel.key).into_iter().next() {
            out.push(FieldError::invalid(sp.field("key"), &sel.key, &rule));
        }
    }
    let field_refs_allowed = features.field_ref != Flag::Disabled;
    if let Some(f) = &src.field_ref {
        set.push("fieldRef");
        let fp = path.field("fieldRef");
        if !field_refs_allowed {
            out.push(disallowed(fp, flag_off(FEATURE_FIELD_REF)));
        } else {
            validate_field_ref(f, &fp, out);
        }
    }
    if let Some(r) = &src.resource_field_ref {
        set.push("resourceFieldRef");
        let rp = path.field("resourceFieldRef");
        if !field_refs_allowed {
            out.push(disallowed(rp, flag_off(FEATURE_FIELD_REF)));
        } else {
            validate_resource_field_ref(r, container, &rp, out);
        }
    }
    let mut allowed = vec!["configMapKeyRef", "secretKeyRef"];
    if field_refs_allowed {
        allowed.extend(["fieldRef", "resourceFieldRef"]);
    }
    exactly_one(&set, &allowed, path, out);
}

fn validate_field_ref(f: &ObjectFieldSelector, path: &FieldPath, out: &mut Findings) {
    if let Some(v) = &f.api_version
        && !v.is_empty()
        && v != "v1"
    {
        out.push(FieldError::invalid(
            path.field("apiVersion"),
            v,
            "must be \"v1\"",
        ));
    }
    let fp = path.field("fieldPath");
    if f.field_path.is_empty() {
        out.push(FieldError::missing(fp));
        return;
    }
    if ENV_FIELD_PATHS.contains(&f.field_path.as_str()) {
        return;
    }
    let subscript = ["metadata.labels", "metadata.annotations"]
        .into_iter()
        .find_map(|prefix| {
            let key = f
                .field_path
                .strip_prefix(prefix)?
                .strip_prefix("['")?
                .strip_suffix("']")?;
            Some((prefix, key))
        });
    match subscript {
        Some((prefix, key)) => {
            // Kubernetes checks annotation keys in lower case: they are matched so.
            let checked = if prefix == "metadata.annotations" {
                key.to_ascii_lowercase()
            } else {
                key.to_owned()
            };
            if let Some(p) = qualified_name_problem(&checked) {
                out.push(FieldError::invalid(fp, &f.field_path, &p));
            }
        }
        None => out.push(FieldError::invalid(
            fp,
            &f.field_path,
            &format!(
                "not a field an environment variable can read; supported values: {}, \
                 metadata.labels['<key>'], metadata.annotations['<key>']",
                ENV_FIELD_PATHS.join(", ")
            ),
        )),
    }
}

fn validate_resource_field_ref(
    r: &ResourceFieldSelector,
    container: Option<&str>,
    path: &FieldPath,
    out: &mut Findings,
) {
    if let Some(name) = &r.container_name
        && !name.is_empty()
        && Some(name.as_str()) != container
    {
        out.push(FieldError::invalid(
            path.field("containerName"),
            name,
            &format!(
                "kantai runs one container per revision: leave it empty or name this one ({})",
                container.unwrap_or("unnamed")
            ),
        ));
    }
    let rp = path.field("resource");
    if r.resource.is_empty() {
        out.push(FieldError::missing(rp));
        return;
    }
    if !ENV_RESOURCE_FIELDS.contains(&r.resource.as_str()) {
        out.push(FieldError::invalid(
            rp,
            &r.resource,
            &format!("supported values: {}", ENV_RESOURCE_FIELDS.join(", ")),
        ));
        return;
    }
    let Some(d) = &r.divisor else { return };
    let dp = path.field("divisor");
    if r.resource.ends_with(".cpu") {
        if d.value() != 1.0 && d.value() != 1e-3 {
            out.push(FieldError::invalid(
                dp,
                d,
                "only divisor's values 1m and 1 are supported with the cpu resource",
            ));
        }
    } else {
        const BYTES: &[f64] = &[
            1.0,
            1e3,
            1e6,
            1e9,
            1e12,
            1e15,
            1e18,
            1024.0,
            1_048_576.0,
            1_073_741_824.0,
            1_099_511_627_776.0,
            1_125_899_906_842_624.0,
            1_152_921_504_606_846_976.0,
        ];
        if !BYTES.contains(&d.value()) {
            out.push(FieldError::invalid(
                dp,
                d,
                "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei \
                 are supported with the memory and ephemeral-storage resources",
            ));
        }
    }
}

/// `envFrom`: Knative's one-of, Kubernetes' name and prefix rules.
fn validate_env_from(c: &Container, path: &FieldPath, out: &mut Findings) {
    for (i, e) in c.env_from.iter().enumerate() {
        let ep = path.field("envFrom").index(i);
        let mut set = Vec::new();
        for (name, r) in [
            ("configMapRef", &e.config_map_ref),
            ("secretRef", &e.secret_ref),
        ] {
            if let Some(r) = r {
                set.push(name);
                check_object_name(&r.name, ep.field(name).field("name"), out);
            }
        }
        exactly_one(&set, &["configMapRef", "secretRef"], &ep, out);
        if let Some(p) = &e.prefix
            && !p.is_empty()
            && !crate::serving::resolve::is_env_var_name(p)
        {
            out.push(FieldError::invalid(
                ep.field("prefix"),
                p,
                "must consist of printable ASCII characters other than '='",
            ));
        }
    }
}

/// `initContainers`: Knative's flag; kantai runs none even when it is on.
fn validate_init_containers(
    spec: &RevisionSpec,
    path: &FieldPath,
    features: &FeaturesConfig,
    out: &mut Findings,
) {
    let Some(v) = spec.extra.get("initContainers") else {
        return;
    };
    let n = v.as_array().map_or(1, Vec::len);
    if n == 0 {
        return;
    }
    let ip = path.field("initContainers");
    out.push(match features.init_containers {
        Flag::Disabled => disallowed(ip, flag_off(FEATURE_INIT_CONTAINERS)),
        Flag::Allowed => FieldError::error(
            ip,
            format!(
                "pod spec support for init-containers is off, but found {n} init containers \
                 ({FEATURE_INIT_CONTAINERS} is \"allowed\", not \"enabled\", in {FEATURES})"
            ),
        ),
        Flag::Enabled => FieldError::error(
            ip,
            "kantai does not run init containers: each instance runs its one container",
        ),
    });
}
