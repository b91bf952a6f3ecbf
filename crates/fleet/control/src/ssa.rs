//! Kubernetes server-side apply (`PATCH` with `application/apply-patch+yaml`) and the field
//! ownership it rests on, `metadata.managedFields`.
//!
//! This follows Kubernetes' structured-merge-diff as it behaves for Knative's CRDs: their
//! schemas declare no list-map keys, so every list is atomic (owned and replaced whole),
//! and maps merge key by key. Without a schema an empty map stands for itself, so it is
//! owned as a leaf. Pure: the caller passes the time and does the I/O.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

/// The manager Kubernetes credits with everything in an object that predates field
/// tracking, so that a first apply cannot silently overwrite values someone else wrote.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Kubernetes caps `fieldManager` at this many bytes.
const MAX_MANAGER_LEN: usize = 128;

/// Paths no manager owns: identity and server bookkeeping (Kubernetes' stripMeta list),
/// and `status`, which belongs to the controllers and is reset on the main resource.
const IGNORED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["status"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "uid"],
    &["metadata", "resourceVersion"],
    &["metadata", "generation"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "managedFields"],
];

/// The outcome of applying a configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The object to store, `metadata.managedFields` included.
    pub object: Value,
    /// Whether there was no object before (answer 201 rather than 200).
    pub created: bool,
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Another manager owns a field this apply sets to a different value (and force was off).
    #[error("{}", conflict_message(.conflicts))]
    Conflict {
        /// Every contested field, with its owner.
        conflicts: Vec<FieldConflict>,
    },
    /// The configuration or the field manager is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// A field an apply would change that another manager owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldConflict {
    /// The field, as Kubernetes prints it: `.spec.template.spec.containerConcurrency`.
    pub field: String,
    /// The owner's name (`kubectl-client-side-apply`, `before-first-apply`, ...).
    pub manager: String,
    /// How the owner came to own it: `Apply` or `Update`.
    pub operation: String,
    /// The API version the owner wrote with.
    pub api_version: String,
    /// The subresource the owner wrote through, if any.
    pub subresource: Option<String>,
}

impl FieldConflict {
    /// The owner as Kubernetes names it: `"kubectl-client-side-apply" using serving.knative.dev/v1`.
    pub fn owner(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        // Appliers are identified without their version (each apply may use another one).
        if self.operation == UPDATE {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    /// This conflict as an entry of a Kubernetes `Status`'s `details.causes`.
    pub fn status_cause(&self) -> Value {
        json!({
            "type": "FieldManagerConflict",
            "message": format!("conflict with {}", self.owner()),
            "field": self.field,
        })
    }
}

fn conflict_message(conflicts: &[FieldConflict]) -> String {
    let summary = if let [c] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.owner(),
            c.field
        )
    } else {
        let mut by_owner: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for c in conflicts {
            by_owner.entry(c.owner()).or_default().push(&c.field);
        }
        let mut lines = Vec::new();
        for (owner, fields) in by_owner {
            lines.push(format!("conflicts with {owner}:"));
            lines.extend(fields.into_iter().map(|f| format!("- {f}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    format!(
        "{summary}\nApply again with --force-conflicts to take these fields over, or leave them out \
         of the configuration."
    )
}

/// Applies `applied` (the user's configuration) as `manager` onto `existing` (`None`: create).
///
/// The caller still checks that name and namespace match the request, honours a
/// `metadata.resourceVersion` in the configuration as a precondition, and admits the result.
pub fn apply(
    existing: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now_rfc3339: &str,
) -> Result<Applied, ApplyError> {
    let config = validate(existing, applied, manager)?;
    let api_version = config["apiVersion"].as_str().unwrap_or_default().to_owned();
    // The configuration without what the server keeps for itself: that is what gets merged
    // into an existing object and what the applier owns.
    let mut body = config.clone();
    for path in IGNORED {
        remove_path(&mut body, path);
    }
    let set = FieldSet::leaves(&body);

    let (mut object, mut entries) = match existing {
        Some(live) => {
            let mut object = live.clone();
            merge(&mut object, &body);
            (object, live_entries(live, now_rfc3339))
        }
        None => {
            let mut object = config;
            remove_path(&mut object, &["status"]);
            (object, Vec::new())
        }
    };

    let mine = entries
        .iter()
        .position(|e| e.is(manager, APPLY, &api_version))
        .map(|i| entries.remove(i));

    // Kubernetes' prune: what this manager applied last time and no longer does goes away,
    // unless someone (this configuration included) still owns it.
    if let Some(last) = &mine {
        let mut owned = set.clone();
        for e in &entries {
            owned.union(&e.fields);
        }
        let mut dropped = last.fields.clone();
        dropped.subtract(&owned);
        if let Value::Object(root) = &mut object {
            for path in dropped.paths() {
                prune(root, &path, Some(&owned), true);
            }
        }
    }

    let (changed, removed) = diff(existing, Some(&object));
    let mut conflicts = Vec::new();
    for e in &entries {
        for path in e.fields.intersection(&changed).paths() {
            conflicts.push(FieldConflict {
                field: dotted(&path),
                manager: e.manager.clone(),
                operation: e.operation.clone(),
                api_version: e.api_version.clone(),
                subresource: e.subresource.clone(),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| (a.owner(), &a.field).cmp(&(b.owner(), &b.field)));
        return Err(ApplyError::Conflict { conflicts });
    }
    // Forced: the applier takes the contested fields over. Otherwise `changed` meets no one
    // else's fields, and this only forgets fields that no longer exist.
    for e in &mut entries {
        e.fields.subtract(&changed);
        e.fields.subtract(&removed);
    }
    entries.retain(|e| !e.fields.is_empty());

    if !set.is_empty() {
        let object_changed = existing != Some(&object);
        let time = match mine {
            Some(m) if !object_changed && m.fields == set && m.api_version == api_version => m.time,
            _ => Some(now_rfc3339.to_owned()),
        };
        entries.push(Entry {
            manager: manager.to_owned(),
            operation: APPLY.to_owned(),
            api_version,
            time,
            subresource: None,
            fields: set,
        });
    }
    write_entries(&mut object, entries);
    Ok(Applied {
        object,
        created: existing.is_none(),
    })
}

/// Records, for a non-apply write (create, update or patch by `manager`), which fields that
/// manager now owns, so that later applies by others see conflicts, as Kubernetes does.
///
/// Call it on the final object (after defaulting), with `old` the stored object (`None` for
/// a create). As in Kubernetes, `managedFields` sent in `new` replace the stored ones, `[]`
/// clears them, and leaving them out keeps the stored ones.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, now_rfc3339: &str) {
    if !new.get("metadata").is_some_and(Value::is_object) {
        return;
    }
    let sent = new["metadata"].get("managedFields");
    let mut entries = if sent.and_then(Value::as_array).is_some_and(Vec::is_empty) {
        Vec::new()
    } else {
        sent.and_then(read_entries)
            .filter(|e| !e.is_empty())
            .or_else(|| old.and_then(|o| read_entries(o["metadata"].get("managedFields")?)))
            .unwrap_or_default()
    };
    let api_version = new["apiVersion"].as_str().unwrap_or_default().to_owned();
    let (changed, removed) = diff(old, Some(new));

    let mine = entries
        .iter()
        .position(|e| e.is(manager, UPDATE, &api_version))
        .map(|i| entries.remove(i));
    for e in &mut entries {
        e.fields.subtract(&changed);
        e.fields.subtract(&removed);
    }
    entries.retain(|e| !e.fields.is_empty());

    let (mut fields, previous_time) = match mine {
        Some(m) => (m.fields, m.time),
        None => (FieldSet::default(), None),
    };
    fields.union(&changed);
    fields.subtract(&removed);
    if !fields.is_empty() {
        entries.push(Entry {
            manager: manager.to_owned(),
            operation: UPDATE.to_owned(),
            api_version,
            time: if changed.is_empty() {
                previous_time
            } else {
                Some(now_rfc3339.to_owned())
            },
            subresource: None,
            fields,
        });
    }
    write_entries(new, entries);
}

/// Checks the configuration the way the API server does, and drops its nulls: a CRD's
/// structural schema prunes nulls before apply sees them.
fn validate(existing: Option<&Value>, applied: &Value, manager: &str) -> Result<Value, ApplyError> {
    let invalid = |m: &str| Err(ApplyError::Invalid(m.to_owned()));
    if manager.is_empty() {
        return invalid("fieldManager is required for apply requests");
    }
    if manager.len() > MAX_MANAGER_LEN {
        return invalid("fieldManager: Too long: may not be longer than 128 bytes");
    }
    let Some(obj) = applied.as_object() else {
        return invalid("the applied configuration must be an object");
    };
    fn text(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    if text(obj.get("apiVersion")).is_none() {
        return invalid("apiVersion must be set in the applied configuration");
    }
    let Some(kind) = text(obj.get("kind")) else {
        return invalid("kind must be set in the applied configuration");
    };
    let Some(meta) = obj.get("metadata").and_then(Value::as_object) else {
        return invalid("metadata.name must be set in the applied configuration");
    };
    if text(meta.get("name")).is_none() {
        return invalid("metadata.name must be set in the applied configuration");
    }
    if meta.get("managedFields").is_some_and(|v| !v.is_null()) {
        return invalid("metadata.managedFields must be nil");
    }
    if let Some(live) = existing.and_then(|e| e["kind"].as_str())
        && live != kind
    {
        return Err(ApplyError::Invalid(format!(
            "the applied configuration is a {kind}, the object is a {live}"
        )));
    }
    Ok(without_nulls(applied))
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Sets every field of `config` in `target`: maps merge per key, anything else (lists
/// included) is replaced whole. An empty map only asserts that the map exists.
fn merge(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                match (t.get_mut(k), v) {
                    (Some(slot @ Value::Object(_)), Value::Object(_)) => merge(slot, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, c) => *t = c.clone(),
    }
}

fn remove_path(v: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = v;
    for p in parents {
        match at.get_mut(*p) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Value::Object(m) = at {
        m.remove(*last);
    }
}

/// Removes the field at `path`, then the maps this left empty that nobody owns as such. A
/// field that has meanwhile become a map with content stays: that content is not the
/// applier's to remove.
fn prune(map: &mut Map<String, Value>, path: &[String], owned: Option<&FieldSet>, top: bool) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        if !matches!(map.get(first), Some(Value::Object(m)) if !m.is_empty()) {
            map.remove(first);
        }
        return;
    }
    let owned = owned.and_then(|o| o.children.get(first));
    let Some(Value::Object(child)) = map.get_mut(first) else {
        return;
    };
    let was_empty = child.is_empty();
    prune(child, rest, owned, false);
    let keep = was_empty || owned.is_some_and(|o| o.member) || (top && first == "metadata");
    if child.is_empty() && !keep {
        map.remove(first);
    }
}

/// What changed from `old` to `new`, as structured-merge-diff's comparison reports it:
/// (modified or added, removed). A map that appears or disappears counts itself as well as
/// its content.
fn diff(old: Option<&Value>, new: Option<&Value>) -> (FieldSet, FieldSet) {
    let mut changed = FieldSet::default();
    let mut removed = FieldSet::default();
    compare_maps(
        old.and_then(Value::as_object),
        new.and_then(Value::as_object),
        &mut changed,
        &mut removed,
    );
    for set in [&mut changed, &mut removed] {
        set.strip_ignored();
    }
    (changed, removed)
}

fn compare_maps(
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
    changed: &mut FieldSet,
    removed: &mut FieldSet,
) {
    for (k, o) in old.into_iter().flatten() {
        compare(k, Some(o), new.and_then(|n| n.get(k)), changed, removed);
    }
    for (k, n) in new.into_iter().flatten() {
        if !old.is_some_and(|o| o.contains_key(k)) {
            compare(k, None, Some(n), changed, removed);
        }
    }
}

fn compare(
    key: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    changed: &mut FieldSet,
    removed: &mut FieldSet,
) {
    let old = old.filter(|v| !v.is_null());
    let new = new.filter(|v| !v.is_null());
    if old == new {
        return;
    }
    fn full(v: Option<&Value>) -> Option<&Map<String, Value>> {
        v.and_then(Value::as_object).filter(|m| !m.is_empty())
    }
    let (c, r) = (changed.child(key), removed.child(key));
    match (old, new) {
        (Some(Value::Object(o)), Some(Value::Object(n))) => {
            compare_maps(Some(o), Some(n), c, r);
        }
        (None, _) => {
            c.member = true;
            compare_maps(None, full(new), c, r);
        }
        (_, None) => {
            r.member = true;
            compare_maps(full(old), None, c, r);
        }
        _ => {
            c.member = true;
            compare_maps(full(old), full(new), c, r);
        }
    }
}

/// A set of field paths, shaped like `fieldsV1`: a path is in the set when its node is a
/// member; a node may also just lead to members below it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    /// The fields a configuration sets: its scalars, lists and empty maps.
    fn leaves(config: &Value) -> FieldSet {
        fn walk(v: &Value, node: &mut FieldSet) {
            match v {
                Value::Object(m) if !m.is_empty() => {
                    for (k, c) in m {
                        walk(c, node.child(k));
                    }
                }
                _ => node.member = true,
            }
        }
        let mut set = FieldSet::default();
        for (k, v) in config.as_object().into_iter().flatten() {
            walk(v, set.child(k));
        }
        set.strip_ignored();
        set
    }

    fn child(&mut self, key: &str) -> &mut FieldSet {
        self.children.entry(key.to_owned()).or_default()
    }

    fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    fn normalize(&mut self) {
        self.children.retain(|_, c| {
            c.normalize();
            !c.is_empty()
        });
    }

    fn strip_ignored(&mut self) {
        for path in IGNORED {
            let Some((last, parents)) = path.split_last() else {
                continue;
            };
            let mut at = Some(&mut *self);
            for p in parents {
                at = at.and_then(|n| n.children.get_mut(*p));
            }
            if let Some(n) = at {
                n.children.remove(*last);
            }
        }
        // `metadata` always exists; owning it would mean nothing.
        if let Some(m) = self.children.get_mut("metadata") {
            m.member = false;
        }
        self.normalize();
    }

    fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, c) in &other.children {
            self.child(k).union(c);
        }
    }

    fn subtract(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (k, c) in &other.children {
            if let Some(mine) = self.children.get_mut(k) {
                mine.subtract(c);
            }
        }
        self.normalize();
    }

    fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            member: self.member && other.member,
            children: self
                .children
                .iter()
                .filter_map(|(k, c)| Some((k.clone(), c.intersection(other.children.get(k)?))))
                .filter(|(_, s)| !s.is_empty())
                .collect(),
        }
    }

    /// The member paths, parents before children, siblings in key order.
    fn paths(&self) -> Vec<Vec<String>> {
        fn walk(node: &FieldSet, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
            if node.member && !at.is_empty() {
                out.push(at.clone());
            }
            for (k, c) in &node.children {
                at.push(k.clone());
                walk(c, at, out);
                at.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    /// Reads `fieldsV1`. List items (`k:`, `v:`, `i:`) from a server with list-map schemas
    /// count as owning the whole list, since kantai's lists are atomic.
    fn from_fields_v1(v: &Value) -> Option<FieldSet> {
        fn node(m: &Map<String, Value>) -> Option<FieldSet> {
            let mut set = FieldSet::default();
            for (k, v) in m {
                if k == "." {
                    set.member = true;
                } else if let Some(name) = k.strip_prefix("f:") {
                    let cm = v.as_object()?;
                    let mut c = node(cm)?;
                    c.member |= cm.is_empty();
                    set.children.insert(name.to_owned(), c);
                } else if ["k:", "v:", "i:"].iter().any(|p| k.starts_with(p)) {
                    set.member = true;
                } else {
                    return None;
                }
            }
            Some(set)
        }
        let mut set = node(v.as_object()?)?;
        set.member = false;
        set.normalize();
        Some(set)
    }

    fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &self.children {
            m.insert(format!("f:{k}"), c.to_fields_v1());
        }
        Value::Object(m)
    }
}

fn dotted(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    /// Whether this is the entry of `manager` writing through the main resource with
    /// `operation`. As in Kubernetes, an applier is one entry whatever version it applies
    /// with, while an updater gets one entry per version.
    fn is(&self, manager: &str, operation: &str, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.is_none()
            && (operation == APPLY || self.api_version == api_version)
    }

    fn parse(v: &Value) -> Option<Entry> {
        let m = v.as_object()?;
        let text = |k: &str| match m.get(k) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        };
        let operation = text("operation")??;
        if operation != APPLY && operation != UPDATE {
            return None;
        }
        if text("fieldsType")?.is_some_and(|t| t != "FieldsV1") {
            return None;
        }
        let fields = match m.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(f) => FieldSet::from_fields_v1(f)?,
        };
        Some(Entry {
            manager: text("manager")?.unwrap_or_default(),
            operation,
            api_version: text("apiVersion")?.unwrap_or_default(),
            time: text("time")?,
            subresource: text("subresource")?.filter(|s| !s.is_empty()),
            fields,
        })
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }
}

/// The entries of a `managedFields` list; `None` when any is malformed, which Kubernetes
/// treats like no tracking at all.
fn read_entries(v: &Value) -> Option<Vec<Entry>> {
    v.as_array()?.iter().map(Entry::parse).collect()
}

/// The stored object's entries, or, when it has none, everything in it credited to
/// `before-first-apply`.
fn live_entries(live: &Value, now: &str) -> Vec<Entry> {
    if let Some(entries) = live["metadata"]
        .get("managedFields")
        .and_then(read_entries)
        .filter(|e| !e.is_empty())
    {
        return entries;
    }
    let (fields, _) = diff(None, Some(live));
    if fields.is_empty() {
        return Vec::new();
    }
    vec![Entry {
        manager: BEFORE_FIRST_APPLY.to_owned(),
        operation: UPDATE.to_owned(),
        api_version: live["apiVersion"].as_str().unwrap_or_default().to_owned(),
        time: Some(now.to_owned()),
        subresource: None,
        fields,
    }]
}

/// Stores the entries in Kubernetes' order (appliers first, then by time and manager).
fn write_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
        return;
    }
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    meta.insert(
        "managedFields".into(),
        Value::Array(entries.iter().map(Entry::to_value).collect()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kantai_model::meta::JsonMeta;

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";
    const T2: &str = "2026-01-01T00:02:00Z";
    const V1: &str = "serving.knative.dev/v1";

    fn service(concurrency: i64, image: &str) -> Value {
        json!({
            "apiVersion": V1,
            "kind": "Service",
            "metadata": {"name": "hello", "labels": {"app": "hello"}},
            "spec": {"template": {"spec": {
                "containerConcurrency": concurrency,
                "containers": [{"image": image}],
            }}},
        })
    }

    /// What the store adds on create, so tests exercise objects like the stored ones.
    fn stored(mut v: Value) -> Value {
        let meta = v["metadata"].as_object_mut().unwrap();
        meta.insert("namespace".into(), json!("default"));
        meta.insert("uid".into(), json!("u-1"));
        meta.insert("resourceVersion".into(), json!("7"));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!(T0));
        v
    }

    fn entries(obj: &Value) -> Vec<Value> {
        obj["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
    }

    fn conflicts(e: ApplyError) -> Vec<FieldConflict> {
        match e {
            ApplyError::Conflict { conflicts } => conflicts,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn apply_creates_the_object_with_its_managed_fields() {
        let out = apply(None, &service(10, "a"), "kubectl", false, T0).unwrap();
        assert!(out.created);
        let mut expected = service(10, "a");
        expected["metadata"]["managedFields"] = json!([{
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": V1,
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:template": {"f:spec": {
                    "f:containerConcurrency": {},
                    "f:containers": {},
                }}},
            },
        }]);
        assert_eq!(out.object, expected);
    }

    #[test]
    fn reapplying_without_a_field_removes_it_and_the_maps_it_leaves_empty() {
        let mut first = service(10, "a");
        first["metadata"]["annotations"] = json!({"a": "1", "b": "2"});
        first["spec"]["template"]["metadata"] = json!({"annotations": {"x": "y"}});
        let live = stored(apply(None, &first, "kubectl", false, T0).unwrap().object);

        let mut second = service(10, "a");
        second["metadata"]["annotations"] = json!({"a": "1"});
        let out = apply(Some(&live), &second, "kubectl", false, T1).unwrap();
        assert!(!out.created);
        let o = &out.object;
        assert_eq!(o["metadata"]["annotations"], json!({"a": "1"}));
        assert!(o["spec"]["template"].get("metadata").is_none(), "{o}");
        assert_eq!(o.uid(), Some("u-1"), "server fields stay");
        let fields = &entry(o, "kubectl", "Apply").unwrap()["fieldsV1"];
        assert_eq!(fields["f:metadata"]["f:annotations"], json!({"f:a": {}}));
        assert!(fields["f:spec"]["f:template"].get("f:metadata").is_none());
        assert_eq!(entry(o, "kubectl", "Apply").unwrap()["time"], T1);
    }

    #[test]
    fn a_field_another_manager_set_differently_conflicts() {
        let mut created = service(10, "a");
        record_update(None, &mut created, "kubectl-client-side-apply", T0);
        let live = stored(created);

        let err = apply(Some(&live), &service(20, "a"), "kubectl", false, T1).unwrap_err();
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using \
             serving.knative.dev/v1: .spec.template.spec.containerConcurrency"
        );
        assert!(err.to_string().contains("--force-conflicts"));
        let c = conflicts(err);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, ".spec.template.spec.containerConcurrency");
        assert_eq!(c[0].manager, "kubectl-client-side-apply");
        assert_eq!(
            c[0].status_cause(),
            json!({"type": "FieldManagerConflict",
                   "message": "conflict with \"kubectl-client-side-apply\" using serving.knative.dev/v1",
                   "field": ".spec.template.spec.containerConcurrency"})
        );
    }

    #[test]
    fn several_conflicts_are_grouped_by_owner() {
        let mut created = service(10, "a");
        record_update(None, &mut created, "kn", T0);
        let err = apply(
            Some(&stored(created)),
            &service(20, "b"),
            "kubectl",
            false,
            T1,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "Apply failed with 2 conflicts: conflicts with \"kn\" using serving.knative.dev/v1:\n\
                 - .spec.template.spec.containerConcurrency\n\
                 - .spec.template.spec.containers\n"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_same_value_is_shared_and_survives_the_applier_dropping_it() {
        let mut created = service(10, "a");
        record_update(None, &mut created, "kn", T0);
        let live = stored(created);

        let out = apply(Some(&live), &service(10, "a"), "kubectl", false, T1).unwrap();
        let o = &out.object;
        for (m, op) in [("kn", "Update"), ("kubectl", "Apply")] {
            let e = entry(o, m, op).unwrap_or_else(|| panic!("no {m} entry in {o}"));
            assert_eq!(
                e["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containerConcurrency"],
                json!({}),
                "{m}"
            );
        }
        // Only the spec and labels of `live` changed hands: the object itself did not change.
        let mut without = o.clone();
        without["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        let mut live_without = live.clone();
        live_without["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert_eq!(without, live_without);

        // kn still owns containerConcurrency, so dropping it from the configuration keeps it.
        let mut less = service(10, "a");
        less["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("containerConcurrency");
        let out = apply(Some(o), &less, "kubectl", false, T2).unwrap();
        assert_eq!(
            out.object["spec"]["template"]["spec"]["containerConcurrency"],
            10
        );
        let mine = &entry(&out.object, "kubectl", "Apply").unwrap()["fieldsV1"];
        assert!(
            mine["f:spec"]["f:template"]["f:spec"]
                .get("f:containerConcurrency")
                .is_none()
        );
    }

    #[test]
    fn force_takes_the_field_over() {
        let mut created = service(10, "a");
        record_update(None, &mut created, "kn", T0);
        let live = stored(created);

        let out = apply(Some(&live), &service(20, "a"), "kubectl", true, T1).unwrap();
        let o = &out.object;
        assert_eq!(o["spec"]["template"]["spec"]["containerConcurrency"], 20);
        let kn = &entry(o, "kn", "Update").unwrap()["fieldsV1"];
        assert!(
            kn["f:spec"]["f:template"]["f:spec"]
                .get("f:containerConcurrency")
                .is_none()
        );
        assert_eq!(
            kn["f:spec"]["f:template"]["f:spec"]["f:containers"],
            json!({})
        );
        let mine = &entry(o, "kubectl", "Apply").unwrap()["fieldsV1"];
        assert_eq!(
            mine["f:spec"]["f:template"]["f:spec"]["f:containerConcurrency"],
            json!({})
        );
        assert_eq!(entries(o)[0]["operation"], "Apply", "appliers come first");

        // Now kubectl's: a further change by kubectl alone conflicts with no one.
        apply(Some(o), &service(30, "a"), "kubectl", false, T2).unwrap();
        // A manager left with nothing loses its entry.
        let team = |t: &str| {
            json!({"apiVersion": V1, "kind": "Service",
                   "metadata": {"name": "hello", "labels": {"team": t}}})
        };
        let o = apply(Some(o), &team("x"), "labeller", false, T2)
            .unwrap()
            .object;
        assert!(entry(&o, "labeller", "Apply").is_some());
        let o = apply(Some(&o), &team("y"), "other", true, T2)
            .unwrap()
            .object;
        assert!(entry(&o, "labeller", "Apply").is_none(), "{o}");
        assert_eq!(o.label("team"), Some("y"));
    }

    #[test]
    fn lists_are_replaced_whole() {
        let mut first = service(10, "a");
        first["spec"]["template"]["spec"]["containers"] =
            json!([{"image": "a", "env": [{"name": "A", "value": "1"}]}, {"image": "side"}]);
        let live = stored(apply(None, &first, "kubectl", false, T0).unwrap().object);
        let out = apply(Some(&live), &service(10, "b"), "kubectl", false, T1).unwrap();
        assert_eq!(
            out.object["spec"]["template"]["spec"]["containers"],
            json!([{"image": "b"}])
        );
        // Someone else's list conflicts as a whole.
        let mut other = service(10, "c");
        other["metadata"].as_object_mut().unwrap().remove("labels");
        let c = conflicts(apply(Some(&out.object), &other, "helm", false, T2).unwrap_err());
        assert_eq!(
            c.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
            [".spec.template.spec.containers"]
        );
        assert_eq!(c[0].owner(), "\"kubectl\"");
    }

    #[test]
    fn apply_never_touches_status() {
        let mut live = stored(
            apply(None, &service(10, "a"), "kubectl", false, T0)
                .unwrap()
                .object,
        );
        live["status"] =
            json!({"url": "http://hello.default.example.com", "observedGeneration": 1});
        let mut config = service(20, "a");
        config["status"] = json!({"url": "http://elsewhere"});
        let out = apply(Some(&live), &config, "kubectl", false, T1).unwrap();
        assert_eq!(out.object["status"], live["status"]);
        assert!(
            entry(&out.object, "kubectl", "Apply").unwrap()["fieldsV1"]
                .get("f:status")
                .is_none()
        );

        let created = apply(None, &config, "kubectl", false, T1).unwrap().object;
        assert!(created.get("status").is_none());
    }

    #[test]
    fn record_update_credits_the_changed_fields_only() {
        let live = stored(
            apply(None, &service(10, "a"), "kubectl", false, T0)
                .unwrap()
                .object,
        );
        let mut new = live.clone();
        new["spec"]["template"]["spec"]["containerConcurrency"] = json!(5);
        new["metadata"]["annotations"] = json!({"note": "x"});
        new["metadata"]["resourceVersion"] = json!("8");
        new["status"] = json!({"ready": true});
        record_update(Some(&live), &mut new, "kantai", T1);

        let mine = entry(&new, "kantai", "Update").unwrap();
        assert_eq!(mine["time"], T1);
        assert_eq!(mine["apiVersion"], V1);
        assert_eq!(
            mine["fieldsV1"],
            json!({
                "f:metadata": {"f:annotations": {".": {}, "f:note": {}}},
                "f:spec": {"f:template": {"f:spec": {"f:containerConcurrency": {}}}},
            })
        );
        let kubectl = &entry(&new, "kubectl", "Apply").unwrap()["fieldsV1"];
        assert!(
            kubectl["f:spec"]["f:template"]["f:spec"]
                .get("f:containerConcurrency")
                .is_none()
        );
        assert_eq!(
            kubectl["f:spec"]["f:template"]["f:spec"]["f:containers"],
            json!({})
        );

        // The applier now conflicts with kantai over the field kantai changed.
        let c = conflicts(apply(Some(&new), &service(10, "a"), "kubectl", false, T2).unwrap_err());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].manager, "kantai");
        assert_eq!(c[0].operation, "Update");

        // Removing a field takes it from whoever owned it; updates accumulate.
        let mut newer = new.clone();
        newer["metadata"].as_object_mut().unwrap().remove("labels");
        newer["metadata"]["annotations"] = json!({"more": "y"});
        record_update(Some(&new), &mut newer, "kantai", T2);
        let mine = &entry(&newer, "kantai", "Update").unwrap()["fieldsV1"];
        assert_eq!(
            mine["f:metadata"]["f:annotations"],
            json!({".": {}, "f:more": {}})
        );
        assert!(mine["f:spec"]["f:template"]["f:spec"]["f:containerConcurrency"].is_object());
        let kubectl = &entry(&newer, "kubectl", "Apply").unwrap()["fieldsV1"];
        assert!(kubectl["f:metadata"].is_null(), "{kubectl}");
    }

    #[test]
    fn record_update_keeps_sent_managed_fields_and_clears_on_empty_list() {
        let live = stored(
            apply(None, &service(10, "a"), "kubectl", false, T0)
                .unwrap()
                .object,
        );
        // A client that does not know managedFields leaves them out: the stored ones stay.
        let mut put = service(10, "a");
        record_update(Some(&live), &mut put, "kantai", T1);
        assert!(entry(&put, "kubectl", "Apply").is_some());
        assert!(entry(&put, "kantai", "Update").is_none(), "nothing changed");

        let mut reset = live.clone();
        reset["metadata"]["managedFields"] = json!([]);
        record_update(Some(&live), &mut reset, "kantai", T1);
        assert!(reset["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn an_untracked_object_belongs_to_before_first_apply() {
        let live = stored(service(10, "a"));
        let c = conflicts(apply(Some(&live), &service(20, "a"), "kubectl", false, T1).unwrap_err());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].manager, "before-first-apply");
        // Agreeing values are shared with it.
        let out = apply(Some(&live), &service(10, "a"), "kubectl", false, T1).unwrap();
        assert!(entry(&out.object, "before-first-apply", "Update").is_some());
        assert!(entry(&out.object, "kubectl", "Apply").is_some());
    }

    #[test]
    fn another_appliers_fields_survive_a_prune() {
        let live = stored(
            apply(None, &service(10, "a"), "kubectl", false, T0)
                .unwrap()
                .object,
        );
        let labels = json!({"apiVersion": V1, "kind": "Service",
                            "metadata": {"name": "hello", "labels": {"team": "x", "app": "hello"}}});
        let out = apply(Some(&live), &labels, "labeller", false, T1)
            .unwrap()
            .object;
        // kubectl drops its labels: `app` is labeller's too and stays; the spec is kubectl's.
        let mut config = service(10, "a");
        config["metadata"].as_object_mut().unwrap().remove("labels");
        let out = apply(Some(&out), &config, "kubectl", false, T2)
            .unwrap()
            .object;
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "hello", "team": "x"})
        );
        // labeller drops `app`: now nobody owns it, so it goes.
        let labels = json!({"apiVersion": V1, "kind": "Service",
                            "metadata": {"name": "hello", "labels": {"team": "x"}}});
        let out = apply(Some(&out), &labels, "labeller", false, T2)
            .unwrap()
            .object;
        assert_eq!(out["metadata"]["labels"], json!({"team": "x"}));
    }

    #[test]
    fn an_unchanged_apply_is_a_no_op() {
        let live = stored(
            apply(None, &service(10, "a"), "kubectl", false, T0)
                .unwrap()
                .object,
        );
        let out = apply(Some(&live), &service(10, "a"), "kubectl", false, T1).unwrap();
        assert_eq!(
            out.object, live,
            "the time stays too, so the store writes nothing"
        );
    }

    #[test]
    fn nulls_in_the_configuration_set_nothing() {
        let mut config = service(10, "a");
        config["metadata"]["annotations"] = json!({"a": null});
        config["spec"]["traffic"] = Value::Null;
        let out = apply(None, &config, "kubectl", false, T0).unwrap().object;
        assert_eq!(out["metadata"]["annotations"], json!({}));
        assert!(out["spec"].get("traffic").is_none());
        let fields = &entries(&out)[0]["fieldsV1"];
        assert_eq!(fields["f:metadata"]["f:annotations"], json!({}));
        assert!(fields["f:spec"].get("f:traffic").is_none());
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let bad = |v: Value, manager: &str| {
            matches!(
                apply(None, &v, manager, false, T0),
                Err(ApplyError::Invalid(_))
            )
        };
        assert!(bad(json!([1]), "kubectl"));
        assert!(bad(
            json!({"apiVersion": V1, "metadata": {"name": "x"}}),
            "kubectl"
        ));
        assert!(bad(
            json!({"apiVersion": V1, "kind": "Service", "metadata": {}}),
            "kubectl"
        ));
        assert!(bad(service(1, "a"), ""));
        let mut with_fields = service(1, "a");
        with_fields["metadata"]["managedFields"] = json!([]);
        assert!(bad(with_fields, "kubectl"));
        let route = json!({"apiVersion": V1, "kind": "Route", "metadata": {"name": "hello"}});
        let live = stored(service(1, "a"));
        assert!(matches!(
            apply(Some(&live), &route, "kubectl", false, T0),
            Err(ApplyError::Invalid(_))
        ));
    }

    #[test]
    fn fields_v1_round_trips_and_reads_list_items_as_the_list() {
        let v = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                       "f:spec": {"f:containers": {}}});
        assert_eq!(FieldSet::from_fields_v1(&v).unwrap().to_fields_v1(), v);
        let k8s = json!({"f:spec": {"f:containers": {"k:{\"name\":\"user\"}": {".": {}, "f:image": {}}}}});
        assert_eq!(
            FieldSet::from_fields_v1(&k8s).unwrap().to_fields_v1(),
            json!({"f:spec": {"f:containers": {}}})
        );
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_none());
    }
}
