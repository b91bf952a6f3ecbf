//! Knative's validating admission webhook (`Validate` in `pkg/apis/serving/v1/*_validation.go`,
//! Kubernetes' name rules), returning every finding at once.
//!
//! Run it on a defaulted object (see [`super::defaults::set_defaults`]), as the API server does.

use std::collections::{BTreeMap, BTreeSet};

use crate::autoscaling::AutoscalingAnnotations;
use crate::config::ServingConfig;
use crate::error::{FieldError, FieldPath, Findings};
use crate::meta::{NameRule, ObjectMeta};
use crate::serving::naming::{dns1035_problem, is_dns1123_label, tag_host};
use crate::serving::revision::IntOrString;
use crate::serving::{
    Container, LINUX_CAPABILITIES, Object, Probe, RevisionSpec, RevisionTemplate, SecurityContext,
    TrafficTarget,
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
    for (i, c) in spec.containers.iter().enumerate() {
        let cp = path.field("containers").index(i);
        validate_container(c, &cp, out);
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

fn validate_container(c: &Container, path: &FieldPath, out: &mut Findings) {
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
            && !matches!(n.as_str(), "" | "http1" | "h2c")
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
        match (&e.value, &e.value_from) {
            (Some(_), Some(_)) => out.push(FieldError::error(
                ep.clone(),
                "value and valueFrom are mutually exclusive",
            )),
            (None, Some(_)) => out.push(FieldError::warning(
                ep.field("valueFrom"),
                "kantai has no secrets or config maps to read from; the variable will be empty",
            )),
            _ => {}
        }
    }
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
