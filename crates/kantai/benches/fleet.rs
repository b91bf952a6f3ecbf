//! The fleet's performance, each figure next to its baseline in the same run:
//!
//! - cold start: first request to a hello at zero until its response, against spawning the
//!   same hello by hand and timing its first response;
//! - warm path: saturation throughput, and an open-loop load at half the gateway's saturation
//!   rate through a node's gateway, against the same load sent straight to the instance;
//! - the node agent's resident memory, idle and under that load.
//!
//! Run: `cargo bench -p kantai --bench fleet` (writes `target/bench-fleet.json` and prints
//! the tables for BENCHMARKS.md). Loopback only; every loop is bounded.

// A benchmark is a driver: it measures wall time and starts processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestFleet, TestNode, hello};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const COLD_TRIES: usize = 50;

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
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

/// Open-loop load at `rate` requests per second for `secs` seconds. Latency counts from the
/// moment each request was due, so a slow response delays no later measurement (no
/// coordinated omission).
async fn open_loop(target: SocketAddr, host: &str, rate: f64, secs: u64) -> (Vec<f64>, usize) {
    let client = http();
    let n = (rate * secs as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due).await;
        let client = client.clone();
        let host = host.to_owned();
        tasks.push(tokio::spawn(async move {
            let ok = one(&client, target, &host).await;
            (due.elapsed().as_secs_f64() * 1e3, ok)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut failed = 0;
    for t in tasks {
        let (ms, ok) = t.await.expect("request");
        if ok {
            lat.push(ms);
        } else {
            failed += 1;
        }
    }
    (lat, failed)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn node_agent_pids(state: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(" node ") && cmd.contains(state) {
                out.push(pid);
            }
        }
    }
    out
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
    let mut cold = Vec::new();
    for i in 0..COLD_TRIES {
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
    }
    let mut raw = Vec::new();
    for _ in 0..COLD_TRIES {
        raw.push(raw_cold_start(free_port()).await);
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
    let sat_direct = saturation(direct, "127.0.0.1", 32, 5).await;
    let sat_gateway = saturation(gateway, host, 32, 5).await;
    let rate = (sat_gateway / 2.0).floor().max(10.0);
    let (lat_direct, fail_direct) = open_loop(direct, "127.0.0.1", rate, 10).await;
    let load_rss_probe = {
        let f2 = f.clone();
        tokio::spawn(async move {
            let _ = f2;
            let mut max = 0;
            for _ in 0..40 {
                max = max.max(rss_kb(agent));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            max
        })
    };
    let (lat_gateway, fail_gateway) = open_loop(gateway, host, rate, 10).await;
    let load_rss = load_rss_probe.await.expect("rss");

    let (cold50, cold99, cold_max) = summary(cold.clone());
    let (raw50, raw99, _) = summary(raw.clone());
    let (d50, d99, _) = summary(lat_direct.clone());
    let (g50, g99, _) = summary(lat_gateway.clone());
    let report = serde_json::json!({
        "cold_start_ms": {"p50": cold50, "p99": cold99, "max": cold_max, "tries": COLD_TRIES},
        "raw_process_first_response_ms": {"p50": raw50, "p99": raw99},
        "saturation_rps": {"direct": sat_direct, "gateway": sat_gateway},
        "open_loop": {"rate_rps": rate, "seconds": 10,
                      "direct_ms": {"p50": d50, "p99": d99, "failed": fail_direct},
                      "gateway_ms": {"p50": g50, "p99": g99, "failed": fail_gateway}},
        "node_agent_rss_kb": {"idle": idle_rss, "under_load": load_rss},
    });
    let out = common::repo().join("target/bench-fleet.json");
    let _ = std::fs::write(&out, serde_json::to_vec_pretty(&report).expect("json"));
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    println!();
    println!("| measure | kantai | baseline | ratio / difference |");
    println!("|---|---|---|---|");
    println!(
        "| cold start p50 | {cold50:.1} ms | {raw50:.1} ms (raw process) | {:.2}× |",
        cold50 / raw50
    );
    println!(
        "| cold start p99 | {cold99:.1} ms | {raw99:.1} ms (raw process) | {:.2}× |",
        cold99 / raw99
    );
    println!(
        "| saturation | {sat_gateway:.0} req/s (gateway) | {sat_direct:.0} req/s (direct) | {:.2}× |",
        sat_gateway / sat_direct
    );
    println!(
        "| p50 at {rate:.0} req/s | {g50:.3} ms | {d50:.3} ms | +{:.3} ms |",
        g50 - d50
    );
    println!(
        "| p99 at {rate:.0} req/s | {g99:.3} ms | {d99:.3} ms | +{:.3} ms |",
        g99 - d99
    );
    println!(
        "| node agent RSS | {:.1} MB idle, {:.1} MB under load | | |",
        idle_rss as f64 / 1024.0,
        load_rss as f64 / 1024.0
    );
    Arc::try_unwrap(f).ok().expect("sole owner").stop();
}
