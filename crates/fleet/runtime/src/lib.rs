//! kantai's runtime: every instance of a function is either a local process (images mapped
//! to a command under `runtime.images`: the built-in functions, the offline demo) or an OCI
//! container (every other image: pulled, unpacked and run by runc or crun). Both get the
//! container's environment plus Knative's (`PORT`, `K_SERVICE`, ...), are probed, restarted
//! with backoff when they crash, stopped gracefully, limited through cgroups, and never left
//! behind when kantai goes away.
//!
//! In the order an instance meets them: `config.rs` (which images run how), `lib.rs`
//! (`Runtime::start` picks the backend), `instance.rs` (the supervisor and the `Backend`
//! seam), `process.rs` and `oci/` (the two backends), `probe.rs`, `cgroup.rs`, `logs.rs`,
//! `shim.rs`.

mod cgroup;
mod config;
mod instance;
mod launch;
mod logs;
mod oci;
mod probe;
mod process;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use cgroup::{Cgroups, GroupLimits, Limits};
pub use config::{
    DEFAULT_PIDS_LIMIT, DEFAULT_STORE_LIMIT, ImageCommand, KANTAI_PLACEHOLDER, OciConfig,
    RuntimeConfig, glob_match,
};
pub use instance::{Failure, Instance, InstanceSpec, PodFields, State};
pub use logs::LogBuffer;
pub use oci::OciRuntime;
pub use oci::shim as oci_shim;
pub use probe::{Check, ReadinessProbe};
pub use volumes::{VolumeError, check_path};

/// Why an instance cannot be started at all.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StartError {
    /// Neither the container nor the fleet config says what to run.
    #[error(
        "image {0:?} has no command: give the container a `command`, or map the image to one \
         under runtime.images in the fleet config"
    )]
    NoCommand(String),
    /// The user instances should run as cannot be used.
    #[error("{0}")]
    User(String),
    /// The image needs a container runtime this runtime does not have.
    #[error("{0}")]
    NoRuntime(String),
}

/// The unprivileged user instances run as when kantai runs as root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id (the only group: supplementary groups are dropped).
    pub gid: u32,
}

/// Whom instances run as: as root, `runtime.user` (default `nobody`; `root` keeps root, with
/// a warning); otherwise the agent's own user (switching needs root, so a `runtime.user`
/// naming someone else is an error).
fn resolve_user(wanted: Option<&str>) -> Result<Option<RunAs>, String> {
    use nix::unistd::{Gid, Group, Uid, User};
    let me = Uid::effective();
    let lookup = |spec: &str| -> Result<RunAs, String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let found = match user.parse::<u32>() {
            Ok(id) => User::from_uid(Uid::from_raw(id)),
            Err(_) => User::from_name(user),
        }
        .map_err(|e| format!("runtime.user: cannot look up {user:?}: {e}"))?;
        let (uid, primary) = match (found, user.parse::<u32>()) {
            (Some(u), _) => (u.uid.as_raw(), u.gid.as_raw()),
            // A bare number needs no entry in /etc/passwd; its group is the same number.
            (None, Ok(id)) => (id, id),
            (None, Err(_)) => {
                return Err(format!(
                    "runtime.user: there is no user {user:?} on this host (give an existing user, a UID, or UID:GID)"
                ));
            }
        };
        let gid = match group {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(id) => id,
                Err(_) => Group::from_name(g)
                    .map_err(|e| format!("runtime.user: cannot look up group {g:?}: {e}"))?
                    .ok_or_else(|| format!("runtime.user: there is no group {g:?} on this host"))?
                    .gid
                    .as_raw(),
            },
        };
        let _ = Gid::from_raw(gid);
        Ok(RunAs { uid, gid })
    };
    if me.is_root() {
        return match wanted.unwrap_or("nobody") {
            "root" | "0" | "0:0" => {
                tracing::warn!(
                    "runtime.user is root: functions run with every privilege of this host"
                );
                Ok(None)
            }
            spec => lookup(spec).map(Some),
        };
    }
    match wanted {
        None => Ok(None),
        Some(spec) => {
            let r = lookup(spec)?;
            if r.uid == me.as_raw() {
                Ok(None)
            } else {
                Err(format!(
                    "runtime.user is {spec:?}, but kantai runs as uid {me} and only root can start processes as another user: run kantai as root, or remove runtime.user"
                ))
            }
        }
    }
}

/// Starts and stops instances on this node.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: RuntimeConfig,
    launcher: Option<PathBuf>,
    cgroups: Option<Cgroups>,
    warned: AtomicBool,
    run_as: Result<Option<RunAs>, String>,
    /// The OCI side; `None` for a runtime without a state directory (processes only).
    oci: Option<Arc<oci::Oci>>,
    /// Where instances' volumes go (`<state>/volumes`); `None` without a state directory.
    volumes: Option<PathBuf>,
    /// The mount points process instances needed on the node and kantai created.
    mount_points: volumes::MountPoints,
    /// The pace of starting instances' readiness probes, node-wide.
    pacer: Arc<probe::Pacer>,
}

/// The reason an instance that needs an OCI runtime gets where the runtime has none.
const NO_STATE_DIR: &str =
    "this runtime has no state directory for images and containers (started without one)";

impl Runtime {
    /// A runtime for processes only. `launcher` is the kantai executable, used as a shim
    /// that binds each instance's life to this process (without it, instances are spawned
    /// directly). `scope` names this node's cgroup directory.
    pub fn new(config: RuntimeConfig, launcher: Option<PathBuf>, scope: &str) -> Runtime {
        Runtime::build(config, launcher, scope, None, None)
    }

    /// A runtime for processes and containers: images, container roots, instances'
    /// volumes and the OCI runtime's state live under `state_dir`. What an earlier run left
    /// there (containers, mounts, volumes, cgroups) is removed first.
    pub async fn open(
        config: RuntimeConfig,
        launcher: Option<PathBuf>,
        scope: &str,
        state_dir: &Path,
    ) -> Runtime {
        let oci = Arc::new(oci::Oci::open(&config.oci, state_dir).await);
        // After the containers that bound them are gone.
        let root = state_dir.join("volumes");
        let r = root.clone();
        let _ = tokio::task::spawn_blocking(move || volumes::clean_leftovers(&r)).await;
        let rt = Runtime::build(config, launcher, scope, Some(oci), Some(root));
        if let Some(cg) = &rt.inner.cgroups {
            cg.remove_all();
        }
        rt
    }

    fn build(
        config: RuntimeConfig,
        launcher: Option<PathBuf>,
        scope: &str,
        oci: Option<Arc<oci::Oci>>,
        volumes: Option<PathBuf>,
    ) -> Runtime {
        let run_as = resolve_user(config.user.as_deref());
        match &run_as {
            Ok(Some(r)) => tracing::info!(uid = r.uid, gid = r.gid, "instances run unprivileged"),
            Ok(None) => {}
            Err(e) => tracing::error!("{e}"),
        }
        Runtime {
            inner: Arc::new(Inner {
                config,
                launcher,
                cgroups: Cgroups::detect(scope),
                warned: AtomicBool::new(false),
                run_as,
                oci,
                volumes,
                mount_points: volumes::MountPoints::default(),
                pacer: probe::Pacer::new(),
            }),
        }
    }

    /// Removes this node's own cgroup directories; called when every instance is stopped
    /// (a group that still has members stays).
    pub fn close(&self) {
        if let Some(cg) = &self.inner.cgroups {
            cg.remove_scope();
        }
    }

    /// The OCI runtime containers run with, or why there is none.
    pub fn oci_runtime(&self) -> Result<&OciRuntime, String> {
        match &self.inner.oci {
            Some(o) => o.runtime.as_ref().map_err(Clone::clone),
            None => Err(NO_STATE_DIR.to_owned()),
        }
    }

    /// Whether an image runs as a local process (it is mapped under `runtime.images`).
    pub fn runs_as_process(&self, image: &str) -> bool {
        self.inner.config.lookup(image).is_some()
    }

    /// The user instances run as, when not the agent's own.
    pub fn run_as(&self) -> Option<RunAs> {
        self.inner.run_as.clone().ok().flatten()
    }

    /// Whether CPU and memory limits are enforced on this host.
    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.inner.cgroups.as_ref()
    }

    /// The program and arguments an instance of this container runs.
    pub fn command_for(
        &self,
        container: &kantai_model::serving::Container,
    ) -> Result<Vec<String>, StartError> {
        let exe = self
            .inner
            .launcher
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "kantai".to_owned());
        let expand = |s: &String| s.replace(KANTAI_PLACEHOLDER, &exe);
        if let Some(first) = container.command.first()
            && !first.is_empty()
        {
            return Ok(container
                .command
                .iter()
                .chain(&container.args)
                .map(expand)
                .collect());
        }
        let entry = self
            .inner
            .config
            .lookup(&container.image)
            .filter(|e| !e.command.is_empty())
            .ok_or_else(|| StartError::NoCommand(container.image.clone()))?;
        let args = if container.args.is_empty() {
            &entry.args
        } else {
            &container.args
        };
        Ok(entry.command.iter().chain(args).map(expand).collect())
    }

    /// An instance made ready ahead of demand but not started: a container created (its
    /// image pulled, its root mounted, its namespaces and cgroups made by `runc create`)
    /// and held; [`Instance::release`] starts it, in the few milliseconds `runc start`
    /// takes. `None` for an image that runs as a process, or without the OCI side.
    pub fn standby(&self, spec: InstanceSpec) -> Option<Instance> {
        if self.runs_as_process(&spec.container.image) || self.inner.launcher.is_none() {
            return None;
        }
        let oci = self.inner.oci.as_ref()?;
        oci.runtime.as_ref().ok()?;
        let volumes = self.volumes_of(&spec);
        let backend = oci::Container::new(self.clone(), spec.clone(), oci.clone(), volumes.clone());
        Some(Instance::standby(
            backend,
            spec,
            volumes,
            self.inner.pacer.clone(),
        ))
    }

    /// Starts an instance: as a process when its image is mapped under `runtime.images`,
    /// else as a container. A container that cannot run (no OCI runtime, an image that
    /// cannot be pulled) still starts, failed, so that its state says why.
    pub fn start(&self, spec: InstanceSpec) -> Result<Instance, StartError> {
        if self.runs_as_process(&spec.container.image) {
            self.inner.run_as.clone().map_err(StartError::User)?;
            let cmd = self.command_for(&spec.container)?;
            let volumes = self.volumes_of(&spec);
            let backend = process::Process {
                runtime: self.clone(),
                spec: spec.clone(),
                cmd,
                cgroup_files: Vec::new(),
                volumes: volumes.clone(),
                mount_points: None,
            };
            return Ok(Instance::start(
                backend,
                spec,
                volumes,
                self.inner.pacer.clone(),
            ));
        }
        match &self.inner.oci {
            Some(oci) => {
                let volumes = self.volumes_of(&spec);
                let backend =
                    oci::Container::new(self.clone(), spec.clone(), oci.clone(), volumes.clone());
                Ok(Instance::start(
                    backend,
                    spec,
                    volumes,
                    self.inner.pacer.clone(),
                ))
            }
            None => Err(StartError::NoRuntime(format!(
                "image {}: {NO_STATE_DIR}; map the image to a command under runtime.images",
                spec.container.image
            ))),
        }
    }

    fn volumes_of(&self, spec: &InstanceSpec) -> Arc<volumes::Volumes> {
        Arc::new(volumes::Volumes::new(
            self.inner.volumes.as_deref(),
            &spec.id(),
            &spec.volumes,
            &spec.container,
            spec.config.clone(),
        ))
    }

    fn warn_no_cgroups(&self, why: &str) {
        if !self.inner.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("CPU and memory limits are not enforced: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_run_as_nobody_under_root_and_as_the_agent_otherwise() {
        let root = nix::unistd::Uid::effective().is_root();
        if root {
            assert_eq!(
                resolve_user(None),
                Ok(Some(RunAs {
                    uid: 65534,
                    gid: 65534
                }))
            );
            assert_eq!(resolve_user(Some("root")), Ok(None));
            assert_eq!(
                resolve_user(Some("4242:4343")),
                Ok(Some(RunAs {
                    uid: 4242,
                    gid: 4343
                }))
            );
            assert_eq!(
                resolve_user(Some("31337")),
                Ok(Some(RunAs {
                    uid: 31337,
                    gid: 31337
                }))
            );
        } else {
            assert_eq!(resolve_user(None), Ok(None));
            let err = resolve_user(Some("0")).expect_err("needs root");
            assert!(err.contains("only root"), "{err}");
        }
        let err = resolve_user(Some("no-such-user-here")).expect_err("unknown");
        assert!(err.contains("no user \"no-such-user-here\""), "{err}");
    }
}
