//! Data-driven tests: each file under `tests/data` holds the cases of one rule, each case one
//! behaviour with its inputs and expected output (or error). `specs.yaml` runs whole inputs
//! through `runtime_spec` and compares the parts of `config.json` each case names; a case with
//! `golden: FILE` compares the whole text with `tests/data/FILE`. Set `UPDATE_EXPECT=1` to
//! rewrite the golden files after an intended change, then review the diff (a failure shows it).

// Tests are a driver of the pure crate: reading fixture files is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kantai_container::capabilities::capability_set;
use kantai_container::command::expand;
use kantai_container::env::{container_env, environment, resolved_env};
use kantai_container::mounts::{HostVolume, HostVolumeKind, volume_mounts};
use kantai_container::resources::linux_resources;
use kantai_container::spec::working_dir;
use kantai_container::{
    Downward, ImageConfig, Inputs, Network, Security, SpecError, User, argv, resolve_user,
    runtime_spec, to_json,
};
use kantai_model::decode::Decode;
use kantai_model::node::{Node, ParseLimits, parse_documents};
use kantai_model::serving::resolve::ResolvedConfig;
use kantai_model::serving::{Container, EnvVar, Resources};
use kantai_model::{FieldPath, Findings};
use kantai_testkit::expect_file;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn data_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

/// The cases of `file`, each as JSON and as the typed case.
fn cases<T: DeserializeOwned>(file: &str) -> Vec<(String, Value, T)> {
    let path = data_path(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs = parse_documents(&text, ParseLimits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Some(Value::Array(list)) = docs.first().map(Node::to_json) else {
        panic!("{}: expected a list of cases", path.display());
    };
    list.into_iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap_or("(unnamed)").to_owned();
            let case = serde_json::from_value(v.clone())
                .unwrap_or_else(|e| panic!("{file}: case {name:?}: {e}"));
            (name, v, case)
        })
        .collect()
}

/// Decodes a model type the way manifests are decoded, failing on any finding.
fn decode<T: Decode>(v: &Value, what: &str) -> T {
    let mut out = Findings::new();
    let t = T::decode(&Node::from_json(v), &FieldPath::root(), &mut out);
    assert!(!out.has_errors(), "{what}: {:#?}", out.all());
    t.unwrap_or_else(|| panic!("{what}: did not decode"))
}

/// The expected error of a case: the Kubernetes reason and pieces of the message.
#[derive(Deserialize)]
struct WantError {
    reason: String,
    #[serde(default)]
    contains: Vec<String>,
}

fn check_error(name: &str, got: &SpecError, want: &WantError, failures: &mut Vec<String>) {
    let message = got.to_string();
    if got.reason() != want.reason {
        failures.push(format!(
            "{name}: reason {} != {}: {message}",
            got.reason(),
            want.reason
        ));
    }
    for piece in &want.contains {
        if !message.contains(piece.as_str()) {
            failures.push(format!("{name}: message lacks {piece:?}: {message}"));
        }
    }
}

/// Compares one case's outcome, collecting every failure so one run shows them all.
fn compare<T: PartialEq + std::fmt::Debug>(
    name: &str,
    got: Result<T, SpecError>,
    want: Option<T>,
    want_error: Option<&WantError>,
    failures: &mut Vec<String>,
) {
    match (got, want, want_error) {
        (Ok(g), Some(w), None) if g == w => {}
        (Ok(g), Some(w), None) => failures.push(format!("{name}:\n  got  {g:?}\n  want {w:?}")),
        (Err(e), None, Some(w)) => check_error(name, &e, w, failures),
        (Ok(g), _, Some(_)) => failures.push(format!("{name}: expected an error, got {g:?}")),
        (Err(e), _, None) => failures.push(format!("{name}: unexpected error: {e}")),
        (_, _, _) => failures.push(format!("{name}: give exactly one of want and error")),
    }
}

fn finish(file: &str, failures: Vec<String>) {
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}

#[derive(Deserialize)]
struct ExpandCase {
    input: String,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    want: String,
}

#[test]
fn expansion() {
    let mut failures = Vec::new();
    for (name, _, c) in cases::<ExpandCase>("expand.yaml") {
        compare(
            &name,
            Ok(expand(&c.input, &c.vars)),
            Some(c.want),
            None,
            &mut failures,
        );
    }
    finish("expand.yaml", failures);
}

#[derive(Deserialize)]
struct ArgvCase {
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    entrypoint: Vec<String>,
    #[serde(default)]
    cmd: Vec<String>,
    want: Vec<String>,
}

#[test]
fn argument_vector() {
    let mut failures = Vec::new();
    for (name, _, c) in cases::<ArgvCase>("argv.yaml") {
        let got = argv(&c.command, &c.args, &c.entrypoint, &c.cmd);
        compare(&name, Ok(got), Some(c.want), None, &mut failures);
    }
    finish("argv.yaml", failures);
}

#[derive(Deserialize)]
struct EnvCase {
    #[serde(default)]
    image_env: Vec<String>,
    #[serde(default)]
    knative_env: Vec<(String, String)>,
    #[serde(default = "default_hostname")]
    hostname: String,
    #[serde(default = "default_home")]
    home: String,
    want: Vec<String>,
}

fn default_hostname() -> String {
    "hello-00001-abc".to_owned()
}

fn default_home() -> String {
    "/".to_owned()
}

#[test]
fn environment_merge() {
    let mut failures = Vec::new();
    for (name, raw, c) in cases::<EnvCase>("env.yaml") {
        let env: Vec<EnvVar> = match raw.get("env") {
            Some(v) => decode(v, &name),
            None => Vec::new(),
        };
        let got = environment(
            &c.image_env,
            &container_env(&env),
            &c.knative_env,
            &c.hostname,
            &c.home,
        );
        compare(&name, Ok(got), Some(c.want), None, &mut failures);
    }
    finish("env.yaml", failures);
}

#[derive(Deserialize)]
struct UserCase {
    image_user: Option<String>,
    #[serde(default)]
    security: Security,
    passwd: Option<String>,
    group: Option<String>,
    want: Option<User>,
    error: Option<WantError>,
}

#[test]
fn user_resolution() {
    let mut failures = Vec::new();
    for (name, _, c) in cases::<UserCase>("user.yaml") {
        let got = resolve_user(
            c.image_user.as_deref(),
            &c.security,
            c.passwd.as_deref(),
            c.group.as_deref(),
        );
        compare(&name, got, c.want, c.error.as_ref(), &mut failures);
    }
    finish("user.yaml", failures);
}

#[derive(Deserialize)]
struct CapabilitiesCase {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
    want: Option<Vec<String>>,
    error: Option<WantError>,
}

#[test]
fn capability_sets() {
    let mut failures = Vec::new();
    for (name, _, c) in cases::<CapabilitiesCase>("capabilities.yaml") {
        let s = Security {
            cap_add: c.add,
            cap_drop: c.drop,
            ..Security::default()
        };
        let got = capability_set(&s).map(|set| set.iter().map(|c| (*c).to_owned()).collect());
        compare(&name, got, c.want, c.error.as_ref(), &mut failures);
    }
    finish("capabilities.yaml", failures);
}

#[derive(Deserialize)]
struct ImageConfigCase {
    blob: String,
    want: Option<ImageConfig>,
    error: Option<WantError>,
}

#[test]
fn image_configs() {
    let mut failures = Vec::new();
    for (name, _, c) in cases::<ImageConfigCase>("image_config.yaml") {
        let got = ImageConfig::parse(c.blob.as_bytes());
        compare(&name, got, c.want, c.error.as_ref(), &mut failures);
    }
    finish("image_config.yaml", failures);
}

#[derive(Deserialize)]
struct WorkingDirCase {
    container: Option<String>,
    image: Option<String>,
    want: Option<String>,
    error: Option<WantError>,
}

#[test]
fn working_directories() {
    let mut failures = Vec::new();
    for (name, _, c) in cases::<WorkingDirCase>("working_dir.yaml") {
        let got = working_dir(c.container.as_deref(), c.image.as_deref());
        compare(&name, got, c.want, c.error.as_ref(), &mut failures);
    }
    finish("working_dir.yaml", failures);
}

#[derive(Deserialize)]
struct ResourcesCase {
    #[serde(default)]
    pids_limit: i64,
    want: Option<Value>,
    error: Option<WantError>,
}

#[test]
fn cgroup_limits() {
    let mut failures = Vec::new();
    for (name, raw, c) in cases::<ResourcesCase>("resources.yaml") {
        let r: Resources = match raw.get("resources") {
            Some(v) => decode(v, &name),
            None => Resources::default(),
        };
        let got = linux_resources(&r, c.pids_limit)
            .map(|r| serde_json::to_value(r).unwrap_or_else(|e| panic!("{name}: {e}")));
        compare(&name, got, c.want, c.error.as_ref(), &mut failures);
    }
    finish("resources.yaml", failures);
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum NetworkCase {
    Host,
    Namespace(String),
}

#[derive(Deserialize)]
struct SpecCase {
    #[serde(default)]
    image: ImageConfig,
    #[serde(default)]
    security: Security,
    #[serde(default)]
    knative_env: Vec<(String, String)>,
    passwd: Option<String>,
    group: Option<String>,
    network: Option<NetworkCase>,
    #[serde(default)]
    host_files: Vec<(String, String)>,
    #[serde(default)]
    config: ResolvedConfig,
    #[serde(default)]
    downward: DownwardCase,
    #[serde(default)]
    host_volumes: BTreeMap<String, HostVolumeCase>,
    /// Values that may appear in `process.env` and nowhere else in `config.json`.
    #[serde(default)]
    only_in_env: Vec<String>,
    #[serde(default = "default_pids")]
    pids_limit: i64,
    /// Parts of `config.json` that must be as given (objects may have more keys).
    want: Option<Value>,
    /// JSON pointers that must be absent.
    #[serde(default)]
    absent: Vec<String>,
    /// A file under `tests/data` holding the whole expected `config.json`.
    golden: Option<String>,
    error: Option<WantError>,
}

fn default_pids() -> i64 {
    1024
}

/// Whether `got` has everything `want` has: objects by key, arrays element by element.
fn contains(got: &Value, want: &Value, at: &str, failures: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => contains(gv, wv, &format!("{at}/{k}"), failures),
                    None => failures.push(format!("{at}/{k}: missing")),
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                contains(gv, wv, &format!("{at}/{i}"), failures);
            }
        }
        _ if got == want => {}
        _ => failures.push(format!("{at}:\n    got  {got}\n    want {want}")),
    }
}

#[test]
fn runtime_specs() {
    let mut failures = Vec::new();
    for (name, raw, c) in cases::<SpecCase>("specs.yaml") {
        let container: Container = decode(&raw["container"], &name);
        let inputs = Inputs {
            image_name: "registry.local/ns/hello:1",
            container: &container,
            image: &c.image,
            security: &c.security,
            knative_env: &c.knative_env,
            rootfs: "/var/lib/kantai/instances/i1/rootfs",
            hostname: "hello-00001-i1",
            cgroups_path: "/kantai/i1",
            pids_limit: c.pids_limit,
            passwd: c.passwd.as_deref(),
            group: c.group.as_deref(),
            network: match c.network {
                None | Some(NetworkCase::Host) => Network::Host,
                Some(NetworkCase::Namespace(p)) => Network::Namespace(p),
            },
            host_files: &c.host_files,
            config: &c.config,
            downward: c.downward.as_downward(),
            host_volumes: &host_volumes(&c.host_volumes),
        };
        let spec = match (runtime_spec(&inputs), &c.error) {
            (Ok(spec), None) => spec,
            (Err(e), Some(w)) => {
                check_error(&name, &e, w, &mut failures);
                continue;
            }
            (Ok(_), Some(_)) => {
                failures.push(format!("{name}: expected an error"));
                continue;
            }
            (Err(e), None) => {
                failures.push(format!("{name}: unexpected error: {e}"));
                continue;
            }
        };
        let text = to_json(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut problems = Vec::new();
        if let Some(want) = &c.want {
            contains(&got, want, "", &mut problems);
        }
        for secret in &c.only_in_env {
            let mut rest = got.clone();
            rest["process"]["env"] = Value::Null;
            if !rest.to_string().contains(secret.as_str()) {
                continue;
            }
            problems.push(format!("{secret:?} appears outside process.env"));
        }
        for pointer in &c.absent {
            if got.pointer(pointer).is_some() {
                problems.push(format!("{pointer}: present, want absent"));
            }
        }
        if let Some(file) = &c.golden
            && let Err(diff) = expect_file(&data_path(file), &format!("{text}\n"))
        {
            problems.push(diff);
        }
        failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
    }
    finish("specs.yaml", failures);
}

/// The Downward API fields of a case, owned.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DownwardCase {
    pod_name: String,
    namespace: String,
    uid: String,
    node_name: String,
    host_ip: String,
    service_account: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    allocatable_cpu_millis: u64,
    allocatable_memory: u64,
}

impl DownwardCase {
    fn as_downward(&self) -> Downward<'_> {
        Downward {
            pod_name: &self.pod_name,
            namespace: &self.namespace,
            uid: &self.uid,
            node_name: &self.node_name,
            host_ip: &self.host_ip,
            service_account: &self.service_account,
            labels: &self.labels,
            annotations: &self.annotations,
            allocatable_cpu_millis: self.allocatable_cpu_millis,
            allocatable_memory: self.allocatable_memory,
        }
    }
}

/// A prepared volume: `{path, kind: files | dir | memory, size}`.
#[derive(Deserialize)]
struct HostVolumeCase {
    #[serde(default)]
    path: String,
    kind: String,
    size: Option<u64>,
}

fn host_volumes(cases: &BTreeMap<String, HostVolumeCase>) -> BTreeMap<String, HostVolume> {
    cases
        .iter()
        .map(|(name, v)| {
            let kind = match v.kind.as_str() {
                "files" => HostVolumeKind::Files,
                "dir" => HostVolumeKind::Dir,
                "memory" => HostVolumeKind::Memory { size: v.size },
                other => panic!("volume {name}: kind {other:?} is not files, dir or memory"),
            };
            let hv = HostVolume {
                path: v.path.clone(),
                kind,
            };
            (name.clone(), hv)
        })
        .collect()
}

#[derive(Deserialize)]
struct ResolvedEnvCase {
    #[serde(default)]
    config: ResolvedConfig,
    #[serde(default)]
    downward: DownwardCase,
    want: Vec<(String, String)>,
}

#[test]
fn resolved_environment() {
    let mut failures = Vec::new();
    for (name, raw, c) in cases::<ResolvedEnvCase>("resolved_env.yaml") {
        let container: Container = decode(&raw["container"], &name);
        let got = resolved_env(&container, &c.config, &c.downward.as_downward());
        compare(&name, Ok(got), Some(c.want), None, &mut failures);
    }
    finish("resolved_env.yaml", failures);
}

#[derive(Deserialize)]
struct MountsCase {
    #[serde(default)]
    host_volumes: BTreeMap<String, HostVolumeCase>,
    want: Option<Vec<Value>>,
    error: Option<WantError>,
}

#[test]
fn volume_mount_rules() {
    let mut failures = Vec::new();
    for (name, raw, c) in cases::<MountsCase>("mounts.yaml") {
        let container: Container = decode(&raw["container"], &name);
        let got = volume_mounts(&container, &host_volumes(&c.host_volumes))
            .map(|ms| serde_json::to_value(ms).unwrap_or_else(|e| panic!("{name}: {e}")));
        match (got, &c.want, &c.error) {
            // Each mount must have what the case gives (it may leave fields out).
            (Ok(g), Some(w), None) => {
                let mut problems = Vec::new();
                contains(&g, &Value::Array(w.clone()), "", &mut problems);
                failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
            }
            (got, _, want_error) => compare(&name, got, None, want_error.as_ref(), &mut failures),
        }
    }
    finish("mounts.yaml", failures);
}
