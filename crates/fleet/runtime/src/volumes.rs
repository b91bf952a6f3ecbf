//! An instance's volumes on the node: `<state>/volumes/<ns>.<instance>/<volume>/`.
//!
//! - `secret`, `configMap` and `projected` volumes are each a tmpfs of their own (the
//!   kubelet's rule: secret data never touches the node's disk), filled by the kubelet's
//!   atomic writer layout ([`write_files`]): a generation directory `..<n>` holds the files,
//!   `..data` points at it, and every top-level entry is a link `name -> ..data/name`, so an
//!   update swaps one symlink and a reader never sees half of it. Files are root's, with the
//!   mode the control plane computed (`defaultMode`/`mode`, 0644 unless set): without an
//!   `fsGroup` (kantai has none) a mode such as 0400 is readable by root only, as in
//!   Kubernetes. They are always mounted read-only, as the kubelet mounts them.
//! - `emptyDir` is a plain directory (mode 0777, as the kubelet makes it) on the node's
//!   disk, or with `medium: Memory` a tmpfs of `sizeLimit` (else the container's memory
//!   limit, else the kernel's default). Both live as long as the instance, across restarts.
//! - `subPath` mounts bind one entry of a volume, resolved inside the volume's root
//!   (`openat2` with `RESOLVE_IN_ROOT`: a symlink a function left in an emptyDir cannot point
//!   the bind at the node's files) onto `subpaths/<n>` at each start; they never see updates.
//!
//! The instance's directory is 0700 and root's; everything is unmounted and removed with the
//! instance, and what a killed agent left is removed when the runtime opens again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kantai_model::serving::resolve::{ResolvedConfig, VolumeFile};
use kantai_model::serving::{Container, Volume};
use nix::mount::{MntFlags, MsFlags};
use parking_lot::Mutex;
use tracing::{info, warn};

/// Why a volume could not be set up or updated. Names the volume and path, never content.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VolumeError {
    /// A file path the control plane sent is not one a volume may hold.
    #[error("volume {volume:?}: file path {path:?} {why}")]
    BadPath {
        /// The volume.
        volume: String,
        /// The path as sent.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A mount names a volume the revision does not have.
    #[error(
        "the volumeMount at {mount_path:?} names volume {volume:?}, which the revision does not have"
    )]
    UnknownVolume {
        /// The volume named.
        volume: String,
        /// The mount's path.
        mount_path: String,
    },
    /// The node refused a file operation.
    #[error("volume {volume:?}: {what} {path}: {error}")]
    Io {
        /// The volume.
        volume: String,
        /// What was being done.
        what: &'static str,
        /// Where.
        path: String,
        /// The system's error.
        error: String,
    },
}

impl VolumeError {
    fn io(volume: &str, what: &'static str, path: &Path, e: impl std::fmt::Display) -> Self {
        VolumeError::Io {
            volume: volume.to_owned(),
            what,
            path: path.display().to_string(),
            error: e.to_string(),
        }
    }
}

/// The link to the current generation of a volume's files.
const DATA: &str = "..data";
/// The link made beside `..data` and renamed over it.
const DATA_TMP: &str = "..data_tmp";

/// The components of a volume file's path, checked as the kubelet's atomic writer does:
/// relative, no `..` element, not starting with `..` (the writer's own names), at most 4096
/// bytes; empty and `.` elements are dropped.
pub fn check_path(path: &str) -> Result<Vec<&str>, &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.len() > 4096 {
        return Err("is longer than 4096 bytes");
    }
    if path.starts_with('/') {
        return Err("must be relative");
    }
    if path.starts_with("..") {
        return Err("must not start with '..'");
    }
    if path.contains('\0') {
        return Err("must not contain a NUL byte");
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err("must not contain '..'");
    }
    if parts.is_empty() {
        return Err("names no file");
    }
    if parts.iter().any(|p| p.len() > 255) {
        return Err("has an element longer than 255 bytes");
    }
    Ok(parts)
}

/// A volume's payload: normalized path → (content, mode).
type Payload<'a> = BTreeMap<String, (&'a [u8], u32)>;

fn payload<'a>(volume: &str, files: &'a [VolumeFile]) -> Result<Payload<'a>, VolumeError> {
    let bad = |path: &str, why| VolumeError::BadPath {
        volume: volume.to_owned(),
        path: path.to_owned(),
        why,
    };
    let mut out = Payload::new();
    let mut dirs = BTreeSet::new();
    for f in files {
        let parts = check_path(&f.path).map_err(|why| bad(&f.path, why))?;
        let norm = parts.join("/");
        for i in 1..parts.len() {
            dirs.insert(parts[..i].join("/"));
        }
        if out.insert(norm, (&f.data[..], f.mode & 0o777)).is_some() {
            return Err(bad(&f.path, "is given twice"));
        }
    }
    if let Some(d) = dirs.iter().find(|d| out.contains_key(*d)) {
        return Err(bad(d, "is both a file and a directory"));
    }
    Ok(out)
}

/// Writes `files` into `dir` by the kubelet's atomic writer's rules; returns whether
/// anything changed (the same content and modes write nothing). Paths are checked first:
/// nothing is written when one is refused.
pub fn write_files(dir: &Path, volume: &str, files: &[VolumeFile]) -> Result<bool, VolumeError> {
    let new = payload(volume, files)?;
    let io = |what, p: &Path, e: std::io::Error| VolumeError::io(volume, what, p, e);
    let old_gen = std::fs::read_link(dir.join(DATA))
        .ok()
        .and_then(|l| l.to_str().map(str::to_owned))
        .filter(|l| l.starts_with("..") && !l.contains('/'));
    let old_files = old_gen
        .as_ref()
        .map(|g| read_tree(&dir.join(g)))
        .unwrap_or_default();
    let unchanged = old_gen.is_some()
        && old_files.len() == new.len()
        && new.iter().all(|(p, (data, mode))| {
            old_files
                .get(p)
                .is_some_and(|(d, m)| d == data && m == mode)
        });
    if unchanged {
        return Ok(false);
    }
    let generation =
        new_generation(dir).map_err(|e| io("cannot create a generation in", dir, e))?;
    let gen_dir = dir.join(&generation);
    for (path, (data, mode)) in &new {
        write_one(&gen_dir, path, data, *mode)
            .map_err(|e| io("cannot write", &gen_dir.join(path), e))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&generation, &tmp).map_err(|e| io("cannot link", &tmp, e))?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(|e| io("cannot swap", &dir.join(DATA), e))?;
    let top = |files: &dyn Fn() -> Vec<String>| -> BTreeSet<String> {
        files()
            .iter()
            .map(|p| p.split('/').next().unwrap_or_default().to_owned())
            .collect()
    };
    let new_top = top(&|| new.keys().cloned().collect());
    let old_top = top(&|| old_files.keys().cloned().collect());
    for name in &new_top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link)
                .map_err(|e| io("cannot link", &link, e))?;
        }
    }
    for name in old_top.difference(&new_top) {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(&link);
        }
    }
    // Generations other than the current one: the last, and any an interrupted write left.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("..")
                && name != DATA
                && name != generation
                && e.file_type().is_ok_and(|t| t.is_dir())
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(true)
}

/// A fresh generation directory's name, created 0755 (the kubelet's: group and others walk
/// it; the files' modes say who reads them).
fn new_generation(dir: &Path) -> std::io::Result<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    for n in 0..1000u128 {
        let name = format!("..{}", nanos + n);
        match std::fs::create_dir(dir.join(&name)) {
            Ok(()) => {
                std::fs::set_permissions(dir.join(&name), std::fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free generation name"))
}

/// Writes one file below a fresh generation directory. The directories are made 0755; the
/// file is opened beneath the generation with no symlink followed anywhere on its path.
fn write_one(gen_dir: &Path, path: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::io::Write;
    let mut parent = gen_dir.to_path_buf();
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts[..parts.len() - 1] {
        parent.push(p);
        match std::fs::create_dir(&parent) {
            Ok(()) => std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let root = std::fs::File::open(gen_dir)?;
    let fd = rustix::fs::openat2(
        &root,
        path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data)?;
    // The mode as asked, whatever the umask.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The regular files below `dir` (relative paths), with content and mode; symlinks and
/// anything else are not followed.
fn read_tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(base: &Path, rel: &str, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        let Ok(entries) = std::fs::read_dir(base.join(rel)) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                walk(base, &path, out);
            } else if t.is_file()
                && let (Ok(data), Ok(m)) = (std::fs::read(e.path()), e.metadata())
            {
                out.insert(path, (data, m.permissions().mode() & 0o777));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out);
    out
}

/// What a volume is on the host.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// Secret, ConfigMap or projected files on a tmpfs; always mounted read-only.
    Files,
    /// An emptyDir on the node's disk, with its `sizeLimit` in bytes.
    Disk { limit: Option<u64> },
    /// An emptyDir on a tmpfs of this many bytes (the kernel's default when `None`).
    Memory { size: Option<u64> },
}

/// One volume on the host.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HostVolume {
    /// The directory mounts bind.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
}

/// One mount of the container, as the host sees it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HostMount {
    /// What is bound: a volume's directory, or a subPath's bind under `subpaths/`.
    pub source: PathBuf,
    /// The mount's `mountPath`.
    pub destination: String,
    /// Read-only.
    pub read_only: bool,
    /// The source is a file (a subPath naming one).
    pub file: bool,
}

/// An instance's volumes.
pub(crate) struct Volumes {
    /// `<root>/<ns>.<instance>`; `None` for a runtime without a state directory.
    dir: Option<PathBuf>,
    volumes: Vec<(String, Kind)>,
    state: Mutex<VolState>,
    /// The values the control plane sent last (perhaps with `missing`).
    latest: tokio::sync::watch::Sender<Arc<ResolvedConfig>>,
    /// The last values with nothing missing: what a start's env and the files come from.
    good: Mutex<Arc<ResolvedConfig>>,
}

#[derive(Default)]
struct VolState {
    /// Set up (mounted and written) and not torn down.
    ready: bool,
    /// The subPath binds of the current run.
    subpaths: Vec<PathBuf>,
    torn_down: bool,
}

/// The bytes a quantity stands for, rounded up (a limit of `1.5` bytes is 2).
fn bytes(q: &kantai_model::units::Quantity) -> Option<u64> {
    let v = q.value().ceil();
    (v > 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

impl Volumes {
    /// The volumes of an instance named `id` under `root`, for `container`.
    pub(crate) fn new(
        root: Option<&Path>,
        id: &str,
        volumes: &[Volume],
        container: &Container,
        config: Arc<ResolvedConfig>,
    ) -> Volumes {
        let memory_limit = crate::GroupLimits::of(&container.resources)
            .ok()
            .and_then(|l| l.memory)
            .and_then(|m| m.limit())
            .and_then(|l| u64::try_from(l).ok())
            .filter(|l| *l > 0);
        let volumes = volumes
            .iter()
            .map(|v| {
                let kind = match &v.empty_dir {
                    Some(e) => {
                        let limit = e.size_limit.as_ref().and_then(bytes);
                        if e.in_memory() {
                            // The kubelet's: the smaller of the limit and the memory the
                            // container may use (its pages count against it anyway).
                            let size = match (limit, memory_limit) {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            };
                            Kind::Memory { size }
                        } else {
                            Kind::Disk { limit }
                        }
                    }
                    None => Kind::Files,
                };
                (v.name.clone(), kind)
            })
            .collect();
        Volumes {
            dir: root.map(|r| r.join(id)),
            volumes,
            state: Mutex::new(VolState::default()),
            good: Mutex::new(config.clone()),
            latest: tokio::sync::watch::Sender::new(config),
        }
    }

    /// Wakes on each new [`Volumes::set_config`].
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<ResolvedConfig>> {
        self.latest.subscribe()
    }

    /// The last values with nothing missing (a start's env).
    pub(crate) fn good(&self) -> Arc<ResolvedConfig> {
        self.good.lock().clone()
    }

    /// Takes new values: with nothing missing they become the files' (rewritten at once if
    /// the volumes are set up) and the next start's env; with something missing the files
    /// stay as they are, as the kubelet keeps a deleted Secret's last files.
    pub(crate) fn set_config(
        &self,
        config: Arc<ResolvedConfig>,
    ) -> Result<Vec<String>, VolumeError> {
        self.latest.send_replace(config.clone());
        if !config.missing.is_empty() {
            return Ok(Vec::new());
        }
        self.update(config)
    }

    /// The instance's directory.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn volume_dir(&self, name: &str) -> Option<PathBuf> {
        // Volume names are DNS labels (validated); a name that could climb out gets no dir.
        let ok = !name.is_empty() && !name.contains('/') && !name.starts_with('.');
        Some(self.dir.as_ref()?.join(format!("v-{name}"))).filter(|_| ok)
    }

    /// The volumes by name, as the host has them.
    pub(crate) fn host_volumes(&self) -> BTreeMap<String, HostVolume> {
        self.volumes
            .iter()
            .filter_map(|(name, kind)| {
                Some((
                    name.clone(),
                    HostVolume {
                        path: self.volume_dir(name)?,
                        kind: kind.clone(),
                    },
                ))
            })
            .collect()
    }

    /// Creates and mounts every volume and writes the files of `config`. Idempotent.
    pub(crate) fn set_up(&self) -> Result<(), VolumeError> {
        let mut st = self.state.lock();
        let config = self.good();
        if st.ready || self.volumes.is_empty() {
            return Ok(());
        }
        let Some(dir) = &self.dir else {
            return Err(VolumeError::Io {
                volume: self.volumes[0].0.clone(),
                what: "cannot be made:",
                path: "this runtime has no state directory".to_owned(),
                error: "start the node with a state directory".to_owned(),
            });
        };
        let first = &self.volumes[0].0;
        private_dir(dir).map_err(|e| VolumeError::io(first, "cannot create", dir, e))?;
        for (name, kind) in &self.volumes {
            let Some(path) = self.volume_dir(name) else {
                return Err(VolumeError::BadPath {
                    volume: name.clone(),
                    path: name.clone(),
                    why: "is not a volume name",
                });
            };
            let io = |what, e: std::io::Error| VolumeError::io(name, what, &path, e);
            if !path.exists() {
                std::fs::create_dir(&path).map_err(|e| io("cannot create", e))?;
            }
            match kind {
                Kind::Files => {
                    if !is_mount_point(&path) {
                        mount_tmpfs(&path, "mode=0755", None)
                            .map_err(|e| io("cannot mount a tmpfs at", e))?;
                    }
                    let files = config
                        .volumes
                        .get(name)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    write_files(&path, name, files)?;
                }
                Kind::Memory { size } => {
                    if !is_mount_point(&path) {
                        mount_tmpfs(&path, "mode=1777", *size)
                            .map_err(|e| io("cannot mount a tmpfs at", e))?;
                    }
                }
                Kind::Disk { .. } => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                        .map_err(|e| io("cannot open up", e))?;
                }
            }
        }
        st.ready = true;
        Ok(())
    }

    /// Rewrites the files of every Secret, ConfigMap and projected volume from `config`
    /// (nothing before [`Volumes::set_up`] or after [`Volumes::tear_down`]; a volume whose
    /// content did not change is not touched). Returns the volumes rewritten.
    fn update(&self, config: Arc<ResolvedConfig>) -> Result<Vec<String>, VolumeError> {
        let st = self.state.lock();
        // Under the state's lock, so a set-up racing with this writes these values or
        // sees them written.
        *self.good.lock() = config.clone();
        if !st.ready || st.torn_down {
            return Ok(Vec::new());
        }
        let mut changed = Vec::new();
        for (name, kind) in &self.volumes {
            if *kind != Kind::Files {
                continue;
            }
            let Some(path) = self.volume_dir(name) else {
                continue;
            };
            let files = config
                .volumes
                .get(name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if write_files(&path, name, files)? {
                changed.push(name.clone());
            }
        }
        Ok(changed)
    }

    /// [`Volumes::mounts`] off the async threads (it opens and binds files), as a start's
    /// failure: a volume that cannot be mounted is `CreateContainerError`, not retried.
    pub(crate) async fn mounts_for_start(
        self: &Arc<Self>,
        container: &Container,
    ) -> Result<Vec<HostMount>, crate::instance::Failure> {
        use crate::instance::Failure;
        let (volumes, container) = (self.clone(), container.clone());
        tokio::task::spawn_blocking(move || volumes.mounts(&container))
            .await
            .map_err(|e| Failure {
                reason: "CreateContainerError",
                message: e.to_string(),
                retry: true,
            })?
            .map_err(|e| Failure {
                reason: "CreateContainerError",
                message: e.to_string(),
                retry: false,
            })
    }

    /// The container's mounts for one run: each volume's directory, or for a `subPath` a
    /// fresh bind of the entry it names, resolved inside the volume (made now, so a restart
    /// binds what the volume holds then). Secret, ConfigMap and projected volumes are
    /// read-only whatever the mount says, as the kubelet mounts them.
    pub(crate) fn mounts(&self, container: &Container) -> Result<Vec<HostMount>, VolumeError> {
        let mut st = self.state.lock();
        for old in std::mem::take(&mut st.subpaths) {
            unmount_and_remove(&old);
        }
        let host = self.host_volumes();
        let mut out = Vec::new();
        for (n, m) in container.volume_mounts.iter().enumerate() {
            let Some(v) = host.get(&m.name) else {
                return Err(VolumeError::UnknownVolume {
                    volume: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                });
            };
            let read_only = m.read_only.unwrap_or(false) || v.kind == Kind::Files;
            let sub = m.sub_path.as_deref().filter(|s| !s.is_empty());
            let (source, file) = match sub {
                None => (v.path.clone(), false),
                Some(sub) => {
                    let dir = self
                        .dir
                        .as_ref()
                        .map(|d| d.join("subpaths"))
                        .unwrap_or_default();
                    let target = dir.join(n.to_string());
                    let file = bind_sub_path(&v.path, sub, &dir, &target).map_err(|e| {
                        VolumeError::io(&m.name, "cannot bind subPath", Path::new(sub), e)
                    })?;
                    st.subpaths.push(target.clone());
                    (target, file)
                }
            };
            out.push(HostMount {
                source,
                destination: m.mount_path.clone(),
                read_only,
                file,
            });
        }
        Ok(out)
    }

    /// What `kantai_container::runtime_spec` takes: the container, with each subPath mount
    /// pointed at its bind of this run (`binds`, from [`Volumes::mounts`]; without them the
    /// subPaths stay as written, for a check of the config before anything is mounted), and
    /// the volumes by name. A Memory emptyDir is the node's own tmpfs, bound like a
    /// directory, so that it keeps its content across restarts and is one volume however
    /// many mounts it has, as in Kubernetes.
    pub(crate) fn oci_inputs(
        &self,
        c: &Container,
        binds: Option<&[HostMount]>,
    ) -> (Container, BTreeMap<String, kantai_container::HostVolume>) {
        use kantai_container::{HostVolume as Oci, HostVolumeKind};
        let host = self.host_volumes();
        let oci = |path: &Path, kind: &Kind| Oci {
            path: path.display().to_string(),
            kind: match kind {
                Kind::Files => HostVolumeKind::Files,
                Kind::Disk { .. } | Kind::Memory { .. } => HostVolumeKind::Dir,
            },
        };
        let mut map: BTreeMap<String, Oci> = host
            .iter()
            .map(|(n, v)| (n.clone(), oci(&v.path, &v.kind)))
            .collect();
        let mut c = c.clone();
        if let Some(binds) = binds {
            for (n, (m, b)) in c.volume_mounts.iter_mut().zip(binds).enumerate() {
                if m.sub_path.as_deref().is_none_or(str::is_empty) {
                    continue;
                }
                let Some(v) = host.get(&m.name) else { continue };
                // Not a DNS label: never a volume's own name.
                let name = format!("subpath:{n}");
                map.insert(name.clone(), oci(&b.source, &v.kind));
                m.name = name;
                m.sub_path = None;
            }
        }
        (c, map)
    }

    /// The emptyDirs on disk over their `sizeLimit`: (volume, limit's text) of the first.
    pub(crate) fn over_limit(&self, volumes: &[Volume]) -> Option<(String, String)> {
        for (name, kind) in &self.volumes {
            let Kind::Disk { limit: Some(limit) } = kind else {
                continue;
            };
            let Some(path) = self.volume_dir(name) else {
                continue;
            };
            if usage(&path) > *limit {
                let text = volumes
                    .iter()
                    .find(|v| &v.name == name)
                    .and_then(|v| v.empty_dir.as_ref())
                    .and_then(|e| e.size_limit.as_ref())
                    .map(|q| q.as_str().to_owned())
                    .unwrap_or_else(|| limit.to_string());
                return Some((name.clone(), text));
            }
        }
        None
    }

    /// Whether the instance has no volumes (nothing to set up or tear down).
    pub(crate) fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }

    /// Whether an emptyDir on disk has a limit to watch.
    pub(crate) fn has_disk_limit(&self) -> bool {
        self.volumes
            .iter()
            .any(|(_, k)| matches!(k, Kind::Disk { limit: Some(_) }))
    }

    /// Unmounts and removes every volume (and the instance's directory).
    pub(crate) fn tear_down(&self) {
        let mut st = self.state.lock();
        st.torn_down = true;
        st.ready = false;
        st.subpaths.clear();
        if let Some(dir) = &self.dir {
            remove_instance_dir(dir);
        }
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        let torn_down = self.state.lock().torn_down;
        if !torn_down {
            self.tear_down();
        }
    }
}

/// Creates `dir` (and its parents) with 0700: only root walks into instances' volumes.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn mount_tmpfs(path: &Path, mode: &str, size: Option<u64>) -> std::io::Result<()> {
    let options = match size {
        Some(s) => format!("{mode},size={s}"),
        None => mode.to_owned(),
    };
    nix::mount::mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(std::io::Error::from)
}

/// Binds the entry `sub` of the volume at `root` onto `target` (created as a file or a
/// directory to match); returns whether it is a file. The entry is opened inside the
/// volume (`RESOLVE_IN_ROOT`: symlinks resolve as if the volume were `/`), and the bind is
/// made from that open file, so nothing can swap the path between the check and the mount.
fn bind_sub_path(root: &Path, sub: &str, dir: &Path, target: &Path) -> std::io::Result<bool> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    if sub.starts_with('/') || sub.split('/').any(|p| p == "..") {
        return Err(std::io::Error::other(
            "must be a relative path without '..'",
        ));
    }
    let base = std::fs::File::open(root)?;
    let fd = rustix::fs::openat2(
        &base,
        sub,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    )
    .map_err(|e| {
        if e == rustix::io::Errno::NOENT {
            std::io::Error::other("no such file or directory in the volume")
        } else {
            std::io::Error::from(e)
        }
    })?;
    let st = rustix::fs::fstat(&fd)?;
    let file = rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory;
    std::fs::create_dir_all(dir)?;
    unmount_and_remove(target);
    if file {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)?;
    } else {
        std::fs::create_dir(target)?;
    }
    let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    nix::mount::mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(std::io::Error::from)?;
    Ok(file)
}

fn unmount_and_remove(p: &Path) {
    while is_mount_point(p) {
        if nix::mount::umount2(p, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
}

/// Unmounts everything under an instance's directory (deepest first), then removes what is
/// left without crossing into any mount that could not be removed.
fn remove_instance_dir(dir: &Path) {
    let mut mounts = mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for m in &mounts {
        if let Err(e) = nix::mount::umount2(m, MntFlags::MNT_DETACH) {
            warn!(path = %m.display(), "cannot unmount a volume: {e}");
        }
    }
    remove_tree_one_fs(dir);
}

/// The mount points at or below `dir`, from `/proc/self/mountinfo`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `rm -r --one-file-system`: what sits on another device (a mount that is still there)
/// is left alone, never emptied.
fn remove_tree_one_fs(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return;
    };
    fn walk(p: &Path, dev: u64) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return;
        };
        if m.is_dir() {
            if m.dev() != dev {
                warn!(path = %p.display(), "left a mount under a volume in place");
                return;
            }
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    walk(&e.path(), dev);
                }
            }
            let _ = std::fs::remove_dir(p);
        } else {
            let _ = std::fs::remove_file(p);
        }
    }
    walk(dir, top.dev());
}

/// The bytes a directory tree takes on its file system (blocks, as `du` counts them).
fn usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    fn walk(p: &Path, dev: u64, total: &mut u64) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return;
        };
        if m.dev() != dev {
            return;
        }
        *total += m.blocks() * 512;
        if m.is_dir()
            && let Ok(entries) = std::fs::read_dir(p)
        {
            for e in entries.flatten() {
                walk(&e.path(), dev, total);
            }
        }
    }
    let mut total = 0;
    walk(dir, top.dev(), &mut total);
    total
}

/// Whether `p` is a mount point (its device differs from its parent's, or mountinfo says so).
fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(p), p.parent()) else {
        return false;
    };
    if std::fs::metadata(parent).is_ok_and(|pm| pm.dev() != m.dev()) {
        return true;
    }
    // A bind from the same file system keeps the device.
    mounts_under(p).iter().any(|m| m == p)
}

/// Removes what an earlier run of this node left under `root` (the agent was killed):
/// volumes unmounted, directories removed, and the mount points process instances had
/// created on the node removed when empty.
pub(crate) fn clean_leftovers(root: &Path) {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return;
    };
    for d in dirs.flatten() {
        info!(volumes = %d.path().display(), "removing the volumes an earlier run of this node left");
        if let Ok(list) = std::fs::read_to_string(d.path().join(MOUNT_POINTS)) {
            let mut paths: Vec<&str> = list.lines().filter(|l| l.starts_with('/')).collect();
            paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in paths {
                remove_if_empty(Path::new(p));
            }
        }
        remove_instance_dir(&d.path());
    }
}

/// The file in an instance's directory listing the mount points kantai created for it on
/// the node.
const MOUNT_POINTS: &str = "mountpoints";

/// Mount points that process instances' `mountPath`s needed on the node and kantai created
/// (`mkdir -p`, or an empty file for a subPath naming a file), with how many instances use
/// each: the last one to end removes it, if it is still empty.
#[derive(Default)]
pub(crate) struct MountPoints {
    made: Mutex<HashMap<PathBuf, usize>>,
}

impl MountPoints {
    /// Makes sure `dest` exists (a file when `file`), creating what is missing; returns the
    /// paths kantai created that this instance now holds (shallowest first), which it
    /// records in `record` (its instance directory) for a killed agent's successor.
    pub(crate) fn acquire(
        &self,
        dest: &Path,
        file: bool,
        record: &Path,
    ) -> std::io::Result<Vec<PathBuf>> {
        let mut made = self.made.lock();
        let mut held = Vec::new();
        let mut p = PathBuf::from("/");
        let parts: Vec<_> = dest.components().skip(1).collect();
        let result = (|| {
            for (i, c) in parts.iter().enumerate() {
                p.push(c);
                let last = i + 1 == parts.len();
                if let Some(n) = made.get_mut(&p) {
                    *n += 1;
                    held.push(p.clone());
                    continue;
                }
                match std::fs::symlink_metadata(&p) {
                    Ok(m) => {
                        let want_dir = !(last && file);
                        if last && m.is_dir() != want_dir && !m.file_type().is_symlink() {
                            return Err(std::io::Error::other(if file {
                                "is a directory on this node, and the subPath names a file"
                            } else {
                                "is a file on this node, and the volume is a directory"
                            }));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if last && file {
                            std::fs::OpenOptions::new()
                                .write(true)
                                .create_new(true)
                                .mode(0o644)
                                .open(&p)?;
                        } else {
                            std::fs::create_dir(&p)?;
                            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
                        }
                        made.insert(p.clone(), 1);
                        held.push(p.clone());
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            drop(made);
            self.release(&held);
            return Err(e);
        }
        if !held.is_empty() {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(record.join(MOUNT_POINTS))?;
            for h in &held {
                writeln!(f, "{}", h.display())?;
            }
        }
        Ok(held)
    }

    /// Gives back what [`MountPoints::acquire`] returned; removes (deepest first) what no
    /// instance holds any more and is still empty.
    pub(crate) fn release(&self, held: &[PathBuf]) {
        let mut made = self.made.lock();
        for p in held.iter().rev() {
            if let Some(n) = made.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    made.remove(p);
                    remove_if_empty(p);
                }
            }
        }
    }
}

/// Removes an empty directory or an empty regular file.
fn remove_if_empty(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir(p);
        }
        Ok(m) if m.is_file() && m.len() == 0 => {
            let _ = std::fs::remove_file(p);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str, mode: u32) -> VolumeFile {
        VolumeFile {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn link(p: &Path) -> String {
        std::fs::read_link(p)
            .map(|l| l.display().to_string())
            .unwrap_or_else(|e| format!("not a link: {e}"))
    }

    fn generations(dir: &Path) -> Vec<String> {
        let mut g: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA)
            .collect();
        g.sort();
        g
    }

    #[test]
    fn files_are_written_in_a_generation_behind_data_and_top_level_links() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        let wrote = write_files(
            d,
            "cfg",
            &[
                file("app.yaml", "a: 1\n", 0o644),
                file("certs/ca.pem", "CA", 0o400),
            ],
        )
        .expect("written");
        assert!(wrote);
        let gens = generations(d);
        assert_eq!(gens.len(), 1, "{gens:?}");
        assert_eq!(link(&d.join(DATA)), gens[0]);
        assert_eq!(link(&d.join("app.yaml")), "..data/app.yaml");
        assert_eq!(link(&d.join("certs")), "..data/certs");
        assert_eq!(
            std::fs::read_to_string(d.join("certs/ca.pem")).expect("read"),
            "CA"
        );
        let mode = |p: &str| {
            std::fs::metadata(d.join(p))
                .expect("meta")
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("app.yaml"), 0o644);
        assert_eq!(mode("certs/ca.pem"), 0o400);
        assert_eq!(mode(&gens[0]), 0o755);
        assert!(!d.join(DATA_TMP).exists());
    }

    #[test]
    fn an_update_swaps_data_and_removes_the_old_generation_and_stale_links() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        write_files(d, "cfg", &[file("a", "1", 0o644), file("b", "2", 0o644)]).expect("first");
        let first = generations(d);
        write_files(d, "cfg", &[file("a", "one", 0o644), file("c", "3", 0o600)]).expect("second");
        let second = generations(d);
        assert_eq!(second.len(), 1, "{second:?}");
        assert_ne!(first, second);
        assert_eq!(link(&d.join(DATA)), second[0]);
        assert_eq!(std::fs::read_to_string(d.join("a")).expect("a"), "one");
        assert_eq!(std::fs::read_to_string(d.join("c")).expect("c"), "3");
        assert!(
            std::fs::symlink_metadata(d.join("b")).is_err(),
            "stale link b stays"
        );
    }

    #[test]
    fn the_same_content_writes_nothing_and_a_mode_change_writes() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        let files = [file("a", "1", 0o644)];
        assert!(write_files(d, "cfg", &files).expect("first"));
        let g = generations(d);
        assert!(!write_files(d, "cfg", &files).expect("again"));
        assert_eq!(generations(d), g);
        assert!(write_files(d, "cfg", &[file("a", "1", 0o600)]).expect("mode"));
        assert_ne!(generations(d), g);
    }

    #[test]
    fn paths_that_could_escape_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        for (path, why) in [
            ("../etc/passwd", "must not start with '..'"),
            ("a/../../x", "must not contain '..'"),
            ("/etc/passwd", "must be relative"),
            ("..data", "must not start with '..'"),
            ("", "is empty"),
            ("./", "names no file"),
        ] {
            let err = write_files(d, "cfg", &[file("ok", "1", 0o644), file(path, "x", 0o644)])
                .expect_err(path);
            assert_eq!(
                err,
                VolumeError::BadPath {
                    volume: "cfg".into(),
                    path: path.into(),
                    why
                }
            );
        }
        assert_eq!(
            std::fs::read_dir(d).expect("dir").count(),
            0,
            "something was written"
        );
        let err = write_files(d, "cfg", &[file("a", "1", 0o644), file("a/b", "2", 0o644)])
            .expect_err("conflict");
        assert!(
            err.to_string().contains("both a file and a directory"),
            "{err}"
        );
    }

    #[test]
    fn an_error_names_the_volume_and_path_but_never_the_content() {
        let err = write_files(
            Path::new("/proc/no-such-dir"),
            "db",
            &[file("password", "hunter2", 0o644)],
        )
        .expect_err("cannot write");
        let text = format!("{err} {err:?}");
        assert!(text.contains("db"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn containers_get_memory_empty_dirs_as_the_nodes_tmpfs_and_sub_paths_as_their_binds() {
        use kantai_container::HostVolumeKind;
        let root = tempfile::tempdir().expect("root");
        let c = Container {
            volume_mounts: vec![
                kantai_model::serving::VolumeMount {
                    name: "cfg".into(),
                    mount_path: "/etc/app.yaml".into(),
                    sub_path: Some("app.yaml".into()),
                    ..Default::default()
                },
                kantai_model::serving::VolumeMount {
                    name: "mem".into(),
                    mount_path: "/cache".into(),
                    ..Default::default()
                },
            ],
            ..Container::default()
        };
        let volumes = [
            Volume {
                name: "cfg".into(),
                config_map: Some(Default::default()),
                ..Volume::default()
            },
            Volume {
                name: "mem".into(),
                empty_dir: Some(kantai_model::serving::EmptyDirVolume {
                    medium: Some("Memory".into()),
                    size_limit: None,
                }),
                ..Volume::default()
            },
        ];
        let v = Volumes::new(Some(root.path()), "ns.i", &volumes, &c, Default::default());
        let inst = root.path().join("ns.i");
        let binds = [
            HostMount {
                source: inst.join("subpaths/0"),
                destination: "/etc/app.yaml".into(),
                read_only: true,
                file: true,
            },
            HostMount {
                source: inst.join("v-mem"),
                destination: "/cache".into(),
                read_only: false,
                file: false,
            },
        ];
        let (c2, map) = v.oci_inputs(&c, Some(&binds));
        assert_eq!(c2.volume_mounts[0].name, "subpath:0");
        assert_eq!(c2.volume_mounts[0].sub_path, None);
        assert_eq!(c2.volume_mounts[1].name, "mem");
        let path = |p: &Path| p.display().to_string();
        assert_eq!(
            map["subpath:0"],
            kantai_container::HostVolume {
                path: path(&inst.join("subpaths/0")),
                kind: HostVolumeKind::Files
            }
        );
        assert_eq!(
            map["mem"],
            kantai_container::HostVolume {
                path: path(&inst.join("v-mem")),
                kind: HostVolumeKind::Dir
            }
        );
        // Before anything is mounted, the subPaths stay as written for the config's check.
        let (c3, _) = v.oci_inputs(&c, None);
        assert_eq!(c3.volume_mounts, c.volume_mounts);
    }

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
