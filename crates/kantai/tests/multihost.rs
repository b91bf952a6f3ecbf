//! The control plane and the node agents as separate processes (`kantai control`,
//! `kantai node --join`): a restart of the control plane, and a fleet spread over network
//! namespaces, one address per host.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{hello, kantai_bin, pids_with_env, processes_mentioning};
use kantai_api::Client;
use kantai_api::resources::{INSTANCES, NODES, SERVICES};
use serde_json::Value;

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn signal(&self, s: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), s);
    }

    fn wait_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.0.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(prefix: &[&str], args: &[&str]) -> Proc {
    let (prog, pre) = match prefix.split_first() {
        Some((p, rest)) => (
            p.to_string(),
            rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ),
        None => (kantai_bin().to_owned(), Vec::new()),
    };
    let mut cmd = Command::new(prog);
    cmd.args(pre);
    if !prefix.is_empty() {
        cmd.arg(kantai_bin());
    }
    cmd.args(args)
        .env("KANTAI_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proc(cmd.spawn().expect("spawn kantai"))
}

async fn read_ready(path: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(b) = std::fs::read(path)
            && let Ok(v) = serde_json::from_slice(&b)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for<T, F, Fut>(limit: Duration, what: &str, f: F) -> T
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
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deploy(client: &Client, yaml: &str) -> String {
    let docs = kantai_model::manifest::read(yaml, &Default::default()).expect("yaml");
    let obj = docs[0].object.as_ref().expect("object").to_json();
    let name = obj["metadata"]["name"].as_str().expect("name").to_owned();
    client
        .create(SERVICES, "default", &obj)
        .await
        .expect("create");
    wait_for(
        Duration::from_secs(60),
        "the service to be Ready",
        || async {
            let v = client.get(SERVICES, "default", &name).await.ok()?;
            v["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
                .then_some(())
        },
    )
    .await;
    name
}

async fn get(gateway: &str, host: &str) -> (u16, String) {
    match kantai_cli_send(gateway, host).await {
        Ok(v) => v,
        Err(e) => (0, e),
    }
}

async fn kantai_cli_send(gateway: &str, host: &str) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(gateway)
        .await
        .map_err(|e| e.to_string())?;
    let (mut s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/")
        .header(http::header::HOST, host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let r = tokio::time::timeout(Duration::from_secs(10), s.send_request(req))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_keeps_every_service_while_warm_traffic_flows() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("topology.yaml"),
        "nodes:\n  - {name: node1, address: 127.0.0.1, gateway: \"127.0.0.1:0\"}\ncontrol: {node: node1}\n",
    )
    .expect("topology");
    let state = d.join("state").display().to_string();
    let topo = d.join("topology.yaml").display().to_string();
    let cready = d.join("control.json");
    let control_args = |listen: &str| {
        vec![
            "control".to_owned(),
            "--listen".to_owned(),
            listen.to_owned(),
            "--secure-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--state-dir".to_owned(),
            state.clone(),
            "--topology".to_owned(),
            topo.clone(),
            "--ready-file".to_owned(),
            cready.display().to_string(),
        ]
    };
    let args: Vec<String> = control_args("127.0.0.1:0");
    let mut control = spawn(&[], &args.iter().map(String::as_str).collect::<Vec<_>>());
    let api = read_ready(&cready).await["api"]
        .as_str()
        .expect("api")
        .to_owned();
    let nready = d.join("node1.json").display().to_string();
    let node = spawn(
        &[],
        &[
            "node",
            "--join",
            &api,
            "--name",
            "node1",
            "--token-file",
            &format!("{state}/token"),
            "--ready-file",
            &nready,
        ],
    );
    let gateway = read_ready(Path::new(&nready)).await["gateway"]
        .as_str()
        .expect("gw")
        .to_owned();
    let token = std::fs::read_to_string(format!("{state}/token")).expect("token");
    let client = Client::new(&api)
        .expect("client")
        .with_token(Some(token.trim().to_owned()));
    deploy(
        &client,
        &hello("steady", &[("autoscaling.knative.dev/min-scale", "1")], ""),
    )
    .await;
    let host = "steady.default.svc.cluster.local";
    let (status, before) = get(&gateway, host).await;
    assert_eq!(status, 200, "{before}");

    // The control plane dies without warning.
    control.signal(nix::sys::signal::Signal::SIGKILL);
    control.wait_exit(Duration::from_secs(5));
    drop(control);
    // Warm traffic keeps flowing through the agent.
    for _ in 0..30 {
        let (status, body) = get(&gateway, host).await;
        assert_eq!(status, 200, "while the control plane is down: {body}");
        assert_eq!(
            body, before,
            "served by another instance while the control plane is down"
        );
    }

    // It comes back on the same address, with every object.
    std::fs::remove_file(&cready).expect("ready file");
    let listen = api.trim_start_matches("http://").to_owned();
    let args = control_args(&listen);
    let control = spawn(&[], &args.iter().map(String::as_str).collect::<Vec<_>>());
    read_ready(&cready).await;
    let svc = wait_for(
        Duration::from_secs(20),
        "the service after the restart",
        || async { client.get(SERVICES, "default", "steady").await.ok() },
    )
    .await;
    assert_eq!(svc["status"]["latestReadyRevisionName"], "steady-00001");
    // The agent's instance is known again, and it is still the same one.
    wait_for(
        Duration::from_secs(20),
        "the instance to be known again",
        || async {
            let list = client.list(INSTANCES, Some("default")).await.ok()?;
            (list.len() == 1 && list[0]["status"]["ready"] == true).then_some(())
        },
    )
    .await;
    let (status, after) = get(&gateway, host).await;
    assert_eq!((status, &after), (200, &before));
    // Scaling works again: a new service deploys and answers.
    deploy(
        &client,
        &hello("fresh", &[("autoscaling.knative.dev/min-scale", "1")], ""),
    )
    .await;
    // Ready means every ready node's gateway has the route (Knative's ingress readiness),
    // even while the agent's watches are reconnecting after the restart.
    let (status, body) = get(&gateway, "fresh.default.svc.cluster.local").await;
    assert_eq!(status, 200, "{body}");

    node.signal(nix::sys::signal::Signal::SIGTERM);
    control.signal(nix::sys::signal::Signal::SIGTERM);
    drop(node);
    drop(control);
    let left = processes_mentioning(&state);
    assert!(left.is_empty(), "{left:?}");
}

/// The ready instances of a service, as (instance name, node) pairs.
async fn ready_instances(client: &Client, service: &str) -> Vec<(String, String)> {
    let list = client
        .list(INSTANCES, Some("default"))
        .await
        .unwrap_or_default();
    list.iter()
        .filter(|i| i["spec"]["service"] == service && i["status"]["ready"] == true)
        .map(|i| {
            (
                i["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                i["spec"]["node"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Whether the Node object's Ready condition is `status` ("True" or "False").
async fn node_ready_is(client: &Client, node: &str, status: &str) -> bool {
    client.get(NODES, "", node).await.is_ok_and(|n| {
        n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == status)
        })
    })
}

/// A node agent killed without warning: the control plane marks its node NotReady within
/// 5 s and places its instance on the other nodes, whose gateways keep answering every
/// request meanwhile; the agent started again rejoins with no duplicate instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_agent_is_replaced_within_seconds_and_rejoins_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("topology.yaml"),
        "nodes:\n\
         \x20 - {name: node1, address: 127.0.0.1, gateway: \"127.0.0.1:0\"}\n\
         \x20 - {name: node2, address: 127.0.0.1, gateway: \"127.0.0.1:0\"}\n\
         \x20 - {name: node3, address: 127.0.0.1, gateway: \"127.0.0.1:0\"}\n\
         control: {node: node1}\n",
    )
    .expect("topology");
    let state = d.join("state").display().to_string();
    let topo = d.join("topology.yaml").display().to_string();
    let cready = d.join("control.json");
    let control = spawn(
        &[],
        &[
            "control",
            "--listen",
            "127.0.0.1:0",
            "--secure-listen",
            "127.0.0.1:0",
            "--state-dir",
            &state,
            "--topology",
            &topo,
            "--ready-file",
            &cready.display().to_string(),
        ],
    );
    let api = read_ready(&cready).await["api"]
        .as_str()
        .expect("api")
        .to_owned();
    let token_file = format!("{state}/token");
    let start_node = |name: &str| {
        let ready = d.join(format!("{name}.json"));
        let _ = std::fs::remove_file(&ready);
        let p = spawn(
            &[],
            &[
                "node",
                "--join",
                &api,
                "--name",
                name,
                "--token-file",
                &token_file,
                "--ready-file",
                &ready.display().to_string(),
            ],
        );
        (p, ready)
    };
    let mut gateways = Vec::new();
    let mut agents = Vec::new();
    for name in ["node1", "node2", "node3"] {
        let (p, ready) = start_node(name);
        gateways.push(
            read_ready(&ready).await["gateway"]
                .as_str()
                .expect("gateway")
                .to_owned(),
        );
        agents.push(p);
    }
    let token = std::fs::read_to_string(&token_file).expect("token");
    let client = Client::new(&api)
        .expect("client")
        .with_token(Some(token.trim().to_owned()));
    let three = [
        ("autoscaling.knative.dev/min-scale", "3"),
        ("autoscaling.knative.dev/max-scale", "3"),
    ];
    deploy(&client, &hello("sturdy", &three, "")).await;
    let before = wait_for(
        Duration::from_secs(30),
        "an instance on each node",
        || async {
            let r = ready_instances(&client, "sturdy").await;
            let mut nodes: Vec<&str> = r.iter().map(|(_, n)| n.as_str()).collect();
            nodes.sort();
            (nodes == ["node1", "node2", "node3"]).then_some(r)
        },
    )
    .await;
    let host = "sturdy.default.svc.cluster.local";

    // node3's agent dies without warning (its instance with it).
    let killed = Instant::now();
    agents[2].signal(nix::sys::signal::Signal::SIGKILL);
    agents[2].wait_exit(Duration::from_secs(5));
    // Meanwhile the other nodes' gateways answer every request, 20 a second.
    let load = {
        let gateways = [gateways[0].clone(), gateways[1].clone()];
        tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..300usize {
                let (status, body) = get(&gateways[i % 2], host).await;
                out.push((status, body));
                if out.len() >= 200 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            out
        })
    };
    wait_for(Duration::from_secs(10), "node3 to be NotReady", || async {
        node_ready_is(&client, "node3", "False").await.then_some(())
    })
    .await;
    let noticed = killed.elapsed();
    assert!(
        noticed < Duration::from_secs(5),
        "node3 was marked NotReady {noticed:?} after its agent died"
    );
    let moved = wait_for(
        Duration::from_secs(20),
        "three ready instances on node1 and node2",
        || async {
            let r = ready_instances(&client, "sturdy").await;
            (r.len() == 3 && r.iter().all(|(_, n)| n != "node3")).then_some(r)
        },
    )
    .await;
    let answers = load.await.expect("load");
    let failed: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed while node3 was down: {failed:?}",
        failed.len(),
        answers.len()
    );
    // The instances of node1 and node2 stayed where they were.
    for (name, node) in before.iter().filter(|(_, n)| n != "node3") {
        assert!(
            moved.contains(&(name.clone(), node.clone())),
            "{name} on {node} was replaced: {moved:?}"
        );
    }

    // node3's agent comes back: it rejoins, its old instance is gone for good, and the
    // revision still has exactly three instances (objects and processes).
    let (p, ready) = start_node("node3");
    agents[2] = p;
    let gw3 = read_ready(&ready).await["gateway"]
        .as_str()
        .expect("gateway")
        .to_owned();
    wait_for(
        Duration::from_secs(10),
        "node3 to be Ready again",
        || async { node_ready_is(&client, "node3", "True").await.then_some(()) },
    )
    .await;
    let (status, body) = get(&gw3, host).await;
    assert_eq!(status, 200, "through the rejoined node: {body}");
    // Settled: two reports and a scaling tick later, nothing changes any more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = client
        .list(INSTANCES, Some("default"))
        .await
        .expect("instances");
    let names: Vec<&str> = all
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "after the rejoin: {names:?}");
    assert_eq!(ready_instances(&client, "sturdy").await.len(), 3);
    assert_eq!(
        pids_with_env("K_SERVICE=sturdy").len(),
        3,
        "instance processes after the rejoin"
    );
    drop(agents);
    drop(control);
    let left = processes_mentioning(&state);
    assert!(left.is_empty(), "{left:?}");
}

/// Two hosts as network namespaces joined by a veth pair, one address each, a real (not
/// emulated) network between them.
struct Netns {
    names: [String; 2],
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let id = std::process::id() % 10_000;
        let names = [format!("kt{id}a"), format!("kt{id}b")];
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let n = Netns {
            names: names.clone(),
        };
        ip(&["netns", "add", &names[0]])?;
        ip(&["netns", "add", &names[1]])?;
        let (va, vb) = (format!("v{id}a"), format!("v{id}b"));
        ip(&[
            "link", "add", &va, "netns", &names[0], "type", "veth", "peer", "name", &vb, "netns",
            &names[1],
        ])?;
        for (ns, dev, addr) in [
            (&names[0], &va, "10.77.0.1/24"),
            (&names[1], &vb, "10.77.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_over_two_hosts_in_network_namespaces() {
    let net = match Netns::create() {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "SKIPPED: this machine does not let the test create network namespaces ({e}); the multi-host mode is not tested here"
            );
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("topology.yaml"),
        "nodes:\n  - {name: node1, address: 10.77.0.1}\n  - {name: node2, address: 10.77.0.2}\n\
         control: {node: node1, listen: \"10.77.0.1:7400\"}\nemulate: false\n",
    )
    .expect("topology");
    let state = d.join("state").display().to_string();
    let topo = d.join("topology.yaml").display().to_string();
    let (a, b) = (net.names[0].as_str(), net.names[1].as_str());
    let cready = d.join("control.json").display().to_string();
    let _control = spawn(
        &["ip", "netns", "exec", a],
        &[
            "control",
            "--listen",
            "10.77.0.1:7400",
            "--state-dir",
            &state,
            "--topology",
            &topo,
            "--ready-file",
            &cready,
        ],
    );
    read_ready(Path::new(&cready)).await;
    // Host b gets its own copy of the fleet's token, as an operator would copy it.
    let token_a = format!("{state}/token");
    let token_b = d.join("host-b-token").display().to_string();
    std::fs::copy(&token_a, &token_b).expect("copy the token");
    let kubeconfig = format!("{state}/kubeconfig");
    let r1 = d.join("n1.json").display().to_string();
    let r2 = d.join("n2.json").display().to_string();
    let _n1 = spawn(
        &["ip", "netns", "exec", a],
        &[
            "node",
            "--join",
            "http://10.77.0.1:7400",
            "--name",
            "node1",
            "--token-file",
            &token_a,
            "--ready-file",
            &r1,
        ],
    );
    let _n2 = spawn(
        &["ip", "netns", "exec", b],
        &[
            "node",
            "--join",
            "http://10.77.0.1:7400",
            "--name",
            "node2",
            "--token-file",
            &token_b,
            "--ready-file",
            &r2,
        ],
    );
    assert_eq!(
        read_ready(Path::new(&r1)).await["gateway"],
        "10.77.0.1:8080"
    );
    assert_eq!(
        read_ready(Path::new(&r2)).await["gateway"],
        "10.77.0.2:8080"
    );

    // The test runs on neither host: it talks to them with `kantai` inside host b.
    let kantai_in_b = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", b, kantai_bin()])
            .args(args)
            .args([
                "--server",
                "http://10.77.0.1:7400",
                "--kubeconfig",
                &kubeconfig,
            ])
            .output()
            .expect("kantai in host b");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let manifest = d.join("svc.yaml");
    std::fs::write(
        &manifest,
        hello("spread", &[("autoscaling.knative.dev/min-scale", "1")], ""),
    )
    .expect("manifest");
    let (ok, out, err) = kantai_in_b(&["apply", "-f", &manifest.display().to_string()]);
    assert!(ok, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (ok, out, _) = kantai_in_b(&["invoke", "spread", "--from", "node2"]);
        if ok {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "the service never answered from host b"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(body.starts_with("Konnichiwa from spread-node"), "{body}");
    let (ok, table, _) = kantai_in_b(&["get", "instances", "-o", "wide"]);
    assert!(ok && table.contains("spread-node"), "{table}");
    // Both hosts answer, wherever the instance runs.
    let (ok, from_a, err) = kantai_in_b(&["invoke", "spread", "--from", "node1"]);
    assert!(ok, "{err}");
    assert_eq!(from_a, body);
}
