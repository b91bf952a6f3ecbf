//! One instance: a supervised process (a local program, or an OCI runtime running a
//! container) with startup, readiness and liveness probes, restarts with backoff, captured
//! logs and a graceful stop. What differs between the two kinds of instance is a [`Backend`];
//! everything here is the same for both.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::launch::{Launch, Process};
use crate::logs::LogBuffer;
use crate::probe::{Pacer, ReadinessProbe};
use crate::volumes::{VolumeError, Volumes};

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
    /// The image to run when it differs from the container's: the revision's tag resolved
    /// to a digest (`status.containerStatuses[].imageDigest`), so every instance of a
    /// revision runs the same image even if the tag moves.
    pub image: Option<String>,
    /// The merged pod- and container-level security settings.
    pub security: kantai_model::serving::SecurityContext,
    /// How long a stopping instance may take before it is killed (the revision's timeout).
    pub grace: Duration,
    /// The revision's volumes (`spec.volumes`), which the container's `volumeMounts` name.
    pub volumes: Vec<kantai_model::serving::Volume>,
    /// The Secrets' and ConfigMaps' values the container refers to, resolved by the
    /// control plane. Shared: the node keeps one per revision.
    pub config: std::sync::Arc<kantai_model::serving::resolve::ResolvedConfig>,
    /// The instance's fields the Downward API (`env[].valueFrom.fieldRef`) can read.
    pub pod: PodFields,
}

/// An instance's fields as a pod's, for `fieldRef`: what `metadata.*`, `spec.*` and
/// `status.*` paths read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodFields {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.labels`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `status.hostIP` (and `status.podIP`: instances share the node's network).
    pub host_ip: String,
    /// `spec.serviceAccountName`.
    pub service_account: String,
}

impl InstanceSpec {
    /// The environment Knative gives every instance, after the container's own: it wins.
    pub fn knative_env(&self, port: u16) -> [(&'static str, String); 6] {
        [
            ("PORT", port.to_string()),
            ("K_SERVICE", self.service.clone()),
            ("K_CONFIGURATION", self.configuration.clone()),
            ("K_REVISION", self.revision.clone()),
            ("PODNAME", self.name.clone()),
            ("NODENAME", self.node.clone()),
        ]
    }

    /// The instance's name on the node: its cgroup's and its container's (`<ns>.<name>`;
    /// instance names are unique on a node, namespaces keep them apart).
    pub fn id(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// What the Downward API (`fieldRef`, `resourceFieldRef`) reads of this instance.
    pub fn downward(&self) -> kantai_container::Downward<'_> {
        kantai_container::Downward {
            pod_name: &self.name,
            namespace: &self.namespace,
            uid: &self.pod.uid,
            node_name: &self.node,
            host_ip: &self.pod.host_ip,
            service_account: &self.pod.service_account,
            labels: &self.pod.labels,
            annotations: &self.pod.annotations,
            ..kantai_container::Downward::default()
        }
    }

    /// The image reference to run: the pinned one when the revision has it.
    pub fn image(&self) -> &str {
        self.image.as_deref().unwrap_or(&self.container.image)
    }
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
    /// Why it is not ready (pulling, crash, waiting for backoff, ...).
    pub message: Option<String>,
    /// Kubernetes' reason for the state: `ErrImagePull`, `CreateContainerConfigError`,
    /// `OOMKilled`, `Error`, `CrashLoopBackOff`, ...
    pub reason: Option<String>,
    /// It cannot start, and retrying soon will not fix it (the image does not exist, the
    /// program is missing): requests held for it should be answered now.
    pub failed: bool,
    /// Exit code (or negative signal number) of the last process that ended.
    pub last_exit_code: Option<i32>,
    /// The image digest the instance runs (containers only).
    pub image_digest: Option<String>,
    /// The instance gave up (stop requested and done).
    pub stopped: bool,
}

/// Why an instance cannot start.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Kubernetes' reason (`ErrImagePull`, `CreateContainerConfigError`, ...).
    pub reason: &'static str,
    /// What is wrong, naming the image or program.
    pub message: String,
    /// Whether trying again later may help (a registry that was unreachable).
    pub retry: bool,
}

/// How one kind of instance is run: the seam between the supervisor and the process or
/// OCI runtime.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Everything done once before the first start (pulling an image, mounting its root);
    /// progress goes into `state`'s message.
    fn prepare(
        &mut self,
        state: &watch::Sender<State>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
    /// The command of one start, listening on `port` (after undoing what the last run left).
    /// `held`: the start is to wait for a line on the command's input (see `holds_start`).
    fn command(
        &mut self,
        port: u16,
        held: bool,
    ) -> impl Future<Output = Result<Start, Failure>> + Send;
    /// Asks the running instance to stop, then makes sure it did: SIGTERM, and SIGKILL
    /// after `grace`.
    fn terminate(&self, child: &mut Running, grace: Duration) -> impl Future<Output = ()> + Send;
    /// What runs an exec probe's command (inside the container for containers).
    fn exec_prefix(&self) -> Vec<String>;
    /// Whether a start can be held: its command made ready (a container created) and
    /// started on a line of input.
    fn holds_start(&self) -> bool {
        false
    }
    /// The program a start runs, as its errors name it, when the command's program is
    /// another (a file opened for exec).
    fn program(&self) -> Option<&str> {
        None
    }
    /// Kubernetes' reason for an exit (`OOMKilled` when the memory limit killed it).
    fn exit_reason(&self, code: Option<i32>) -> &'static str;
    /// Removes what `prepare` and `command` left (mounts, cgroups, bundles).
    fn cleanup(&mut self) -> impl Future<Output = ()> + Send;
}

/// How one start runs.
pub(crate) enum Start {
    /// A command of its own (an OCI runtime's, with its input piped for a held start).
    Command(Command),
    /// The function itself, through kantai's launcher (`launch.rs`).
    Launch(Launch),
}

/// A started process: killed when dropped.
pub(crate) enum Running {
    /// Started by tokio.
    Command(tokio::process::Child),
    /// Started by kantai's launcher.
    Launch(Process),
}

impl Running {
    /// Its pid, until it was waited for.
    pub(crate) fn id(&self) -> Option<u32> {
        match self {
            Running::Command(c) => c.id(),
            Running::Launch(p) => p.id(),
        }
    }

    /// Waits for it to end.
    pub(crate) async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self {
            Running::Command(c) => c.wait().await,
            Running::Launch(p) => p.wait().await,
        }
    }

    /// Kills it (SIGKILL) and waits for it to end.
    pub(crate) async fn kill(&mut self) -> std::io::Result<()> {
        match self {
            Running::Command(c) => c.kill().await,
            Running::Launch(p) => p.kill().await,
        }
    }
}

/// A running instance. Dropping it kills the process at once; call [`Instance::stop`] for a
/// graceful stop.
pub struct Instance {
    state: watch::Receiver<State>,
    /// Asks the supervisor to stop, within the grace period it carries.
    stop: Option<tokio::sync::oneshot::Sender<Duration>>,
    /// Starts a held instance.
    release: Option<tokio::sync::oneshot::Sender<()>>,
    logs: Arc<LogBuffer>,
    task: tokio::task::JoinHandle<()>,
    /// The revision's grace period.
    grace: Duration,
    /// Its volumes, and the Secret and ConfigMap values they and its env come from.
    volumes: Arc<Volumes>,
}

/// How long a starting instance's cheap readiness probe runs on the pacer's beat before it
/// backs off.
const FAST_PROBING: Duration = Duration::from_millis(500);
/// The first restart waits this long; each further one twice as long.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest wait between restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran this long resets the backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// The first retry of a preparation that may succeed later (an unreachable registry), as
/// Kubernetes' image pull back-off; each further one twice as long, up to five minutes.
const PREPARE_RETRY_START: Duration = Duration::from_secs(10);
/// The longest wait between preparation retries (Kubernetes' image pull back-off cap).
const PREPARE_RETRY_MAX: Duration = Duration::from_secs(300);

impl Instance {
    pub(crate) fn start<B: Backend>(
        backend: B,
        spec: InstanceSpec,
        volumes: Arc<Volumes>,
        pacer: Arc<Pacer>,
    ) -> Instance {
        Instance::launch(backend, spec, volumes, pacer, false)
    }

    /// An instance prepared and created but held before its start (a container created
    /// ahead of demand) until [`Instance::release`].
    pub(crate) fn standby<B: Backend>(
        backend: B,
        spec: InstanceSpec,
        volumes: Arc<Volumes>,
        pacer: Arc<Pacer>,
    ) -> Instance {
        Instance::launch(backend, spec, volumes, pacer, true)
    }

    fn launch<B: Backend>(
        backend: B,
        spec: InstanceSpec,
        volumes: Arc<Volumes>,
        pacer: Arc<Pacer>,
        held: bool,
    ) -> Instance {
        let (tx, rx) = watch::channel(State {
            starting: true,
            ..State::default()
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        let logs = Arc::new(LogBuffer::default());
        let held = held && backend.holds_start();
        let sup = Supervisor {
            backend,
            spec,
            state: tx,
            logs: logs.clone(),
            release: held.then_some(release_rx),
            volumes: volumes.clone(),
            pacer,
        };
        let grace = sup.spec.grace;
        let task = tokio::spawn(sup.run(stop_rx));
        Instance {
            state: rx,
            stop: Some(stop_tx),
            release: held.then_some(release_tx),
            logs,
            task,
            grace,
            volumes,
        }
    }

    /// Takes the Secret and ConfigMap values the control plane sent anew: the files of the
    /// instance's `secret`, `configMap` and `projected` volumes are rewritten at once (each
    /// volume swapped whole by its `..data` link; one whose content is the same is not
    /// touched; subPath mounts keep what they bound, as in Kubernetes). The env of a
    /// running process stays as it started (Kubernetes' rule); a later start (a restart)
    /// takes these values. Values with something `missing` change no file (the kubelet
    /// keeps a deleted Secret's last files), and an instance waiting for them
    /// (`CreateContainerConfigError`) starts once nothing is missing. Returns the volumes
    /// rewritten. A few small files on a tmpfs: cheap enough to call from async code.
    pub fn update_config(
        &self,
        config: Arc<kantai_model::serving::resolve::ResolvedConfig>,
    ) -> Result<Vec<String>, VolumeError> {
        self.volumes.set_config(config)
    }

    /// Starts an instance held by [`Instance::standby`] (nothing for any other).
    pub fn release(&mut self) {
        if let Some(r) = self.release.take() {
            let _ = r.send(());
        }
    }

    /// Whether the instance is held, created but not started.
    pub fn is_held(&self) -> bool {
        self.release.is_some()
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

    /// Stops the instance: SIGTERM, SIGKILL after the grace period (the revision's
    /// timeout), then removes what it left (mounts, cgroups). Returns once the process is
    /// gone.
    pub async fn stop(self) {
        let grace = self.grace;
        self.stop_within(grace).await;
    }

    /// Stops the instance with a grace period of its own (an agent shutting down, whose
    /// requests were drained already, does not wait the revision's whole timeout).
    pub async fn stop_within(mut self, grace: Duration) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(grace);
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

struct Supervisor<B> {
    backend: B,
    spec: InstanceSpec,
    state: watch::Sender<State>,
    logs: Arc<LogBuffer>,
    /// For a held instance: the start's signal (its first start waits for it).
    release: Option<tokio::sync::oneshot::Receiver<()>>,
    volumes: Arc<Volumes>,
    /// The node's pace of fast readiness probes.
    pacer: Arc<Pacer>,
}

enum Outcome {
    Stop,
    /// An emptyDir went over its `sizeLimit`: the instance ends, as the kubelet evicts.
    Evicted(String),
    Exited(Option<i32>, Duration),
    Unhealthy(&'static str),
}

type StopRx = tokio::sync::oneshot::Receiver<Duration>;

impl<B: Backend> Supervisor<B> {
    async fn run(mut self, mut stop: StopRx) {
        if self.prepare(&mut stop).await {
            self.restart_loop(&mut stop).await;
        }
        self.backend.cleanup().await;
        let volumes = self.volumes.clone();
        let _ = tokio::task::spawn_blocking(move || volumes.tear_down()).await;
        self.state.send_modify(|s| {
            s.ready = false;
            s.starting = false;
            s.stopped = true;
        });
    }

    /// Prepares the backend, retrying what may succeed later; false when stopped first.
    async fn prepare(&mut self, stop: &mut StopRx) -> bool {
        let mut retry = PREPARE_RETRY_START;
        loop {
            // The kubelet's: a container whose Secrets or ConfigMaps are missing waits with
            // `CreateContainerConfigError` until they are there.
            let mut config = self.volumes.subscribe();
            let missing = config.borrow_and_update().missing.clone();
            if !missing.is_empty() {
                let message = missing.join("; ");
                warn!(instance = %self.spec.name, reason = "CreateContainerConfigError", "cannot start: {message}");
                self.state.send_modify(|s| {
                    s.failed = true;
                    s.starting = false;
                    s.reason = Some("CreateContainerConfigError".to_owned());
                    s.message = Some(message);
                });
                tokio::select! {
                    _ = config.changed() => continue,
                    _ = &mut *stop => return false,
                }
            }
            // A stop does not wait for a pull to end.
            let prepared = tokio::select! {
                r = self.backend.prepare(&self.state) => r,
                _ = &mut *stop => return false,
            };
            let prepared = match prepared {
                Ok(()) => self.set_up_volumes().await,
                Err(f) => Err(f),
            };
            match prepared {
                Ok(()) => {
                    self.state.send_modify(|s| {
                        s.failed = false;
                        s.reason = None;
                        s.message = None;
                    });
                    return true;
                }
                Err(f) => {
                    warn!(instance = %self.spec.name, reason = f.reason, "cannot start: {}", f.message);
                    self.state.send_modify(|s| {
                        s.failed = true;
                        s.starting = false;
                        s.reason = Some(f.reason.to_owned());
                        s.message = Some(f.message.clone());
                    });
                    if !f.retry {
                        // Nothing will change until the revision does: wait for the stop.
                        let _ = stop.await;
                        return false;
                    }
                    if sleep_or_stop(stop, retry).await {
                        return false;
                    }
                    retry = (retry * 2).min(PREPARE_RETRY_MAX);
                }
            }
        }
    }

    /// Mounts the volumes and writes their files, off the async workers.
    async fn set_up_volumes(&self) -> Result<(), Failure> {
        // Most functions have none: no hop to a blocking thread (one that has to be
        // started, after ten idle seconds) in their cold start.
        if self.volumes.is_empty() {
            return Ok(());
        }
        let volumes = self.volumes.clone();
        let r = tokio::task::spawn_blocking(move || volumes.set_up())
            .await
            .unwrap_or_else(|e| {
                Err(VolumeError::Io {
                    volume: String::new(),
                    what: "set-up failed:",
                    path: String::new(),
                    error: e.to_string(),
                })
            });
        r.map_err(|e| Failure {
            reason: match e {
                VolumeError::BadPath { .. } | VolumeError::UnknownVolume { .. } => {
                    "CreateContainerConfigError"
                }
                VolumeError::Io { .. } => "CreateContainerError",
            },
            message: e.to_string(),
            retry: matches!(e, VolumeError::Io { .. }),
        })
    }

    /// Returns (the kubelet's eviction message) once an emptyDir on disk holds more than its
    /// `sizeLimit`, checked every 2 s; never when no emptyDir has one.
    async fn over_limit(&self) -> String {
        if !self.volumes.has_disk_limit() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (volumes, spec) = (self.volumes.clone(), self.spec.volumes.clone());
            if let Ok(Some((name, limit))) =
                tokio::task::spawn_blocking(move || volumes.over_limit(&spec)).await
            {
                return format!("Usage of EmptyDir volume {name:?} exceeds the limit {limit:?}.");
            }
        }
    }

    async fn restart_loop(&mut self, stop: &mut StopRx) {
        let mut backoff = BACKOFF_START;
        loop {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => {
                    self.fail(
                        "Error",
                        format!("no free port for the instance: {e}"),
                        false,
                    );
                    if sleep_or_stop(stop, backoff).await {
                        return;
                    }
                    continue;
                }
            };
            let child = match self.spawn(port).await {
                Ok(c) => c,
                Err(f) => {
                    // A program that cannot start now will not start on a retry soon
                    // either: say so at once (requests held for it are answered), and
                    // keep trying in case it appears.
                    self.fail(f.reason, f.message, !f.retry);
                    if sleep_or_stop(stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let outcome = self.supervise(child, port, stop).await;
            let (code, reason, what) = match outcome {
                Outcome::Stop => return,
                Outcome::Evicted(message) => {
                    // Not restarted: the kubelet evicts the pod, and its data goes with it.
                    self.fail("Evicted", message, true);
                    let _ = (&mut *stop).await;
                    return;
                }
                Outcome::Exited(code, ran) => {
                    if ran >= BACKOFF_RESET_AFTER {
                        backoff = BACKOFF_START;
                    }
                    let reason = self.backend.exit_reason(code);
                    let what = match code {
                        _ if reason == "OOMKilled" => {
                            "was killed for going over its memory limit (OOMKilled)".to_owned()
                        }
                        Some(c) if c < 0 => format!("was killed by signal {}", -c),
                        Some(c) => format!("exited with code {c}"),
                        None => "exited".to_owned(),
                    };
                    (code, reason, what)
                }
                Outcome::Unhealthy(why) => (None, "Error", format!("failed its {why}")),
            };
            warn!(instance = %self.spec.name, "instance {what}; restarting in {backoff:?}");
            self.state.send_modify(|s| {
                s.ready = false;
                s.starting = true;
                s.restarts += 1;
                s.last_exit_code = code.or(s.last_exit_code);
                s.reason = Some(reason.to_owned());
                s.message = Some(format!("container {what}; restarting"));
            });
            if sleep_or_stop(stop, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn fail(&self, reason: &'static str, message: String, failed: bool) {
        warn!(instance = %self.spec.name, "{message}");
        self.state.send_modify(|s| {
            s.ready = false;
            s.failed = failed;
            s.reason = Some(reason.to_owned());
            s.message = Some(message);
        });
    }

    async fn spawn(&mut self, port: u16) -> Result<Running, Failure> {
        let held = self.release.is_some();
        let start = self.backend.command(port, held).await?;
        let failure = |program: String, e: std::io::Error| Failure {
            reason: "StartError",
            message: format!("cannot start {program:?}: {e}"),
            // A program that is not there will not be there on the next try either.
            retry: e.kind() != std::io::ErrorKind::NotFound,
        };
        let child = match start {
            Start::Command(mut cmd) => {
                let stdin = if held {
                    std::process::Stdio::piped()
                } else {
                    std::process::Stdio::null()
                };
                cmd.stdin(stdin)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .process_group(0)
                    .kill_on_drop(true);
                let mut child = cmd.spawn().map_err(|e| {
                    let program = self.backend.program().map_or_else(
                        || cmd.as_std().get_program().to_string_lossy().into_owned(),
                        str::to_owned,
                    );
                    failure(program, e)
                })?;
                let (out, err) = (child.stdout.take(), child.stderr.take());
                self.capture(out, err);
                Running::Command(child)
            }
            Start::Launch(launch) => {
                let program = launch.name().to_owned();
                let mut child = launch.spawn().map_err(|e| failure(program, e))?;
                let (out, err) = (child.stdout.take(), child.stderr.take());
                self.capture(out, err);
                Running::Launch(child)
            }
        };
        info!(instance = %self.spec.name, pid = child.id(), port, "instance started");
        self.state.send_modify(|st| {
            st.port = Some(port);
            st.started_at = Some(SystemTime::now());
            st.starting = true;
            st.ready = false;
            st.failed = false;
            st.message = None;
        });
        Ok(child)
    }

    /// Copies a started process's output and error output into its log.
    fn capture(
        &self,
        out: Option<impl AsyncRead + Send + Unpin + 'static>,
        err: Option<impl AsyncRead + Send + Unpin + 'static>,
    ) {
        if let Some(out) = out {
            tokio::spawn(capture(out, self.logs.clone()));
        }
        if let Some(err) = err {
            tokio::spawn(capture(err, self.logs.clone()));
        }
    }

    async fn supervise(&mut self, mut child: Running, port: u16, stop: &mut StopRx) -> Outcome {
        // The command's input, taken out: waiting for the child closes it (tokio does, so
        // that a child reading its input cannot deadlock the wait), and for a held start
        // that would mean "not wanted". Only a held start's command has one.
        let mut input = match &mut child {
            Running::Command(c) => c.stdin.take(),
            Running::Launch(_) => None,
        };
        // A held first start waits here, created, for its release (or its end).
        if let Some(release) = self.release.take() {
            tokio::select! {
                r = release => if r.is_err() {
                    // The handle went without releasing: the container is not wanted.
                    input = None;
                },
                status = child.wait() => {
                    // Its creation failed (the runtime said why in the log): a container
                    // made ahead of demand is not restarted as a running one; it ends, and
                    // the demand, when it comes, starts an instance of its own.
                    let code = status.ok().and_then(|s| s.code());
                    warn!(instance = %self.spec.name, ?code, "the container created ahead of demand ended before its start");
                    return Outcome::Stop;
                }
                _ = &mut *stop => {
                    // Never started: closing its input has the shim delete it.
                    drop(input);
                    if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                        self.backend.terminate(&mut child, Duration::from_millis(100)).await;
                    }
                    return Outcome::Stop;
                }
            }
        }
        if let Some(mut input) = input {
            use tokio::io::AsyncWriteExt;
            self.state
                .send_modify(|s| s.started_at = Some(SystemTime::now()));
            let _ = input.write_all(b"start\n").await;
            // Kept open: the shim reads one line; closing early is harmless either way.
            drop(input);
        }
        let started = tokio::time::Instant::now();
        let c = &self.spec.container;
        let prefix = self.backend.exec_prefix();
        let readiness = ReadinessProbe::resolve(c.readiness_probe.as_ref(), port, &prefix);
        let liveness = c
            .liveness_probe
            .as_ref()
            .map(|p| ReadinessProbe::resolve(Some(p), port, &prefix));
        let startup = c
            .startup_probe
            .as_ref()
            .map(|p| ReadinessProbe::resolve(Some(p), port, &prefix));
        let health = self.health(startup, readiness, liveness);
        tokio::pin!(health);
        let over_limit = self.over_limit();
        tokio::pin!(over_limit);
        tokio::select! {
            status = child.wait() => {
                let code = status.ok().and_then(|s| {
                    use std::os::unix::process::ExitStatusExt;
                    s.code().or_else(|| s.signal().map(|sig| -sig))
                });
                Outcome::Exited(code, started.elapsed())
            }
            why = &mut health => {
                warn!(instance = %self.spec.name, "instance failed its {why}; restarting it");
                self.state.send_modify(|s| s.ready = false);
                self.backend.terminate(&mut child, self.spec.grace).await;
                Outcome::Unhealthy(why)
            }
            message = &mut over_limit => {
                warn!(instance = %self.spec.name, "{message} Evicting it");
                self.state.send_modify(|s| s.ready = false);
                self.backend.terminate(&mut child, self.spec.grace).await;
                Outcome::Evicted(message)
            }
            grace = &mut *stop => {
                self.state.send_modify(|s| s.ready = false);
                let grace = grace.unwrap_or(self.spec.grace).max(Duration::from_millis(100));
                self.backend.terminate(&mut child, grace).await;
                info!(instance = %self.spec.name, "instance stopped");
                Outcome::Stop
            }
        }
    }

    /// Kubernetes' probes: the startup probe first (nothing else runs until it passes),
    /// then readiness and liveness side by side. Returns only when the instance must be
    /// restarted, naming the probe that failed.
    async fn health(
        &self,
        startup: Option<ReadinessProbe>,
        readiness: ReadinessProbe,
        liveness: Option<ReadinessProbe>,
    ) -> &'static str {
        if let Some(p) = &startup
            && !self.passes_startup(p).await
        {
            return "startup probe";
        }
        let live = async {
            match &liveness {
                Some(p) => {
                    fails(p).await;
                    "liveness probe"
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            never = self.readiness(&readiness) => never,
            why = live => why,
        }
    }

    /// Probes until the startup probe succeeds (true) or fails its threshold (false).
    async fn passes_startup(&self, p: &ReadinessProbe) -> bool {
        tokio::time::sleep(p.initial_delay).await;
        let mut failures = 0;
        loop {
            if p.check().await {
                return true;
            }
            failures += 1;
            if failures >= p.failure_threshold {
                return false;
            }
            tokio::time::sleep(p.period).await;
        }
    }

    /// Probes fast until ready (so that readiness does not dominate a cold start), then every
    /// probe period; never returns.
    async fn readiness(&self, probe: &ReadinessProbe) -> &'static str {
        tokio::time::sleep(probe.initial_delay).await;
        // On the node's pacer's beat (every 200 µs when few start) for the first half second,
        // where nearly every process gets ready, then backing off to Knative's 25 ms: a request
        // waits for this, and a failed loopback connect costs microseconds.
        // A command probe spawns a process each time (`runc exec` into a container costs
        // tens of milliseconds): 100 ms apart, not back to back.
        let cheap = probe.is_cheap();
        let fast_until = tokio::time::Instant::now() + FAST_PROBING;
        let mut paced = cheap.then(|| self.pacer.join());
        let mut interval = Duration::from_millis(if cheap { 2 } else { 100 });
        let mut successes = 0;
        loop {
            if probe.check().await {
                successes += 1;
                if successes >= probe.success_threshold {
                    break;
                }
            } else {
                successes = 0;
            }
            if paced.is_some() && tokio::time::Instant::now() < fast_until {
                self.pacer.beat().await;
                continue;
            }
            paced = None;
            tokio::time::sleep(interval).await;
            if cheap {
                interval = (interval * 2).min(Duration::from_millis(25));
            }
        }
        drop(paced);
        debug!(instance = %self.spec.name, "instance ready");
        // The reason stays: it says why the last run ended (OOMKilled, Error), as a pod's
        // lastState does.
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
}

/// Returns once `p` failed its threshold in a row (a liveness probe: probed every period
/// from its initial delay).
async fn fails(p: &ReadinessProbe) {
    tokio::time::sleep(p.initial_delay).await;
    let mut failures = 0;
    loop {
        if p.check().await {
            failures = 0;
        } else {
            failures += 1;
            if failures >= p.failure_threshold {
                return;
            }
        }
        tokio::time::sleep(p.period).await;
    }
}

/// Waits `d` unless a stop is requested first (then returns true).
pub(crate) async fn sleep_or_stop(stop: &mut StopRx, d: Duration) -> bool {
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
