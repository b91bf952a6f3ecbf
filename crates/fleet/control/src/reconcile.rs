//! The controllers: from each Service its Configuration, Revisions and Route; from the
//! instances the status of every Revision, Configuration, Route, Placement and Service.
//! Level-triggered: every pass reads the store and writes only what differs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kantai_api::Resource;
use kantai_api::resources::{
    CONFIGURATIONS, INSTANCES, NODES, PLACEMENTS, REVISIONS, ROUTES, SERVICES,
};
use kantai_model::fleet::{self, Instance, NodeCount, Placement, PlacementStatus};
use kantai_model::lifecycle::{self, FleetState, PassInput};
use kantai_model::manifest;
use kantai_model::meta::JsonMeta;
use kantai_model::node::Node as DocNode;
use kantai_model::serving::derive::{
    self, CONFIGURATION_GENERATION_LABEL, RevisionObservation, RevisionReadiness, SERVICE_LABEL,
};
use kantai_model::serving::{ConditionStatus, Object, Service};
use serde_json::Value;
use tracing::{info, warn};

use crate::Shared;
use crate::digests::{CONTAINER_MISSING, Digests, Outcome};
use crate::store::Store;

/// Runs the controllers until the process ends: on every change, and at least once a second.
pub async fn run(s: Arc<Shared>) {
    let resolved = s.digests.wake.clone();
    loop {
        reconcile_once(&s);
        tokio::select! {
            _ = s.wake.notified() => {}
            _ = resolved.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// A serving object from stored JSON (stored objects were admitted, so this succeeds).
fn serving(v: &Value) -> Option<Object> {
    manifest::read_one(
        &DocNode::from_json(v),
        0,
        &kantai_model::ServingConfig::default(),
    )
    .object
}

fn write(store: &Store, r: &Resource, ns: &str, name: &str, obj: Value, now: &str) {
    let result = match store.get(r, ns, name) {
        Some(old) => {
            if *old == obj {
                return;
            }
            // Written over the version read: a write in between wins, and the next pass
            // derives again from it.
            let rv = old.resource_version().map(str::to_owned);
            store.update(r, ns, name, obj, rv.as_deref()).map(|_| ())
        }
        None => store.create(r, ns, obj, now).map(|_| ()),
    };
    match result {
        Ok(()) => {}
        Err(crate::store::StoreError::Conflict { .. }) => {
            tracing::debug!("{} {ns}/{name} changed meanwhile; next pass", r.plural);
        }
        Err(e) => warn!("cannot write {} {ns}/{name}: {e}", r.plural),
    }
}

/// Writes a new status when it differs from the stored one.
fn write_status(store: &Store, r: &Resource, ns: &str, name: &str, status: Value) {
    let Some(old) = store.get(r, ns, name) else {
        return;
    };
    if old.get("status") == Some(&status) {
        return;
    }
    let mut obj = (*old).clone();
    obj["status"] = status;
    // Over the version read, so a user's write in between (a new spec) is never reverted;
    // the next pass computes the status again.
    let rv = old.resource_version().map(str::to_owned);
    match store.update(r, ns, name, obj, rv.as_deref()) {
        Ok(_) => {}
        Err(crate::store::StoreError::Conflict { .. }) => {
            tracing::debug!(
                "{} {ns}/{name} changed meanwhile; status next pass",
                r.plural
            );
        }
        Err(e) => warn!("cannot update the status of {} {ns}/{name}: {e}", r.plural),
    }
}

/// One pass of every controller.
pub fn reconcile_once(s: &Shared) {
    let now = kantai_api::time::now();
    let store = &s.store;
    for svc_json in &store.list(&SERVICES, None).0 {
        let Some(Object::Service(svc)) = serving(svc_json) else {
            continue;
        };
        reconcile_service(s, &svc, &now);
    }
    collect_orphans(store);
    update_statuses(s, &now);
}

/// Removes what a deleted Service owned when a pass that read the Service just before its
/// delete wrote its Configuration or Revision again after the delete's cascade: without it
/// such an object would outlive its owner for good. Kubernetes' garbage collector does this
/// by owner references; only objects that name an owning Service are touched, so a
/// Configuration or Route a user created alone is left as it is.
fn collect_orphans(store: &Store) {
    let services: std::collections::HashSet<(String, String)> = store
        .list(&SERVICES, None)
        .0
        .iter()
        .map(|v| (v.namespace_or_default().to_owned(), v.name().to_owned()))
        .collect();
    let mut gone = std::collections::BTreeSet::new();
    for r in [CONFIGURATIONS, ROUTES, REVISIONS] {
        for o in store.list(&r, None).0 {
            let owned = o.metadata()["ownerReferences"]
                .as_array()
                .is_some_and(|refs| !refs.is_empty());
            if let Some(service) = o.label(SERVICE_LABEL)
                && owned
            {
                let key = (o.namespace_or_default().to_owned(), service.to_owned());
                if !services.contains(&key) {
                    gone.insert(key);
                }
            }
        }
    }
    for (ns, service) in gone {
        info!(service = %service, "removing what the deleted service {ns}/{service} owned");
        cascade_delete(store, &ns, &service);
    }
}

fn reconcile_service(s: &Shared, svc: &Service, now: &str) {
    let store = &s.store;
    let ns = svc.metadata.namespace().to_owned();
    let name = svc.metadata.name.clone();
    let existing = store
        .get(&CONFIGURATIONS, &ns, &name)
        .and_then(|v| serving(&v))
        .and_then(|o| match o {
            Object::Configuration(c) => Some(c),
            _ => None,
        });
    let (cfg, new_revision) = match derive::next_configuration(existing.as_ref(), svc) {
        Ok(r) => r,
        Err(e) => {
            // Knative's webhook refuses this update; kantai reports it on the Service.
            let mut st = svc.status.clone().unwrap_or_default();
            st.conditions.set(
                derive::conditions::CONFIGURATIONS_READY,
                ConditionStatus::False,
                Some("RevisionNameReused"),
                Some(&e.to_string()),
                now,
            );
            st.conditions.set(
                derive::conditions::READY,
                ConditionStatus::False,
                Some("RevisionNameReused"),
                Some(&e.to_string()),
                now,
            );
            write_status(
                store,
                &SERVICES,
                &ns,
                &name,
                serde_json::to_value(&st).unwrap_or_default(),
            );
            return;
        }
    };
    let generation = cfg.metadata.generation.unwrap_or(1);
    let mut cfg_json = Object::Configuration(cfg).to_json();
    if let Some(old) = store.get(&CONFIGURATIONS, &ns, &name) {
        // Keep the stored generation bookkeeping: ours counts template changes.
        cfg_json["status"] = old.get("status").cloned().unwrap_or(Value::Null);
        if cfg_json["status"].is_null()
            && let Some(o) = cfg_json.as_object_mut()
        {
            o.remove("status");
        }
    }
    let new_configuration = store.get(&CONFIGURATIONS, &ns, &name).is_none();
    write(store, &CONFIGURATIONS, &ns, &name, cfg_json, now);
    if new_configuration {
        let msg = format!("Created Configuration {name:?}");
        crate::events::normal(
            s,
            &ns,
            &crate::events::Involved::service(&name),
            "Created",
            &msg,
        );
    }
    if let Some(rev) = new_revision {
        // Owner references need the configuration's uid, known once it is stored.
        let stored = store
            .get(&CONFIGURATIONS, &ns, &name)
            .and_then(|v| serving(&v));
        let rev = match stored {
            Some(Object::Configuration(c)) => derive::revision_for(&c, generation),
            _ => rev,
        };
        if store.get(&REVISIONS, &ns, &rev.metadata.name).is_none() {
            info!(revision = %rev.metadata.name, "new revision");
            let mut json = Object::Revision(rev.clone()).to_json();
            if let Some(o) = json.as_object_mut() {
                o.remove("status");
            }
            write(store, &REVISIONS, &ns, &rev.metadata.name, json, now);
            let msg = format!("Created Revision {:?}", rev.metadata.name);
            crate::events::normal(
                s,
                &ns,
                &crate::events::Involved::configuration(&name),
                "Created",
                &msg,
            );
        }
    }
    let route = derive::route_for(svc);
    let mut route_json = Object::Route(route).to_json();
    if let Some(old) = store.get(&ROUTES, &ns, &name)
        && let Some(st) = old.get("status")
    {
        route_json["status"] = st.clone();
    }
    let new_route = store.get(&ROUTES, &ns, &name).is_none();
    write(store, &ROUTES, &ns, &name, route_json, now);
    if new_route {
        let msg = format!("Created Route {name:?}");
        crate::events::normal(
            s,
            &ns,
            &crate::events::Involved::service(&name),
            "Created",
            &msg,
        );
    }
}

/// Deletes everything a Service owns.
pub fn cascade_delete(store: &Store, ns: &str, service: &str) {
    for r in [CONFIGURATIONS, ROUTES] {
        let _ = store.delete(&r, ns, service);
    }
    for r in [REVISIONS, PLACEMENTS, INSTANCES] {
        let (items, _) = store.list(&r, Some(ns));
        for o in items {
            let owned = o.label(SERVICE_LABEL) == Some(service)
                || o["spec"]["service"].as_str() == Some(service);
            if owned {
                let _ = store.delete(&r, ns, o.name());
            }
        }
    }
    // Its events go too, so a new Service of the same name starts with a clean history.
    let revision_prefix = format!("{service}-");
    for e in store.list(&kantai_api::resources::EVENTS, Some(ns)).0 {
        let o = &e["involvedObject"];
        let name = o["name"].as_str().unwrap_or("");
        let owned = match o["kind"].as_str() {
            Some("Service" | "Configuration" | "Route") => name == service,
            Some("Revision") => name.starts_with(&revision_prefix),
            _ => false,
        };
        if owned {
            let _ = store.delete(&kantai_api::resources::EVENTS, ns, e.name());
        }
    }
}

/// A revision's generation, name and Ready condition (status, reason, message).
type RevisionSummary = (i64, String, ConditionStatus, Option<String>, Option<String>);

struct InstanceInfo {
    node: String,
    ready: bool,
    failure: Option<(String, String)>,
}

fn update_statuses(s: &Shared, now: &str) {
    let store = &s.store;
    // Instances by (namespace, revision).
    let mut by_revision: HashMap<(String, String), Vec<InstanceInfo>> = HashMap::new();
    for v in store.list(&INSTANCES, None).0 {
        let Ok(i) = fleet::from_json::<Instance>(&v) else {
            continue;
        };
        let st = i.status.unwrap_or_default();
        let failure = (st.restarts >= 2 || st.phase == fleet::Phase::Failed).then(|| {
            let code = st.last_exit_code.unwrap_or(1);
            // An instance that cannot start says why as Kubernetes' waiting reason does
            // (ErrImagePull, CreateContainerConfigError); a crash loop is Knative's ExitCodeN.
            let reason = match &st.reason {
                Some(r) if st.phase == fleet::Phase::Failed && !r.is_empty() => r.clone(),
                _ => format!("ExitCode{code}"),
            };
            (
                reason,
                st.message
                    .clone()
                    .unwrap_or_else(|| format!("container exited with code {code}")),
            )
        });
        by_revision
            .entry((i.metadata.namespace().to_owned(), i.spec.revision.clone()))
            .or_default()
            .push(InstanceInfo {
                node: i.spec.node,
                ready: st.ready && st.phase == fleet::Phase::Running,
                failure,
            });
    }
    let ready_nodes: Vec<String> = store
        .list(&NODES, None)
        .0
        .iter()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .map(|n| n.name().to_owned())
        .collect();
    let any_node_ready = !ready_nodes.is_empty();
    let acks = s.route_acks.lock().clone();
    let decisions = s.decisions.lock().clone();

    // Revisions, and per configuration the revisions by generation.
    let mut per_config: BTreeMap<(String, String), Vec<RevisionSummary>> = BTreeMap::new();
    let revisions = store.list(&REVISIONS, None).0;
    s.digests
        .retain(&revisions.iter().map(|v| Digests::key(v)).collect());
    for v in revisions {
        let Some(Object::Revision(rev)) = serving(&v) else {
            continue;
        };
        let images = s.digests.observe(&s.config, &v);
        let awaiting = matches!(images, Outcome::Awaiting(_));
        let (ns, name) = (
            rev.metadata.namespace().to_owned(),
            rev.metadata.name.clone(),
        );
        let instances = by_revision.get(&(ns.clone(), name.clone()));
        let ready = instances.map_or(0, |is| is.iter().filter(|i| i.ready).count() as u32);
        let decision = decisions.get(&(ns.clone(), name.clone()));
        // Level-triggered: resolved against the stored Secrets and ConfigMaps on every
        // pass, so the problem clears by itself once the object (or key) exists.
        let problems = crate::configs::problems(store, &ns, &rev);
        for problem in &problems {
            crate::events::warn_once(
                s,
                &ns,
                &crate::events::Involved::revision(&name),
                derive::CREATE_CONTAINER_CONFIG_ERROR,
                problem,
            );
        }
        let config_problem = (!problems.is_empty()).then(|| problems.join("; "));
        // Ready once an instance was ready, or once the autoscaler's initial scale was reached
        // (at once for initial-scale 0), as Knative's ScaleTargetInitialized.
        // A revision whose images are not resolved has no instances to be initialized with,
        // whatever the autoscaler counts.
        let ever_ready = ready > 0
            || rev
                .status
                .as_ref()
                .is_some_and(|st| st.conditions.is_true("Ready"))
            || (!awaiting && config_problem.is_none() && decision.is_some_and(|d| d.initialized));
        let placement = store
            .get(&PLACEMENTS, &ns, &name)
            .and_then(|p| fleet::from_json::<Placement>(&p).ok());
        let obs = RevisionObservation {
            ready,
            desired: decision.map_or(0, |d| d.desired),
            ever_ready,
            failure: match &images {
                Outcome::Awaiting(Some(why)) => Some((CONTAINER_MISSING.to_owned(), why.clone())),
                _ => instances.and_then(|is| is.iter().find_map(|i| i.failure.clone())),
            },
            unschedulable: placement.as_ref().map_or(0, |p| p.spec.unschedulable),
            active: decision.and_then(|d| match d.activity {
                kantai_autoscaler::Activity::Active => Some(true),
                kantai_autoscaler::Activity::Inactive => Some(false),
                kantai_autoscaler::Activity::Activating => None,
            }),
            config_problem,
        };
        let mut status = derive::revision_status(&rev, &obs, now);
        if let Outcome::Record(statuses) = images {
            status.container_statuses = statuses;
        }
        // A revision that cannot start says so in an event once, when it starts failing
        // (or fails for another reason), as Knative's revision reconciler does.
        let healthy = |c: &kantai_model::serving::Conditions| {
            c.get("ContainerHealthy")
                .filter(|c| c.status == ConditionStatus::False)
                .map(|c| (c.reason.clone(), c.message.clone()))
        };
        let before = rev.status.as_ref().and_then(|st| healthy(&st.conditions));
        // A missing Secret or ConfigMap has its own events above, one per problem.
        if let Some((reason, message)) = healthy(&status.conditions)
            && before.as_ref().map(|b| &b.0) != Some(&reason)
            && reason.as_deref() != Some(derive::CREATE_CONTAINER_CONFIG_ERROR)
        {
            crate::events::record(
                s,
                &ns,
                &crate::events::Involved::revision(&name),
                reason.as_deref().unwrap_or("ContainerUnhealthy"),
                message.as_deref().unwrap_or("its container cannot start"),
            );
        }
        let ready_cond = status.conditions.get("Ready").cloned().unwrap_or_default();
        write_status(
            store,
            &REVISIONS,
            &ns,
            &name,
            serde_json::to_value(&status).unwrap_or_default(),
        );
        if let Some(cfg) = rev.metadata.labels.get(derive::CONFIGURATION_LABEL) {
            let generation = rev
                .metadata
                .labels
                .get(CONFIGURATION_GENERATION_LABEL)
                .and_then(|g| g.parse().ok())
                .unwrap_or(0);
            per_config
                .entry((ns.clone(), cfg.clone()))
                .or_default()
                .push((
                    generation,
                    name.clone(),
                    ready_cond.status,
                    ready_cond.reason,
                    ready_cond.message,
                ));
        }
        // Placement status: ready instances per node.
        if let Some(p) = placement {
            let mut counts: BTreeMap<String, u32> = BTreeMap::new();
            for i in instances.into_iter().flatten().filter(|i| i.ready) {
                *counts.entry(i.node.clone()).or_default() += 1;
            }
            let mut conditions = p
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            if p.spec.unschedulable > 0 {
                conditions.set(
                    "Scheduled",
                    kantai_model::serving::ConditionStatus::False,
                    Some("Unschedulable"),
                    Some(&format!(
                        "{} instance(s) fit on no node under placement policy {}: no ready node has room (instances, CPU or memory)",
                        p.spec.unschedulable, p.spec.policy
                    )),
                    now,
                );
            } else {
                conditions.set(
                    "Scheduled",
                    kantai_model::serving::ConditionStatus::True,
                    None,
                    None,
                    now,
                );
            }
            let st = PlacementStatus {
                nodes: counts
                    .into_iter()
                    .map(|(node, count)| NodeCount { node, count })
                    .collect(),
                conditions,
            };
            if p.status.as_ref() != Some(&st) {
                write_status(
                    store,
                    &PLACEMENTS,
                    &ns,
                    &name,
                    serde_json::to_value(&st).unwrap_or_default(),
                );
            }
        }
    }

    // Configurations.
    let mut latest_ready: HashMap<(String, String), String> = HashMap::new();
    let mut config_status = HashMap::new();
    for v in store.list(&CONFIGURATIONS, None).0 {
        let Some(Object::Configuration(cfg)) = serving(&v) else {
            continue;
        };
        let (ns, name) = (
            cfg.metadata.namespace().to_owned(),
            cfg.metadata.name.clone(),
        );
        let mut revs = per_config
            .remove(&(ns.clone(), name.clone()))
            .unwrap_or_default();
        revs.sort_by_key(|r| r.0);
        let Some(latest) = revs.last() else {
            continue;
        };
        let lr = revs
            .iter()
            .rev()
            .find(|r| r.2 == ConditionStatus::True)
            .map(|r| r.1.clone());
        let created = RevisionReadiness {
            name: latest.1.clone(),
            ready: latest.2,
            reason: latest.3.clone(),
            message: latest.4.clone(),
        };
        let st = derive::configuration_status(&cfg, &created, lr.as_deref(), now);
        if let Some(lr) = &lr {
            latest_ready.insert((ns.clone(), name.clone()), lr.clone());
        }
        write_status(
            store,
            &CONFIGURATIONS,
            &ns,
            &name,
            serde_json::to_value(&st).unwrap_or_default(),
        );
        config_status.insert((ns, name), st);
    }

    // Routes.
    let mut route_status = HashMap::new();
    for v in store.list(&ROUTES, None).0 {
        let Some(Object::Route(route)) = serving(&v) else {
            continue;
        };
        let (ns, name) = (
            route.metadata.namespace().to_owned(),
            route.metadata.name.clone(),
        );
        let lookup = |cfg: &str| latest_ready.get(&(ns.clone(), cfg.to_owned())).cloned();
        let exists = |rev: &str| store.get(&REVISIONS, &ns, rev).is_some();
        let resolved = derive::resolve_traffic(&route, &s.config.domain, &lookup, &exists);
        // The gateways serve the route once every ready node has programmed its traffic.
        let key = (ns.clone(), name.clone());
        let wanted = s.traffic_versions.lock().get(&key).copied().unwrap_or(0);
        let programmed = any_node_ready
            && ready_nodes
                .iter()
                .all(|n| acks.get(n).copied().unwrap_or(0) >= wanted);
        let mut st = derive::route_status(&route, &s.config.domain, &resolved, programmed, now);
        let traffic_changed = route.status.as_ref().map(|o| &o.traffic) != Some(&st.traffic);
        if traffic_changed && programmed {
            // The acks above are for the traffic stored before this pass; the traffic written
            // now is on no gateway yet, so it must not be announced Ready in the same breath.
            st = derive::route_status(&route, &s.config.domain, &resolved, false, now);
        }
        write_status(
            store,
            &ROUTES,
            &ns,
            &name,
            serde_json::to_value(&st).unwrap_or_default(),
        );
        if traffic_changed
            && let Some(v) = store.get(&ROUTES, &ns, &name)
            && let Some(rv) = v.resource_version().and_then(|r| r.parse().ok())
        {
            s.traffic_versions.lock().insert(key, rv);
            // Look again once the nodes have it.
            s.changed();
        }
        route_status.insert((ns, name), st);
    }

    // Services.
    for v in store.list(&SERVICES, None).0 {
        let Some(Object::Service(svc)) = serving(&v) else {
            continue;
        };
        let key = (
            svc.metadata.namespace().to_owned(),
            svc.metadata.name.clone(),
        );
        let (Some(cs), Some(rs)) = (config_status.get(&key), route_status.get(&key)) else {
            continue;
        };
        if svc.status.as_ref().is_some_and(|st| {
            st.conditions
                .get("ConfigurationsReady")
                .and_then(|c| c.reason.as_deref())
                == Some("RevisionNameReused")
        }) && svc.status.as_ref().and_then(|s| s.observed_generation) == svc.metadata.generation
        {
            continue;
        }
        let st = derive::service_status(&svc, cs, rs, now);
        write_status(
            store,
            &SERVICES,
            &key.0,
            &key.1,
            serde_json::to_value(&st).unwrap_or_default(),
        );
    }
}

/// Keeps every Node's `Ready` condition in line with its agent's reports, and gives up on
/// the instances of nodes that stopped reporting, as Kubernetes' node lifecycle controller
/// does: every [`lifecycle::PASS_INTERVAL`] the pure [`kantai_model::lifecycle::Lifecycle`] judges the nodes, and this
/// loop writes what it decided. A node silent for [`lifecycle::READY_TIMEOUT`] (of time the
/// control plane could hear it) is NotReady; its instances are then marked not ready, so
/// that no gateway sends them requests and the autoscaler does not count them, and placed
/// elsewhere, at the eviction rate and not at all while most nodes are silent together. An
/// agent that was only cut off writes their status again when it is back.
pub async fn watch_nodes(s: Arc<Shared>) {
    // When each node's heartbeat time was last written.
    let mut written: HashMap<String, std::time::Instant> = HashMap::new();
    loop {
        let instances = s.store.list(&INSTANCES, None).0;
        lifecycle_pass(&s, &instances);
        mark_lost_instances(&s, &instances);
        write_node_statuses(&s, &mut written);
        tokio::time::sleep(lifecycle::PASS_INTERVAL).await;
    }
}

/// One pass of the node lifecycle, and what it decided, done.
fn lifecycle_pass(s: &Shared, instances: &[Arc<Value>]) {
    let mut registered: Vec<String> = s
        .store
        .list(&NODES, None)
        .0
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    registered.sort();
    let mut named: Vec<String> = instances
        .iter()
        .filter_map(|i| i["spec"]["node"].as_str().map(str::to_owned))
        .collect();
    named.sort();
    named.dedup();
    // Reports the API received but the scaling loop has not read yet.
    let backlog = s.reports.capacity() < s.reports.max_capacity();
    let now = s.since_epoch(tokio::time::Instant::now());
    let (pass, silent, config) = {
        let mut l = s.lifecycle.lock();
        let pass = l.pass(&PassInput {
            now,
            registered: &registered,
            named: &named,
            backlog,
        });
        let silent: HashMap<String, Duration> = pass
            .became_not_ready
            .iter()
            .chain(&pass.evict)
            .map(|n| (n.clone(), l.silent(n)))
            .collect();
        (pass, silent, l.config().clone())
    };
    let silent_for = |n: &str| silent.get(n).copied().unwrap_or_default();
    if let Some(gap) = pass.stall {
        warn!(
            "the control plane did not run for {gap:.1?} (its node checks run every {:?}): the nodes' silence meanwhile is not counted against them, and no node is judged until their queued reports had {:?} to be read, so nothing is moved because of the stall; check the control plane's host for a stopped process (SIGSTOP), a paused VM, swapping or CPU starvation",
            config.pass_interval, config.resume_hold
        );
    }
    for n in &pass.became_not_ready {
        warn!(node = %n, "node {n} stopped reporting {:.1?} ago: marking it NotReady", silent_for(n));
    }
    for n in &pass.became_ready {
        info!(node = %n, "node {n} is reporting again: Ready, its instances count again");
    }
    let every = |rate: f64| Duration::from_secs_f64(1.0 / rate);
    let (state, not_ready, resumed) = {
        let l = s.lifecycle.lock();
        let not_ready = registered.iter().filter(|n| !l.ready(n)).count();
        let resumed = pass
            .state
            .as_ref()
            .is_some_and(|c| c.replacing && l.eviction_rate(c.from, c.nodes) == 0.0);
        (l.state(), not_ready, resumed)
    };
    let share = format!("{not_ready} of {} nodes", registered.len());
    if let Some(change) = &pass.state {
        let (to, from) = (change.to.as_str(), change.from.as_str());
        if change.to == FleetState::Normal {
            info!(
                from,
                to,
                "{share} are not ready (fleet state {to}, was {from}): the instances of nodes still silent are replaced again, one node every {:.0?}, each after a fresh {:?} of silence",
                every(config.eviction_rate),
                config.ready_timeout
            );
        } else if change.replacing {
            warn!(
                from,
                to,
                "{share} stopped reporting (fleet state {to}): so many at once is more likely a fault between the control plane and the nodes than that many nodes failing, so replacing their instances slows to one node every {:.0?}; check the control plane's network to the nodes and the agents' logs (\"cannot report load\")",
                every(config.secondary_eviction_rate)
            );
        } else {
            warn!(
                from,
                to,
                "{share} stopped reporting (fleet state {to}): so many at once is more likely a fault between the control plane and the nodes than that many nodes failing, so kantai suspends replacing their instances: they are not marked not ready and not moved, and gateways keep sending them requests; check the control plane's network to the nodes and the agents' logs (\"cannot report load\")"
            );
        }
    }
    if resumed {
        for n in &registered {
            crate::events::normal(
                s,
                "default",
                &crate::events::Involved::node(n),
                "ReplacementResumed",
                &format!(
                    "{share} are not ready (fleet state {}): the instances of nodes still silent are replaced again, one node every {:.0?}.",
                    state.as_str(),
                    every(config.eviction_rate)
                ),
            );
        }
    }
    for n in &pass.suspended {
        crate::events::record(
            s,
            "default",
            &crate::events::Involved::node(n),
            "ReplacementSuspended",
            &format!(
                "Node {n} stopped reporting along with most of the fleet ({share} not ready, fleet state {}): its instances are not marked not ready and not moved, and gateways keep sending them requests. Replacement resumes when fewer than {:.0}% of the nodes (or fewer than {}) are silent. Check the control plane's network to the nodes.",
                state.as_str(),
                config.unhealthy_threshold * 100.0,
                lifecycle::MIN_UNHEALTHY
            ),
        );
    }
    for n in &pass.rate_limited {
        warn!(
            node = %n,
            "node {n} is NotReady, but another node's instances were given up on less than {:.0?} ago: its instances stay where they are, and count, until the eviction rate allows",
            every(config.eviction_rate)
        );
    }
    for n in &pass.evict {
        warn!(
            node = %n,
            "node {n} has been silent for {:.1?}: marking its instances not ready and placing them on other nodes",
            silent_for(n)
        );
    }
    if !pass.evict.is_empty() || !pass.became_ready.is_empty() || pass.state.is_some() {
        s.changed();
    }
    for v in instances.iter().filter(|i| {
        i["spec"]["node"]
            .as_str()
            .is_some_and(|n| pass.orphaned.iter().any(|o| o == n))
    }) {
        let (ns, name) = (v.namespace_or_default(), v.name());
        let node = v["spec"]["node"].as_str().unwrap_or_default();
        info!(
            instance = %name,
            node,
            "removing instance object {ns}/{name}: node {node} has had no Node object for {:?} (removed for good)",
            config.orphan_grace
        );
        match s.store.delete(&INSTANCES, ns, name) {
            Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => {}
            Err(e) => warn!("cannot remove instance object {ns}/{name}: {e}"),
        }
    }
}

fn write_node_statuses(s: &Shared, written: &mut HashMap<String, std::time::Instant>) {
    let seen = s.nodes_seen.lock().clone();
    for v in s.store.list(&NODES, None).0 {
        let Ok(node) = fleet::from_json::<fleet::Node>(&v) else {
            continue;
        };
        let name = node.metadata.name.clone();
        let last = seen.get(&name).copied();
        let (ready, serving) = {
            let l = s.lifecycle.lock();
            (l.ready(&name), l.serving(&name))
        };
        let mut st = node.status.clone().unwrap_or_default();
        let stamp = kantai_api::time::now();
        if ready {
            st.conditions.set(
                "Ready",
                ConditionStatus::True,
                Some("AgentReady"),
                Some("The node agent is reporting."),
                &stamp,
            );
        } else {
            let message = if serving {
                "The node agent stopped reporting. Its instances are kept for now: the eviction rate limit, or most of the fleet silent at once (see the node's events)."
            } else {
                "The node agent stopped reporting. Its instances are not counted and are placed on other nodes."
            };
            st.conditions.set(
                "Ready",
                ConditionStatus::False,
                Some("NodeStatusUnknown"),
                Some(message),
                &stamp,
            );
        }
        st.last_heartbeat_time = last.map(kantai_api::time::rfc3339);
        // A heartbeat alone is written every HEARTBEAT_WRITE at most: every write is an
        // event for every agent's watch and a place in the store's history, and a report
        // a second from each node would make those the bulk of both (Kubernetes moved
        // heartbeats to Leases for the same reason). Readiness changes go out at once.
        let only_heartbeat = node.status.as_ref().is_some_and(|old| {
            old.conditions == st.conditions && old.last_heartbeat_time.is_some()
        });
        let recently = written
            .get(&name)
            .is_some_and(|t| t.elapsed() < HEARTBEAT_WRITE);
        if only_heartbeat && recently {
            continue;
        }
        if node.status.as_ref() != Some(&st) {
            written.insert(name.clone(), std::time::Instant::now());
            if ready
                != node
                    .status
                    .as_ref()
                    .is_some_and(|x| x.conditions.is_true("Ready"))
            {
                info!(node = %name, ready, "node readiness changed");
                s.changed();
            }
            write_status(
                &s.store,
                &NODES,
                "",
                &name,
                serde_json::to_value(&st).unwrap_or_default(),
            );
        }
    }
}

/// How often a Node's `lastHeartbeatTime` is written when nothing else changed.
const HEARTBEAT_WRITE: Duration = Duration::from_secs(30);

/// Marks not ready every instance on a node the lifecycle gave up on.
fn mark_lost_instances(s: &Shared, instances: &[Arc<Value>]) {
    for v in instances {
        if v["status"]["ready"] != true {
            continue;
        }
        let Some(node) = v["spec"]["node"].as_str() else {
            continue;
        };
        if s.node_serving(node) {
            continue;
        }
        let Some(ns) = v.namespace() else {
            continue;
        };
        let name = v.name();
        info!(instance = %name, node, "the instance's node stopped reporting; marking it not ready");
        let mut st = v["status"].clone();
        st["ready"] = Value::Bool(false);
        st["message"] = Value::from(format!(
            "node {node} stopped reporting: the instance is not counted and gets no requests until it does"
        ));
        write_status(&s.store, &INSTANCES, ns, name, st);
    }
}
