//! `kantai create secret generic` and `kantai create configmap`: objects built from
//! literals, files and directories with kubectl's rules, checked before anything is sent.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Subcommand, ValueEnum};
use kantai_api::resources::{CONFIGMAPS, SECRETS};
use serde_json::{Map, Value, json};

use super::client::{self, Conn, Output};

/// Largest file read into one key: a whole Secret or ConfigMap holds at most this much.
const MAX_VALUE_BYTES: u64 = 1024 * 1024;

/// `kantai create ...`.
#[derive(Subcommand)]
pub enum Command {
    /// Create a Secret.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Create a ConfigMap from literals, files or directories.
    #[command(name = "configmap", visible_alias = "cm")]
    ConfigMap(ConfigMapArgs),
}

/// `kantai create secret ...`.
#[derive(Subcommand)]
pub enum SecretCommand {
    /// Create a Secret from literals, files or directories (as `kubectl create secret
    /// generic`).
    Generic(SecretArgs),
}

/// Where keys and values come from, and what to do with the object.
#[derive(clap::Args)]
pub struct Sources {
    /// `key=value`: one key with a literal value (repeatable).
    #[arg(long = "from-literal", value_name = "KEY=VALUE")]
    literals: Vec<String>,
    /// `[key=]path`: a file's content under `key` (default: the file's name), or every
    /// regular file of a directory under its own name (repeatable).
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    files: Vec<String>,
    /// A file of `KEY=VALUE` lines (`#` comments and blank lines skipped; a line with a
    /// name alone takes the value of that environment variable); repeatable, not with
    /// --from-file or --from-literal.
    #[arg(long = "from-env-file", value_name = "PATH", conflicts_with_all = ["literals", "files"])]
    env_files: Vec<PathBuf>,
    /// Only show what would be created: `client` (nothing sent, the default without a
    /// value) or `server` (checked by the API, not stored).
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1,
          default_missing_value = "client", require_equals = true)]
    dry_run: Option<DryRun>,
    /// Print the object instead of a one-line summary.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
}

/// Arguments of `kantai create secret generic`.
#[derive(clap::Args)]
pub struct SecretArgs {
    #[command(flatten)]
    conn: Conn,
    /// The Secret's name.
    name: String,
    #[command(flatten)]
    sources: Sources,
    /// The Secret's type (the API's default is `Opaque`).
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
}

/// Arguments of `kantai create configmap`.
#[derive(clap::Args)]
pub struct ConfigMapArgs {
    #[command(flatten)]
    conn: Conn,
    /// The ConfigMap's name.
    name: String,
    #[command(flatten)]
    sources: Sources,
}

/// kubectl's `--dry-run` modes.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum DryRun {
    /// Send nothing.
    Client,
    /// Let the API check the object without storing it.
    Server,
    /// Not a dry run.
    None,
}

/// `kantai create ...`.
pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    let (conn, name, sources, object, r) = match c {
        Command::Secret(SecretCommand::Generic(a)) => {
            let data = collect(&a.sources, "Secret")?;
            let obj = secret(&a.name, &a.conn.namespace, a.kind.as_deref(), &data);
            (a.conn, a.name, a.sources, obj, SECRETS)
        }
        Command::ConfigMap(a) => {
            let data = collect(&a.sources, "ConfigMap")?;
            let obj = config_map(&a.name, &a.conn.namespace, &data);
            (a.conn, a.name, a.sources, obj, CONFIGMAPS)
        }
    };
    let dry = sources.dry_run.unwrap_or(DryRun::None);
    let created = if dry == DryRun::Client {
        object
    } else {
        let api = conn.client()?;
        let mut path = r.collection_path(Some(&conn.namespace));
        if dry == DryRun::Server {
            path.push_str("?dryRun=All");
        }
        let sent = client::rt()?.block_on(api.send_json(http::Method::POST, &path, &object));
        match sent {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: failed to create {}: {e}", r.singular);
                client::print_causes(&e);
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    match sources.output {
        Some(Output::Yaml) => print!("{}", kantai_model::manifest::to_yaml_one(&created)),
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&created)?),
        _ => {
            let note = match dry {
                DryRun::Client => " (dry run)",
                DryRun::Server => " (server dry run)",
                DryRun::None => "",
            };
            println!("{} created{note}", client::shown(r, &name));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The keys and values the sources give, in kubectl's order: files, literals, env files.
/// `kind` (`Secret`, `ConfigMap`) only words the messages.
fn collect(s: &Sources, kind: &str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for source in &s.files {
        for (key, path) in file_keys(source)? {
            let value = read_value(&path)?;
            add(&mut out, kind, key, value)
                .with_context(|| format!("--from-file={source}: {}", path.display()))?;
        }
    }
    for (i, source) in s.literals.iter().enumerate() {
        let Some((key, value)) = source.split_once('=') else {
            // Without `=` the text may be a value typed without its key: a Secret's is not
            // repeated.
            let shown = if kind == "Secret" {
                format!("number {} (not shown)", i + 1)
            } else {
                format!("{source:?}")
            };
            bail!("--from-literal: invalid literal source {shown}, expected key=value");
        };
        add(&mut out, kind, key.to_owned(), value.as_bytes().to_vec())
            .with_context(|| format!("--from-literal for key {key:?}"))?;
    }
    for path in &s.env_files {
        let flag = format!("--from-env-file={}", path.display());
        let bytes = read_value(path).with_context(|| flag.clone())?;
        let text =
            String::from_utf8(bytes).map_err(|_| anyhow!("{flag}: the file is not UTF-8 text"))?;
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k, v.to_owned()),
                // As kubectl: a name alone is a signal to take the value from the environment.
                None => (line, std::env::var(line).unwrap_or_default()),
            };
            if !is_env_name(key) {
                bail!(
                    "{flag}: line {}: {key:?} is not a valid key name: a valid environment \
                     variable name must consist of alphabetic characters, digits, '_', '-', or \
                     '.', and must not start with a digit",
                    i + 1
                );
            }
            add(&mut out, kind, key.to_owned(), value.into_bytes())
                .with_context(|| format!("{flag}: line {}", i + 1))?;
        }
    }
    Ok(out)
}

/// Kubernetes' `IsEnvVarName`, which kubectl applies to an env file's keys.
fn is_env_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn add(
    out: &mut BTreeMap<String, Vec<u8>>,
    kind: &str,
    key: String,
    value: Vec<u8>,
) -> anyhow::Result<()> {
    let problems = kantai_model::core::key_problems(&key);
    if !problems.is_empty() {
        bail!(
            "{key:?} is not a valid key name for a {kind}: {}",
            problems.join("; ")
        );
    }
    if out.contains_key(&key) {
        bail!("cannot add key {key}, another key by that name already exists");
    }
    out.insert(key, value);
    Ok(())
}

/// kubectl's `--from-file` source: the keys it names and the files they come from.
fn file_keys(source: &str) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let flag = format!("--from-file={source}");
    let (key, path) = match source.matches('=').count() {
        0 => (None, source),
        1 => {
            let (k, p) = source.split_once('=').unwrap_or_default();
            if k.is_empty() {
                bail!("{flag}: key name for file path {p} missing");
            }
            if p.is_empty() {
                bail!("{flag}: file path for key name {k} missing");
            }
            (Some(k), p)
        }
        _ => bail!("{flag}: key names or file paths cannot contain '='"),
    };
    let path = Path::new(path);
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    if !meta.is_dir() {
        let key = match key {
            Some(k) => k.to_owned(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| anyhow!("{flag}: {} names no file", path.display()))?,
        };
        return Ok(vec![(key, path.to_path_buf())]);
    }
    if key.is_some() {
        bail!("{flag}: cannot give a key name for a directory path");
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)
        .with_context(|| format!("{flag}: cannot list {}", path.display()))?
    {
        let entry = entry.with_context(|| format!("{flag}: cannot list {}", path.display()))?;
        // As kubectl: regular files only (not what symlinks point to, not subdirectories).
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    files.sort();
    Ok(files)
}

/// A file's bytes, refused beyond what one object can hold.
fn read_value(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take(MAX_VALUE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_VALUE_BYTES {
        bail!(
            "{} is larger than {MAX_VALUE_BYTES} bytes, the most a Secret or ConfigMap holds",
            path.display()
        );
    }
    Ok(bytes)
}

fn metadata(name: &str, namespace: &str) -> Value {
    json!({"name": name, "namespace": namespace})
}

/// A Secret with `data` in base64, as the API takes it.
fn secret(
    name: &str,
    namespace: &str,
    kind: Option<&str>,
    data: &BTreeMap<String, Vec<u8>>,
) -> Value {
    let data: Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(STANDARD.encode(v))))
        .collect();
    let mut obj = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, namespace),
        "data": data,
    });
    if let Some(t) = kind {
        obj["type"] = Value::String(t.to_owned());
    }
    obj
}

/// A ConfigMap: UTF-8 values in `data`, anything else in `binaryData`, as kubectl does.
fn config_map(name: &str, namespace: &str, values: &BTreeMap<String, Vec<u8>>) -> Value {
    let mut data = Map::new();
    let mut binary = Map::new();
    for (k, v) in values {
        match std::str::from_utf8(v) {
            Ok(s) => data.insert(k.clone(), Value::String(s.to_owned())),
            Err(_) => binary.insert(k.clone(), Value::String(STANDARD.encode(v))),
        };
    }
    let mut obj = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, namespace),
    });
    if !data.is_empty() {
        obj["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        obj["binaryData"] = Value::Object(binary);
    }
    obj
}
