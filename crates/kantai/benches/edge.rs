//! Cold starts decided at the node, on the seed's testbed (node3 50 ms ± 10 ms from node1,
//! where the control plane sits): the first request to a latency-aware hello at zero entering
//! node3 until its response, against the same cold start entering node1 in the same run; and,
//! for reference, a `spread` hello at zero entering node3, whose instance the control plane
//! places (the round trip over the 50 ms link in the cold path).
//!
//! Run: `cargo bench -p kantai --bench edge` (`KANTAI_BENCH_EDGE_TRIES`, default 10, cold
//! starts of each kind; `KANTAI_BENCH_MD` names the file the table is written to, for
//! `scripts/bench`). Loopback only; every loop is bounded.

// A benchmark is a driver: it measures wall time and starts processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{TestFleet, hello};

/// Scale to zero within seconds between tries: Knative's shortest stable window.
const FAST_ZERO: &str = "autoscaler:\n  stable-window: 6s\n  scale-to-zero-grace-period: 1s\ndataplane:\n  serving-headers: true\n";

/// The kinds of cold start measured: (label, service, node the request enters).
const KINDS: [(&str, &str, &str); 3] = [
    (
        "node1 (the control plane's node), latency-aware",
        "near",
        "node1",
    ),
    (
        "node3 (50 ms away), latency-aware: started by node3",
        "far",
        "node3",
    ),
    (
        "node3 (50 ms away), spread: placed by the control plane",
        "placed",
        "node3",
    ),
];

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tries: usize = std::env::var("KANTAI_BENCH_EDGE_TRIES")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let f = TestFleet::seed_testbed(FAST_ZERO).await;
    for (_, service, _) in KINDS {
        let policy = if service == "placed" {
            "spread"
        } else {
            "latency-aware"
        };
        f.deploy(&hello(service, &[("kantai.dev/placement", policy)], ""))
            .await;
    }
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
    let mut served_elsewhere = vec![0usize; KINDS.len()];
    for t in 0..tries {
        for (_, service, _) in KINDS {
            f.wait_zero(&format!("{service}-00001"), Duration::from_secs(60))
                .await;
        }
        // One cold start of each kind, one after the other (not competing for the CPU).
        for (k, (_, service, node)) in KINDS.iter().enumerate() {
            let a = f.call(node, service, "/").await;
            assert_eq!(a.status, 200, "{service} at {node}: {}", a.body);
            assert!(
                a.headers.contains_key("kantai-cold-start"),
                "try {t}: {service} at {node} was not a cold start"
            );
            if a.headers
                .get("kantai-served-on")
                .and_then(|v| v.to_str().ok())
                != Some(node)
            {
                served_elsewhere[k] += 1;
            }
            took[k].push(a.elapsed.as_secs_f64() * 1e3);
        }
        eprintln!(
            "try {t}: {}",
            took.iter()
                .map(|v| format!("{:.1} ms", v[t]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let stats: Vec<(f64, f64)> = took
        .iter_mut()
        .map(|v| {
            v.sort_by(|a, b| a.total_cmp(b));
            (pct(v, 50.0), pct(v, 95.0))
        })
        .collect();
    let base = stats[0].0;
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| cold start at zero, request entering ({tries} tries each) | p50 | p95 | p50 ÷ node1's |"
    );
    let _ = writeln!(md, "|---|---|---|---|");
    for (k, (label, _, _)) in KINDS.iter().enumerate() {
        let (p50, p95) = stats[k];
        let elsewhere = if served_elsewhere[k] > 0 {
            format!(" ({} served on another node)", served_elsewhere[k])
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {label}{elsewhere} | {p50:.1} ms | {p95:.1} ms | {:.2}× |",
            p50 / base
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "A cold start at node3 decided by node3: {:.2}× the same start at the control plane's node (target ≤ 1.5×); through the control plane: {:.2}×.",
        stats[1].0 / base,
        stats[2].0 / base
    );
    println!("\n{md}");
    if let Some(path) = std::env::var_os("KANTAI_BENCH_MD") {
        std::fs::write(&path, &md).expect("write the table");
    }
    f.stop();
}
