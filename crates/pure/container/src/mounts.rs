//! The container's filesystem around its rootfs: the kernel filesystems every container gets,
//! the node's files bound in, and the paths hidden from it.

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
