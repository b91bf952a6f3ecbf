//! A policy registered for the fleet is available in the simulator by the same name: every
//! placement, load balancer, queue discipline and keep-alive policy of `kantai_policy::registry` runs the seed
//! demo's load (from every node, over the 50 ms edge links) and serves it.

use std::path::Path;

use kantai_policy::registry::Kind;

fn serve(kind: &str, name: &str) -> serde_json::Value {
    let text = format!(
        "
duration: 40s
warmup: 10s
services: [../data/hello-pinned.yaml]
functions:
  hello: {{service-time: 20ms, cold-start: 300ms}}
policies: {{{kind}: {name}}}
workload:
  - function: hello
    arrivals: {{poisson: {{rate: 150}}}}
    path: /admin/x
    headers: {{kantai-deadline: 500ms}}
"
    );
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/x.yaml");
    let s = kantai_sim::Scenario::parse(&text, name).expect("scenario");
    let mut p = kantai_sim::prepare_parsed(s, &base, None).unwrap_or_else(|e| panic!("{e}"));
    let out = kantai_sim::run(&mut p, &mut |_| {}).expect("run");
    serde_json::to_value(&out.summary).expect("json")
}

#[test]
fn every_registered_policy_runs_by_name() {
    for (kind, key) in [
        (Kind::Placement, "placement"),
        (Kind::LoadBalancer, "load-balancer"),
        (Kind::Queue, "queue"),
        (Kind::KeepAlive, "keep-alive"),
    ] {
        for name in kind.names() {
            let s = serve(key, &name);
            let f = &s["by_function"][0];
            let column = match kind {
                Kind::Placement => "placement",
                Kind::LoadBalancer => "load_balancer",
                Kind::Queue => "queue",
                Kind::KeepAlive => "keep_alive",
            };
            assert_eq!(f[column], name, "{key} {name}");
            let ok = s["kantai_requests_total"]["200"].as_u64().unwrap_or(0);
            let all: u64 = s["kantai_requests_total"]
                .as_object()
                .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
                .unwrap_or(0);
            // 150/s for the 30 s counted.
            assert!(
                (4_000..5_000).contains(&all),
                "{key} {name}: {all} requests"
            );
            assert!(ok * 100 >= all * 99, "{key} {name}: {ok} of {all} served");
        }
    }
}

#[test]
fn an_unknown_policy_is_refused_with_the_known_names() {
    let text = "
duration: 1s
services: [../data/hello-pinned.yaml]
policies: {load-balancer: fastest}
workload: [{function: hello, arrivals: {poisson: {rate: 1}}}]
";
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/x.yaml");
    let s = kantai_sim::Scenario::parse(text, "bad.yaml").expect("parses");
    let e = kantai_sim::prepare_parsed(s, &base, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("unknown load balancer \"fastest\""), "{e}");
    assert!(e.contains("faast"), "{e}");
}
