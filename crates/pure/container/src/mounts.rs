//! The container's filesystem around its rootfs: the kernel filesystems every container gets,
//! the node's files bound in, the revision's volumes, and the paths hidden from it.

use std::collections::BTreeMap;

use kantai_model::serving::Container;
use oci_spec::runtime::Mount;

use crate::SpecError;

/// The kernel filesystems, in runc's default spec's order with Docker's options (Docker adds
/// `nosuid,noexec,nodev` to `/proc`; both give `/dev/shm` 64 MiB).
pub fn default_mounts() -> Vec<Mount> {
    const NSN: &[&str] = &["nosuid", "noexec", "nodev"];
    vec![
        mount("/proc", "proc", "proc", NSN),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount("/dev/mqueue", "mqueue", "mqueue", NSN),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

/// The node's files (`/etc/resolv.conf`, `/etc/hosts`, ...) as read-only binds, after the
/// kernel filesystems. `rprivate` keeps mounts made later on the host from propagating in.
pub fn host_file_mounts(host_files: &[(String, String)]) -> Result<Vec<Mount>, SpecError> {
    host_files
        .iter()
        .map(|(host, path)| {
            if !path.starts_with('/') {
                return Err(SpecError::RelativeMount {
                    image: String::new(),
                    host: host.clone(),
                    path: path.clone(),
                });
            }
            Ok(mount(
                path,
                "bind",
                host,
                &["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"],
            ))
        })
        .collect()
}

/// Paths masked from the container: runc's default spec's.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// Paths the container sees read-only: runc's default spec's.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into())
        .set_typ(Some(typ.to_owned()))
        .set_source(Some(source.into()))
        .set_options(Some(options.iter().map(|s| (*s).to_owned()).collect()));
    m
}

/// A volume as the node prepared it for one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostVolume {
    /// The directory on the node (absolute); unused for [`HostVolumeKind::Memory`].
    pub path: String,
    /// What the directory is.
    pub kind: HostVolumeKind,
}

/// How a volume reaches the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostVolumeKind {
    /// A `secret`, `configMap` or `projected` volume: files the node wrote (on a tmpfs),
    /// bound read-only, never executable, suid or a device.
    Files,
    /// An `emptyDir` on the node's disk: bound, writable unless the mount says `readOnly`.
    Dir,
    /// An `emptyDir` with `medium: Memory`: a tmpfs of the container's own, of at most
    /// `size` bytes when given (`sizeLimit`).
    Memory {
        /// `size=` of the tmpfs.
        size: Option<u64>,
    },
}

/// The container's `volumeMounts` as OCI mounts, to follow the kernel filesystems and the
/// node's files.
///
/// Mounts keep the container's order, stably sorted by the depth of their path as
/// containerd's CRI sorts them, so `/etc/app` is mounted before `/etc/app/tls` whatever the
/// order written. `subPath` binds that entry of the volume (the host path joined with it)
/// instead of its root; it must be relative, without `..`. The joined path is checked here
/// only as text: the runtime must refuse a source that leaves the volume through a symlink
/// (a writable `emptyDir` can hold one) before it mounts it, as the kubelet does.
///
/// A `Memory` volume is a tmpfs in the container's config, so it can be mounted once: two
/// mounts would be two tmpfs with nothing shared. Its `subPath` is then an empty directory
/// of an empty tmpfs, the same as the tmpfs itself, and is accepted. A node that wants more
/// should mount a tmpfs itself and pass it as [`HostVolumeKind::Dir`].
pub fn volume_mounts(
    c: &Container,
    host: &BTreeMap<String, HostVolume>,
) -> Result<Vec<Mount>, SpecError> {
    let mut out: Vec<(usize, Mount)> = Vec::new();
    let mut memory_mounted: BTreeMap<&str, &str> = BTreeMap::new();
    for m in &c.volume_mounts {
        let bad = |why: String| SpecError::BadVolumeMount {
            image: String::new(),
            volume: m.name.clone(),
            mount_path: m.mount_path.clone(),
            why,
        };
        let Some(v) = host.get(&m.name) else {
            return Err(SpecError::UnknownVolume {
                image: String::new(),
                volume: m.name.clone(),
                mount_path: m.mount_path.clone(),
            });
        };
        if !m.mount_path.starts_with('/') {
            return Err(bad(
                "is not at an absolute path; write mountPath from the root, such as /etc/app"
                    .into(),
            ));
        }
        let sub = m.sub_path.as_deref().filter(|s| !s.is_empty());
        if let Some(sub) = sub {
            if sub.starts_with('/') {
                return Err(bad(format!(
                    "has subPath {sub:?}, which is absolute; write it relative to the volume's root"
                )));
            }
            if sub.split('/').any(|part| part == "..") {
                return Err(bad(format!(
                    "has subPath {sub:?}, which contains '..'; a subPath must stay inside its volume"
                )));
            }
        }
        let read_only = m.read_only == Some(true);
        let rw = if read_only { "ro" } else { "rw" };
        let source = |root: &str| -> Result<String, SpecError> {
            if !root.starts_with('/') {
                return Err(bad(format!(
                    "comes from {root:?} on the node, which is not an absolute path; this is a \
                     bug in the node agent's runtime, not in the service"
                )));
            }
            Ok(match sub {
                Some(sub) => format!(
                    "{}/{}",
                    root.trim_end_matches('/'),
                    sub.trim_end_matches('/')
                ),
                None => root.to_owned(),
            })
        };
        let mount = match &v.kind {
            // Not `noexec`: the kubelet does not set it, and functions run scripts shipped in
            // ConfigMaps with `defaultMode: 0755`.
            HostVolumeKind::Files => mount(
                &m.mount_path,
                "bind",
                &source(&v.path)?,
                &["rbind", "rprivate", "ro", "nosuid", "nodev"],
            ),
            HostVolumeKind::Dir => mount(
                &m.mount_path,
                "bind",
                &source(&v.path)?,
                &["rbind", "rprivate", rw],
            ),
            HostVolumeKind::Memory { size } => {
                if let Some(first) = memory_mounted.insert(&m.name, &m.mount_path) {
                    return Err(bad(format!(
                        "repeats a medium: Memory emptyDir already mounted at {first:?}; kantai \
                         gives such a volume to one mount as its own tmpfs, so mount it once"
                    )));
                }
                let size = size.map(|s| format!("size={s}"));
                let mut opts = vec!["nosuid", "nodev", "mode=1777", rw];
                if let Some(s) = &size {
                    opts.push(s);
                }
                mount(&m.mount_path, "tmpfs", "tmpfs", &opts)
            }
        };
        let depth = m.mount_path.split('/').filter(|p| !p.is_empty()).count();
        out.push((depth, mount));
    }
    out.sort_by_key(|(depth, _)| *depth);
    Ok(out.into_iter().map(|(_, m)| m).collect())
}
