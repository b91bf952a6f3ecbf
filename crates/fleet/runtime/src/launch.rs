//! The launcher: how a process instance is set up between `fork` and `exec`, so that the
//! function is exec'd directly by the agent's child (no intermediate program to exec first).
//!
//! In the child, in this order:
//! 1. with volume mounts, a private mount namespace (private all the way down, so nothing
//!    mounted here reaches the node's) with each volume's directory on the host bound at its
//!    `mountPath` (read-only where asked; `nosuid`, `nodev` always), then the working
//!    directory entered there;
//! 2. the instance's cgroups joined (while it still may: before the user change);
//! 3. the unprivileged user it runs as, with no supplementary groups (groups first: after
//!    the user change they could not change any more);
//! 4. the parent-death signal (SIGKILL) armed, after the user change, which clears it; then a
//!    check that the agent is still its parent, since the agent may have died before the
//!    signal was armed. So an instance never outlives its agent, even one killed with SIGKILL.
//!
//! The process group is the standard library's (`process_group(0)`, before these steps) and
//! the output pipes are dup'ed by it too. The program, when a user change comes, is opened
//! beforehand and executed through `/proc/self/fd`, so it need not be reachable by the user
//! along its path (kantai's own binary in a private directory, say); what it reads while it
//! runs must be. Scripts (`#!`) are run by path, since their interpreter opens them by name.
//!
//! This is the only module of kantai with `unsafe` code (ARCHITECTURE.md, "Unsafe code"):
//! `pre_exec` runs in the child of a multi-threaded process, where only async-signal-safe
//! calls are allowed. Everything the child needs (paths as C strings, open files) is made
//! before the fork; the child only makes system calls on it, allocating nothing.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::RunAs;

/// Why an instance's launch could not be prepared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    /// The program is not there.
    #[error("cannot start {program:?}: no such program (looked up in PATH={path})")]
    NoProgram {
        /// The program as the command names it.
        program: String,
        /// Where it was looked up.
        path: String,
    },
    /// A path holds a NUL byte, which no system call can take.
    #[error("cannot start {program:?}: {what} {value:?} holds a NUL byte")]
    Nul {
        /// The program.
        program: String,
        /// Which path.
        what: &'static str,
        /// The path.
        value: String,
    },
    /// A cgroup cannot be opened for joining.
    #[error("cannot start {program:?}: cannot open {file} to join its cgroup: {source}")]
    Cgroup {
        /// The program.
        program: String,
        /// The `cgroup.procs` file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A bind of a volume at its mount path in the instance's mount namespace.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bind {
    /// The volume's directory (or file) on the host.
    pub source: PathBuf,
    /// Where the instance sees it.
    pub destination: PathBuf,
    /// Remounted read-only.
    pub read_only: bool,
}

/// What one start asks of the launcher.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// `cgroup.procs` files to join.
    pub cgroups: Vec<PathBuf>,
    /// The user and group to become.
    pub user: Option<RunAs>,
    /// Binds to make in a private mount namespace.
    pub mounts: Vec<Bind>,
    /// The working directory: entered in the mount namespace when there are mounts, by the
    /// standard library otherwise.
    pub cwd: Option<PathBuf>,
}

/// A bind as the child makes it: C strings made before the fork.
struct ChildBind {
    source: CString,
    destination: CString,
    read_only: bool,
}

/// Everything the child touches, owned by the `pre_exec` closure (so it lives until the
/// command is spawned and dropped).
struct Child {
    parent: libc::pid_t,
    cgroups: Vec<File>,
    user: Option<RunAs>,
    mounts: Vec<ChildBind>,
    cwd: Option<CString>,
    /// The program opened for exec through `/proc/self/fd` (kept open until the spawn).
    _program: Option<File>,
}

/// What the child writes to its output (the instance's log) when a cgroup cannot be joined:
/// the instance runs, without its limits, as it did before the launcher had them.
const CGROUP_WARNING: &[u8] =
    b"kantai: cannot join the instance's cgroup; its CPU and memory limits are not enforced\n";

/// The command of one start: `command` (program and arguments) launched by `plan`, the
/// program looked up in `path` (the instance's PATH). The caller adds the environment and the
/// output pipes.
pub(crate) fn command(
    command: &[String],
    path: &OsStr,
    plan: Plan,
) -> Result<Command, LaunchError> {
    let name = &command[0];
    let nul = |what: &'static str, value: &Path| LaunchError::Nul {
        program: name.clone(),
        what,
        value: value.display().to_string(),
    };
    let resolved = resolve(name, path).ok_or_else(|| LaunchError::NoProgram {
        program: name.clone(),
        path: path.to_string_lossy().into_owned(),
    })?;
    // Opened while the path is still ours to walk; a script runs by path.
    let program = plan.user.and_then(|_| open_program(&resolved));
    let mut cmd = match &program {
        Some(file) => {
            let mut c = Command::new(format!("/proc/self/fd/{}", file.as_raw_fd()));
            c.arg0(name);
            c
        }
        None => Command::new(&resolved),
    };
    cmd.args(&command[1..]);
    let mut cgroups = Vec::with_capacity(plan.cgroups.len());
    for f in &plan.cgroups {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .map_err(|source| LaunchError::Cgroup {
                program: name.clone(),
                file: f.display().to_string(),
                source,
            })?;
        cgroups.push(file);
    }
    let mut mounts = Vec::with_capacity(plan.mounts.len());
    for m in &plan.mounts {
        mounts.push(ChildBind {
            source: c_path(&m.source).ok_or_else(|| nul("volume", &m.source))?,
            destination: c_path(&m.destination).ok_or_else(|| nul("mountPath", &m.destination))?,
            read_only: m.read_only,
        });
    }
    let cwd = match (&plan.cwd, plan.mounts.is_empty()) {
        (Some(dir), true) => {
            cmd.current_dir(dir);
            None
        }
        (Some(dir), false) => Some(c_path(dir).ok_or_else(|| nul("workingDir", dir))?),
        (None, _) => None,
    };
    let child = Child {
        parent: i32::try_from(std::process::id()).unwrap_or(0),
        cgroups,
        user: plan.user,
        mounts,
        cwd,
        _program: program,
    };
    // SAFETY: `Child::set_up` makes only async-signal-safe system calls (unshare, mount,
    // chdir, write, setgroups, setgid, setuid, prctl, getppid) on memory allocated before the
    // fork, and allocates nothing, as `pre_exec` requires in the child of a multi-threaded
    // process.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || child.set_up());
    }
    Ok(cmd)
}

impl Child {
    /// Runs in the child between fork and exec: async-signal-safe calls only.
    fn set_up(&self) -> std::io::Result<()> {
        if !self.mounts.is_empty() {
            self.mount_volumes()?;
            if let Some(dir) = &self.cwd {
                // SAFETY: a NUL-terminated path made before the fork.
                #[allow(unsafe_code)]
                check(unsafe { libc::chdir(dir.as_ptr()) })?;
            }
        }
        for f in &self.cgroups {
            // "0" is the writing process, in cgroup v1 and v2.
            // SAFETY: write(2) of a static buffer to an open descriptor.
            #[allow(unsafe_code)]
            let joined = unsafe { libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) } == 1;
            if !joined {
                // SAFETY: write(2) of a static buffer to the child's stderr (the log pipe).
                #[allow(unsafe_code)]
                unsafe {
                    libc::write(2, CGROUP_WARNING.as_ptr().cast(), CGROUP_WARNING.len());
                }
            }
        }
        if let Some(RunAs { uid, gid }) = self.user {
            // SAFETY: plain system calls on integers (setgroups with no groups).
            #[allow(unsafe_code)]
            unsafe {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
        }
        // After the user change, which clears the parent-death signal.
        // SAFETY: prctl(2) and getppid(2) on integers.
        #[allow(unsafe_code)]
        unsafe {
            check(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
            ))?;
            if libc::getppid() != self.parent {
                // The agent died before the signal was armed: nothing to run for.
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    }

    /// A private mount namespace with the volumes bound in. Nothing made here propagates to
    /// the node's namespace, and the namespace ends with the instance's last process.
    fn mount_volumes(&self) -> std::io::Result<()> {
        const NONE: *const libc::c_char = std::ptr::null();
        // SAFETY: unshare(2) and mount(2) with NUL-terminated paths made before the fork
        // and static strings; no allocation.
        #[allow(unsafe_code)]
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                NONE,
                c"/".as_ptr(),
                NONE,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for m in &self.mounts {
                check(libc::mount(
                    m.source.as_ptr(),
                    m.destination.as_ptr(),
                    NONE,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
                if m.read_only {
                    flags |= libc::MS_RDONLY;
                }
                check(libc::mount(
                    NONE,
                    m.destination.as_ptr(),
                    NONE,
                    flags,
                    std::ptr::null(),
                ))?;
            }
        }
        Ok(())
    }
}

/// A system call's `-1` as the error in `errno` (no allocation: an OS error code).
fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn c_path(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

/// The program's path: itself when it names a path, else the first file of that name in
/// `path`. Resolved here so that the child's exec searches nothing.
pub(crate) fn resolve(program: &str, path: &OsStr) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.exists().then_some(p);
    }
    std::env::split_paths(path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The program file, opened for execution from it; `None` for a script (run by path) or a
/// program that cannot be opened (exec by path then reports why).
fn open_program(path: &Path) -> Option<File> {
    let mut file = File::open(path).ok()?;
    let mut magic = [0u8; 2];
    if file.read_exact(&mut magic).is_ok() && magic == *b"#!" {
        return None;
    }
    Some(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn path() -> std::ffi::OsString {
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into())
    }

    async fn output(mut cmd: Command) -> String {
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("spawn");
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[tokio::test]
    async fn a_missing_program_is_named_with_where_it_was_looked_for_before_any_fork() {
        let started = Instant::now();
        let err = command(
            &argv(&["no-such-program-here"]),
            "/usr/bin:/bin".as_ref(),
            Plan::default(),
        )
        .expect_err("missing");
        assert!(matches!(err, LaunchError::NoProgram { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("\"no-such-program-here\"") && text.contains("PATH=/usr/bin:/bin"),
            "{text}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn the_child_joins_its_cgroups_before_the_program_runs() {
        // A `cgroup.procs` stand-in: what the child wrote to it is the join.
        let dir = tempfile::tempdir().expect("tmp");
        let procs = dir.path().join("cgroup.procs");
        std::fs::write(&procs, "").expect("file");
        let plan = Plan {
            cgroups: vec![procs.clone()],
            ..Plan::default()
        };
        let cmd = command(
            &argv(&["cat", procs.to_str().expect("utf-8")]),
            &path(),
            plan,
        )
        .expect("command");
        assert_eq!(output(cmd).await, "0");
    }

    #[tokio::test]
    async fn as_another_user_the_program_runs_from_a_directory_that_user_cannot_enter() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: changing the user needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        let id = dir.path().join("id");
        std::fs::copy(resolve("id", &path()).expect("id(1)"), &id).expect("copy");
        let plan = Plan {
            user: Some(RunAs {
                uid: 65534,
                gid: 65533,
            }),
            ..Plan::default()
        };
        let cmd =
            command(&argv(&[id.to_str().expect("utf-8"), "-u"]), &path(), plan).expect("command");
        assert_eq!(output(cmd).await.trim(), "65534");
        let groups = Plan {
            user: Some(RunAs {
                uid: 65534,
                gid: 65533,
            }),
            ..Plan::default()
        };
        // Only the given group: the agent's supplementary groups are dropped.
        let cmd =
            command(&argv(&[id.to_str().expect("utf-8"), "-G"]), &path(), groups).expect("command");
        assert_eq!(output(cmd).await.trim(), "65533");
    }

    /// Set in the helper process of the parent-death test: it starts `sleep`, prints its
    /// pid and waits to be killed.
    const HELPER: &str = "KANTAI_LAUNCH_TEST_HELPER";

    #[tokio::test]
    async fn helper_starts_a_child_and_waits_to_be_killed() {
        if std::env::var_os(HELPER).is_none() {
            return;
        }
        let mut cmd = command(&argv(&["sleep", "600"]), &path(), Plan::default()).expect("command");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        println!("child {}", child.id().expect("pid"));
        tokio::time::sleep(Duration::from_secs(600)).await;
        drop(child);
    }

    #[test]
    fn an_instance_dies_with_its_agent_even_one_killed_with_sigkill() {
        use std::io::BufRead;
        let mut agent = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "launch::tests::helper_starts_a_child_and_waits_to_be_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("helper");
        // libtest prints the helper's line after the test's name.
        let out = agent.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pid = std::io::BufReader::new(out)
                .lines()
                .take(50)
                .map_while(Result::ok)
                .find_map(|l| {
                    l.rsplit_once("child ")
                        .and_then(|(_, p)| p.parse::<i32>().ok())
                });
            let _ = tx.send(pid);
        });
        let pid = rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
        let helper = nix::unistd::Pid::from_raw(i32::try_from(agent.id()).expect("pid"));
        let Some(pid) = pid else {
            let _ = nix::sys::signal::kill(helper, nix::sys::signal::Signal::SIGKILL);
            let _ = agent.wait();
            panic!("the helper did not say its child's pid");
        };
        let alive = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        };
        assert!(alive(pid), "the child runs while its agent does");
        nix::sys::signal::kill(helper, nix::sys::signal::Signal::SIGKILL).expect("kill the helper");
        let _ = agent.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "the child {pid} outlived its agent"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
