//! Bad scenarios are refused with a message naming what is wrong and where (line, key).

use std::path::Path;

fn refusal(text: &str) -> String {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/x.yaml");
    match kantai_sim::Scenario::parse(text, "s.yaml") {
        Err(e) => e.to_string(),
        Ok(s) => match kantai_sim::prepare_parsed(s, &base, None) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted:\n{text}"),
        },
    }
}

#[test]
fn every_mistake_is_named() {
    let hello = "services: [../../../../examples/hello.yaml]\n";
    let load = "workload: [{function: hello, arrivals: {poisson: {rate: 1}}}]\n";
    for (text, needles) in [
        (
            "duration: 10 seconds\n".to_owned(),
            &["line 1", "not a duration"][..],
        ),
        (
            format!("duration: 1s\n{hello}workload:\n  - function: hello\n    arivals: {{}}\n"),
            &["line 5", "unknown field `arivals`"],
        ),
        (
            format!("duration: 1s\n{hello}workload:\n  - function: hello\n"),
            &["line 4", "missing `arrivals`"],
        ),
        (
            format!("duration: 1s\n{hello}{load}warmup: 2s\n"),
            &["warmup", "shorter than duration"],
        ),
        (
            format!("duration: 0s\n{hello}{load}"),
            &["duration", "more than 0s"],
        ),
        (
            format!(
                "duration: 1s\n{hello}workload: [{{function: bye, arrivals: {{poisson: {{rate: 1}}}}}}]\n"
            ),
            &["workload[0].function", "\"bye\"", "hello"],
        ),
        (
            format!(
                "duration: 1s\n{hello}workload: [{{function: hello, origins: {{node9: 1}}, arrivals: {{poisson: {{rate: 1}}}}}}]\n"
            ),
            &["workload[0].origins", "node9"],
        ),
        (
            format!(
                "duration: 1s\n{hello}workload: [{{function: hello, arrivals: {{poisson: {{rate: -1}}}}}}]\n"
            ),
            &["workload[0].arrivals", "rate -1"],
        ),
        (
            format!(
                "duration: 1s\n{hello}functions:\n  hello: {{service-time: {{lognormal: {{sigma: 1}}}}}}\n{load}"
            ),
            &["line 4", "exactly one of median and mean"],
        ),
        (
            format!("duration: 1s\n{hello}functions:\n  bye: {{service-time: 1ms}}\n{load}"),
            &["functions.bye", "no service"],
        ),
        (
            format!("duration: 1s\n{hello}{load}topology: {{generate: {{nodes: 5, sites: 9}}}}\n"),
            &["topology.generate", "sites"],
        ),
        (
            format!("duration: 1s\n{hello}{load}topology: {{file: ../data/none.yaml}}\n"),
            &["cannot read", "none.yaml"],
        ),
        (
            format!("duration: 1s\n{hello}{load}policies: {{placement: closest}}\n"),
            &["unknown placement policy \"closest\"", "latency-aware"],
        ),
        (
            format!(
                "duration: 1s\n{hello}workload: [{{trace: {{csv: ../data/azure-invocations.csv}}}}]\n"
            ),
            &["azure-invocations.csv:1", "time,function,origin,duration"],
        ),
        (
            format!(
                "duration: 1s\n{hello}{load}topology: {{generate: {{nodes: 5000, sites: 10}}}}\noutput: {{placement-decisions: true}}\n"
            ),
            &["5000 nodes", "2000 nodes or fewer"],
        ),
        ("duration: 1s\n".to_owned(), &["no function"]),
        (
            format!(
                "duration: 1s\n{hello}{load}annotations: {{autoscaling.knative.dev/window: forever}}\n"
            ),
            &["service hello", "autoscaling.knative.dev/window"],
        ),
    ] {
        let e = refusal(&text);
        for n in needles {
            assert!(e.contains(n), "{n:?} not in:\n{e}\nfor:\n{text}");
        }
    }
}
