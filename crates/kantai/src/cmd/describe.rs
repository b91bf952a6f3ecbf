//! `kantai describe`: an object as kubectl describes it. A Secret's values are never printed,
//! only their sizes; a ConfigMap's are.

use std::process::ExitCode;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kantai_api::resources::{EVENTS, Resource};
use kantai_api::time::{age, parse_rfc3339};
use kantai_model::meta::JsonMeta;
use serde_json::Value;

use super::client::{self, Conn};

/// Arguments of `kantai describe`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: Conn,
    /// The resource (`secret`, `configmap`, `ksvc`, ...), or `KIND/NAME`.
    resource: String,
    /// One object's name (default: every object of the namespace).
    name: Option<String>,
}

/// Annotations kubectl never shows: the last applied configuration repeats the object,
/// a Secret's values included.
const HIDDEN_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// Longest annotation shown on one line, as kubectl's `maxAnnotationLen`.
const MAX_ANNOTATION_LEN: usize = 140;

/// `kantai describe`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (r, name) = match args.resource.split_once('/') {
        Some(_) => {
            let (r, n) = client::target(&args.resource, args.name.as_deref())?;
            (r, Some(n))
        }
        None => (client::resource(&args.resource)?, args.name.clone()),
    };
    let api = args.conn.client()?;
    let ns = args.conn.namespace.as_str();
    client::rt()?.block_on(async {
        let objects = match &name {
            Some(n) => match api.get(r, ns, n).await {
                Ok(v) => vec![v],
                Err(e) if e.is_not_found() => {
                    eprintln!("Error from server (NotFound): {e}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            },
            None => api.list(r, Some(ns)).await?,
        };
        if objects.is_empty() {
            eprintln!("No resources found in {ns} namespace.");
            return Ok(ExitCode::SUCCESS);
        }
        // Events are read only for kinds whose description shows them (never a Secret's).
        let events = if r.kind == "Secret" {
            Vec::new()
        } else {
            api.list(EVENTS, Some(ns)).await.unwrap_or_default()
        };
        let now = SystemTime::now();
        let texts: Vec<String> = objects
            .iter()
            .map(|o| describe(r, o, &events, now))
            .collect();
        print!("{}", texts.join("\n\n"));
        Ok(ExitCode::SUCCESS)
    })
}

/// The description of one object; `events` may hold any namespace's events (only the
/// object's are shown).
pub fn describe(r: Resource, o: &Value, events: &[Value], now: SystemTime) -> String {
    let mut w = Tabbed::default();
    let meta = o.metadata();
    w.line(format!("Name:\t{}", o.name()));
    if r.namespaced {
        w.line(format!("Namespace:\t{}", o.namespace().unwrap_or_default()));
    }
    labels(&mut w, &meta["labels"]);
    annotations(&mut w, &meta["annotations"]);
    match (r.group, r.kind) {
        ("", "Secret") => {
            let kind = o["type"].as_str().unwrap_or("Opaque");
            w.line(String::new());
            w.line(format!("Type:\t{kind}"));
            w.line(String::new());
            w.line("Data".into());
            w.line("====".into());
            for (k, v) in sorted(&o["data"]) {
                w.line(format!("{k}:\t{} bytes", decoded_len(v)));
            }
            return w.render();
        }
        ("", "ConfigMap") => {
            w.line(String::new());
            w.line("Data".into());
            w.line("====".into());
            for (k, v) in sorted(&o["data"]) {
                w.line(format!("{k}:"));
                w.line("----".into());
                // Values are shown as they are: no column alignment inside them.
                w.raw(text(v));
                w.line(String::new());
            }
            w.line(String::new());
            w.line("BinaryData".into());
            w.line("====".into());
            for (k, v) in sorted(&o["binaryData"]) {
                w.line(format!("{k}: {} bytes", decoded_len(v)));
            }
            w.line(String::new());
        }
        _ => {
            w.line(format!("API Version:\t{}", text(&o["apiVersion"])));
            w.line(format!("Kind:\t{}", text(&o["kind"])));
            w.line("Metadata:".into());
            for (title, key) in [
                ("Creation Timestamp", "creationTimestamp"),
                ("Generation", "generation"),
                ("Resource Version", "resourceVersion"),
                ("UID", "uid"),
            ] {
                if !meta[key].is_null() {
                    w.line(format!("  {title}:\t{}", text(&meta[key])));
                }
            }
            if let Some(fields) = o.as_object() {
                for (k, v) in fields {
                    if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    match v {
                        Value::Object(_) | Value::Array(_) => {
                            w.line(format!("{}:", title(k)));
                            let yaml = kantai_model::manifest::to_yaml_one(v);
                            for l in yaml.lines() {
                                w.raw(format!("  {l}"));
                            }
                        }
                        other => w.line(format!("{}:\t{}", title(k), text(other))),
                    }
                }
            }
        }
    }
    event_table(&mut w, r, o, events, now);
    w.render()
}

/// The object's events, as kubectl's `Events:` section.
fn event_table(w: &mut Tabbed, r: Resource, o: &Value, events: &[Value], now: SystemTime) {
    let uid = o.uid();
    let mut mine: Vec<&Value> = events
        .iter()
        .filter(|e| {
            let io = &e["involvedObject"];
            io["kind"] == r.kind
                && io["name"].as_str() == Some(o.name())
                && (io["uid"].is_null() || uid.is_none() || io["uid"].as_str() == uid)
        })
        .collect();
    if mine.is_empty() {
        w.line("Events:\t<none>".into());
        return;
    }
    mine.sort_by_key(|e| when(e, "lastTimestamp"));
    w.line("Events:".into());
    w.line("  Type\tReason\tAge\tFrom\tMessage".into());
    w.line("  ----\t------\t----\t----\t-------".into());
    for e in mine {
        let last = when(e, "lastTimestamp").map_or("<unknown>".into(), |t| age(t, now));
        let count = e["count"].as_u64().unwrap_or(1);
        let shown_age = match when(e, "firstTimestamp") {
            Some(first) if count > 1 => format!("{last} (x{count} over {})", age(first, now)),
            _ => last,
        };
        let from = e["source"]["component"]
            .as_str()
            .or_else(|| e["reportingComponent"].as_str())
            .unwrap_or("");
        w.line(format!(
            "  {}\t{}\t{shown_age}\t{from}\t{}",
            text(&e["type"]),
            text(&e["reason"]),
            text(&e["message"]).replace('\n', " ")
        ));
    }
}

fn when(e: &Value, field: &str) -> Option<SystemTime> {
    e[field].as_str().and_then(parse_rfc3339)
}

fn labels(w: &mut Tabbed, v: &Value) {
    let items = sorted(v);
    if items.is_empty() {
        w.line("Labels:\t<none>".into());
        return;
    }
    for (i, (k, v)) in items.iter().enumerate() {
        let title = if i == 0 { "Labels:" } else { "" };
        w.line(format!("{title}\t{k}={}", text(v)));
    }
}

fn annotations(w: &mut Tabbed, v: &Value) {
    let items: Vec<(&String, &Value)> = sorted(v)
        .into_iter()
        .filter(|(k, _)| !HIDDEN_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    if items.is_empty() {
        w.line("Annotations:\t<none>".into());
        return;
    }
    for (i, (k, v)) in items.iter().enumerate() {
        let title = if i == 0 { "Annotations:" } else { "" };
        let value = text(v);
        let value = value.trim_end_matches('\n');
        if value.len() + k.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            w.line(format!("{title}\t{k}:"));
            for l in value.split('\n') {
                w.line(format!("\t  {}", shorten(l, MAX_ANNOTATION_LEN - 2)));
            }
        } else {
            w.line(format!("{title}\t{k}: {value}"));
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// A map's entries by key (the API keeps the order they were written in).
fn sorted(v: &Value) -> Vec<(&String, &Value)> {
    let mut items: Vec<(&String, &Value)> = v
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    items.sort_by(|a, b| a.0.cmp(b.0));
    items
}

/// How many bytes a base64 value holds (its text length when it is not base64).
fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or("");
    STANDARD.decode(s).map_or(s.len(), |b| b.len())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `containerStatuses` → `Container Statuses`, as kubectl's generic describer titles fields.
fn title(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else if c.is_uppercase() {
            out.push(' ');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines with tab-separated cells, aligned as kubectl's tabwriter does (two spaces after the
/// widest cell of each column, over each run of lines that have cells).
#[derive(Default)]
struct Tabbed {
    lines: Vec<(bool, String)>,
}

impl Tabbed {
    fn line(&mut self, l: String) {
        self.lines.push((true, l));
    }

    /// Lines taken as they are, never aligned (a value may hold tabs of its own).
    fn raw(&mut self, l: String) {
        for part in l.split('\n') {
            self.lines.push((false, part.to_owned()));
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.lines.len() {
            let (aligned, l) = &self.lines[i];
            if !aligned || !l.contains('\t') {
                out.push_str(l);
                out.push('\n');
                i += 1;
                continue;
            }
            let end = (i..self.lines.len())
                .find(|&j| !(self.lines[j].0 && self.lines[j].1.contains('\t')))
                .unwrap_or(self.lines.len());
            let rows: Vec<Vec<&str>> = self.lines[i..end]
                .iter()
                .map(|(_, l)| l.split('\t').collect())
                .collect();
            let mut widths: Vec<usize> = Vec::new();
            for r in &rows {
                for (c, cell) in r[..r.len() - 1].iter().enumerate() {
                    let n = cell.chars().count();
                    match widths.get_mut(c) {
                        Some(w) => *w = (*w).max(n),
                        None => widths.push(n),
                    }
                }
            }
            for r in &rows {
                let mut line = String::new();
                for (c, cell) in r.iter().enumerate() {
                    if c + 1 == r.len() {
                        line.push_str(cell);
                    } else {
                        line.push_str(&format!("{cell:<w$}", w = widths[c] + 2));
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
            i = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kantai_api::resources::{CONFIGMAPS, SECRETS};

    fn secret() -> Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default", "labels": {"b": "2", "a": "1"}},
            "type": "Opaque",
            "data": {"user": "YWRtaW4=", "password": "aHVudGVyMg=="},
        })
    }

    #[test]
    fn a_secret_is_described_as_kubectl_does() {
        let out = describe(SECRETS, &secret(), &[], SystemTime::now());
        assert_eq!(
            out,
            "Name:         db\nNamespace:    default\nLabels:       a=1\n              b=2\n\
             Annotations:  <none>\n\nType:  Opaque\n\nData\n====\npassword:  7 bytes\n\
             user:      5 bytes\n"
        );
    }

    #[test]
    fn a_secret_description_holds_no_value() {
        let mut s = secret();
        s["metadata"]["annotations"] = serde_json::json!({
            "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"
        });
        let out = describe(SECRETS, &s, &[], SystemTime::now());
        assert!(
            !out.contains("aHVudGVyMg") && !out.contains("hunter2"),
            "{out}"
        );
    }

    #[test]
    fn a_config_map_shows_data_and_binary_sizes() {
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app", "namespace": "default"},
            "data": {"mode": "fast"},
            "binaryData": {"blob": "AAEC"},
        });
        let out = describe(CONFIGMAPS, &cm, &[], SystemTime::now());
        assert_eq!(
            out,
            "Name:         app\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\n\
             Data\n====\nmode:\n----\nfast\n\n\nBinaryData\n====\nblob: 3 bytes\n\nEvents:  <none>\n"
        );
    }
}
