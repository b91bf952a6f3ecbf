//! The container shim:
//! `kantai __oci-shim --parent PID --id ID --bundle DIR --pid-file FILE -- RUNTIME ARGS...`.
//!
//! It stands where a foreground `runc run` would, split in two: it creates the container
//! (`RUNTIME ARGS... create`: namespaces, cgroups, mounts; the slow part) as soon as it
//! starts, then waits for a line on its standard input, and only then starts it (`start`:
//! a few milliseconds). So a container can be created ahead of demand and started on the
//! first request. The container's output is the shim's (the OCI runtime passes its stdio
//! through), and the shim ends with the container's exit status (128 + the signal for a
//! kill, as `runc run` does), because it is a child subreaper: the container's init, whose
//! `create` parent exits at once, becomes its child. End of input before the start line
//! deletes the container unstarted. The parent-death signal ties the shim to its agent.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Parsed shim arguments.
#[derive(Debug, PartialEq)]
pub struct OciShimArgs {
    /// The expected parent process (the node agent).
    pub parent: u32,
    /// The container's id.
    pub id: String,
    /// The bundle.
    pub bundle: PathBuf,
    /// Where the runtime writes the container's init pid.
    pub pid_file: PathBuf,
    /// The runtime's program and leading arguments (`runc --root R`, or crun's wrapper).
    pub runtime: Vec<String>,
}

/// Parses the shim's arguments (after `__oci-shim`).
pub fn parse(args: &[String]) -> Result<OciShimArgs, String> {
    let (mut parent, mut id, mut bundle, mut pid_file) = (None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--parent" => parent = it.next().and_then(|p| p.parse().ok()),
            "--id" => id = it.next().cloned(),
            "--bundle" => bundle = it.next().map(PathBuf::from),
            "--pid-file" => pid_file = it.next().map(PathBuf::from),
            "--" => {
                let runtime: Vec<String> = it.cloned().collect();
                if runtime.is_empty() {
                    return Err("no runtime after --".into());
                }
                return Ok(OciShimArgs {
                    parent: parent.ok_or("--parent PID is required")?,
                    id: id.ok_or("--id is required")?,
                    bundle: bundle.ok_or("--bundle is required")?,
                    pid_file: pid_file.ok_or("--pid-file is required")?,
                    runtime,
                });
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Err("expected -- RUNTIME ARGS...".into())
}

/// Exit status of a shim whose container could not be created or started (the runtime
/// said why on the shim's stderr, which is the instance's log).
pub const RUNTIME_FAILED: i32 = 125;

/// Runs the shim; returns its exit code.
pub fn run(a: &OciShimArgs) -> i32 {
    use nix::sys::wait::{WaitStatus, waitpid};
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("kantai oci shim: cannot become a subreaper: {e}");
        return RUNTIME_FAILED;
    }
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("kantai oci shim: cannot set the parent-death signal: {e}");
        return RUNTIME_FAILED;
    }
    if std::os::unix::process::parent_id() != a.parent {
        return RUNTIME_FAILED;
    }
    let runtime = |args: &[&str]| {
        let mut c = Command::new(&a.runtime[0]);
        c.args(&a.runtime[1..]).args(args).stdin(Stdio::null());
        c
    };
    let bundle = a.bundle.display().to_string();
    let pid_file = a.pid_file.display().to_string();
    let created = runtime(&[
        "create",
        "--bundle",
        &bundle,
        "--pid-file",
        &pid_file,
        &a.id,
    ])
    .status()
    .is_ok_and(|s| s.success());
    if !created {
        return RUNTIME_FAILED;
    }
    let mut line = String::new();
    let asked = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .is_ok_and(|n| n > 0);
    if !asked {
        // Not wanted after all: the created container goes unstarted.
        let _ = runtime(&["delete", "--force", &a.id]).status();
        return 0;
    }
    let Some(init) = std::fs::read_to_string(&a.pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        eprintln!("kantai oci shim: the runtime wrote no pid to {pid_file}");
        return RUNTIME_FAILED;
    };
    if !runtime(&["start", &a.id])
        .status()
        .is_ok_and(|s| s.success())
    {
        return RUNTIME_FAILED;
    }
    // The container's init is this process's child now; anything else adopted is reaped
    // on the way.
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == init => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == init => {
                return 128 + sig as i32;
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return RUNTIME_FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a: Vec<String> = [
            "--parent",
            "7",
            "--id",
            "ns.i",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/pid",
            "--",
            "runc",
            "--root",
            "/r",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = parse(&a).expect("valid");
        assert_eq!(p.parent, 7);
        assert_eq!(p.id, "ns.i");
        assert_eq!(p.runtime, ["runc", "--root", "/r"]);
        assert!(parse(&a[..8]).is_err());
        assert!(parse(&["--".into()]).is_err());
    }
}
