//! The `kantai` binary as a user runs it: real processes, real files.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn kantai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kantai"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .expect("run kantai")
}

fn kantai_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kantai"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kantai");
    // A command refusing its arguments (a bad --config) exits without reading its input.
    if let Err(e) = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
    {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("wait")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["validate", "--help"],
        vec!["autoscale", "--help"],
        vec!["autoscale", "replay", "--help"],
        vec!["sim", "--help"],
        vec!["experiment", "--help"],
    ] {
        let out = kantai(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn validate_accepts_the_seed_manifest() {
    let out = kantai(&["validate", "-f", "examples/hello.yaml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("examples/hello.yaml: Service default/hello: valid"),
        "{stdout}"
    );
    assert!(stdout.contains("hello-00001"), "{stdout}");
    assert!(stdout.contains("window 12s"), "{stdout}");
}

/// A revision naming a plug-in balancer, as researchers write them.
const PLUGGED: &str = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\n\
    spec:\n  template:\n    metadata:\n      annotations:\n        kantai.dev/load-balancer: wat-round-robin\n\
    \x20   spec:\n      containers:\n        - image: x\n";

#[test]
fn validate_knows_the_plug_ins_of_the_fleet_config() {
    let out = kantai_stdin(
        &[
            "validate",
            "--config",
            "examples/sim/plugins.yaml",
            "-f",
            "-",
        ],
        PLUGGED,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = kantai_stdin(&["validate", "-f", "-"], PLUGGED);
    assert_eq!(
        out.status.code(),
        Some(1),
        "without the config, the name is unknown"
    );
    assert!(
        text(&out.stdout).contains("unknown load balancer \"wat-round-robin\""),
        "{}",
        text(&out.stdout)
    );
}

/// A simulated run whose placements a plug-in made, replayed with and without the fleet
/// config that loads it.
#[test]
fn decisions_replay_loads_the_plug_ins_of_the_fleet_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let guest = repo().join("crates/plugin/tests/guests/first-node.wat");
    std::fs::write(
        dir.path().join("fleet.yaml"),
        format!(
            "plugins:\n  - {{name: wat-first-node, kind: placement, module: {}}}\n",
            guest.display()
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("run.yaml"),
        format!(
            "duration: 20s\nconfig: fleet.yaml\nservices: [{}]\n\
             policies: {{placement: wat-first-node}}\noutput: {{placement-decisions: true}}\n\
             workload: [{{function: hello, arrivals: {{poisson: {{rate: 50}}}}}}]\n",
            repo().join("examples/hello.yaml").display()
        ),
    )
    .expect("scenario");
    let out_dir = dir.path().join("out");
    let sim = kantai(&[
        "sim",
        &dir.path().join("run.yaml").display().to_string(),
        "--out",
        &out_dir.display().to_string(),
    ]);
    assert_eq!(sim.status.code(), Some(0), "{}", text(&sim.stderr));
    let log = out_dir.join("decisions.jsonl").display().to_string();
    let config = dir.path().join("fleet.yaml").display().to_string();
    let replay = kantai(&["decisions", "replay", "--config", &config, &log]);
    let stdout = text(&replay.stdout);
    assert_eq!(
        replay.status.code(),
        Some(0),
        "{stdout}{}",
        text(&replay.stderr)
    );
    let (replayed, identical) = stdout
        .split_once(" placement decisions replayed, ")
        .map(|(n, rest)| {
            (
                n.to_owned(),
                rest.split(' ').next().unwrap_or("").to_owned(),
            )
        })
        .expect("a summary line");
    assert!(replayed.parse::<u32>().is_ok_and(|n| n > 0), "{stdout}");
    assert_eq!(replayed, identical, "{stdout}");
    let without = kantai(&["decisions", "replay", &log]);
    assert_eq!(without.status.code(), Some(1));
    assert!(
        text(&without.stdout).contains("unknown placement policy \"wat-first-node\""),
        "{}",
        text(&without.stdout)
    );
}

#[test]
fn validate_reports_every_error_with_file_and_line() {
    let manifest = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\n\
        spec:\n  template:\n    spec:\n      containers:\n        - image: x\n  traffic:\n\
        \x20   - latestRevision: true\n      percent: 90\n";
    let out = kantai_stdin(&["validate", "-f", "-"], manifest);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("<stdin>:10: error: spec.traffic: percentages sum to 90, must be 100"),
        "{stdout}"
    );
}

#[test]
fn validate_fails_on_syntax_errors_and_missing_files() {
    let out = kantai_stdin(&["validate", "-f", "-"], "a: [1, 2\nb: }\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not valid YAML or JSON"),
        "{}",
        text(&out.stderr)
    );
    let out = kantai(&["validate", "-f", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot open no/such/file.yaml"));
}

#[test]
fn validate_writes_defaulted_objects_back() {
    for format in ["yaml", "json"] {
        let out = kantai(&["validate", "-f", "examples/hello.yaml", "-o", format]);
        assert!(out.status.success());
        let written = text(&out.stdout);
        assert!(written.contains("timeoutSeconds"), "{written}");
        // What kantai writes, kantai reads back as valid.
        let again = kantai_stdin(&["validate", "-f", "-"], &written);
        assert!(again.status.success(), "{}", text(&again.stdout));
    }
}

#[test]
fn validate_applies_the_fleet_config() {
    let dir = std::env::temp_dir().join(format!("kantai-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let config = dir.join("fleet.yaml");
    std::fs::write(
        &config,
        "defaults:\n  container-concurrency-max-limit: 5\ndomain: example.com\n",
    )
    .expect("write");
    let manifest = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: a}\n\
        spec:\n  template:\n    spec:\n      containerConcurrency: 6\n      containers: [{image: x}]\n";
    let cfg = config.to_str().expect("utf-8");
    let out = kantai_stdin(&["validate", "--config", cfg, "-f", "-"], manifest);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("6 is out of range, must be in [0, 5]"),
        "{}",
        text(&out.stdout)
    );
    let ok = manifest.replace("containerConcurrency: 6", "containerConcurrency: 5");
    let out = kantai_stdin(&["validate", "--config", cfg, "-f", "-"], &ok);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("http://a.default.example.com"));
    std::fs::write(&config, "autoscaler:\n  stable-windw: 10s\n").expect("write");
    let out = kantai_stdin(&["validate", "--config", cfg, "-f", "-"], &ok);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 2: autoscaler.stable-windw: unknown field"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_prints_one_line_per_tick() {
    let out = kantai(&[
        "autoscale",
        "replay",
        "-m",
        "examples/hello.yaml",
        "examples/traces/hello-burst.csv",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "time_s,desired,panic,excess_burst_capacity,activator_in_path"
    );
    // The last row is at 59: ticks 0, 2, ..., 60 cover it, 31 of them after the header.
    assert_eq!(lines.len(), 32, "{csv}");
    assert_eq!(lines.last(), Some(&"60,0,false,-1,true"));
    assert!(lines.contains(&"28,1,false,-1,true"), "{csv}");
    assert!(lines.contains(&"30,0,false,-1,true"), "{csv}");
}

#[test]
fn replay_takes_annotations_on_the_command_line() {
    let trace = "time_s,ready_instances,concurrency\n".to_owned()
        + &(0..20).map(|t| format!("{t},-,50\n")).collect::<String>();
    let out = kantai_stdin(&["autoscale", "replay", "-a", "target=10", "-"], &trace);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .lines()
            .skip(1)
            .all(|l| l.split(',').nth(1) == Some("8"))
    );
    let out = kantai_stdin(
        &[
            "autoscale",
            "replay",
            "-a",
            "target=10",
            "-a",
            "target-utilization-percentage=100",
            "-",
        ],
        &trace,
    );
    assert!(
        text(&out.stdout)
            .lines()
            .skip(1)
            .all(|l| l.split(',').nth(1) == Some("5"))
    );
}

#[test]
fn replay_rejects_bad_input_clearly() {
    let out = kantai_stdin(&["autoscale", "replay", "-"], "0,1,5\n1,one,5\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 2: ready_instances \"one\""),
        "{}",
        text(&out.stderr)
    );
    let out = kantai_stdin(&["autoscale", "replay", "-a", "window=1s", "-"], "0,1,5\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("window]: must be in [6s, 1h]"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sim_runs_the_seed_demo_and_writes_its_results() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().display().to_string();
    let o = kantai(&[
        "sim",
        "examples/sim/seed-demo.yaml",
        "--out",
        &out,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    assert!(
        table.contains("hello") && table.contains("node3"),
        "{table}"
    );
    assert!(
        text(&o.stderr).contains("requests/s"),
        "{}",
        text(&o.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("summary.json")).expect("summary.json"),
    )
    .expect("json");
    // ikukantai's pair serves node3's requests next to it: the service time only.
    let p50 = summary["kantai_request_duration_seconds"]["p50"]
        .as_f64()
        .expect("p50");
    assert!((0.003..0.007).contains(&p50), "{p50}");
    let csv = std::fs::read_to_string(dir.path().join("requests.csv")).expect("csv");
    assert!(csv.starts_with("namespace,service,revision,origin_node,requests,"));
    assert!(csv.contains("\ndefault,hello,hello-00001,node3,"), "{csv}");
    // The report: one self-contained page, and Markdown with its charts beside it.
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.matches("<svg").count() == 3);
    let md = std::fs::read_to_string(dir.path().join("report.md")).expect("report.md");
    for chart in ["latency-cdf.svg", "latency-over-time.svg", "instances.svg"] {
        assert!(md.contains(&format!("]({chart})")), "{md}");
        let svg = std::fs::read_to_string(dir.path().join(chart)).expect("chart");
        assert!(
            svg.starts_with("<svg") && svg.contains("(ms") || svg.contains("(s)"),
            "{chart}"
        );
    }
    let inst = std::fs::read_to_string(dir.path().join("instances.csv")).expect("csv");
    assert!(
        inst.starts_with("t,node,ready,starting\n") && inst.contains(",node3,1,0"),
        "{inst}"
    );
    // --json prints the same summary.
    let o = kantai(&["sim", "examples/sim/seed-demo.yaml", "--json", "--quiet"]);
    assert!(o.status.success());
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(again, summary);
}

#[test]
fn sim_decision_logs_replay_through_kantai_decisions() {
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = dir.path().join("s.yaml");
    let hello = repo().join("examples/hello.yaml");
    std::fs::write(
        &scenario,
        format!(
            "duration: 60s\nservices: [{}]\npolicies: {{placement: latency-aware}}\n\
             workload:\n  - {{function: hello, origins: {{node1: 1, node3: 2}}, arrivals: {{poisson: {{rate: 80}}}}}}\n\
             output: {{placement-decisions: true}}\n",
            hello.display()
        ),
    )
    .expect("write");
    let out = dir.path().join("out");
    let o = kantai(&[
        "sim",
        &scenario.display().to_string(),
        "--out",
        &out.display().to_string(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let log = out.join("decisions.jsonl").display().to_string();
    let o = kantai(&["decisions", "replay", &log]);
    let said = text(&o.stdout);
    assert!(o.status.success(), "{said}{}", text(&o.stderr));
    assert!(said.contains("placement decisions"), "{said}");
    // Without --out there is nowhere to write the log.
    let o = kantai(&["sim", &scenario.display().to_string(), "-q"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--out"), "{}", text(&o.stderr));
}

#[test]
fn sim_names_the_problem_in_a_scenario() {
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = dir.path().join("bad.yaml");
    std::fs::write(&scenario, "duration: 10s\nseed: many\n").expect("write");
    let o = kantai(&["sim", &scenario.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(e.contains("bad.yaml") && e.contains("line 2"), "{e}");
}

#[test]
fn experiment_compares_policy_sets_and_writes_a_report() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("e.yaml");
    let scenario = repo().join("examples/sim/faast-paper.yaml");
    std::fs::write(
        &file,
        format!(
            "name: small\nscenario: {}\nslo: 15ms\npolicies:\n  - {{name: kn, placement: spread, load-balancer: knative}}\n  - {{name: fa, placement: latency-aware, load-balancer: faast}}\nlevels: {{name: users, values: [1, 2]}}\n",
            scenario.display()
        ),
    )
    .expect("write");
    let out = dir.path().join("out");
    let o = kantai(&[
        "experiment",
        &file.display().to_string(),
        "--out",
        &out.display().to_string(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("4 runs"));
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let md = std::fs::read_to_string(out.join("report.md")).expect("md");
    assert!(
        md.contains("| kn | 1 |") && md.contains("| fa | 2 |"),
        "{md}"
    );
    for chart in ["share-within-slo.svg", "p95.svg", "latency-cdf.svg"] {
        assert!(out.join(chart).exists(), "{chart}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(html.contains("within 15 ms"));
}

/// Writes a scenario (`s.yaml`) and an experiment naming it into `dir`, and starts
/// `kantai experiment` on them, writing to `dir/out`: the process, and the out directory.
fn start_experiment(
    dir: &Path,
    scenario: &str,
    experiment: &str,
) -> (std::process::Child, PathBuf) {
    std::fs::write(dir.join("s.yaml"), scenario).expect("write");
    let file = dir.join("e.yaml");
    std::fs::write(&file, experiment).expect("write");
    let out = dir.join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_kantai"))
        .args([
            "experiment",
            &file.display().to_string(),
            "--out",
            &out.display().to_string(),
            "-q",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    (child, out)
}

/// What a live experiment left: the seed's testbed, two instances from the start
/// (hello-two), 6 s of open-loop load from the edge and the cloud and two closed-loop users at
/// node2, live and simulated; then `--replot` from its raw data, from compressed raw data, and
/// without raw data (each step changes the out directory, so they run in order).
struct LiveExperiment {
    /// Lives as long as the test process (removed by the next one, see `shared_state`).
    _dir: tempfile::TempDir,
    run: PathBuf,
    ran: Output,
    pid: u32,
    left: Vec<String>,
    results: String,
    /// `requests.csv` and `report.html` as the run wrote them (the replots change both).
    requests: String,
    report: String,
    replotted: Output,
    report_replotted: bool,
    results_replotted: String,
    gzipped: bool,
    replotted_compressed: Output,
    results_compressed: String,
    replotted_without_raw_data: Output,
}

static LIVE: common::Scenario<LiveExperiment> = common::Scenario::new();

fn live_experiment() -> &'static LiveExperiment {
    LIVE.get(|| async {
        let dir = common::shared_state();
        let (child, out) = start_experiment(
            dir.path(),
            &format!(
                "seed: 4\nduration: 6s\nwarmup: 1s\nservices: [{}]\nfunctions: {{hello: {{service-time: {{uniform: {{min: 3ms, max: 5ms}}}}}}}}\nworkload:\n  - {{function: hello, origins: {{node3: 1}}, arrivals: {{poisson: {{rate: 15}}}}}}\n  - {{function: hello, origins: {{node1: 1}}, arrivals: {{poisson: {{rate: 15}}}}}}\n  - {{function: hello, origins: {{node2: 1}}, arrivals: {{users: {{count: 2, think: 200ms}}}}}}\n",
                repo().join("examples/sim/hello-two.yaml").display()
            ),
            "name: live\nscenario: s.yaml\nmode: both\nslo: 15ms\npolicies:\n  - {name: faast, placement: latency-aware, load-balancer: faast}\n",
        );
        let file = dir.path().join("e.yaml").display().to_string();
        let pid = child.id();
        let ran = child.wait_with_output().expect("wait");
        let left = common::processes_mentioning(&format!("kantai-experiment-{pid}-"));
        let run = out.join("runs/faast-1-0");
        let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_default();
        let results = read(out.join("results.csv"));
        let requests = read(run.join("requests.csv"));
        let report = read(out.join("report.html"));
        let replot = || {
            kantai(&[
                "experiment",
                &file,
                "--out",
                &out.display().to_string(),
                "--replot",
                "-q",
            ])
        };
        let _ = std::fs::remove_file(out.join("report.html"));
        let replotted = replot();
        let report_replotted = out.join("report.html").exists();
        let results_replotted = read(out.join("results.csv"));
        let gzipped = Command::new("gzip")
            .arg(run.join("requests.csv"))
            .status()
            .expect("gzip")
            .success();
        let replotted_compressed = replot();
        let results_compressed = read(out.join("results.csv"));
        let _ = std::fs::remove_file(run.join("requests.csv.gz"));
        let replotted_without_raw_data = replot();
        LiveExperiment {
            _dir: dir,
            run,
            ran,
            pid,
            left,
            results,
            requests,
            report,
            replotted,
            report_replotted,
            results_replotted,
            gzipped,
            replotted_compressed,
            results_compressed,
            replotted_without_raw_data,
        }
    })
}

impl LiveExperiment {
    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.run.join(file)).expect(file)
    }

    /// The rows of `requests.csv` after its header, split into fields.
    fn requests(&self) -> Vec<Vec<String>> {
        self.requests
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect()
    }
}

/// The first line of `results.csv` after its header: the live run's row.
fn live_row(csv: &str) -> Vec<String> {
    csv.lines()
        .nth(1)
        .expect("row")
        .split(',')
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_live_experiment_succeeds_and_leaves_no_process_behind() {
    let e = live_experiment();
    assert!(e.ran.status.success(), "{}", text(&e.ran.stderr));
    // The fleet is gone: no process of this run's state directory is left.
    assert!(
        e.left.is_empty(),
        "left running (pid {}): {:?}",
        e.pid,
        e.left
    );
}

#[test]
fn a_live_experiment_writes_a_live_and_a_simulated_row_without_failures() {
    let csv = &live_experiment().results;
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!((rows[0][1], rows[1][1]), ("live", "sim"));
    assert_eq!(rows[0][6..9], ["0", "0", "0"], "{csv}");
}

#[test]
fn a_live_experiment_sends_the_simulators_open_loop_requests() {
    let e = live_experiment();
    // The same count per origin.
    let origin_totals = |file: &str| -> Vec<(String, u64)> {
        let v: serde_json::Value = serde_json::from_str(&e.read(file)).expect("json");
        v["by_function"][0]["origins"]
            .as_array()
            .expect("origins")
            .iter()
            .map(|o| {
                let total = o["kantai_requests_total"].as_object().map_or(0, |m| {
                    m.values().filter_map(serde_json::Value::as_u64).sum()
                });
                (o["origin_node"].as_str().unwrap_or("").to_owned(), total)
            })
            .collect()
    };
    let (live, sim) = (
        origin_totals("summary.json"),
        origin_totals("sim-summary.json"),
    );
    for node in ["node1", "node3"] {
        let of = |v: &[(String, u64)]| v.iter().find(|(n, _)| n == node).map(|x| x.1);
        assert_eq!(of(&live), of(&sim), "{node}: live {live:?}, sim {sim:?}");
    }
}

#[test]
fn a_live_experiment_records_every_request_with_the_node_and_instance_that_served_it() {
    let e = live_experiment();
    assert_eq!(
        e.requests.lines().next(),
        Some("t,function,origin,status,latency_ms,lag_ms,node,instance,cold,error")
    );
    let requests = e.requests();
    for f in &requests {
        let l = f.join(",");
        assert_eq!((f[1].as_str(), f[3].as_str()), ("hello", "200"), "{l}");
        assert!(["node1", "node2", "node3"].contains(&f[6].as_str()), "{l}");
        assert!(f[7].starts_with(&format!("hello-{}-", f[6])), "{l}");
    }
    assert!(requests.len() > 100, "{} requests", requests.len());
}

#[test]
fn a_live_experiments_edge_request_served_in_the_cloud_pays_the_round_trip() {
    for f in live_experiment().requests() {
        if f[2] == "node3" && f[6] != "node3" {
            assert!(f[4].parse::<f64>().expect("ms") >= 35.0, "{}", f.join(","));
        }
    }
}

#[test]
fn a_live_experiments_closed_loop_users_wait_for_their_answers() {
    let by_users = live_experiment()
        .requests()
        .iter()
        .filter(|f| f[2] == "node2")
        .count();
    // Two users, each waiting for its answer and 200 ms more: at most 30 requests each in 6 s,
    // the first one 200 ms in.
    assert!(
        (20..=60).contains(&by_users),
        "{by_users} requests from the users"
    );
}

#[test]
fn a_live_experiment_records_the_fleets_metrics_in_a_timeline() {
    let e = live_experiment();
    let timeline = e.read("timeline.csv");
    for metric in [
        ",control,kantai_autoscaler_desired_instances,",
        ",control,kantai_placement_instances,",
        // From the agents that host an instance (which ones is the placement's choice).
        ",kantai_node_instances,",
        ",node3,kantai_queue_depth,",
    ] {
        assert!(timeline.contains(metric), "{metric} missing:\n{timeline}");
    }
    assert!(!e.run.join("timeline-problems.txt").exists());
}

#[test]
fn a_live_experiment_keeps_the_control_planes_decision_log() {
    let decisions = live_experiment().read("decisions/control.jsonl");
    assert!(decisions.lines().count() > 0);
}

#[test]
fn a_live_experiments_report_shows_the_live_and_the_simulated_run() {
    let html = &live_experiment().report;
    assert!(html.contains("faast (live)") && html.contains("faast (sim)"));
}

#[test]
fn replot_rebuilds_a_live_experiments_report_from_its_raw_data() {
    let e = live_experiment();
    // Starting no fleet.
    assert!(
        e.replotted.status.success(),
        "{}",
        text(&e.replotted.stderr)
    );
    assert!(e.report_replotted);
    let (before, after) = (live_row(&e.results), live_row(&e.results_replotted));
    // Counts are the same; latencies were written to the microsecond.
    assert_eq!(
        before[..9],
        after[..9],
        "{}\n{}",
        e.results,
        e.results_replotted
    );
    let ms = |r: &[String], i: usize| r[i].parse::<f64>().expect("ms");
    assert!((ms(&before, 9) - ms(&after, 9)).abs() <= 0.02 * ms(&before, 9));
}

#[test]
fn replot_reads_compressed_raw_data_the_same() {
    // As the committed reports keep it.
    let e = live_experiment();
    assert!(e.gzipped);
    let o = &e.replotted_compressed;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        live_row(&e.results_compressed)[..9],
        live_row(&e.results_replotted)[..9]
    );
}

#[test]
fn replot_without_raw_data_fails_naming_the_missing_file() {
    let o = &live_experiment().replotted_without_raw_data;
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("requests.csv"),
        "{}",
        text(&o.stderr)
    );
}

/// `kantai fn hello` on `port`, with more environment.
fn spawn_hello(port: u16, env: &[(&str, &str)]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kantai"))
        .args(["fn", "hello"])
        .env("PORT", port.to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

#[test]
fn hello_starts_listening_after_its_startup_delay() {
    let port = common::free_port();
    let start = std::time::Instant::now();
    let mut child = spawn_hello(port, &[("STARTUP_DELAY", "400ms")]);
    // Until it accepts a connection; hello is stopped either way.
    let up = std::panic::catch_unwind(|| {
        common::wait_blocking(
            std::time::Duration::from_secs(10),
            "hello to listen",
            || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .is_ok()
                    .then(|| start.elapsed())
            },
        )
    });
    let _ = child.kill();
    let _ = child.wait();
    let up = up.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(
        up >= std::time::Duration::from_millis(400),
        "listening after {up:?}"
    );

    let o = Command::new(env!("CARGO_BIN_EXE_kantai"))
        .args(["fn", "hello"])
        .env("STARTUP_DELAY", "soon")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("STARTUP_DELAY=\"soon\""),
        "{}",
        text(&o.stderr)
    );
}

/// hello reads request bodies to the end, so a connection carries request after request
/// (a server that answers without reading closes the connection, and the proxy in front
/// finds its pooled connection gone: 502s under load).
#[test]
fn hello_reads_bodies_and_keeps_the_connection() {
    use std::io::{Read, Write};
    let port = common::free_port();
    let mut child = spawn_hello(port, &[]);
    let mut conn = common::wait_blocking(
        std::time::Duration::from_secs(10),
        "hello to listen",
        || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let body = vec![b'x'; 200_000];
    let first = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(first.as_bytes()).expect("first head");
    conn.write_all(&body).expect("first body");
    let second =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    conn.write_all(second.as_bytes())
        .expect("second request on the same connection");
    let mut answers = String::new();
    let _ = conn.read_to_string(&mut answers);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 2, "{answers}");
}

#[test]
fn an_interrupted_live_experiment_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    let (child, out) = start_experiment(
        dir.path(),
        &format!(
            "duration: 120s\nservices: [{}]\nworkload:\n  - {{function: hello, origins: {{node1: 1}}, arrivals: {{poisson: {{rate: 5}}}}}}\n",
            repo().join("examples/sim/hello-two.yaml").display()
        ),
        "name: long\nscenario: s.yaml\nmode: live\npolicies: [{name: default}]\n",
    );
    let pid = child.id();
    let state = format!("kantai-experiment-{pid}-");
    // Wait (bounded) until the run's fleet is up and its service placed: the control
    // plane's decision log has a placement (its scaler's reports and ticks come earlier,
    // while the fleet still starts).
    let log = out.join("runs/default-1-0/decisions/control.jsonl");
    common::wait_blocking(
        std::time::Duration::from_secs(60),
        "the fleet to start (a placement in the control plane's log)",
        || {
            std::fs::read_to_string(&log)
                .is_ok_and(|t| t.contains(r#""kind":"placement""#))
                .then_some(())
        },
    );
    assert!(common::processes_mentioning(&state).len() >= 4);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal");
    let o = child.wait_with_output().expect("wait");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("interrupted (Ctrl-C or SIGTERM)"),
        "{}",
        text(&o.stderr)
    );
    let left = common::processes_mentioning(&state);
    assert!(left.is_empty(), "left running: {left:?}");
    let dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&state))
        .collect();
    assert!(dirs.is_empty(), "state left: {dirs:?}");
}

// `kantai create`, `describe` and `edit` against a real fleet (Secrets and ConfigMaps): one
// fleet that these tests share, each on names of its own.

fn secrets_fleet() -> &'static common::TestFleet {
    static FLEET: std::sync::OnceLock<common::SharedFleet> = std::sync::OnceLock::new();
    &FLEET
        .get_or_init(|| {
            common::SharedFleet::start(|| common::TestFleet::one_node_bound_to_this_thread(""))
        })
        .fleet
}

/// Runs `kantai` against the fleet and returns stdout, stderr and the exit code.
fn against(f: &common::TestFleet, args: &[&str], env: &[(&str, &Path)]) -> (String, String, i32) {
    let out = f
        .kantai()
        .args(args)
        .env_remove("EDITOR")
        .env_remove("KUBE_EDITOR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run kantai");
    (
        text(&out.stdout),
        text(&out.stderr),
        out.status.code().unwrap_or(-1),
    )
}

/// An object as `kantai get -o json` shows it.
fn got(f: &common::TestFleet, kind: &str, name: &str) -> serde_json::Value {
    let (out, err, code) = against(f, &["get", kind, name, "-o", "json"], &[]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("get -o json prints JSON")
}

/// A script that edits its file argument the way `sed -i EXPR` does, as KUBE_EDITOR.
fn sed_editor(dir: &Path, name: &str, expr: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nexec sed -i '{expr}' \"$1\"\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn create_secret_stores_literals_and_files_in_base64() {
    let f = secrets_fleet();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("password.txt");
    std::fs::write(&file, "hunter2\n").expect("write");
    let from_file = format!("--from-file=password={}", file.display());
    let (out, err, code) = against(
        f,
        &[
            "create",
            "secret",
            "generic",
            "db-literals",
            "--from-literal=user=admin",
            &from_file,
        ],
        &[],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "secret/db-literals created\n"),
        "{err}"
    );
    let s = got(f, "secret", "db-literals");
    assert_eq!(s["data"]["user"], b64("admin"), "{s}");
    assert_eq!(s["data"]["password"], b64("hunter2\n"), "{s}");
}

#[test]
fn describe_secret_shows_sizes_never_values() {
    let f = secrets_fleet();
    let (_, err, code) = against(
        f,
        &[
            "create",
            "secret",
            "generic",
            "db-described",
            "--from-literal=password=hunter2",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let (out, err, code) = against(f, &["describe", "secret", "db-described"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Type:  Opaque") && out.contains("password:  7 bytes"),
        "{out}"
    );
    assert!(
        !out.contains("hunter2") && !out.contains(&b64("hunter2")),
        "describe printed the value:\n{out}"
    );
}

#[test]
fn edit_replaces_a_configmap_with_the_editors_change() {
    let f = secrets_fleet();
    let dir = tempfile::tempdir().expect("tmp");
    let (_, err, code) = against(
        f,
        &[
            "create",
            "configmap",
            "app-edited",
            "--from-literal=mode=slow",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let editor = sed_editor(dir.path(), "editor.sh", "s/mode: slow/mode: fast/");
    let (out, err, code) = against(
        f,
        &["edit", "configmap", "app-edited"],
        &[("KUBE_EDITOR", &editor)],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "configmap/app-edited edited\n"),
        "{err}"
    );
    assert_eq!(got(f, "configmap", "app-edited")["data"]["mode"], "fast");
}

#[test]
fn an_edit_that_changes_nothing_is_cancelled() {
    let f = secrets_fleet();
    let (_, err, code) = against(
        f,
        &[
            "create",
            "configmap",
            "app-unchanged",
            "--from-literal=mode=slow",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let before = got(f, "configmap", "app-unchanged")["metadata"]["resourceVersion"].clone();
    let (out, err, code) = against(
        f,
        &["edit", "cm/app-unchanged"],
        &[("EDITOR", Path::new("true"))],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "Edit cancelled, no changes made.\n");
    assert_eq!(
        got(f, "configmap", "app-unchanged")["metadata"]["resourceVersion"],
        before
    );
}

#[test]
fn the_edited_file_is_private_and_removed_afterwards() {
    use std::os::unix::fs::PermissionsExt;
    let f = secrets_fleet();
    let dir = tempfile::tempdir().expect("tmp");
    let (_, err, code) = against(
        f,
        &[
            "create",
            "secret",
            "generic",
            "db-edited",
            "--from-literal=password=x",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let seen = dir.path().join("seen");
    let editor = dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh\necho \"$1\" > {0}\nstat -c %a \"$1\" \"$(dirname \"$1\")\" >> {0}\n",
            seen.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (_, err, code) = against(
        f,
        &["edit", "secret", "db-edited"],
        &[("KUBE_EDITOR", &editor)],
    );
    assert_eq!(code, 0, "{err}");
    let seen = std::fs::read_to_string(&seen).expect("the editor ran");
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines[1..],
        ["600", "700"],
        "file and directory modes: {seen}"
    );
    let file = Path::new(lines[0]);
    assert!(!file.exists(), "{} is left behind", file.display());
    assert!(
        !file.parent().expect("dir").exists(),
        "its directory is left behind"
    );
}

#[test]
fn an_invalid_edit_shows_the_apis_causes() {
    let f = secrets_fleet();
    let dir = tempfile::tempdir().expect("tmp");
    let (_, err, code) = against(
        f,
        &[
            "create",
            "configmap",
            "app-invalid",
            "--from-literal=mode=slow",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let editor = sed_editor(dir.path(), "editor.sh", "s/mode: slow/bad key!: slow/");
    let (out, err, code) = against(
        f,
        &["edit", "configmap", "app-invalid"],
        &[("KUBE_EDITOR", &editor)],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("configmap/app-invalid was not saved") && err.contains("data[bad key!]"),
        "{err}"
    );
    assert_eq!(got(f, "configmap", "app-invalid")["data"]["mode"], "slow");
}

#[test]
fn an_edit_of_a_changed_object_is_a_conflict() {
    use std::os::unix::fs::PermissionsExt;
    let f = secrets_fleet();
    let dir = tempfile::tempdir().expect("tmp");
    let (_, err, code) = against(
        f,
        &[
            "create",
            "configmap",
            "app-conflict",
            "--from-literal=mode=slow",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // While the first edit is open, a second one changes the object.
    let inner = sed_editor(dir.path(), "inner.sh", "s/mode: slow/mode: medium/");
    let outer = dir.path().join("outer.sh");
    std::fs::write(
        &outer,
        format!(
            "#!/bin/sh\nKUBE_EDITOR={} {} edit configmap app-conflict || exit 1\nexec sed -i 's/mode: slow/mode: fast/' \"$1\"\n",
            inner.display(),
            common::kantai_bin()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&outer, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (out, err, code) = against(
        f,
        &["edit", "configmap", "app-conflict"],
        &[("KUBE_EDITOR", &outer)],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("was changed since it was read") && err.contains("again"),
        "{err}"
    );
    assert_eq!(
        got(f, "configmap", "app-conflict")["data"]["mode"],
        "medium"
    );
}

/// `kantai create` pointed at an address where nothing listens: what it refuses, it refuses
/// before any request.
fn create_offline(args: &[&str]) -> (String, String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_kantai"))
        .arg("create")
        .args(args)
        .args([
            "--server",
            &format!("http://127.0.0.1:{}", common::free_port()),
        ])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run kantai");
    (
        text(&out.stdout),
        text(&out.stderr),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn a_literal_without_equals_is_refused_before_contacting_the_server() {
    let (out, err, code) = create_offline(&[
        "secret",
        "generic",
        "db",
        "--from-literal=user=admin",
        "--from-literal=hunter2",
    ]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains("--from-literal")
            && err.contains("number 2")
            && err.contains("expected key=value"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2") && !err.contains("cannot reach"),
        "{err}"
    );
}

#[test]
fn create_refuses_duplicate_and_invalid_keys() {
    let (_, err, code) = create_offline(&[
        "configmap",
        "app",
        "--from-literal=a=1",
        "--from-literal=a=2",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot add key a, another key by that name already exists"),
        "{err}"
    );
    let (_, err, code) = create_offline(&["configmap", "app", "--from-literal=bad key=1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("\"bad key\" is not a valid key name for a ConfigMap"),
        "{err}"
    );
}

#[test]
fn create_configmap_from_a_directory_keeps_binary_files_apart() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("app.conf"), "mode=fast\n").expect("write");
    std::fs::write(dir.path().join("logo.bin"), [0xff, 0x00, 0xfe]).expect("write");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    std::fs::write(dir.path().join("sub/ignored"), "x").expect("write");
    let from = format!("--from-file={}", dir.path().display());
    let (out, err, code) = create_offline(&["configmap", "app", &from, "--dry-run", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let cm: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        cm["data"],
        serde_json::json!({"app.conf": "mode=fast\n"}),
        "{cm}"
    );
    assert_eq!(
        cm["binaryData"],
        serde_json::json!({"logo.bin": "/wD+"}),
        "{cm}"
    );
}

#[test]
fn create_reads_env_files_as_kubectl_does() {
    let dir = tempfile::tempdir().expect("tmp");
    let env = dir.path().join("app.env");
    std::fs::write(&env, "# settings\nMODE=fast\n  URL=http://x/?a=b\n\n").expect("write");
    let from = format!("--from-env-file={}", env.display());
    let (out, err, code) = create_offline(&["configmap", "app", &from, "--dry-run", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let cm: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        cm["data"],
        serde_json::json!({"MODE": "fast", "URL": "http://x/?a=b"}),
        "{cm}"
    );
}

#[test]
fn create_describe_and_edit_have_help() {
    for args in [
        vec!["create", "secret", "generic", "--help"],
        vec!["create", "configmap", "--help"],
        vec!["describe", "--help"],
        vec!["edit", "--help"],
    ] {
        let out = kantai(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}");
    }
}
