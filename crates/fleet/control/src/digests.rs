//! Tag-to-digest resolution, as Knative's revision controller does it: each Revision's image
//! tags are resolved once, when the revision appears, and recorded in
//! `status.containerStatuses[].imageDigest`; every instance of the revision then runs that
//! digest, even after the tag moves. Images of the registries in `registries-skipping-tag-
//! resolving`, references that already name a digest and images the nodes run as local
//! processes are not resolved.
//!
//! Resolution runs off the reconcile pass: one task per unresolved revision (one attempt at
//! a time, a bounded number of attempts fleet-wide at once), retried with back-off. The
//! reconcile pass only reads what the tasks found, and writes it through the Revision's
//! status; placement waits for it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kantai_model::ServingConfig;
use kantai_model::meta::JsonMeta;
use kantai_model::serving::ContainerStatus;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tokio::task::AbortHandle;
use tracing::{info, warn};

/// Errors of a resolver, shown to operators as they are.
pub type ResolveError = Box<dyn std::error::Error + Send + Sync>;

/// The future of one resolution: the full reference with the digest.
pub type Resolving<'a> = Pin<Box<dyn Future<Output = Result<String, ResolveError>> + Send + 'a>>;

/// Resolves an image reference to the digest its tag points at now.
pub trait ResolveDigest: Send + Sync {
    /// The full reference with the digest `image` points at now, e.g.
    /// `127.0.0.1:5055/fn/hello@sha256:…`.
    fn resolve<'a>(&'a self, image: &'a str) -> Resolving<'a>;
}

/// The fleet's registry client: the normalised repository (as Docker and Knative write it)
/// with the digest the registry answers for the tag.
impl ResolveDigest for kantai_images::Registry {
    fn resolve<'a>(&'a self, image: &'a str) -> Resolving<'a> {
        Box::pin(async move {
            let digest = kantai_images::Registry::resolve(self, image).await?;
            let name = kantai_images::normalize(image)?;
            Ok(format!("{}@{digest}", repository(&name)))
        })
    }
}

/// `name` without its tag or digest: `host:5000/fn/hello:v1` → `host:5000/fn/hello`.
fn repository(name: &str) -> &str {
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    // A colon before the last slash is the registry's port.
    let last = name.rfind('/').map_or(0, |i| i + 1);
    match name[last..].find(':') {
        Some(i) => &name[..last + i],
        None => name,
    }
}

/// Tells whether an image runs as a local process on the nodes (no registry involved).
pub type RunsLocally = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How the control plane resolves image tags.
#[derive(Clone)]
pub struct DigestConfig {
    /// The registry client; `None` resolves nothing (every tag is run as it is).
    pub resolver: Option<Arc<dyn ResolveDigest>>,
    /// Images the nodes run as local processes (the fleet config's `runtime.images`), which
    /// have no registry to ask.
    pub runs_locally: RunsLocally,
    /// At most this many resolutions at once, fleet-wide.
    pub concurrency: usize,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            resolver: None,
            runs_locally: Arc::new(|_| false),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

impl fmt::Debug for DigestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestConfig")
            .field("resolver", &self.resolver.as_ref().map(|_| "…"))
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Resolutions at once by default: a burst of new revisions does not wait on one slow
/// registry, and no registry gets a flood of requests from one control plane.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// The wait before the first retry of a failed resolution, doubled at each failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between retries. Knative's queue goes up to 1000 s; a fleet this size
/// retries more often, so that a pushed image or a fixed credential is seen within a minute.
pub const MAX_RETRY: Duration = Duration::from_secs(60);

/// The reason Knative gives a revision whose image cannot be fetched.
pub const CONTAINER_MISSING: &str = "ContainerMissing";

/// A revision, as resolution knows it: a recreated revision of the same name is another.
type Key = (String, String, String);

/// What the reconcile pass does with a revision's images.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// The status has the container statuses already.
    Recorded,
    /// Write these container statuses now.
    Record(Vec<ContainerStatus>),
    /// Resolution is underway; instances wait. The last attempt's failure, if it failed.
    Awaiting(Option<String>),
}

enum Progress {
    Pending(Option<String>),
    Resolved(Vec<ContainerStatus>),
}

struct Entry {
    progress: Progress,
    task: AbortHandle,
}

/// The resolution tasks and what they found.
pub(crate) struct Digests {
    config: DigestConfig,
    timeout: Duration,
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    permits: Arc<Semaphore>,
    /// Woken when a task found something for the reconcile pass to write.
    pub(crate) wake: Arc<Notify>,
}

/// A container of a revision: its name, its image, and whether the image must be resolved.
struct Container {
    name: String,
    image: String,
    resolve: bool,
}

fn key_of(v: &Value) -> Key {
    (
        v.namespace_or_default().to_owned(),
        v.name().to_owned(),
        v.uid().unwrap_or_default().to_owned(),
    )
}

impl Digests {
    /// Resolution as `config` says, each attempt bounded by `timeout`
    /// (`digest-resolution-timeout`).
    pub(crate) fn new(config: DigestConfig, timeout: Duration) -> Digests {
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Digests {
            config,
            timeout,
            entries: Arc::default(),
            permits,
            wake: Arc::new(Notify::new()),
        }
    }

    fn containers(&self, serving: &ServingConfig, v: &Value) -> Vec<Container> {
        v["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let image = c["image"].as_str().unwrap_or_default().to_owned();
                Container {
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    resolve: self.config.resolver.is_some()
                        && !serving.skips_tag_resolution(&image)
                        && !(self.config.runs_locally)(&image),
                    image,
                }
            })
            .collect()
    }

    /// Whether the revision's status records its images, as Knative checks it: one
    /// container status per container.
    fn recorded(v: &Value, containers: usize) -> bool {
        let n = v["status"]["containerStatuses"]
            .as_array()
            .map_or(0, Vec::len);
        n == containers
    }

    /// Whether the revision's instances must wait for its digests: an image of it needs
    /// resolution and its status does not record the result yet.
    pub(crate) fn awaiting(&self, serving: &ServingConfig, v: &Value) -> bool {
        let containers = self.containers(serving, v);
        !Self::recorded(v, containers.len()) && containers.iter().any(|c| c.resolve)
    }

    /// What the reconcile pass does with stored revision `v` now; starts its resolution when
    /// it needs one and none is underway.
    pub(crate) fn observe(&self, serving: &ServingConfig, v: &Value) -> Outcome {
        let key = key_of(v);
        let containers = self.containers(serving, v);
        if Self::recorded(v, containers.len()) {
            if let Some(e) = self.entries.lock().remove(&key) {
                e.task.abort();
            }
            return Outcome::Recorded;
        }
        if !containers.iter().any(|c| c.resolve) {
            return Outcome::Record(containers.iter().map(unresolved).collect());
        }
        let mut entries = self.entries.lock();
        if let Some(e) = entries.get(&key) {
            return match &e.progress {
                Progress::Pending(failure) => Outcome::Awaiting(failure.clone()),
                Progress::Resolved(statuses) => Outcome::Record(statuses.clone()),
            };
        }
        let Some(resolver) = self.config.resolver.clone() else {
            return Outcome::Record(containers.iter().map(unresolved).collect());
        };
        let task = tokio::spawn(resolve_revision(Task {
            key: key.clone(),
            containers,
            resolver,
            timeout: self.timeout,
            entries: self.entries.clone(),
            permits: self.permits.clone(),
            wake: self.wake.clone(),
        }));
        entries.insert(
            key,
            Entry {
                progress: Progress::Pending(None),
                task: task.abort_handle(),
            },
        );
        Outcome::Awaiting(None)
    }

    /// Stops the resolution of every revision not in `alive` (deleted ones).
    pub(crate) fn retain(&self, alive: &HashSet<(String, String, String)>) {
        self.entries.lock().retain(|k, e| {
            let keep = alive.contains(k);
            if !keep {
                e.task.abort();
            }
            keep
        });
    }

    /// The revision's key for [`Digests::retain`].
    pub(crate) fn key(v: &Value) -> (String, String, String) {
        key_of(v)
    }

    /// Resolutions underway or waiting to be recorded.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.entries.lock().len()
    }
}

impl Drop for Digests {
    fn drop(&mut self) {
        for e in self.entries.lock().values() {
            e.task.abort();
        }
    }
}

/// The container status of an image that is not resolved: a digest reference is its own
/// digest; a skipped or local image records none (as Knative records an empty one).
fn unresolved(c: &Container) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image_digest: c.image.contains('@').then(|| c.image.clone()),
    }
}

struct Task {
    key: Key,
    containers: Vec<Container>,
    resolver: Arc<dyn ResolveDigest>,
    timeout: Duration,
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    permits: Arc<Semaphore>,
    wake: Arc<Notify>,
}

impl Task {
    /// One attempt at every image of the revision: their statuses, or Knative's message for
    /// the first that failed.
    async fn attempt(&self) -> Result<Vec<ContainerStatus>, String> {
        let mut out = Vec::with_capacity(self.containers.len());
        for c in &self.containers {
            if !c.resolve {
                out.push(unresolved(c));
                continue;
            }
            let why = match tokio::time::timeout(self.timeout, self.resolver.resolve(&c.image))
                .await
            {
                Ok(Ok(digest)) => {
                    out.push(ContainerStatus {
                        name: c.name.clone(),
                        image_digest: Some(digest),
                    });
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "the registry did not answer within {:?} (config-deployment's digest-resolution-timeout)",
                    self.timeout
                ),
            };
            return Err(format!(
                "Unable to fetch image {:?}: failed to resolve image to digest: {why}",
                c.image
            ));
        }
        Ok(out)
    }

    /// Records `progress` unless the revision was forgotten meanwhile; whether it still is.
    fn record(&self, progress: Progress) -> bool {
        let mut entries = self.entries.lock();
        let Some(e) = entries.get_mut(&self.key) else {
            return false;
        };
        e.progress = progress;
        drop(entries);
        self.wake.notify_one();
        true
    }
}

async fn resolve_revision(task: Task) {
    let (ns, revision, _) = &task.key;
    let mut wait = FIRST_RETRY;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let result = {
            let Ok(_permit) = task.permits.acquire().await else {
                return;
            };
            task.attempt().await
        };
        match result {
            Ok(statuses) => {
                let digests: Vec<&str> = statuses
                    .iter()
                    .filter_map(|s| s.image_digest.as_deref())
                    .collect();
                info!(namespace = %ns, revision = %revision, ?digests, "revision {revision}'s images resolved; its instances run these digests");
                task.record(Progress::Resolved(statuses));
                return;
            }
            Err(why) => {
                warn!(
                    namespace = %ns,
                    revision = %revision,
                    attempts,
                    "revision {ns}/{revision} cannot start: {why}; no instance of it is placed until its tag resolves, next attempt in {wait:?}"
                );
                if !task.record(Progress::Pending(Some(why))) {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::VecDeque;

    /// Answers from a script, in order (the last one repeated), counting the calls.
    #[derive(Default)]
    struct Script {
        answers: Mutex<VecDeque<Result<String, String>>>,
        calls: Mutex<Vec<String>>,
    }

    impl ResolveDigest for Script {
        fn resolve<'a>(&'a self, image: &'a str) -> Resolving<'a> {
            self.calls.lock().push(image.to_owned());
            let mut a = self.answers.lock();
            let next = if a.len() > 1 {
                a.pop_front()
            } else {
                a.front().cloned()
            };
            Box::pin(async move {
                match next {
                    Some(Ok(d)) => Ok(d),
                    Some(Err(e)) => Err(e.into()),
                    None => std::future::pending().await,
                }
            })
        }
    }

    fn script(answers: &[Result<&str, &str>]) -> Arc<Script> {
        Arc::new(Script {
            answers: Mutex::new(
                answers
                    .iter()
                    .map(|a| a.map(str::to_owned).map_err(str::to_owned))
                    .collect(),
            ),
            calls: Mutex::default(),
        })
    }

    fn digests(resolver: Arc<Script>) -> Digests {
        Digests::new(
            DigestConfig {
                resolver: Some(resolver),
                runs_locally: Arc::new(|i: &str| i.starts_with("kantai/fn-")),
                concurrency: 2,
            },
            Duration::from_secs(10),
        )
    }

    fn revision(image: &str) -> Value {
        json!({
            "metadata": {"namespace": "default", "name": "hello-00001", "uid": "u1"},
            "spec": {"containers": [{"name": "user-container", "image": image}]},
        })
    }

    /// Lets the resolution tasks run until they wait (on the resolver or a timer).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    const IMAGE: &str = "127.0.0.1:5055/fn/hello:v1";
    const RESOLVED: &str = "127.0.0.1:5055/fn/hello@sha256:aaaa";

    #[test]
    fn a_repository_keeps_the_registrys_port_and_drops_the_tag() {
        assert_eq!(
            repository("127.0.0.1:5055/fn/hello:v1"),
            "127.0.0.1:5055/fn/hello"
        );
        assert_eq!(
            repository("127.0.0.1:5055/fn/hello"),
            "127.0.0.1:5055/fn/hello"
        );
        assert_eq!(
            repository("docker.io/library/busybox@sha256:aa"),
            "docker.io/library/busybox"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tag_resolves_to_the_digest_to_record() {
        let r = script(&[Ok(RESOLVED)]);
        let d = digests(r.clone());
        let v = revision(IMAGE);
        assert_eq!(
            d.observe(&ServingConfig::default(), &v),
            Outcome::Awaiting(None)
        );
        settle().await;
        assert_eq!(
            d.observe(&ServingConfig::default(), &v),
            Outcome::Record(vec![ContainerStatus {
                name: "user-container".into(),
                image_digest: Some(RESOLVED.into()),
            }])
        );
        assert_eq!(*r.calls.lock(), [IMAGE]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_attempt_at_a_time_per_revision() {
        let r = script(&[]);
        let d = digests(r.clone());
        let v = revision(IMAGE);
        for _ in 0..3 {
            d.observe(&ServingConfig::default(), &v);
            settle().await;
        }
        assert_eq!(r.calls.lock().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_gives_knatives_message_and_is_retried_with_back_off() {
        let r = script(&[
            Err("manifest unknown"),
            Err("manifest unknown"),
            Ok(RESOLVED),
        ]);
        let d = digests(r.clone());
        let v = revision(IMAGE);
        d.observe(&ServingConfig::default(), &v);
        settle().await;
        let msg = format!(
            "Unable to fetch image \"{IMAGE}\": failed to resolve image to digest: manifest unknown"
        );
        assert_eq!(
            d.observe(&ServingConfig::default(), &v),
            Outcome::Awaiting(Some(msg))
        );
        // The first retry after 1 s, the second 2 s after that.
        tokio::time::advance(FIRST_RETRY).await;
        settle().await;
        assert_eq!(r.calls.lock().len(), 2);
        tokio::time::advance(FIRST_RETRY).await;
        settle().await;
        assert_eq!(r.calls.lock().len(), 2);
        tokio::time::advance(FIRST_RETRY).await;
        settle().await;
        assert_eq!(r.calls.lock().len(), 3);
        assert!(matches!(
            d.observe(&ServingConfig::default(), &v),
            Outcome::Record(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolution_that_takes_too_long_fails_with_the_timeout() {
        let r = script(&[]);
        let d = digests(r);
        let v = revision(IMAGE);
        d.observe(&ServingConfig::default(), &v);
        settle().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        let Outcome::Awaiting(Some(msg)) = d.observe(&ServingConfig::default(), &v) else {
            panic!("a failure after the timeout");
        };
        assert!(msg.contains("digest-resolution-timeout"), "{msg}");
    }

    #[tokio::test(start_paused = true)]
    async fn skipped_registries_digests_and_local_images_are_not_resolved() {
        let r = script(&[Ok(RESOLVED)]);
        let d = digests(r.clone());
        let digest = "127.0.0.1:5055/fn/hello@sha256:bbbb";
        for (image, recorded) in [
            ("ko.local/fn/hello:v1", None),
            (digest, Some(digest)),
            ("kantai/fn-echo", None),
        ] {
            let v = revision(image);
            assert!(!d.awaiting(&ServingConfig::default(), &v), "{image}");
            assert_eq!(
                d.observe(&ServingConfig::default(), &v),
                Outcome::Record(vec![ContainerStatus {
                    name: "user-container".into(),
                    image_digest: recorded.map(str::to_owned),
                }]),
                "{image}"
            );
        }
        settle().await;
        assert!(r.calls.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_revision_awaits_until_its_status_records_the_digest() {
        let d = digests(script(&[Ok(RESOLVED)]));
        let mut v = revision(IMAGE);
        assert!(d.awaiting(&ServingConfig::default(), &v));
        v["status"] =
            json!({"containerStatuses": [{"name": "user-container", "imageDigest": RESOLVED}]});
        assert!(!d.awaiting(&ServingConfig::default(), &v));
    }

    #[tokio::test(start_paused = true)]
    async fn a_recorded_revision_is_not_resolved_again() {
        let r = script(&[Ok(RESOLVED)]);
        let d = digests(r.clone());
        let mut v = revision(IMAGE);
        v["status"] =
            json!({"containerStatuses": [{"name": "user-container", "imageDigest": RESOLVED}]});
        assert_eq!(d.observe(&ServingConfig::default(), &v), Outcome::Recorded);
        settle().await;
        assert!(r.calls.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_resolutions_run_at_once_than_the_concurrency() {
        let r = script(&[]);
        let d = digests(r.clone());
        for uid in ["u1", "u2", "u3"] {
            let mut v = revision(IMAGE);
            v["metadata"]["uid"] = json!(uid);
            d.observe(&ServingConfig::default(), &v);
        }
        settle().await;
        assert_eq!(r.calls.lock().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_revision_stops_being_retried() {
        let r = script(&[Err("unauthorized")]);
        let d = digests(r.clone());
        d.observe(&ServingConfig::default(), &revision(IMAGE));
        settle().await;
        d.retain(&HashSet::new());
        assert_eq!(d.entries(), 0);
        tokio::time::advance(MAX_RETRY).await;
        settle().await;
        assert_eq!(r.calls.lock().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_resolver_tags_are_run_as_written() {
        let d = Digests::new(DigestConfig::default(), Duration::from_secs(10));
        let v = revision(IMAGE);
        assert!(!d.awaiting(&ServingConfig::default(), &v));
        assert_eq!(
            d.observe(&ServingConfig::default(), &v),
            Outcome::Record(vec![ContainerStatus {
                name: "user-container".into(),
                image_digest: None,
            }])
        );
    }
}
