//! Secrets and ConfigMaps shipped to the nodes: each revision's references resolved against
//! the stored objects ([`kantai_model::serving::resolve`]), streamed to a node only for the
//! revisions it runs or is placed to run (`GET /kantai/v1/nodes/{node}/configs`), and read by
//! the revision controller for the revision's readiness.
//!
//! The stream is newline-delimited JSON ([`ConfigEvent`]): a `SET` for every such revision,
//! `SYNCED`, then a `SET` whenever a revision's config changes or a revision starts to concern
//! the node, a `REMOVE` when it stops to. It is recomputed from the store on every change of
//! the objects it depends on, bursts coalesced, and a config whose hash did not change is not
//! sent again. Nothing is sent for a revision without references. No value is ever logged.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use kantai_api::resources::{CONFIGMAPS, INSTANCES, PLACEMENTS, REVISIONS, SECRETS};
use kantai_api::wire::ConfigEvent;
use kantai_model::core;
use kantai_model::fleet::{self, Placement};
use kantai_model::meta::JsonMeta;
use kantai_model::serving::resolve::{self, RefKind, ResolvedConfig};
use kantai_model::serving::{Object, Revision};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info};

use crate::Shared;
use crate::store::{Event, EventType, Store};

/// How long a burst of changes is let settle before the configs are computed again.
const COALESCE: Duration = Duration::from_millis(50);

/// A namespace and a revision name.
type Key = (String, String);

/// A revision's resolved config, `None` when it refers to no Secret or ConfigMap.
pub(crate) fn resolved(store: &Store, namespace: &str, rev: &Revision) -> Option<ResolvedConfig> {
    let refs = resolve::references(&rev.spec);
    if refs.is_empty() {
        return None;
    }
    // Only the objects it refers to are read (and decoded).
    let mut objects = resolve::Objects::default();
    for r in refs {
        match r.kind {
            RefKind::Secret => {
                if let Some(v) = store.get(&SECRETS, namespace, &r.name)
                    && let Ok(secret) = core::secret_from_json(&v)
                {
                    objects.secrets.insert(r.name, secret);
                }
            }
            RefKind::ConfigMap => {
                if let Some(v) = store.get(&CONFIGMAPS, namespace, &r.name)
                    && let Ok(cm) = core::config_map_from_json(&v)
                {
                    objects.config_maps.insert(r.name, cm);
                }
            }
        }
    }
    Some(resolve::resolve(&rev.spec, namespace, &objects))
}

/// Why a revision's instances cannot start for want of a Secret or ConfigMap: every
/// problem, in Kubernetes' words (empty when nothing is missing).
pub(crate) fn problems(store: &Store, namespace: &str, rev: &Revision) -> Vec<String> {
    resolved(store, namespace, rev).map_or_else(Vec::new, |c| c.missing)
}

/// The hash a config is sent with: keyed per process, so that it tells nothing of the
/// values (a plain digest of a short password could be searched for), and only compared.
fn hash(config: &ResolvedConfig) -> String {
    static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
    let mut h = KEY.get_or_init(std::hash::RandomState::new).build_hasher();
    h.write(&serde_json::to_vec(config).unwrap_or_default());
    format!("{:016x}", h.finish())
}

/// The revisions that concern `node`: placed there (desired > 0) or with an instance object
/// naming it.
fn revisions_on(store: &Store, node: &str) -> Vec<Key> {
    let mut keys: Vec<Key> = store
        .list(&PLACEMENTS, None)
        .0
        .iter()
        .filter_map(|v| fleet::from_json::<Placement>(v).ok())
        .filter(|p| p.desired_on(node) > 0)
        .map(|p| (p.metadata.namespace().to_owned(), p.spec.revision))
        .collect();
    keys.extend(
        store
            .list(&INSTANCES, None)
            .0
            .iter()
            .filter(|i| i["spec"]["node"].as_str() == Some(node))
            .filter_map(|i| {
                Some((
                    i.namespace_or_default().to_owned(),
                    i["spec"]["revision"].as_str()?.to_owned(),
                ))
            }),
    );
    keys.sort();
    keys.dedup();
    keys
}

/// A stored revision, decoded (stored objects were admitted, so this succeeds).
fn revision(store: &Store, ns: &str, name: &str) -> Option<Revision> {
    let v = store.get(&REVISIONS, ns, name)?;
    match kantai_model::manifest::read_one(
        &kantai_model::node::Node::from_json(&v),
        0,
        &kantai_model::ServingConfig::default(),
    )
    .object
    {
        Some(Object::Revision(r)) => Some(r),
        _ => None,
    }
}

/// Every config `node` needs now, with its hash.
fn wanted(store: &Store, node: &str) -> HashMap<Key, (String, ResolvedConfig)> {
    revisions_on(store, node)
        .into_iter()
        .filter_map(|(ns, name)| {
            let rev = revision(store, &ns, &name)?;
            let config = resolved(store, &ns, &rev)?;
            Some(((ns, name), (hash(&config), config)))
        })
        .collect()
}

/// Whether a change may alter what `node` is sent.
fn concerns(e: &Event, node: &str) -> bool {
    let r = e.resource;
    if [SECRETS, CONFIGMAPS, PLACEMENTS, REVISIONS]
        .iter()
        .any(|x| x.plural == r)
    {
        return true;
    }
    // An instance's status changes often and its node never: only its coming and going.
    r == INSTANCES.plural
        && e.type_ != EventType::Modified
        && e.object["spec"]["node"].as_str() == Some(node)
}

fn line(e: &ConfigEvent) -> Bytes {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Sends what changed between `sent` and `now`; false once the node went away.
async fn send_changes(
    tx: &mpsc::Sender<Bytes>,
    node: &str,
    sent: &mut HashMap<Key, String>,
    now: HashMap<Key, (String, ResolvedConfig)>,
) -> bool {
    let gone: Vec<Key> = sent
        .keys()
        .filter(|k| !now.contains_key(*k))
        .cloned()
        .collect();
    for (namespace, revision) in gone {
        sent.remove(&(namespace.clone(), revision.clone()));
        info!(node, %namespace, %revision, "the node no longer needs the revision's Secret and ConfigMap values");
        let e = ConfigEvent::Remove {
            namespace,
            revision,
        };
        if tx.send(line(&e)).await.is_err() {
            return false;
        }
    }
    let mut now: Vec<_> = now.into_iter().collect();
    now.sort_by(|a, b| a.0.cmp(&b.0));
    for ((namespace, revision), (hash, config)) in now {
        let key = (namespace.clone(), revision.clone());
        if sent.get(&key) == Some(&hash) {
            continue;
        }
        // Names and counts only: never a value.
        info!(
            node,
            %namespace,
            %revision,
            env = config.env_from.len() + config.env_values.len(),
            volumes = config.volumes.len(),
            missing = config.missing.len(),
            "sending the revision's Secret and ConfigMap values to the node"
        );
        sent.insert(key, hash.clone());
        let e = ConfigEvent::Set {
            namespace,
            revision,
            hash,
            config,
        };
        if tx.send(line(&e)).await.is_err() {
            return false;
        }
    }
    true
}

/// Feeds one node's stream until it goes away or the control plane stops.
async fn feed(s: Arc<Shared>, node: String, tx: mpsc::Sender<Bytes>) {
    // Subscribed before the first computation: no change falls between.
    let mut events = s.store.subscribe();
    let mut stopping = s.stopping.clone();
    let mut sent: HashMap<Key, String> = HashMap::new();
    if !send_changes(&tx, &node, &mut sent, wanted(&s.store, &node)).await
        || tx.send(line(&ConfigEvent::Synced)).await.is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) if concerns(&e, &node) => {}
                Ok(_) => continue,
                // Too many changes to follow one by one: computing again covers them all.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = stopping.wait_for(|s| *s) => return,
            _ = tx.closed() => return,
        }
        tokio::time::sleep(COALESCE).await;
        loop {
            match events.try_recv() {
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Closed) => return,
            }
        }
        if !send_changes(&tx, &node, &mut sent, wanted(&s.store, &node)).await {
            return;
        }
    }
}

/// `GET /kantai/v1/nodes/{node}/configs`: the node's config stream (the API's bearer token,
/// as every `/kantai/v1` path).
pub(crate) async fn stream(State(s): State<Arc<Shared>>, Path(node): Path<String>) -> Response {
    debug!(node = %node, "a node opened its config stream");
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(feed(s, node, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}
