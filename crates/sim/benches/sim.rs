//! The simulator's speed (`cargo bench -p kantai-sim --bench sim`; figures in
//! BENCHMARKS.md): the reference scenario (`examples/sim/default.yaml`) and the scale
//! scenario (`examples/sim/scale.yaml`: 10,000 nodes, 1,000 functions, ~10 million
//! requests), each against a baseline measured in the same run: the event queue alone,
//! pushing and popping as many events as the run processed, at the same horizon.
//! `KANTAI_BENCH_QUICK=1` runs the reference scenario only.

// A benchmark measures wall time: that is its job.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;
use std::time::Instant;

use kantai_sim::queue::EventQueue;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Pushes and pops `events` events spread over `horizon_ns` ahead, with about `live` waiting
/// at once: the cost of ordering the run's events, and nothing else.
fn queue_only(events: u64, live: usize, horizon_ns: u64) -> f64 {
    let mut rng = SmallRng::seed_from_u64(1);
    let mut q = EventQueue::default();
    let start = Instant::now();
    let mut now = 0;
    for i in 0..live as u64 {
        q.push(rng.random_range(0..horizon_ns), i);
    }
    for i in 0..events {
        let e = q.pop().expect("event");
        now = e.t;
        q.push(now + rng.random_range(0..horizon_ns), i);
    }
    std::hint::black_box(now);
    start.elapsed().as_secs_f64()
}

fn run(name: &str, file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(file);
    let mut p = kantai_sim::prepare(&path, None).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let out = kantai_sim::run(&mut p, &mut |_| {}).expect("run");
    let wall = start.elapsed().as_secs_f64();
    let s = &out.summary;
    let requests: u64 = s.results.kantai_requests_total.values().sum();
    // The queue baseline: as many events, about as many waiting (a tenth of the requests in
    // flight at once is generous), a second ahead.
    let base = queue_only(s.events, 100_000, 1_000_000_000);
    let row = format!(
        "| {name} | {} nodes, {} functions | {requests} | {:.2} s | {:.0} | {:.0} | {:.2} s ({:.1}×) | {:.0} MB |",
        s.nodes,
        s.functions,
        wall,
        requests as f64 / wall,
        s.events as f64 / wall,
        base,
        wall / base,
        peak_rss_mb(),
    );
    println!("{row}");
    row
}

fn main() {
    // `cargo test --benches` runs this with `--bench`-less arguments; only measure when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut md = String::from(
        "| scenario | fleet | requests | wall | requests/s | events/s | event queue alone | peak RSS |\n|---|---|---|---|---|---|---|---|\n",
    );
    print!("{md}");
    md += &run("reference (default.yaml)", "examples/sim/default.yaml");
    md.push('\n');
    if std::env::var_os("KANTAI_BENCH_QUICK").is_none() {
        md += &run("scale (scale.yaml)", "examples/sim/scale.yaml");
        md.push('\n');
    }
    // For `scripts/bench`, which splices the table into BENCHMARKS.md.
    if let Some(path) = std::env::var_os("KANTAI_BENCH_MD") {
        std::fs::write(&path, &md).expect("write the table");
    }
}
