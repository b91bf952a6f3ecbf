//! This node's instances: started and stopped to match the placements, mirrored into the
//! data plane at once (a local instance serves as soon as it is ready) and into Instance
//! objects through the API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kantai_api::resources::INSTANCES;
use kantai_model::fleet::{self, Instance, InstanceSpec, InstanceStatus, Phase};
use kantai_model::manifest;
use kantai_model::meta::ObjectMeta;
use kantai_model::node::Node as DocNode;
use kantai_model::serving::Object;
use kantai_model::serving::derive::{CONFIGURATION_LABEL, SERVICE_LABEL};
use kantai_runtime::{LogBuffer, State};
use tracing::{debug, info, warn};

use crate::{Agent, desired_here};

/// An instance this agent runs (or failed to start).
pub struct Local {
    /// Namespace and revision.
    pub key: (String, String),
    /// The runtime's handle; taken when the instance is stopped.
    handle: Option<kantai_runtime::Instance>,
    /// Being drained and stopped.
    stopping: bool,
    /// Whether it is ready (for choosing which to stop).
    ready: bool,
    /// When it was started (newest are stopped first).
    started: SystemTime,
    /// Its output.
    logs: Option<Arc<LogBuffer>>,
    /// The revision's timeout: the drain and stop grace period.
    grace: Duration,
    /// The Instance object as last written (status included).
    object: serde_json::Value,
    /// When `object` was last written (or attempted): a stored status that still differs a
    /// while later was lost, and is written again.
    written: std::time::Instant,
    /// Why it cannot start, while it cannot: requests held for its revision are answered
    /// with it at once.
    pub failure: Option<String>,
}

/// Starts and stops instances to match this node's share of every placement.
pub fn reconcile(agent: &Arc<Agent>) {
    let _pass = agent.reconciling.lock();
    let desired = desired_here(agent);
    let mut to_start = Vec::new();
    let mut to_stop = Vec::new();
    {
        let local = agent.local.lock();
        let mut running: HashMap<(String, String), Vec<(&String, &Local)>> = HashMap::new();
        for (name, l) in local.iter().filter(|(_, l)| !l.stopping) {
            running.entry(l.key.clone()).or_default().push((name, l));
        }
        for (key, want) in &desired {
            let have = running.get(key).map_or(0, Vec::len) as u32;
            for _ in have..*want {
                to_start.push(key.clone());
            }
        }
        for (key, mut list) in running {
            let want = desired.get(&key).copied().unwrap_or(0) as usize;
            if list.len() > want {
                // Stop the unready first, then the newest.
                list.sort_by_key(|(_, l)| (l.ready, std::cmp::Reverse(l.started)));
                to_stop.extend(list[..list.len() - want].iter().map(|(n, _)| (*n).clone()));
            }
        }
    }
    for key in to_start {
        start(agent, key);
    }
    for name in to_stop {
        stop(agent, &name);
    }
    keep_standbys(agent, &desired);
    reassert(agent);
    remove_foreign(agent);
}

/// The instances this node decided to start for `key`'s held requests (`want` of them
/// here in all), started now: the request waits for them, and the next reconcile pass
/// (after the data plane's tables are rebuilt) would start them a millisecond or more later.
pub(crate) fn start_decided(agent: &Arc<Agent>, key: &(String, String), want: u32) {
    let _pass = agent.reconciling.lock();
    let have = agent
        .local
        .lock()
        .values()
        .filter(|l| !l.stopping && l.key == *key)
        .count() as u32;
    for _ in have..want {
        start(agent, key.clone());
    }
}

/// At most this many containers are kept created ahead of demand on a node: each holds a
/// mounted root and a waiting init process (a few MB), and the revisions most likely to be
/// asked for again are the few that ran here last.
const MAX_STANDBYS: usize = 4;

/// Keeps one container created, not started, for each revision that ran on this node and
/// is at zero here, so its next cold start is `runc start` (milliseconds) instead of a
/// whole `runc run`; drops those whose revision went or that are over the bound.
fn keep_standbys(agent: &Arc<Agent>, desired: &HashMap<(String, String), u32>) {
    let snap = agent.cache.snapshot();
    // Only revisions that take traffic can be asked for: an old revision no route names
    // keeps nothing created.
    let routed: std::collections::HashSet<(String, String)> = snap
        .routes
        .values()
        .flat_map(|r| {
            let ns = crate::ns_of(r);
            r["status"]["traffic"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((ns.clone(), t["revisionName"].as_str()?.to_owned())))
                .collect::<Vec<_>>()
        })
        .collect();
    agent
        .ran_here
        .lock()
        .retain(|k| snap.revisions.contains_key(k));
    let mut gone = Vec::new();
    let mut failed = Vec::new();
    {
        let mut standby = agent.standby.lock();
        let keys: Vec<(String, String)> = standby.keys().cloned().collect();
        for k in keys {
            if !snap.revisions.contains_key(&k) || !routed.contains(&k) {
                gone.extend(standby.remove(&k));
            } else if standby
                .get(&k)
                .is_some_and(|(p, _)| !current_config(agent, &k, p))
            {
                // Created with Secret or ConfigMap values that changed since: its env would
                // be the old one. The next pass creates one with the new values.
                gone.extend(standby.remove(&k));
            } else if standby
                .get(&k)
                .is_some_and(|(_, h)| h.state().borrow().stopped)
            {
                // Its creation failed: not tried again for this revision, so a container
                // that cannot be created is not made and lost on every pass.
                warn!(revision = %k.1, "no container is created ahead of demand for this revision any more: the last one ended before its start");
                standby.remove(&k);
                failed.push(k);
            }
        }
    }
    // Locked after `standby` is let go: the other pass below takes them the other way.
    agent.ran_here.lock().retain(|k| !failed.contains(k));
    let wanted: Vec<(String, String)> = {
        let ran = agent.ran_here.lock();
        let local = agent.local.lock();
        let standby = agent.standby.lock();
        let mut room = MAX_STANDBYS.saturating_sub(standby.len());
        let mut wanted = Vec::new();
        for k in ran.iter() {
            if room == 0 {
                break;
            }
            let at_zero = desired.get(k).copied().unwrap_or(0) == 0;
            let running = local.values().any(|l| l.key == *k && !l.stopping);
            if at_zero && !running && !standby.contains_key(k) && routed.contains(k) {
                wanted.push(k.clone());
                room -= 1;
            }
        }
        wanted
    };
    for k in wanted {
        let Some(planned) = plan(agent, &k) else {
            continue;
        };
        if agent.runtime.runs_as_process(&planned.spec.container.image) {
            // Processes start in about a millisecond already; nothing to create.
            agent.ran_here.lock().remove(&k);
            continue;
        }
        let Some(handle) = agent.runtime.standby(planned.spec.clone()) else {
            agent.ran_here.lock().remove(&k);
            continue;
        };
        info!(instance = %planned.name, revision = %k.1, "creating a container ahead of demand");
        agent.standby.lock().insert(k, (planned, handle));
    }
    for (planned, handle) in gone {
        info!(instance = %planned.name, "removing the container created ahead of demand: its revision is gone, takes no traffic, or its Secret or ConfigMap values changed");
        tokio::spawn(handle.stop_within(Duration::from_secs(1)));
    }
}

/// How long an Instance object naming this node, that this agent does not run, stays before
/// it is removed: the object of an instance just stopped may still be in the cache (its
/// delete's event on the way), and the grace lets such an object go by itself.
const FOREIGN_GRACE: Duration = Duration::from_secs(3);

/// Instance objects naming this node are this agent's: one it does not run (left by an
/// earlier run, or written by another client) would have gateways send requests to nothing,
/// and is removed once it has been seen for `FOREIGN_GRACE`. An instance the agent starts
/// is in `local` before its object is first written, so it is never taken for one.
fn remove_foreign(agent: &Arc<Agent>) {
    let snap = agent.cache.snapshot();
    let now = std::time::Instant::now();
    let due: Vec<(String, String)> = {
        let local = agent.local.lock();
        let mut foreign = agent.foreign.lock();
        let seen: Vec<(String, String)> = snap
            .instances
            .iter()
            .filter(|(_, i)| i["spec"]["node"].as_str() == Some(agent.name.as_str()))
            .map(|(k, _)| k.clone())
            .filter(|(ns, name)| local.get(name).is_none_or(|l| l.key.0 != *ns))
            .collect();
        // Forget what went or became ours: its grace starts over if it comes back.
        foreign.retain(|k, _| seen.contains(k));
        let mut due = Vec::new();
        for k in seen {
            let first = foreign.entry(k.clone()).or_insert(now);
            if now.duration_since(*first) >= FOREIGN_GRACE {
                // Once per grace at most: a delete that fails is tried again later.
                *first = now;
                due.push(k);
            }
        }
        due
    };
    for (ns, name) in due {
        info!(
            instance = %name,
            namespace = %ns,
            node = %agent.name,
            "removing instance object {ns}/{name}: it names node {}, whose agent does not run it (left by an earlier run, or written by another client)",
            agent.name
        );
        let agent = agent.clone();
        tokio::spawn(async move {
            if let Err(e) = agent.client.delete(INSTANCES, &ns, &name).await
                && !e.is_not_found()
            {
                warn!(instance = %name, "cannot remove the instance object: {e}");
            }
        });
    }
}

/// How long a status write may take to come back through the watch before the agent
/// writes it again.
const STATUS_SETTLE: Duration = Duration::from_secs(2);

/// Instance objects are this agent's to keep: one missing from the API (a control plane
/// that lost it in a crash, or an object someone deleted) is written again, and so is a
/// status the API does not show a while after it was written (a write that failed or was
/// overtaken), so the control plane never counts a serving instance as Pending.
fn reassert(agent: &Arc<Agent>) {
    let snap = agent.cache.snapshot();
    let stale: Vec<(String, String, serde_json::Value)> = agent
        .local
        .lock()
        .iter()
        .filter(|(name, l)| {
            !l.stopping
                && l.written.elapsed() > STATUS_SETTLE
                && snap
                    .instances
                    .get(&(l.key.0.clone(), (*name).clone()))
                    .is_some_and(|stored| stored.get("status") != l.object.get("status"))
        })
        .map(|(name, l)| (l.key.0.clone(), name.clone(), l.object.clone()))
        .collect();
    for (ns, name, obj) in stale {
        if let Some(l) = agent.local.lock().get_mut(&name) {
            l.written = std::time::Instant::now();
        }
        let agent = agent.clone();
        tokio::spawn(async move {
            // A newer write (or a stop) since the check makes this one stale: skip it.
            let current = agent
                .local
                .lock()
                .get(&name)
                .is_some_and(|l| !l.stopping && l.object == obj);
            if !current {
                return;
            }
            tracing::info!(instance = %name, "the stored status is behind; writing it again");
            if let Err(e) = agent
                .client
                .replace_status(INSTANCES, &ns, &name, &obj)
                .await
            {
                warn!(instance = %name, "cannot update the instance status: {e}");
            }
        });
    }
    let missing: Vec<(String, String)> = agent
        .local
        .lock()
        .iter()
        .filter(|(name, l)| {
            !l.stopping
                && l.started.elapsed().unwrap_or_default() > Duration::from_secs(2)
                && !snap
                    .instances
                    .contains_key(&(l.key.0.clone(), (*name).clone()))
        })
        .map(|(name, l)| (l.key.0.clone(), name.clone()))
        .collect();
    for (ns, name) in missing {
        let Some(obj) = agent.local.lock().get(&name).map(|l| l.object.clone()) else {
            continue;
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            if let Err(e) = agent.client.replace(INSTANCES, &ns, &name, &obj).await {
                warn!(instance = %name, "cannot re-register the instance: {e}");
            }
        });
    }
}

/// An instance of a revision, ready to be started: what the runtime runs and the object the
/// agent writes for it.
pub struct Planned {
    name: String,
    spec: kantai_runtime::InstanceSpec,
    object: Instance,
    grace: Duration,
    cc: u32,
}

/// Plans an instance of a revision from the cache (`None` while the revision is not there).
fn plan(agent: &Arc<Agent>, key: &(String, String)) -> Option<Planned> {
    let snap = agent.cache.snapshot();
    // The placement may arrive before the revision; the next pass starts it.
    let rev_json = snap.revisions.get(key)?;
    let Some(Object::Revision(rev)) = manifest::read_one(
        &DocNode::from_json(rev_json),
        0,
        &kantai_model::ServingConfig::default(),
    )
    .object
    else {
        warn!(revision = %key.1, "cannot read the revision");
        return None;
    };
    let container = rev.spec.containers.first().cloned()?;
    // An instance that needs Secret or ConfigMap values waits for them (the data-plane
    // pass tells its requests why once that lasts).
    let config = match agent.configs.readiness(key, needs_config(&rev)) {
        crate::configs::Readiness::Start(c) => c,
        crate::configs::Readiness::Wait => return None,
    };
    let security = rev.spec.security_for(&container);
    // The revision's tag resolved to a digest when it was created: every instance runs
    // that image, wherever the tag points now.
    let pinned = rev
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.first())
        .and_then(|c| c.image_digest.clone());
    let labels = &rev.metadata.labels;
    let service = labels
        .get(SERVICE_LABEL)
        .or_else(|| labels.get(CONFIGURATION_LABEL))
        .cloned()
        .unwrap_or_else(|| key.1.clone());
    let configuration = labels
        .get(CONFIGURATION_LABEL)
        .cloned()
        .unwrap_or_else(|| service.clone());
    let name = format!(
        "{service}-{}-{}",
        agent.name,
        kantai_model::serving::naming::random_suffix(&mut rand::rng())
    );
    let settings = kantai_driver::RevisionSettings::of(&rev, &agent.config).0;
    let (grace, cc) = (settings.timeout, settings.container_concurrency);
    let image = container.image.clone();
    let labels = fleet::instance_labels(&service, &key.1, &agent.name);
    let pod = kantai_runtime::PodFields {
        // The Instance object's uid is the API's to give, once it is written.
        uid: String::new(),
        labels: labels.clone(),
        annotations: rev.metadata.annotations.clone(),
        host_ip: agent.address.to_string(),
        service_account: rev
            .spec
            .extra
            .get("serviceAccountName")
            .and_then(|v| v.as_str())
            .unwrap_or("default")
            .to_owned(),
    };
    let spec = kantai_runtime::InstanceSpec {
        name: name.clone(),
        namespace: key.0.clone(),
        service: service.clone(),
        configuration,
        revision: key.1.clone(),
        node: agent.name.clone(),
        container,
        image: pinned,
        security,
        grace,
        volumes: rev.spec.volumes.clone(),
        config,
        pod,
    };
    let object = Instance {
        metadata: ObjectMeta {
            name: name.clone(),
            namespace: Some(key.0.clone()),
            labels,
            ..ObjectMeta::default()
        },
        spec: InstanceSpec {
            revision: key.1.clone(),
            service,
            node: agent.name.clone(),
            container_concurrency: cc,
            image,
        },
        status: Some(InstanceStatus::default()),
    };
    Some(Planned {
        name,
        spec,
        object,
        grace,
        cc,
    })
}

/// Whether a revision refers to any Secret or ConfigMap (its instances need the config the
/// control plane resolves for it, and the control plane sends one for exactly these).
fn needs_config(rev: &kantai_model::serving::Revision) -> bool {
    !kantai_model::serving::resolve::references(&rev.spec).is_empty()
}

/// Whether a planned instance has the config its revision has now.
fn current_config(agent: &Agent, key: &(String, String), planned: &Planned) -> bool {
    match agent.configs.get(key) {
        Some(now) => now == planned.spec.config,
        // None held: it needs none, or it was dropped (and the start waits anyway).
        None => planned.spec.config.as_ref() == &Default::default(),
    }
}

/// A revision's config changed: its running instances' files follow (their env does not,
/// as in Kubernetes).
pub(crate) fn update_config(
    agent: &Agent,
    key: &(String, String),
    config: &Arc<kantai_model::serving::resolve::ResolvedConfig>,
) {
    let local = agent.local.lock();
    for (name, l) in local.iter().filter(|(_, l)| l.key == *key && !l.stopping) {
        if let Some(h) = &l.handle {
            match h.update_config(config.clone()) {
                Ok(volumes) if volumes.is_empty() => {}
                Ok(volumes) => {
                    debug!(instance = %name, ?volumes, "the instance's Secret and ConfigMap files were updated");
                }
                Err(e) => {
                    warn!(instance = %name, "cannot update the instance's Secret and ConfigMap files: {e}");
                }
            }
        }
    }
}

fn start(agent: &Arc<Agent>, key: (String, String)) {
    // A container created ahead of demand starts in milliseconds: taken first.
    // One that ended on its own (its creation failed) is no use.
    // So is one created with a config that changed since: its env would be the old one.
    let taken = agent.standby.lock().remove(&key);
    let standby = match taken {
        Some((planned, h)) if !current_config(agent, &key, &planned) => {
            info!(instance = %planned.name, revision = %key.1, "removing the container created ahead of demand: the revision's Secret or ConfigMap values changed since");
            tokio::spawn(h.stop_within(Duration::from_secs(1)));
            None
        }
        other => other.filter(|(_, h)| !h.state().borrow().stopped),
    };
    let (planned, started) = match standby {
        Some((planned, mut handle)) => {
            info!(instance = %planned.name, revision = %key.1, "starting instance (created ahead of demand)");
            handle.release();
            (planned, Ok(handle))
        }
        None => {
            let Some(planned) = plan(agent, &key) else {
                return;
            };
            info!(instance = %planned.name, revision = %key.1, "starting instance");
            let started = agent.runtime.start(planned.spec.clone());
            (planned, started)
        }
    };
    agent.ran_here.lock().insert(key.clone());
    let Planned {
        name,
        object,
        grace,
        cc,
        ..
    } = planned;
    let (handle, state, logs, failure) = match started {
        Ok(h) => {
            let st = h.state();
            let logs = h.log_buffer();
            (Some(h), Some(st), Some(logs), None)
        }
        Err(e) => {
            warn!(instance = %name, "cannot start: {e}");
            (None, None, None, Some(e.to_string()))
        }
    };
    agent.local.lock().insert(
        name.clone(),
        Local {
            key: key.clone(),
            handle,
            stopping: false,
            ready: false,
            started: SystemTime::now(),
            logs,
            grace,
            object: fleet::to_json("Instance", &object),
            written: std::time::Instant::now(),
            failure: failure.clone(),
        },
    );
    tokio::spawn(mirror(agent.clone(), name, key, cc, object, state, failure));
}

/// Follows an instance's state: into the data plane at once, into its Instance object as
/// the API allows.
async fn mirror(
    agent: Arc<Agent>,
    name: String,
    key: (String, String),
    cc: u32,
    object: Instance,
    state: Option<tokio::sync::watch::Receiver<State>>,
    failure: Option<String>,
) {
    let ns = key.0.clone();
    let mut json = fleet::to_json("Instance", &object);
    if let Some(f) = &failure {
        agent
            .dp
            .set_revision_failure(&key.0, &key.1, Some(f.clone()));
        json["status"] = serde_json::to_value(InstanceStatus {
            phase: Phase::Failed,
            message: Some(f.clone()),
            reason: Some("StartError".to_owned()),
            ..InstanceStatus::default()
        })
        .unwrap_or_default();
    }
    // What is written is what the agent keeps re-asserting (a failure included).
    if let Some(l) = agent.local.lock().get_mut(&name) {
        l.object = json.clone();
        l.written = std::time::Instant::now();
    }
    let Some(mut rx) = state else {
        if let Err(e) = agent.client.replace(INSTANCES, &ns, &name, &json).await {
            warn!(instance = %name, "cannot register the instance: {e}");
        }
        return;
    };
    let mut port = None;
    let mut ready = false;
    let mut last_status: Option<InstanceStatus> = None;
    // The object is registered by the status writer, before any status: the data plane
    // does not wait for it (on a node far from the control plane that is a round trip).
    let status_tx = status_writer(agent.clone(), ns.clone(), name.clone(), json.clone());
    loop {
        let st = rx.borrow_and_update().clone();
        if st.port != port {
            if port.is_some() {
                agent.dp.remove_local(&name);
            }
            if let Some(p) = st.port {
                agent.dp.add_local(&name, &key.0, &key.1, p, cc);
            }
            port = st.port;
            ready = false;
        }
        let stopping = agent.local.lock().get(&name).is_none_or(|l| l.stopping);
        if st.ready != ready && !stopping {
            agent.dp.set_local_ready(&name, st.ready);
            ready = st.ready;
            if let Some(l) = agent.local.lock().get_mut(&name) {
                l.ready = ready;
            }
        }
        if st.stopped {
            break;
        }
        // A failure is told to this node's gateway at once (its held requests are answered
        // now, not after the status went round the control plane).
        let failure = (st.failed && !stopping).then(|| st.message.clone().unwrap_or_default());
        let changed = agent.local.lock().get_mut(&name).is_some_and(|l| {
            let changed = l.failure != failure;
            l.failure = failure.clone();
            changed
        });
        if changed {
            if failure.is_some() {
                agent
                    .dp
                    .set_revision_failure(&key.0, &key.1, failure.clone());
            }
            // Whether the revision still cannot start is everyone's instances' and the
            // revision's own status to say: the data-plane pass weighs them all.
            agent.changed.notify_one();
        }
        let status = InstanceStatus {
            phase: if stopping {
                Phase::Terminating
            } else if st.failed {
                Phase::Failed
            } else if st.ready || st.restarts > 0 || st.port.is_some() && !st.starting {
                Phase::Running
            } else {
                Phase::Pending
            },
            ready: st.ready && !stopping,
            address: st.port.map(|p| format!("127.0.0.1:{p}")),
            restarts: st.restarts,
            start_time: st.started_at.map(kantai_api::time::rfc3339),
            message: st.message.clone(),
            last_exit_code: st.last_exit_code,
            reason: st.reason.clone(),
            image_digest: st.image_digest.clone(),
        };
        if last_status.as_ref() != Some(&status) {
            let mut obj = json.clone();
            obj["status"] = serde_json::to_value(&status).unwrap_or_default();
            if let Some(l) = agent.local.lock().get_mut(&name) {
                l.object = obj.clone();
                l.written = std::time::Instant::now();
            }
            status_tx.send_replace(Some(obj));
            last_status = Some(status);
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
}

/// Registers an instance's object (`object`), then writes its status as the API allows,
/// the latest one only: the data plane never waits for the API (an instance that gets ready
/// while its object or last status is still on its way serves at once). A write that fails
/// is made again by `reassert`.
fn status_writer(
    agent: Arc<Agent>,
    ns: String,
    name: String,
    object: serde_json::Value,
) -> tokio::sync::watch::Sender<Option<serde_json::Value>> {
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<serde_json::Value>>(None);
    tokio::spawn(async move {
        if let Err(e) = agent.client.replace(INSTANCES, &ns, &name, &object).await {
            warn!(instance = %name, "cannot register the instance: {e}");
        }
        while rx.changed().await.is_ok() {
            let Some(obj) = rx.borrow_and_update().clone() else {
                continue;
            };
            match agent
                .client
                .replace_status(INSTANCES, &ns, &name, &obj)
                .await
            {
                Ok(_) => {}
                // Removed meanwhile: a scale-down's (nothing to say), or someone's, which
                // `reassert` writes back.
                Err(e) if e.is_not_found() => {}
                Err(e) => warn!(instance = %name, "cannot update the instance status: {e}"),
            }
        }
    });
    tx
}

/// Drains an instance (no new requests, in-flight ones finish), stops it and removes its
/// object.
pub fn stop(agent: &Arc<Agent>, name: &str) {
    let (handle, grace, ns) = {
        let mut local = agent.local.lock();
        let Some(l) = local.get_mut(name) else { return };
        if l.stopping {
            return;
        }
        l.stopping = true;
        (l.handle.take(), l.grace, l.key.0.clone())
    };
    info!(instance = %name, "stopping instance");
    let agent = agent.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        stop_now(&agent, &name, &ns, handle, grace, None).await;
    });
}

async fn stop_now(
    agent: &Agent,
    name: &str,
    ns: &str,
    handle: Option<kantai_runtime::Instance>,
    grace: Duration,
    stop_grace: Option<Duration>,
) {
    // Tell the other nodes first, so that their gateways stop sending it requests while it
    // still answers those already on their way.
    let terminating = agent.local.lock().get(name).map(|l| {
        let mut obj = l.object.clone();
        obj["status"]["phase"] = serde_json::Value::from("Terminating");
        obj["status"]["ready"] = serde_json::Value::Bool(false);
        obj
    });
    // Bounded: a control plane that cannot be reached (its link stalled) hears nothing
    // anyway, and the instance still drains and stops on time.
    if let Some(obj) = terminating {
        let write = agent.client.replace_status(INSTANCES, ns, name, &obj);
        match tokio::time::timeout(kantai_driver::DRAIN_PROPAGATION, write).await {
            Ok(Err(e)) if !e.is_not_found() => {
                warn!(instance = %name, "cannot mark the instance terminating: {e}");
            }
            Err(_) => {
                warn!(instance = %name, "the control plane did not take the instance's Terminating status within {:?}; draining it anyway", kantai_driver::DRAIN_PROPAGATION);
            }
            Ok(_) => {}
        }
    }
    agent
        .dp
        .drain_local(name, kantai_driver::DRAIN_PROPAGATION.min(grace), grace)
        .await;
    match (handle, stop_grace) {
        (Some(h), Some(g)) => h.stop_within(g).await,
        (Some(h), None) => h.stop().await,
        (None, _) => {}
    }
    agent.dp.remove_local(name);
    if let Err(e) = agent.client.delete(INSTANCES, ns, name).await
        && !e.is_not_found()
    {
        warn!(instance = %name, "cannot remove the instance object: {e}");
    }
    agent.local.lock().remove(name);
}

/// How long an instance may take to end after SIGTERM when its agent shuts down: its
/// requests were drained already, and the agent's own stop is bounded (`kantai up` waits
/// 20 s for it), so a program that ignores SIGTERM (PID 1 of a container does, unless it
/// handles it) does not keep the agent waiting the revision's whole timeout.
const SHUTDOWN_STOP_GRACE: Duration = Duration::from_secs(3);

/// Stops every instance (agent shutdown), in parallel, and removes the containers created
/// ahead of demand.
pub async fn stop_all(agent: &Arc<Agent>) {
    let standbys: Vec<kantai_runtime::Instance> = agent
        .standby
        .lock()
        .drain()
        .map(|(_, (_, handle))| handle)
        .collect();
    let held: Vec<_> = standbys
        .into_iter()
        .map(|h| tokio::spawn(h.stop_within(Duration::from_secs(1))))
        .collect();
    let all: Vec<(String, Option<kantai_runtime::Instance>, Duration, String)> = {
        let mut local = agent.local.lock();
        local
            .iter_mut()
            .map(|(n, l)| {
                l.stopping = true;
                (n.clone(), l.handle.take(), l.grace, l.key.0.clone())
            })
            .collect()
    };
    let mut tasks = Vec::new();
    for (name, handle, grace, ns) in all {
        let agent = agent.clone();
        tasks.push(tokio::spawn(async move {
            // On shutdown the wait is bounded: in-flight requests get a short grace.
            stop_now(
                &agent,
                &name,
                &ns,
                handle,
                grace.min(Duration::from_secs(10)),
                Some(SHUTDOWN_STOP_GRACE),
            )
            .await;
        }));
    }
    for t in tasks.into_iter().chain(held) {
        let _ = t.await;
    }
}

/// The recent output of a local instance.
/// An instance's output buffer, to follow it (`logs -f`).
pub fn log_buffer(agent: &Agent, ns: &str, name: &str) -> Option<Arc<LogBuffer>> {
    let local = agent.local.lock();
    let l = local.get(name).filter(|l| l.key.0 == ns)?;
    l.logs.clone()
}

/// Whether the instance still runs here (a follower stops when it is gone).
pub fn is_here(agent: &Agent, ns: &str, name: &str) -> bool {
    agent
        .local
        .lock()
        .get(name)
        .is_some_and(|l| l.key.0 == ns && !l.stopping)
}

pub fn logs(agent: &Agent, ns: &str, name: &str, tail: Option<usize>) -> Option<String> {
    let local = agent.local.lock();
    let l = local.get(name).filter(|l| l.key.0 == ns)?;
    Some(l.logs.as_ref().map(|b| b.text(tail)).unwrap_or_default())
}

/// This node's instances of a revision that are not being stopped, and how many of them
/// are ready.
pub(crate) fn running(agent: &Agent, key: &(String, String)) -> (u32, u32) {
    let local = agent.local.lock();
    local
        .values()
        .filter(|l| l.key == *key && !l.stopping)
        .fold((0, 0), |(n, r), l| (n + 1, r + u32::from(l.ready)))
}
