//! The process backend: an instance is a program on this host, exec'd by the agent's child
//! once the launcher (`launch.rs`) set it up (its cgroups joined, an unprivileged user, bound
//! to the agent's life). Its volume mounts are binds in a private mount namespace the
//! launcher makes (as root, before it drops to the instance's user): the process sees its files at each `mountPath`, the node does
//! not. A `mountPath` missing on the node is created for it (and removed when the last
//! instance using it ends, if empty).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;
use tracing::warn;

use crate::cgroup::GroupLimits;
use crate::instance::{Backend, Failure, InstanceSpec, Running, Start, State};
use crate::volumes::Volumes;
use crate::{Runtime, launch};

/// The search path of an instance when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

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
            if !nix::unistd::Uid::effective().is_root() {
                return Err(Failure {
                    reason: "CreateContainerError",
                    message: MOUNTS_NEED_ROOT.to_owned(),
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

    async fn command(&mut self, port: u16, _held: bool) -> Result<Start, Failure> {
        let mounts = self.mounts().await?;
        let s = &self.spec;
        let plan = launch::Plan {
            cgroups: self.cgroup_files.clone(),
            user: self.runtime.run_as(),
            mounts: mounts
                .iter()
                .map(|m| launch::Bind {
                    source: m.source.clone(),
                    destination: m.destination.clone().into(),
                    read_only: m.read_only,
                })
                .collect(),
            cwd: s.container.working_dir.as_ref().map(Into::into),
        };
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        for key in ["PATH", "LANG", "TZ", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(key) {
                env.push((key.into(), v));
            }
        }
        if std::env::var_os("PATH").is_none() {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        // The kubelet's env (envFrom, then env with `$(VAR)` expanded, Secret, ConfigMap
        // and Downward API values), as containers get it; fixed for this start.
        let config = self.volumes.good();
        for (k, v) in kantai_container::resolved_env(&s.container, &config, &s.downward()) {
            env.push((k.into(), v.into()));
        }
        for (k, v) in s.knative_env(port) {
            env.push((k.into(), v.into()));
        }
        // The program is looked up in the instance's own PATH, as its exec would.
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut cmd = launch::command(&self.cmd, &path, plan).map_err(|e| Failure {
            reason: "StartError",
            message: e.to_string(),
            // A program that is not there will not be there on the next try either.
            retry: !matches!(e, launch::LaunchError::NoProgram { .. }),
        })?;
        cmd.env(env).map_err(|e| Failure {
            reason: "CreateContainerConfigError",
            message: e.to_string(),
            retry: false,
        })?;
        Ok(Start::Launch(cmd))
    }

    async fn terminate(&self, child: &mut Running, grace: Duration) {
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

    fn program(&self) -> Option<&str> {
        self.cmd.first().map(String::as_str)
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
