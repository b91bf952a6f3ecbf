//! The program built on kantai: its added load balancer is a policy like the built-ins, in
//! the simulator (every pick in the decision log is its own) and in manifest validation.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kantai-own-policy");

/// A revision with two instances of one slot each, so that "the first with room" is not
/// always the first.
const SERVICE: &str = "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: \"2\"
        autoscaling.knative.dev/max-scale: \"2\"
        autoscaling.knative.dev/initial-scale: \"2\"
    spec:
      containerConcurrency: 1
      containers:
        - image: docker.io/bonavadeur/shuka:v1.3
";

fn scenario(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("hello.yaml"), SERVICE).expect("service");
    let path = dir.join("scenario.yaml");
    std::fs::write(
        &path,
        "seed: 3
duration: 5s
services: [hello.yaml]
policies: {load-balancer: first-with-room}
functions:
  hello:
    service-time: {exponential: {mean: 20ms}}
    cold-start: 100ms
workload:
  - function: hello
    origins: {node1: 1}
    arrivals: {poisson: {rate: 60}}
output: {load-balancing-decisions: true}
",
    )
    .expect("scenario");
    path
}

#[test]
fn every_pick_in_the_simulator_is_the_added_balancers_first_instance_with_room() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out");
    let run = Command::new(BIN)
        .arg("sim")
        .arg(scenario(dir.path()))
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .expect("run the simulator");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let log = std::fs::read_to_string(out.join("decisions.jsonl")).expect("decisions.jsonl");
    let mut picks = 0;
    let mut not_first = 0;
    for line in log.lines() {
        let d: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if d["kind"] != "load-balance" {
            continue;
        }
        assert_eq!(d["policy"], "first-with-room", "{line}");
        // Each candidate: instance, node, in flight, capacity (0: no limit).
        let with_room = d["candidates"]
            .as_array()
            .expect("candidates")
            .iter()
            .position(|c| c[3] == 0 || c[2].as_u64() < c[3].as_u64());
        let expected = with_room.map(|i| d["candidates"][i][0].clone());
        assert_eq!(
            d["choice"],
            expected.clone().unwrap_or(serde_json::Value::Null),
            "{line}"
        );
        picks += 1;
        not_first += usize::from(with_room.is_some_and(|i| i > 0));
    }
    assert!(picks > 200, "{picks} load-balancing decisions");
    assert!(
        not_first > 0,
        "the first instance always had room: the test shows nothing"
    );
}

#[test]
fn manifests_may_name_the_added_balancer_and_a_misspelt_name_lists_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let manifest = |lb: &str| {
        let p = dir.path().join(format!("{lb}.yaml"));
        std::fs::write(
            &p,
            SERVICE.replace(
                "autoscaling.knative.dev/min-scale: \"2\"",
                &format!("kantai.dev/load-balancer: {lb}"),
            ),
        )
        .expect("manifest");
        p
    };
    let ok = Command::new(BIN)
        .args(["validate", "--filename"])
        .arg(manifest("first-with-room"))
        .output()
        .expect("validate");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = Command::new(BIN)
        .args(["validate", "--filename"])
        .arg(manifest("first-with-rom"))
        .output()
        .expect("validate");
    assert!(!bad.status.success());
    let text =
        String::from_utf8_lossy(&bad.stderr).into_owned() + &String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.contains("\"first-with-rom\"") && text.contains("first-with-room"),
        "{text}"
    );
}

#[test]
fn the_guide_quotes_this_program_exactly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("../../docs/policies.md")).expect("guide");
    let main = std::fs::read_to_string(root.join("src/main.rs")).expect("main.rs");
    assert!(
        guide.contains(&main),
        "docs/policies.md does not quote examples/own-policy/src/main.rs as it is; copy it into the guide"
    );
}
