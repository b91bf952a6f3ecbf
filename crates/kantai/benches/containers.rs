//! Containers (the OCI backend), each figure next to its baseline in the same run:
//!
//! - cold start of a Service at zero whose image is already pulled, through the gateway, from
//!   the request sent to its answer, against a hand-run `runc run -d` of the same bundle (and
//!   `runc create` + `runc start`) to its first HTTP answer; the kantai path is split into
//!   parts from the fleet's own log lines (their timestamps);
//! - pull and unpack of a ~50 MB image from a loopback registry into an empty kantai store,
//!   against `skopeo copy` + `umoci unpack` of the same image;
//! - the node agent's resident memory with 0, 1 and 10 container instances.
//!
//! Needs root, runc, docker-registry, skopeo, umoci and a static busybox (`scripts/bench`
//! installs them from Debian's packages). Run: `cargo bench -p kantai --bench containers`
//! (prints the tables; `KANTAI_BENCH_MD=FILE` writes them for `scripts/bench`). Loopback only;
//! every loop is bounded in count and time; everything started is stopped by its pid.

// A benchmark is a driver: it measures wall time and starts processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::{kantai_bin, node_agent_pids, rss_kb};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kantai_api::Client;
use kantai_api::resources::{INSTANCES, SERVICES};
use serde_json::Value;

/// Cold starts through the gateway (and as many hand-run starts of each kind).
const COLD_TRIES: usize = 20;
/// Pulls of the big image, each into an empty store (and as many skopeo + umoci rounds).
const PULL_ROUNDS: usize = 5;
/// The big image's extra layers, files per layer and bytes per file (3 × 16 × 1 MiB).
const BIG_LAYERS: usize = 3;
const BIG_FILES: usize = 16;
const BIG_FILE_BYTES: usize = 1 << 20;
/// The whole benchmark gives up (stopping what it started) after this long.
const DEADLINE: Duration = Duration::from_secs(300);

/// The test image's command: busybox httpd on `$PORT`, exiting on SIGTERM (as PID 1 of its
/// pid namespace, httpd itself would ignore it).
const APP_CMD: &str = r#"trap "exit 0" TERM; httpd -f -p $PORT -h /www & wait"#;

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50, p90, p99 and max.
fn summary(mut v: Vec<f64>) -> [f64; 4] {
    v.sort_by(|a, b| a.total_cmp(b));
    [pct(&v, 50.0), pct(&v, 90.0), pct(&v, 99.0), pct(&v, 100.0)]
}

fn median(v: &[f64]) -> f64 {
    summary(v.to_vec())[0]
}

/// A plain blocking GET / on loopback: whether it answered 200.
fn http_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") && &buf[9..12] == b"200"
}

/// Polls `port` every 200 µs until it answers 200: the time since `start`, in ms.
fn first_answer(port: u16, start: Instant) -> Option<f64> {
    while start.elapsed() < Duration::from_secs(10) {
        if http_ok(port) {
            return Some(start.elapsed().as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

/// Debian's `docker-registry` on a free loopback port; killed by its pid on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = common::free_port();
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.join("registry").display()
            ),
        )
        .expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let r = Registry { child, port };
        let start = Instant::now();
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 12];
                if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the registry did not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the test images with umoci and pushes them with skopeo: `fn/app:v1` (static
/// busybox, `/www/index.html`, [`APP_CMD`]) and `fn/big:v1` (the same plus [`BIG_LAYERS`]
/// layers of half-random files). Returns the app image's unpacked bundle (the hand-run
/// baseline's rootfs) and the big image's compressed and unpacked sizes.
fn build_images(work: &Path, registry: &str) -> (PathBuf, u64, u64) {
    let layout = work.join("oci");
    let app = format!("{}:app", layout.display());
    let bundle = work.join("app-bundle");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &app]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &app])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "www", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("dir");
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox (apt-get install busybox-static)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/busybox", "--install", "-s", "/bin"]));
    std::fs::write(rootfs.join("www/index.html"), "hi\n").expect("index");
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
    run(Command::new("umoci")
        .args(["repack", "--image", &app])
        .arg(&bundle));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &app,
        "--config.cmd",
        "/bin/sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        APP_CMD,
    ]));
    // The big image: the app's layer, then BIG_LAYERS layers of BIG_FILES files each, every
    // file half random bytes (incompressible) and half text (gzip takes it to little).
    let big = format!("{}:big", layout.display());
    run(Command::new("umoci").args(["tag", "--image", &app, "big"]));
    let big_bundle = work.join("big-bundle");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for layer in 0..BIG_LAYERS {
        let _ = std::fs::remove_dir_all(&big_bundle);
        run(Command::new("umoci")
            .args(["unpack", "--image", &big])
            .arg(&big_bundle));
        let dir = big_bundle.join(format!("rootfs/data/layer{layer}"));
        std::fs::create_dir_all(&dir).expect("dir");
        for f in 0..BIG_FILES {
            let mut data = Vec::with_capacity(BIG_FILE_BYTES);
            while data.len() < BIG_FILE_BYTES / 2 {
                // xorshift64*
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                data.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
            }
            let mut line = 0u64;
            while data.len() < BIG_FILE_BYTES {
                let _ = writeln!(&mut data, "layer {layer} file {f} line {line}");
                line += 1;
            }
            data.truncate(BIG_FILE_BYTES);
            std::fs::write(dir.join(format!("f{f}.bin")), data).expect("write");
        }
        run(Command::new("umoci")
            .args(["repack", "--image", &big])
            .arg(&big_bundle));
    }
    let _ = std::fs::remove_dir_all(&big_bundle);
    for (tag, name) in [("app", "fn/app:v1"), ("big", "fn/big:v1")] {
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{registry}/{name}"),
        ]));
    }
    // Sizes of the big image: compressed layers from its manifest, unpacked from the files.
    let compressed = blob_sizes(&layout, "big");
    let unpacked = (BIG_LAYERS * BIG_FILES * BIG_FILE_BYTES) as u64
        + std::fs::metadata(rootfs.join("bin/busybox"))
            .map(|m| m.len())
            .unwrap_or(0);
    (bundle, compressed, unpacked)
}

/// The sum of the layer sizes in the manifest of `tag` in an OCI layout.
fn blob_sizes(layout: &Path, tag: &str) -> u64 {
    let read = |p: PathBuf| -> Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_default()).unwrap_or(Value::Null)
    };
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read(layout.join("index.json"));
    let Some(m) = index["manifests"].as_array().and_then(|ms| {
        ms.iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    }) else {
        return 0;
    };
    let manifest = read(blob(m["digest"].as_str().unwrap_or("")));
    manifest["layers"]
        .as_array()
        .map(|ls| ls.iter().filter_map(|l| l["size"].as_u64()).sum())
        .unwrap_or(0)
}

/// `kantai up` with one node, its logs (with timestamps) in a file, stopped by its pid.
struct Fleet {
    up: Child,
    state: PathBuf,
    log: PathBuf,
    client: Client,
    gateway: SocketAddr,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Fleet {
    async fn start(dir: &Path, registry: &str) -> Fleet {
        let topo = dir.join("topology.yaml");
        std::fs::write(
            &topo,
            "nodes:\n  - {name: node1, address: 127.0.0.1, gateway: \"127.0.0.1:0\", capacity: {instances: 30}}\n\
             links:\n  pairs: []\ncontrol: {node: node1, listen: \"127.0.0.1:0\"}\n",
        )
        .expect("topology");
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "autoscaler:\n  allow-zero-initial-scale: true\n  scale-to-zero-grace-period: 1s\n\
                 runtime:\n  oci:\n    runtime: runc\n    insecure-registries: [\"{registry}\"]\n"
            ),
        )
        .expect("config");
        let state = dir.join("data");
        let log = dir.join("fleet.log");
        let out = std::fs::File::create(&log).expect("log file");
        let up = Command::new(kantai_bin())
            .args(["up", "--verbose", "--topology"])
            .arg(&topo)
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .arg("--listen")
            .arg("127.0.0.1:0")
            // The cold start's milestones: the poke, the scale decision, the agent's start,
            // the runtime's spawn and the first passing readiness probe.
            .env(
                "KANTAI_LOG",
                "info,kantai_control::scaling=debug,kantai_runtime::instance=debug",
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start kantai up");
        let run = state.join("run");
        let deadline = Instant::now() + Duration::from_secs(30);
        let read =
            |p: PathBuf| -> Option<Value> { serde_json::from_slice(&std::fs::read(p).ok()?).ok() };
        let (control, node) = loop {
            if let (Some(c), Some(n)) =
                (read(run.join("control.json")), read(run.join("node1.json")))
            {
                break (c, n);
            }
            assert!(Instant::now() < deadline, "the fleet did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let token = std::fs::read_to_string(state.join("token"))
            .expect("token")
            .trim()
            .to_owned();
        let client = Client::new(control["api"].as_str().expect("api"))
            .expect("client")
            .with_token(Some(token));
        let mut c = HttpConnector::new();
        c.set_nodelay(true);
        let f = Fleet {
            up,
            state,
            log,
            client,
            gateway: node["gateway"]
                .as_str()
                .expect("gateway")
                .parse()
                .expect("addr"),
            http: HttpClient::builder(TokioExecutor::new()).build(c),
        };
        f.wait_for(Duration::from_secs(20), "the node to be Ready", || async {
            let nodes = f
                .client
                .list(kantai_api::resources::NODES, None)
                .await
                .ok()?;
            nodes
                .iter()
                .any(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .then_some(())
        })
        .await;
        f
    }

    async fn wait_for<T, F, Fut>(&self, limit: Duration, what: &str, f: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; the fleet's log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a Service running `image` with `annotations` and waits until it is Ready.
    async fn deploy(&self, name: &str, image: &str, annotations: &[(&str, &str)]) {
        let mut anns = String::new();
        for (k, v) in annotations {
            let _ = writeln!(anns, "        {k}: \"{v}\"");
        }
        let yaml = format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\n\
             spec:\n  template:\n    metadata:\n      annotations:\n{anns}    spec:\n\
             \x20     containers:\n        - image: {image}\n"
        );
        let docs = kantai_model::manifest::read(&yaml, &kantai_model::ServingConfig::default())
            .expect("yaml");
        let obj = docs[0].object.as_ref().expect("object").to_json();
        self.client
            .create(SERVICES, "default", &obj)
            .await
            .expect("create");
        self.wait_for(
            Duration::from_secs(60),
            "the service to be Ready",
            || async {
                let v = self.client.get(SERVICES, "default", name).await.ok()?;
                let ready = v["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                (ready && v["status"]["observedGeneration"] == v["metadata"]["generation"])
                    .then_some(())
            },
        )
        .await;
    }

    /// One GET through the gateway: status, time to the full answer, and when it was sent.
    async fn call(&self, service: &str) -> (u16, Duration, SystemTime) {
        let req = http::Request::get(format!("http://{}/", self.gateway))
            .header(
                http::header::HOST,
                format!("{service}.default.svc.cluster.local"),
            )
            .body(Full::new(Bytes::new()))
            .expect("request");
        let sent = SystemTime::now();
        let start = Instant::now();
        let resp = tokio::time::timeout(Duration::from_secs(60), self.http.request(req))
            .await
            .expect("no answer within 60 s")
            .expect("request");
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        (status, start.elapsed(), sent)
    }

    async fn instances(&self) -> Vec<Value> {
        self.client
            .list(INSTANCES, Some("default"))
            .await
            .unwrap_or_default()
    }

    /// The name of the (one) instance of `revision`.
    async fn instance_of(&self, revision: &str) -> String {
        self.instances()
            .await
            .iter()
            .find(|i| i["spec"]["revision"] == revision)
            .and_then(|i| i["metadata"]["name"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    async fn ready_instances(&self, revision: &str) -> usize {
        self.instances()
            .await
            .iter()
            .filter(|i| i["spec"]["revision"] == revision && i["status"]["ready"] == true)
            .count()
    }

    async fn delete_and_wait_zero(&self, name: &str) {
        self.client
            .delete(SERVICES, "default", name)
            .await
            .expect("delete");
        let revision = format!("{name}-00001");
        self.wait_for(Duration::from_secs(30), "scale to zero", || async {
            let list = self.client.list(INSTANCES, Some("default")).await.ok()?;
            (!list.iter().any(|i| i["spec"]["revision"] == revision)).then_some(())
        })
        .await;
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.up.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.up.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.up.kill();
        let _ = self.up.wait();
    }
}

/// A log line's timestamp (tracing's RFC 3339 UTC, the first such word on the line).
fn stamp(line: &str) -> Option<SystemTime> {
    let word = line
        .split_whitespace()
        .find(|w| w.len() >= 20 && w.as_bytes()[4] == b'-' && w.ends_with('Z'))?;
    let (date, time) = word.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(secs).ok()?)
            + Duration::from_secs_f64(sec),
    )
}

/// The milestones of one cold start, from the fleet's log: ms after the request was sent.
/// `None` for a milestone the log does not show.
fn milestones(log: &str, revision: &str, instance: &str, sent: SystemTime) -> [Option<f64>; 5] {
    let after = |line: &str| {
        stamp(line)
            .and_then(|t| t.duration_since(sent).ok())
            .map(|d| d.as_secs_f64() * 1e3)
    };
    let mut out = [None; 5];
    let field = format!("instance={instance}");
    let is_instance = |line: &str| line.split_whitespace().any(|w| w == field);
    let rev = format!("revision={revision}");
    for line in log.lines() {
        let slot = if line.contains("poke") && line.contains(&format!("\"{revision}\"")) {
            0
        } else if line.contains(" scale")
            && line.split_whitespace().any(|w| w == rev)
            && line.contains("desired=1")
        {
            1
        } else if line.contains("starting instance") && is_instance(line) {
            2
        } else if line.contains("instance started") && is_instance(line) {
            3
        } else if line.contains("instance ready") && is_instance(line) {
            4
        } else {
            continue;
        };
        if out[slot].is_none() {
            out[slot] = after(line);
        }
    }
    out
}

/// The hand-run baseline: the bundle kantai wrote for an instance, with its root replaced
/// by the image's plain unpacked rootfs, its cgroup by one of the benchmark's own, and its
/// port by `port`; run by runc with a state root of the benchmark's own.
struct HandRun {
    root: PathBuf,
    bundle: PathBuf,
    spec: Value,
}

impl HandRun {
    fn new(work: &Path, rootfs: &Path, kantai_spec: Value) -> HandRun {
        let root = work.join("runc-root");
        let bundle = work.join("hand-bundle");
        std::fs::create_dir_all(&root).expect("runc root");
        std::fs::create_dir_all(&bundle).expect("bundle");
        let mut spec = kantai_spec;
        spec["root"]["path"] = Value::String(rootfs.display().to_string());
        HandRun { root, bundle, spec }
    }

    fn runc(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Writes the config for one try: its port and cgroup.
    fn prepare(&mut self, id: &str, port: u16) {
        if let Some(env) = self.spec["process"]["env"].as_array_mut() {
            for e in env.iter_mut() {
                let s = e.as_str().unwrap_or("");
                if s.starts_with("PORT=") {
                    *e = Value::String(format!("PORT={port}"));
                }
            }
        }
        self.spec["linux"]["cgroupsPath"] = Value::String(format!("/kantai-bench/{id}"));
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec(&self.spec).expect("json"),
        )
        .expect("config.json");
    }

    /// `runc run -d` to the first HTTP answer (ms).
    fn run_d(&mut self, id: &str) -> Option<f64> {
        let port = common::free_port();
        self.prepare(id, port);
        let start = Instant::now();
        let ok = self
            .runc()
            .args(["run", "-d", "--bundle"])
            .arg(&self.bundle)
            .arg(id)
            .status()
            .is_ok_and(|s| s.success());
        let ms = if ok { first_answer(port, start) } else { None };
        self.remove(id);
        ms
    }

    /// `runc run` in the foreground, as kantai runs it (no `-d`), to the first HTTP answer (ms).
    fn run_fg(&mut self, id: &str) -> Option<f64> {
        let port = common::free_port();
        self.prepare(id, port);
        let start = Instant::now();
        let mut child = self
            .runc()
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(id)
            .spawn()
            .ok()?;
        let ms = first_answer(port, start);
        let _ = self.runc().args(["kill", id, "KILL"]).status();
        let _ = child.wait();
        self.remove(id);
        ms
    }

    /// `runc create` (ms to its return), then `runc start` to the first HTTP answer (ms).
    fn create_start(&mut self, id: &str) -> Option<(f64, f64)> {
        let port = common::free_port();
        self.prepare(id, port);
        let start = Instant::now();
        let created = self
            .runc()
            .args(["create", "--bundle"])
            .arg(&self.bundle)
            .arg(id)
            .status()
            .is_ok_and(|s| s.success());
        let create_ms = start.elapsed().as_secs_f64() * 1e3;
        let mut out = None;
        if created {
            let start = Instant::now();
            if self
                .runc()
                .args(["start", id])
                .status()
                .is_ok_and(|s| s.success())
            {
                out = first_answer(port, start).map(|s| (create_ms, s));
            }
        }
        self.remove(id);
        out
    }

    fn remove(&self, id: &str) {
        let _ = self.runc().args(["kill", id, "KILL"]).status();
        let _ = self.runc().args(["delete", "--force", id]).status();
    }
}

/// Mounting a fresh overlay root of `lower` and unmounting it, as kantai does per start (ms).
fn overlay_round(work: &Path, lower: &Path) -> Option<f64> {
    let (upper, wk, root) = (
        work.join("ov-upper"),
        work.join("ov-work"),
        work.join("ov-root"),
    );
    let start = Instant::now();
    for d in [&upper, &wk] {
        let _ = std::fs::remove_dir_all(d);
    }
    for d in [&upper, &wk, &root] {
        std::fs::create_dir_all(d).ok()?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        wk.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .ok()?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let _ = nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH);
    Some(ms)
}

/// Finds the config.json kantai wrote for a running instance of `revision`.
fn kantai_config(state: &Path, instance: &str) -> Option<Value> {
    if instance.is_empty() {
        return None;
    }
    let nodes = state.join("nodes");
    for n in std::fs::read_dir(&nodes).ok()?.flatten() {
        let containers = n.path().join("containers");
        for c in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            if c.file_name().to_string_lossy().ends_with(instance)
                && let Ok(b) = std::fs::read(c.path().join("config.json"))
                && let Ok(v) = serde_json::from_slice::<Value>(&b)
            {
                return Some(v);
            }
        }
    }
    // Elsewhere under the state dir (the layout may change): any containers/*/config.json.
    find_config(state, instance, 0)
}

fn find_config(dir: &Path, revision: &str, depth: usize) -> Option<Value> {
    if depth > 5 {
        return None;
    }
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if !e.file_type().ok()?.is_dir() || p.ends_with("rootfs") || p.ends_with("images") {
            continue;
        }
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(revision))
            && let Ok(b) = std::fs::read(p.join("config.json"))
        {
            return serde_json::from_slice(&b).ok();
        }
        if let Some(v) = find_config(&p, revision, depth + 1) {
            return Some(v);
        }
    }
    None
}

/// Size in bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += du(&e.path()),
            Ok(t) if t.is_file() => n += e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => {}
        }
    }
    n
}

/// Pulls into an empty kantai store, then skopeo + umoci, alternately: per round the
/// store's pull (ms), skopeo copy (ms) and umoci unpack (ms).
async fn pulls(work: &Path, registry: &str) -> Vec<(f64, f64, f64)> {
    let image = format!("{registry}/fn/big:v1");
    let mut out = Vec::new();
    let started = Instant::now();
    for round in 0..PULL_ROUNDS {
        if started.elapsed() > Duration::from_secs(90) {
            break;
        }
        let store_dir = work.join(format!("store{round}"));
        let cfg = kantai_images::ImagesConfig {
            insecure_registries: vec![registry.to_owned()],
            auth_file: Some(PathBuf::from("/nonexistent/kantai-bench/config.json")),
            ..Default::default()
        };
        let reg = kantai_images::Registry::new(&cfg).expect("registry client");
        let store = kantai_images::Store::open(&store_dir, reg, 4 << 30).expect("store");
        let (tx, _rx) = tokio::sync::watch::channel(kantai_images::Progress::default());
        let start = Instant::now();
        let img = store
            .pull(&image, kantai_images::PullPolicy::Always, &tx)
            .await
            .expect("pull");
        let kantai_ms = start.elapsed().as_secs_f64() * 1e3;
        drop(img);
        drop(store);
        let _ = std::fs::remove_dir_all(&store_dir);

        let layout = work.join(format!("skopeo{round}"));
        let bundle = work.join(format!("umoci{round}"));
        let start = Instant::now();
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
            &format!("oci:{}:big", layout.display()),
        ]));
        let skopeo_ms = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        run(Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:big", layout.display())])
            .arg(&bundle));
        let umoci_ms = start.elapsed().as_secs_f64() * 1e3;
        let _ = std::fs::remove_dir_all(&layout);
        let _ = std::fs::remove_dir_all(&bundle);
        out.push((kantai_ms, skopeo_ms, umoci_ms));
    }
    out
}

fn need(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .any(|d| d.join(tool).is_file())
        })
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed (scripts/bench installs runc, docker-registry, skopeo, umoci and busybox-static)"
    );
}

/// Containers in a runc root that are created and not started.
fn created_containers(root: &Path) -> usize {
    let out = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "--format", "json"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&out)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|c| c["status"] == "created")
        .count()
}

/// Cold starts of a revision at zero that ran before (each waits for scale to zero).
const HELD_TRIES: usize = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the containers benchmark runs containers: run it as root"
    );
    for t in ["runc", "docker-registry", "skopeo", "umoci", "chroot"] {
        need(t);
    }
    let bench_start = Instant::now();
    // A watchdog: a stuck benchmark stops instead of hanging a run of scripts/bench.
    std::thread::spawn(|| {
        std::thread::sleep(DEADLINE);
        eprintln!("the containers benchmark took over {DEADLINE:?}; giving up");
        std::process::exit(1);
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path();
    let registry = Registry::start(work);
    let host = registry.host();
    let build_start = Instant::now();
    let (app_bundle, big_compressed, big_unpacked) = build_images(work, &host);
    println!(
        "images built and pushed in {:.1} s (big image: {:.1} MB compressed, {:.1} MB unpacked)",
        build_start.elapsed().as_secs_f64(),
        big_compressed as f64 / 1e6,
        big_unpacked as f64 / 1e6
    );

    let fleet_dir = work.join("fleet");
    std::fs::create_dir_all(&fleet_dir).expect("fleet dir");
    let f = Fleet::start(&fleet_dir, &host).await;
    let agent = node_agent_pids(&f.state.display().to_string())
        .first()
        .copied()
        .expect("the node agent's pid");
    let rss_idle = rss_kb(agent);
    let image = format!("{host}/fn/app:v1");

    // The first start pulls the image (not measured); while it runs, its config.json is
    // the hand-run baseline's.
    f.deploy(
        "warmup",
        &image,
        &[("autoscaling.knative.dev/initial-scale", "0")],
    )
    .await;
    let (status, first, _) = f.call("warmup").await;
    assert_eq!(
        status,
        200,
        "the first call; the fleet's log: {}",
        f.log.display()
    );
    println!(
        "first start (with the pull of a 2 MB image): {:.1} ms",
        first.as_secs_f64() * 1e3
    );
    let warm = f.instance_of("warmup-00001").await;
    let spec = kantai_config(&f.state, &warm)
        .expect("the config.json kantai wrote for the running instance");
    f.delete_and_wait_zero("warmup").await;
    let rss_after_pull = rss_kb(agent);

    // Cold starts through the gateway, the image in the store.
    let mut cold = Vec::new();
    let mut parts: Vec<[Option<f64>; 5]> = Vec::new();
    let mut sends = Vec::new();
    for i in 0..COLD_TRIES {
        if bench_start.elapsed() > Duration::from_secs(150) {
            break;
        }
        let name = format!("cold{i}");
        f.deploy(
            &name,
            &image,
            &[("autoscaling.knative.dev/initial-scale", "0")],
        )
        .await;
        let (status, elapsed, sent) = f.call(&name).await;
        assert_eq!(
            status,
            200,
            "cold start {i}; the fleet's log: {}",
            f.log.display()
        );
        cold.push(elapsed.as_secs_f64() * 1e3);
        let rev = format!("{name}-00001");
        let inst = f.instance_of(&rev).await;
        sends.push((rev, inst, sent));
        f.delete_and_wait_zero(&name).await;
    }
    // Cold starts of a revision that ran here and went back to zero: its next instance is
    // the container the node created ahead of demand, started with `runc start`.
    let mut held = Vec::new();
    f.deploy("again", &image, &[("autoscaling.knative.dev/window", "6s")])
        .await;
    let runc_root = f.state.join("nodes/node1/runc");
    for i in 0..HELD_TRIES {
        if bench_start.elapsed() > Duration::from_secs(170) {
            break;
        }
        f.wait_for(
            Duration::from_secs(40),
            "the revision at zero with a container created ahead of demand",
            || async {
                let zero = f
                    .instances()
                    .await
                    .iter()
                    .all(|v| v["spec"]["revision"] != "again-00001");
                (zero && created_containers(&runc_root) >= 1).then_some(())
            },
        )
        .await;
        let (status, elapsed, _) = f.call("again").await;
        assert_eq!(
            status,
            200,
            "held cold start {i}; the fleet's log: {}",
            f.log.display()
        );
        held.push(elapsed.as_secs_f64() * 1e3);
    }
    // Give the log writer a moment, then read the milestones.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(&f.log).unwrap_or_default();
    for (rev, inst, sent) in &sends {
        parts.push(milestones(&log, rev, inst, *sent));
    }

    let rss_after_cold = rss_kb(agent);
    // Memory: the agent with 1, then 10 container instances.
    let settle = || tokio::time::sleep(Duration::from_millis(500));
    let mut rss = Vec::new();
    for i in 0..10 {
        let name = format!("mem{i}");
        f.deploy(&name, &image, &[("autoscaling.knative.dev/min-scale", "1")])
            .await;
        f.wait_for(
            Duration::from_secs(30),
            "the instance to be ready",
            || async { (f.ready_instances(&format!("{name}-00001")).await >= 1).then_some(()) },
        )
        .await;
        if i == 0 || i == 9 {
            settle().await;
            rss.push(rss_kb(agent));
        }
    }
    let rss_1 = rss[0];
    let rss_10 = rss[1];
    for i in 0..10 {
        f.delete_and_wait_zero(&format!("mem{i}")).await;
    }
    settle().await;
    let rss_after = rss_kb(agent);
    let store_bytes = du(&f.state.join("nodes"));
    f.stop();

    // The hand-run baselines, with the fleet stopped (nothing else runs).
    let mut hand = HandRun::new(work, &app_bundle.join("rootfs"), spec);
    let mut run_d = Vec::new();
    let mut run_fg = Vec::new();
    let mut create = Vec::new();
    let mut start = Vec::new();
    let mut overlay = Vec::new();
    for i in 0..COLD_TRIES {
        if let Some(ms) = hand.run_d(&format!("bench-run-{i}")) {
            run_d.push(ms);
        }
        if let Some(ms) = hand.run_fg(&format!("bench-fg-{i}")) {
            run_fg.push(ms);
        }
        if let Some((c, s)) = hand.create_start(&format!("bench-cs-{i}")) {
            create.push(c);
            start.push(s);
        }
        if let Some(ms) = overlay_round(work, &app_bundle.join("rootfs")) {
            overlay.push(ms);
        }
    }
    // The hand-run containers' parent cgroup, in every hierarchy runc made it in.
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(h.path().join("kantai-bench"));
    }
    let _ = std::fs::remove_dir("/sys/fs/cgroup/kantai-bench");

    // Pull and unpack of the big image.
    let pull = pulls(work, &host).await;
    drop(registry);

    // The report.
    let [c50, c90, c99, cmax] = summary(cold.clone());
    let [r50, r90, r99, _] = summary(run_d.clone());
    let [s50, s90, _, _] = summary(start.clone());
    let create50 = median(&create);
    let part = |i: usize| -> Vec<f64> { parts.iter().filter_map(|p| p[i]).collect() };
    // Segment medians: each segment is the median of its per-try differences.
    let seg = |a: Option<usize>, b: Option<usize>| -> f64 {
        let d: Vec<f64> = parts
            .iter()
            .zip(&cold)
            .filter_map(|(p, total)| {
                let from = match a {
                    Some(i) => p[i]?,
                    None => 0.0,
                };
                let to = match b {
                    Some(i) => p[i]?,
                    None => *total,
                };
                Some(to - from)
            })
            .collect();
        median(&d)
    };
    let kantai_pull: Vec<f64> = pull.iter().map(|p| p.0).collect();
    let skopeo: Vec<f64> = pull.iter().map(|p| p.1).collect();
    let umoci: Vec<f64> = pull.iter().map(|p| p.2).collect();
    let both: Vec<f64> = pull.iter().map(|p| p.1 + p.2).collect();
    let [h50, h90, _, _] = summary(held.clone());
    let report = serde_json::json!({
        "cold_start_ms": {"p50": c50, "p90": c90, "p99": c99, "max": cmax, "tries": cold.len(), "all": cold},
        "cold_start_created_ahead_ms": {"p50": h50, "p90": h90, "tries": held.len(), "all": held},
        "milestones_ms_after_send": {
            "poke": part(0), "scale": part(1), "agent_starts": part(2),
            "runc_spawned": part(3), "ready": part(4),
        },
        "runc_run_d_ms": {"p50": r50, "p90": r90, "p99": r99, "tries": run_d.len()},
        "runc_create_ms": {"p50": create50},
        "runc_start_to_answer_ms": {"p50": s50, "p90": s90},
        "overlay_mount_ms": {"p50": median(&overlay)},
        "pull_ms": {"kantai": kantai_pull, "skopeo_copy": skopeo, "umoci_unpack": umoci},
        "big_image_bytes": {"compressed": big_compressed, "unpacked": big_unpacked},
        "runc_run_foreground_ms": {"p50": median(&run_fg), "tries": run_fg.len()},
        "node_agent_rss_kb": {"idle": rss_idle, "after_first_pull": rss_after_pull, "after_cold_starts": rss_after_cold, "one_instance": rss_1, "ten_instances": rss_10, "after": rss_after},
        "node_state_bytes": store_bytes,
    });
    let out = common::repo().join("target/bench-containers.json");
    let _ = std::fs::write(&out, serde_json::to_vec_pretty(&report).expect("json"));
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));

    let mut md = String::new();
    let n = cold.len();
    let _ = writeln!(
        md,
        "| cold start, image in the store ({n} tries) | kantai (gateway → answer) | `runc run -d` → answer | ratio | `runc start` → answer (after `runc create`) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| p50 | **{c50:.1} ms** | {r50:.1} ms | **{:.2}×** | {s50:.1} ms |",
        c50 / r50
    );
    let _ = writeln!(
        md,
        "| p90 | {c90:.1} ms | {r90:.1} ms | {:.2}× | {s90:.1} ms |",
        c90 / r90
    );
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| cold start of a revision that ran here, at zero ({} tries): its container created ahead of demand | kantai (gateway → answer) | `runc run -d` → answer | ratio |",
        held.len()
    );
    let _ = writeln!(md, "|---|---|---|---|");
    let _ = writeln!(
        md,
        "| p50 | **{h50:.1} ms** | {r50:.1} ms | **{:.2}×** |",
        h50 / r50
    );
    let _ = writeln!(
        md,
        "| p90 | {h90:.1} ms | {r90:.1} ms | {:.2}× |",
        h90 / r90
    );
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| kantai's cold start, part by part (median over the tries, from the fleet's log) | ms |"
    );
    let _ = writeln!(md, "|---|---|");
    let rows = [
        (
            "request sent → the gateway's poke logged by the control plane",
            None,
            Some(0),
        ),
        (
            "poke → the autoscaler's scale-up decision",
            Some(0),
            Some(1),
        ),
        (
            "decision → the node agent starts the instance (placement written, watched)",
            Some(1),
            Some(2),
        ),
        (
            "agent start → `runc run` spawned (store lookup, overlay mount, cgroup, config.json)",
            Some(2),
            Some(3),
        ),
        (
            "`runc run` spawned → first passing readiness probe",
            Some(3),
            Some(4),
        ),
        (
            "ready → the answer at the client (the held request released and proxied)",
            Some(4),
            None,
        ),
    ];
    for (what, a, b) in rows {
        let _ = writeln!(md, "| {what} | {:.1} |", seg(a, b));
    }
    let _ = writeln!(
        md,
        "| *baselines, same run:* `runc run` in the foreground → answer / `runc create` alone / `runc start` → answer / overlay mount of a fresh root | {:.1} / {create50:.1} / {s50:.1} / {:.2} |",
        median(&run_fg),
        median(&overlay)
    );
    let _ = writeln!(md);
    let (k50, sk50, u50, b50) = (
        median(&kantai_pull),
        median(&skopeo),
        median(&umoci),
        median(&both),
    );
    let _ = writeln!(
        md,
        "| pull + unpack, {:.0} MB image ({:.0} MB compressed, {} layers), empty store ({} rounds) | median |",
        big_unpacked as f64 / 1e6,
        big_compressed as f64 / 1e6,
        BIG_LAYERS + 1,
        pull.len()
    );
    let _ = writeln!(md, "|---|---|");
    let _ = writeln!(md, "| kantai store (`Store::pull`) | **{k50:.0} ms** |");
    let _ = writeln!(
        md,
        "| `skopeo copy` + `umoci unpack` | {b50:.0} ms ({sk50:.0} + {u50:.0}) |"
    );
    let _ = writeln!(
        md,
        "| ratio kantai / skopeo + umoci | **{:.2}×** |",
        k50 / b50
    );
    let _ = writeln!(md);
    let _ = writeln!(md, "| node agent resident memory | RSS |");
    let _ = writeln!(md, "|---|---|");
    let mb = |kb: u64| kb as f64 / 1024.0;
    let _ = writeln!(
        md,
        "| no instance, before any pull | {:.1} MB |",
        mb(rss_idle)
    );
    let _ = writeln!(
        md,
        "| no instance, after the first pull (2 MB image) and its instance | {:.1} MB |",
        mb(rss_after_pull)
    );
    let _ = writeln!(
        md,
        "| no instance, after the {n} cold starts | {:.1} MB |",
        mb(rss_after_cold)
    );
    let _ = writeln!(md, "| 1 container instance | {:.1} MB |", mb(rss_1));
    let _ = writeln!(
        md,
        "| 10 container instances | {:.1} MB (+{:.0} KB per instance over 1) |",
        mb(rss_10),
        (rss_10 as f64 - rss_1 as f64) / 9.0
    );
    let _ = writeln!(md, "| back at zero | {:.1} MB |", mb(rss_after));
    println!("\n{md}");
    if let Some(path) = std::env::var_os("KANTAI_BENCH_MD") {
        std::fs::write(&path, &md).expect("write the tables");
    }
}
