//! The API client commands: `apply`, `get`, `delete`, `invoke` and `logs`, with the output
//! and exit codes kubectl users expect.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::ValueEnum;
use http_body_util::{BodyExt, Full};
use kantai_api::printers;
use kantai_api::resources::{self, NODES, Resource};
use kantai_api::{ApiError, Client, FleetInfo};
use kantai_model::manifest;
use kantai_model::meta::JsonMeta;
use kantai_model::topology::{ControlSpec, Links, Topology};
use serde_json::Value;

use crate::{fleet_config, input};

/// Where the API is, the credentials, and which namespace to use.
#[derive(clap::Args, Clone)]
pub struct Conn {
    /// The control plane's API (default: the kubeconfig's server, else
    /// http://127.0.0.1:7400).
    #[arg(long, value_name = "URL", env = "KANTAI_SERVER")]
    pub server: Option<String>,
    /// The fleet's bearer token (default: the kubeconfig's).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "KANTAI_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The kubeconfig to read the server and token from (default: the one `kantai up`
    /// writes in its state directory).
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: Option<String>,
    /// Namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

impl Conn {
    /// A client of the API, with the token.
    pub fn client(&self) -> anyhow::Result<Client> {
        // KUBECONFIG may list several files; as kubectl, the first one that exists counts.
        let path = match &self.kubeconfig {
            Some(list) => list.split(':').map(PathBuf::from).find(|p| p.exists()),
            None => Some(crate::kubeconfig::kubeconfig_path(
                &super::control::default_state_dir(),
            ))
            .filter(|p| p.exists()),
        };
        let creds = match path {
            Some(p) => Some(crate::kubeconfig::read(&p)?),
            None => None,
        };
        let server = self
            .server
            .clone()
            .or_else(|| creds.as_ref().and_then(|c| c.server.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:7400".to_owned());
        let token = self.token.clone().or_else(|| creds.and_then(|c| c.token));
        Ok(Client::new(&server)?.with_token(token))
    }
}

/// Arguments of `kantai apply`.
#[derive(clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    conn: Conn,
    /// Manifest files or directories; `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Output formats of `kantai get`.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Output {
    /// A table with more columns.
    Wide,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// Arguments of `kantai get`.
#[derive(clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    conn: Conn,
    /// services (ksvc), revisions (rev), routes (rt), configurations, placements (seika),
    /// instances, nodes.
    resource: String,
    /// One object's name.
    name: Option<String>,
    /// Output format (a table by default).
    #[arg(short, long, value_enum)]
    output: Option<Output>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Keep `metadata.managedFields` in YAML and JSON output (hidden, as kubectl does).
    #[arg(long)]
    show_managed_fields: bool,
}

/// Arguments of `kantai delete`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    conn: Conn,
    /// Resource (`service`) and name, or nothing with `-f`.
    args: Vec<String>,
    /// Delete what these manifests describe.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Arguments of `kantai invoke`.
#[derive(clap::Args)]
pub struct InvokeArgs {
    #[command(flatten)]
    conn: Conn,
    /// The service.
    service: String,
    /// The node whose gateway the request enters (default: the first node).
    #[arg(long, value_name = "NODE")]
    from: Option<String>,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    method: String,
    /// Request body.
    #[arg(short, long)]
    data: Option<String>,
    /// Route to this tag's revision.
    #[arg(long)]
    tag: Option<String>,
}

/// Arguments of `kantai logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    conn: Conn,
    /// The instance.
    instance: String,
    /// Only the last lines.
    #[arg(long, value_name = "LINES")]
    tail: Option<usize>,
    /// Keep printing new output until the instance stops (or Ctrl-C).
    #[arg(short, long)]
    follow: bool,
}

/// A runtime for one command's requests.
pub(crate) fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// `kantai apply`.
pub fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let mut files = Vec::new();
    for path in input::expand(&args.files)? {
        files.push(input::read(&path)?);
    }
    let rt = rt()?;
    // Manifests are checked against the fleet's own limits (allow-zero-initial-scale,
    // max-scale-limit, ...), so a file the fleet accepts is never refused here.
    let serving = rt.block_on(fleet_serving_config(&client))?;
    let mut failed = false;
    let mut objects = Vec::new();
    for file in &files {
        let docs = manifest::read(&file.text, &serving)
            .map_err(|e| anyhow!("{} is not valid YAML or JSON:\n{}", file.name, e.message))?;
        for d in docs {
            if !d.is_valid() {
                // Nothing of an invalid file is applied.
                eprintln!("{}: {} is invalid:", file.name, d.title());
                for l in d.report_lines() {
                    eprintln!("  {l}");
                }
                failed = true;
            } else if let Some(o) = d.object {
                objects.push(o);
            }
        }
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    rt.block_on(async {
        let mut code = ExitCode::SUCCESS;
        for o in objects {
            let Some(r) = Resource::of_kind(kantai_model::serving::API_VERSION, o.kind()) else {
                continue;
            };
            let name = o.metadata().name.clone();
            let ns = o
                .metadata()
                .namespace
                .clone()
                .unwrap_or_else(|| args.conn.namespace.clone());
            let mut json = o.to_json();
            json["metadata"]["namespace"] = Value::String(ns.clone());
            let what = format!("{}.{}/{name}", r.singular, r.group);
            // The controllers write the status, which changes the version: retry a conflict
            // with the latest version, as kubectl does.
            let mut result = Err(ApiError::Protocol { url: String::new(), detail: "not sent".into() });
            for _ in 0..5 {
                result = match client.get(r, &ns, &name).await {
                    Ok(existing) => {
                        json["metadata"]["resourceVersion"] = existing.resource_version().into();
                        client.replace(r, &ns, &name, &json).await.map(|new| {
                            if new.resource_version() == existing.resource_version() {
                                "unchanged"
                            } else {
                                "configured"
                            }
                        })
                    }
                    Err(e) if e.is_not_found() => client.create(r, &ns, &json).await.map(|_| "created"),
                    Err(e) => Err(e),
                };
                if !matches!(&result, Err(e) if e.is_conflict() && e.to_string().contains("modified")) {
                    break;
                }
            }
            match result {
                Ok(verb) => println!("{what} {verb}"),
                Err(e) => {
                    eprintln!("error: {what}: {e}");
                    print_causes(&e);
                    code = ExitCode::FAILURE;
                }
            }
        }
        Ok(code)
    })
}

/// The serving settings of the fleet behind `client`.
async fn fleet_serving_config(client: &Client) -> anyhow::Result<kantai_model::ServingConfig> {
    let info: FleetInfo = serde_json::from_value(
        client
            .get_json(kantai_api::wire::FLEET_PATH)
            .await
            .map_err(|e| anyhow!("{e}"))?,
    )
    .context("the control plane's fleet description is not what this kantai expects")?;
    if info.config.is_empty() {
        return Ok(kantai_model::ServingConfig::default());
    }
    fleet_config::parse(&info.config)
        .map(|c| c.serving)
        .map_err(|e| anyhow!("the control plane's fleet config does not parse here:\n{e}"))
}

/// Prints an API error's causes (a 422's fields), one per line.
pub(crate) fn print_causes(e: &ApiError) {
    if let ApiError::Status(s) = e
        && let Some(d) = &s.details
    {
        for c in &d.causes {
            eprintln!("  {}: {}", c.field, c.message);
        }
    }
}

/// The resource a user names (plural, singular, kind or short name), or an error listing
/// the known ones.
pub(crate) fn resource(name: &str) -> anyhow::Result<Resource> {
    Resource::lookup(name).ok_or_else(|| {
        anyhow!(
            "the server doesn't have a resource type {name:?}; known: {}",
            resources::ALL
                .iter()
                .map(|r| r.plural)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `KIND NAME` or `KIND/NAME`, as kubectl takes them: the resource and the name.
pub(crate) fn target(kind: &str, name: Option<&str>) -> anyhow::Result<(Resource, String)> {
    match (kind.split_once('/'), name) {
        (Some((k, n)), None) if !n.is_empty() => Ok((resource(k)?, n.to_owned())),
        (Some(_), Some(_)) => bail!("there is no need to give a name after {kind}"),
        (None, Some(n)) => Ok((resource(kind)?, n.to_owned())),
        _ => bail!("give a resource and a name: `{kind} NAME` or `{kind}/NAME`"),
    }
}

/// How kubectl names an object in its messages: `secret/db`,
/// `service.serving.knative.dev/hello`.
pub(crate) fn shown(r: Resource, name: &str) -> String {
    if r.group.is_empty() {
        format!("{}/{name}", r.singular)
    } else {
        format!("{}.{}/{name}", r.singular, r.group)
    }
}

/// `kantai get`.
pub fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let r = resource(&args.resource)?;
    let client = args.conn.client()?;
    rt()?.block_on(async {
        let ns = (!args.all_namespaces).then_some(args.conn.namespace.as_str());
        let mut items = match &args.name {
            Some(n) => match client.get(r, ns.unwrap_or("default"), n).await {
                Ok(v) => vec![v],
                Err(e) if e.is_not_found() => {
                    eprintln!("Error from server (NotFound): {e}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            },
            None => client.list(r, ns).await?,
        };
        if !args.show_managed_fields {
            for v in &mut items {
                if let Some(m) = v["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
            }
        }
        match args.output {
            Some(Output::Yaml) => {
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        println!("---");
                    }
                    print!("{}", manifest::to_yaml_one(v));
                }
            }
            Some(Output::Json) => {
                let v = if items.len() == 1 && args.name.is_some() {
                    items[0].clone()
                } else {
                    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
                };
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            _ => {
                if items.is_empty() {
                    let place = ns.map_or("any namespace".to_owned(), |n| format!("{n} namespace"));
                    eprintln!("No resources found in {place}.");
                    return Ok(ExitCode::SUCCESS);
                }
                let order = node_order(&client).await;
                let rows = table(
                    r,
                    &items,
                    args.output == Some(Output::Wide),
                    args.all_namespaces,
                    &order,
                );
                print!("{}", render(&rows));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The fleet's node order as the API serves it (`Topology::node_order` over the fleet's
/// topology and its registered nodes), which placement columns follow.
async fn node_order(client: &Client) -> Vec<String> {
    let fleet = client
        .get_json(kantai_api::wire::FLEET_PATH)
        .await
        .ok()
        .and_then(|v| serde_json::from_value::<FleetInfo>(v).ok());
    let nodes = client.list(NODES, None).await.unwrap_or_default();
    fleet_node_order(fleet.as_ref(), &nodes)
}

/// `Topology::node_order` of the fleet's topology and its registered `nodes`; a fleet whose
/// topology cannot be read lists no node of its own, so every registered node is ordered as
/// an unlisted one.
fn fleet_node_order(fleet: Option<&FleetInfo>, nodes: &[Value]) -> Vec<String> {
    let topology = fleet
        .and_then(|f| Topology::from_node(&kantai_model::node::Node::from_json(&f.topology)).ok())
        .unwrap_or_else(|| Topology {
            nodes: Vec::new(),
            links: Links::default(),
            control: ControlSpec {
                node: None,
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            emulate: false,
        });
    topology.node_order(nodes.iter().map(|n| n.name()))
}

/// The rows `kantai get` prints: the same columns as the server's Tables for kubectl
/// (`kantai_api::printers`), headers upper-cased as kubectl shows them.
fn table(
    r: Resource,
    items: &[Value],
    wide: bool,
    all_ns: bool,
    order: &[String],
) -> Vec<Vec<String>> {
    let cols = printers::columns(&r);
    let shown: Vec<usize> = (0..cols.len())
        .filter(|&i| wide || cols[i].priority == 0)
        .collect();
    let mut header: Vec<String> = shown
        .iter()
        .map(|&i| cols[i].name.to_ascii_uppercase())
        .collect();
    if all_ns && r.namespaced {
        header.insert(0, "NAMESPACE".into());
    }
    let mut rows = vec![header];
    let now = SystemTime::now();
    for v in items {
        let cells = printers::cells(&r, v, order, now);
        let mut row: Vec<String> = shown
            .iter()
            .map(|&i| match &cells[i] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        if all_ns && r.namespaced {
            row.insert(0, v.namespace().unwrap_or_default().to_owned());
        }
        rows.push(row);
    }
    rows
}

/// Renders rows as kubectl does: columns padded to their widest cell, three spaces apart.
pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `kantai delete`.
pub fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let mut targets: Vec<(Resource, String, String)> = Vec::new();
    match (args.args.as_slice(), args.files.is_empty()) {
        ([kind, names @ ..], true) if !names.is_empty() => {
            let r =
                Resource::lookup(kind).ok_or_else(|| anyhow!("unknown resource type {kind:?}"))?;
            for n in names {
                targets.push((r, args.conn.namespace.clone(), n.clone()));
            }
        }
        ([], false) => {
            for path in input::expand(&args.files)? {
                let file = input::read(&path)?;
                let docs = manifest::read(&file.text, &kantai_model::ServingConfig::default())
                    .map_err(|e| {
                        anyhow!("{} is not valid YAML or JSON:\n{}", file.name, e.message)
                    })?;
                for d in docs {
                    if let Some(o) = d.object
                        && let Some(r) =
                            Resource::of_kind(kantai_model::serving::API_VERSION, o.kind())
                    {
                        let ns = o
                            .metadata()
                            .namespace
                            .clone()
                            .unwrap_or_else(|| args.conn.namespace.clone());
                        targets.push((r, ns, o.metadata().name.clone()));
                    }
                }
            }
        }
        _ => bail!("give a resource and names (`kantai delete service hello`) or -f FILE"),
    }
    rt()?.block_on(async {
        let mut code = ExitCode::SUCCESS;
        for (r, ns, name) in targets {
            match client.delete(r, &ns, &name).await {
                Ok(()) => println!("{}.{} \"{name}\" deleted", r.singular, r.group),
                Err(e) => {
                    eprintln!(
                        "Error from server ({}): {e}",
                        if e.is_not_found() {
                            "NotFound"
                        } else {
                            "Error"
                        }
                    );
                    code = ExitCode::FAILURE;
                }
            }
        }
        Ok(code)
    })
}

/// `kantai invoke`: one request through a node's gateway, as a client on that node would
/// send it.
pub fn invoke(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    rt()?.block_on(async {
        let fleet: FleetInfo =
            serde_json::from_value(client.get_json(kantai_api::wire::FLEET_PATH).await?)?;
        let nodes = client.list(NODES, None).await?;
        let order = fleet_node_order(Some(&fleet), &nodes);
        let from = args
            .from
            .clone()
            .or_else(|| order.first().cloned())
            .ok_or_else(|| anyhow!("the fleet has no nodes"))?;
        let node = nodes.iter().find(|n| n.name() == from).ok_or_else(|| {
            anyhow!(
                "no node {from:?} in the fleet (nodes: {})",
                order.join(", ")
            )
        })?;
        let gateway = node["spec"]["gateway"].as_str().unwrap_or("").to_owned();
        let host = match &args.tag {
            Some(t) => format!(
                "{t}-{}.{}.{}",
                args.service, args.conn.namespace, fleet.domain
            ),
            None => format!("{}.{}.{}", args.service, args.conn.namespace, fleet.domain),
        };
        let r = send(&gateway, &host, &args.method, &args.path, args.data.clone()).await?;
        print!("{}", String::from_utf8_lossy(&r.body));
        eprintln!(
            "{} from node {from} in {:.1} ms (host {host})",
            r.status,
            r.elapsed.as_secs_f64() * 1e3
        );
        Ok(if r.status.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// A response and how long it took.
pub struct Answer {
    /// Status.
    pub status: http::StatusCode,
    /// Body.
    pub body: Bytes,
    /// Time from sending to the whole body.
    pub elapsed: Duration,
}

/// Sends one request to a gateway with the given Host.
pub async fn send(
    gateway: &str,
    host: &str,
    method: &str,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<Answer> {
    let stream = tokio::net::TcpStream::connect(gateway)
        .await
        .with_context(|| format!("cannot connect to the gateway at {gateway}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let start = tokio::time::Instant::now();
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        body,
        elapsed: start.elapsed(),
    })
}

/// `kantai logs`.
pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    rt()?.block_on(async {
        let mut path = format!(
            "{}/log",
            kantai_api::resources::INSTANCES.object_path(&args.conn.namespace, &args.instance)
        );
        if let Some(t) = args.tail {
            path.push_str(&format!("?tailLines={t}"));
        }
        if args.follow {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str("follow=true");
            let mut body = match client.stream(&path).await {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("Error from server: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            use std::io::Write;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&data)?;
                    out.flush()?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        match client.call(http::Method::GET, &path, None).await {
            Ok(text) => {
                print!("{}", String::from_utf8_lossy(&text));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("Error from server: {e}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<Value> {
        names
            .iter()
            .map(|n| serde_json::json!({"metadata": {"name": n}}))
            .collect()
    }

    #[test]
    fn the_node_order_is_the_fleets_topology_then_other_registered_nodes() {
        let fleet = FleetInfo {
            topology: serde_json::to_value(Topology::seed_testbed()).expect("topology"),
            domain: "example.com".into(),
            config: String::new(),
            peer_token: String::new(),
        };
        let order = fleet_node_order(Some(&fleet), &nodes(&["zeta", "node2", "alpha"]));
        assert_eq!(order, ["node1", "node2", "node3", "alpha", "zeta"]);
    }

    #[test]
    fn without_a_topology_registered_nodes_are_ordered_by_name() {
        let order = fleet_node_order(None, &nodes(&["node2", "edge", "node1"]));
        assert_eq!(order, ["edge", "node1", "node2"]);
    }
}
