//! kantai's process runtime: every instance of a function is a local process, started with
//! the container's command and environment plus Knative's (`PORT`, `K_SERVICE`, ...), watched
//! for readiness, restarted with backoff when it crashes, stopped gracefully, limited through
//! cgroups where the host allows it, and never left behind when kantai goes away.

mod cgroup;
mod config;
mod instance;
mod logs;
mod probe;
pub mod shim;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use cgroup::{Cgroups, Limits};
pub use config::{ImageCommand, KANTAI_PLACEHOLDER, RuntimeConfig, glob_match};
pub use instance::{Instance, InstanceSpec, State};
pub use logs::LogBuffer;
pub use probe::{Check, ReadinessProbe};

/// Why an instance cannot be started at all.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StartError {
    /// Neither the container nor the fleet config says what to run.
    #[error(
        "image {0:?} has no command: give the container a `command`, or map the image to one \
         under runtime.images in the fleet config"
    )]
    NoCommand(String),
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
}

impl Runtime {
    /// A runtime. `launcher` is the kantai executable, used as a shim that binds each
    /// instance's life to this process (without it, instances are spawned directly).
    /// `scope` names this node's cgroup directory.
    pub fn new(config: RuntimeConfig, launcher: Option<PathBuf>, scope: &str) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                config,
                launcher,
                cgroups: Cgroups::detect(scope),
                warned: AtomicBool::new(false),
            }),
        }
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
            .ok_or_else(|| StartError::NoCommand(container.image.clone()))?;
        let args = if container.args.is_empty() {
            &entry.args
        } else {
            &container.args
        };
        Ok(entry.command.iter().chain(args).map(expand).collect())
    }

    /// Starts an instance.
    pub fn start(&self, spec: InstanceSpec) -> Result<Instance, StartError> {
        let cmd = self.command_for(&spec.container)?;
        Ok(Instance::start(self, spec, cmd))
    }

    fn warn_no_cgroups(&self, why: &str) {
        if !self.inner.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("CPU and memory limits are not enforced: {why}");
        }
    }
}
