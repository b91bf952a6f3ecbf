//! HTTP/2 through a node's gateway, with `h2load` (Debian's `nghttp2-client`): h2c by prior
//! knowledge to an h2c `kantai fn echo`, a plain GET and a unary gRPC call (`Say`), each
//! against the same load sent straight to the instance in the same run; and the same GET
//! over HTTP/1.1 (64 connections), for the cost of HTTP/2 itself.
//!
//! Run: `cargo bench -p kantai --bench protocols` (`KANTAI_BENCH_H2_REQUESTS`, default
//! 100,000 requests per run; `KANTAI_BENCH_MD` names the file the table is written to, for
//! `scripts/bench`). Loopback only; every run is bounded in requests and time.

// A benchmark is a driver: it measures wall time and starts processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestFleet, TestNode};

/// Connections and streams per connection of every run.
const CLIENTS: u32 = 4;
const STREAMS: u32 = 16;
/// The longest one run may take.
const RUN_LIMIT: Duration = Duration::from_secs(120);

const ECHO: &str = "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: h2
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: \"1\"
        autoscaling.knative.dev/max-scale: \"1\"
    spec:
      containers:
        - image: kantai/echo
          ports: [{name: h2c, containerPort: 8080}]
";

/// What one h2load run measured.
struct Run {
    /// Requests per second.
    rate: f64,
    /// Mean time per request, ms.
    mean_ms: f64,
    /// Requests that did not get a 2xx.
    failed: u64,
}

/// h2load's summary lines: `finished in 1.2s, 16000.00 req/s, ...`, `status codes: N 2xx,
/// ...`, `time for request: min max mean sd ...`.
fn parse(out: &str) -> Option<Run> {
    let rate = out
        .lines()
        .find(|l| l.starts_with("finished in"))?
        .split(", ")
        .nth(1)?
        .strip_suffix(" req/s")?
        .parse()
        .ok()?;
    let ok: u64 = out
        .lines()
        .find(|l| l.starts_with("status codes:"))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()?;
    let done: u64 = out
        .lines()
        .find(|l| l.starts_with("requests:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let mean = out
        .lines()
        .find(|l| l.starts_with("time for request:"))?
        .split_whitespace()
        .nth(5)?;
    let mean_ms = if let Some(us) = mean.strip_suffix("us") {
        us.parse::<f64>().ok()? / 1e3
    } else if let Some(ms) = mean.strip_suffix("ms") {
        ms.parse().ok()?
    } else {
        mean.strip_suffix('s')?.parse::<f64>().ok()? * 1e3
    };
    Some(Run {
        rate,
        mean_ms,
        failed: done.saturating_sub(ok),
    })
}

/// One h2load run of `requests` against `addr`, as `authority`, with `extra` arguments.
async fn h2load(
    addr: SocketAddr,
    authority: &str,
    path: &str,
    requests: u32,
    extra: &[&str],
) -> Run {
    let out = tokio::time::timeout(
        RUN_LIMIT,
        tokio::process::Command::new("h2load")
            .args(["-n", &requests.to_string()])
            .args(if extra.contains(&"--h1") {
                // HTTP/1.1 has no streams: as many connections as the others' streams.
                [
                    "-c".to_owned(),
                    (CLIENTS * STREAMS).to_string(),
                    "-m".to_owned(),
                    "1".to_owned(),
                ]
            } else {
                [
                    "-c".to_owned(),
                    CLIENTS.to_string(),
                    "-m".to_owned(),
                    STREAMS.to_string(),
                ]
            })
            .args(["-H", &format!(":authority: {authority}")])
            .args(extra)
            .arg(format!("http://{addr}{path}"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("h2load within its time limit")
    .expect("h2load (Debian's nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    parse(&text).unwrap_or_else(|| panic!("cannot read h2load's summary:\n{text}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests: u32 = std::env::var("KANTAI_BENCH_H2_REQUESTS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(100_000)
        .clamp(100, 1_000_000);
    let f = TestFleet::start(
        &[TestNode {
            name: "node1",
            rtt_to_first_ms: 0,
        }],
        "",
    )
    .await;
    f.deploy(ECHO).await;
    let direct: SocketAddr = common::wait_for(Duration::from_secs(30), "the instance", || async {
        f.instances()
            .await
            .iter()
            .find(|i| i["spec"]["revision"] == "h2-00001" && i["status"]["ready"] == true)?
            ["status"]["address"]
            .as_str()?
            .parse()
            .ok()
    })
    .await;
    let gateway = f.gateway("node1");
    let host = "h2.default.svc.cluster.local";
    // The gRPC request: a 5-byte prefix and EchoRequest{message: "hi"}.
    let dir = tempfile::tempdir().expect("tempdir");
    let say = dir.path().join("say.bin");
    std::fs::write(&say, [0, 0, 0, 0, 4, 0x0a, 2, b'h', b'i']).expect("write");
    let say = say.display().to_string();
    let grpc: [&str; 6] = [
        "-d",
        &say,
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
    ];
    let kinds: [(&str, &str, &[&str]); 3] = [
        ("GET /version", "/version", &[]),
        ("gRPC unary `Say`", "/kantai.test.Echo/Say", &grpc),
        // The same GET over HTTP/1.1 (h2load's `--h1`, one request at a time per
        // connection), for the cost of HTTP/2 itself.
        (
            "GET /version over HTTP/1.1 (64 connections)",
            "/version",
            &["--h1"],
        ),
    ];
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| h2c, {CLIENTS} connections × {STREAMS} streams, {requests} requests | direct req/s | gateway req/s | gateway ÷ direct | direct mean | gateway mean | failed |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for (label, path, extra) in kinds {
        // Warm both paths' connections and the instance before measuring.
        let _ = h2load(direct, host, path, 200, extra).await;
        let _ = h2load(gateway, host, path, 200, extra).await;
        let d = h2load(direct, host, path, requests, extra).await;
        let g = h2load(gateway, host, path, requests, extra).await;
        eprintln!(
            "{label}: direct {:.0} req/s, gateway {:.0} req/s",
            d.rate, g.rate
        );
        let _ = writeln!(
            md,
            "| {label} | {:.0} | {:.0} | {:.2}× | {:.2} ms | {:.2} ms | {} |",
            d.rate,
            g.rate,
            g.rate / d.rate,
            d.mean_ms,
            g.mean_ms,
            d.failed + g.failed
        );
    }
    println!("\n{md}");
    if let Some(path) = std::env::var_os("KANTAI_BENCH_MD") {
        std::fs::write(&path, &md).expect("write the table");
    }
    f.stop();
}
