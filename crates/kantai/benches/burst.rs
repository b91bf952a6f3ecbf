//! Burst scale-out on one node: a hello at zero (`containerConcurrency: 1`, max-scale 100)
//! receives 100 requests at once, each holding its instance for a second (`/sleep/1000`), so
//! the burst wants 100 instances. Measured from the first request: when the 100 instances are
//! placed (exist), when all 100 are ready, and how many requests failed (none may); against
//! the same 100 processes spawned by hand at once in the same run, until each answers.
//!
//! Run: `cargo bench -p kantai --bench burst` (`KANTAI_BENCH_BURST_TRIES`, default 3 bursts;
//! `KANTAI_BENCH_MD` names the file the table is written to, for `scripts/bench`). Loopback
//! only; every loop is bounded.

// A benchmark is a driver: it measures wall time and starts processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestFleet, hello};
use kantai_api::resources::SERVICES;

/// Instances the burst wants.
const INSTANCES: usize = 100;
/// How long each request of the burst keeps its instance busy.
const HOLD_MS: u64 = 1000;
/// The longest a burst may take to be served (every wait is bounded).
const LIMIT: Duration = Duration::from_secs(60);

/// One node with room for the burst; the control plane beside it.
const TOPOLOGY: &str = "nodes:\n  - {name: node1, address: 127.0.0.1, gateway: \"127.0.0.1:0\", capacity: {instances: 120}}\nlinks:\n  pairs: []\n";

/// Back to zero within seconds between bursts (Knative's shortest stable window).
const FAST_ZERO: &str = "autoscaler:\n  allow-zero-initial-scale: true\n  stable-window: 6s\n  scale-to-zero-grace-period: 1s\n";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What one burst measured, in ms from its first request.
struct Burst {
    placed_ms: f64,
    first_ready_ms: f64,
    all_ready_ms: f64,
    failed: usize,
}

async fn burst(f: &Arc<TestFleet>, name: &str) -> Burst {
    let revision = format!("{name}-00001");
    let start = Instant::now();
    let mut calls = Vec::with_capacity(INSTANCES);
    for _ in 0..INSTANCES {
        let (f, name) = (f.clone(), name.to_owned());
        calls.push(tokio::spawn(async move {
            f.call("node1", &name, &format!("/sleep/{HOLD_MS}")).await
        }));
    }
    let (mut placed, mut first_ready) = (None, None);
    let all_ready = loop {
        let list = f.instances().await;
        let mine: Vec<&serde_json::Value> = list
            .iter()
            .filter(|i| i["spec"]["revision"] == revision.as_str())
            .collect();
        let ready = mine.iter().filter(|i| i["status"]["ready"] == true).count();
        let at = start.elapsed().as_secs_f64() * 1e3;
        if placed.is_none() && mine.len() >= INSTANCES {
            placed = Some(at);
        }
        if first_ready.is_none() && ready > 0 {
            first_ready = Some(at);
        }
        if ready >= INSTANCES {
            break at;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{ready} of {INSTANCES} instances ready ({} exist) after {LIMIT:?}",
            mine.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut failed = 0;
    for c in calls {
        // A request that got no answer at all panics its task: a failure too.
        match c.await {
            Ok(a) if a.status == 200 => {}
            Ok(a) => {
                failed += 1;
                eprintln!("a request of the burst failed: {} {}", a.status, a.body);
            }
            Err(e) => {
                failed += 1;
                eprintln!("a request of the burst got no answer: {e}");
            }
        }
    }
    Burst {
        placed_ms: placed.unwrap_or(all_ready),
        first_ready_ms: first_ready.unwrap_or(all_ready),
        all_ready_ms: all_ready,
        failed,
    }
}

/// 100 hellos spawned by hand at once: ms from the first spawn until every one answered.
async fn hand_spawns() -> f64 {
    let start = Instant::now();
    let mut children = Vec::with_capacity(INSTANCES);
    for _ in 0..INSTANCES {
        let port = common::free_port();
        let child = Command::new(common::kantai_bin())
            .args(["fn", "hello"])
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hello");
        children.push((child, SocketAddr::from(([127, 0, 0, 1], port))));
    }
    let mut waits = Vec::with_capacity(INSTANCES);
    for (_, addr) in &children {
        let addr = *addr;
        waits.push(tokio::spawn(async move {
            loop {
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let _ = s
                        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .await;
                    let mut buf = [0u8; 12];
                    if s.read_exact(&mut buf).await.is_ok() && buf.starts_with(b"HTTP/1.1 200") {
                        return;
                    }
                }
                assert!(
                    start.elapsed() < LIMIT,
                    "a hand-spawned hello did not answer"
                );
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }));
    }
    for w in waits {
        w.await.expect("wait");
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    for (mut c, _) in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    ms
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tries: usize = std::env::var("KANTAI_BENCH_BURST_TRIES")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(3)
        .clamp(1, 20);
    let state = tempfile::tempdir().expect("tempdir");
    let f = Arc::new(TestFleet::start_topology(state, TOPOLOGY, &["node1"], FAST_ZERO).await);
    let mut runs = Vec::new();
    let mut raw = Vec::new();
    for t in 0..tries {
        let name = format!("burst{t}");
        f.deploy(&hello(
            &name,
            &[
                ("autoscaling.knative.dev/initial-scale", "0"),
                ("autoscaling.knative.dev/max-scale", &INSTANCES.to_string()),
            ],
            "      containerConcurrency: 1\n",
        ))
        .await;
        let b = burst(&f, &name).await;
        eprintln!(
            "burst {t}: placed {:.0} ms, first ready {:.0} ms, all ready {:.0} ms, {} failed",
            b.placed_ms, b.first_ready_ms, b.all_ready_ms, b.failed
        );
        runs.push(b);
        f.client
            .delete(SERVICES, "default", &name)
            .await
            .expect("delete");
        f.wait_zero(&format!("{name}-00001"), LIMIT).await;
        // The same starts by hand, right after, on the same machine.
        let ms = hand_spawns().await;
        eprintln!("hand spawns {t}: all answered {ms:.0} ms");
        raw.push(ms);
    }
    let placed = median(runs.iter().map(|b| b.placed_ms).collect());
    let first = median(runs.iter().map(|b| b.first_ready_ms).collect());
    let all = median(runs.iter().map(|b| b.all_ready_ms).collect());
    let failed: usize = runs.iter().map(|b| b.failed).sum();
    let raw_all = median(raw);
    let per_s = |ms: f64| INSTANCES as f64 / (ms / 1e3);
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| burst wanting {INSTANCES} instances on one node (median of {tries}) | kantai | {INSTANCES} processes spawned by hand |"
    );
    let _ = writeln!(md, "|---|---|---|");
    let _ = writeln!(
        md,
        "| first request → all {INSTANCES} placed | {placed:.0} ms | — |"
    );
    let _ = writeln!(md, "| first request → first ready | {first:.0} ms | — |");
    let _ = writeln!(
        md,
        "| first request (first spawn) → all {INSTANCES} ready (answering) | {all:.0} ms | {raw_all:.0} ms |"
    );
    let _ = writeln!(
        md,
        "| instance starts per second | {:.0} | {:.0} |",
        per_s(all),
        per_s(raw_all)
    );
    let _ = writeln!(
        md,
        "| failed requests (of {}) | {failed} | — |",
        INSTANCES * tries
    );
    println!("\n{md}");
    if let Some(path) = std::env::var_os("KANTAI_BENCH_MD") {
        std::fs::write(&path, &md).expect("write the table");
    }
    assert_eq!(failed, 0, "requests of the burst failed");
    Arc::try_unwrap(f).ok().expect("sole owner").stop();
}
