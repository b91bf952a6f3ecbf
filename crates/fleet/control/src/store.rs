//! The object store: every object as JSON, in memory for reads and in an embedded database
//! (redb) under the state directory for durability, with Kubernetes' metadata rules (uid,
//! creationTimestamp, resourceVersion, generation) and a stream of change events for watches.
//!
//! Secrets are stored encrypted (`crate::encryption`); every other kind is plain JSON. A
//! Secret stored before encryption existed is read as it is and rewritten encrypted when
//! the store opens.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use kantai_api::Resource;
use kantai_model::meta::JsonMeta;

use crate::encryption::{Encryption, EncryptionError};
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use tokio::sync::broadcast;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// resourceVersions reserved durably at a time (one extra disk sync per this many writes).
const RV_RESERVE: u64 = 10_000;

/// How many past events a watch may resume from, at most.
const HISTORY: usize = 10_000;

/// How old an event a watch may resume from, at most: a watcher that was away longer lists
/// again (410 Gone), as with Kubernetes' watch cache. Without it the history holds the last
/// 10,000 versions of whole objects however old, a memory cost that grows for an hour in a
/// quiet fleet before it levels off.
const HISTORY_AGE: std::time::Duration = std::time::Duration::from_secs(300);

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{resource} {name:?} not found")]
    NotFound {
        /// Plural resource name.
        resource: &'static str,
        /// Object name.
        name: String,
    },
    /// Create of an existing object.
    #[error("{resource} {name:?} already exists")]
    AlreadyExists {
        /// Plural resource name.
        resource: &'static str,
        /// Object name.
        name: String,
    },
    /// Update based on an outdated resourceVersion.
    #[error(
        "Operation cannot be fulfilled on {resource} {name:?}: the object has been modified; \
         please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// Plural resource name.
        resource: &'static str,
        /// Object name.
        name: String,
    },
    /// A watch asked for history that is gone.
    #[error("too old resource version: {0}")]
    Gone(u64),
    /// The database failed.
    #[error("the state database failed: {0}")]
    Database(String),
    /// The encryption key is unusable, or a stored Secret does not decrypt with it.
    #[error("{0}")]
    Encryption(#[from] EncryptionError),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The kind of a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted (the object as it was).
    Deleted,
}

impl EventType {
    /// The watch event type name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change to one object. Its `Debug` leaves a Secret's content out.
#[derive(Clone)]
pub struct Event {
    /// The store's resourceVersion after the change.
    pub rv: u64,
    /// What happened.
    pub type_: EventType,
    /// The resource.
    pub resource: &'static str,
    /// The object's namespace ("" for cluster-scoped objects).
    pub namespace: String,
    /// The object after the change (before it, for deletes).
    pub object: Arc<Value>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Event");
        d.field("rv", &self.rv)
            .field("type_", &self.type_)
            .field("resource", &self.resource)
            .field("namespace", &self.namespace);
        if self.resource == SECRETS {
            d.field("name", &self.object.name()).finish_non_exhaustive()
        } else {
            d.field("object", &self.object).finish()
        }
    }
}

type Key = (&'static str, String, String);

/// The one kind stored encrypted.
const SECRETS: &str = kantai_api::resources::SECRETS.plural;

/// The start of a watch: the current objects, the events since the requested version, and a
/// receiver of every later event.
/// What a watch starts from: the current objects (or none, when resuming), the events
/// since the version resumed from, a receiver of every later event, and the store's version
/// at that moment (for bookmarks).
pub type WatchStart = (Vec<Arc<Value>>, Vec<Event>, broadcast::Receiver<Event>, u64);

struct Inner {
    objects: BTreeMap<Key, Arc<Value>>,
    rv: u64,
    /// Past events, oldest first, with when they happened.
    history: VecDeque<(std::time::Instant, Event)>,
}

/// The store.
pub struct Store {
    db: Database,
    /// Seals Secrets before they reach the database.
    encryption: Encryption,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    /// Versions up to this one may have been handed out; it is on disk durably.
    reserved: std::sync::atomic::AtomicU64,
}

fn key_string(k: &Key) -> String {
    format!("{}/{}/{}", k.0, k.1, k.2)
}

fn resource_named(plural: &str) -> Option<&'static str> {
    kantai_api::resources::ALL
        .iter()
        .find(|r| r.plural == plural)
        .map(|r| r.plural)
}

/// Durable writes for what users own and for placements (a lost placement would move running
/// instances after a crash). Instances and nodes are re-asserted by their agents, so their
/// frequent status writes skip the disk sync.
fn durability(resource: &str) -> Durability {
    match resource {
        "instances" | "nodes" => Durability::None,
        _ => Durability::Immediate,
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Database(format!(
                "cannot create the state directory {}: {e}",
                dir.display()
            ))
        })?;
        set_private(dir);
        let path = dir.join("store.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
        set_private(&path);
        {
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(OBJECTS).map_err(db_err)?;
            tx.open_table(META).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
        }
        let mut objects = BTreeMap::new();
        let rv;
        let encryption;
        // Secrets stored before encryption existed, to rewrite encrypted.
        let mut plain_secrets = Vec::new();
        {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(OBJECTS).map_err(db_err)?;
            let mut raw = Vec::new();
            for item in table.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                let key = k.value().to_owned();
                let mut parts = key.splitn(3, '/');
                let (Some(res), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Some(res) = resource_named(res) else {
                    continue;
                };
                raw.push(((res, ns.to_owned(), name.to_owned()), v.value().to_vec()));
            }
            let sealed = raw
                .iter()
                .any(|(k, v)| k.0 == SECRETS && v.starts_with(crate::encryption::PREFIX));
            encryption = Encryption::open(dir, !sealed)?;
            for (key, bytes) in raw {
                if key.0 != SECRETS {
                    // Other kinds: an object that no longer decodes is left out, not fatal.
                    if let Ok(obj) = serde_json::from_slice::<Value>(&bytes) {
                        objects.insert(key, Arc::new(obj));
                    }
                    continue;
                }
                // A Secret that cannot be read stops the start: skipping it would serve a
                // fleet without it, and the next write of it would destroy it.
                let k = key_string(&key);
                let plain = match encryption.open_value(&k, &bytes)? {
                    Some(p) => p,
                    None => {
                        plain_secrets.push(key.clone());
                        bytes
                    }
                };
                let obj = serde_json::from_slice::<Value>(&plain).map_err(|e| {
                    EncryptionError::Decrypt {
                        key: k.clone(),
                        path: encryption.path().to_owned(),
                        message: format!(
                            "is not a stored Secret: not JSON ({:?} error at line {} column {})",
                            e.classify(),
                            e.line(),
                            e.column()
                        ),
                    }
                })?;
                objects.insert(key, Arc::new(obj));
            }
            let meta = tx.open_table(META).map_err(db_err)?;
            // Writes without a disk sync may be lost in a crash, and with them the versions
            // they took; restarting from the reserved mark keeps resourceVersion increasing,
            // so no client that saw a lost version mistakes an older state for a newer one.
            let written = meta.get("rv").map_err(db_err)?.map_or(0, |v| v.value());
            let reserved = meta
                .get("rv_reserved")
                .map_err(db_err)?
                .map_or(0, |v| v.value());
            rv = written.max(reserved);
        }
        if !plain_secrets.is_empty() {
            let tx = db.begin_write().map_err(db_err)?;
            {
                let mut table = tx.open_table(OBJECTS).map_err(db_err)?;
                for key in &plain_secrets {
                    let k = key_string(key);
                    let bytes = serde_json::to_vec(&*objects[key]).map_err(db_err)?;
                    let sealed = encryption.seal(&k, &bytes)?;
                    table
                        .insert(k.as_str(), sealed.as_slice())
                        .map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)?;
        }
        let (events, _) = broadcast::channel(4096);
        Ok(Store {
            db,
            encryption,
            inner: Mutex::new(Inner {
                objects,
                rv,
                history: VecDeque::new(),
            }),
            events,
            reserved: std::sync::atomic::AtomicU64::new(rv),
        })
    }

    fn persist(&self, key: &Key, obj: Option<&Value>, rv: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let mut tx = self.db.begin_write().map_err(db_err)?;
        let reserve = rv > self.reserved.load(Ordering::Acquire);
        tx.set_durability(if reserve {
            Durability::Immediate
        } else {
            durability(key.0)
        })
        .map_err(db_err)?;
        {
            let mut table = tx.open_table(OBJECTS).map_err(db_err)?;
            let k = key_string(key);
            match obj {
                Some(o) => {
                    let mut bytes = serde_json::to_vec(o).map_err(db_err)?;
                    if key.0 == SECRETS {
                        bytes = self.encryption.seal(&k, &bytes)?;
                    }
                    table.insert(k.as_str(), bytes.as_slice()).map_err(db_err)?;
                }
                None => {
                    table.remove(k.as_str()).map_err(db_err)?;
                }
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert("rv", rv).map_err(db_err)?;
            if reserve {
                meta.insert("rv_reserved", rv + RV_RESERVE)
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        if reserve {
            self.reserved.store(rv + RV_RESERVE, Ordering::Release);
        }
        Ok(())
    }

    fn emit(&self, inner: &mut Inner, type_: EventType, key: &Key, object: Arc<Value>) {
        let e = Event {
            rv: inner.rv,
            type_,
            resource: key.0,
            namespace: key.1.clone(),
            object,
        };
        let now = std::time::Instant::now();
        Self::prune(inner, now);
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back((now, e.clone()));
        let _ = self.events.send(e);
    }

    /// Forgets events older than [`HISTORY_AGE`] at `now`.
    fn prune(inner: &mut Inner, now: std::time::Instant) {
        while inner
            .history
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > HISTORY_AGE)
        {
            inner.history.pop_front();
        }
    }

    /// One object.
    pub fn get(&self, r: &Resource, ns: &str, name: &str) -> Option<Arc<Value>> {
        let ns = if r.namespaced { ns } else { "" };
        self.inner
            .lock()
            .objects
            .get(&(r.plural, ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The objects of a resource (in a namespace, or all), and the store's version.
    pub fn list(&self, r: &Resource, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.inner.lock();
        (Self::select(&inner, r, ns), inner.rv)
    }

    fn select(inner: &Inner, r: &Resource, ns: Option<&str>) -> Vec<Arc<Value>> {
        let ns = if r.namespaced { ns } else { None };
        inner
            .objects
            .iter()
            .filter(|((res, n, _), _)| *res == r.plural && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The store's current resourceVersion.
    pub fn version(&self) -> u64 {
        self.inner.lock().rv
    }

    /// A consistent snapshot for a watch: the current objects, and a receiver of every later
    /// event (or the events since `since`, when given and still in history).
    pub fn watch(
        &self,
        r: &Resource,
        ns: Option<&str>,
        since: Option<u64>,
    ) -> Result<WatchStart, StoreError> {
        let inner = self.inner.lock();
        let rx = self.events.subscribe();
        match since {
            None => Ok((Self::select(&inner, r, ns), Vec::new(), rx, inner.rv)),
            Some(rv) => {
                let oldest = inner
                    .history
                    .front()
                    .map_or(inner.rv, |(_, e)| e.rv.saturating_sub(1));
                if rv < oldest {
                    return Err(StoreError::Gone(rv));
                }
                let past = inner
                    .history
                    .iter()
                    .filter(|(_, e)| e.rv > rv)
                    .map(|(_, e)| e.clone())
                    .collect();
                Ok((Vec::new(), past, rx, inner.rv))
            }
        }
    }

    /// Creates an object: sets uid, creationTimestamp, generation 1 and resourceVersion.
    pub fn create(
        &self,
        r: &Resource,
        ns: &str,
        mut obj: Value,
        now: &str,
    ) -> Result<Arc<Value>, StoreError> {
        let ns = if r.namespaced { ns } else { "" };
        let name = obj.name().to_owned();
        let key: Key = (r.plural, ns.to_owned(), name.clone());
        let mut inner = self.inner.lock();
        if inner.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                resource: r.plural,
                name,
            });
        }
        let rv = inner.rv + 1;
        let meta = metadata(&mut obj);
        meta.insert("uid".into(), Value::String(new_uid()));
        meta.insert("creationTimestamp".into(), Value::String(now.to_owned()));
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        meta.insert("generation".into(), Value::from(1));
        if r.namespaced {
            meta.insert("namespace".into(), Value::String(ns.to_owned()));
        } else {
            meta.remove("namespace");
        }
        self.persist(&key, Some(&obj), rv)?;
        inner.rv = rv;
        let obj = Arc::new(obj);
        inner.objects.insert(key.clone(), obj.clone());
        self.emit(&mut inner, EventType::Added, &key, obj.clone());
        Ok(obj)
    }

    /// Replaces an object. When `expect_rv` is given it must match the stored version
    /// (optimistic concurrency). Identity fields are kept; `generation` grows when `spec`
    /// changes. Returns the stored object, unchanged (and without an event) when nothing
    /// changed.
    pub fn update(
        &self,
        r: &Resource,
        ns: &str,
        name: &str,
        mut obj: Value,
        expect_rv: Option<&str>,
    ) -> Result<Arc<Value>, StoreError> {
        let ns = if r.namespaced { ns } else { "" };
        let key: Key = (r.plural, ns.to_owned(), name.to_owned());
        let mut inner = self.inner.lock();
        let old = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or(StoreError::NotFound {
                resource: r.plural,
                name: name.to_owned(),
            })?;
        let old_rv = old.resource_version().unwrap_or("");
        if let Some(want) = expect_rv
            && !want.is_empty()
            && want != old_rv
        {
            return Err(StoreError::Conflict {
                resource: r.plural,
                name: name.to_owned(),
            });
        }
        let generation =
            old.generation().unwrap_or(1) + i64::from(old.get("spec") != obj.get("spec"));
        {
            let meta = metadata(&mut obj);
            for k in ["uid", "creationTimestamp", "name"] {
                if let Some(v) = old.metadata().get(k) {
                    meta.insert(k.into(), v.clone());
                }
            }
            if r.namespaced {
                meta.insert("namespace".into(), Value::String(ns.to_owned()));
            }
            meta.insert("generation".into(), Value::from(generation));
            meta.insert("resourceVersion".into(), Value::String(old_rv.to_owned()));
        }
        if obj == *old {
            return Ok(old);
        }
        let rv = inner.rv + 1;
        metadata(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        self.persist(&key, Some(&obj), rv)?;
        inner.rv = rv;
        let obj = Arc::new(obj);
        inner.objects.insert(key.clone(), obj.clone());
        self.emit(&mut inner, EventType::Modified, &key, obj.clone());
        Ok(obj)
    }

    /// Deletes an object and returns it as it was.
    pub fn delete(&self, r: &Resource, ns: &str, name: &str) -> Result<Arc<Value>, StoreError> {
        let ns = if r.namespaced { ns } else { "" };
        let key: Key = (r.plural, ns.to_owned(), name.to_owned());
        let mut inner = self.inner.lock();
        if !inner.objects.contains_key(&key) {
            return Err(StoreError::NotFound {
                resource: r.plural,
                name: name.to_owned(),
            });
        }
        let rv = inner.rv + 1;
        self.persist(&key, None, rv)?;
        inner.rv = rv;
        let old = inner.objects.remove(&key).unwrap_or_default();
        self.emit(&mut inner, EventType::Deleted, &key, old.clone());
        Ok(old)
    }

    /// A receiver of every later event (for the control plane's own loops).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

fn metadata(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(serde_json::Map::new());
    }
    let o = obj.as_object_mut().expect("just made an object");
    let meta = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(serde_json::Map::new());
    }
    meta.as_object_mut().expect("just made an object")
}

fn new_uid() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The state directory and the database hold every object: only the owner may read them.
fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o700 } else { 0o600 };
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(test)]
mod tests {
    use super::*;
    use kantai_api::resources::{NODES, SERVICES};
    use serde_json::json;

    fn svc(name: &str, image: &str) -> Value {
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
               "metadata": {"name": name}, "spec": {"template": {"spec": {"containers": [{"image": image}]}}}})
    }

    #[test]
    fn only_the_owner_may_read_the_state() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let state = dir.path().join("state");
        let _store = Store::open(&state).expect("open");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("store.redb")), 0o600);
    }

    #[test]
    fn metadata_rules_and_persistence() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let a = store
            .create(&SERVICES, "default", svc("a", "x"), "t0")
            .expect("create");
        assert_eq!(a.generation(), Some(1));
        assert_eq!(a.namespace(), Some("default"));
        let rv1 = a.resource_version().expect("rv").to_owned();
        assert!(matches!(
            store.create(&SERVICES, "default", svc("a", "x"), "t0"),
            Err(StoreError::AlreadyExists { .. })
        ));
        // Same content: no new version. New spec: generation 2.
        let same = store
            .update(&SERVICES, "default", "a", svc("a", "x"), None)
            .expect("noop");
        assert_eq!(same.resource_version(), Some(rv1.as_str()));
        let b = store
            .update(&SERVICES, "default", "a", svc("a", "y"), Some(&rv1))
            .expect("update");
        assert_eq!(b.generation(), Some(2));
        assert_eq!(b.uid(), a.uid());
        // A stale version conflicts.
        assert!(matches!(
            store.update(&SERVICES, "default", "a", svc("a", "z"), Some(&rv1)),
            Err(StoreError::Conflict { .. })
        ));
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let again = store.get(&SERVICES, "default", "a").expect("persisted");
        assert_eq!(
            again["spec"]["template"]["spec"]["containers"][0]["image"],
            "y"
        );
        store.delete(&SERVICES, "default", "a").expect("delete");
        assert!(store.get(&SERVICES, "default", "a").is_none());
    }

    #[test]
    fn versions_keep_increasing_across_restarts_even_if_unsynced_writes_are_lost() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let mut last = 0;
        for i in 0..3 {
            // Nodes are written without a disk sync: a crash may lose these writes.
            let n = json!({"metadata": {"name": format!("node{i}")}, "spec": {}});
            let o = store.create(&NODES, "", n, "t").expect("create");
            last = o
                .resource_version()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("rv");
        }
        drop(store);
        // Durably on disk: a mark at or above every version handed out.
        let db = Database::create(dir.path().join("store.redb")).expect("db");
        let reserved = db
            .begin_read()
            .expect("read")
            .open_table(META)
            .expect("meta")
            .get("rv_reserved")
            .expect("get")
            .map(|v| v.value())
            .expect("a reserved mark");
        assert!(reserved >= last, "{reserved} < {last}");
        drop(db);
        let store = Store::open(dir.path()).expect("reopen");
        let n = json!({"metadata": {"name": "after"}, "spec": {}});
        let o = store.create(&NODES, "", n, "t").expect("create");
        let rv: u64 = o
            .resource_version()
            .and_then(|v| v.parse().ok())
            .expect("rv");
        assert!(rv > reserved, "{rv} <= {reserved}");
    }

    #[test]
    fn a_secrets_event_does_not_show_its_content_in_debug() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let mut rx = store.subscribe();
        let s = json!({"metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}});
        store
            .create(&kantai_api::resources::SECRETS, "default", s, "t")
            .expect("create");
        let shown = format!("{:?}", rx.try_recv().expect("an event"));
        assert!(
            shown.contains("\"db\"") && !shown.contains("aHVudGVyMg"),
            "{shown}"
        );
    }

    #[test]
    fn watches_resume_from_history() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let n = json!({"metadata": {"name": "node1"}, "spec": {}});
        let created = store.create(&NODES, "ignored", n, "t").expect("create");
        assert!(created.metadata().get("namespace").is_none());
        let rv: u64 = created.resource_version().expect("rv").parse().expect("n");
        store
            .update(
                &NODES,
                "",
                "node1",
                json!({"metadata": {"name": "node1"}, "spec": {"x": 1}}),
                None,
            )
            .expect("u");
        let (_, past, _, _) = store.watch(&NODES, None, Some(rv)).expect("resume");
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].type_, EventType::Modified);
        // Five minutes later the history is gone: a watch from there lists again.
        Store::prune(
            &mut store.inner.lock(),
            std::time::Instant::now() + HISTORY_AGE + std::time::Duration::from_secs(1),
        );
        assert!(matches!(
            store.watch(&NODES, None, Some(rv)),
            Err(StoreError::Gone(_))
        ));
        let (_, past, _, _) = store
            .watch(&NODES, None, Some(store.version()))
            .expect("from now");
        assert!(past.is_empty());
    }
}
