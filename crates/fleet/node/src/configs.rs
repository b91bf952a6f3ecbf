//! The Secret and ConfigMap values this node's revisions need, as the control plane streams
//! them (`GET /kantai/v1/nodes/{node}/configs`): held in memory only, one per revision and
//! shared by its instances, dropped when the control plane says the node no longer needs it.
//! A change reaches the running instances' files (`Instance::update_config`); env values stay
//! as they were at each instance's start, as in Kubernetes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kantai_api::wire::ConfigEvent;
use kantai_model::serving::resolve::ResolvedConfig;
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::Agent;

/// A namespace and a revision name.
type Key = (String, String);

/// How long an instance of a revision that needs a config waits for it before the
/// revision's requests are answered with why.
pub(crate) const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// The configs this node holds, and the revisions waiting for theirs.
#[derive(Default)]
pub(crate) struct Configs {
    held: Mutex<HashMap<Key, Arc<ResolvedConfig>>>,
    /// Since when each revision that needs a config and has none has waited for it.
    waiting: Mutex<HashMap<Key, Instant>>,
}

/// Whether an instance of a revision may start, as far as its config goes.
pub(crate) enum Readiness {
    /// Start it with this config.
    Start(Arc<ResolvedConfig>),
    /// Not yet: no config has arrived, or the one that did lacks something.
    Wait,
}

impl Configs {
    /// The config of a revision, if one arrived.
    pub(crate) fn get(&self, key: &Key) -> Option<Arc<ResolvedConfig>> {
        self.held.lock().get(key).cloned()
    }

    /// Whether an instance of `key`, which needs a config when `needs`, may start now.
    pub(crate) fn readiness(&self, key: &Key, needs: bool) -> Readiness {
        if !needs {
            return Readiness::Start(Arc::default());
        }
        match self.get(key) {
            Some(c) if c.missing.is_empty() => {
                self.waiting.lock().remove(key);
                Readiness::Start(c)
            }
            Some(_) => Readiness::Wait,
            None => {
                self.waiting
                    .lock()
                    .entry(key.clone())
                    .or_insert_with(Instant::now);
                Readiness::Wait
            }
        }
    }

    /// Why the revisions in `wanted` (instances wanted here) cannot start for want of their
    /// config: what it lacks (in Kubernetes' words), or none arrived within [`WAIT_LIMIT`].
    pub(crate) fn failures(&self, wanted: &HashSet<Key>) -> HashMap<Key, String> {
        let held = self.held.lock();
        let mut out: HashMap<Key, String> = held
            .iter()
            .filter(|(k, c)| wanted.contains(*k) && !c.missing.is_empty())
            .map(|(k, c)| (k.clone(), c.missing.join("; ")))
            .collect();
        let mut waiting = self.waiting.lock();
        // A revision no longer wanted here waits for nothing: its clock starts over.
        waiting.retain(|k, _| wanted.contains(k) && !held.contains_key(k));
        for (k, since) in waiting.iter() {
            if since.elapsed() >= WAIT_LIMIT {
                out.insert(
                    k.clone(),
                    format!(
                        "its Secret and ConfigMap values did not arrive from the control plane within {WAIT_LIMIT:?} (is the control plane reachable from this node?)"
                    ),
                );
            }
        }
        out
    }

    /// Takes a config; true when it is new or differs from the one held.
    fn set(&self, key: Key, config: ResolvedConfig) -> Option<Arc<ResolvedConfig>> {
        let mut held = self.held.lock();
        if held.get(&key).is_some_and(|c| **c == config) {
            return None;
        }
        let config = Arc::new(config);
        held.insert(key, config.clone());
        Some(config)
    }

    fn remove(&self, key: &Key) -> bool {
        self.held.lock().remove(key).is_some()
    }

    /// Drops every config not in `keep` (after a reconnect's full set).
    fn retain(&self, keep: &HashSet<Key>) -> bool {
        let mut held = self.held.lock();
        let before = held.len();
        held.retain(|k, _| keep.contains(k));
        held.len() != before
    }
}

/// Keeps the node's config stream open, forever: on any interruption it connects again,
/// with back-off (as the watches do), and the full set that follows replaces what is held.
pub(crate) async fn run(agent: Arc<Agent>) {
    let mut wait = Duration::from_millis(50);
    loop {
        let mut stream = match agent.client.configs(&agent.name).await {
            Ok(s) => s,
            Err(e) => {
                debug!(node = %agent.name, "cannot open the config stream (retrying in {wait:?}): {e}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = agent.reconnected.notified() => {}
                }
                wait = (wait * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        wait = Duration::from_millis(50);
        // What the control plane sent since this connection opened.
        let mut seen: HashSet<Key> = HashSet::new();
        let mut synced = false;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    warn!(node = %agent.name, "the config stream failed; connecting again: {e}");
                    break;
                }
            };
            match event {
                ConfigEvent::Set {
                    namespace,
                    revision,
                    config,
                    ..
                } => {
                    let key = (namespace, revision);
                    seen.insert(key.clone());
                    if let Some(config) = agent.configs.set(key.clone(), config) {
                        info!(revision = %key.1, namespace = %key.0, missing = config.missing.len(), "the revision's Secret and ConfigMap values arrived");
                        crate::instances::update_config(&agent, &key, &config);
                        agent.changed.notify_one();
                    }
                }
                ConfigEvent::Remove {
                    namespace,
                    revision,
                } => {
                    let key = (namespace, revision);
                    seen.remove(&key);
                    if agent.configs.remove(&key) {
                        info!(revision = %key.1, namespace = %key.0, "dropped the revision's Secret and ConfigMap values: no instance of it is wanted here");
                        agent.changed.notify_one();
                    }
                }
                ConfigEvent::Synced => {
                    if !synced && agent.configs.retain(&seen) {
                        agent.changed.notify_one();
                    }
                    synced = true;
                }
            }
        }
        debug!(node = %agent.name, "the config stream ended; connecting again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(what: &str) -> ResolvedConfig {
        ResolvedConfig {
            missing: vec![what.to_owned()],
            ..ResolvedConfig::default()
        }
    }

    fn key(rev: &str) -> Key {
        ("default".to_owned(), rev.to_owned())
    }

    #[test]
    fn a_revision_without_references_starts_at_once() {
        let c = Configs::default();
        assert!(matches!(c.readiness(&key("a"), false), Readiness::Start(_)));
    }

    #[test]
    fn a_revision_waits_for_its_config_and_for_what_it_lacks() {
        let c = Configs::default();
        let wanted = HashSet::from([key("a")]);
        assert!(matches!(c.readiness(&key("a"), true), Readiness::Wait));
        // Waiting, but not for long yet: nothing to tell.
        assert!(c.failures(&wanted).is_empty());
        c.set(key("a"), missing("secret \"db\" not found"));
        assert!(matches!(c.readiness(&key("a"), true), Readiness::Wait));
        assert_eq!(
            c.failures(&wanted).get(&key("a")).map(String::as_str),
            Some("secret \"db\" not found")
        );
        c.set(key("a"), ResolvedConfig::default());
        assert!(matches!(c.readiness(&key("a"), true), Readiness::Start(_)));
        assert!(c.failures(&wanted).is_empty());
    }

    #[test]
    fn a_config_that_does_not_arrive_in_time_is_a_failure() {
        let c = Configs::default();
        let wanted = HashSet::from([key("a")]);
        c.readiness(&key("a"), true);
        c.waiting
            .lock()
            .insert(key("a"), Instant::now() - WAIT_LIMIT);
        let f = c.failures(&wanted);
        assert!(
            f.get(&key("a"))
                .is_some_and(|m| m.contains("did not arrive")),
            "{f:?}"
        );
        // No longer wanted here: no failure, and the wait starts over.
        assert!(c.failures(&HashSet::new()).is_empty());
        assert!(c.waiting.lock().is_empty());
    }

    #[test]
    fn the_same_config_again_is_no_change() {
        let c = Configs::default();
        assert!(c.set(key("a"), ResolvedConfig::default()).is_some());
        assert!(c.set(key("a"), ResolvedConfig::default()).is_none());
        assert!(c.set(key("a"), missing("x")).is_some());
        assert!(c.retain(&HashSet::new()));
        assert!(c.get(&key("a")).is_none());
    }
}
