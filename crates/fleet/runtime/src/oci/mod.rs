//! The OCI backend: an instance is a container. Its image is pulled into the node's layer
//! store, its root is an overlay of the stored layers, its `config.json` comes from
//! `kantai-container` (Kubernetes' rules), and runc or crun runs it in the foreground
//! (`run`), so its output and exit code are the supervisor's like any process's. A start
//! held ahead of demand (`Runtime::standby`) goes through `kantai __oci-shim` instead
//! (`shim.rs`), which creates the container at once and starts it on demand.
//!
//! The container shares the host's network and listens on the port kantai gives it, as a
//! process instance does. Limits live in a cgroup kantai makes for the instance; the OCI
//! runtime puts the container in a group below it (`…/<instance>/ctr`), so the limits and
//! the group's memory counters outlive each run of the container (the runtime removes the
//! container's own group as it exits), and a kill for going over the memory limit is told
//! apart from any other SIGKILL (`Cgroups::hit_memory_limit`).

mod bundle;
mod cli;
pub mod shim;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kantai_container::{ImageConfig, Inputs, Network, Security};
use kantai_images::{Image, Store};
use kantai_model::serving::PullPolicy;
use tokio::process::Command;
use tokio::sync::watch;
use tracing::{info, warn};

pub use cli::OciRuntime;

use crate::instance::{Backend, Failure, InstanceSpec, Running, Start, State};
use crate::volumes::Volumes;
use crate::{OciConfig, Runtime};

/// The node's OCI side: the runtime binary, the layer store and where bundles go. Either
/// part may be missing; an instance that needs it then fails at once saying what to do.
pub(crate) struct Oci {
    pub(crate) runtime: Result<OciRuntime, String>,
    pub(crate) store: Result<Store, String>,
    bundles: PathBuf,
    pids_limit: i64,
}

/// A pull that makes no progress this long is given up (and tried again later), as the
/// kubelet's image-pull progress deadline does: a registry that trickles or stalls would
/// otherwise keep an instance waiting forever.
const PULL_PROGRESS_DEADLINE: Duration = Duration::from_secs(60);

/// The cgroup directory of the container itself, below the instance's own.
const CONTAINER_GROUP: &str = "ctr";

impl Oci {
    /// Finds the runtime and opens the store under `state_dir`; says which runtime it uses.
    ///
    /// What an earlier run left (containers, their mounted roots) is removed before the
    /// store opens: opening evicts unleased layers beyond the limit, and a layer still
    /// under a leftover container's root must not go first.
    pub(crate) async fn open(cfg: &OciConfig, state_dir: &Path) -> Oci {
        let runtime = if nix::unistd::Uid::effective().is_root() {
            OciRuntime::detect(cfg.runtime.as_deref(), &state_dir.join("runc"))
        } else {
            Err(
                "containers need kantai to run as root on this node (rootless OCI runtimes are not supported); \
                 or map the image to a command under runtime.images in the fleet config"
                    .to_owned(),
            )
        };
        match &runtime {
            Ok(r) => info!(
                runtime = %r.name,
                path = %r.path.display(),
                version = %r.version,
                "containers run with {} ({})",
                r.name,
                r.path.display()
            ),
            Err(e) => warn!("images not mapped to a command cannot run: {e}"),
        }
        let bundles = state_dir.join("containers");
        clean_leftovers(runtime.as_ref().ok(), &bundles).await;
        let store = kantai_images::Registry::new(&cfg.images())
            .map_err(|e| e.to_string())
            .and_then(|reg| {
                Store::open(&state_dir.join("images"), reg, cfg.store_limit)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = &store {
            warn!("the image store cannot be used: {e}");
        }
        Oci {
            runtime,
            store,
            bundles,
            pids_limit: cfg.pids_limit,
        }
    }
}

/// Removes what an earlier run of this node left: containers in its runtime root, mounted
/// roots and bundles (after a SIGKILL of the agent, say).
async fn clean_leftovers(runtime: Option<&OciRuntime>, bundles: &Path) {
    if let Some(rt) = runtime {
        for id in rt.list().await {
            info!(container = %id, "removing a container an earlier run of this node left");
            rt.remove(&id).await;
        }
    }
    let Ok(dirs) = std::fs::read_dir(bundles) else {
        return;
    };
    for d in dirs.flatten() {
        info!(bundle = %d.path().display(), "removing a container bundle an earlier run of this node left");
        let b = bundle::Bundle::new(d.path());
        let _ = tokio::task::spawn_blocking(move || b.remove()).await;
    }
}

/// One container instance.
pub(crate) struct Container {
    runtime: Runtime,
    oci: Arc<Oci>,
    spec: InstanceSpec,
    /// The OCI runtime's container id (unique on the node: instance names are).
    id: String,
    bundle: bundle::Bundle,
    /// The pulled image; holding it keeps its layers from eviction.
    image: Option<Image>,
    config: Option<ImageConfig>,
    passwd: Option<String>,
    group: Option<String>,
    /// Whether the container was run before (a restart needs a fresh root).
    ran: bool,
    /// The instance cgroup's memory mark at the start of the current run
    /// (`Cgroups::mark_memory`).
    memory_mark: u64,
    /// The instance's volumes and the values its env comes from.
    volumes: Arc<Volumes>,
}

impl Container {
    pub(crate) fn new(
        runtime: Runtime,
        spec: InstanceSpec,
        oci: Arc<Oci>,
        volumes: Arc<Volumes>,
    ) -> Container {
        let id = spec.id();
        Container {
            bundle: bundle::Bundle::new(oci.bundles.join(&id)),
            oci,
            runtime,
            spec,
            id,
            image: None,
            config: None,
            passwd: None,
            group: None,
            ran: false,
            memory_mark: 0,
            volumes,
        }
    }

    fn cgroup_name(&self) -> String {
        self.id.clone()
    }

    fn security(&self) -> Security {
        let s = &self.spec.security;
        let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        let caps = s.capabilities.clone().unwrap_or_default();
        Security {
            run_as_user: id(s.run_as_user),
            run_as_group: id(s.run_as_group),
            run_as_non_root: s.run_as_non_root.unwrap_or(false),
            read_only_root_filesystem: s.read_only_root_filesystem.unwrap_or(false),
            allow_privilege_escalation: s.allow_privilege_escalation,
            cap_add: caps.add,
            cap_drop: caps.drop,
        }
    }

    /// The OCI runtime config of one run, listening on `port`, with its volume mounts
    /// (`binds`: this run's, from `Volumes::mounts`; `None` for a check before anything
    /// is mounted).
    fn runtime_spec(
        &self,
        port: u16,
        binds: Option<&[crate::volumes::HostMount]>,
    ) -> Result<oci_spec::runtime::Spec, Failure> {
        let image = self.config.as_ref().ok_or_else(|| Failure {
            reason: "CreateContainerConfigError",
            message: "the image's config was not read".to_owned(),
            retry: false,
        })?;
        let env: Vec<(String, String)> = self
            .spec
            .knative_env(port)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let rootfs = self.bundle.rootfs().display().to_string();
        let cgroups_path = format!(
            "{}/{CONTAINER_GROUP}",
            self.runtime
                .inner
                .cgroups
                .as_ref()
                .map(|c| c.path_of(&self.cgroup_name()))
                .unwrap_or_else(|| format!("/kantai/{}", self.cgroup_name()))
        );
        let host_files: Vec<(String, String)> = ["/etc/resolv.conf", "/etc/hosts"]
            .into_iter()
            .filter(|f| Path::new(f).exists())
            .map(|f| (f.to_owned(), f.to_owned()))
            .collect();
        let security = self.security();
        let (container, host_volumes) = self.volumes.oci_inputs(&self.spec.container, binds);
        // The values of this start: env is not changed while it runs.
        let config = self.volumes.good();
        let inputs = Inputs {
            image_name: self.spec.image(),
            container: &container,
            image,
            security: &security,
            knative_env: &env,
            rootfs: &rootfs,
            hostname: &self.spec.name,
            cgroups_path: &cgroups_path,
            pids_limit: self.oci.pids_limit,
            passwd: self.passwd.as_deref(),
            group: self.group.as_deref(),
            network: Network::Host,
            host_files: &host_files,
            config: &config,
            downward: self.spec.downward(),
            host_volumes: &host_volumes,
        };
        let mut spec = kantai_container::runtime_spec(&inputs).map_err(|e| Failure {
            reason: e.reason(),
            message: e.to_string(),
            retry: false,
        })?;
        // CPU and memory are enforced on the instance's own group (so its OOM count
        // survives the container's); the container's group keeps the pids limit.
        if self.runtime.inner.cgroups.is_some()
            && let Some(linux) = spec.linux_mut()
            && let Some(res) = linux.resources_mut()
        {
            res.set_cpu(None);
            res.set_memory(None);
        }
        Ok(spec)
    }

    fn mount(&mut self) -> Result<(), Failure> {
        let layers = self
            .image
            .as_ref()
            .map(|i| i.layers.clone())
            .unwrap_or_default();
        self.bundle.mount(&layers).map_err(|e| Failure {
            reason: "CreateContainerError",
            message: format!(
                "cannot mount the root of image {} at {}: {e}",
                self.spec.image(),
                self.bundle.rootfs().display()
            ),
            retry: false,
        })
    }
}

impl Backend for Container {
    async fn prepare(&mut self, state: &watch::Sender<State>) -> Result<(), Failure> {
        let oci = self.oci.clone();
        if let Err(e) = &oci.runtime {
            return Err(Failure {
                reason: "RuntimeUnavailable",
                message: format!("image {}: {e}", self.spec.container.image),
                retry: false,
            });
        }
        let store = oci.store.clone().map_err(|e| Failure {
            reason: "ErrImagePull",
            message: format!("image {}: the node's image store: {e}", self.spec.image()),
            retry: false,
        })?;
        let image = self.spec.image().to_owned();
        let policy = PullPolicy::effective(&image, self.spec.container.image_pull_policy);
        let (tx, mut rx) = watch::channel(kantai_images::Progress::default());
        state.send_modify(|s| {
            s.reason = Some("ContainerCreating".to_owned());
            s.message = Some(format!("pulling image {image}"));
        });
        let pulled = {
            let pull = store.pull(&image, policy, &tx);
            tokio::pin!(pull);
            let mut deadline = tokio::time::Instant::now() + PULL_PROGRESS_DEADLINE;
            loop {
                tokio::select! {
                    r = &mut pull => break r,
                    Ok(()) = rx.changed() => {
                        deadline = tokio::time::Instant::now() + PULL_PROGRESS_DEADLINE;
                        let p = rx.borrow_and_update().clone();
                        state.send_modify(|s| s.message = Some(format!("pulling image {image}: {p}")));
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(Failure {
                            reason: "ErrImagePull",
                            message: format!(
                                "image {image}: the pull made no progress for {}s (a registry that stopped answering); it is tried again",
                                PULL_PROGRESS_DEADLINE.as_secs()
                            ),
                            retry: true,
                        });
                    }
                }
            }
        };
        let pulled = pulled.map_err(|e| Failure {
            reason: e.reason(),
            message: e.to_string(),
            // What the registry says may change (a push, credentials, the network);
            // a pull that is not allowed to reach it will not.
            retry: e.reason() == "ErrImagePull",
        })?;
        let config = ImageConfig::parse(&pulled.config).map_err(|e| Failure {
            reason: e.reason(),
            message: e.to_string(),
            retry: false,
        })?;
        state.send_modify(|s| {
            s.image_digest = Some(pulled.reference.clone());
            s.message = Some(format!("creating the container of {image}"));
        });
        self.image = Some(pulled);
        self.config = Some(config);
        self.mount()?;
        let root = self.bundle.rootfs();
        self.passwd = bundle::read_in_root(&root, "/etc/passwd");
        self.group = bundle::read_in_root(&root, "/etc/group");
        // A config the runtime would refuse (runAsNonRoot with a root image) fails now,
        // not at each start.
        self.runtime_spec(0, None)?;
        let limits =
            crate::GroupLimits::of(&self.spec.container.resources).map_err(|e| Failure {
                reason: e.reason(),
                message: e.in_image(self.spec.image()).to_string(),
                retry: false,
            })?;
        if let Some(cg) = &self.runtime.inner.cgroups
            && let Err(e) = cg.create(&self.cgroup_name(), &limits)
        {
            return Err(Failure {
                reason: "CreateContainerError",
                message: format!(
                    "cannot create the cgroup of instance {}: {e}",
                    self.spec.name
                ),
                retry: false,
            });
        }
        Ok(())
    }

    async fn command(&mut self, port: u16, held: bool) -> Result<Start, Failure> {
        let Ok(rt) = self.oci.runtime.clone() else {
            return Err(Failure {
                reason: "RuntimeUnavailable",
                message: "no OCI runtime".to_owned(),
                retry: false,
            });
        };
        if self.ran {
            // The last run's container is gone (its process exited) but still known to
            // the runtime, and its root holds what it wrote.
            let _ = rt.call(&["delete", "--force", &self.id]).await;
            self.mount()?;
        }
        let binds = self.volumes.mounts_for_start(&self.spec.container).await?;
        let spec = self.runtime_spec(port, Some(&binds))?;
        self.bundle.write_config(&spec).map_err(|e| Failure {
            reason: "CreateContainerError",
            message: format!(
                "cannot write {}/config.json: {e}",
                self.bundle.dir.display()
            ),
            retry: true,
        })?;
        if let Some(cg) = &self.runtime.inner.cgroups {
            self.memory_mark = cg.mark_memory(&self.cgroup_name());
        }
        self.ran = true;
        let bundle = self.bundle.dir.display().to_string();
        match &self.runtime.inner.launcher {
            // A held start goes through the shim, which creates the container at once and
            // starts it on a line of input (`Runtime::standby`); any other start is one
            // `run`, which is quicker than `create` and `start` one after the other.
            Some(kantai) if held => {
                let mut c = Command::new(kantai);
                c.arg("__oci-shim")
                    .args(["--parent", &std::process::id().to_string()])
                    .args(["--id", &self.id, "--bundle", &bundle])
                    .arg("--pid-file")
                    .arg(self.bundle.dir.join("pid"))
                    .arg("--")
                    .args(rt.argv(&[]));
                Ok(Start::Command(c))
            }
            _ => Ok(Start::Command(
                rt.command(&["run", "--bundle", &bundle, &self.id]),
            )),
        }
    }

    fn holds_start(&self) -> bool {
        self.runtime.inner.launcher.is_some()
    }

    async fn terminate(&self, child: &mut Running, grace: Duration) {
        let Ok(rt) = &self.oci.runtime else { return };
        let signal = self
            .config
            .as_ref()
            .and_then(|c| c.stop_signal.clone())
            .unwrap_or_else(|| "TERM".to_owned());
        if let Err(e) = rt.call(&["kill", &self.id, &signal]).await {
            warn!(instance = %self.spec.name, "cannot signal the container: {e}");
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            warn!(instance = %self.spec.name, "container ignored SIG{signal} for {grace:?}; killing it");
            let _ = rt.call(&["kill", &self.id, "KILL"]).await;
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        let _ = rt.call(&["delete", "--force", &self.id]).await;
    }

    fn exec_prefix(&self) -> Vec<String> {
        match &self.oci.runtime {
            Ok(rt) => rt.argv(&["exec", &self.id]),
            Err(_) => vec!["false".to_owned()],
        }
    }

    fn exit_reason(&self, code: Option<i32>) -> &'static str {
        // SIGKILL, which the container's PID 1 ends with as 128 + 9 through the runtime.
        let killed = matches!(code, Some(137) | Some(-9));
        let oom = killed
            && self
                .runtime
                .inner
                .cgroups
                .as_ref()
                .is_some_and(|cg| cg.hit_memory_limit(&self.cgroup_name(), self.memory_mark));
        match code {
            _ if oom => "OOMKilled",
            Some(0) => "Completed",
            _ => "Error",
        }
    }

    async fn cleanup(&mut self) {
        if let Ok(rt) = &self.oci.runtime {
            rt.remove(&self.id).await;
        }
        // The root's upper directory can be large: removed off the async workers.
        if let Some(bundle) = self.take_bundle() {
            let _ = tokio::task::spawn_blocking(move || bundle.remove()).await;
        }
        self.release();
    }
}

impl Container {
    /// The bundle, once: whoever takes it removes it.
    fn take_bundle(&mut self) -> Option<bundle::Bundle> {
        let bundle = std::mem::replace(&mut self.bundle, bundle::Bundle::new(PathBuf::new()));
        (!bundle.dir.as_os_str().is_empty()).then_some(bundle)
    }

    /// Removes the bundle (if still here), the cgroups and the image lease.
    fn release(&mut self) {
        if let Some(bundle) = self.take_bundle() {
            bundle.remove();
        }
        if let Some(cg) = &self.runtime.inner.cgroups {
            cg.remove(&self.cgroup_name());
        }
        self.image = None;
    }
}

impl Drop for Container {
    /// An instance dropped without its stop (its agent shutting down mid-stop, a task
    /// aborted) still takes its container with it: the OCI runtime's `run` in the
    /// foreground does not kill the container when it dies itself.
    fn drop(&mut self) {
        if self.bundle.dir.as_os_str().is_empty() {
            // Cleaned up already.
            return;
        }
        if let Ok(rt) = &self.oci.runtime {
            rt.call_blocking(&["kill", &self.id, "KILL"]);
            rt.call_blocking(&["delete", "--force", &self.id]);
        }
        self.release();
    }
}
