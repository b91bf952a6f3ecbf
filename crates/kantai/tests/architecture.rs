//! Architecture invariants that a reviewer should not have to check by eye
//! (see ARCHITECTURE.md, "Invariants").

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pure_crates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root().join("crates/pure"))
        .expect("crates/pure")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    v.sort();
    v
}

/// The names under `[dependencies]` (not dev-dependencies) of a manifest.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps
            && let Some((name, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            // `name = "1"`, `name = { ... }` or `name.workspace = true`.
            let name = name.trim().trim_matches('"');
            deps.push(name.strip_suffix(".workspace").unwrap_or(name).to_owned());
        }
    }
    deps
}

/// What a decision crate may use: data structures, serialisation and errors. Anything that
/// can reach a socket, a clock, a thread or global randomness is missing on purpose; adding a
/// crate here is an architecture change and belongs in ARCHITECTURE.md too.
const PURE_ALLOWED: &[&str] = &[
    "kantai-model",
    // The driver core both drivers (control plane, simulator) call: settings and the scaler.
    "kantai-driver",
    // The decision log's record types: the driver core builds a placement's record from the
    // very input the policy saw (the log's writer, kantai-decisions, is the drivers' alone).
    "kantai-records",
    "kantai-autoscaler",
    "kantai-policy",
    "kantai-latency",
    "kantai-container",
    // The OCI image and runtime spec types (plain data with serde), for kantai-container.
    "oci-spec",
    // Secret data is base64 in the Kubernetes API (plain text encoding, no I/O).
    "base64",
    "rand",
    "serde",
    "serde_json",
    "serde-saphyr",
    "thiserror",
];

#[test]
fn decision_crates_depend_only_on_pure_crates() {
    for dir in pure_crates() {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
        for dep in dependencies(&manifest) {
            assert!(
                PURE_ALLOWED.contains(&dep.as_str()),
                "{}: dependency {dep:?} is not allowed in a pure decision crate \
                 (no tokio, sockets, clocks or global RNG; see ARCHITECTURE.md)",
                dir.display()
            );
        }
    }
}

#[test]
fn decision_crates_ban_clocks_and_io_through_clippy() {
    let canonical =
        fs::read_to_string(root().join("crates/pure/model/clippy.toml")).expect("clippy.toml");
    for needle in [
        "std::time::Instant::now",
        "std::time::SystemTime::now",
        "std::net::TcpStream",
    ] {
        assert!(
            canonical.contains(needle),
            "clippy.toml no longer bans {needle}"
        );
    }
    for dir in pure_crates() {
        let c = fs::read_to_string(dir.join("clippy.toml"))
            .unwrap_or_else(|_| panic!("{} has no clippy.toml", dir.display()));
        assert_eq!(
            c,
            canonical,
            "{}/clippy.toml differs from the model's",
            dir.display()
        );
    }
}

fn fleet_crates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root().join("crates/fleet"))
        .expect("crates/fleet")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    v.sort();
    v
}

/// Which kantai crates each fleet crate may use. The node agent reaches the control plane
/// only through the API (so `kantai node --join` works across hosts); the control plane
/// never runs instances or serves requests; the data plane and the runtime know nothing of
/// each other (the agent joins them).
const FLEET_LAYERS: &[(&str, &[&str])] = &[
    // kantai-policy for the one stable hash.
    (
        "api",
        &["kantai-model", "kantai-policy", "kantai-decisions"],
    ),
    // The load generator speaks HTTP and Prometheus' text, nothing of kantai's crates.
    ("loadgen", &[]),
    // Registries and the layer store know nothing of instances.
    ("images", &["kantai-model"]),
    (
        "runtime",
        &["kantai-model", "kantai-container", "kantai-images"],
    ),
    (
        "dataplane",
        &[
            "kantai-model",
            "kantai-policy",
            "kantai-latency",
            // The queue depth, poke interval and hold limit the simulator uses too.
            "kantai-driver",
            "kantai-api",
        ],
    ),
    (
        "control",
        &[
            "kantai-model",
            "kantai-autoscaler",
            "kantai-policy",
            "kantai-latency",
            "kantai-driver",
            "kantai-api",
            // Tags are resolved to digests when a revision is created, as Knative does.
            "kantai-images",
        ],
    ),
    (
        "node",
        &[
            "kantai-model",
            "kantai-policy",
            "kantai-driver",
            "kantai-api",
            "kantai-dataplane",
            "kantai-runtime",
        ],
    ),
];

#[test]
fn fleet_crates_keep_their_layers() {
    let dirs = fleet_crates();
    assert_eq!(
        dirs.len(),
        FLEET_LAYERS.len(),
        "a fleet crate was added or removed: give it its layer here and in ARCHITECTURE.md"
    );
    for (dir, allowed) in FLEET_LAYERS {
        let manifest = fs::read_to_string(root().join("crates/fleet").join(dir).join("Cargo.toml"))
            .expect("manifest");
        for dep in dependencies(&manifest) {
            if dep.starts_with("kantai") {
                assert!(
                    allowed.contains(&dep.as_str()),
                    "crates/fleet/{dir} may not depend on {dep:?} (see ARCHITECTURE.md, Invariants)"
                );
            }
        }
    }
}

#[test]
fn every_crate_is_on_the_architecture_map() {
    let arch = fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut crates = pure_crates();
    crates.extend(fleet_crates());
    crates.push(root().join("crates/decisions"));
    crates.push(root().join("crates/sim"));
    crates.push(root().join("crates/report"));
    crates.push(root().join("crates/experiment"));
    crates.push(root().join("crates/kantai"));
    crates.push(root().join("crates/testkit"));
    for dir in crates {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"'))
            .expect("package name");
        assert!(
            arch.contains(&format!("`{name}`")),
            "ARCHITECTURE.md does not describe `{name}`"
        );
    }
}

/// The data-driven harness is for tests only: no crate's `[dependencies]` names it, and it
/// needs nothing itself, so the pure crates' tests can use it without reaching past the rules.
#[test]
fn the_test_harness_is_a_dev_dependency_only() {
    let testkit = fs::read_to_string(root().join("crates/testkit/Cargo.toml")).expect("manifest");
    assert!(
        dependencies(&testkit).is_empty(),
        "crates/testkit depends on {:?}",
        dependencies(&testkit)
    );
    for group in ["crates/pure", "crates/fleet"] {
        for entry in fs::read_dir(root().join(group)).expect("crates") {
            let manifest = entry.expect("entry").path().join("Cargo.toml");
            if let Ok(text) = fs::read_to_string(&manifest) {
                assert!(
                    !dependencies(&text).contains(&"kantai-testkit".to_owned()),
                    "{} uses kantai-testkit outside [dev-dependencies]",
                    manifest.display()
                );
            }
        }
    }
    for dir in ["decisions", "sim", "report", "experiment", "kantai"] {
        let text = fs::read_to_string(root().join("crates").join(dir).join("Cargo.toml"))
            .expect("manifest");
        assert!(
            !dependencies(&text).contains(&"kantai-testkit".to_owned()),
            "crates/{dir} uses kantai-testkit outside [dev-dependencies]"
        );
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    let ci = fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let cmd = readme
        .lines()
        .find(|l| l.starts_with("cargo test"))
        .expect("README.md shows the test command on its own line");
    assert!(
        ci.contains(cmd),
        ".ci/run does not run the README's test command {cmd:?}"
    );
    assert!(ci.contains("cargo fmt --all -- --check"));
    assert!(ci.contains("cargo clippy --workspace --all-targets --locked -- -D warnings"));
}

/// The simulator is the third driver of the decision crates: it may use them and the
/// decision records and plug-ins, never the live fleet (no tokio, no sockets, no HTTP), and its own
/// clippy.toml bans the wall clock and global randomness (its output must be byte-identical
/// for a seed). The decision records are shared by both drivers and know only the policies' types.
#[test]
fn the_simulator_drives_the_pure_crates_only() {
    let manifest = fs::read_to_string(root().join("crates/sim/Cargo.toml")).expect("manifest");
    for dep in dependencies(&manifest) {
        assert!(
            ![
                "tokio",
                "hyper",
                "hyper-util",
                "axum",
                "kantai-api",
                "kantai-control",
                "kantai-node",
                "kantai-dataplane",
                "kantai-runtime"
            ]
            .contains(&dep.as_str()),
            "crates/sim may not depend on {dep:?}: the simulator runs the decision crates in virtual time"
        );
        if dep.starts_with("kantai") {
            assert!(
                [
                    "kantai-model",
                    "kantai-autoscaler",
                    "kantai-policy",
                    "kantai-latency",
                    "kantai-driver",
                    "kantai-decisions",
                    "kantai-report",
                    // Plug-in policies: WebAssembly, run in the simulator as in the fleet.
                    "kantai-plugin"
                ]
                .contains(&dep.as_str()),
                "crates/sim may not depend on {dep:?}"
            );
        }
    }
    let clippy = fs::read_to_string(root().join("crates/sim/clippy.toml")).expect("clippy.toml");
    for needle in [
        "std::time::Instant::now",
        "std::time::SystemTime::now",
        "rand::rng",
    ] {
        assert!(
            clippy.contains(needle),
            "crates/sim/clippy.toml no longer bans {needle}"
        );
    }
    // Experiments never start fleets themselves: live runs go to the driver the binary
    // gives them, so the experiment crate uses no fleet crate but the load generator's types.
    let experiment =
        fs::read_to_string(root().join("crates/experiment/Cargo.toml")).expect("manifest");
    for dep in dependencies(&experiment) {
        assert!(
            !dep.starts_with("kantai")
                || ["kantai-sim", "kantai-report", "kantai-loadgen"].contains(&dep.as_str()),
            "crates/experiment may not depend on {dep:?}"
        );
    }
    let decisions =
        fs::read_to_string(root().join("crates/decisions/Cargo.toml")).expect("manifest");
    for dep in dependencies(&decisions) {
        assert!(
            !dep.starts_with("kantai") || dep == "kantai-records",
            "crates/decisions may depend on the record types only, not {dep:?}"
        );
    }
}

/// `scripts/bench` parses and finds every table it rewrites in BENCHMARKS.md (running it is
/// the suite itself: minutes, not a test).
#[test]
fn the_bench_script_can_rewrite_benchmarks_md() {
    let script = root().join("scripts/bench");
    let ok = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .expect("bash");
    assert!(ok.success(), "scripts/bench has a syntax error");
    let text = fs::read_to_string(&script).expect("scripts/bench");
    let bench = fs::read_to_string(root().join("BENCHMARKS.md")).expect("BENCHMARKS.md");
    for name in ["tick", "fleet", "containers", "sim"] {
        assert!(
            text.contains("for name in tick fleet containers sim"),
            "the script's tables changed"
        );
        for marker in [
            format!("<!-- generated: {name} -->"),
            format!("<!-- end: {name} -->"),
        ] {
            assert!(
                bench.lines().any(|l| l == marker),
                "BENCHMARKS.md lost {marker}"
            );
        }
    }
    for bench_cmd in [
        "--bench tick",
        "KANTAI_BENCH_MD=\"$out/fleet.md\" cargo bench -q -p kantai --bench fleet",
        "KANTAI_BENCH_MD=\"$out/sim.md\" cargo bench -q -p kantai-sim --bench sim",
        "KANTAI_BENCH_MD=\"$out/burst.md\" cargo bench -q -p kantai --bench burst",
        "KANTAI_BENCH_MD=\"$out/protocols.md\" cargo bench -q -p kantai --bench protocols",
        "nghttp2-client",
        "nginx-light",
    ] {
        assert!(
            text.contains(bench_cmd),
            "scripts/bench no longer runs {bench_cmd}"
        );
    }
}

/// The Rust files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The one file that may hold `unsafe` code: the process launcher, whose setup between fork
/// and exec has no safe interface (ARCHITECTURE.md, "Unsafe code").
const UNSAFE_ALLOWED: &str = "crates/fleet/runtime/src/launch.rs";

#[test]
fn unsafe_code_lives_in_the_launcher_alone_each_use_with_its_safety_comment() {
    // Spelled in two halves, so that this file does not match itself.
    let allow = concat!("allow(", "unsafe_code)");
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    for f in &files {
        let text = fs::read_to_string(f).expect("source");
        let rel = f
            .strip_prefix(root())
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned();
        let allows = text.matches(allow).count();
        if rel.ends_with(UNSAFE_ALLOWED) {
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if l.contains(allow) {
                    assert!(
                        lines[i.saturating_sub(6)..i]
                            .iter()
                            .any(|l| l.trim_start().starts_with("// SAFETY:")),
                        "{rel}:{}: an unsafe use without a `// SAFETY:` comment above it",
                        i + 1
                    );
                }
            }
        } else {
            assert_eq!(
                allows, 0,
                "{rel} allows unsafe code: only {UNSAFE_ALLOWED} may (ARCHITECTURE.md)"
            );
        }
    }
    // The runtime states the workspace's lints itself, with unsafe code denied (allowable)
    // instead of forbidden: every other lint the same.
    let table = |manifest: &str, header: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut on = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                on = line == header;
                continue;
            }
            if on && !line.is_empty() && !line.starts_with('#') {
                out.push(line.replace("unsafe_code = \"forbid\"", "unsafe_code = \"deny\""));
            }
        }
        out
    };
    let workspace = fs::read_to_string(root().join("Cargo.toml")).expect("manifest");
    let runtime =
        fs::read_to_string(root().join("crates/fleet/runtime/Cargo.toml")).expect("manifest");
    for kind in ["rust", "clippy"] {
        assert_eq!(
            table(&runtime, &format!("[lints.{kind}]")),
            table(&workspace, &format!("[workspace.lints.{kind}]")),
            "crates/fleet/runtime's [lints.{kind}] must be the workspace's (unsafe_code denied, not forbidden)"
        );
    }
    assert!(
        workspace.contains("unsafe_code = \"forbid\""),
        "the workspace forbids unsafe code"
    );
}

/// Plug-ins are decisions too: the plug-in host reads no file, socket or clock (the
/// drivers hand it the bytes and the time, its clippy.toml is the pure crates'), and
/// depends on the decision crates and the WebAssembly tool chain only.
#[test]
fn the_plugin_host_is_as_pure_as_the_policies_it_runs() {
    let dir = root().join("crates/plugin");
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
    for dep in dependencies(&manifest) {
        assert!(
            [
                "kantai-model",
                "kantai-policy",
                "parking_lot",
                "thiserror",
                "tracing",
                "wasmtime",
                "wat",
                "wit-component",
                "wit-parser"
            ]
            .contains(&dep.as_str()),
            "crates/plugin may not depend on {dep:?} (see ARCHITECTURE.md, kantai-plugin)"
        );
    }
    let pure = fs::read_to_string(root().join("crates/pure/policy/clippy.toml")).expect("policy");
    let own = fs::read_to_string(dir.join("clippy.toml")).expect("crates/plugin/clippy.toml");
    assert_eq!(
        own, pure,
        "crates/plugin/clippy.toml bans what the pure crates ban"
    );
}
