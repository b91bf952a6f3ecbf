//! One autoscaler tick over 10,000 revisions (issue target: under 5 ms on one core), next to
//! the cost of recording their reports and a baseline pass that only reads each revision.
//! Run: `cargo bench -p kantai-autoscaler --bench tick`.

// The benchmark harness is a driver: it measures wall time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kantai_autoscaler::{Observation, RevisionAutoscaler, ScalingSpec};
use kantai_model::autoscaling::AutoscalingAnnotations;
use kantai_model::config::AutoscalerConfig;

const REVISIONS: usize = 10_000;

fn fleet() -> Vec<RevisionAutoscaler> {
    let spec = ScalingSpec::resolve(
        &AutoscalerConfig::default(),
        &AutoscalingAnnotations::default(),
        0,
        Duration::from_secs(600),
    );
    let mut fleet: Vec<_> = (0..REVISIONS)
        .map(|_| RevisionAutoscaler::new(spec.clone(), Duration::ZERO, 1))
        .collect();
    // A full stable window of history, with loads spread over two orders of magnitude.
    for s in 0..60 {
        report(&mut fleet, s);
    }
    fleet
}

fn load(i: usize, s: u64) -> Observation {
    Observation {
        concurrency: ((i % 97) as f64 + (s % 7) as f64) * 3.0,
        requests: (i % 31) as f64 * 10.0,
        ..Observation::default()
    }
}

fn report(fleet: &mut [RevisionAutoscaler], s: u64) {
    for (i, a) in fleet.iter_mut().enumerate() {
        a.record(Duration::from_secs(s), load(i, s));
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("autoscaler");

    let mut fleet = fleet();
    let mut now = 60u64;
    group.bench_function("tick_10k_revisions", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Two seconds of reports arrive between ticks; only the tick is timed.
                report(&mut fleet, now);
                report(&mut fleet, now + 1);
                now += 2;
                let t = Duration::from_secs(now);
                let start = Instant::now();
                for a in &mut fleet {
                    let ready = a.replicas();
                    black_box(a.tick(t, ready));
                }
                total += start.elapsed();
            }
            total
        })
    });

    let mut fleet = self::fleet();
    let mut s = 60u64;
    group.bench_function("record_10k_reports", |b| {
        b.iter(|| {
            s += 1;
            report(&mut fleet, s);
        })
    });

    let fleet = self::fleet();
    group.bench_function("baseline_visit_10k_revisions", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for a in &fleet {
                sum += u64::from(black_box(a).replicas());
            }
            black_box(sum)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
