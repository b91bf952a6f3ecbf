//! What a plug-in costs per pick: the WebAssembly `first-with-room` balancer
//! (examples/policies/wat) against the same policy in Rust, in the same run, over the same
//! candidates. Each pick is timed alone; the table gives percentiles and what the plug-in
//! adds. Run: `cargo bench -p kantai-plugin --bench pick` (with `KANTAI_BENCH_MD=file`, the
//! table is also written there for BENCHMARKS.md).

// The benchmark harness is a driver: it measures wall time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use kantai_plugin::{Limits, fallbacks, load};
use kantai_policy::lb::{Candidate, LbContext, LoadBalancer};
use kantai_policy::rand::rngs::SmallRng;
use kantai_policy::rand::{Rng, SeedableRng};
use kantai_policy::registry::{Factory, Kind};
use kantai_policy::{Params, RequestInfo, SimpleRequest};

/// Picks timed per balancer and candidate count (after as many unmeasured).
const PICKS: usize = 200_000;

/// `first-with-room` in Rust: the baseline.
struct FirstWithRoom;

impl LoadBalancer for FirstWithRoom {
    fn pick(
        &mut self,
        _: &dyn RequestInfo,
        candidates: &[Candidate],
        _: &LbContext<'_>,
        _: &mut dyn Rng,
    ) -> Option<usize> {
        candidates.iter().position(Candidate::has_room)
    }
}

/// Nanoseconds per pick, sorted.
fn measure(lb: &mut dyn LoadBalancer, n: usize) -> Vec<u64> {
    // Only the last has room: the plug-in reads every candidate, as the baseline does.
    let cands: Vec<Candidate> = (0..n as u64)
        .map(|i| Candidate {
            id: i,
            node: (i % 3) as usize,
            in_flight: if i + 1 == n as u64 { 0 } else { 1 },
            capacity: 1,
        })
        .collect();
    let rtt = [Some(0.0), Some(12.0), Some(48.0)];
    let serving = [Some(3.0), None, Some(4.5)];
    let ctx = LbContext {
        origin: 0,
        rtt_ms: &rtt,
        serving_ms: &serving,
        container_concurrency: 1,
        now: Duration::from_secs(60),
    };
    let req = SimpleRequest::get("/api/v1/items");
    let mut rng = SmallRng::seed_from_u64(1);
    for _ in 0..PICKS {
        black_box(lb.pick(&req, &cands, &ctx, &mut rng));
    }
    let mut ns: Vec<u64> = (0..PICKS)
        .map(|_| {
            let t = Instant::now();
            let p = lb.pick(&req, &cands, &ctx, &mut rng);
            let e = t.elapsed();
            assert_eq!(p, Some(n - 1), "the last candidate has room");
            e.as_nanos() as u64
        })
        .collect();
    ns.sort_unstable();
    ns
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/policies/wat/first-with-room.wat"
    );
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let t = Instant::now();
    let plugin = load(
        "first-with-room",
        Kind::LoadBalancer,
        &bytes,
        Limits::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let loaded = t.elapsed();
    let Factory::LoadBalancer(new) = plugin.factory() else {
        panic!("a load balancer")
    };
    let mut md = String::new();
    md.push_str(
        "| candidates | Rust p50 | Rust p99 | plug-in p50 | plug-in p99 | added p50 | ratio p50 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for n in [1, 8, 64] {
        let native = measure(&mut FirstWithRoom, n);
        let wasm = measure(&mut *new(&Params::default()), n);
        let (n50, n99, w50, w99) = (
            pct(&native, 0.5),
            pct(&native, 0.99),
            pct(&wasm, 0.5),
            pct(&wasm, 0.99),
        );
        let _ = writeln!(
            md,
            "| {n} | {n50} ns | {n99} ns | {w50} ns | {w99} ns | **{:.2} µs** | {:.1}× |",
            (w50.saturating_sub(n50)) as f64 / 1e3,
            w50 as f64 / n50.max(1) as f64
        );
    }
    assert!(
        fallbacks().is_empty(),
        "no pick fell back: {:?}",
        fallbacks()
    );
    let _ = writeln!(
        md,
        "\nLoading the module (componentize, compile, instantiate, one `create`): {:.1} ms. \
         {PICKS} timed picks per row, after as many untimed.",
        loaded.as_secs_f64() * 1e3
    );
    print!("{md}");
    if let Ok(file) = std::env::var("KANTAI_BENCH_MD") {
        std::fs::write(&file, &md).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}
