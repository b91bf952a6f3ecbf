//! Images not mapped to a local command run as real OCI containers: each test starts a
//! `docker-registry` on loopback, builds a busybox httpd image with umoci, pushes it with
//! skopeo, and deploys it to a one-node fleet with kubectl; the node pulls it and runs it with
//! runc. Checked through the real tools: the gateway's answers, the container's environment,
//! its cgroup limits, security context, probes, logs, scale to zero, digest pinning, a
//! missing image, Secrets and ConfigMaps in its env and files, and that nothing (container,
//! mount, cgroup) is left behind, even after the node agent is SIGKILLed.
//!
//! Needs root, runc, docker-registry, skopeo, umoci, kubectl and a static busybox; without them
//! each test prints `SKIPPED: …` and passes — unless `KANTAI_REQUIRE_CONTAINERS=1` (as CI sets,
//! after installing them) makes that a failure naming what is missing.
//!
//! Every node has a name of its own, so the cgroups (`/sys/fs/cgroup/*/kantai/<node>`) of
//! tests running side by side never mix.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestFleet, TestNode, pids_with_env};
use kantai_api::resources::{INSTANCES, REVISIONS, SERVICES};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Requirements

/// What this machine lacks to run containers: root and the tools, by name.
fn missing_requirements() -> Vec<String> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (containers are run by runc as root)".to_owned());
    }
    for (tool, package) in [
        ("runc", "runc"),
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("umoci", "umoci"),
        ("kubectl", "kubernetes-client"),
        ("chroot", "coreutils"),
    ] {
        if which(tool).is_none() {
            missing.push(format!("{tool} (Debian: {package})"));
        }
    }
    if !busybox_is_static() {
        missing.push("a static /bin/busybox (Debian: busybox-static)".to_owned());
    }
    missing
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

/// A busybox that runs inside an empty root: statically linked (no `PT_INTERP` header).
fn busybox_is_static() -> bool {
    let Ok(b) = std::fs::read("/bin/busybox") else {
        return false;
    };
    !b.windows(b"/lib64/ld-linux".len())
        .any(|w| w == b"/lib64/ld-linux")
}

/// Whether the test can run; false (after saying so) when it should be skipped.
fn can_run(test: &str) -> bool {
    let missing = missing_requirements();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("KANTAI_REQUIRE_CONTAINERS").is_none(),
        "{test}: containers are required here (KANTAI_REQUIRE_CONTAINERS is set) but this machine lacks: {}",
        missing.join(", ")
    );
    eprintln!(
        "SKIPPED: {test}: containers cannot run here, missing: {}",
        missing.join(", ")
    );
    false
}

// ---------------------------------------------------------------------------------------
// A registry on loopback, and images in it

/// `docker-registry serve` on a free loopback port, killed (by pid) on drop, its storage
/// in a temp dir.
struct Registry {
    child: Child,
    port: u16,
    /// Held for its drop: the registry's storage.
    _storage: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET path` on a loopback port, if it answered.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let port = common::free_port();
            let cfg = dir.path().join("config.yml");
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                    dir.path().join("reg").display()
                ),
            )
            .expect("registry config");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry");
            // Until it answers, or dies (the port was taken meanwhile: try another).
            let answers = common::wait_blocking(
                deadline.saturating_duration_since(Instant::now()),
                &format!("docker-registry to answer on 127.0.0.1:{port}"),
                || {
                    if http_status(port, "/v2/") == Some(200) {
                        return Some(true);
                    }
                    matches!(child.try_wait(), Ok(Some(_))).then_some(false)
                },
            );
            if answers {
                return Registry {
                    child,
                    port,
                    _storage: dir,
                };
            }
            assert!(Instant::now() < deadline, "docker-registry did not start");
        }
    }
}

/// The page `GET /` answers in the first image.
const HELLO_PAGE: &str = "hello from a container";

/// The image's command: httpd in the background so that the shell, as PID 1, exits on
/// SIGTERM (a stop is then quick), and the liveness probe's file made at each start.
const IMAGE_CMD: &str =
    "trap 'exit 0' TERM; touch /tmp/healthy 2>/dev/null; httpd -f -vv -p $PORT -h /www & wait";

/// The CGIs in the image's `/www/cgi-bin`.
const CGIS: &[(&str, &str)] = &[
    ("env", "env"),
    ("id", "id"),
    ("write", "touch /written 2>&1 && echo wrote || echo refused"),
    ("sick", "rm -f /tmp/healthy && echo removed"),
    // The files mounted from a Secret and a ConfigMap (test 14).
    (
        "files",
        "cat /etc/db/password; echo; cat /etc/app/mode; echo; cat /etc/app-mode-only",
    ),
];

/// A registry with a busybox httpd image in an OCI layout, pushed as `fn/app:v1` (root)
/// and `fn/app:nonroot` (user 33, www in its /etc/passwd).
struct Lab {
    registry: Registry,
    work: tempfile::TempDir,
}

fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new() -> Lab {
        let registry = Registry::start();
        let lab = Lab {
            registry,
            work: tempfile::tempdir().expect("tempdir"),
        };
        lab.build();
        lab.push("app", "v1");
        lab.push("nonroot", "nonroot");
        lab
    }

    fn layout(&self) -> String {
        self.work.path().join("oci").display().to_string()
    }

    /// `127.0.0.1:PORT/fn/app:TAG`.
    fn image(&self, tag: &str) -> String {
        format!("127.0.0.1:{}/fn/app:{tag}", self.registry.port)
    }

    fn registry(&self) -> String {
        format!("127.0.0.1:{}", self.registry.port)
    }

    fn build(&self) {
        let layout = self.layout();
        let bundle = self.work.path().join("bundle");
        run(Command::new("umoci").args(["init", "--layout", &layout]));
        run(Command::new("umoci").args(["new", "--image", &format!("{layout}:app")]));
        run(Command::new("umoci")
            .args(["unpack", "--image", &format!("{layout}:app")])
            .arg(&bundle));
        let root = bundle.join("rootfs");
        for d in ["bin", "www/cgi-bin", "etc", "tmp"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        set_mode(&root.join("tmp"), 0o1777);
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
        run(Command::new("chroot")
            .arg(&root)
            .args(["/bin/busybox", "--install", "-s", "/bin"]));
        for (name, body) in CGIS {
            let p = root.join("www/cgi-bin").join(name);
            std::fs::write(
                &p,
                format!("#!/bin/sh\necho 'Content-Type: text/plain'\necho\n{body}\n"),
            )
            .expect("cgi");
            set_mode(&p, 0o755);
        }
        std::fs::write(root.join("www/index.html"), format!("{HELLO_PAGE}\n")).expect("page");
        std::fs::write(root.join("www/ready.html"), "ready\n").expect("page");
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(root.join("etc/group"), "root:x:0:\nwww:x:33:\n").expect("group");
        run(Command::new("umoci")
            .args(["repack", "--image", &format!("{layout}:app")])
            .arg(&bundle));
        run(Command::new("umoci").args([
            "config",
            "--image",
            &format!("{layout}:app"),
            "--config.cmd",
            "/bin/sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            IMAGE_CMD,
            "--config.env",
            "GREETING=image",
        ]));
        run(Command::new("umoci").args([
            "config",
            "--image",
            &format!("{layout}:app"),
            "--tag",
            "nonroot",
            // Numeric: with runAsNonRoot, a user name cannot be verified (as in Kubernetes).
            "--config.user",
            "33:33",
        ]));
        let _ = std::fs::remove_dir_all(&bundle);
    }

    /// Pushes the layout's `from` tag as `fn/app:tag`.
    fn push(&self, from: &str, tag: &str) {
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{from}", self.layout()),
            &format!("docker://{}", self.image(tag)),
        ]));
    }

    /// Changes the page of the layout's `app` image (a new layer) and pushes it over `fn/app:tag`.
    fn move_tag(&self, tag: &str, page: &str) {
        let layout = self.layout();
        let bundle = self.work.path().join("bundle2");
        run(Command::new("umoci")
            .args(["unpack", "--image", &format!("{layout}:app")])
            .arg(&bundle));
        std::fs::write(bundle.join("rootfs/www/index.html"), format!("{page}\n")).expect("page");
        run(Command::new("umoci")
            .args(["repack", "--image", &format!("{layout}:app")])
            .arg(&bundle));
        let _ = std::fs::remove_dir_all(&bundle);
        self.push("app", tag);
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

// ---------------------------------------------------------------------------------------
// Fleets, manifests, kubectl

/// The fleet config: the lab's registry over plain HTTP, a short grace before scaling to
/// zero, and a pids limit to find in the cgroup.
fn fleet_config(lab: &Lab) -> String {
    format!(
        "runtime:\n  oci:\n    insecure-registries: [\"{}\"]\n    pids-limit: {PIDS_LIMIT}\nautoscaler:\n  scale-to-zero-grace-period: 2s\n",
        lab.registry()
    )
}

const PIDS_LIMIT: u32 = 321;

fn one_node_topology(node: &str) -> String {
    format!(
        "nodes:\n  - {{name: {node}, address: 127.0.0.1, gateway: \"127.0.0.1:0\", capacity: {{instances: 30}}}}\nlinks:\n  pairs: []\ncontrol: {{node: {node}, listen: \"127.0.0.1:0\"}}\n"
    )
}

async fn fleet(lab: &Lab, node: &'static str) -> TestFleet {
    TestFleet::start(
        &[TestNode {
            name: node,
            rtt_to_first_ms: 0,
        }],
        &fleet_config(lab),
    )
    .await
}

/// A Knative Service running `image`, with template annotations and more lines for the
/// container (indented as its fields, 10 spaces).
fn service(name: &str, image: &str, annotations: &[(&str, &str)], container: &str) -> String {
    let mut anns = String::from("        kantai.dev/test: \"containers\"\n");
    for (k, v) in annotations {
        anns.push_str(&format!("        {k}: \"{v}\"\n"));
    }
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  template:\n    metadata:\n      annotations:\n{anns}    spec:\n      containers:\n        - image: {image}\n          env:\n            - name: TARGET\n              value: \"from the service\"\n{container}"
    )
}

/// One instance for as long as the test runs.
const KEEP_ONE: &[(&str, &str)] = &[("autoscaling.knative.dev/min-scale", "1")];

/// kubectl pointed at a fleet, with a home of its own (kubectl caches discovery there).
struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(f: &TestFleet) -> Kubectl {
        Kubectl {
            kubeconfig: f.kubeconfig.clone(),
            home: tempfile::tempdir().expect("home"),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f` of a manifest text.
    fn apply(&self, yaml: &str) -> String {
        let file = self.home.path().join("manifest.yaml");
        std::fs::write(&file, yaml).expect("manifest");
        self.run(&["apply", "-f", &file.display().to_string()])
    }
}

/// Applies a manifest with kubectl and waits for the Service to be Ready.
async fn apply_ready(f: &TestFleet, k: &Kubectl, yaml: &str, name: &str) -> Value {
    k.apply(yaml);
    wait_ready(f, name).await
}

/// Waits (60 s at most) for the Service to be Ready at its latest generation; on a timeout
/// the failure shows the Service's and its instances' status.
async fn wait_ready(f: &TestFleet, name: &str) -> Value {
    let ready = common::wait_for(
        Duration::MAX,
        "(bounded by the timeout around it)",
        || async {
            let v = f.client.get(SERVICES, "default", name).await.ok()?;
            let ready = condition(&v, "Ready").is_some_and(|c| c["status"] == "True");
            (ready && v["status"]["observedGeneration"] == v["metadata"]["generation"]).then_some(v)
        },
    );
    match tokio::time::timeout(Duration::from_secs(60), ready).await {
        Ok(v) => v,
        Err(_) => {
            let svc = f.client.get(SERVICES, "default", name).await.ok();
            let instances: Vec<Value> = f
                .instances()
                .await
                .into_iter()
                .filter(|i| {
                    i["metadata"]["labels"]["serving.knative.dev/service"] == name
                        || i["spec"]["revision"]
                            .as_str()
                            .is_some_and(|r| r.starts_with(name))
                })
                .map(|i| i["status"].clone())
                .collect();
            panic!(
                "{name} was not Ready within 60 s; its status: {}; its instances: {instances:?}",
                svc.map(|v| v["status"].clone()).unwrap_or_default()
            );
        }
    }
}

/// The revision's instances.
async fn instances_of(f: &TestFleet, revision: &str) -> Vec<Value> {
    f.instances()
        .await
        .into_iter()
        .filter(|i| i["spec"]["revision"] == revision)
        .collect()
}

/// The name of the revision's one ready instance, once there is one.
async fn ready_instance(f: &TestFleet, revision: &str) -> String {
    common::wait_for(
        Duration::from_secs(30),
        &format!("a ready instance of {revision}"),
        || async {
            instances_of(f, revision)
                .await
                .iter()
                .find(|i| i["status"]["ready"] == true)
                .and_then(|i| i["metadata"]["name"].as_str().map(str::to_owned))
        },
    )
    .await
}

/// A GET through the node's gateway that must answer 200: the body.
async fn get_ok(f: &TestFleet, node: &str, service: &str, path: &str) -> String {
    let a = f.call(node, service, path).await;
    assert_eq!(a.status, 200, "GET {path} of {service}: {}", a.body);
    a.body
}

fn node_dir(f: &TestFleet, node: &str) -> PathBuf {
    f.state.path().join("data/nodes").join(node)
}

/// The containers in a node's runc root.
/// The containers in a node's runc root with their status (`created`, `running`, ...).
fn runc_states(root: &Path) -> Vec<(String, String)> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "--format", "json"])
        .stdin(Stdio::null())
        .output()
        .expect("runc list");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["id"].as_str()?.to_owned(),
                c["status"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn runc_list(root: &Path) -> Vec<String> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .stdin(Stdio::null())
        .output()
        .expect("runc list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Mount points (from `/proc/self/mountinfo`) under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// The cgroup directories kantai made for `node`'s instances, in every hierarchy.
fn cgroups_of_node(node: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = h.path().join("kantai").join(node);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Stops `kantai up` with SIGTERM and waits for it, keeping its state directory (a plain
/// `stop` removes it, and with it what we want to look at).
fn stop_keeping_state(mut f: TestFleet) -> tempfile::TempDir {
    let state = std::mem::replace(&mut f.state, tempfile::tempdir().expect("tempdir"));
    let pid = nix::unistd::Pid::from_raw(f.up.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    common::wait_blocking(
        Duration::from_secs(30),
        "kantai up to stop on SIGTERM",
        || matches!(f.up.try_wait(), Ok(Some(_))).then_some(()),
    );
    state
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

// ---------------------------------------------------------------------------------------
// The tests

/// 1. A Knative Service naming a registry image, applied with kubectl, becomes Ready and
///    answers through the gateway; its revision records the digest the tag resolved to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_image_applied_with_kubectl_becomes_ready_and_answers() {
    if !can_run("a_registry_image_applied_with_kubectl_becomes_ready_and_answers") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-ready").await;
    let k = Kubectl::new(&f);
    let svc = apply_ready(&f, &k, &service("web", &lab.image("v1"), &[], ""), "web").await;
    assert_eq!(svc["status"]["latestReadyRevisionName"], "web-00001");
    let body = get_ok(&f, "ctr-ready", "web", "/").await;
    assert_eq!(body.trim_end(), HELLO_PAGE);

    let rev = f
        .client
        .get(REVISIONS, "default", "web-00001")
        .await
        .expect("revision");
    let digest = rev["status"]["containerStatuses"][0]["imageDigest"]
        .as_str()
        .unwrap_or_default();
    assert!(
        digest.starts_with(&format!("{}/fn/app@sha256:", lab.registry())),
        "imageDigest: {digest:?}"
    );
    // The instance runs that very digest, and it is a container in the node's runc root.
    let inst = ready_instance(&f, "web-00001").await;
    let i = f
        .client
        .get(INSTANCES, "default", &inst)
        .await
        .expect("instance");
    assert_eq!(i["status"]["imageDigest"].as_str(), Some(digest));
    let ids = runc_list(&node_dir(&f, "ctr-ready").join("runc"));
    assert!(
        ids.contains(&format!("default.{inst}")),
        "runc list: {ids:?}"
    );
    // kubectl sees it as a pod of the service with the image's digest.
    let pods = k.run(&["get", "pods", "-o", "json"]);
    let pods: Value = serde_json::from_str(&pods).expect("pods json");
    let pod = pods["items"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["metadata"]["name"] == inst.as_str()))
        .unwrap_or_else(|| panic!("no pod {inst} in {pods}"));
    assert_eq!(
        pod["status"]["containerStatuses"][0]["imageID"].as_str(),
        Some(digest)
    );
    f.stop();
}

/// 2. The container's environment holds Knative's variables, the container's own env and
///    the image's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_sees_knatives_its_own_and_the_images_environment() {
    if !can_run("the_container_sees_knatives_its_own_and_the_images_environment") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-env").await;
    let k = Kubectl::new(&f);
    apply_ready(
        &f,
        &k,
        &service("envy", &lab.image("v1"), KEEP_ONE, ""),
        "envy",
    )
    .await;
    let inst = ready_instance(&f, "envy-00001").await;
    let body = get_ok(&f, "ctr-env", "envy", "/cgi-bin/env").await;
    let env: Vec<&str> = body.lines().collect();
    for want in [
        "K_SERVICE=envy".to_owned(),
        "K_REVISION=envy-00001".to_owned(),
        "K_CONFIGURATION=envy".to_owned(),
        "TARGET=from the service".to_owned(),
        "GREETING=image".to_owned(),
        format!("HOSTNAME={inst}"),
    ] {
        assert!(
            env.contains(&want.as_str()),
            "{want} not in the env:\n{body}"
        );
    }
    let port = env
        .iter()
        .find_map(|l| l.strip_prefix("PORT="))
        .unwrap_or_else(|| panic!("no PORT in the env:\n{body}"));
    let i = f
        .client
        .get(INSTANCES, "default", &inst)
        .await
        .expect("instance");
    assert_eq!(
        i["status"]["address"].as_str(),
        Some(format!("127.0.0.1:{port}").as_str()),
        "the instance listens on the PORT it was given"
    );
    f.stop();
}

/// 3. `resources.limits` and the fleet's pids limit land in the instance's cgroups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_limits_are_in_the_instances_cgroups() {
    if !can_run("resource_limits_are_in_the_instances_cgroups") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-limits").await;
    let k = Kubectl::new(&f);
    let limits = "          resources:\n            limits:\n              memory: 64Mi\n              cpu: 500m\n";
    apply_ready(
        &f,
        &k,
        &service("capped", &lab.image("v1"), KEEP_ONE, limits),
        "capped",
    )
    .await;
    let inst = ready_instance(&f, "capped-00001").await;
    let group = |ctl: &str| {
        PathBuf::from("/sys/fs/cgroup")
            .join(ctl)
            .join("kantai/ctr-limits")
            .join(format!("default.{inst}"))
    };
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_owned()
    };
    assert_eq!(
        read(group("memory").join("memory.limit_in_bytes")),
        "67108864"
    );
    let quota: i64 = read(group("cpu").join("cpu.cfs_quota_us"))
        .parse()
        .expect("quota");
    let period: i64 = read(group("cpu").join("cpu.cfs_period_us"))
        .parse()
        .expect("period");
    assert_eq!(
        quota * 1000 / period,
        500,
        "quota {quota} / period {period}"
    );
    assert_eq!(
        read(group("pids").join("ctr/pids.max")),
        PIDS_LIMIT.to_string()
    );
    // The container's processes are in that group.
    let procs = read(group("memory").join("ctr/cgroup.procs"));
    let httpd = pids_with_env("K_SERVICE=capped");
    assert!(
        !httpd.is_empty()
            && httpd
                .iter()
                .all(|p| procs.lines().any(|l| l == p.to_string())),
        "the container's processes {httpd:?} are not all in its cgroup: {procs:?}"
    );
    f.stop();
}

/// 4. `runAsNonRoot` refuses a root image (CreateContainerConfigError, requests answered
///    503 at once with the reason) and runs a non-root one as its user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_non_root_refuses_a_root_image_and_runs_a_non_root_one() {
    if !can_run("run_as_non_root_refuses_a_root_image_and_runs_a_non_root_one") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-nonroot").await;
    let k = Kubectl::new(&f);
    let non_root = "          securityContext:\n            runAsNonRoot: true\n";
    k.apply(&service("rooty", &lab.image("v1"), &[], non_root));
    let (reason, message) = common::wait_for(
        Duration::from_secs(30),
        "the root image's instance to be refused",
        || async {
            instances_of(&f, "rooty-00001").await.iter().find_map(|i| {
                let r = i["status"]["reason"].as_str()?;
                (r != "ContainerCreating").then(|| {
                    (
                        r.to_owned(),
                        i["status"]["message"].as_str().unwrap_or("").to_owned(),
                    )
                })
            })
        },
    )
    .await;
    assert_eq!(reason, "CreateContainerConfigError", "{message}");
    assert!(message.contains("runAsNonRoot"), "{message}");
    assert!(
        pids_with_env("K_SERVICE=rooty").is_empty(),
        "a refused container runs"
    );
    let a = f.call("ctr-nonroot", "rooty", "/").await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(
        a.elapsed < Duration::from_secs(5),
        "the 503 took {:?}",
        a.elapsed
    );
    assert!(
        a.body.contains("cannot start") && a.body.contains("runAsNonRoot"),
        "{}",
        a.body
    );

    apply_ready(
        &f,
        &k,
        &service("polite", &lab.image("nonroot"), &[], non_root),
        "polite",
    )
    .await;
    let id = get_ok(&f, "ctr-nonroot", "polite", "/cgi-bin/id").await;
    assert!(id.contains("uid=33(www)"), "{id}");
    f.stop();
}

/// 5. `readOnlyRootFilesystem` makes the root read-only; without it the root is writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_root_filesystem_refuses_writes_to_the_root() {
    if !can_run("read_only_root_filesystem_refuses_writes_to_the_root") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-readonly").await;
    let k = Kubectl::new(&f);
    let ro = "          securityContext:\n            readOnlyRootFilesystem: true\n";
    apply_ready(
        &f,
        &k,
        &service("frozen", &lab.image("v1"), &[], ro),
        "frozen",
    )
    .await;
    apply_ready(
        &f,
        &k,
        &service("thawed", &lab.image("v1"), &[], ""),
        "thawed",
    )
    .await;
    let frozen = get_ok(&f, "ctr-readonly", "frozen", "/cgi-bin/write").await;
    assert!(
        frozen.contains("Read-only file system") && frozen.contains("refused"),
        "{frozen}"
    );
    let thawed = get_ok(&f, "ctr-readonly", "thawed", "/cgi-bin/write").await;
    assert_eq!(thawed.trim(), "wrote");
    f.stop();
}

/// 6. An httpGet readiness probe is sent to its path in the container, and a failing exec
///    liveness probe restarts the container, which then serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_reach_into_the_container_and_a_failed_liveness_probe_restarts_it() {
    if !can_run("probes_reach_into_the_container_and_a_failed_liveness_probe_restarts_it") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-probes").await;
    let k = Kubectl::new(&f);
    let probes = "          readinessProbe:\n            httpGet:\n              path: /ready.html\n            periodSeconds: 1\n          livenessProbe:\n            exec:\n              command: [cat, /tmp/healthy]\n            periodSeconds: 1\n            failureThreshold: 2\n";
    apply_ready(
        &f,
        &k,
        &service("probed", &lab.image("v1"), KEEP_ONE, probes),
        "probed",
    )
    .await;
    let inst = ready_instance(&f, "probed-00001").await;
    // The readiness probe's requests are in httpd's access log.
    common::wait_for(
        Duration::from_secs(15),
        "the readiness probe's GET /ready.html in the logs",
        || async { logs(&k, &inst).contains("/ready.html").then_some(()) },
    )
    .await;
    let restarts = |i: &Value| i["status"]["restarts"].as_u64().unwrap_or(0);
    let before = f
        .client
        .get(INSTANCES, "default", &inst)
        .await
        .expect("instance");
    assert_eq!(restarts(&before), 0, "{before}");

    assert_eq!(
        get_ok(&f, "ctr-probes", "probed", "/cgi-bin/sick")
            .await
            .trim(),
        "removed"
    );
    common::wait_for(
        Duration::from_secs(30),
        "a restart after the liveness probe failed",
        || async {
            let i = f.client.get(INSTANCES, "default", &inst).await.ok()?;
            (restarts(&i) >= 1 && i["status"]["ready"] == true).then_some(())
        },
    )
    .await;
    assert_eq!(
        get_ok(&f, "ctr-probes", "probed", "/").await.trim_end(),
        HELLO_PAGE
    );
    f.stop();
}

fn logs(k: &Kubectl, pod: &str) -> String {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", k.home.path())
        .args(["logs", pod])
        .stdin(Stdio::null())
        .output()
        .expect("kubectl logs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 7. What the container writes to stderr (httpd -vv's access lines) is in `kubectl logs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_shows_what_the_container_wrote() {
    if !can_run("kubectl_logs_shows_what_the_container_wrote") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-logs").await;
    let k = Kubectl::new(&f);
    apply_ready(
        &f,
        &k,
        &service("chatty", &lab.image("v1"), KEEP_ONE, ""),
        "chatty",
    )
    .await;
    let inst = ready_instance(&f, "chatty-00001").await;
    let a = f.call("ctr-logs", "chatty", "/no-such-page-7f3a").await;
    assert_eq!(a.status, 404, "{}", a.body);
    common::wait_for(
        Duration::from_secs(15),
        "the access line in kubectl logs",
        || async { logs(&k, &inst).contains("/no-such-page-7f3a").then_some(()) },
    )
    .await;
    // The same through kantai's own command.
    let out = f
        .kantai()
        .args(["logs", &inst])
        .stdin(Stdio::null())
        .output()
        .expect("kantai logs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("/no-such-page-7f3a"),
        "kantai logs {inst}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.stop();
}

/// 8. Without traffic the container goes, one is created ahead of demand in its place
///    (`created` in runc, nothing of the function running), and the next request starts
///    that one, which answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_scales_to_zero_and_a_request_cold_starts_another() {
    if !can_run("a_container_scales_to_zero_and_a_request_cold_starts_another") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-zero").await;
    let k = Kubectl::new(&f);
    let brief = [("autoscaling.knative.dev/window", "6s")];
    apply_ready(
        &f,
        &k,
        &service("brief", &lab.image("v1"), &brief, ""),
        "brief",
    )
    .await;
    let first = ready_instance(&f, "brief-00001").await;
    let root = node_dir(&f, "ctr-zero").join("runc");
    assert!(runc_list(&root).contains(&format!("default.{first}")));

    f.wait_zero("brief-00001", Duration::from_secs(60)).await;
    // Its container goes; one is created ahead of the next request, not started.
    let held = common::wait_for(
        Duration::from_secs(15),
        "the running container gone and one created in its place",
        || async {
            let states = runc_states(&root);
            match states.as_slice() {
                [(id, status)] if status == "created" && *id != format!("default.{first}") => {
                    Some(id.clone())
                }
                _ => None,
            }
        },
    )
    .await;
    assert!(
        pids_with_env("K_SERVICE=brief").is_empty(),
        "a process of the function runs at zero"
    );

    let a = f.call("ctr-zero", "brief", "/").await;
    assert_eq!((a.status, a.body.trim_end()), (200, HELLO_PAGE));
    let second = ready_instance(&f, "brief-00001").await;
    assert_ne!(second, first, "a new instance served the cold start");
    assert_eq!(
        format!("default.{second}"),
        held,
        "the container created ahead of demand served it"
    );
    assert!(
        runc_states(&root).contains(&(held.clone(), "running".to_owned())),
        "{:?}",
        runc_states(&root)
    );
    f.stop();
}

/// 9. A revision runs the digest its tag had when it was made: after the tag moves, a new
///    instance of the revision serves the old content, a new revision the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_keeps_its_digest_when_the_tag_moves() {
    if !can_run("a_revision_keeps_its_digest_when_the_tag_moves") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-pinned").await;
    let k = Kubectl::new(&f);
    let brief = [("autoscaling.knative.dev/window", "6s")];
    apply_ready(
        &f,
        &k,
        &service("pinned", &lab.image("v1"), &brief, ""),
        "pinned",
    )
    .await;
    assert_eq!(
        get_ok(&f, "ctr-pinned", "pinned", "/").await.trim_end(),
        HELLO_PAGE
    );
    let first = ready_instance(&f, "pinned-00001").await;

    lab.move_tag("v1", "the tag moved");
    f.wait_zero("pinned-00001", Duration::from_secs(60)).await;
    let a = f.call("ctr-pinned", "pinned", "/").await;
    assert_eq!(
        (a.status, a.body.trim_end()),
        (200, HELLO_PAGE),
        "old revision, new instance"
    );
    assert_ne!(ready_instance(&f, "pinned-00001").await, first);

    // A new revision (another env value) resolves the tag again.
    let changed = service("pinned", &lab.image("v1"), &brief, "")
        .replace("from the service", "from the second revision");
    apply_ready(&f, &k, &changed, "pinned").await;
    common::wait_for(
        Duration::from_secs(20),
        "the second revision to serve",
        || async {
            let svc = f.client.get(SERVICES, "default", "pinned").await.ok()?;
            (svc["status"]["latestReadyRevisionName"] == "pinned-00002").then_some(())
        },
    )
    .await;
    assert_eq!(
        get_ok(&f, "ctr-pinned", "pinned", "/").await.trim_end(),
        "the tag moved"
    );
    let digest = |r: Value| {
        r["status"]["containerStatuses"][0]["imageDigest"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let d1 = digest(
        f.client
            .get(REVISIONS, "default", "pinned-00001")
            .await
            .expect("rev"),
    );
    let d2 = digest(
        f.client
            .get(REVISIONS, "default", "pinned-00002")
            .await
            .expect("rev"),
    );
    assert!(
        d1.contains("@sha256:") && d2.contains("@sha256:") && d1 != d2,
        "{d1} {d2}"
    );
    f.stop();
}

/// 10. An image that does not exist fails fast: the revision is ContainerMissing within
///     seconds, and a request gets 503 with the reason at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_fast_with_the_reason() {
    if !can_run("a_missing_image_fails_fast_with_the_reason") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-missing").await;
    let k = Kubectl::new(&f);
    let image = lab.image("no-such-tag");
    let t = Instant::now();
    k.apply(&service("ghost", &image, &[], ""));
    let cond = common::wait_for(
        Duration::from_secs(10),
        "the revision to be ContainerMissing",
        || async {
            let r = f
                .client
                .get(REVISIONS, "default", "ghost-00001")
                .await
                .ok()?;
            let c = condition(&r, "ContainerHealthy")?.clone();
            (c["status"] == "False").then_some(c)
        },
    )
    .await;
    let took = t.elapsed();
    assert_eq!(cond["reason"], "ContainerMissing", "{cond}");
    let msg = cond["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(&format!("Unable to fetch image \"{image}\"")),
        "{msg}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let a = f.call("ctr-missing", "ghost", "/").await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(
        a.elapsed < Duration::from_secs(5),
        "the 503 took {:?}",
        a.elapsed
    );
    assert!(
        a.body.contains("default/ghost has no revision to serve")
            && a.body.contains("ghost-00001 cannot start"),
        "{}",
        a.body
    );
    f.stop();
}

/// 10b. A container killed for going over its memory limit is restarted and says
/// `OOMKilled`, told apart from any other SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed_and_says_so() {
    if !can_run("a_container_over_its_memory_limit_is_oom_killed_and_says_so") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-oom").await;
    let k = Kubectl::new(&f);
    // The shell (the container's PID 1) reads 200 MB into a variable: far over 32 Mi, so the
    // kernel kills it, and with it the container.
    let hog = "          command: [\"/bin/sh\", \"-c\", \"x=$(head -c 200000000 /dev/zero | tr '\\\\0' a); sleep 100\"]\n          resources:\n            limits:\n              memory: 32Mi\n";
    k.apply(&service("hog", &lab.image("v1"), &[], hog));
    let status = common::wait_for(
        Duration::from_secs(30),
        "an instance restarted after an OOM kill",
        || async {
            instances_of(&f, "hog-00001").await.iter().find_map(|i| {
                let st = &i["status"];
                (st["restarts"].as_u64() >= Some(1) && st["reason"] == "OOMKilled")
                    .then(|| st.clone())
            })
        },
    )
    .await;
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("memory limit")),
        "{status}"
    );
    f.stop();
}

/// 11a. A stopped fleet leaves no container, no mount and no cgroup behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_fleet_leaves_no_container_mount_or_cgroup() {
    if !can_run("a_stopped_fleet_leaves_no_container_mount_or_cgroup") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-tidy").await;
    let k = Kubectl::new(&f);
    let limits = "          resources:\n            limits:\n              memory: 64Mi\n";
    apply_ready(
        &f,
        &k,
        &service("tidy", &lab.image("v1"), KEEP_ONE, limits),
        "tidy",
    )
    .await;
    ready_instance(&f, "tidy-00001").await;
    let node = node_dir(&f, "ctr-tidy");
    assert!(!runc_list(&node.join("runc")).is_empty());
    assert!(
        !mounts_under(&node).is_empty(),
        "no mounted root while it runs"
    );
    assert!(
        !cgroups_of_node("ctr-tidy").is_empty(),
        "no cgroup while it runs"
    );

    let state = stop_keeping_state(f);
    let node = state.path().join("data/nodes/ctr-tidy");
    assert_eq!(runc_list(&node.join("runc")), Vec::<String>::new());
    assert_eq!(mounts_under(state.path()), Vec::<String>::new());
    assert_eq!(cgroups_of_node("ctr-tidy"), Vec::<PathBuf>::new());
    assert!(
        pids_with_env("K_SERVICE=tidy").is_empty(),
        "its processes remain"
    );
    let bundles: Vec<_> = std::fs::read_dir(node.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(bundles.is_empty(), "bundles left: {bundles:?}");
}

/// 11b. A SIGKILLed node agent's container outlives it; the agent, started again on the
///      same state, removes it (container, mount, cgroup) and serves anew. Each step needs
///      the one before, so it runs once, in order, and each test asserts one outcome.
struct OrphanedContainer {
    /// Once the agent is dead: what `runc list` shows, the container's id, and whether each
    /// of the container's processes still runs.
    listed_after_kill: Vec<String>,
    id: String,
    workers_alive_after_kill: Vec<bool>,
    /// Once the agent, started again, removed the container: whether its bundle is left,
    /// the node's cgroups, and the mounts under the bundle.
    bundle_left: bool,
    cgroups: Vec<PathBuf>,
    mounts: Vec<String>,
    /// The service's answer from the new agent's container.
    answer: String,
}

static ORPHANED_CONTAINER: common::Scenario<Option<OrphanedContainer>> = common::Scenario::new();

/// The scenario's outcomes, or `None` (having said why) where containers cannot run.
fn orphaned_container(test: &str) -> Option<&'static OrphanedContainer> {
    if !can_run(test) {
        return None;
    }
    ORPHANED_CONTAINER
        .get(|| async {
            const NODE: &str = "ctr-orphan";
            let lab = Lab::new();
            let f = fleet(&lab, NODE).await;
            let k = Kubectl::new(&f);
            apply_ready(
                &f,
                &k,
                &service("orphan", &lab.image("v1"), KEEP_ONE, ""),
                "orphan",
            )
            .await;
            let inst = ready_instance(&f, "orphan-00001").await;
            let id = format!("default.{inst}");
            let root = node_dir(&f, NODE).join("runc");
            let state_path = f.state.path().display().to_string();
            let agents = common::node_agent_pids(&state_path);
            assert_eq!(agents.len(), 1, "node agents: {agents:?}");
            let workers = pids_with_env("K_SERVICE=orphan");
            assert!(!workers.is_empty());
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(agents[0] as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill the agent");
            common::wait_for(Duration::from_secs(10), "the agent to die", || async {
                common::node_agent_pids(&state_path)
                    .is_empty()
                    .then_some(())
            })
            .await;
            let listed_after_kill = runc_list(&root);
            let workers_alive_after_kill = workers
                .iter()
                .map(|p| Path::new(&format!("/proc/{p}")).exists())
                .collect();
            // The same node, started again on the same state.
            let state = stop_keeping_state(f);
            let _ = std::fs::remove_dir_all(state.path().join("data/run"));
            let f = TestFleet::start_topology(
                state,
                &one_node_topology(NODE),
                &[NODE],
                &fleet_config(&lab),
            )
            .await;
            common::wait_for(
                Duration::from_secs(30),
                "the old container to be removed",
                || async { (!runc_list(&root).contains(&id)).then_some(()) },
            )
            .await;
            common::wait_for(
                Duration::from_secs(10),
                "the old processes to end",
                || async {
                    workers
                        .iter()
                        .all(|p| !Path::new(&format!("/proc/{p}")).exists() || zombie(*p))
                        .then_some(())
                },
            )
            .await;
            let bundle = node_dir(&f, NODE).join("containers").join(&id);
            let bundle_left = bundle.exists();
            let cgroups = cgroups_of_node(NODE);
            let mounts = mounts_under(&bundle);
            wait_ready(&f, "orphan").await;
            let answer = get_ok(&f, NODE, "orphan", "/").await;
            f.stop();
            Some(OrphanedContainer {
                listed_after_kill,
                id,
                workers_alive_after_kill,
                bundle_left,
                cgroups,
                mounts,
                answer,
            })
        })
        .as_ref()
}

#[test]
fn a_killed_agents_container_outlives_it() {
    let Some(o) = orphaned_container("a_killed_agents_container_outlives_it") else {
        return;
    };
    assert!(
        o.listed_after_kill.contains(&o.id),
        "runc list: {:?}",
        o.listed_after_kill
    );
    assert!(
        o.workers_alive_after_kill.iter().all(|alive| *alive),
        "the container's processes died with the agent"
    );
}

#[test]
fn a_restarted_agent_removes_the_container_its_killed_predecessor_left() {
    let Some(o) =
        orphaned_container("a_restarted_agent_removes_the_container_its_killed_predecessor_left")
    else {
        return;
    };
    // Its container and processes are gone (the scenario waited for that); and so are:
    assert!(!o.bundle_left, "the old bundle is left");
    assert!(
        !o.cgroups.iter().any(|g| g.ends_with(&o.id)),
        "the old cgroup is left: {:?}",
        o.cgroups
    );
    assert!(o.mounts.is_empty(), "the old root is still mounted");
}

#[test]
fn a_restarted_agent_serves_anew_in_a_container_of_its_own() {
    let Some(o) = orphaned_container("a_restarted_agent_serves_anew_in_a_container_of_its_own")
    else {
        return;
    };
    assert_eq!(o.answer.trim_end(), HELLO_PAGE);
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// 14. A container reads a Secret and a ConfigMap that kubectl created, from its env and from
///     mounted files; a change of the ConfigMap reaches the mounted file (not the subPath
///     one, nor the env, as in Kubernetes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_reads_secrets_and_config_maps_from_env_and_files() {
    if !can_run("a_container_reads_secrets_and_config_maps_from_env_and_files") {
        return;
    }
    let lab = Lab::new();
    let f = fleet(&lab, "ctr-config").await;
    let k = Kubectl::new(&f);
    k.run(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=s3cr3t-in-a-container",
    ]);
    k.run(&["create", "configmap", "app", "--from-literal=mode=blue"]);
    let container = "            - name: DB_PASSWORD\n              valueFrom:\n                secretKeyRef: {name: db, key: password}\n            - name: APP_MODE\n              valueFrom:\n                configMapKeyRef: {name: app, key: mode}\n          envFrom:\n            - configMapRef: {name: app}\n              prefix: CM_\n          volumeMounts:\n            - {name: db, mountPath: /etc/db, readOnly: true}\n            - {name: app, mountPath: /etc/app, readOnly: true}\n            - {name: app, mountPath: /etc/app-mode-only, subPath: mode, readOnly: true}\n      volumes:\n        - {name: db, secret: {secretName: db}}\n        - {name: app, configMap: {name: app}}\n";
    apply_ready(
        &f,
        &k,
        &service("configured", &lab.image("v1"), KEEP_ONE, container),
        "configured",
    )
    .await;
    let env = get_ok(&f, "ctr-config", "configured", "/cgi-bin/env").await;
    for want in [
        "DB_PASSWORD=s3cr3t-in-a-container",
        "APP_MODE=blue",
        "CM_mode=blue",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} not in the env:\n{env}"
        );
    }
    let files = get_ok(&f, "ctr-config", "configured", "/cgi-bin/files").await;
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["s3cr3t-in-a-container", "blue", "blue"],
        "the mounted files"
    );
    k.run(&[
        "patch",
        "configmap",
        "app",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"green"}}"#,
    ]);
    let seen = common::wait_for(
        Duration::from_secs(15),
        "the ConfigMap's change in the mounted file",
        || async {
            let a = f.call("ctr-config", "configured", "/cgi-bin/files").await;
            let lines: Vec<String> = a.body.lines().map(str::to_owned).collect();
            (lines.get(1).map(String::as_str) == Some("green")).then_some(lines)
        },
    )
    .await;
    assert_eq!(
        seen[2], "blue",
        "a subPath mount keeps the value it started with"
    );
    let env = get_ok(&f, "ctr-config", "configured", "/cgi-bin/env").await;
    assert!(
        env.lines().any(|l| l == "APP_MODE=blue"),
        "env values stay as they were at start:\n{env}"
    );
    f.stop();
}
