//! The process environment: the image's, then the container's, then Knative's, with the
//! variables runtimes add themselves.

use std::collections::BTreeMap;

use kantai_model::serving::resolve::ResolvedConfig;
use kantai_model::serving::{Container, EnvVar, ResourceFieldSelector, Resources};
use kantai_model::units::Quantity;

use crate::command::expand;

/// `PATH` when the image sets none: containerd's and runc's default.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The container's own env as the kubelet resolves it: each value has its `$(VAR)` references
/// expanded from the entries before it, and a later entry of the same name replaces the earlier
/// value in place.
///
/// Entries with `valueFrom` are skipped: this is the env without Secrets, ConfigMaps or the
/// Downward API (see [`resolved_env`] for all of it). An entry with neither `value` nor
/// `valueFrom` is the empty string, as in Kubernetes.
pub fn container_env(env: &[EnvVar]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for e in env {
        if e.value.is_none() && e.value_from.is_some() {
            continue;
        }
        let value = expand(e.value.as_deref().unwrap_or(""), &seen);
        seen.insert(e.name.clone(), value.clone());
        set(&mut out, &e.name, value);
    }
    out
}

/// What the container's `command` and `args` may refer to: its own env and Knative's (the
/// kubelet expands against the pod spec's env, where Knative appends `PORT` and `K_*`). The
/// image's Env is not among them: the kubelet never sees it.
pub fn expansion_vars(
    container_env: &[(String, String)],
    knative_env: &[(String, String)],
) -> BTreeMap<String, String> {
    container_env.iter().chain(knative_env).cloned().collect()
}

/// The process environment, in the order containerd's CRI builds it: `PATH` (the default,
/// replaced in place by the image's), `HOSTNAME`, the image's `Env`, the container's env, then
/// Knative's variables, which win. A name set again replaces the value where it first
/// appeared; new names are appended. An image entry with no `=` unsets the name, as
/// containerd reads it.
///
/// `HOME` is appended last when nobody set it, to `home` (the user's passwd entry, else `/`):
/// runc sets it the same way inside the container, but writing it here makes `config.json` say
/// everything the process gets.
pub fn environment(
    image_env: &[String],
    container_env: &[(String, String)],
    knative_env: &[(String, String)],
    hostname: &str,
    home: &str,
) -> Vec<String> {
    let mut env = vec![
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOSTNAME".to_owned(), hostname.to_owned()),
    ];
    for entry in image_env {
        match entry.split_once('=') {
            Some((k, v)) => set(&mut env, k, v.to_owned()),
            None => env.retain(|(k, _)| k != entry),
        }
    }
    for (k, v) in container_env.iter().chain(knative_env) {
        set(&mut env, k, v.clone());
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_owned(), home.to_owned()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_owned(), value)),
    }
}

/// What the Downward API (`env[].valueFrom.fieldRef`) reads: the instance seen as a pod.
#[derive(Clone, Copy, Debug)]
pub struct Downward<'a> {
    /// `metadata.name`: the instance's name.
    pub pod_name: &'a str,
    /// `metadata.namespace`.
    pub namespace: &'a str,
    /// `metadata.uid`.
    pub uid: &'a str,
    /// `spec.nodeName`.
    pub node_name: &'a str,
    /// `status.hostIP`, and `status.podIP` too: instances share the node's network.
    pub host_ip: &'a str,
    /// `spec.serviceAccountName`.
    pub service_account: &'a str,
    /// `metadata.labels['k']`.
    pub labels: &'a BTreeMap<String, String>,
    /// `metadata.annotations['k']`.
    pub annotations: &'a BTreeMap<String, String>,
    /// The node's allocatable CPU in millicores, which `limits.cpu` reads when the container
    /// sets no CPU limit (as the kubelet does); 0 when unknown.
    pub allocatable_cpu_millis: u64,
    /// The node's allocatable memory in bytes, likewise for `limits.memory`; 0 when unknown.
    pub allocatable_memory: u64,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl Default for Downward<'_> {
    fn default() -> Self {
        Downward {
            pod_name: "",
            namespace: "",
            uid: "",
            node_name: "",
            host_ip: "",
            service_account: "",
            labels: &NO_LABELS,
            annotations: &NO_LABELS,
            allocatable_cpu_millis: 0,
            allocatable_memory: 0,
        }
    }
}

impl Downward<'_> {
    /// The value of a `fieldRef` path the kubelet supports for env, or `None` for one it does
    /// not (validation refuses those before an instance is made). A label or annotation that
    /// is not set reads as empty, as in Kubernetes.
    pub fn field(&self, path: &str) -> Option<String> {
        let v = match path {
            "metadata.name" => self.pod_name,
            "metadata.namespace" => self.namespace,
            "metadata.uid" => self.uid,
            "spec.nodeName" => self.node_name,
            "spec.serviceAccountName" => self.service_account,
            "status.hostIP" | "status.hostIPs" | "status.podIP" | "status.podIPs" => self.host_ip,
            _ => {
                let (map, key) = subscript(path)?;
                let map = match map {
                    "metadata.labels" => self.labels,
                    "metadata.annotations" => self.annotations,
                    _ => return None,
                };
                return Some(map.get(key).cloned().unwrap_or_default());
            }
        };
        Some(v.to_owned())
    }
}

/// `metadata.labels['app']` → (`metadata.labels`, `app`); double quotes are accepted too.
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (map, rest) = path.split_once('[')?;
    let inner = rest.strip_suffix(']')?;
    let key = inner
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')))?;
    Some((map, key))
}

/// A `resourceFieldRef`'s value as the kubelet writes it: the quantity divided by `divisor`
/// (default 1), rounded up, in whole units. CPU counts in millicores, so `limits.cpu: 250m`
/// with the default divisor reads `1`, and with divisor `1m` reads `250`.
///
/// A request that is not set is the limit (the API server's defaulting), else 0. A limit that
/// is not set is the node's allocatable amount, as the kubelet does; when the node's is not
/// known either, the request, and with neither the variable is not set.
pub fn resource_field(
    resources: &Resources,
    selector: &ResourceFieldSelector,
    downward: &Downward,
) -> Option<String> {
    let (kind, name) = selector.resource.split_once('.')?;
    let cpu = name == "cpu";
    // In the quantity's smallest unit this code counts: millicores for CPU, bytes otherwise.
    let units = |q: &Quantity| -> u128 {
        let v = if cpu { q.value() * 1000.0 } else { q.value() };
        v.max(0.0).round() as u128
    };
    let limit = resources.limits.get(name).map(units);
    let request = resources.requests.get(name).map(units);
    let value = match kind {
        "requests" => request.or(limit).unwrap_or(0),
        "limits" => {
            let node = match name {
                "cpu" => downward.allocatable_cpu_millis,
                "memory" => downward.allocatable_memory,
                _ => 0,
            };
            limit
                .or((node > 0).then_some(u128::from(node)))
                .or(request)?
        }
        _ => return None,
    };
    let divisor = selector
        .divisor
        .as_ref()
        .map(units)
        .filter(|d| *d > 0)
        .unwrap_or(if cpu { 1000 } else { 1 });
    Some(value.div_ceil(divisor).to_string())
}

/// The container's env as the kubelet makes it, with Secrets, ConfigMaps and the Downward
/// API resolved: first the `envFrom` variables (`config.env_from`, in order), then each `env`
/// entry in order. A `value` has its `$(VAR)` references expanded from everything set before
/// it (envFrom's variables included); a `valueFrom` value is taken as it is: a Secret's or
/// ConfigMap's from `config.env_values` by the entry's index (none there: an optional
/// reference that is missing, so the variable is not set), a field from `downward`, a
/// resource from the container's own requests and limits. A name set again keeps its first
/// place and takes the later value.
pub fn resolved_env(
    c: &Container,
    config: &ResolvedConfig,
    downward: &Downward,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &config.env_from {
        seen.insert(k.clone(), v.clone());
        set(&mut out, k, v.clone());
    }
    for (i, e) in c.env.iter().enumerate() {
        let value = match &e.value_from {
            None => Some(expand(e.value.as_deref().unwrap_or(""), &seen)),
            Some(from) => {
                if from.secret_key_ref.is_some() || from.config_map_key_ref.is_some() {
                    config.env_values.get(&i).cloned()
                } else if let Some(f) = &from.field_ref {
                    downward.field(&f.field_path)
                } else if let Some(r) = &from.resource_field_ref {
                    resource_field(&c.resources, r, downward)
                } else {
                    None
                }
            }
        };
        if let Some(value) = value {
            seen.insert(e.name.clone(), value.clone());
            set(&mut out, &e.name, value);
        }
    }
    out
}
