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
        // Plug-ins another test registers are not this test's.
        for name in kind.names().into_iter().filter(|n| !kind.is_plug_in(n)) {
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

/// The reference scenario, shortened, with `load_balancer` and the fleet config of
/// examples/sim/plugins.yaml: its summary.
fn reference_with(load_balancer: &str) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("examples/sim/default.yaml");
    let text = std::fs::read_to_string(&path).expect("the reference scenario");
    let line = "policies: {placement: spread, load-balancer: knative}";
    assert!(
        text.contains(line),
        "default.yaml changed its policies line"
    );
    let text = text.replace("duration: 300s", "duration: 40s").replace(
        line,
        &format!(
            "config: plugins.yaml\npolicies: {{placement: spread, load-balancer: {load_balancer}}}"
        ),
    );
    let s = kantai_sim::Scenario::parse(&text, "default.yaml").expect("scenario");
    let mut p = kantai_sim::prepare_parsed(s, &path, None).unwrap_or_else(|e| panic!("{e}"));
    let out = kantai_sim::run(&mut p, &mut |_| {}).expect("run");
    serde_json::to_value(&out.summary).expect("json")
}

/// A plug-in the fleet config names runs in the simulator by that name, and a WebAssembly
/// port of a built-in that draws nothing decides as the built-in: the same run, request for
/// request.
#[test]
fn a_plug_in_of_the_fleet_config_runs_by_name_and_matches_the_built_in_it_ports() {
    let native = reference_with("round-robin");
    let mut plugged = reference_with("wat-round-robin");
    let functions = plugged["by_function"].as_array_mut().expect("functions");
    assert!(!functions.is_empty());
    for f in functions {
        assert_eq!(f["load_balancer"], "wat-round-robin");
        f["load_balancer"] = "round-robin".into();
    }
    assert!(
        native == plugged,
        "the runs differ beyond the balancer's name"
    );
    let total: u64 = native["kantai_requests_total"]
        .as_object()
        .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0);
    assert!(total > 100_000, "the run served load: {total}");
    assert!(
        kantai_plugin::fallbacks()
            .iter()
            .all(|f| f.plugin != "wat-round-robin"),
        "{:?}",
        kantai_plugin::fallbacks()
    );
}

#[test]
fn a_plug_in_whose_module_is_missing_is_refused_with_its_name_and_path() {
    let dir = std::env::temp_dir().join(format!("kantai-sim-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("fleet.yaml"),
        "plugins:\n  - {name: gone, kind: load-balancer, module: nowhere.wasm}\n",
    )
    .expect("config");
    let text = "
duration: 1s
config: fleet.yaml
services: [../data/hello-pinned.yaml]
workload: [{function: hello, arrivals: {poisson: {rate: 1}}}]
";
    let s = kantai_sim::Scenario::parse(text, "x.yaml").expect("parses");
    let e = kantai_sim::prepare_parsed(s, &dir.join("x.yaml"), None)
        .err()
        .expect("refused")
        .to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        e.contains("plug-in \"gone\": cannot read its module nowhere.wasm"),
        "{e}"
    );
}
