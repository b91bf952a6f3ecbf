//! What Knative's controllers derive from a Service: its Configuration and Route, a new
//! Revision for every template change, resolved traffic with URLs, and the status of each,
//! as pure functions. The live control plane calls these; it does not re-implement them.

use std::collections::BTreeMap;

use crate::meta::{ObjectMeta, OwnerReference};
use crate::serving::naming::{cluster_local_host, revision_name, route_host, tag_host};
use crate::serving::{
    API_VERSION, Addressable, ConditionStatus, Conditions, Configuration, ConfigurationSpec,
    ConfigurationStatus, Revision, RevisionStatus, RevisionTemplate, Route, RouteSpec, RouteStatus,
    Service, ServiceStatus, TrafficTarget,
};

/// Label on every child of a Service: the Service's name.
pub const SERVICE_LABEL: &str = "serving.knative.dev/service";
/// Label on a Revision: its Configuration's name.
pub const CONFIGURATION_LABEL: &str = "serving.knative.dev/configuration";
/// Label on a Revision: the Configuration generation it was created from.
pub const CONFIGURATION_GENERATION_LABEL: &str = "serving.knative.dev/configurationGeneration";
/// Label on a Revision: its own name (used by selectors).
pub const REVISION_LABEL: &str = "serving.knative.dev/revision";
/// Label on a Revision: its Route's name.
pub const ROUTE_LABEL: &str = "serving.knative.dev/route";

/// Condition types.
pub mod conditions {
    /// Overall readiness of any kind.
    pub const READY: &str = "Ready";
    /// Service: its Configuration is ready.
    pub const CONFIGURATIONS_READY: &str = "ConfigurationsReady";
    /// Service: its Route is ready.
    pub const ROUTES_READY: &str = "RoutesReady";
    /// Route: every target resolved to a ready revision.
    pub const ALL_TRAFFIC_ASSIGNED: &str = "AllTrafficAssigned";
    /// Route: the gateways serve the route.
    pub const INGRESS_READY: &str = "IngressReady";
    /// Route: TLS certificate (kantai serves plain HTTP).
    pub const CERTIFICATE_PROVISIONED: &str = "CertificateProvisioned";
    /// Revision: instances could be placed and started.
    pub const RESOURCES_AVAILABLE: &str = "ResourcesAvailable";
    /// Revision: the container starts and passes its readiness probe.
    pub const CONTAINER_HEALTHY: &str = "ContainerHealthy";
    /// Revision: informational, scaled to zero or not.
    pub const ACTIVE: &str = "Active";
}

fn owner_ref(kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_owned(),
        kind: kind.to_owned(),
        name: meta.name.clone(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn child_meta(name: &str, parent_kind: &str, parent: &ObjectMeta) -> ObjectMeta {
    // Knative copies the parent's labels and annotations down, minus kubectl's bookkeeping.
    let annotations = parent
        .annotations
        .iter()
        .filter(|(k, _)| *k != "kubectl.kubernetes.io/last-applied-configuration")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut labels = parent.labels.clone();
    labels.insert(SERVICE_LABEL.to_owned(), parent.name.clone());
    ObjectMeta {
        name: name.to_owned(),
        namespace: parent.namespace.clone(),
        labels,
        annotations,
        owner_references: vec![owner_ref(parent_kind, parent)],
        ..ObjectMeta::default()
    }
}

/// The Configuration a Service owns (same name, the Service's template).
pub fn configuration_for(service: &Service) -> Configuration {
    Configuration {
        metadata: child_meta(&service.metadata.name, "Service", &service.metadata),
        spec: ConfigurationSpec {
            template: service.spec.template.clone(),
        },
        status: None,
    }
}

/// The Route a Service owns (same name, the Service's traffic; latest-revision targets follow
/// the Service's Configuration).
pub fn route_for(service: &Service) -> Route {
    let traffic = service
        .spec
        .traffic
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if t.latest_revision.unwrap_or(false) {
                t.configuration_name = Some(service.metadata.name.clone());
            }
            t
        })
        .collect();
    Route {
        metadata: child_meta(&service.metadata.name, "Service", &service.metadata),
        spec: RouteSpec { traffic },
        status: None,
    }
}

/// Whether a new template must produce a new revision: any difference in the template's
/// metadata or spec does (both are compared after defaulting).
pub fn template_changed(old: &RevisionTemplate, new: &RevisionTemplate) -> bool {
    old != new
}

/// The name the revision of a configuration generation gets: the template's explicit name, or
/// `{configuration}-{generation:05}`.
pub fn revision_name_for(configuration: &Configuration, generation: i64) -> String {
    configuration
        .spec
        .template
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| revision_name(&configuration.metadata.name, generation))
}

/// The Revision stamped out of a configuration's template at a configuration generation.
pub fn revision_for(configuration: &Configuration, generation: i64) -> Revision {
    let t = &configuration.spec.template;
    let name = revision_name_for(configuration, generation);
    let mut labels: BTreeMap<String, String> = t.metadata.labels.clone();
    labels.insert(
        CONFIGURATION_LABEL.to_owned(),
        configuration.metadata.name.clone(),
    );
    labels.insert(
        CONFIGURATION_GENERATION_LABEL.to_owned(),
        generation.to_string(),
    );
    labels.insert(REVISION_LABEL.to_owned(), name.clone());
    if let Some(svc) = configuration.metadata.labels.get(SERVICE_LABEL) {
        labels.insert(SERVICE_LABEL.to_owned(), svc.clone());
    }
    Revision {
        metadata: ObjectMeta {
            name,
            namespace: configuration.metadata.namespace.clone(),
            labels,
            annotations: t.metadata.annotations.clone(),
            owner_references: vec![owner_ref("Configuration", &configuration.metadata)],
            ..ObjectMeta::default()
        },
        spec: t.spec.clone(),
        status: None,
    }
}

/// A template change that reuses an explicit revision name: a revision is immutable, so a new
/// template needs a new name (Knative rejects this update the same way).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "spec.template.metadata.name: the template changed but the revision name {name:?} did not; \
     a revision cannot change, give the new template a new name or remove the name"
)]
pub struct ExplicitNameReused {
    /// The reused name.
    pub name: String,
}

/// The Configuration of a Service after a create (`existing` is `None`) or an update, with the
/// Revision to create when the template changed. The configuration's generation counts
/// template changes, so revisions are named `NAME-00001`, `NAME-00002`, ...; a change of
/// traffic or of the Service's own metadata creates no revision.
pub fn next_configuration(
    existing: Option<&Configuration>,
    service: &Service,
) -> Result<(Configuration, Option<Revision>), ExplicitNameReused> {
    let mut next = configuration_for(service);
    let (generation, changed) = match existing {
        None => (1, true),
        Some(old) => {
            let g = old.metadata.generation.unwrap_or(1);
            let changed = template_changed(&old.spec.template, &next.spec.template);
            if changed
                && let Some(name) = &next.spec.template.metadata.name
                && old.spec.template.metadata.name.as_ref() == Some(name)
            {
                return Err(ExplicitNameReused { name: name.clone() });
            }
            (if changed { g + 1 } else { g }, changed)
        }
    };
    next.metadata.generation = Some(generation);
    if let Some(old) = existing {
        next.metadata.uid = old.metadata.uid.clone();
        next.metadata.creation_timestamp = old.metadata.creation_timestamp.clone();
        next.status = old.status.clone();
    }
    let revision = changed.then(|| revision_for(&next, generation));
    Ok((next, revision))
}

/// Why a route's traffic could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrafficProblem {
    /// A latest-revision target's configuration has no ready revision yet.
    NoReadyRevision {
        /// The configuration.
        configuration: String,
    },
    /// A target names a revision that does not exist.
    RevisionMissing {
        /// The revision.
        revision: String,
    },
}

impl TrafficProblem {
    /// Knative's reason for `AllTrafficAssigned=False/Unknown`.
    pub fn reason(&self) -> &'static str {
        match self {
            TrafficProblem::NoReadyRevision { .. } => "RevisionMissing",
            TrafficProblem::RevisionMissing { .. } => "RevisionMissing",
        }
    }

    /// The message shown with the reason.
    pub fn message(&self) -> String {
        match self {
            TrafficProblem::NoReadyRevision { configuration } => {
                format!("Configuration {configuration:?} does not have any ready Revision.")
            }
            TrafficProblem::RevisionMissing { revision } => {
                format!("Revision {revision:?} referenced in traffic not found.")
            }
        }
    }
}

/// Resolves a route's targets to concrete revisions, with tag URLs. `latest_ready` maps a
/// configuration name to its latest ready revision; `revision_exists` answers for fixed names.
pub fn resolve_traffic(
    route: &Route,
    domain: &str,
    latest_ready: &dyn Fn(&str) -> Option<String>,
    revision_exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<TrafficTarget>, TrafficProblem> {
    let name = &route.metadata.name;
    let ns = route.metadata.namespace();
    let mut out = Vec::with_capacity(route.spec.traffic.len());
    for t in &route.spec.traffic {
        let revision = if t.latest_revision.unwrap_or(false) {
            let config = t.configuration_name.clone().unwrap_or_else(|| name.clone());
            latest_ready(&config).ok_or(TrafficProblem::NoReadyRevision {
                configuration: config,
            })?
        } else {
            let rev = t.revision_name.clone().unwrap_or_default();
            if !revision_exists(&rev) {
                return Err(TrafficProblem::RevisionMissing { revision: rev });
            }
            rev
        };
        out.push(TrafficTarget {
            tag: t.tag.clone(),
            revision_name: Some(revision),
            configuration_name: None,
            latest_revision: t.latest_revision,
            percent: t.percent,
            url: t
                .tag
                .as_ref()
                .map(|tag| format!("http://{}", tag_host(tag, name, ns, domain))),
        });
    }
    Ok(out)
}

/// A route's status given the resolution of its traffic and whether the gateways serve it.
pub fn route_status(
    route: &Route,
    domain: &str,
    resolved: &Result<Vec<TrafficTarget>, TrafficProblem>,
    ingress_ready: bool,
    now: &str,
) -> RouteStatus {
    use conditions::*;
    let name = &route.metadata.name;
    let ns = route.metadata.namespace();
    let mut c = route
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut traffic = Vec::new();
    match resolved {
        Ok(t) => {
            c.set(ALL_TRAFFIC_ASSIGNED, ConditionStatus::True, None, None, now);
            traffic = t.clone();
        }
        Err(p) => {
            let status = match p {
                // Still waiting for a first revision to become ready.
                TrafficProblem::NoReadyRevision { .. } => ConditionStatus::Unknown,
                TrafficProblem::RevisionMissing { .. } => ConditionStatus::False,
            };
            c.set(
                ALL_TRAFFIC_ASSIGNED,
                status,
                Some(p.reason()),
                Some(&p.message()),
                now,
            );
        }
    }
    if ingress_ready {
        c.set(INGRESS_READY, ConditionStatus::True, None, None, now);
    } else {
        c.set(
            INGRESS_READY,
            ConditionStatus::Unknown,
            Some("Uninitialized"),
            Some("Waiting for the gateways to serve the route."),
            now,
        );
    }
    c.set(
        CERTIFICATE_PROVISIONED,
        ConditionStatus::True,
        Some("TLSNotEnabled"),
        Some("kantai serves routes over plain HTTP."),
        now,
    );
    summarize(
        &mut c,
        &[ALL_TRAFFIC_ASSIGNED, INGRESS_READY, CERTIFICATE_PROVISIONED],
        now,
    );
    RouteStatus {
        observed_generation: route.metadata.generation,
        conditions: c,
        url: Some(format!("http://{}", route_host(name, ns, domain))),
        address: Some(Addressable {
            url: format!("http://{}", cluster_local_host(name, ns)),
        }),
        traffic,
    }
}

/// What is known about one revision of a configuration, for status.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionReadiness {
    /// Revision name.
    pub name: String,
    /// Its Ready condition.
    pub ready: ConditionStatus,
    /// Reason and message when not ready.
    pub reason: Option<String>,
    /// Message when not ready.
    pub message: Option<String>,
}

/// A configuration's status: the latest created revision, the latest ready one, and Ready as
/// the latest created revision's readiness (Knative's configuration reconciler).
pub fn configuration_status(
    configuration: &Configuration,
    latest_created: &RevisionReadiness,
    latest_ready: Option<&str>,
    now: &str,
) -> ConfigurationStatus {
    let mut c = configuration
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    match latest_created.ready {
        ConditionStatus::True => c.set(conditions::READY, ConditionStatus::True, None, None, now),
        ConditionStatus::False => c.set(
            conditions::READY,
            ConditionStatus::False,
            Some("RevisionFailed"),
            Some(&format!(
                "Revision {:?} failed with message: {}.",
                latest_created.name,
                latest_created
                    .message
                    .as_deref()
                    .unwrap_or("unknown failure")
            )),
            now,
        ),
        ConditionStatus::Unknown => c.set(
            conditions::READY,
            ConditionStatus::Unknown,
            latest_created.reason.as_deref().or(Some("Deploying")),
            latest_created.message.as_deref(),
            now,
        ),
    }
    ConfigurationStatus {
        observed_generation: configuration.metadata.generation,
        conditions: c,
        latest_created_revision_name: Some(latest_created.name.clone()),
        latest_ready_revision_name: latest_ready.map(str::to_owned),
    }
}

/// What the fleet observed about a revision's instances, for its status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevisionObservation {
    /// Ready instances now.
    pub ready: u32,
    /// Instances the autoscaler asks for.
    pub desired: u32,
    /// Whether any instance was ever ready (a revision stays Ready when scaled to zero).
    pub ever_ready: bool,
    /// A container failure seen before the revision was ever ready: (reason, message).
    pub failure: Option<(String, String)>,
    /// Instances that fit on no node.
    pub unschedulable: u32,
    /// The autoscaler's Active condition: `Some(true)` active, `Some(false)` scaled to zero,
    /// `None` activating.
    pub active: Option<bool>,
    /// What a required Secret or ConfigMap reference lacks (`secret "db" not found`): no
    /// instance can start, as a pod waits with `CreateContainerConfigError`.
    pub config_problem: Option<String>,
}

/// The reason of a revision whose instances cannot start for want of a Secret or ConfigMap
/// (the pod's waiting reason in Kubernetes).
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";

/// A revision's status (Knative's: Ready = ResourcesAvailable ∧ ContainerHealthy; Active is
/// informational).
pub fn revision_status(revision: &Revision, o: &RevisionObservation, now: &str) -> RevisionStatus {
    use conditions::*;
    let mut c = revision
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    if o.ever_ready {
        c.set(RESOURCES_AVAILABLE, ConditionStatus::True, None, None, now);
        c.set(CONTAINER_HEALTHY, ConditionStatus::True, None, None, now);
    } else {
        if let Some(why) = &o.config_problem {
            // Knative marks the waiting reason on ResourcesAvailable, kantai's failures
            // are told through ContainerHealthy: both, so every reader sees it.
            for kind in [RESOURCES_AVAILABLE, CONTAINER_HEALTHY] {
                c.set(
                    kind,
                    ConditionStatus::False,
                    Some(CREATE_CONTAINER_CONFIG_ERROR),
                    Some(why),
                    now,
                );
            }
        } else if o.unschedulable > 0 && o.ready == 0 {
            c.set(
                RESOURCES_AVAILABLE,
                ConditionStatus::False,
                Some("Unschedulable"),
                Some(&format!(
                    "{} instance(s) fit on no node: no node has room (instances, CPU or memory) for them",
                    o.unschedulable
                )),
                now,
            );
        } else {
            c.set(
                RESOURCES_AVAILABLE,
                ConditionStatus::Unknown,
                Some("Deploying"),
                None,
                now,
            );
        }
        match &o.failure {
            _ if o.config_problem.is_some() => {}
            Some((reason, message)) => c.set(
                CONTAINER_HEALTHY,
                ConditionStatus::False,
                Some(reason),
                Some(message),
                now,
            ),
            None => c.set(
                CONTAINER_HEALTHY,
                ConditionStatus::Unknown,
                Some("Deploying"),
                None,
                now,
            ),
        }
    }
    summarize(&mut c, &[RESOURCES_AVAILABLE, CONTAINER_HEALTHY], now);
    match o.active {
        Some(true) => c.set(ACTIVE, ConditionStatus::True, None, None, now),
        Some(false) => c.set(
            ACTIVE,
            ConditionStatus::False,
            Some("NoTraffic"),
            Some("The target is not receiving traffic."),
            now,
        ),
        None => c.set(
            ACTIVE,
            ConditionStatus::Unknown,
            Some("Queued"),
            Some("Requests to the target are being buffered as resources are provisioned."),
            now,
        ),
    }
    RevisionStatus {
        observed_generation: revision.metadata.generation,
        conditions: c,
        actual_replicas: Some(i64::from(o.ready)),
        desired_replicas: Some(i64::from(o.desired)),
        // The control plane writes these when it resolves the tag; they outlive every pass.
        container_statuses: revision
            .status
            .as_ref()
            .map(|s| s.container_statuses.clone())
            .unwrap_or_default(),
    }
}

/// A Service's status from its Configuration's and Route's (Knative's
/// `PropagateConfigurationStatus` and `PropagateRouteStatus`).
pub fn service_status(
    service: &Service,
    configuration: &ConfigurationStatus,
    route: &RouteStatus,
    now: &str,
) -> ServiceStatus {
    use conditions::*;
    let mut c = service
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    propagate(&mut c, CONFIGURATIONS_READY, &configuration.conditions, now);
    propagate(&mut c, ROUTES_READY, &route.conditions, now);
    summarize(&mut c, &[CONFIGURATIONS_READY, ROUTES_READY], now);
    ServiceStatus {
        observed_generation: service.metadata.generation,
        conditions: c,
        url: route.url.clone(),
        address: route.address.clone(),
        latest_created_revision_name: configuration.latest_created_revision_name.clone(),
        latest_ready_revision_name: configuration.latest_ready_revision_name.clone(),
        traffic: route.traffic.clone(),
    }
}

fn propagate(into: &mut Conditions, type_: &str, from: &Conditions, now: &str) {
    match from.get(conditions::READY) {
        Some(r) => into.set(
            type_,
            r.status,
            r.reason.as_deref(),
            r.message.as_deref(),
            now,
        ),
        None => into.set(type_, ConditionStatus::Unknown, None, None, now),
    }
}

/// Sets Ready from its dependents the way Knative's condition set does: False if any is False,
/// else Unknown if any is Unknown, else True; reason and message come from the first
/// dependent that is not True.
fn summarize(c: &mut Conditions, dependents: &[&str], now: &str) {
    let worst = dependents
        .iter()
        .filter_map(|d| c.get(d))
        .filter(|d| d.status != ConditionStatus::True)
        .min_by_key(|d| match d.status {
            ConditionStatus::False => 0,
            _ => 1,
        })
        .cloned();
    match worst {
        None => c.set(conditions::READY, ConditionStatus::True, None, None, now),
        Some(d) => c.set(
            conditions::READY,
            d.status,
            d.reason.as_deref(),
            d.message.as_deref(),
            now,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServingConfig;
    use crate::serving::Object;
    use crate::serving::defaults::set_defaults;

    fn service(yaml: &str) -> Service {
        let doc = &crate::node::parse_documents(yaml, Default::default()).expect("yaml")[0];
        let mut out = crate::error::Findings::new();
        let mut obj = Object::decode(doc, &mut out).expect("object");
        assert!(!out.has_errors(), "{out}");
        set_defaults(&mut obj, &ServingConfig::default());
        match obj {
            Object::Service(s) => s,
            other => panic!("not a service: {other:?}"),
        }
    }

    const HELLO: &str = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello}\n\
        spec:\n  template:\n    spec:\n      containers: [{image: x}]\n";

    #[test]
    fn a_service_derives_its_children() {
        let s = service(HELLO);
        let cfg = configuration_for(&s);
        assert_eq!(cfg.metadata.name, "hello");
        assert_eq!(
            cfg.metadata.labels.get(SERVICE_LABEL).map(String::as_str),
            Some("hello")
        );
        let rev = revision_for(&cfg, 1);
        assert_eq!(rev.metadata.name, "hello-00001");
        assert_eq!(
            rev.metadata
                .labels
                .get(CONFIGURATION_GENERATION_LABEL)
                .map(String::as_str),
            Some("1")
        );
        let route = route_for(&s);
        assert_eq!(
            route.spec.traffic[0].configuration_name.as_deref(),
            Some("hello")
        );
    }

    #[test]
    fn template_changes_and_only_they_make_revisions() {
        let a = service(HELLO);
        let b = service(HELLO);
        assert!(!template_changed(&a.spec.template, &b.spec.template));
        let c = service(&HELLO.replace("image: x", "image: y"));
        assert!(template_changed(&a.spec.template, &c.spec.template));
        let d = service(&format!(
            "{HELLO}  traffic: [{{latestRevision: true, percent: 100}}]\n"
        ));
        assert!(!template_changed(&a.spec.template, &d.spec.template));
    }

    #[test]
    fn every_template_change_and_only_it_makes_the_next_revision() {
        let v1 = service(HELLO);
        let (cfg1, rev1) = next_configuration(None, &v1).expect("create");
        assert_eq!(
            rev1.map(|r| r.metadata.name).as_deref(),
            Some("hello-00001")
        );
        assert_eq!(cfg1.metadata.generation, Some(1));

        // Traffic only: same generation, no revision.
        let traffic = service(&format!(
            "{HELLO}  traffic: [{{latestRevision: true, percent: 100}}]\n"
        ));
        let (cfg, rev) = next_configuration(Some(&cfg1), &traffic).expect("update");
        assert_eq!((cfg.metadata.generation, rev), (Some(1), None));

        // A new image, then a new annotation: 00002, 00003.
        let v2 = service(&HELLO.replace("image: x", "image: y"));
        let (cfg2, rev2) = next_configuration(Some(&cfg1), &v2).expect("update");
        assert_eq!(
            rev2.map(|r| r.metadata.name).as_deref(),
            Some("hello-00002")
        );
        let v3 = service(&HELLO.replace(
            "  template:\n",
            "  template:\n    metadata: {annotations: {autoscaling.knative.dev/window: 12s}}\n",
        ).replace("image: x", "image: y"));
        let (cfg3, rev3) = next_configuration(Some(&cfg2), &v3).expect("update");
        assert_eq!(
            rev3.map(|r| r.metadata.name).as_deref(),
            Some("hello-00003")
        );
        assert_eq!(cfg3.metadata.generation, Some(3));
    }

    #[test]
    fn an_explicit_revision_name_must_change_with_the_template() {
        let named = HELLO.replace(
            "  template:\n",
            "  template:\n    metadata: {name: hello-blue}\n",
        );
        let (cfg, rev) = next_configuration(None, &service(&named)).expect("create");
        assert_eq!(rev.map(|r| r.metadata.name).as_deref(), Some("hello-blue"));
        let changed = service(&named.replace("image: x", "image: y"));
        let err = next_configuration(Some(&cfg), &changed).expect_err("same name");
        assert_eq!(err.name, "hello-blue");
        let renamed = service(
            &named
                .replace("image: x", "image: y")
                .replace("hello-blue", "hello-green"),
        );
        let (_, rev) = next_configuration(Some(&cfg), &renamed).expect("new name");
        assert_eq!(rev.map(|r| r.metadata.name).as_deref(), Some("hello-green"));
    }

    #[test]
    fn revision_status_follows_its_instances() {
        let s = service(HELLO);
        let rev = revision_for(&configuration_for(&s), 1);
        let deploying = revision_status(&rev, &RevisionObservation::default(), "t");
        assert_eq!(
            deploying.conditions.status("Ready"),
            ConditionStatus::Unknown
        );
        let failed = revision_status(
            &rev,
            &RevisionObservation {
                failure: Some(("ExitCode1".into(), "exited with code 1".into())),
                ..Default::default()
            },
            "t",
        );
        let ready = failed.conditions.get("Ready").expect("ready");
        assert_eq!(
            (ready.status, ready.reason.as_deref()),
            (ConditionStatus::False, Some("ExitCode1"))
        );
        let up = revision_status(
            &rev,
            &RevisionObservation {
                ready: 1,
                desired: 1,
                ever_ready: true,
                active: Some(true),
                ..Default::default()
            },
            "t",
        );
        assert_eq!(up.conditions.status("Ready"), ConditionStatus::True);
        assert_eq!(up.actual_replicas, Some(1));
        let unschedulable = revision_status(
            &rev,
            &RevisionObservation {
                unschedulable: 2,
                ..Default::default()
            },
            "t",
        );
        let ra = unschedulable
            .conditions
            .get("ResourcesAvailable")
            .expect("ra");
        assert_eq!(ra.reason.as_deref(), Some("Unschedulable"));
    }

    #[test]
    fn a_missing_secret_keeps_a_revision_from_ready_until_it_exists() {
        let s = service(HELLO);
        let rev = revision_for(&configuration_for(&s), 1);
        let waiting = revision_status(
            &rev,
            &RevisionObservation {
                desired: 1,
                config_problem: Some("secret \"db\" not found".into()),
                ..Default::default()
            },
            "t",
        );
        for kind in ["Ready", "ResourcesAvailable", "ContainerHealthy"] {
            let c = waiting.conditions.get(kind).expect(kind);
            assert_eq!(
                (c.status, c.reason.as_deref(), c.message.as_deref()),
                (
                    ConditionStatus::False,
                    Some(CREATE_CONTAINER_CONFIG_ERROR),
                    Some("secret \"db\" not found")
                ),
                "{kind}"
            );
        }
        // Level-triggered: the next status without the problem clears it.
        let mut rev = rev;
        rev.status = Some(waiting);
        let deploying = revision_status(&rev, &RevisionObservation::default(), "t");
        assert_eq!(
            deploying.conditions.status("Ready"),
            ConditionStatus::Unknown
        );
    }

    #[test]
    fn status_flows_from_revision_to_service_with_urls_and_tags() {
        let s = service(&format!(
            "{HELLO}  traffic:\n  - {{latestRevision: true, percent: 100}}\n  - {{revisionName: hello-00001, tag: v1, percent: 0}}\n"
        ));
        let cfg = configuration_for(&s);
        let route = route_for(&s);
        let now = "2026-11-26T00:00:00Z";

        // Nothing ready yet: the route waits, the service is Unknown.
        let created = RevisionReadiness {
            name: "hello-00001".into(),
            ready: ConditionStatus::Unknown,
            reason: None,
            message: None,
        };
        let cs = configuration_status(&cfg, &created, None, now);
        let resolved = resolve_traffic(&route, "example.com", &|_| None, &|_| true);
        let rs = route_status(&route, "example.com", &resolved, true, now);
        let ss = service_status(&s, &cs, &rs, now);
        assert_eq!(ss.conditions.status("Ready"), ConditionStatus::Unknown);
        assert_eq!(ss.url.as_deref(), Some("http://hello.default.example.com"));

        // The revision becomes ready: everything is Ready and traffic is resolved.
        let ready = RevisionReadiness {
            ready: ConditionStatus::True,
            ..created
        };
        let cs = configuration_status(&cfg, &ready, Some("hello-00001"), now);
        let resolved = resolve_traffic(
            &route,
            "example.com",
            &|_| Some("hello-00001".into()),
            &|_| true,
        );
        let rs = route_status(&route, "example.com", &resolved, true, now);
        let ss = service_status(&s, &cs, &rs, now);
        assert_eq!(ss.conditions.status("Ready"), ConditionStatus::True);
        assert_eq!(
            ss.conditions.status("ConfigurationsReady"),
            ConditionStatus::True
        );
        assert_eq!(ss.conditions.status("RoutesReady"), ConditionStatus::True);
        assert_eq!(
            ss.latest_ready_revision_name.as_deref(),
            Some("hello-00001")
        );
        assert_eq!(ss.traffic[0].revision_name.as_deref(), Some("hello-00001"));
        assert_eq!(
            ss.traffic[1].url.as_deref(),
            Some("http://v1-hello.default.example.com")
        );
        assert_eq!(
            ss.address.as_ref().map(|a| a.url.as_str()),
            Some("http://hello.default.svc.cluster.local")
        );

        // A failed revision shows up as RevisionFailed on the service.
        let failed = RevisionReadiness {
            name: "hello-00002".into(),
            ready: ConditionStatus::False,
            reason: Some("ExitCode1".into()),
            message: Some("container exited with code 1".into()),
        };
        let cs = configuration_status(&cfg, &failed, Some("hello-00001"), now);
        let ss = service_status(&s, &cs, &rs, now);
        let ready = ss.conditions.get("Ready").expect("ready");
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason.as_deref(), Some("RevisionFailed"));
        assert!(
            ready
                .message
                .as_deref()
                .unwrap_or("")
                .contains("exited with code 1")
        );
    }

    #[test]
    fn a_missing_fixed_revision_fails_the_route() {
        let s = service(&format!(
            "{HELLO}  traffic: [{{revisionName: hello-00009, percent: 100}}]\n"
        ));
        let route = route_for(&s);
        let resolved = resolve_traffic(&route, "example.com", &|_| None, &|_| false);
        assert_eq!(
            resolved,
            Err(TrafficProblem::RevisionMissing {
                revision: "hello-00009".into()
            })
        );
        let rs = route_status(&route, "example.com", &resolved, true, "t");
        assert_eq!(rs.conditions.status("Ready"), ConditionStatus::False);
    }
}
