//! Starting a fleet as child processes of this one (`kantai up`, `kantai demo`): a control
//! plane and one node agent per node, each a `kantai` process, bound to this process's life.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use kantai_model::topology::Topology;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Environment variable naming the parent a child must not outlive.
pub const PARENT_ENV: &str = "KANTAI_PARENT_PID";

/// Called first thing by every kantai process: a child of `kantai up` asks the kernel for
/// SIGTERM when its parent dies, so that even a `kill -9` of `kantai up` leaves nothing
/// behind (the child then stops its own instances).
pub fn bind_to_parent() {
    let Some(parent) = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return;
    };
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    if std::os::unix::process::parent_id() != parent {
        // The parent is already gone.
        std::process::exit(1);
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Writes a JSON "ready file" atomically (a parent waits for it).
pub fn write_ready(path: &Path, v: &Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(v)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// One kantai child process.
struct Proc {
    name: String,
    child: Child,
}

/// A running fleet.
pub struct Fleet {
    /// The API URL.
    pub api: String,
    /// Gateway address of each node, in topology order.
    pub gateways: Vec<(String, SocketAddr)>,
    /// Admin address (health, metrics) of each node, in topology order.
    pub admins: Vec<(String, SocketAddr)>,
    /// The kubeconfig the control plane wrote (API address and token).
    pub kubeconfig: Option<PathBuf>,
    procs: Vec<Proc>,
}

/// How to start a fleet.
pub struct Launch<'a> {
    /// The topology.
    pub topology: &'a Topology,
    /// The fleet config file, if any.
    pub config: Option<&'a Path>,
    /// The state directory.
    pub state_dir: &'a Path,
    /// The API listen address.
    pub listen: SocketAddr,
    /// Whether the children's logs are shown (prefixed with their name).
    pub show_logs: bool,
    /// Where decision logs go (`control.jsonl`, `NODE.jsonl`), and whether they include
    /// load-balancing decisions.
    pub decision_log: Option<(&'a Path, bool)>,
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the kantai executable")
}

fn spawn(name: &str, args: &[String], show_logs: bool) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(exe()?);
    cmd.args(args)
        .env(PARENT_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C in the terminal reaches `kantai up` alone, which
        // then stops the nodes before the control plane.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start the {name} process"))?;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let prefix = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if show_logs {
                    eprintln!("[{prefix}] {l}");
                }
            }
        });
    }
    Ok(Proc {
        name: name.to_owned(),
        child,
    })
}

async fn wait_ready(p: &mut Proc, file: &Path, limit: Duration) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(bytes) = std::fs::read(file)
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        {
            return Ok(v);
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            bail!(
                "the {} process exited ({status}) before it was ready; run with the logs shown to see why",
                p.name
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the {} process was not ready within {limit:?}", p.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Fleet {
    /// The API's bearer token, if it has one.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        Ok(match &self.kubeconfig {
            Some(k) => crate::kubeconfig::read(k)?.token,
            None => None,
        })
    }

    /// A client of the fleet's API, with its token.
    pub fn client(&self) -> anyhow::Result<kantai_api::Client> {
        Ok(kantai_api::Client::new(&self.api)?.with_token(self.token()?))
    }

    /// Starts the control plane, then every node agent, and waits until all serve.
    pub async fn start(l: Launch<'_>) -> anyhow::Result<Fleet> {
        std::fs::create_dir_all(l.state_dir)
            .with_context(|| format!("cannot create {}", l.state_dir.display()))?;
        let topo_file = l.state_dir.join("topology.yaml");
        let topo_json = serde_json::to_value(l.topology)?;
        std::fs::write(&topo_file, kantai_model::manifest::to_yaml_one(&topo_json))
            .with_context(|| format!("cannot write {}", topo_file.display()))?;
        let ready_dir = l.state_dir.join("run");
        let _ = std::fs::remove_dir_all(&ready_dir);
        std::fs::create_dir_all(&ready_dir)?;

        let mut fleet = Fleet {
            api: String::new(),
            kubeconfig: None,
            gateways: Vec::new(),
            admins: Vec::new(),
            procs: Vec::new(),
        };
        let control_ready = ready_dir.join("control.json");
        let mut args = vec![
            "control".to_owned(),
            "--listen".to_owned(),
            l.listen.to_string(),
            "--state-dir".to_owned(),
            l.state_dir.display().to_string(),
            "--topology".to_owned(),
            topo_file.display().to_string(),
            "--ready-file".to_owned(),
            control_ready.display().to_string(),
        ];
        if let Some(c) = l.config {
            args.extend(["--config".to_owned(), c.display().to_string()]);
        }
        if let Some((dir, _)) = l.decision_log {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            args.extend([
                "--decision-log".to_owned(),
                dir.join("control.jsonl").display().to_string(),
            ]);
        }
        let mut control = spawn("control", &args, l.show_logs)?;
        let v = wait_ready(&mut control, &control_ready, Duration::from_secs(30)).await;
        fleet.procs.push(control);
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                fleet.stop().await;
                return Err(e);
            }
        };
        fleet.api = v["api"]
            .as_str()
            .ok_or_else(|| anyhow!("bad ready file of the control plane"))?
            .to_owned();
        fleet.kubeconfig = v["kubeconfig"].as_str().map(PathBuf::from);
        let token_file = crate::kubeconfig::token_path(l.state_dir);
        let mut waiting = Vec::new();
        for n in &l.topology.nodes {
            let file = ready_dir.join(format!("{}.json", n.name));
            let mut args = vec![
                "node".to_owned(),
                "--join".to_owned(),
                fleet.api.clone(),
                "--name".to_owned(),
                n.name.clone(),
                "--token-file".to_owned(),
                token_file.display().to_string(),
                "--ready-file".to_owned(),
                file.display().to_string(),
                "--state-dir".to_owned(),
                l.state_dir
                    .join("nodes")
                    .join(&n.name)
                    .display()
                    .to_string(),
            ];
            if let Some(c) = l.config {
                args.extend(["--config".to_owned(), c.display().to_string()]);
            }
            if let Some((dir, lb)) = l.decision_log {
                args.extend([
                    "--decision-log".to_owned(),
                    dir.join(format!("{}.jsonl", n.name)).display().to_string(),
                ]);
                if lb {
                    args.push("--log-load-balancing".to_owned());
                }
            }
            match spawn(&n.name, &args, l.show_logs) {
                Ok(p) => {
                    fleet.procs.push(p);
                    waiting.push((n.name.clone(), file));
                }
                Err(e) => {
                    fleet.stop().await;
                    return Err(e);
                }
            }
        }
        let mut gateways = BTreeMap::new();
        for (i, (name, file)) in waiting.iter().enumerate() {
            let proc = &mut fleet.procs[i + 1];
            match wait_ready(proc, file, Duration::from_secs(30)).await {
                Ok(v) => {
                    let addr = |key: &str| -> anyhow::Result<SocketAddr> {
                        v[key]
                            .as_str()
                            .and_then(|g| g.parse().ok())
                            .ok_or_else(|| anyhow!("bad ready file of {name}: no {key} address"))
                    };
                    gateways.insert(i, (name.clone(), addr("gateway")?, addr("admin")?));
                }
                Err(e) => {
                    fleet.stop().await;
                    return Err(e);
                }
            }
        }
        for (name, gw, admin) in gateways.into_values() {
            fleet.gateways.push((name.clone(), gw));
            fleet.admins.push((name, admin));
        }
        Ok(fleet)
    }

    /// Resolves when one of the fleet's processes exits on its own: its name and status.
    pub async fn exited(&mut self) -> (String, String) {
        if self.procs.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.procs.iter_mut().map(|p| {
            Box::pin(async move {
                let status = p.child.wait().await;
                let status = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("cannot be waited for: {e}"),
                };
                (p.name.clone(), status)
            })
        });
        futures_util::future::select_all(waits).await.0
    }

    /// Stops every process: the nodes first (they stop their instances), then the control
    /// plane; SIGKILL for any that does not exit in time.
    pub async fn stop(&mut self) {
        let mut procs: Vec<Proc> = self.procs.drain(..).collect();
        // Nodes are after the control plane in the list: stop them first.
        procs.reverse();
        let (nodes, control): (Vec<Proc>, Vec<Proc>) =
            procs.into_iter().partition(|p| p.name != "control");
        for group in [nodes, control] {
            for p in &group {
                if let Some(pid) = p.child.id().and_then(|i| i32::try_from(i).ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
            }
            for mut p in group {
                match tokio::time::timeout(Duration::from_secs(20), p.child.wait()).await {
                    Ok(_) => {}
                    Err(_) => {
                        eprintln!("kantai: {} did not stop within 20 s; killing it", p.name);
                        let _ = p.child.kill().await;
                    }
                }
            }
        }
    }
}
