//! The process environment: the image's, then the container's, then Knative's, with the
//! variables runtimes add themselves.

use std::collections::BTreeMap;

use kantai_model::serving::EnvVar;

use crate::command::expand;

/// `PATH` when the image sets none: containerd's and runc's default.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The container's own env as the kubelet resolves it: each value has its `$(VAR)` references
/// expanded from the entries before it, and a later entry of the same name replaces the earlier
/// value in place.
///
/// Entries with `valueFrom` are skipped: kantai resolves no secrets, config maps or field
/// references, and leaving the variable unset is less surprising than setting it empty. An
/// entry with neither `value` nor `valueFrom` is the empty string, as in Kubernetes.
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
