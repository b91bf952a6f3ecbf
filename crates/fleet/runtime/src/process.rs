//! The process backend: an instance is a program on this host, started through kantai's
//! shim (its cgroups joined, an unprivileged user, bound to the agent's life).

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::warn;

use crate::Runtime;
use crate::cgroup::GroupLimits;
use crate::instance::{Backend, Failure, InstanceSpec, State};

/// One process instance.
pub(crate) struct Process {
    pub(crate) runtime: Runtime,
    pub(crate) spec: InstanceSpec,
    pub(crate) cmd: Vec<String>,
    pub(crate) cgroup_files: Vec<PathBuf>,
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
        for (k, v) in s.knative_env(port) {
            cmd.env(k, v);
        }
        if let Some(dir) = &s.container.working_dir {
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
