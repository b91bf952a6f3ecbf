//! The same scenario and seed give byte-identical output (summary, CSVs, decision log);
//! another seed gives another run. Run twice in one process and compared byte for byte.

use std::path::Path;

use kantai_testkit::SharedBuf;

/// Summary, requests.csv, instances.csv and the decision log of one run.
fn run(text: &str, seed: u64) -> [Vec<u8>; 4] {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/x.yaml");
    let mut s = kantai_sim::Scenario::parse(text, "determinism").expect("scenario");
    s.seed = seed;
    let log = SharedBuf::default();
    let mut p = kantai_sim::prepare_parsed(s, &base, Some(Box::new(log.clone()))).expect("prepare");
    let out = kantai_sim::run(&mut p, &mut |_| {}).expect("run");
    let decisions = log.contents();
    [
        out.summary_json().into_bytes(),
        out.requests_csv.into_bytes(),
        out.instances_csv.into_bytes(),
        decisions,
    ]
}

const SCENARIO: &str = "
duration: 90s
services: [../data/two.yaml, ../../../../examples/hello.yaml]
functions:
  bursty: {service-time: {exponential: {mean: 20ms}}, cold-start: {lognormal: {median: 300ms, sigma: 0.5}}}
  daily: {service-time: {lognormal: {mean: 30ms, sigma: 1}}}
  hello: {service-time: {uniform: {min: 1ms, max: 9ms}}}
policies: {placement: latency-aware, load-balancer: p2c-peak-ewma}
workload:
  - function: bursty
    origins: {node1: 1, node3: 2}
    arrivals: {mmpp: {on-rate: 300, mean-on: 3s, mean-off: 5s}}
  - function: daily
    arrivals: {diurnal: {mean-rate: 40, amplitude: 0.9, period: 30s}}
  - function: hello
    origins: {node3: 1}
    arrivals: {poisson: {rate: 100}}
synthetic: {functions: 20, rate: 200, origins-per-function: 2}
output: {sample-every: 1s, placement-decisions: true, load-balancing-decisions: true}
";

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let a = run(SCENARIO, 42);
    let b = run(SCENARIO, 42);
    let names = [
        "summary.json",
        "requests.csv",
        "instances.csv",
        "decisions.jsonl",
    ];
    for (i, name) in names.iter().enumerate() {
        assert!(!a[i].is_empty(), "{name} is empty");
        assert!(
            a[i] == b[i],
            "{name} differs between two runs with the same seed"
        );
    }
    // The run is not trivial: every kind of record is there.
    let log = String::from_utf8_lossy(&a[3]);
    assert!(log.contains("\"kind\":\"placement\"") && log.contains("\"kind\":\"load-balance\""));
    let c = run(SCENARIO, 43);
    for (i, name) in names.iter().enumerate() {
        assert!(a[i] != c[i], "{name} is the same with another seed");
    }
}
