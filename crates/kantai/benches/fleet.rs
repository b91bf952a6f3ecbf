//! The fleet's performance, each figure next to its baseline in the same run:
//!
//! - cold start: first request to a hello at zero until its response, against spawning the
//!   same hello by hand and timing its first response;
//! - warm path: saturation throughput (the median of three rounds), and open-loop loads at
//!   1,000 req/s and at half of nginx's saturation rate through a node's gateway, against the
//!   same loads sent straight to the instance and through nginx;
//! - the node agent's resident memory, idle and under that load.
//!
//! Run: `cargo bench -p kantai --bench fleet` (writes `target/bench-fleet.json` and prints
//! the tables for BENCHMARKS.md; `scripts/bench` runs it with the rest of the suite).
//! Loopback only; every loop is bounded.

// A benchmark is a driver: it measures wall time and starts processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestFleet, TestNode, hello, node_agent_pids, rss_kb};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kantai_api::resources::SERVICES;

const COLD_TRIES: usize = 50;
/// The light open-loop rate (requests per second).
const LIGHT_RATE: f64 = 1000.0;
/// Saturation rounds (the median counts) and the length of each.
const SATURATION_ROUNDS: usize = 3;
const SATURATION_SECS: u64 = 5;
/// Length of each open-loop run.
const OPEN_LOOP_SECS: u64 = 10;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (pct(&v, 50.0), pct(&v, 99.0), pct(&v, 100.0))
}

/// First response of a hello spawned by hand, in ms.
async fn raw_cold_start(port: u16) -> f64 {
    let start = Instant::now();
    let mut child = Command::new(common::kantai_bin())
        .args(["fn", "hello"])
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hello");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let ms = loop {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await
            && let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await
        {
            tokio::spawn(conn);
            let req = http::Request::get("/")
                .body(Full::new(Bytes::new()))
                .expect("req");
            if let Ok(r) = sender.send_request(req).await {
                let _ = r.into_body().collect().await;
                break start.elapsed().as_secs_f64() * 1e3;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "hello did not start"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    ms
}

type Http = HttpClient<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(c)
}

async fn one(client: &Http, target: SocketAddr, host: &str) -> bool {
    let req = http::Request::get(format!("http://{target}/"))
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .expect("req");
    match client.request(req).await {
        Ok(r) => {
            let ok = r.status().is_success();
            let _ = r.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

/// Closed-loop maximum throughput with `workers` concurrent clients for `secs` seconds.
async fn saturation(target: SocketAddr, host: &str, workers: usize, secs: u64) -> f64 {
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let client = client.clone();
        let host = host.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline && n < 10_000_000 {
                if one(&client, target, &host).await {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker");
    }
    total as f64 / secs as f64
}

/// Connections an open-loop run keeps (as wrk2 does: a fixed set, each with its share of
/// the schedule), so that the measurement is of the proxy and not of connection setup.
const OPEN_LOOP_CONNECTIONS: usize = 64;

/// Open-loop load at `rate` requests per second for `secs` seconds over a fixed set of
/// keep-alive connections. Each request has a due time on a fixed schedule and its latency
/// counts from that moment, so a slow response delays no later measurement (no coordinated
/// omission): a request that could not be sent on time because its connection was busy is
/// charged the wait.
async fn open_loop(target: SocketAddr, host: &str, rate: f64, secs: u64) -> (Vec<f64>, usize) {
    let n = (rate * secs as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let conns = OPEN_LOOP_CONNECTIONS.min(n.max(1));
    let mut tasks = Vec::with_capacity(conns);
    for c in 0..conns {
        let host = host.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n / conns + 1);
            let mut failed = 0;
            let mut sender = None;
            let mut i = c;
            let mut free_at = start;
            while i < n {
                let due = start + interval * i as u32;
                tokio::time::sleep_until(due.into()).await;
                // tokio's timer wakes up to 1 ms late; that lateness is the generator's, not
                // the system's. A request whose connection was still busy at its due time
                // is charged from the due time (the coordinated-omission correction).
                let from = if free_at > due { due } else { Instant::now() };
                if sender.is_none() {
                    sender = connect(target).await;
                }
                let ok = match sender.as_mut() {
                    Some(s) => send(s, &host).await,
                    None => false,
                };
                free_at = Instant::now();
                if ok {
                    lat.push(from.elapsed().as_secs_f64() * 1e3);
                } else {
                    failed += 1;
                    sender = None;
                }
                i += conns;
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.expect("connection task");
        lat.extend(l);
        failed += f;
    }
    (lat, failed)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: SocketAddr) -> Option<Sender> {
    let s = tokio::net::TcpStream::connect(target).await.ok()?;
    s.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

async fn send(sender: &mut Sender, host: &str) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    let req = http::Request::get("/")
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .expect("req");
    match sender.send_request(req).await {
        Ok(r) => {
            let ok = r.status().is_success();
            ok && r.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Cargo passes `--bench`; any other argument filters nothing here.
    let f = Arc::new(
        TestFleet::start(
            &[TestNode {
                name: "node1",
                rtt_to_first_ms: 0,
            }],
            "autoscaler:\n  allow-zero-initial-scale: true\n",
        )
        .await,
    );
    let state = f.state.path().display().to_string();
    let agent = node_agent_pids(&state)[0];
    let idle_rss = rss_kb(agent);

    // Cold start: 50 services created at zero, each called once.
    // `KANTAI_BENCH_COLD_TRIES` shortens the run while investigating the warm path.
    let cold_tries = std::env::var("KANTAI_BENCH_COLD_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(COLD_TRIES);
    let mut cold = Vec::new();
    for i in 0..cold_tries {
        let name = format!("cold{i}");
        f.deploy(&hello(
            &name,
            &[("autoscaling.knative.dev/initial-scale", "0")],
            "",
        ))
        .await;
        let a = f.call("node1", &name, "/").await;
        assert_eq!(a.status, 200, "{}", a.body);
        cold.push(a.elapsed.as_secs_f64() * 1e3);
        // Each try starts from the same fleet: one node, no other instance running.
        f.client
            .delete(SERVICES, "default", &name)
            .await
            .expect("delete");
        f.wait_zero(&format!("{name}-00001"), Duration::from_secs(30))
            .await;
    }
    let mut raw = Vec::new();
    for _ in 0..cold_tries {
        raw.push(raw_cold_start(common::free_port()).await);
    }

    // Warm path: one instance kept warm; the same load through the gateway and straight to it.
    f.deploy(&hello(
        "warm",
        &[
            ("autoscaling.knative.dev/min-scale", "1"),
            ("autoscaling.knative.dev/max-scale", "1"),
        ],
        "",
    ))
    .await;
    let inst = f.instances().await;
    let warm = inst
        .iter()
        .find(|i| i["spec"]["revision"] == "warm-00001")
        .expect("warm instance");
    let direct: SocketAddr = warm["status"]["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("addr");
    let gateway = f.gateway("node1");
    let host = "warm.default.svc.cluster.local";
    let nginx = kantai_testkit::nginx::Nginx::start(direct);
    if nginx.is_none() {
        println!("nginx is not installed (apt-get install nginx-light): its column is left out");
    }
    let mut targets: Vec<(&str, SocketAddr, &str)> =
        vec![("direct", direct, "127.0.0.1"), ("kantai", gateway, host)];
    if let Some(n) = &nginx {
        targets.push(("nginx", n.addr, "127.0.0.1"));
    }
    // Saturation in rounds, each target once per round, so that a burst of other work on
    // the shared machine hits one round rather than one target: the median round counts.
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for _ in 0..SATURATION_ROUNDS {
        for (i, (_, addr, h)) in targets.iter().enumerate() {
            rounds[i].push(saturation(*addr, h, 32, SATURATION_SECS).await);
        }
    }
    let mut sat = serde_json::Map::new();
    // Every round is kept in the report, so that the spread behind a median shows.
    let mut sat_rounds = serde_json::Map::new();
    for ((name, _, _), r) in targets.iter().zip(rounds) {
        sat_rounds.insert((*name).into(), r.clone().into());
        let mut sorted = r;
        sorted.sort_by(|a, b| a.total_cmp(b));
        sat.insert((*name).into(), sorted[sorted.len() / 2].into());
    }
    // Half of nginx's saturation rate is the yardstick (half of the gateway's without nginx).
    let yardstick = sat
        .get("nginx")
        .or_else(|| sat.get("kantai"))
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let half = std::env::var("KANTAI_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((yardstick / 2.0).floor().max(10.0));
    // A light load shows what the extra hop costs by itself; half of nginx's saturation rate
    // is the yardstick (on two cores the generator, the proxy and the instance then
    // compete for the CPU).
    let mut open = Vec::new();
    let mut load_rss = 0;
    for rate in [LIGHT_RATE, half] {
        let mut row = serde_json::Map::new();
        for (name, addr, h) in &targets {
            let probe = (*name == "kantai").then(|| {
                tokio::spawn(async move {
                    let mut max = 0;
                    for _ in 0..40 {
                        max = max.max(rss_kb(agent));
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    max
                })
            });
            let (lat, failed) = open_loop(*addr, h, rate, OPEN_LOOP_SECS).await;
            if let Some(p) = probe {
                load_rss = load_rss.max(p.await.expect("rss"));
            }
            let (p50, p99, max) = summary(lat);
            row.insert(
                (*name).into(),
                serde_json::json!({"p50": p50, "p99": p99, "max": max, "failed": failed}),
            );
        }
        open.push((rate, row));
    }
    drop(nginx);

    let (cold50, cold99, cold_max) = summary(cold.clone());
    let (raw50, raw99, _) = summary(raw.clone());
    let report = serde_json::json!({
        "cold_start_ms": {"p50": cold50, "p99": cold99, "max": cold_max, "tries": cold_tries},
        "raw_process_first_response_ms": {"p50": raw50, "p99": raw99},
        "saturation_rps": sat,
        "saturation_rounds_rps": sat_rounds,
        "open_loop": open.iter().map(|(rate, row)| serde_json::json!({
            "rate_rps": rate, "seconds": OPEN_LOOP_SECS, "connections": OPEN_LOOP_CONNECTIONS,
            "latency_ms": row,
        })).collect::<Vec<_>>(),
        "node_agent_rss_kb": {"idle": idle_rss, "under_load": load_rss},
    });
    let out = common::repo().join("target/bench-fleet.json");
    let _ = std::fs::write(&out, serde_json::to_vec_pretty(&report).expect("json"));
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    // The tables for BENCHMARKS.md, printed and (with KANTAI_BENCH_MD) written for
    // `scripts/bench` to splice in.
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| cold start ({cold_tries} tries) | kantai | raw process | ratio |"
    );
    let _ = writeln!(md, "|---|---|---|---|");
    let _ = writeln!(
        md,
        "| p50 | {cold50:.1} ms | {raw50:.1} ms | {:.2}× |",
        cold50 / raw50
    );
    let _ = writeln!(
        md,
        "| p99 | {cold99:.1} ms | {raw99:.1} ms | {:.2}× |",
        cold99 / raw99
    );
    let _ = writeln!(md);
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let has_nginx = sat.contains_key("nginx");
    let _ = writeln!(
        md,
        "| warm path | direct | kantai gateway | kantai − direct |{}",
        if has_nginx {
            " nginx | nginx − direct |"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|{}",
        if has_nginx { "---|---|" } else { "" }
    );
    let d = num(&sat["direct"]);
    let k = num(&sat["kantai"]);
    let _ = write!(
        md,
        "| saturation (req/s) | {d:.0} | {k:.0} | {:.2}× |",
        k / d
    );
    if has_nginx {
        let n = num(&sat["nginx"]);
        let _ = write!(md, " {n:.0} | {:.2}× |", n / d);
    }
    let _ = writeln!(md);
    if has_nginx {
        let n = num(&sat["nginx"]);
        let _ = writeln!(md, "| saturation, kantai ÷ nginx | | | {:.2}× | | |", k / n);
    }
    for (rate, row) in &open {
        for q in ["p50", "p99"] {
            let d = num(&row["direct"][q]);
            let k = num(&row["kantai"][q]);
            let _ = write!(
                md,
                "| {q} at {rate:.0} req/s | {d:.3} ms | {k:.3} ms | {:+.3} ms |",
                k - d
            );
            if has_nginx {
                let n = num(&row["nginx"][q]);
                let _ = write!(md, " {n:.3} ms | {:+.3} ms |", n - d);
            }
            let _ = writeln!(md);
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| node agent resident memory | idle | under the load above |"
    );
    let _ = writeln!(md, "|---|---|---|");
    let _ = writeln!(
        md,
        "| RSS | {:.1} MB | {:.1} MB |",
        idle_rss as f64 / 1024.0,
        load_rss as f64 / 1024.0
    );
    println!("\n{md}");
    if let Some(path) = std::env::var_os("KANTAI_BENCH_MD") {
        std::fs::write(&path, &md).expect("write the tables");
    }
    Arc::try_unwrap(f).ok().expect("sole owner").stop();
}
