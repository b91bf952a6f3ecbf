//! The launcher shim:
//! `kantai __shim --parent PID [--cgroup FILE]... [--user UID:GID] [--mount SRC DST ro|rw]...
//! [--cwd DIR] -- PROGRAM ARGS...`.
//!
//! With mounts, it first moves into a mount namespace of its own (private all the way
//! down, so nothing it mounts reaches the node's) and binds each volume's directory on the
//! host at its `mountPath` (then remounts it read-only where asked; `nosuid`, `nodev`
//! always), and changes to `--cwd` there. Then it joins the instance's cgroups (while it still may), becomes the unprivileged user it is
//! given (no supplementary groups), asks the kernel to kill it when its parent (the node
//! agent) dies, checks the parent is still there, and then becomes the program (exec), which
//! keeps the parent-death signal. So an instance never outlives its agent, even when the
//! agent is killed with SIGKILL.
//!
//! The program is opened before the user changes and executed from that open file, so it
//! need not be reachable by the user along its path (kantai's own binary in a private
//! directory, say); what it reads while it runs must be. Scripts (`#!`) are run by path,
//! since their interpreter opens them by name.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// Parsed shim arguments.
#[derive(Debug, PartialEq)]
pub struct ShimArgs {
    /// The expected parent process.
    pub parent: u32,
    /// `cgroup.procs` files to join.
    pub cgroups: Vec<PathBuf>,
    /// The user and group to become.
    pub user: Option<(u32, u32)>,
    /// Binds to make in a private mount namespace: host path, mount path, read-only.
    pub mounts: Vec<(PathBuf, PathBuf, bool)>,
    /// The working directory, entered after the mounts.
    pub cwd: Option<PathBuf>,
    /// Program and arguments.
    pub command: Vec<String>,
}

/// Parses the shim's arguments (after `__shim`).
pub fn parse(args: &[String]) -> Result<ShimArgs, String> {
    let mut parent = None;
    let mut cgroups = Vec::new();
    let mut user = None;
    let mut mounts = Vec::new();
    let mut cwd = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--parent" => {
                parent = it.next().and_then(|p| p.parse().ok());
            }
            "--cgroup" => cgroups.extend(it.next().map(PathBuf::from)),
            "--user" => {
                let ids = it
                    .next()
                    .and_then(|v| v.split_once(':'))
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                user = Some(ids.ok_or("--user needs UID:GID")?);
            }
            "--mount" => {
                let (Some(src), Some(dst), Some(mode)) = (it.next(), it.next(), it.next()) else {
                    return Err("--mount needs SOURCE DESTINATION ro|rw".into());
                };
                let ro = match mode.as_str() {
                    "ro" => true,
                    "rw" => false,
                    other => return Err(format!("--mount: {other:?} is neither ro nor rw")),
                };
                if !dst.starts_with('/') {
                    return Err(format!("--mount: {dst:?} is not an absolute path"));
                }
                mounts.push((PathBuf::from(src), PathBuf::from(dst), ro));
            }
            "--cwd" => cwd = it.next().map(PathBuf::from),
            "--" => {
                let command: Vec<String> = it.cloned().collect();
                if command.is_empty() {
                    return Err("no program after --".into());
                }
                return Ok(ShimArgs {
                    parent: parent.ok_or("--parent PID is required")?,
                    cgroups,
                    user,
                    mounts,
                    cwd,
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
    if !args.mounts.is_empty() {
        if let Err(e) = mount_volumes(&args.mounts) {
            eprintln!("kantai shim: {e}");
            return 126;
        }
        if let Some(dir) = &args.cwd
            && let Err(e) = std::env::set_current_dir(dir)
        {
            eprintln!(
                "kantai shim: cannot enter the working directory {}: {e}",
                dir.display()
            );
            return 126;
        }
    }
    for f in &args.cgroups {
        if let Err(e) = std::fs::write(f, std::process::id().to_string()) {
            eprintln!("kantai shim: cannot join {}: {e}", f.display());
        }
    }
    let program = match args.user {
        Some((uid, gid)) => {
            // Opened while the path is still ours to walk.
            let program = open_program(&args.command[0]);
            if let Err(e) = become_user(uid, gid) {
                eprintln!("kantai shim: cannot become uid {uid} gid {gid}: {e}");
                return 126;
            }
            program
        }
        None => None,
    };
    // After the user change, which clears the parent-death signal.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("kantai shim: cannot set the parent-death signal: {e}");
        return 126;
    }
    // The parent may have died before the signal was armed.
    if std::os::unix::process::parent_id() != args.parent {
        return 125;
    }
    if let Some(file) = program {
        let argv: Vec<std::ffi::CString> = args
            .command
            .iter()
            .filter_map(|a| std::ffi::CString::new(a.as_bytes()).ok())
            .collect();
        let env: Vec<std::ffi::CString> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.into_encoded_bytes();
                kv.push(b'=');
                kv.extend(v.into_encoded_bytes());
                std::ffi::CString::new(kv).ok()
            })
            .collect();
        let err = nix::unistd::fexecve(&file, &argv, &env).unwrap_err();
        eprintln!("kantai shim: cannot run {:?}: {err}", args.command[0]);
        return 127;
    }
    let err = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    eprintln!("kantai shim: cannot run {:?}: {err}", args.command[0]);
    127
}

/// A private mount namespace with the volumes bound in. Nothing made here propagates to
/// the node's namespace, and the namespace ends with the instance's last process.
fn mount_volumes(mounts: &[(PathBuf, PathBuf, bool)]) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("cannot make a mount namespace for the volumes: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("cannot make the mount namespace private: {e}"))?;
    for (src, dst, ro) in mounts {
        let fail = |what: &str, e: nix::Error| {
            format!("cannot {what} {} at {}: {e}", src.display(), dst.display())
        };
        mount(
            Some(src.as_path()),
            dst.as_path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| fail("bind", e))?;
        let mut flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if *ro {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(
            None::<&str>,
            dst.as_path(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| fail("remount", e))?;
    }
    Ok(())
}

/// The program file, opened for execution from it; `None` for a script (run by path) or a
/// program that cannot be opened (exec by path then reports why).
fn open_program(program: &str) -> Option<std::fs::File> {
    use std::io::Read;
    let path = if program.contains('/') {
        PathBuf::from(program)
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.join(program))
            .find(|p| p.is_file())?
    };
    let mut file = std::fs::File::open(path).ok()?;
    let mut magic = [0u8; 2];
    if file.read_exact(&mut magic).is_ok() && magic == *b"#!" {
        return None;
    }
    Some(file)
}

/// Drops every group, then becomes `gid` and `uid` (in that order: after the user change
/// the group could not be changed any more).
fn become_user(uid: u32, gid: u32) -> nix::Result<()> {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    setgroups(&[])?;
    setgid(Gid::from_raw(gid))?;
    setuid(Uid::from_raw(uid))
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
        assert_eq!(p.user, None);
        assert!(p.mounts.is_empty());
        let with_mounts: Vec<String> = [
            "--parent", "1", "--mount", "/v/a", "/etc/a", "ro", "--mount", "/v/b", "/data", "rw",
            "--cwd", "/data", "--", "p",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = parse(&with_mounts).expect("valid");
        assert_eq!(
            m.mounts,
            [
                (PathBuf::from("/v/a"), PathBuf::from("/etc/a"), true),
                (PathBuf::from("/v/b"), PathBuf::from("/data"), false)
            ]
        );
        assert_eq!(m.cwd, Some(PathBuf::from("/data")));
        let bad: Vec<String> = ["--parent", "1", "--mount", "/v", "/x", "rx", "--", "p"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(parse(&bad).is_err());
        let with_user: Vec<String> = ["--parent", "1", "--user", "65534:65534", "--", "p"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(parse(&with_user).expect("valid").user, Some((65534, 65534)));
        assert!(
            parse(&[
                "--parent".into(),
                "1".into(),
                "--user".into(),
                "nobody".into()
            ])
            .is_err()
        );
        assert!(parse(&["--parent".into(), "1".into()]).is_err());
        assert!(parse(&["--".into(), "x".into()]).is_err());
    }
}
