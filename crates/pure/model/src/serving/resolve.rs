//! What a revision's container takes from Secrets and ConfigMaps, resolved: the control
//! plane computes a [`ResolvedConfig`] from the stored objects and ships it to the nodes
//! that run the revision; their runtimes turn it into env and files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::{ConfigMap, Secret};
use crate::serving::{KeyToPath, RevisionSpec};

/// A revision's Secret and ConfigMap references, resolved. Its `Debug` hides every value:
/// secrets must never reach a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedConfig {
    /// `envFrom` variables, in order, with their prefixes; keys that are not valid variable
    /// names are left out (and named in `skipped`), as the kubelet does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<(String, String)>,
    /// The values of `env[i].valueFrom.secretKeyRef` / `configMapKeyRef`, by the entry's
    /// index in the container's `env`. An optional reference whose object or key is missing
    /// has no entry: the variable is not set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_values: BTreeMap<usize, String>,
    /// The files of each `secret`, `configMap` and `projected` volume, by volume name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Vec<VolumeFile>>,
    /// `envFrom` keys left out because they are not valid variable names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// The kubelet's event for each `envFrom` source with skipped keys ("Keys [1bad] from the
    /// EnvFrom configMap default/app were skipped since they are considered invalid
    /// environment variable names."): keys and object names only, never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What a required reference lacks, in Kubernetes' words (`secret "db" not found`,
    /// `couldn't find key password in Secret default/db`). An instance cannot start while
    /// this is not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl std::fmt::Debug for ResolvedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedConfig")
            .field(
                "env_from",
                &self.env_from.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("env_values", &self.env_values.keys().collect::<Vec<_>>())
            .field("volumes", &self.volumes)
            .field("skipped", &self.skipped)
            .field("warnings", &self.warnings)
            .field("missing", &self.missing)
            .finish()
    }
}

/// One file of a volume.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFile {
    /// The path relative to the volume's root (`config/app.yaml`); never absolute, never
    /// with `..`.
    pub path: String,
    /// The content.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

impl std::fmt::Debug for VolumeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeFile")
            .field("path", &self.path)
            .field("bytes", &self.data.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// The Secrets and ConfigMaps of a revision's namespace, by name.
pub trait Sources {
    /// The Secret of that name, if it exists.
    fn secret(&self, name: &str) -> Option<&Secret>;
    /// The ConfigMap of that name, if it exists.
    fn config_map(&self, name: &str) -> Option<&ConfigMap>;
}

/// [`Sources`] held in two maps by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Objects {
    /// Secrets by name.
    pub secrets: BTreeMap<String, Secret>,
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
}

impl Sources for Objects {
    fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }
    fn config_map(&self, name: &str) -> Option<&ConfigMap> {
        self.config_maps.get(name)
    }
}

/// The kind of object a revision refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RefKind {
    /// A core v1 Secret.
    Secret,
    /// A core v1 ConfigMap.
    ConfigMap,
}

/// One object a revision's container depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// Secret or ConfigMap.
    pub kind: RefKind,
    /// Its name, in the revision's namespace.
    pub name: String,
    /// Whether every reference to it is optional: if so, its absence does not stop the
    /// revision.
    pub optional: bool,
}

/// Every Secret and ConfigMap the serving container's `env`, `envFrom` and the revision's
/// volumes refer to, each once, in the order first referred to; `optional` only when every
/// reference to it is.
pub fn references(spec: &RevisionSpec) -> Vec<Reference> {
    let mut out: Vec<Reference> = Vec::new();
    let mut add = |kind: RefKind, name: &str, optional: Option<bool>| {
        let optional = optional == Some(true);
        match out.iter_mut().find(|r| r.kind == kind && r.name == name) {
            Some(r) => r.optional &= optional,
            None => out.push(Reference {
                kind,
                name: name.to_owned(),
                optional,
            }),
        }
    };
    if let Some(c) = spec.container() {
        for e in &c.env_from {
            if let Some(r) = &e.config_map_ref {
                add(RefKind::ConfigMap, &r.name, r.optional);
            }
            if let Some(r) = &e.secret_ref {
                add(RefKind::Secret, &r.name, r.optional);
            }
        }
        for e in &c.env {
            if let Some(from) = &e.value_from {
                if let Some(k) = &from.secret_key_ref {
                    add(RefKind::Secret, &k.name, k.optional);
                }
                if let Some(k) = &from.config_map_key_ref {
                    add(RefKind::ConfigMap, &k.name, k.optional);
                }
            }
        }
    }
    for v in &spec.volumes {
        if let Some(s) = &v.secret {
            add(RefKind::Secret, &s.secret_name, s.optional);
        }
        if let Some(c) = &v.config_map {
            add(RefKind::ConfigMap, &c.name, c.optional);
        }
        if let Some(p) = &v.projected {
            for src in &p.sources {
                if let Some(s) = &src.secret {
                    add(RefKind::Secret, &s.name, s.optional);
                }
                if let Some(c) = &src.config_map {
                    add(RefKind::ConfigMap, &c.name, c.optional);
                }
            }
        }
    }
    out
}

/// The permission bits of a file no `defaultMode` or `mode` sets.
pub const DEFAULT_MODE: u32 = 0o644;

/// Whether the kubelet takes `name` as an environment variable name: since Kubernetes 1.32
/// (`RelaxedEnvironmentVariableValidation`), any printable ASCII but `=`, not empty.
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

/// Collects what [`resolve`] finds, with `missing` kept once each in first-found order.
struct Resolver<'a> {
    namespace: &'a str,
    sources: &'a dyn Sources,
    out: ResolvedConfig,
}

/// One object's keys as a volume's files take them.
enum Keys<'a> {
    Secret(&'a Secret),
    ConfigMap(&'a ConfigMap),
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&[u8]> {
        match self {
            Keys::Secret(s) => s.data.get(key).map(Vec::as_slice),
            Keys::ConfigMap(c) => c
                .data
                .get(key)
                .map(String::as_bytes)
                .or_else(|| c.binary_data.get(key).map(Vec::as_slice)),
        }
    }

    /// Every key, in name order (a ConfigMap's `data` and `binaryData` share no key).
    fn all(&self) -> Vec<(&str, &[u8])> {
        let mut all: Vec<(&str, &[u8])> = match self {
            Keys::Secret(s) => s
                .data
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect(),
            Keys::ConfigMap(c) => c
                .data
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .chain(
                    c.binary_data
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_slice())),
                )
                .collect(),
        };
        all.sort_by_key(|(k, _)| *k);
        all
    }

    fn kind(&self) -> &'static str {
        match self {
            Keys::Secret(_) => "Secret",
            Keys::ConfigMap(_) => "ConfigMap",
        }
    }
}

impl<'a> Resolver<'a> {
    fn missing(&mut self, problem: String) {
        if !self.out.missing.contains(&problem) {
            self.out.missing.push(problem);
        }
    }

    fn not_found(&mut self, kind: RefKind, name: &str) {
        let kind = match kind {
            RefKind::Secret => "secret",
            RefKind::ConfigMap => "configmap",
        };
        self.missing(format!("{kind} {name:?} not found"));
    }

    fn no_key(&mut self, kind: &str, name: &str, key: &str) {
        let ns = self.namespace;
        self.missing(format!("couldn't find key {key} in {kind} {ns}/{name}"));
    }

    fn secret(&mut self, name: &str, optional: Option<bool>) -> Option<&'a Secret> {
        let s = self.sources.secret(name);
        if s.is_none() && optional != Some(true) {
            self.not_found(RefKind::Secret, name);
        }
        s
    }

    fn config_map(&mut self, name: &str, optional: Option<bool>) -> Option<&'a ConfigMap> {
        let c = self.sources.config_map(name);
        if c.is_none() && optional != Some(true) {
            self.not_found(RefKind::ConfigMap, name);
        }
        c
    }

    /// `envFrom`: every key, prefixed; names the kubelet refuses are skipped and named.
    fn env_from(&mut self, source: &crate::serving::EnvFromSource) {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let (kind, name, entries): (&str, &str, Vec<(String, String)>) =
            if let Some(r) = &source.config_map_ref {
                let Some(c) = self.config_map(&r.name, r.optional) else {
                    return;
                };
                // The kubelet reads `data` only: binaryData never reaches the env.
                let e = c.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                ("configMap", &r.name, e)
            } else if let Some(r) = &source.secret_ref {
                let Some(s) = self.secret(&r.name, r.optional) else {
                    return;
                };
                let e = s
                    .data
                    .iter()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                    .collect();
                ("secret", &r.name, e)
            } else {
                return;
            };
        let mut invalid = Vec::new();
        for (k, v) in entries {
            let k = format!("{prefix}{k}");
            if is_env_var_name(&k) {
                self.out.env_from.push((k, v));
            } else {
                if !self.out.skipped.contains(&k) {
                    self.out.skipped.push(k.clone());
                }
                invalid.push(k);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            self.out.warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {}/{name} were skipped since they are \
                 considered invalid environment variable names.",
                invalid.join(", "),
                self.namespace
            ));
        }
    }

    /// One object's keys (or its `items`) as files, into `files`; a later file of the same
    /// path replaces an earlier one in its place, as the kubelet's projection does.
    fn files(
        &mut self,
        keys: Option<Keys<'_>>,
        name: &str,
        items: &[KeyToPath],
        optional: Option<bool>,
        default_mode: Option<i64>,
        files: &mut Vec<VolumeFile>,
    ) {
        let Some(keys) = keys else { return };
        let mode_of = |m: Option<i64>| -> u32 {
            m.or(default_mode)
                .and_then(|m| u32::try_from(m).ok())
                .map_or(DEFAULT_MODE, |m| m & 0o7777)
        };
        let mut chosen: Vec<(String, Vec<u8>, u32)> = Vec::new();
        if items.is_empty() {
            for (k, v) in keys.all() {
                chosen.push((k.to_owned(), v.to_vec(), mode_of(None)));
            }
        } else {
            for item in items {
                match keys.get(&item.key) {
                    Some(v) => chosen.push((item.path.clone(), v.to_vec(), mode_of(item.mode))),
                    None if optional == Some(true) => {}
                    None => self.no_key(keys.kind(), name, &item.key),
                }
            }
        }
        for (path, data, mode) in chosen {
            if !is_relative_path(&path) {
                // Validation refuses such paths; a file must never land outside its volume.
                self.missing(format!(
                    "{} {}/{name}: path {path:?} must be relative and must not contain '..'",
                    keys.kind(),
                    self.namespace
                ));
                continue;
            }
            let file = VolumeFile { path, data, mode };
            match files.iter_mut().find(|f| f.path == file.path) {
                Some(slot) => *slot = file,
                None => files.push(file),
            }
        }
    }
}

fn is_relative_path(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|p| p == "..")
}

/// What the serving container of `spec`, in `namespace`, takes from `sources`, resolved as
/// the kubelet does:
///
/// - `envFrom`, in order: every key of the object (a ConfigMap's `data`; a Secret's `data`,
///   as UTF-8 with invalid bytes replaced), with the prefix; a name the kubelet refuses
///   ([`is_env_var_name`]) is left out, listed in `skipped`, and its source's event is in
///   `warnings`.
/// - `env[i].valueFrom.secretKeyRef` / `configMapKeyRef` (a ConfigMap's `data` only, as the
///   kubelet reads it): the value under `env_values[i]`.
/// - `secret`, `configMap` and `projected` volumes: their files (all keys at their names,
///   or the `items`, a ConfigMap's `binaryData` included), each with its `mode`, else the
///   volume's `defaultMode`, else 0644. An optional volume whose object is missing has no
///   files (an empty directory); `emptyDir` volumes have no entry. In a projected volume a
///   later source's file replaces an earlier one of the same path (the kubelet's
///   projection; validation refuses duplicate `items` paths).
///
/// A required object or key that is missing (not `optional: true`) is named in `missing` in
/// the kubelet's words, once, in the order met: `secret "db" not found`, `configmap "app"
/// not found`, `couldn't find key password in Secret default/db`.
pub fn resolve(spec: &RevisionSpec, namespace: &str, sources: &dyn Sources) -> ResolvedConfig {
    let mut r = Resolver {
        namespace,
        sources,
        out: ResolvedConfig::default(),
    };
    if let Some(c) = spec.container() {
        for e in &c.env_from {
            r.env_from(e);
        }
        for (i, e) in c.env.iter().enumerate() {
            let Some(from) = &e.value_from else { continue };
            if let Some(k) = &from.secret_key_ref {
                let Some(s) = r.secret(&k.name, k.optional) else {
                    continue;
                };
                match s.data.get(&k.key) {
                    Some(v) => {
                        let v = String::from_utf8_lossy(v).into_owned();
                        r.out.env_values.insert(i, v);
                    }
                    None if k.optional == Some(true) => {}
                    None => r.no_key("Secret", &k.name, &k.key),
                }
            } else if let Some(k) = &from.config_map_key_ref {
                let Some(c) = r.config_map(&k.name, k.optional) else {
                    continue;
                };
                match c.data.get(&k.key) {
                    Some(v) => {
                        let v = v.clone();
                        r.out.env_values.insert(i, v);
                    }
                    None if k.optional == Some(true) => {}
                    None => r.no_key("ConfigMap", &k.name, &k.key),
                }
            }
        }
    }
    for v in &spec.volumes {
        let mut files = Vec::new();
        if let Some(s) = &v.secret {
            let keys = r.secret(&s.secret_name, s.optional).map(Keys::Secret);
            r.files(
                keys,
                &s.secret_name,
                &s.items,
                s.optional,
                s.default_mode,
                &mut files,
            );
        } else if let Some(c) = &v.config_map {
            let keys = r.config_map(&c.name, c.optional).map(Keys::ConfigMap);
            r.files(
                keys,
                &c.name,
                &c.items,
                c.optional,
                c.default_mode,
                &mut files,
            );
        } else if let Some(p) = &v.projected {
            for src in &p.sources {
                if let Some(s) = &src.secret {
                    let keys = r.secret(&s.name, s.optional).map(Keys::Secret);
                    r.files(
                        keys,
                        &s.name,
                        &s.items,
                        s.optional,
                        p.default_mode,
                        &mut files,
                    );
                }
                if let Some(c) = &src.config_map {
                    let keys = r.config_map(&c.name, c.optional).map(Keys::ConfigMap);
                    r.files(
                        keys,
                        &c.name,
                        &c.items,
                        c.optional,
                        p.default_mode,
                        &mut files,
                    );
                }
            }
        } else {
            continue;
        }
        r.out.volumes.insert(v.name.clone(), files);
    }
    r.out
}

/// Bytes as standard base64 text, as Kubernetes writes a Secret's `data`.
pub mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes bytes as base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Reads base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
