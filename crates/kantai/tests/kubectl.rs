//! The real `kubectl` against a kantai fleet: the seed's walkthrough as written (apply the
//! seed's hello.yaml, `kubectl get ksvc,pod,seika`, a request from node3, the pod on node3
//! with the latency-aware policies, delete), each verb kubectl users reach for, and the
//! errors they must see (invalid manifest, stale update, no or wrong token). One behaviour
//! per test: the walkthrough and verb tests share one seed testbed, each on names of its own,
//! so that they run in parallel without starting a fleet each.
//!
//! Skipped, saying so, where kubectl is not installed — unless `KANTAI_REQUIRE_KUBECTL=1`
//! (as CI sets, after installing it) makes that a failure.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{SharedFleet, TestFleet, hello, repo};

const POLICIES: &str = "policies:\n  placement: latency-aware\n  load-balancer: faast\n";

/// The installed kubectl, and whether it reads OpenAPI v3 (1.27+); older ones read v2 as
/// protobuf only, which kantai does not serve, so they apply with `--validate=false`.
fn kubectl_version() -> Option<(PathBuf, u32)> {
    let out = Command::new("kubectl")
        .args(["version", "--client", "-o", "json"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let minor = v["clientVersion"]["minor"]
        .as_str()?
        .trim_end_matches('+')
        .parse()
        .ok()?;
    Some((PathBuf::from("kubectl"), minor))
}

struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
    minor: u32,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn cmd(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        // kubectl before 1.27 validates with OpenAPI v2 as protobuf only, which kantai does
        // not serve; the server validates anyway.
        let mut args = args.to_vec();
        if self.minor < 27 && matches!(args.first(), Some(&("apply" | "replace" | "create"))) {
            args.insert(1, "--validate=false");
        }
        let mut c = Command::new("kubectl");
        // A home of its own: kubectl caches discovery per server address there.
        c.env("KUBECONFIG", kubeconfig)
            .env("HOME", self.home.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .args(&args)
            .stdin(Stdio::null());
        c
    }

    fn run_with(&self, kubeconfig: &Path, args: &[&str]) -> Out {
        let out = self.cmd(kubeconfig, args).output().expect("run kubectl");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(&self.kubeconfig, args)
    }

    /// Runs and insists on success; the output.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.ok,
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            o.stdout,
            o.stderr
        );
        o.stdout
    }

    fn apply(&self, extra: &[&str]) -> String {
        let mut args = vec!["apply"];
        args.extend(extra);
        self.ok(&args)
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

/// kubectl's version, or `None` (having said why) where it is missing; a failure instead
/// where `KANTAI_REQUIRE_KUBECTL` is set.
fn kubectl_or_skip() -> Option<u32> {
    let Some((_, minor)) = kubectl_version() else {
        assert!(
            std::env::var("KANTAI_REQUIRE_KUBECTL").is_err(),
            "kubectl is required here (KANTAI_REQUIRE_KUBECTL is set) but is not installed"
        );
        eprintln!("skipping: kubectl is not installed (Debian: apt-get install kubernetes-client)");
        return None;
    };
    Some(minor)
}

// --- The seed's walkthrough and each verb, one behaviour per test, on one shared fleet ---

/// The seed's testbed that the walkthrough and verb tests share, each on names of its own.
struct Shared {
    fleet: SharedFleet,
    minor: u32,
}

static SHARED: OnceLock<Option<Shared>> = OnceLock::new();

/// The shared fleet, or `None` where kubectl is missing.
fn shared() -> Option<&'static Shared> {
    SHARED
        .get_or_init(|| {
            let minor = kubectl_or_skip()?;
            let fleet =
                SharedFleet::start(|| TestFleet::seed_testbed_bound_to_this_thread(POLICIES));
            Some(Shared { fleet, minor })
        })
        .as_ref()
}

impl Shared {
    /// kubectl for one test, with a home of its own.
    fn kubectl(&self) -> Kubectl {
        Kubectl {
            kubeconfig: self.fleet.fleet.kubeconfig.clone(),
            home: tempfile::tempdir().expect("home"),
            minor: self.minor,
        }
    }
}

/// The shared fleet, kubectl for it and a directory for the test's files; returns from the
/// test (skipped) where kubectl is missing.
macro_rules! shared_or_skip {
    () => {{
        let Some(s) = shared() else {
            return;
        };
        (s, s.kubectl(), tempfile::tempdir().expect("files"))
    }};
}

/// Applies a hello service named `name` that keeps one instance, and waits until it is Ready.
fn apply_kept_hello(k: &Kubectl, dir: &Path, name: &str) {
    let file = write(
        dir,
        &format!("{name}.yaml"),
        &hello(name, &[("autoscaling.knative.dev/min-scale", "1")], ""),
    );
    k.apply(&["-f", &file]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        &format!("ksvc/{name}"),
        "--timeout=60s",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_token_file_is_private() {
    let (s, _k, _files) = shared_or_skip!();
    let token_file = s.fleet.fleet.state.path().join("data/token");
    let mode = std::fs::metadata(&token_file).expect("token").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kantai_kubeconfig_prints_the_fleets_kubeconfig() {
    let (s, _k, _files) = shared_or_skip!();
    let printed = Command::new(common::kantai_bin())
        .args(["kubeconfig", "--state-dir"])
        .arg(s.fleet.fleet.state.path().join("data"))
        .output()
        .expect("kantai kubeconfig");
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout),
        std::fs::read_to_string(&s.fleet.fleet.kubeconfig).expect("kubeconfig")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_a_request_without_the_token() {
    let (s, _k, _files) = shared_or_skip!();
    // A client of this test's own runtime: no connection of the shared fleet's is reused.
    let anonymous = kantai_api::Client::new(&s.fleet.fleet.api).expect("client");
    let err = anonymous
        .list(kantai_api::resources::SERVICES, Some("default"))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Some(401), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_with_a_wrong_token_is_told_to_log_in() {
    let (s, k, files) = shared_or_skip!();
    let wrong = std::fs::read_to_string(&s.fleet.fleet.kubeconfig)
        .expect("kubeconfig")
        .replace(&s.fleet.fleet.token, "not-the-token");
    let wrong = write(files.path(), "wrong-kubeconfig", &wrong);
    let o = k.run_with(Path::new(&wrong), &["get", "ksvc"]);
    assert!(
        !o.ok && o.stderr.contains("You must be logged in to the server"),
        "{}",
        o.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_api_resources_lists_knative_and_kantai_kinds_by_short_name() {
    let (_s, k, _files) = shared_or_skip!();
    let resources = k.ok(&["api-resources"]);
    for want in ["ksvc", "seika", "rev", "pods", "namespaces"] {
        assert!(resources.contains(want), "{want} missing:\n{resources}");
    }
}

/// The seed's walkthrough, verbatim: apply hello.yaml, see the service, its pod and its
/// placement; once hello scaled to zero, a request from node3 starts its instance on node3;
/// delete -f removes what the file describes and everything the service owned. Only this
/// test uses the name `hello`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_the_seed_walkthrough() {
    let (s, k, _files) = shared_or_skip!();
    let manifest = repo().join("../shared/manifests/hello.yaml");
    let manifest = if manifest.exists() {
        manifest
    } else {
        repo().join("examples/hello.yaml")
    };
    let manifest = manifest.display().to_string();
    let out = k.apply(&["-f", &manifest]);
    assert!(
        out.contains("service.serving.knative.dev/hello created"),
        "{out}"
    );
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "ksvc/hello",
        "--timeout=60s",
    ]);
    let out = k.ok(&["get", "ksvc,pod,seika"]);
    let hello_lines: Vec<&str> = out.lines().filter(|l| l.contains("hello")).collect();
    assert!(
        hello_lines
            .iter()
            .any(|l| l.starts_with("service.serving.knative.dev/hello") && l.contains("True")),
        "{out}"
    );
    assert!(
        hello_lines.iter().any(|l| l.starts_with("pod/hello-")),
        "{out}"
    );
    assert!(
        hello_lines
            .iter()
            .any(|l| l.starts_with("placement.kantai.dev/hello-00001")),
        "{out}"
    );
    assert!(
        out.contains("LATESTCREATED") && out.contains("LATESTREADY"),
        "{out}"
    );
    let out = k.ok(&["describe", "ksvc", "hello"]);
    assert!(out.contains("Created Route \"hello\""), "{out}");

    common::wait_for(
        Duration::from_secs(90),
        "hello to scale to zero",
        || async { (!k.ok(&["get", "pods"]).contains("hello-")).then_some(()) },
    )
    .await;
    let a = s
        .fleet
        .run(|f| async move { f.call("node3", "hello", "/").await })
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let out = k.ok(&["get", "pod", "-o", "wide"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("hello-"))
        .unwrap_or_else(|| panic!("no hello pod:\n{out}"));
    assert!(line.contains(" node3 "), "{out}");
    let pod = line.split_whitespace().next().expect("name").to_owned();
    k.ok(&["logs", &pod]);
    let out = k.ok(&["get", "seika", "hello-00001"]);
    assert!(out.contains("0-0-1/0-0-1"), "{out}");

    let out = k.ok(&["delete", "-f", &manifest]);
    assert!(
        out.contains("service.serving.knative.dev \"hello\" deleted"),
        "{out}"
    );
    let o = k.run(&["get", "ksvc,rev,rt,seika"]);
    assert!(
        o.ok && !o.stdout.contains("/hello"),
        "{}{}",
        o.stdout,
        o.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_describes_a_ksvcs_spec() {
    let (s, k, _files) = shared_or_skip!();
    if s.minor < 27 {
        eprintln!(
            "kubectl 1.{} explains with OpenAPI v2 as protobuf only: not checked",
            s.minor
        );
        return;
    }
    let explain = k.ok(&["explain", "ksvc.spec"]);
    assert!(
        explain.contains("template") && explain.contains("traffic"),
        "{explain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_jsonpath_json_and_yaml() {
    let (_s, k, files) = shared_or_skip!();
    apply_kept_hello(&k, files.path(), "formats");
    let out = k.ok(&["get", "ksvc", "formats", "-o", "jsonpath={.status.url}"]);
    assert_eq!(out, "http://formats.default.svc.cluster.local");
    let out = k.ok(&["get", "ksvc", "formats", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["metadata"]["generation"],
        v["status"]["observedGeneration"]
    );
    assert!(v["metadata"]["uid"].is_string() && v["metadata"]["resourceVersion"].is_string());
    let out = k.ok(&["get", "rev", "formats-00001", "-o", "yaml"]);
    assert!(out.contains("kind: Revision"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_filters_by_label_and_field_selectors() {
    let (_s, k, files) = shared_or_skip!();
    apply_kept_hello(&k, files.path(), "selected");
    let out = k.ok(&["get", "pods", "-l", "serving.knative.dev/service=selected"]);
    assert!(out.contains("selected-"), "{out}");
    let out = k.ok(&["get", "pods", "-l", "serving.knative.dev/service=nothing"]);
    assert!(!out.contains("selected-"), "{out}");
    let out = k.ok(&["get", "ksvc", "--field-selector", "metadata.name=selected"]);
    assert!(out.contains("selected"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_all_namespaces_names_each_services_namespace() {
    let (_s, k, files) = shared_or_skip!();
    // A service of its own, so that the list is not empty whichever test runs first.
    let listed = write(files.path(), "listed.yaml", &hello("listed", &[], ""));
    k.apply(&["-f", &listed]);
    let out = k.ok(&["get", "ksvc", "-A"]);
    assert!(
        out.starts_with("NAMESPACE") && out.contains("default"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_in_an_empty_namespace_says_no_resources_found() {
    let (_s, k, _files) = shared_or_skip!();
    let o = k.run(&["get", "ksvc", "-n", "elsewhere"]);
    assert!(
        o.ok && o
            .stderr
            .contains("No resources found in elsewhere namespace"),
        "{}",
        o.stderr
    );
}

/// Namespaces: created (kubectl sends protobuf for it), used, deleted with what they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_deletes_a_namespace_with_what_it_holds() {
    let (_s, k, files) = shared_or_skip!();
    let out = k.ok(&["create", "namespace", "edge-apps"]);
    assert!(out.contains("namespace/edge-apps created"), "{out}");
    let elsewhere = write(
        files.path(),
        "elsewhere.yaml",
        &hello("away", &[], "").replace("  name: away\n", "  name: away\n  namespace: edge-apps\n"),
    );
    k.apply(&["-f", &elsewhere]);
    assert!(k.ok(&["get", "ksvc", "-n", "edge-apps"]).contains("away"));
    assert!(k.ok(&["get", "ns"]).contains("edge-apps"));
    k.ok(&["delete", "namespace", "edge-apps"]);
    let o = k.run(&["get", "ksvc,rev", "-n", "edge-apps"]);
    assert!(o.ok && !o.stdout.contains("away"), "{}", o.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_of_the_default_namespace_is_forbidden() {
    let (_s, k, _files) = shared_or_skip!();
    let o = k.run(&["delete", "namespace", "default"]);
    assert!(!o.ok && o.stderr.contains("Forbidden"), "{}", o.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_nodes_shows_the_three_ready_nodes() {
    let (_s, k, _files) = shared_or_skip!();
    let out = k.ok(&["get", "nodes"]);
    assert_eq!(
        out.lines().filter(|l| l.contains(" Ready ")).count(),
        3,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_of_an_invalid_manifest_names_the_field_and_creates_nothing() {
    let (_s, k, files) = shared_or_skip!();
    let bad = write(
        files.path(),
        "bad.yaml",
        &hello("bad", &[], "      containerConcurrency: -1\n"),
    );
    let o = k.run(&["apply", "-f", &bad]);
    assert!(!o.ok, "an invalid manifest was accepted");
    assert!(
        o.stderr.contains("spec.template.spec.containerConcurrency"),
        "{}",
        o.stderr
    );
    assert!(!k.run(&["get", "ksvc", "bad"]).ok);
}

/// Sets the service's containerConcurrency to 7 with `kubectl edit` (an update with the
/// resourceVersion); kubectl before 1.27 edits only with OpenAPI v2 as protobuf, so there a
/// replace does the same.
fn edit_container_concurrency(k: &Kubectl, dir: &Path, name: &str) -> std::process::Output {
    if k.minor >= 27 {
        k.cmd(&k.kubeconfig, &["edit", "ksvc", name])
            .env(
                "KUBE_EDITOR",
                "sed -i s/containerConcurrency:.*/containerConcurrency:\\ 7/",
            )
            .output()
            .expect("kubectl edit")
    } else {
        eprintln!(
            "kubectl 1.{} cannot edit without protobuf OpenAPI v2: replacing instead",
            k.minor
        );
        let current = k.ok(&["get", "ksvc", name, "-o", "yaml"]);
        let changed = current.replace("containerConcurrency: 0", "containerConcurrency: 7");
        let changed = write(dir, "changed.yaml", &changed);
        k.cmd(&k.kubeconfig, &["replace", "-f", &changed])
            .output()
            .expect("kubectl replace")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_edit_changes_a_service_and_its_generation() {
    let (_s, k, files) = shared_or_skip!();
    let edited = write(files.path(), "edited.yaml", &hello("edited", &[], ""));
    k.apply(&["-f", &edited]);
    let o = edit_container_concurrency(&k, files.path(), "edited");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = k.ok(&[
        "get",
        "ksvc",
        "edited",
        "-o",
        "jsonpath={.spec.template.spec.containerConcurrency} {.metadata.generation}",
    ]);
    assert_eq!(out, "7 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_replace_of_a_stale_resource_version_conflicts() {
    let (_s, k, files) = shared_or_skip!();
    let file = write(files.path(), "staled.yaml", &hello("staled", &[], ""));
    k.apply(&["-f", &file]);
    let stale = k.ok(&["get", "ksvc", "staled", "-o", "yaml"]);
    let stale_file = write(files.path(), "stale.yaml", &stale);
    let o = edit_container_concurrency(&k, files.path(), "staled");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = k.run(&["replace", "-f", &stale_file]);
    assert!(!o.ok && o.stderr.contains("Conflict"), "{}", o.stderr);
}

/// Server-side apply, twice: the second changes nothing and the service comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_twice_gives_a_ready_service() {
    let (_s, k, files) = shared_or_skip!();
    let ssa = write(
        files.path(),
        "ssa.yaml",
        &hello("ssa", &[("autoscaling.knative.dev/min-scale", "1")], ""),
    );
    let out = k.apply(&["--server-side", "-f", &ssa]);
    assert!(out.contains("serverside-applied"), "{out}");
    k.apply(&["--server-side", "-f", &ssa]);
    k.ok(&["wait", "--for=condition=Ready", "ksvc/ssa", "--timeout=60s"]);
}

/// Delete by name: the service's revisions, route, placement and instances go with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_of_a_service_removes_what_it_owned() {
    let (_s, k, files) = shared_or_skip!();
    apply_kept_hello(&k, files.path(), "doomed");
    let out = k.ok(&["delete", "ksvc", "doomed"]);
    assert!(out.contains("deleted"), "{out}");
    let o = k.run(&["get", "rev,rt,seika"]);
    assert!(!o.stdout.contains("/doomed"), "{}", o.stdout);
    common::wait_for(
        Duration::from_secs(30),
        "the doomed instance to go",
        || async { (!k.ok(&["get", "pods"]).contains("doomed-")).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_pods_watch_sees_a_new_instance_appear() {
    let (_s, k, files) = shared_or_skip!();
    let mut watch = k
        .cmd(&k.kubeconfig, &["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let watched = write(
        files.path(),
        "watched.yaml",
        &hello("watched", &[("autoscaling.knative.dev/min-scale", "1")], ""),
    );
    k.apply(&["-f", &watched]);
    let mut seen = String::new();
    {
        use std::io::Read;
        let mut stdout = watch.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut text = String::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && !text.contains("watched-") {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            text
        });
        k.ok(&[
            "wait",
            "--for=condition=Ready",
            "ksvc/watched",
            "--timeout=60s",
        ]);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(watch.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = watch.wait();
        seen.push_str(&reader.join().expect("reader"));
    }
    assert!(
        seen.contains("watched-") && seen.contains("STATUS"),
        "{seen}"
    );
}

/// logs -f follows an instance's output as it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_follow_streams_an_instances_output() {
    let (_s, k, files) = shared_or_skip!();
    let ticker = write(
        files.path(),
        "ticker.yaml",
        &format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: ticker\nspec:\n  template:\n    metadata:\n      annotations:\n        autoscaling.knative.dev/min-scale: \"1\"\n    spec:\n      containers:\n        - image: kantai/hello-ticker\n          command: [\"/bin/sh\", \"-c\", \"(i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo tick $i; sleep 0.1; done) & exec {} fn hello\"]\n",
            common::kantai_bin()
        ),
    );
    k.apply(&["-f", &ticker]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "ksvc/ticker",
        "--timeout=60s",
    ]);
    let pod = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "serving.knative.dev/service=ticker",
            "-o",
            "name",
        ])
        .trim()
        .to_owned();
    let before = k.ok(&["logs", &pod]).lines().count();
    let mut follow = k
        .cmd(&k.kubeconfig, &["logs", "-f", &pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let mut stdout = follow.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let (mut buf, mut text) = ([0u8; 4096], String::new());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && text.lines().count() < before + 10 {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        text
    });
    let followed = reader.join().expect("reader");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(follow.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = follow.wait();
    assert!(
        followed.lines().count() >= before + 10 && followed.contains("tick"),
        "only {} lines followed after {before}:\n{followed}",
        followed.lines().count()
    );
    k.ok(&["delete", "ksvc", "ticker"]);
}

// --- Secrets and ConfigMaps, one behaviour per test, on the shared fleet, each on names of its own ---

/// A value no test writes anywhere else, so finding it means it leaked.
const PASSWORD: &str = "kubectl-pa55word-7e1d";

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `kubectl create secret generic NAME` with a literal and a file (in a directory of its own,
/// outside the fleet's state).
fn create_db_secret(k: &Kubectl, files: &Path, name: &str) {
    let cert = write(files, "cert.pem", "-----BEGIN CERT-----\nabc\n");
    let out = k.ok(&[
        "create",
        "secret",
        "generic",
        name,
        &format!("--from-literal=password={PASSWORD}"),
        &format!("--from-file=cert={cert}"),
    ]);
    assert!(out.contains(&format!("secret/{name} created")), "{out}");
}

/// `kubectl create configmap NAME` with a literal and a file.
fn create_app_config_map(k: &Kubectl, files: &Path, name: &str) {
    let conf = write(files, "app.conf", "listen 8080\n");
    let out = k.ok(&[
        "create",
        "configmap",
        name,
        "--from-literal=mode=fast",
        &format!("--from-file={conf}"),
    ]);
    assert!(out.contains(&format!("configmap/{name} created")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_secret_stores_base64_data_and_no_string_data() {
    let (_, k, files) = shared_or_skip!();
    create_db_secret(&k, files.path(), "db-stored");
    let yaml = k.ok(&["get", "secret", "db-stored", "-o", "yaml"]);
    assert!(
        yaml.contains(&format!("password: {}", b64(PASSWORD))),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("cert: {}", b64("-----BEGIN CERT-----\nabc\n"))),
        "{yaml}"
    );
    assert!(
        yaml.contains("type: Opaque") && !yaml.contains("stringData"),
        "{yaml}"
    );
    assert!(!yaml.contains(PASSWORD), "{yaml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_configmap_stores_literals_and_files() {
    let (_, k, files) = shared_or_skip!();
    create_app_config_map(&k, files.path(), "app-stored");
    let out = k.ok(&[
        "get",
        "cm",
        "app-stored",
        "-o",
        "jsonpath={.data.mode}|{.data.app\\.conf}",
    ]);
    assert_eq!(out, "fast|listen 8080\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_secrets_and_configmaps_prints_kubectls_tables() {
    let (_, k, files) = shared_or_skip!();
    create_db_secret(&k, files.path(), "db-tables");
    create_app_config_map(&k, files.path(), "app-tables");
    let out = k.ok(&["get", "secrets,cm"]);
    let cols = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let lines: Vec<Vec<String>> = out.lines().map(cols).collect();
    assert!(lines.contains(&cols("NAME TYPE DATA AGE")), "{out}");
    assert!(lines.contains(&cols("NAME DATA AGE")), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&cols("secret/db-tables Opaque 2"))),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&cols("configmap/app-tables 2"))),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_secret_shows_sizes_never_values() {
    let (_, k, files) = shared_or_skip!();
    create_db_secret(&k, files.path(), "db-described");
    let out = k.ok(&["describe", "secret", "db-described"]);
    let password = out
        .lines()
        .find(|l| l.starts_with("password:"))
        .unwrap_or_else(|| panic!("no password line:\n{out}"));
    assert_eq!(
        password.split_whitespace().collect::<Vec<_>>(),
        ["password:", &PASSWORD.len().to_string(), "bytes"],
        "{out}"
    );
    assert!(
        !out.contains(PASSWORD) && !out.contains(&b64(PASSWORD)),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_configmap_shows_its_data() {
    let (_, k, files) = shared_or_skip!();
    create_app_config_map(&k, files.path(), "app-described");
    let out = k.ok(&["describe", "configmap", "app-described"]);
    assert!(out.contains("mode:\n----\nfast"), "{out}");
    assert!(out.contains("app.conf:\n----\nlisten 8080"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_edit_changes_a_configmaps_value() {
    let (_, k, files) = shared_or_skip!();
    create_app_config_map(&k, files.path(), "app-edited");
    let o = k
        .cmd(&k.kubeconfig, &["edit", "configmap", "app-edited"])
        .env("KUBE_EDITOR", "sed -i s/fast/slow/")
        .output()
        .expect("kubectl edit");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = k.ok(&["get", "cm", "app-edited", "-o", "jsonpath={.data.mode}"]);
    assert_eq!(out, "slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_edit_of_an_immutable_configmap_is_refused() {
    let (_, k, files) = shared_or_skip!();
    let frozen = write(
        files.path(),
        "frozen.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\ndata:\n  mode: fast\nimmutable: true\n",
    );
    k.ok(&["create", "-f", &frozen]);
    // kubectl keeps the refused edit in a file under TMPDIR, the server's reasons in its
    // header, as it does against Kubernetes.
    let o = k
        .cmd(&k.kubeconfig, &["edit", "configmap", "frozen"])
        .env("KUBE_EDITOR", "sed -i s/fast/slow/")
        .env("TMPDIR", files.path())
        .output()
        .expect("kubectl edit");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the edit was accepted: {stderr}");
    assert!(
        stderr.contains("configmaps \"frozen\" is invalid"),
        "{stderr}"
    );
    let kept = stderr
        .split('"')
        .find(|p| p.contains("kubectl-edit-"))
        .unwrap_or_else(|| panic!("no copy of the edit named: {stderr}"));
    let kept = std::fs::read_to_string(kept).expect("the kept edit");
    assert!(
        kept.contains("* data: ") && kept.contains("field is immutable when `immutable` is set"),
        "{kept}"
    );
    let out = k.ok(&["get", "cm", "frozen", "-o", "jsonpath={.data.mode}"]);
    assert_eq!(out, "fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_secret_over_1_mib_is_refused() {
    let (_, k, files) = shared_or_skip!();
    let big = files.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 2 * 1024 * 1024]).expect("big file");
    let o = k.run(&[
        "create",
        "secret",
        "generic",
        "big",
        &format!("--from-file=blob={}", big.display()),
    ]);
    assert!(!o.ok, "a 2 MiB secret was accepted");
    assert!(
        o.stderr
            .contains("Too long: must have at most 1048576 bytes"),
        "{}",
        o.stderr
    );
    assert!(
        !k.run(&["get", "secret", "big"]).ok,
        "the secret was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_removes_a_secret_and_a_configmap() {
    let (_, k, files) = shared_or_skip!();
    create_db_secret(&k, files.path(), "db-deleted");
    create_app_config_map(&k, files.path(), "app-deleted");
    let out = k.ok(&["delete", "secret/db-deleted", "configmap/app-deleted"]);
    assert!(
        out.contains("secret \"db-deleted\" deleted")
            && out.contains("configmap \"app-deleted\" deleted"),
        "{out}"
    );
    let o = k.run(&["get", "secret", "db-deleted"]);
    assert!(
        !o.ok && o.stderr.contains("secrets \"db-deleted\" not found"),
        "{}",
        o.stderr
    );
}

/// Every file under the fleet's state directory (the control plane's store among them) after
/// `kubectl create secret`: none holds the value, nor its base64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_files_hold_no_plaintext_after_kubectl_create_secret() {
    let (s, k, files) = shared_or_skip!();
    create_db_secret(&k, files.path(), "db-at-rest");
    // Read back through the API: the store has it (and so wrote it) before the files are read.
    assert!(
        k.ok(&["get", "secret", "db-at-rest", "-o", "name"])
            .contains("secret/db-at-rest")
    );
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&p, out),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    let mut all = Vec::new();
    let state = s.fleet.fleet.state.path();
    walk(state, &mut all);
    assert!(
        all.iter().any(|p| p.ends_with("store.redb")),
        "no store.redb under {}: {all:?}",
        state.display()
    );
    let needles = [PASSWORD.to_owned(), b64(PASSWORD)];
    for p in &all {
        let Ok(bytes) = std::fs::read(p) else {
            continue;
        };
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{} holds the secret's value ({n})",
                p.display()
            );
        }
    }
}
