//! A real fleet for integration tests: `kantai up` as a child process on loopback, with its
//! own topology and state directory, and helpers to deploy and send requests. Every wait is on
//! a condition with a deadline; every load loop is bounded.

#![allow(dead_code)]

pub mod config;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kantai_api::Client;
use kantai_api::resources::{INSTANCES, PLACEMENTS, SERVICES};
use serde_json::Value;

/// Waits until `f` gives a value, polling after 10 ms, then twice as long each time up to
/// every 100 ms (most conditions hold soon; none is polled hard for long); fails the test
/// naming `what` after `limit`. Every wait of these tests is this one or [`wait_blocking`].
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The blocking twin of [`wait_for`], for the places a test cannot await (`Drop`, code
/// outside a runtime): polls `f` every 20 ms, fails naming `what` after `limit`.
pub fn wait_blocking<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn kantai_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kantai")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A node of a test topology: name and round trip to the first node (ms).
pub struct TestNode {
    pub name: &'static str,
    pub rtt_to_first_ms: u64,
}

/// Two nodes side by side (no emulated latency between them).
pub const TWO_NODES: [TestNode; 2] = [
    TestNode {
        name: "node1",
        rtt_to_first_ms: 0,
    },
    TestNode {
        name: "node2",
        rtt_to_first_ms: 0,
    },
];

pub struct TestFleet {
    pub up: Child,
    pub api: String,
    pub client: Client,
    pub gateways: Vec<(String, SocketAddr)>,
    pub admins: Vec<(String, SocketAddr)>,
    pub state: tempfile::TempDir,
    /// The fleet's kubeconfig (API address and bearer token).
    pub kubeconfig: std::path::PathBuf,
    /// The fleet's bearer token.
    pub token: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

pub struct Answer {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
    pub headers: http::HeaderMap,
}

impl TestFleet {
    /// A fleet of one node.
    pub async fn one_node() -> TestFleet {
        TestFleet::start(
            &[TestNode {
                name: "node1",
                rtt_to_first_ms: 0,
            }],
            "",
        )
        .await
    }

    /// A fleet of one node, with extra fleet config text, for tests that share it: see
    /// [`SharedFleet`].
    pub async fn one_node_bound_to_this_thread(config: &str) -> TestFleet {
        let nodes = [TestNode {
            name: "node1",
            rtt_to_first_ms: 0,
        }];
        TestFleet::launch(
            shared_state(),
            &topology(&nodes),
            &["node1"],
            config,
            &[],
            true,
        )
        .await
    }

    /// Starts `kantai up` with the given nodes (all on 127.0.0.1, any ports) and extra
    /// fleet config text.
    pub async fn start(nodes: &[TestNode], config: &str) -> TestFleet {
        let state = tempfile::tempdir().expect("tempdir");
        let names: Vec<&str> = nodes.iter().map(|n| n.name).collect();
        TestFleet::start_topology(state, &topology(nodes), &names, config).await
    }

    /// The seed's testbed on loopback with any ports: node1 and node2 (cloud, under 1 ms
    /// apart), node3 (edge) 50 ms ± 10 ms from both; the control plane next to node1.
    pub async fn seed_testbed(config: &str) -> TestFleet {
        TestFleet::seed_testbed_with(config, &[]).await
    }

    /// The seed's testbed, with more arguments for `kantai up` (`{state}` in them is the
    /// fleet's state directory).
    pub async fn seed_testbed_with(config: &str, up_args: &[&str]) -> TestFleet {
        let topo = SEED_TOPOLOGY;
        let state = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = up_args
            .iter()
            .map(|a| a.replace("{state}", &state.path().display().to_string()))
            .collect();
        TestFleet::start_with(state, topo, &["node1", "node2", "node3"], config, &args).await
    }

    /// A fleet of `nodes` for tests that share it: see [`SharedFleet`].
    pub async fn nodes_bound_to_this_thread(nodes: &[TestNode], config: &str) -> TestFleet {
        let names: Vec<&str> = nodes.iter().map(|n| n.name).collect();
        TestFleet::launch(shared_state(), &topology(nodes), &names, config, &[], true).await
    }

    /// The seed's testbed for tests that share it: see [`SharedFleet`].
    pub async fn seed_testbed_bound_to_this_thread(config: &str) -> TestFleet {
        let state = shared_state();
        TestFleet::launch(
            state,
            SEED_TOPOLOGY,
            &["node1", "node2", "node3"],
            config,
            &[],
            true,
        )
        .await
    }

    /// Starts `kantai up` with a topology text whose nodes are `names`.
    pub async fn start_topology(
        state: tempfile::TempDir,
        topo: &str,
        names: &[&str],
        config: &str,
    ) -> TestFleet {
        TestFleet::start_with(state, topo, names, config, &[]).await
    }

    /// Starts `kantai up` with a topology text whose nodes are `names`, and more arguments.
    pub async fn start_with(
        state: tempfile::TempDir,
        topo: &str,
        names: &[&str],
        config: &str,
        up_args: &[String],
    ) -> TestFleet {
        TestFleet::launch(state, topo, names, config, up_args, false).await
    }

    /// Starts `kantai up`; `bound`: it gets SIGTERM when the calling thread ends (the
    /// parent-death signal every kantai child process takes from `KANTAI_PARENT_PID`).
    async fn launch(
        state: tempfile::TempDir,
        topo: &str,
        names: &[&str],
        config: &str,
        up_args: &[String],
        bound: bool,
    ) -> TestFleet {
        let topo_file = state.path().join("test-topology.yaml");
        std::fs::write(&topo_file, topo).expect("topology");
        let config_file = state.path().join("test-config.yaml");
        std::fs::write(&config_file, config).expect("config");
        let data = state.path().join("data");
        let mut up = Command::new(kantai_bin());
        if bound {
            up.env("KANTAI_PARENT_PID", std::process::id().to_string());
        }
        let up = up
            .args(["up", "--topology"])
            .arg(&topo_file)
            .arg("--config")
            .arg(&config_file)
            .arg("--state-dir")
            .arg(&data)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(up_args)
            .env("KANTAI_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kantai up");
        let run = data.join("run");
        let ready = |file: String| {
            let path = run.join(file);
            move || {
                let v = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                std::future::ready(v)
            }
        };
        let limit = Duration::from_secs(30);
        let control: Value = wait_for(
            limit,
            "the control plane to start",
            ready("control.json".into()),
        )
        .await;
        let mut gateways = Vec::new();
        let mut admins = Vec::new();
        for n in names {
            let v: Value = wait_for(
                limit,
                &format!("node {n} to start"),
                ready(format!("{n}.json")),
            )
            .await;
            gateways.push((
                (*n).to_owned(),
                v["gateway"].as_str().expect("gw").parse().expect("addr"),
            ));
            admins.push((
                (*n).to_owned(),
                v["admin"].as_str().expect("admin").parse().expect("addr"),
            ));
        }
        let api = control["api"].as_str().expect("api").to_owned();
        let kubeconfig =
            std::path::PathBuf::from(control["kubeconfig"].as_str().expect("kubeconfig"));
        let token = std::fs::read_to_string(data.join("token"))
            .expect("token")
            .trim()
            .to_owned();
        let client = Client::new(&api)
            .expect("client")
            .with_token(Some(token.clone()));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HttpClient::builder(TokioExecutor::new()).build(connector);
        let fleet = TestFleet {
            up,
            api,
            client,
            gateways,
            admins,
            state,
            kubeconfig,
            token,
            http,
        };
        // Every node reported at least once.
        wait_for(Duration::from_secs(20), "all nodes ready", || async {
            let nodes = fleet
                .client
                .list(kantai_api::resources::NODES, None)
                .await
                .ok()?;
            (nodes.len() == fleet.gateways.len()
                && nodes.iter().all(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                }))
            .then_some(())
        })
        .await;
        fleet
    }

    /// Any request to `url`, with `headers`: the status and the body.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let a = self
            .request(method, url, headers, Bytes::from(body.to_owned()))
            .await;
        (a.status, a.body)
    }

    /// Any request, answered within 60 s.
    async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Answer {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).expect("request");
        let start = Instant::now();
        let resp = tokio::time::timeout(Duration::from_secs(60), self.http.request(req))
            .await
            .expect("no answer within 60 s")
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            elapsed: start.elapsed(),
            headers,
        }
    }

    /// A plain GET of `path` on `addr` (no Host games): the body, if it answered 200.
    pub async fn fetch(&self, addr: &str, path: &str) -> Option<String> {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .body(Full::new(Bytes::new()))
            .ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .ok()?
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).into_owned())
    }

    /// The `kantai` command, pointed at this fleet by its kubeconfig.
    pub fn kantai(&self) -> std::process::Command {
        let mut c = std::process::Command::new(kantai_bin());
        c.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KANTAI_SERVER")
            .env_remove("KANTAI_TOKEN");
        c
    }

    /// A node agent's admin address (its `/metrics`).
    pub fn admin(&self, node: &str) -> SocketAddr {
        self.admins
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, a)| *a)
            .expect("node")
    }

    pub fn gateway(&self, node: &str) -> SocketAddr {
        self.gateways
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, g)| *g)
            .expect("node")
    }

    /// Creates a Service from YAML and waits until it is Ready.
    pub async fn deploy(&self, yaml: &str) -> Value {
        let docs = kantai_model::manifest::read(yaml, &kantai_model::ServingConfig::default())
            .expect("yaml");
        let obj = docs[0].object.as_ref().expect("object").to_json();
        let name = obj["metadata"]["name"].as_str().expect("name").to_owned();
        self.client
            .create(SERVICES, "default", &obj)
            .await
            .expect("create");
        self.wait_ready(&name).await
    }

    pub async fn wait_ready(&self, name: &str) -> Value {
        wait_for(
            Duration::from_secs(60),
            "the service to be Ready",
            || async {
                let v = self.client.get(SERVICES, "default", name).await.ok()?;
                let ready = v["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                let current = v["status"]["observedGeneration"] == v["metadata"]["generation"];
                (ready && current).then_some(v)
            },
        )
        .await
    }

    /// Ready instances of a revision.
    pub async fn ready_instances(&self, revision: &str) -> usize {
        self.client
            .list(INSTANCES, Some("default"))
            .await
            .unwrap_or_default()
            .iter()
            .filter(|i| i["spec"]["revision"] == revision && i["status"]["ready"] == true)
            .count()
    }

    pub async fn instances(&self) -> Vec<Value> {
        self.client
            .list(INSTANCES, Some("default"))
            .await
            .unwrap_or_default()
    }

    pub async fn placement(&self, revision: &str) -> Option<Value> {
        self.client.get(PLACEMENTS, "default", revision).await.ok()
    }

    /// One request to `service` through `node`'s gateway.
    pub async fn call(&self, node: &str, service: &str, path: &str) -> Answer {
        self.call_host(
            node,
            &format!("{service}.default.svc.cluster.local"),
            path,
            Bytes::new(),
        )
        .await
    }

    pub async fn call_host(&self, node: &str, host: &str, path: &str, body: Bytes) -> Answer {
        let gw = self.gateway(node);
        let method = if body.is_empty() { "GET" } else { "POST" };
        self.request(
            method,
            &format!("http://{gw}{path}"),
            &[("host", host)],
            body,
        )
        .await
    }

    /// Waits until the revision has no instance left.
    pub async fn wait_zero(&self, revision: &str, limit: Duration) {
        wait_for(limit, "scale to zero", || async {
            let list = self.client.list(INSTANCES, Some("default")).await.ok()?;
            (!list.iter().any(|i| i["spec"]["revision"] == revision)).then_some(())
        })
        .await
    }

    /// Stops the fleet the way a user does (SIGTERM to `kantai up`) and checks that nothing
    /// it started is left.
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.up.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        wait_blocking(Duration::from_secs(30), "kantai up to stop", || {
            matches!(self.up.try_wait(), Ok(Some(_))).then_some(())
        });
        let state = self.state.path().display().to_string();
        wait_blocking(
            Duration::from_secs(10),
            "the processes kantai up started to end",
            || processes_mentioning(&state).is_empty().then_some(()),
        );
    }
}

/// The topology text of `nodes`, all on 127.0.0.1 with any ports, the first one
/// `rtt_to_first_ms` from each other.
fn topology(nodes: &[TestNode]) -> String {
    let mut topo = String::from("nodes:\n");
    for n in nodes {
        topo.push_str(&format!(
            "  - {{name: {}, address: 127.0.0.1, gateway: \"127.0.0.1:0\", capacity: {{instances: 30}}}}\n",
            n.name
        ));
    }
    topo.push_str("links:\n  pairs:\n");
    let mut pairs = 0;
    for n in &nodes[1..] {
        if n.rtt_to_first_ms > 0 {
            pairs += 1;
            topo.push_str(&format!(
                "    - {{between: [{}, {}], rtt: {}ms}}\n",
                nodes[0].name, n.name, n.rtt_to_first_ms
            ));
        }
    }
    if pairs == 0 {
        topo.push_str("    []\n");
        topo = topo.replace("  pairs:\n    []\n", "  pairs: []\n");
    }
    topo.push_str(&format!(
        "control: {{node: {}, listen: \"127.0.0.1:0\"}}\n",
        nodes[0].name
    ));
    topo
}

/// The directory of a fleet or a [`Scenario`] a test process shares: such a thing is in a
/// static, never dropped, so its directory outlives the process. Named by the process's pid,
/// so that the next process to start one removes those of processes that are gone.
pub fn shared_state() -> tempfile::TempDir {
    let root = std::env::temp_dir().join("kantai-shared-fleets");
    std::fs::create_dir_all(&root).expect("the shared fleets' directory");
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let pid = e
            .file_name()
            .to_str()
            .and_then(|n| n.split('-').next()?.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .tempdir_in(&root)
        .expect("tempdir")
}

/// A fleet that the tests of a module share, started by whichever comes first and kept in a
/// static (never dropped): a fleet start costs seconds. It runs on a thread and runtime of its
/// own that live until the process exits: `kantai up` has the parent-death signal of that
/// thread (from `KANTAI_PARENT_PID`), so it stops, and stops its instances, when the test
/// process exits; and the fleet's HTTP client keeps its connections on that runtime, not on
/// the runtime of a test that has ended.
pub struct SharedFleet {
    pub fleet: TestFleet,
    runtime: tokio::runtime::Handle,
}

impl SharedFleet {
    /// Starts the fleet that `start` gives (a `*_bound_to_this_thread` one) on its own thread.
    pub fn start<Fut>(start: impl FnOnce() -> Fut + Send + 'static) -> SharedFleet
    where
        Fut: std::future::Future<Output = TestFleet>,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("shared-fleet".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let fleet = rt.block_on(start());
                let _ = tx.send((fleet, rt.handle().clone()));
                rt.block_on(std::future::pending::<()>());
            })
            .expect("the shared fleet's thread");
        let (fleet, runtime) = rx.recv().expect("the shared fleet did not start");
        SharedFleet { fleet, runtime }
    }

    /// Runs `f` with the fleet on the fleet's runtime; a panic in it is the caller's.
    pub async fn run<T, Fut>(&'static self, f: impl FnOnce(&'static TestFleet) -> Fut) -> T
    where
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        match self.runtime.spawn(f(&self.fleet)).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{e}"),
        }
    }
}

/// The outcomes of a scenario whose steps depend on each other (a behaviour observable only
/// after another step), shared by the tests of a module: run once, by whichever test comes
/// first, on a thread and runtime of its own; each test then asserts one outcome. A panic in
/// the scenario fails every test that reads it, with the scenario's message, and the scenario
/// is not run again.
pub struct Scenario<T>(std::sync::OnceLock<Result<T, String>>);

impl<T: Send + Sync + 'static> Scenario<T> {
    pub const fn new() -> Scenario<T> {
        Scenario(std::sync::OnceLock::new())
    }

    /// The outcomes of `run`, running it if no test has yet.
    pub fn get<Fut>(&'static self, run: fn() -> Fut) -> &'static T
    where
        Fut: std::future::Future<Output = T> + 'static,
    {
        let outcome = self.0.get_or_init(|| {
            std::thread::Builder::new()
                .name("scenario".into())
                .spawn(move || {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(run())
                })
                .expect("the scenario's thread")
                .join()
                .map_err(|e| {
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "a panic".to_owned())
                })
        });
        match outcome {
            Ok(v) => v,
            Err(e) => panic!("the scenario this test reads failed: {e}"),
        }
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        // A failed test still leaves nothing behind: the children die with their parent.
        let _ = self.up.kill();
        let _ = self.up.wait();
    }
}

/// Command lines of live processes that contain `needle`.
/// A process's resident memory, in KiB (0 when it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The node agents of the fleet whose state directory is `state`.
pub fn node_agent_pids(state: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(" node ") && cmd.contains(state) {
                out.push(pid);
            }
        }
    }
    out
}

pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .chars()
            .all(|c| c.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(cmd);
            }
        }
    }
    out
}

pub const HELLO: &str = include_str!("../../../../examples/hello.yaml");

/// A hello service with a name and extra template annotations and spec lines.
/// The seed's testbed as the tests run it: three nodes on loopback, node3 50 ms ± 10 ms from
/// the others (the simulator agreement test reads the same text).
pub const SEED_TOPOLOGY: &str = "nodes:
  - {name: node1, labels: {tier: cloud}, address: 127.0.0.1, gateway: \"127.0.0.1:0\", capacity: {instances: 30}}
  - {name: node2, labels: {tier: cloud}, address: 127.0.0.1, gateway: \"127.0.0.1:0\", capacity: {instances: 30}}
  - {name: node3, labels: {tier: edge}, address: 127.0.0.1, gateway: \"127.0.0.1:0\", capacity: {instances: 30}}
links:
  pairs:
    - {between: [node1, node3], rtt: 50ms, jitter: 10ms}
    - {between: [node2, node3], rtt: 50ms, jitter: 10ms}
control: {node: node1, listen: \"127.0.0.1:0\"}
";

pub fn hello(name: &str, annotations: &[(&str, &str)], spec_extra: &str) -> String {
    let mut anns = String::new();
    for (k, v) in annotations {
        anns.push_str(&format!("        {k}: \"{v}\"\n"));
    }
    if anns.is_empty() {
        anns.push_str("        kantai.dev/test: \"yes\"\n");
    }
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  template:\n    metadata:\n      annotations:\n{anns}    spec:\n{spec_extra}      containers:\n        - image: docker.io/bonavadeur/shuka:v1.3\n          env:\n            - name: TARGET\n              value: \"Konnichiwa\"\n"
    )
}

/// The pids of live processes whose environment holds `entry` (such as `K_SERVICE=hello`).
pub fn pids_with_env(entry: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && !zombie
            && env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes())
        {
            out.push(pid);
        }
    }
    out
}

/// The pid of a process whose environment holds `entry` (such as `PODNAME=hello-node1-abcde`).
pub fn pid_with_env(entry: &str) -> Option<i32> {
    let dir = std::fs::read_dir("/proc").ok()?;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(pid) = name.parse::<i32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

/// A loopback port that was free a moment ago (for a process the test or bench starts itself).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("the bound port's address").port()
}
