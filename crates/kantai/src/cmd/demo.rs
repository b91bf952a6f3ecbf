//! `kantai demo`: the seed's "Try it out" on this machine, from start to finish.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use kantai_api::resources::{INSTANCES, PLACEMENTS, SERVICES};
use kantai_api::{Client, FleetInfo};
use kantai_model::meta::JsonMeta;
use kantai_model::topology::Topology;
use serde_json::Value;

use crate::cmd::client::send;
use crate::launch::{Fleet, Launch};

/// The seed's demo manifest, shipped with kantai.
pub const HELLO_YAML: &str = include_str!("../../../../examples/hello.yaml");

/// Arguments of `kantai demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Requests to send from node3 while the function is warm.
    #[arg(long, default_value_t = 3)]
    requests: u32,
    /// Show the control plane's and the agents' logs.
    #[arg(short, long)]
    verbose: bool,
    /// The fleet's policies: ikukantai's (latency-aware placement and the FaaSt balancer, as
    /// the seed's demo runs with yukari enabled) or Knative's defaults.
    #[arg(long, value_enum, default_value_t = Policies::Ikukantai)]
    policies: Policies,
}

/// Which policies the demo fleet runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Policies {
    /// latency-aware placement, faast load balancing.
    Ikukantai,
    /// spread placement, knative load balancing.
    Knative,
}

/// Runs the demo; every process it starts is gone when it returns.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let state = std::env::temp_dir().join(format!("kantai-demo-{}", std::process::id()));
    let rt = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let result = rt.block_on(async {
        let mut topology = Topology::seed_testbed();
        // Any free ports, so that the demo runs next to a `kantai up`.
        for n in &mut topology.nodes {
            n.gateway = n.address.map(|a| std::net::SocketAddr::new(a, 0));
        }
        println!("Starting the seed's testbed: node1 and node2 in the cloud, node3 at the edge (50 ms ± 10 ms round trip).");
        std::fs::create_dir_all(&state)
            .with_context(|| format!("cannot create {}", state.display()))?;
        let config = state.join("demo-config.yaml");
        let (placement, lb) = match args.policies {
            Policies::Ikukantai => ("latency-aware", "faast"),
            Policies::Knative => ("spread", "knative"),
        };
        std::fs::write(
            &config,
            format!("policies:\n  placement: {placement}\n  load-balancer: {lb}\n"),
        )
        .with_context(|| format!("cannot write {}", config.display()))?;
        println!("Policies: {placement} placement, {lb} load balancing (--policies knative|ikukantai).");
        let mut fleet = Fleet::start(Launch {
            topology: &topology,
            config: Some(&config),
            state_dir: &state,
            listen: "127.0.0.1:0".parse()?,
            show_logs: args.verbose,
            decision_log: None,
        })
        .await?;
        let r = demo(&fleet, args.requests).await;
        println!("\nStopping the fleet.");
        fleet.stop().await;
        r
    });
    let _ = std::fs::remove_dir_all(&state);
    result.map(|()| ExitCode::SUCCESS)
}

async fn demo(fleet: &Fleet, requests: u32) -> anyhow::Result<()> {
    let client = fleet.client()?;
    let info: FleetInfo =
        serde_json::from_value(client.get_json(kantai_api::wire::FLEET_PATH).await?)?;
    let node3 = fleet
        .gateways
        .iter()
        .find(|(n, _)| n == "node3")
        .map(|(_, g)| g.to_string())
        .ok_or_else(|| anyhow!("no node3 in the testbed"))?;
    let order: Vec<String> = fleet.gateways.iter().map(|(n, _)| n.clone()).collect();

    println!("\n$ kantai apply -f hello.yaml");
    let doc = &kantai_model::manifest::read(HELLO_YAML, &kantai_model::ServingConfig::default())
        .map_err(|e| anyhow!("{}", e.message))?[0];
    let obj = doc
        .object
        .as_ref()
        .ok_or_else(|| anyhow!("the demo manifest is invalid"))?;
    client.create(SERVICES, "default", &obj.to_json()).await?;
    println!("service.serving.knative.dev/hello created");
    let svc = wait_for(
        Duration::from_secs(60),
        "the service to become Ready",
        || async {
            let v = client.get(SERVICES, "default", "hello").await.ok()?;
            ready(&v).then_some(v)
        },
    )
    .await?;
    show(&client, &svc, &order).await;

    println!(
        "\nThe first instance is the revision's initial scale; the autoscaler removes it after"
    );
    println!(
        "the 12 s window (and the 30 s grace period behind the activator). Waiting for zero..."
    );
    wait_zero(&client, &order).await?;

    let host = format!("hello.{}.{}", "default", info.domain);
    println!("\n$ curl {host}    # from node3 (gateway {node3})");
    for i in 0..requests.max(1) {
        let a = send(&node3, &host, "GET", "/", None).await?;
        let what = if i == 0 { "cold start" } else { "warm" };
        print!("{}", String::from_utf8_lossy(&a.body));
        println!(
            "  -> {} in {:.1} ms ({what})",
            a.status,
            a.elapsed.as_secs_f64() * 1e3
        );
        if !a.status.is_success() {
            bail!("the request failed: {}", a.status);
        }
    }
    settle(&client).await;
    let svc = client.get(SERVICES, "default", "hello").await?;
    show(&client, &svc, &order).await;

    println!("\nNo more requests: waiting for scale to zero again...");
    wait_zero(&client, &order).await?;
    println!("\nA second cold start, from node3:");
    let a = send(&node3, &host, "GET", "/", None).await?;
    print!("{}", String::from_utf8_lossy(&a.body));
    println!(
        "  -> {} in {:.1} ms (cold start)",
        a.status,
        a.elapsed.as_secs_f64() * 1e3
    );
    settle(&client).await;
    let svc = client.get(SERVICES, "default", "hello").await?;
    show(&client, &svc, &order).await;
    Ok(())
}

fn ready(v: &Value) -> bool {
    v["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

async fn wait_for<T, F, Fut>(limit: Duration, what: &str, f: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_zero(client: &Client, order: &[String]) -> anyhow::Result<()> {
    let start = Instant::now();
    wait_for(Duration::from_secs(120), "scale to zero", || async {
        let items = client.list(INSTANCES, Some("default")).await.ok()?;
        items.is_empty().then_some(())
    })
    .await?;
    println!(
        "  scaled to zero after {:.0} s",
        start.elapsed().as_secs_f64()
    );
    if let Ok(p) = client.get(PLACEMENTS, "default", "hello-00001").await
        && let Ok(p) = kantai_model::fleet::from_json::<kantai_model::fleet::Placement>(&p)
    {
        println!("  placement.kantai.dev/hello-00001   {}", p.summary(order));
    }
    Ok(())
}

/// Waits (briefly) for the agents' next reports, so the status shown is the instance that
/// just answered, Running, rather than the Pending it was a moment before it did.
async fn settle(client: &Client) {
    let _ = wait_for(
        Duration::from_secs(5),
        "the instances to report ready",
        || async {
            let items = client.list(INSTANCES, Some("default")).await.ok()?;
            items
                .iter()
                .all(|i| i["status"]["ready"] == true)
                .then_some(())
        },
    )
    .await;
}

async fn show(client: &Client, svc: &Value, order: &[String]) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    println!(
        "service.serving.knative.dev/hello   {}   {}   {}   {}",
        s(&svc["status"]["url"]),
        s(&svc["status"]["latestCreatedRevisionName"]),
        s(&svc["status"]["latestReadyRevisionName"]),
        if ready(svc) { "True" } else { "False" }
    );
    if let Ok(items) = client.list(INSTANCES, Some("default")).await {
        for i in items {
            println!(
                "instance.kantai.dev/{}   {}/1   {}   node {}",
                i.name(),
                u8::from(i["status"]["ready"] == true),
                s(&i["status"]["phase"]),
                s(&i["spec"]["node"])
            );
        }
    }
    if let Ok(p) = client.get(PLACEMENTS, "default", "hello-00001").await
        && let Ok(p) = kantai_model::fleet::from_json::<kantai_model::fleet::Placement>(&p)
    {
        println!(
            "placement.kantai.dev/hello-00001   [{}]   {}",
            order
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(","),
            p.summary(order)
        );
    }
}
