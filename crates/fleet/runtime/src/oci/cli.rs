//! The OCI runtime's command line (runc's, which crun shares): found once at start, then
//! `run`, `kill`, `delete`, `exec` and `list` against the node's own state root.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// The longest a short runtime command (`kill`, `delete`, `list`, `exec` aside) may take:
/// one stuck on a frozen cgroup or a state lock must not hold a stop forever.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An OCI runtime binary and the state root kantai gives it.
#[derive(Clone, Debug)]
pub struct OciRuntime {
    /// `runc` or `crun` (from the binary's own `--version`).
    pub name: String,
    /// The binary.
    pub path: PathBuf,
    /// Its first `--version` line, for the agent's start message.
    pub version: String,
    /// `--root`: this node's containers only, so cleaning up never touches anyone else's.
    pub root: PathBuf,
    /// crun cannot run with cgroup v1 hierarchies beside a v2 mount that has controllers
    /// (hybrid mode); it works in a private mount namespace with the v2 mount hidden.
    hide_unified: bool,
}

/// Why no OCI runtime can be used.
pub(crate) fn missing(wanted: Option<&str>) -> String {
    match wanted {
        Some(w) => format!(
            "the OCI runtime {w:?} (runtime.oci.runtime in the fleet config) cannot be run on this node: \
             install it (Debian: apt-get install runc, or crun) or name another"
        ),
        None => {
            "no OCI runtime on this node: install runc or crun (Debian: apt-get install runc), \
                 or map the image to a command under runtime.images in the fleet config"
                .to_owned()
        }
    }
}

impl OciRuntime {
    /// Finds the runtime: the one named (`runc`, `crun` or a path), else runc, then crun,
    /// from `PATH`. `root` is created.
    pub fn detect(wanted: Option<&str>, root: &Path) -> Result<OciRuntime, String> {
        let candidates: Vec<&str> = match wanted {
            Some(w) => vec![w],
            None => vec!["runc", "crun"],
        };
        for c in candidates {
            let Some(path) = which(c) else { continue };
            let Ok(out) = std::process::Command::new(&path)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
            else {
                continue;
            };
            if !out.status.success() {
                continue;
            }
            let version = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            let name = if version.starts_with("crun") {
                "crun"
            } else {
                "runc"
            };
            std::fs::create_dir_all(root)
                .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
            return Ok(OciRuntime {
                name: name.to_owned(),
                path,
                version,
                root: root.to_owned(),
                hide_unified: name == "crun" && hybrid_cgroups(),
            });
        }
        Err(missing(wanted))
    }

    /// A command of the runtime's with `--root` set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = if self.hide_unified {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
                .arg(&self.path);
            c
        } else {
            Command::new(&self.path)
        };
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    /// The program and arguments that run `args` (with `--root`), for callers that spawn
    /// it themselves (exec probes): the same wrapper as every other call.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let c = self.command(args);
        let std = c.as_std();
        std::iter::once(std.get_program())
            .chain(std.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// Runs a short runtime command to its end (killed after [`CALL_TIMEOUT`]); its
    /// stderr on failure.
    pub async fn call(&self, args: &[&str]) -> Result<(), String> {
        let run = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(CALL_TIMEOUT, run)
            .await
            .map_err(|_| {
                format!(
                    "{} {} did not finish within {}s",
                    self.name,
                    args.first().unwrap_or(&""),
                    CALL_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| format!("cannot run {}: {e}", self.path.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Runs a short runtime command to its end, blocking the thread: for the paths that
    /// cannot wait asynchronously (a drop, a restart between two starts).
    pub fn call_blocking(&self, args: &[&str]) -> bool {
        let Ok(mut child) = self
            .command(args)
            .into_std()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        let deadline = std::time::Instant::now() + CALL_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// The ids of the containers in this node's root (`list -q`).
    pub async fn list(&self) -> Vec<String> {
        let run = self
            .command(&["list", "-q"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let Ok(Ok(out)) = tokio::time::timeout(CALL_TIMEOUT, run).await else {
            tracing::warn!(
                "{} list did not answer: containers an earlier run left may remain",
                self.name
            );
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Kills and removes a container, whatever state it is in.
    pub async fn remove(&self, id: &str) {
        let _ = self.call(&["kill", id, "KILL"]).await;
        let _ = self.call(&["delete", "--force", id]).await;
    }
}

/// A program's path: as given when it has a `/`, else found in `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// cgroup v1 hierarchies beside a v2 mount that has controllers of its own.
fn hybrid_cgroups() -> bool {
    Path::new("/sys/fs/cgroup/memory").is_dir()
        && std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .is_ok_and(|c| !c.trim().is_empty())
}
