//! The launcher shim: `kantai __shim --parent PID [--cgroup FILE]... -- PROGRAM ARGS...`.
//!
//! It asks the kernel to kill it when its parent (the node agent) dies, checks the parent is
//! still there, joins the instance's cgroups, and then becomes the program (exec), which keeps
//! the parent-death signal. So an instance never outlives its agent, even when the agent is
//! killed with SIGKILL.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// Parsed shim arguments.
#[derive(Debug, PartialEq)]
pub struct ShimArgs {
    /// The expected parent process.
    pub parent: u32,
    /// `cgroup.procs` files to join.
    pub cgroups: Vec<PathBuf>,
    /// Program and arguments.
    pub command: Vec<String>,
}

/// Parses the shim's arguments (after `__shim`).
pub fn parse(args: &[String]) -> Result<ShimArgs, String> {
    let mut parent = None;
    let mut cgroups = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--parent" => {
                parent = it.next().and_then(|p| p.parse().ok());
            }
            "--cgroup" => cgroups.extend(it.next().map(PathBuf::from)),
            "--" => {
                let command: Vec<String> = it.cloned().collect();
                if command.is_empty() {
                    return Err("no program after --".into());
                }
                return Ok(ShimArgs {
                    parent: parent.ok_or("--parent PID is required")?,
                    cgroups,
                    command,
                });
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Err("expected -- PROGRAM ARGS...".into())
}

/// Runs the shim; returns only on failure (the exit code to use).
pub fn run(args: &ShimArgs) -> i32 {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("kantai shim: cannot set the parent-death signal: {e}");
        return 126;
    }
    // The parent may have died before the signal was armed.
    if std::os::unix::process::parent_id() != args.parent {
        return 125;
    }
    for f in &args.cgroups {
        if let Err(e) = std::fs::write(f, std::process::id().to_string()) {
            eprintln!("kantai shim: cannot join {}: {e}", f.display());
        }
    }
    let err = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    eprintln!("kantai shim: cannot run {:?}: {err}", args.command[0]);
    127
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a: Vec<String> = [
            "--parent",
            "42",
            "--cgroup",
            "/x/cgroup.procs",
            "--",
            "prog",
            "--flag",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = parse(&a).expect("valid");
        assert_eq!(p.parent, 42);
        assert_eq!(p.cgroups, [PathBuf::from("/x/cgroup.procs")]);
        assert_eq!(p.command, ["prog", "--flag"]);
        assert!(parse(&["--parent".into(), "1".into()]).is_err());
        assert!(parse(&["--".into(), "x".into()]).is_err());
    }
}
