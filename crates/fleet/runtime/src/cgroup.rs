//! CPU and memory limits through Linux cgroups (v2, or the v1 `cpu` and `memory`
//! controllers), where the host lets kantai create groups.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCpu, LinuxMemory};

/// Limits of one instance, as read back from its groups.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// CPU cores (quota over period).
    pub cpu: Option<f64>,
    /// Memory bytes.
    pub memory: Option<u64>,
}

/// What an instance's group is given: the CPU and memory `kantai-container` computes from
/// the container's resources by the kubelet's rules (the figures a container's own
/// `config.json` would carry), so processes and containers are limited by one rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupLimits {
    /// CFS quota, period and shares.
    pub cpu: Option<LinuxCpu>,
    /// Memory limit, and memory+swap.
    pub memory: Option<LinuxMemory>,
}

impl GroupLimits {
    /// The limits of a container's resources (zero is no limit; a figure that does not fit
    /// is refused, naming its field).
    pub fn of(
        r: &kantai_model::serving::Resources,
    ) -> Result<GroupLimits, kantai_container::SpecError> {
        let res = kantai_container::resources::linux_resources(r, 0)?;
        Ok(GroupLimits {
            cpu: res.cpu().clone(),
            memory: *res.memory(),
        })
    }

    /// Whether there is anything to enforce.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none()
    }
}

/// Where kantai may create groups.
#[derive(Clone, Debug)]
pub enum Cgroups {
    /// The unified hierarchy at this directory.
    V2(PathBuf),
    /// v1 `cpu` and `memory` controller directories.
    V1 {
        /// The `cpu` controller's kantai directory.
        cpu: PathBuf,
        /// The `memory` controller's kantai directory.
        memory: PathBuf,
    },
}

impl Cgroups {
    /// Finds a writable cgroup hierarchy and creates `kantai/<scope>` in it; `None` when the
    /// host does not allow it (not root, no controllers, read-only mount).
    pub fn detect(scope: &str) -> Option<Cgroups> {
        let root = Path::new("/sys/fs/cgroup");
        let v2 = root.join("cgroup.controllers");
        if let Ok(controllers) = std::fs::read_to_string(&v2)
            && controllers.contains("cpu")
            && controllers.contains("memory")
        {
            let dir = root.join("kantai").join(scope);
            if std::fs::create_dir_all(&dir).is_ok() {
                // Children may only use controllers their parents delegate.
                let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu +memory");
                let _ = std::fs::write(root.join("kantai/cgroup.subtree_control"), "+cpu +memory");
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory");
                return Some(Cgroups::V2(dir));
            }
        }
        let (cpu, memory) = (root.join("cpu"), root.join("memory"));
        if cpu.join("cpu.cfs_quota_us").exists() && memory.join("memory.limit_in_bytes").exists() {
            let (c, m) = (
                cpu.join("kantai").join(scope),
                memory.join("kantai").join(scope),
            );
            if std::fs::create_dir_all(&c).is_ok() && std::fs::create_dir_all(&m).is_ok() {
                return Some(Cgroups::V1 { cpu: c, memory: m });
            }
        }
        None
    }

    /// Creates the groups of one instance with its limits; returns the `cgroup.procs` files
    /// the instance's process must join.
    pub fn create(&self, instance: &str, limits: &GroupLimits) -> std::io::Result<Vec<PathBuf>> {
        let (cpu, memory) = (limits.cpu.as_ref(), limits.memory.as_ref());
        match self {
            Cgroups::V2(root) => {
                let dir = root.join(instance);
                std::fs::create_dir_all(&dir)?;
                if let Some(c) = cpu {
                    if let (Some(q), Some(p)) = (c.quota(), c.period()) {
                        std::fs::write(dir.join("cpu.max"), format!("{q} {p}"))?;
                    }
                    if let Some(shares) = c.shares() {
                        // runc's conversion of v1 shares [2, 262144] to v2 weight [1, 10000].
                        let weight = 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142;
                        std::fs::write(dir.join("cpu.weight"), weight.to_string())?;
                    }
                }
                if let Some(m) = memory
                    && let Some(limit) = m.limit()
                {
                    std::fs::write(dir.join("memory.max"), limit.to_string())?;
                    // v2 counts swap apart: memory+swap equal to the limit is no swap.
                    let swap = m.swap().map_or(0, |s| (s - limit).max(0));
                    let _ = std::fs::write(dir.join("memory.swap.max"), swap.to_string());
                }
                Ok(vec![dir.join("cgroup.procs")])
            }
            Cgroups::V1 {
                cpu: cpu_dir,
                memory: mem_dir,
            } => {
                let (c, m) = (cpu_dir.join(instance), mem_dir.join(instance));
                std::fs::create_dir_all(&c)?;
                std::fs::create_dir_all(&m)?;
                if let Some(l) = cpu {
                    if let (Some(q), Some(p)) = (l.quota(), l.period()) {
                        std::fs::write(c.join("cpu.cfs_period_us"), p.to_string())?;
                        std::fs::write(c.join("cpu.cfs_quota_us"), q.to_string())?;
                    }
                    if let Some(shares) = l.shares() {
                        std::fs::write(c.join("cpu.shares"), shares.to_string())?;
                    }
                }
                if let Some(l) = memory
                    && let Some(limit) = l.limit()
                {
                    std::fs::write(m.join("memory.limit_in_bytes"), limit.to_string())?;
                    // Only where the kernel accounts swap (the file exists); memory+swap may
                    // not be below the memory limit, so it is written after it.
                    if let Some(swap) = l.swap() {
                        let _ =
                            std::fs::write(m.join("memory.memsw.limit_in_bytes"), swap.to_string());
                    }
                }
                Ok(vec![c.join("cgroup.procs"), m.join("cgroup.procs")])
            }
        }
    }

    /// The instance's group as a path from the hierarchy's root (`/kantai/<scope>/<instance>`),
    /// as an OCI runtime's `linux.cgroupsPath` names it.
    pub fn path_of(&self, instance: &str) -> String {
        let dir = match self {
            Cgroups::V2(root) => root.join(instance),
            Cgroups::V1 { memory, .. } => memory.join(instance),
        };
        let base = match self {
            Cgroups::V2(_) => Path::new("/sys/fs/cgroup"),
            Cgroups::V1 { .. } => Path::new("/sys/fs/cgroup/memory"),
        };
        match dir.strip_prefix(base) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => format!("/kantai/{instance}"),
        }
    }

    /// Marks the start of a run for [`Cgroups::hit_memory_limit`]: on cgroup v2 the OOM-kill
    /// count so far (`memory.events` counts the groups below too); on v1, where a kill is
    /// counted only in the victim's own group (the container's, which its OCI runtime
    /// removes as the container exits), the group's peak usage is reset instead.
    pub fn mark_memory(&self, instance: &str) -> u64 {
        match self {
            Cgroups::V2(root) => std::fs::read_to_string(root.join(instance).join("memory.events"))
                .ok()
                .and_then(|t| {
                    t.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        (k == "oom_kill").then(|| v.trim().parse().ok())?
                    })
                })
                .unwrap_or(0),
            Cgroups::V1 { memory, .. } => {
                for f in [
                    "memory.max_usage_in_bytes",
                    "memory.memsw.max_usage_in_bytes",
                ] {
                    let _ = std::fs::write(memory.join(instance).join(f), "0");
                }
                0
            }
        }
    }

    /// Whether the instance's memory group ran into its limit since `mark` (what
    /// [`Cgroups::mark_memory`] answered): on v2 an OOM kill was counted; on v1 the peak of
    /// memory (or memory+swap) came within a charge batch of its limit. A SIGKILL with
    /// this is a kill for going over the limit. (Not the v1 `failcnt`: recent kernels do
    /// not count failures of the memory+swap limit, which a charge meets first.)
    pub fn hit_memory_limit(&self, instance: &str, mark: u64) -> bool {
        let read =
            |p: PathBuf| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
        match self {
            Cgroups::V2(_) => self.mark_memory(instance) > mark,
            Cgroups::V1 { memory, .. } => {
                let dir = memory.join(instance);
                // A charge is at most 64 pages: a peak this close to the limit met it.
                const SLACK: u64 = 64 * 4096;
                [
                    ("memory.max_usage_in_bytes", "memory.limit_in_bytes"),
                    (
                        "memory.memsw.max_usage_in_bytes",
                        "memory.memsw.limit_in_bytes",
                    ),
                ]
                .iter()
                .any(|(peak, limit)| {
                    match (read(dir.join(peak)), read(dir.join(limit))) {
                        (Some(p), Some(l)) => l < u64::MAX / 2 && p + SLACK >= l,
                        _ => false,
                    }
                })
            }
        }
    }

    /// Removes an instance's groups (after its processes are gone), with any group below
    /// them (an OCI runtime's), in every hierarchy the host has: an OCI runtime creates the
    /// instance's directory in the hierarchies kantai does not set limits in, too.
    pub fn remove(&self, instance: &str) {
        let rel = self.path_of(instance);
        for h in hierarchies() {
            remove_tree(&h.join(rel.trim_start_matches('/')));
        }
    }

    /// Removes this scope's own group in every hierarchy, once its instances' are gone (an
    /// agent that stops leaves no empty directory behind).
    pub fn remove_scope(&self) {
        let rel = self.path_of("");
        for h in hierarchies() {
            let _ = std::fs::remove_dir(h.join(rel.trim_start_matches('/')));
        }
    }

    /// Removes every instance group of this scope (what an earlier run left).
    pub fn remove_all(&self) {
        let rel = self.path_of("");
        for h in hierarchies() {
            let scope = h.join(rel.trim_start_matches('/'));
            if let Ok(entries) = std::fs::read_dir(&scope) {
                for e in entries.flatten().filter(|e| e.path().is_dir()) {
                    remove_tree(&e.path());
                }
            }
        }
    }

    /// The limits read back from an instance's groups (for tests and diagnostics).
    pub fn read_limits(&self, instance: &str) -> Limits {
        let read = |p: PathBuf| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
        match self {
            Cgroups::V2(root) => {
                let dir = root.join(instance);
                Limits {
                    cpu: read(dir.join("cpu.max")).and_then(|s| {
                        let mut it = s.split_whitespace();
                        let q: f64 = it.next()?.parse().ok()?;
                        let p: f64 = it.next()?.parse().ok()?;
                        Some(q / p)
                    }),
                    memory: read(dir.join("memory.max")).and_then(|s| s.parse().ok()),
                }
            }
            Cgroups::V1 { cpu, memory } => Limits {
                cpu: read(cpu.join(instance).join("cpu.cfs_quota_us"))
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|q| *q > 0.0)
                    .and_then(|q| {
                        let p: f64 = read(cpu.join(instance).join("cpu.cfs_period_us"))?
                            .parse()
                            .ok()?;
                        Some(q / p)
                    }),
                memory: read(memory.join(instance).join("memory.limit_in_bytes"))
                    .and_then(|s| s.parse().ok()),
            },
        }
    }
}

/// Every cgroup hierarchy's root: `/sys/fs/cgroup` itself on a v2 host, each v1 controller's
/// directory (and the v2 `unified` mount) beside it otherwise.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_owned()];
    }
    std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.is_symlink())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a cgroup directory and the groups below it, deepest first (cgroup directories
/// go with rmdir, never with their files).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
