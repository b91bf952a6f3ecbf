//! The process backend: an instance is a program on this host, started through kantai's
//! shim (its cgroups joined, an unprivileged user, bound to the agent's life). Its volume
//! mounts are binds in a private mount namespace the shim makes (as root, before it drops
//! to the instance's user): the process sees its files at each `mountPath`, the node does
//! not. A `mountPath` missing on the node is created for it (and removed when the last
//! instance using it ends, if empty).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::warn;

use crate::Runtime;
use crate::cgroup::GroupLimits;
use crate::instance::{Backend, Failure, InstanceSpec, State};
use crate::volumes::Volumes;

/// Why a process instance with volume mounts cannot start on an agent that is not root.
pub(crate) const MOUNTS_NEED_ROOT: &str =
    "volume mounts of process functions need the node agent to run as root";

/// One process instance.
pub(crate) struct Process {
    pub(crate) runtime: Runtime,
    pub(crate) spec: InstanceSpec,
    pub(crate) cmd: Vec<String>,
    pub(crate) cgroup_files: Vec<PathBuf>,
    pub(crate) volumes: Arc<Volumes>,
    /// The mount points kantai created on the node for this instance, once acquired.
    pub(crate) mount_points: Option<Vec<PathBuf>>,
}

impl Process {
    fn cgroup_name(&self) -> String {
        self.spec.id()
    }

    fn limits(&self) -> Result<GroupLimits, Failure> {
        GroupLimits::of(&self.spec.container.resources).map_err(|e| Failure {
            reason: e.reason(),
            message: e.in_image(&self.spec.container.image).to_string(),
            retry: false,
        })
    }
}

impl Backend for Process {
    async fn prepare(&mut self, _state: &watch::Sender<State>) -> Result<(), Failure> {
        if !self.spec.container.volume_mounts.is_empty() {
            // Never run without its files: a process that would find nothing at its
            // mountPath fails now, saying why.
            let why = if !nix::unistd::Uid::effective().is_root() {
                Some(MOUNTS_NEED_ROOT.to_owned())
            } else if self.runtime.inner.launcher.is_none() {
                Some(format!(
                    "{MOUNTS_NEED_ROOT} and start them through kantai's shim (this runtime has no launcher)"
                ))
            } else {
                None
            };
            if let Some(message) = why {
                return Err(Failure {
                    reason: "CreateContainerError",
                    message,
                    retry: false,
                });
            }
        }
        let limits = self.limits()?;
        if limits.is_empty() {
            return Ok(());
        }
        let inner = &self.runtime.inner;
        match &inner.cgroups {
            Some(cg) => match cg.create(&self.cgroup_name(), &limits) {
                Ok(files) => self.cgroup_files = files,
                Err(e) => self
                    .runtime
                    .warn_no_cgroups(&format!("cannot create a cgroup: {e}")),
            },
            None => self
                .runtime
                .warn_no_cgroups("this host does not let kantai create cgroups"),
        }
        Ok(())
    }

    async fn command(&mut self, port: u16, _held: bool) -> Result<Command, Failure> {
        let mounts = self.mounts().await?;
        let s = &self.spec;
        let inner = &self.runtime.inner;
        let mut cmd = match &inner.launcher {
            // The launcher (kantai's shim) ties the instance to this process's life and joins
            // the cgroups before it becomes the instance's program.
            Some(launcher) => {
                let mut c = Command::new(launcher);
                c.arg("__shim")
                    .arg("--parent")
                    .arg(std::process::id().to_string());
                for f in &self.cgroup_files {
                    c.arg("--cgroup").arg(f);
                }
                // The shim joins the cgroups while it may, then becomes this user.
                if let Some(r) = self.runtime.run_as() {
                    c.arg("--user").arg(format!("{}:{}", r.uid, r.gid));
                }
                for m in &mounts {
                    c.arg("--mount")
                        .arg(&m.source)
                        .arg(&m.destination)
                        .arg(if m.read_only { "ro" } else { "rw" });
                }
                // Inside the mount namespace: the directory may be a mount.
                if !s.container.volume_mounts.is_empty()
                    && let Some(dir) = &s.container.working_dir
                {
                    c.arg("--cwd").arg(dir);
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
        // The kubelet's env (envFrom, then env with `$(VAR)` expanded, Secret, ConfigMap
        // and Downward API values), as containers get it; fixed for this start.
        let config = self.volumes.good();
        for (k, v) in kantai_container::resolved_env(&s.container, &config, &s.downward()) {
            cmd.env(k, v);
        }
        for (k, v) in s.knative_env(port) {
            cmd.env(k, v);
        }
        if let Some(dir) = &s.container.working_dir
            && s.container.volume_mounts.is_empty()
        {
            cmd.current_dir(dir);
        }
        // A program that is not there fails here, before anything runs: say which and
        // where it was looked for, at once.
        let program = &self.cmd[0];
        if inner.launcher.is_some() && !exists(program) {
            return Err(Failure {
                reason: "StartError",
                message: format!(
                    "cannot start {program:?}: no such program (looked up in PATH={})",
                    std::env::var("PATH").unwrap_or_default()
                ),
                retry: false,
            });
        }
        Ok(cmd)
    }

    async fn terminate(&self, child: &mut Child, grace: Duration) {
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            warn!(instance = %self.spec.name, "instance ignored SIGTERM for {grace:?}; killing it");
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait().await;
        }
        // Anything the instance started in its group goes with it.
        let _ = killpg(group, Signal::SIGKILL);
    }

    fn exec_prefix(&self) -> Vec<String> {
        Vec::new()
    }

    fn exit_reason(&self, code: Option<i32>) -> &'static str {
        match code {
            Some(0) => "Completed",
            _ => "Error",
        }
    }

    async fn cleanup(&mut self) {
        if let Some(cg) = &self.runtime.inner.cgroups {
            cg.remove(&self.cgroup_name());
        }
        let held = self.mount_points.take().unwrap_or_default();
        let runtime = self.runtime.clone();
        let _ =
            tokio::task::spawn_blocking(move || runtime.inner.mount_points.release(&held)).await;
    }
}

impl Drop for Process {
    /// An instance dropped without its stop still gives back the mount points it held
    /// (its process is killed with it).
    fn drop(&mut self) {
        if let Some(held) = self.mount_points.take() {
            self.runtime.inner.mount_points.release(&held);
        }
    }
}

impl Process {
    /// The volume mounts of one run (subPaths bound afresh), with their mount points on
    /// the node made sure of the first time.
    async fn mounts(&mut self) -> Result<Vec<crate::volumes::HostMount>, Failure> {
        if self.spec.container.volume_mounts.is_empty() {
            return Ok(Vec::new());
        }
        let mounts = self.volumes.mounts_for_start(&self.spec.container).await?;
        if self.mount_points.is_none() {
            let (runtime, list) = (self.runtime.clone(), mounts.clone());
            let record = self.volumes.dir().map(Path::to_path_buf);
            let held = tokio::task::spawn_blocking(move || {
                let mut held = Vec::new();
                for m in &list {
                    let record = record.as_deref().unwrap_or(Path::new("/nonexistent"));
                    match runtime.inner.mount_points.acquire(
                        Path::new(&m.destination),
                        m.file,
                        record,
                    ) {
                        Ok(h) => held.extend(h),
                        Err(e) => {
                            runtime.inner.mount_points.release(&held);
                            return Err(format!("mountPath {}: {e}", m.destination));
                        }
                    }
                }
                Ok(held)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
            .map_err(|message| Failure {
                reason: "CreateContainerError",
                message,
                retry: false,
            })?;
            self.mount_points = Some(held);
        }
        Ok(mounts)
    }
}

/// Whether a program can be found: a path that exists, or a name found in `PATH`.
fn exists(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}
