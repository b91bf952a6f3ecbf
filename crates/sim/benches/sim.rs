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
    run_with(name, file, None).0
}

/// Runs `file`, its load balancer replaced by `load_balancer` (with the plug-ins of
/// examples/sim/plugins.yaml) when given; the table row and the wall time.
fn run_with(name: &str, file: &str, load_balancer: Option<&str>) -> (String, f64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(file);
    let mut p = match load_balancer {
        None => kantai_sim::prepare(&path, None),
        Some(lb) => {
            let text = std::fs::read_to_string(&path).expect("the scenario");
            let line = "policies: {placement: spread, load-balancer: knative}";
            assert!(text.contains(line), "{file} changed its policies line");
            let text = text.replace(
                line,
                &format!(
                    "config: plugins.yaml\npolicies: {{placement: spread, load-balancer: {lb}}}"
                ),
            );
            let s = kantai_sim::Scenario::parse(&text, file).expect("scenario");
            kantai_sim::prepare_parsed(s, &path, None)
        }
    }
    .unwrap_or_else(|e| panic!("{e}"));
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
    (row, wall)
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
    // A plug-in balancer against the same policy built in, on the reference scenario.
    let (row, native) = run_with(
        "reference, round-robin",
        "examples/sim/default.yaml",
        Some("round-robin"),
    );
    md += &row;
    md.push('\n');
    let (row, plugged) = run_with(
        "reference, round-robin as a WebAssembly plug-in",
        "examples/sim/default.yaml",
        Some("wat-round-robin"),
    );
    md += &row;
    md.push('\n');
    let speed = format!(
        "\nWith the WebAssembly plug-in (examples/policies/wat/round-robin.wat) as its load balancer, \
         the simulator runs the reference scenario at {:.0} % of its speed with the same policy built in.\n\n",
        100.0 * native / plugged
    );
    print!("{speed}");
    md += &speed;
    if std::env::var_os("KANTAI_BENCH_QUICK").is_none() {
        md += &run("scale (scale.yaml)", "examples/sim/scale.yaml");
        md.push('\n');
    }
    // For `scripts/bench`, which splices the table into BENCHMARKS.md.
    if let Some(path) = std::env::var_os("KANTAI_BENCH_MD") {
        std::fs::write(&path, &md).expect("write the table");
    }
}
