//! Knative's defaulting webhook (`SetDefaults` in `pkg/apis/serving/v1/*_defaults.go`).

use crate::config::ServingConfig;
use crate::serving::revision::IntOrString;
use crate::serving::{
    Object, Probe, RevisionSpec, RevisionTemplate, TcpSocketAction, TrafficTarget,
};

/// Applies Knative's defaults to an object, in place. Idempotent.
pub fn set_defaults(obj: &mut Object, config: &ServingConfig) {
    let meta = obj.metadata_mut();
    if meta.namespace.is_none() {
        meta.namespace = Some("default".to_owned());
    }
    match obj {
        Object::Service(s) => {
            template_defaults(&mut s.spec.template, config);
            traffic_defaults(&mut s.spec.traffic, true);
        }
        Object::Configuration(c) => template_defaults(&mut c.spec.template, config),
        Object::Revision(r) => spec_defaults(&mut r.spec, config),
        Object::Route(r) => traffic_defaults(&mut r.spec.traffic, false),
    }
}

fn template_defaults(t: &mut RevisionTemplate, config: &ServingConfig) {
    spec_defaults(&mut t.spec, config);
}

/// An empty traffic list means "everything to the latest ready revision"; a target without
/// `latestRevision` follows the latest revision exactly when it names no revision.
fn traffic_defaults(traffic: &mut Vec<TrafficTarget>, fill_empty: bool) {
    if traffic.is_empty() && fill_empty {
        traffic.push(TrafficTarget {
            latest_revision: Some(true),
            percent: Some(100),
            ..TrafficTarget::default()
        });
    }
    for t in traffic {
        if t.latest_revision.is_none() {
            t.latest_revision = Some(t.revision_name.as_deref().unwrap_or("").is_empty());
        }
    }
}

/// `RevisionSpec.SetDefaults`.
pub fn spec_defaults(spec: &mut RevisionSpec, config: &ServingConfig) {
    let d = &config.defaults;
    if spec.timeout_seconds.is_none_or(|t| t == 0) {
        spec.timeout_seconds = Some(d.revision_timeout_seconds);
    }
    let timeout = spec.timeout_seconds.unwrap_or(d.revision_timeout_seconds);
    if spec.response_start_timeout_seconds.is_none_or(|t| t == 0)
        && d.revision_response_start_timeout_seconds != 0
        && d.revision_response_start_timeout_seconds <= timeout
    {
        spec.response_start_timeout_seconds = Some(d.revision_response_start_timeout_seconds);
    }
    if spec.idle_timeout_seconds.is_none_or(|t| t == 0)
        && d.revision_idle_timeout_seconds != 0
        && d.revision_idle_timeout_seconds <= timeout
    {
        spec.idle_timeout_seconds = Some(d.revision_idle_timeout_seconds);
    }
    if spec.container_concurrency.is_none() {
        spec.container_concurrency = Some(d.container_concurrency);
    }
    if spec.enable_service_links.is_none() {
        spec.enable_service_links = Some(d.enable_service_links);
    }
    let single = spec.containers.len() == 1;
    for (i, c) in spec.containers.iter_mut().enumerate() {
        if c.name.as_deref().unwrap_or("").is_empty() {
            c.name = Some(if single {
                d.container_name.clone()
            } else {
                format!("{}-{i}", d.container_name)
            });
        }
        // Probes are defaulted on the serving container only.
        if single || !c.ports.is_empty() {
            probe_defaults(c.readiness_probe.get_or_insert_with(Probe::default));
        }
    }
}

/// Every serving container gets a readiness probe: a TCP check of the serving port unless the
/// user gave a handler, with Knative's thresholds.
fn probe_defaults(p: &mut Probe) {
    if p.handler_count() == 0 {
        p.tcp_socket = Some(TcpSocketAction {
            port: Some(IntOrString::Int(0)),
            host: None,
        });
    }
    if p.success_threshold.is_none_or(|s| s == 0) {
        p.success_threshold = Some(1);
    }
    // Kubernetes' own defaults apply only when the user asked for periodic probing.
    if p.period_seconds.is_some_and(|s| s != 0) {
        if p.failure_threshold.is_none_or(|f| f == 0) {
            p.failure_threshold = Some(3);
        }
        if p.timeout_seconds.is_none_or(|t| t == 0) {
            p.timeout_seconds = Some(1);
        }
    }
}
