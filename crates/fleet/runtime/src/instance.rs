//! One instance: a supervised process with readiness, restarts with backoff, captured logs
//! and a graceful stop.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::Runtime;
use crate::cgroup::Limits;
use crate::logs::LogBuffer;
use crate::probe::ReadinessProbe;

/// What to run.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    /// Instance name (`PODNAME`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service (`K_SERVICE`).
    pub service: String,
    /// Configuration (`K_CONFIGURATION`).
    pub configuration: String,
    /// Revision (`K_REVISION`).
    pub revision: String,
    /// Node (`NODENAME`).
    pub node: String,
    /// The revision's container.
    pub container: kantai_model::serving::Container,
    /// How long a stopping instance may take before it is killed (the revision's timeout).
    pub grace: Duration,
}

/// The lifecycle of an instance as the runtime sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Process is starting or restarting (not ready yet).
    pub starting: bool,
    /// Passes its readiness probe.
    pub ready: bool,
    /// The port it listens on (`PORT`).
    pub port: Option<u16>,
    /// Restarts after crashes.
    pub restarts: u32,
    /// When the current process started.
    pub started_at: Option<SystemTime>,
    /// Why it is not ready (crash, waiting for backoff, ...).
    pub message: Option<String>,
    /// Exit code (or negative signal number) of the last process that ended.
    pub last_exit_code: Option<i32>,
    /// The instance gave up (stop requested and done).
    pub stopped: bool,
}

/// A running instance. Dropping it kills the process at once; call [`Instance::stop`] for a
/// graceful stop.
pub struct Instance {
    state: watch::Receiver<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    logs: Arc<LogBuffer>,
    task: tokio::task::JoinHandle<()>,
}

/// The first restart waits this long; each further one twice as long.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest wait between restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran this long resets the backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

impl Instance {
    pub(crate) fn start(runtime: &Runtime, spec: InstanceSpec, cmd: Vec<String>) -> Instance {
        let (tx, rx) = watch::channel(State {
            starting: true,
            ..State::default()
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let logs = Arc::new(LogBuffer::default());
        let sup = Supervisor {
            runtime: runtime.clone(),
            spec,
            cmd,
            state: tx,
            logs: logs.clone(),
        };
        let task = tokio::spawn(sup.run(stop_rx));
        Instance {
            state: rx,
            stop: Some(stop_tx),
            logs,
            task,
        }
    }

    /// A receiver of the instance's state.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// The last `tail` lines of output (all kept lines when `None`).
    pub fn logs(&self, tail: Option<usize>) -> String {
        self.logs.text(tail)
    }

    /// A handle to the log buffer that outlives the instance.
    pub fn log_buffer(&self) -> Arc<LogBuffer> {
        self.logs.clone()
    }

    /// Stops the instance: SIGTERM to its process group, SIGKILL after the grace period.
    /// Returns once the process is gone.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // The supervisor's child has kill_on_drop; aborting the task drops it.
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

struct Supervisor {
    runtime: Runtime,
    spec: InstanceSpec,
    cmd: Vec<String>,
    state: watch::Sender<State>,
    logs: Arc<LogBuffer>,
}

enum Outcome {
    Stop,
    Exited(Option<i32>, Duration),
}

impl Supervisor {
    async fn run(self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let cgroup_files = self.setup_cgroups();
        let mut backoff = BACKOFF_START;
        loop {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => {
                    self.fail(format!("no free port for the instance: {e}"));
                    if sleep_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    continue;
                }
            };
            let child = match self.spawn(port, &cgroup_files) {
                Ok(c) => c,
                Err(e) => {
                    self.fail(format!("cannot start {:?}: {e}", self.cmd[0]));
                    if sleep_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            match self.supervise(child, port, &mut stop).await {
                Outcome::Stop => break,
                Outcome::Exited(code, ran) => {
                    if ran >= BACKOFF_RESET_AFTER {
                        backoff = BACKOFF_START;
                    }
                    let what = match code {
                        Some(c) if c < 0 => format!("killed by signal {}", -c),
                        Some(c) => format!("exited with code {c}"),
                        None => "exited".to_owned(),
                    };
                    warn!(instance = %self.spec.name, "instance {what}; restarting in {backoff:?}");
                    self.state.send_modify(|s| {
                        s.ready = false;
                        s.starting = true;
                        s.restarts += 1;
                        s.last_exit_code = code;
                        s.message = Some(format!("container {what}; restarting"));
                    });
                    if sleep_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        if let Some(cg) = &self.runtime.inner.cgroups {
            cg.remove(&self.cgroup_name());
        }
        self.state.send_modify(|s| {
            s.ready = false;
            s.starting = false;
            s.stopped = true;
        });
    }

    fn cgroup_name(&self) -> String {
        format!("{}.{}", self.spec.namespace, self.spec.name)
    }

    fn limits(&self) -> Limits {
        let l = &self.spec.container.resources.limits;
        Limits {
            cpu: l.get("cpu").map(|q| q.value()),
            memory: l.get("memory").map(|q| q.value().max(0.0) as u64),
        }
    }

    fn setup_cgroups(&self) -> Vec<PathBuf> {
        let limits = self.limits();
        if limits.is_empty() {
            return Vec::new();
        }
        match &self.runtime.inner.cgroups {
            Some(cg) => match cg.create(&self.cgroup_name(), limits) {
                Ok(files) => files,
                Err(e) => {
                    self.runtime
                        .warn_no_cgroups(&format!("cannot create a cgroup: {e}"));
                    Vec::new()
                }
            },
            None => {
                self.runtime
                    .warn_no_cgroups("this host does not let kantai create cgroups");
                Vec::new()
            }
        }
    }

    fn fail(&self, message: String) {
        warn!(instance = %self.spec.name, "{message}");
        self.state.send_modify(|s| {
            s.ready = false;
            s.message = Some(message);
        });
    }

    fn spawn(&self, port: u16, cgroup_files: &[PathBuf]) -> std::io::Result<Child> {
        let s = &self.spec;
        let mut cmd = match &self.runtime.inner.launcher {
            // The launcher (kantai's shim) ties the instance to this process's life and joins
            // the cgroups before it becomes the instance's program.
            Some(launcher) => {
                let mut c = Command::new(launcher);
                c.arg("__shim")
                    .arg("--parent")
                    .arg(std::process::id().to_string());
                for f in cgroup_files {
                    c.arg("--cgroup").arg(f);
                }
                // The shim joins the cgroups while it may, then becomes this user.
                if let Some(r) = self.runtime.run_as() {
                    c.arg("--user").arg(format!("{}:{}", r.uid, r.gid));
                }
                c.arg("--").args(&self.cmd);
                c
            }
            None => {
                let mut c = Command::new(&self.cmd[0]);
                c.args(&self.cmd[1..]);
                if let Some(r) = self.runtime.run_as() {
                    c.uid(r.uid).gid(r.gid);
                }
                c
            }
        };
        cmd.env_clear();
        for key in ["PATH", "LANG", "TZ", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        }
        for e in &s.container.env {
            if let Some(v) = &e.value {
                cmd.env(&e.name, v);
            }
        }
        cmd.env("PORT", port.to_string())
            .env("K_SERVICE", &s.service)
            .env("K_CONFIGURATION", &s.configuration)
            .env("K_REVISION", &s.revision)
            .env("PODNAME", &s.name)
            .env("NODENAME", &s.node);
        if let Some(dir) = &s.container.working_dir {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(capture(out, self.logs.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(capture(err, self.logs.clone()));
        }
        info!(instance = %s.name, pid = child.id(), port, "instance started");
        self.state.send_modify(|st| {
            st.port = Some(port);
            st.started_at = Some(SystemTime::now());
            st.starting = true;
            st.ready = false;
            st.message = None;
        });
        Ok(child)
    }

    async fn supervise(
        &self,
        mut child: Child,
        port: u16,
        stop: &mut tokio::sync::oneshot::Receiver<()>,
    ) -> Outcome {
        let started = tokio::time::Instant::now();
        let probe = ReadinessProbe::resolve(self.spec.container.readiness_probe.as_ref(), port);
        let readiness = self.readiness(&probe);
        tokio::pin!(readiness);
        loop {
            tokio::select! {
                status = child.wait() => {
                    let code = status.ok().and_then(|s| {
                        use std::os::unix::process::ExitStatusExt;
                        s.code().or_else(|| s.signal().map(|sig| -sig))
                    });
                    return Outcome::Exited(code, started.elapsed());
                }
                _ = &mut readiness => {}
                _ = &mut *stop => {
                    self.terminate(&mut child).await;
                    return Outcome::Stop;
                }
            }
        }
    }

    /// Probes fast until ready (so that readiness does not dominate a cold start), then every
    /// probe period; never returns.
    async fn readiness(&self, probe: &ReadinessProbe) {
        tokio::time::sleep(probe.initial_delay).await;
        // Every millisecond (tokio's timer resolution) for the first half second, where
        // nearly every process gets ready, then backing off to Knative's 25 ms: a request
        // waits for this, and a failed loopback connect costs microseconds.
        let mut interval = Duration::from_millis(if probe.is_cheap() { 1 } else { 10 });
        let mut successes = 0;
        let mut probes = 0u32;
        loop {
            if probe.check().await {
                successes += 1;
                if successes >= probe.success_threshold {
                    break;
                }
            } else {
                successes = 0;
            }
            tokio::time::sleep(interval).await;
            probes += 1;
            if probes >= 500 {
                interval = (interval * 2).min(Duration::from_millis(25));
            }
        }
        debug!(instance = %self.spec.name, "instance ready");
        self.state.send_modify(|s| {
            s.ready = true;
            s.starting = false;
            s.message = None;
        });
        let mut failures = 0;
        let mut successes = 0;
        loop {
            tokio::time::sleep(probe.period).await;
            if probe.check().await {
                failures = 0;
                successes += 1;
                if successes >= probe.success_threshold && !self.state.borrow().ready {
                    self.state.send_modify(|s| {
                        s.ready = true;
                        s.message = None;
                    });
                }
            } else {
                successes = 0;
                failures += 1;
                if failures >= probe.failure_threshold && self.state.borrow().ready {
                    warn!(instance = %self.spec.name, "instance failed its readiness probe");
                    self.state.send_modify(|s| {
                        s.ready = false;
                        s.message = Some("readiness probe failed".to_owned());
                    });
                }
            }
        }
    }

    async fn terminate(&self, child: &mut Child) {
        self.state.send_modify(|s| s.ready = false);
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGTERM);
        let grace = self.spec.grace.max(Duration::from_millis(100));
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            warn!(instance = %self.spec.name, "instance ignored SIGTERM for {grace:?}; killing it");
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait().await;
        }
        // Anything the instance started in its group goes with it.
        let _ = killpg(group, Signal::SIGKILL);
        info!(instance = %self.spec.name, "instance stopped");
    }
}

/// Waits `d` unless a stop is requested first (then returns true).
async fn sleep_or_stop(stop: &mut tokio::sync::oneshot::Receiver<()>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop => true,
    }
}

/// Copies an output stream into the log buffer line by line. A line longer than the buffer
/// keeps is cut, so a process that never writes a newline cannot grow kantai's memory.
async fn capture(stream: impl AsyncRead + Unpin, logs: Arc<LogBuffer>) {
    let mut reader = BufReader::new(stream);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(c) => c,
        };
        let n = chunk.len();
        for &b in chunk {
            if b == b'\n' {
                logs.push(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            } else if line.len() <= crate::logs::MAX_LINE_BYTES {
                line.push(b);
            }
        }
        reader.consume(n);
    }
    if !line.is_empty() {
        logs.push(String::from_utf8_lossy(&line).into_owned());
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}
