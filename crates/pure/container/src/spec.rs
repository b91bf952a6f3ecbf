//! The whole `config.json` of one instance, from the pieces the other modules decide.

use std::collections::BTreeMap;

use kantai_model::serving::Container;
use kantai_model::serving::resolve::ResolvedConfig;
use oci_spec::runtime::{
    Linux, LinuxNamespace, LinuxNamespaceType, Process, Root, Spec, User as OciUser,
};

use crate::SpecError;
use crate::capabilities::{capability_set, linux_capabilities, on_host_network};
use crate::command::{argv, expand_all};
use crate::env::{Downward, environment, expansion_vars, resolved_env};
use crate::image::ImageConfig;
use crate::mounts::{
    HostVolume, MASKED_PATHS, READONLY_PATHS, default_mounts, host_file_mounts, volume_mounts,
};
use crate::resources::linux_resources;
use crate::security::{Security, no_new_privileges};
use crate::user::resolve_user;

/// The runtime spec version written: what runc 1.1's `runc spec` writes, which crun accepts.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// The network the container's process sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// The host's: no network namespace, so the instance listens on the loopback port it is
    /// given, as a plain process does.
    Host,
    /// The network namespace at this path (made by `ip netns add`, say), joined.
    Namespace(String),
}

/// Everything one instance's config is made from; the driver reads the files and passes text.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The image reference, for messages.
    pub image_name: &'a str,
    /// The container spec: command, args, env, volumeMounts, workingDir, resources.
    pub container: &'a Container,
    /// The image's config.
    pub image: &'a ImageConfig,
    /// The merged security settings.
    pub security: &'a Security,
    /// `PORT`, `K_SERVICE`, `K_REVISION`, `K_CONFIGURATION`: set last, so they win.
    pub knative_env: &'a [(String, String)],
    /// The absolute path of the mounted root filesystem.
    pub rootfs: &'a str,
    /// The hostname inside the container.
    pub hostname: &'a str,
    /// The cgroup path; always set, since crun puts the group at the hierarchy's root without one.
    pub cgroups_path: &'a str,
    /// The pids limit; zero or negative for none.
    pub pids_limit: i64,
    /// The rootfs's `/etc/passwd`, when it has one.
    pub passwd: Option<&'a str>,
    /// The rootfs's `/etc/group`, when it has one.
    pub group: Option<&'a str>,
    /// The network to join.
    pub network: Network,
    /// `(host path, container path)` pairs bound read-only.
    pub host_files: &'a [(String, String)],
    /// The values of the container's Secret and ConfigMap references (`envFrom`,
    /// `valueFrom`); `ResolvedConfig::default()` when it has none.
    pub config: &'a ResolvedConfig,
    /// What `fieldRef` and `resourceFieldRef` read.
    pub downward: Downward<'a>,
    /// The revision's volumes as the node prepared them, by volume name: every volume the
    /// container mounts must be here.
    pub host_volumes: &'a BTreeMap<String, HostVolume>,
}

/// The OCI runtime config of one instance.
pub fn runtime_spec(i: &Inputs) -> Result<Spec, SpecError> {
    build(i).map_err(|e| e.in_image(i.image_name))
}

fn build(i: &Inputs) -> Result<Spec, SpecError> {
    let c = i.container;
    // The kubelet's own checks (runAsNonRoot) come before anything the runtime would refuse.
    let user = resolve_user(i.image.user.as_deref(), i.security, i.passwd, i.group)?;
    let own_env = resolved_env(c, i.config, &i.downward);
    let vars = expansion_vars(&own_env, i.knative_env);
    let args = argv(
        &expand_all(&c.command, &vars),
        &expand_all(&c.args, &vars),
        &i.image.entrypoint,
        &i.image.cmd,
    );
    if args.is_empty() {
        return Err(SpecError::NoCommand {
            image: String::new(),
        });
    }
    let env = environment(
        &i.image.env,
        &own_env,
        i.knative_env,
        i.hostname,
        &user.home,
    );
    let cwd = working_dir(c.working_dir.as_deref(), i.image.working_dir.as_deref())?;
    let caps = match &i.network {
        Network::Host => on_host_network(capability_set(i.security)?, i.security)?,
        Network::Namespace(_) => capability_set(i.security)?,
    };

    let mut oci_user = OciUser::default();
    oci_user
        .set_uid(user.uid)
        .set_gid(user.gid)
        .set_additional_gids(Some(user.additional_gids.clone()));

    let mut process = Process::default();
    process
        .set_terminal(Some(false))
        .set_console_size(None)
        .set_user(oci_user)
        .set_args(Some(args))
        .set_command_line(None)
        .set_env(Some(env))
        .set_cwd(cwd.into())
        .set_capabilities(Some(linux_capabilities(&caps)))
        // No rlimits: the container inherits the runtime's. A node's bounding set may lack
        // CAP_SYS_RESOURCE (the project's machines do), and then any limit above the current
        // hard limit fails the start with EPERM; inheriting is what a plain process gets.
        .set_rlimits(None)
        .set_no_new_privileges(Some(no_new_privileges(i.security)))
        .set_apparmor_profile(None)
        // The kubelet's OOM score is per QoS class of a pod kantai does not have; inheriting
        // the agent's keeps instances and agent equal before the OOM killer.
        .set_oom_score_adj(None)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);

    let mut root = Root::default();
    root.set_path(i.rootfs.into())
        .set_readonly(Some(i.security.read_only_root_filesystem));

    let mut mounts = default_mounts();
    mounts.extend(host_file_mounts(i.host_files)?);
    mounts.extend(volume_mounts(c, i.host_volumes)?);

    let mut linux = Linux::default();
    linux
        .set_net_devices(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_sysctl(None)
        .set_resources(Some(linux_resources(&c.resources, i.pids_limit)?))
        .set_cgroups_path(Some(i.cgroups_path.into()))
        .set_namespaces(Some(namespaces(&i.network)))
        .set_devices(None)
        // No seccomp profile: Kubernetes runs containers Unconfined unless the pod asks for
        // RuntimeDefault, which kantai does not read yet.
        .set_seccomp(None)
        .set_rootfs_propagation(None)
        .set_masked_paths(Some(MASKED_PATHS.iter().map(|s| (*s).to_owned()).collect()))
        .set_readonly_paths(Some(
            READONLY_PATHS.iter().map(|s| (*s).to_owned()).collect(),
        ))
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_owned())
        .set_root(Some(root))
        .set_mounts(Some(mounts))
        .set_process(Some(process))
        .set_hostname(Some(i.hostname.to_owned()))
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(None)
        .set_linux(Some(linux))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None);
    Ok(spec)
}

/// `process.cwd`: the container's `workingDir`, else the image's `WorkingDir`, else `/`.
/// runc and crun refuse a relative one, so it is refused here where the message can say which
/// field to fix.
pub fn working_dir(container: Option<&str>, image: Option<&str>) -> Result<String, SpecError> {
    let (dir, field) = match (
        container.filter(|d| !d.is_empty()),
        image.filter(|d| !d.is_empty()),
    ) {
        (Some(d), _) => (d, "workingDir"),
        (None, Some(d)) => (d, "the image's WorkingDir"),
        (None, None) => ("/", ""),
    };
    if !dir.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir {
            image: String::new(),
            field,
            dir: dir.to_owned(),
        });
    }
    Ok(dir.to_owned())
}

/// `linux.namespaces`: pid, ipc, uts and mount always; a network namespace only to join one.
/// No cgroup namespace: on a node with cgroup v1 hierarchies (this project's) runc binds the
/// container's own groups over `/sys/fs/cgroup` instead, as Docker and containerd do there.
pub fn namespaces(network: &Network) -> Vec<LinuxNamespace> {
    let ns = |typ: LinuxNamespaceType, path: Option<&str>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ).set_path(path.map(Into::into));
        n
    };
    let mut out = vec![
        ns(LinuxNamespaceType::Pid, None),
        ns(LinuxNamespaceType::Ipc, None),
        ns(LinuxNamespaceType::Uts, None),
        ns(LinuxNamespaceType::Mount, None),
    ];
    if let Network::Namespace(path) = network {
        out.push(ns(LinuxNamespaceType::Network, Some(path)));
    }
    out
}

/// `spec` as the text of a `config.json`: pretty JSON with the capability lists sorted, so the
/// same inputs give the same bytes (oci-spec keeps capabilities in a hash set).
pub fn to_json(spec: &Spec) -> Result<String, serde_json::Error> {
    let mut v = serde_json::to_value(spec)?;
    if let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for set in caps.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    serde_json::to_string_pretty(&v)
}
