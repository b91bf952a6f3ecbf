//! The launcher: how a process instance is started by the agent itself, its child set up
//! between the clone and the `exec` of the function (no intermediate program to exec first).
//!
//! The child is cloned with `CLONE_VM | CLONE_VFORK`, as `posix_spawn` does: it borrows the
//! agent's memory until its `exec` instead of copying the agent's page tables (a `fork` of
//! the agent took 0.75–2.7 ms in `scripts/bench`'s cold starts, most of a start's overhead
//! over a process spawned by hand), and the agent's thread that starts it waits until the
//! `exec` (or the child's failure) while the agent's other threads go on. `CLONE_PIDFD`
//! gives the agent a file descriptor for the child, which the runtime's reactor watches for
//! its exit, and which signals reach even after its pid could have been reused.
//!
//! In the child, in this order:
//! 1. its output pipes (and `/dev/null` as its input) dup'ed onto 0, 1 and 2, its own
//!    process group, and every signal the agent handles or ignores back to its default (the
//!    agent's handlers must not run in a child that shares its memory; a function sees
//!    SIGPIPE as any program does);
//! 2. with volume mounts, a private mount namespace (private all the way down, so nothing
//!    mounted here reaches the node's) with each volume's directory on the host bound at its
//!    `mountPath` (read-only where asked; `nosuid`, `nodev` always);
//! 3. the working directory entered (in that namespace);
//! 4. the instance's cgroups joined (while it still may: before the user change);
//! 5. the unprivileged user it runs as, with no supplementary groups (groups first: after
//!    the user change they could not change any more);
//! 6. the parent-death signal (SIGKILL) armed, after the user change, which clears it; then a
//!    check that the agent is still its parent, since the agent may have died before the
//!    signal was armed. So an instance never outlives its agent, even one killed with SIGKILL;
//! 7. the signal mask emptied and the program exec'd. A step that fails leaves its error
//!    code where the agent reads it once the child is gone, and the start fails with it.
//!
//! The program, when a user change comes, is opened beforehand and executed through
//! `/proc/self/fd`, so it need not be reachable by the user along its path (kantai's own
//! binary in a private directory, say); what it reads while it runs must be. Scripts (`#!`)
//! are run by path, since their interpreter opens them by name.
//!
//! This is the only module of kantai with `unsafe` code (ARCHITECTURE.md, "Unsafe code"):
//! the child shares the memory of a multi-threaded process, where only async-signal-safe
//! calls are allowed. Everything the child needs (paths, arguments and environment as C
//! strings, open files, its stack) is made before the clone; the child only makes system
//! calls on it, allocating nothing and touching no lock.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

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
    /// A path, an argument or an environment variable holds a NUL byte, which no system
    /// call can take.
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
    /// The working directory (entered in the mount namespace when there are mounts).
    pub cwd: Option<PathBuf>,
}

/// A bind as the child makes it: C strings made before the clone.
struct ChildBind {
    source: CString,
    destination: CString,
    read_only: bool,
}

/// Everything the child's set-up touches, made before the clone.
struct Child {
    parent: libc::pid_t,
    cgroups: Vec<File>,
    user: Option<RunAs>,
    mounts: Vec<ChildBind>,
    cwd: Option<CString>,
}

/// What the child writes to its output (the instance's log) when a cgroup cannot be joined:
/// the instance runs, without its limits, as it did before the launcher had them.
const CGROUP_WARNING: &[u8] =
    b"kantai: cannot join the instance's cgroup; its CPU and memory limits are not enforced\n";

/// The child's stack until its `exec`: the set-up's few frames and libc's system call
/// wrappers, with room to spare.
const CHILD_STACK: usize = 128 * 1024;

/// One start, prepared by [`command`]: spawned with [`Launch::spawn`].
pub(crate) struct Launch {
    /// The program as errors name it.
    name: String,
    /// What is exec'd: the program's path, or `/proc/self/fd/N` of `_program`.
    exec: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    child: Child,
    /// The program opened for exec through `/proc/self/fd` (kept open until the spawn).
    _program: Option<File>,
}

/// The launch of one start: `command` (program and arguments) launched by `plan`, the
/// program looked up in `path` (the instance's PATH). The caller adds the environment.
pub(crate) fn command(command: &[String], path: &OsStr, plan: Plan) -> Result<Launch, LaunchError> {
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
    let exec = match &program {
        Some(file) => CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|_| nul("program", &resolved))?,
        None => c_path(&resolved).ok_or_else(|| nul("program", &resolved))?,
    };
    let mut argv = Vec::with_capacity(command.len());
    for a in command {
        argv.push(CString::new(a.as_bytes()).map_err(|_| nul("argument", Path::new(a)))?);
    }
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
    let cwd = match &plan.cwd {
        Some(dir) => Some(c_path(dir).ok_or_else(|| nul("workingDir", dir))?),
        None => None,
    };
    Ok(Launch {
        name: name.clone(),
        exec,
        argv,
        env: Vec::new(),
        child: Child {
            parent: i32::try_from(std::process::id()).unwrap_or(0),
            cgroups,
            user: plan.user,
            mounts,
            cwd,
        },
        _program: program,
    })
}

impl Launch {
    /// The program, as the command names it.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The child's whole environment (nothing of the agent's is passed on otherwise).
    pub(crate) fn env(
        &mut self,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<(), LaunchError> {
        self.env.clear();
        for (k, v) in env {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            let var = CString::new(kv).map_err(|e| LaunchError::Nul {
                program: self.name.clone(),
                what: "environment variable",
                value: String::from_utf8_lossy(&e.into_vec()).into_owned(),
            })?;
            self.env.push(var);
        }
        Ok(())
    }

    /// Starts the process, its input `/dev/null` and its output and error piped to the
    /// returned handle; returns once it runs the program, or with why it could not.
    pub(crate) fn spawn(self) -> std::io::Result<Process> {
        let null = File::open("/dev/null")?;
        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let args = ChildArgs {
            set_up: &self.child,
            stdio: [null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
            exec: self.exec.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            error: AtomicI32::new(0),
        };
        let mut stack = vec![0u8; CHILD_STACK];
        // The stack grows down from its end, 16-byte aligned as the ABI wants.
        let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
        let mut pidfd: libc::c_int = -1;
        // SAFETY: `sigfillset`/`pthread_sigmask` on local sets. Every signal is blocked on
        // this thread across the clone, so that none is handled in the child before it has
        // put the agent's handlers back to their defaults.
        #[allow(unsafe_code)]
        let old_mask = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            old
        };
        // SAFETY: the child runs `child_main` on `stack` with `args`, both alive until it
        // has exec'd or exited: `CLONE_VFORK` suspends this thread until then. The child
        // makes only async-signal-safe system calls on memory made above (see the module).
        #[allow(unsafe_code)]
        let pid = unsafe {
            libc::clone(
                child_main,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
                std::ptr::from_ref(&args).cast_mut().cast::<libc::c_void>(),
                &mut pidfd as *mut libc::c_int,
            )
        };
        let clone_error = std::io::Error::last_os_error();
        // SAFETY: restores this thread's own mask, saved above.
        #[allow(unsafe_code)]
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
        }
        drop(stack);
        if pid == -1 {
            return Err(clone_error);
        }
        // SAFETY: `CLONE_PIDFD` stored a new descriptor, owned by nobody else.
        #[allow(unsafe_code)]
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        drop((null, out_w, err_w));
        let failed = args.error.load(Ordering::Acquire);
        if failed != 0 {
            // The child is gone already (it exited before `clone` returned): reaped here.
            let _ = reap(pidfd.as_raw_fd(), 0);
            return Err(std::io::Error::from_raw_os_error(failed));
        }
        // SAFETY: an `OwnedFd` keeps its descriptor open, and the same, until it is dropped
        // with the `AsyncFd` (or taken back with `into_inner`).
        #[allow(unsafe_code)]
        let pidfd =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
        Ok(Process {
            pid: pid as u32,
            pidfd: Some(pidfd),
            status: None,
            stdout: Some(pipe::Receiver::from_owned_fd(out_r)?),
            stderr: Some(pipe::Receiver::from_owned_fd(err_r)?),
        })
    }
}

/// What `child_main` is given: pointers into the parent's memory, valid until the exec.
struct ChildArgs<'a> {
    set_up: &'a Child,
    /// Input, output and error, dup'ed onto 0, 1 and 2.
    stdio: [RawFd; 3],
    exec: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// The error code of the step that failed (0: none), read by the parent.
    error: AtomicI32,
}

/// The child, between the clone and the exec: async-signal-safe system calls only.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the parent keeps alive until this child has exec'd
    // or exited.
    #[allow(unsafe_code)]
    let args = unsafe { &*arg.cast::<ChildArgs<'_>>() };
    let Err(e) = child_steps(args);
    args.error
        .store(e.raw_os_error().unwrap_or(libc::EINVAL), Ordering::Release);
    // SAFETY: `_exit(2)` ends the child without running anything of the parent's.
    #[allow(unsafe_code)]
    unsafe {
        libc::_exit(127)
    }
}

/// The child's steps; returns only when one failed (an exec that works does not return).
fn child_steps(args: &ChildArgs<'_>) -> std::io::Result<std::convert::Infallible> {
    // SAFETY: dup2(2), setpgid(2), sigaction(2), sigprocmask(2) and execve(2) on
    // descriptors and memory made before the clone, allocating nothing.
    #[allow(unsafe_code)]
    unsafe {
        for (to, &from) in (0..).zip(args.stdio.iter()) {
            if from == to {
                // dup2 onto itself keeps close-on-exec: cleared instead.
                check(libc::fcntl(from, libc::F_SETFD, 0))?;
            } else {
                check(libc::dup2(from, to))?;
            }
        }
        check(libc::setpgid(0, 0))?;
        // The kernel's own call: glibc's refuses the two real-time signals it keeps for
        // itself, which an agent's parent may have left ignored. SIGKILL and SIGSTOP
        // cannot change (and are never handled or ignored).
        let dfl = KernelSigaction::default();
        for sig in 1..=64 {
            let mut old = KernelSigaction::default();
            let got = libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::null::<KernelSigaction>(),
                &mut old,
                8,
            );
            if got == 0 && old.handler != 0 {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8,
                );
            }
        }
        args.set_up.set_up()?;
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(args.exec, args.argv, args.envp);
    }
    Err(std::io::Error::last_os_error())
}

/// `struct sigaction` as the kernel's `rt_sigaction` takes it on x86-64 and arm64: a
/// handler of 0 is `SIG_DFL`.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// A pipe whose ends are closed on exec (the child's end is dup'ed onto 1 or 2).
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2(2) fills the two descriptors, then owned here.
    #[allow(unsafe_code)]
    unsafe {
        check(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Reaps the process of `pidfd` if it has exited (`flags`: `WNOHANG` not to wait for it).
fn reap(pidfd: RawFd, flags: libc::c_int) -> std::io::Result<Option<ExitStatus>> {
    // SAFETY: waitid(2) fills a zeroed `siginfo_t` of ours.
    #[allow(unsafe_code)]
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        check(libc::waitid(
            libc::P_PIDFD,
            pidfd as libc::id_t,
            &mut info,
            libc::WEXITED | flags,
        ))?;
        if info.si_pid() == 0 {
            return Ok(None);
        }
        // As wait(2) encodes it, which `ExitStatus` reads.
        let status = info.si_status();
        let raw = match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => status & 0x7f,
        };
        Ok(Some(ExitStatus::from_raw(raw)))
    }
}

/// A process started by [`Launch::spawn`]. Dropped before it was waited for, it is killed
/// (and reaped on a thread of its own).
pub(crate) struct Process {
    pid: u32,
    /// `None` once reaped.
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
    /// Its output, until taken.
    pub(crate) stdout: Option<pipe::Receiver>,
    /// Its error output, until taken.
    pub(crate) stderr: Option<pipe::Receiver>,
}

impl Process {
    /// Its pid, until it was reaped.
    pub(crate) fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.pid)
    }

    /// Waits for it to end (cancel-safe).
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let Some(fd) = &self.pidfd else {
            return Err(std::io::Error::other("the process was not started"));
        };
        loop {
            let mut ready = fd.readable().await?;
            if let Some(s) = reap(fd.as_raw_fd(), libc::WNOHANG)? {
                self.status = Some(s);
                self.pidfd = None;
                return Ok(s);
            }
            ready.clear_ready();
        }
    }

    /// Kills it (SIGKILL), then waits for it to end.
    pub(crate) async fn kill(&mut self) -> std::io::Result<()> {
        if self.status.is_none() {
            self.signal(libc::SIGKILL)?;
        }
        self.wait().await.map(drop)
    }

    /// Sends `sig` through the pidfd, which no other process can have.
    fn signal(&self, sig: libc::c_int) -> std::io::Result<()> {
        let Some(fd) = &self.pidfd else {
            return Ok(());
        };
        // SAFETY: pidfd_send_signal(2) on our descriptor, no siginfo.
        #[allow(unsafe_code)]
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if ret == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let _ = self.signal(libc::SIGKILL);
        if let Some(fd) = self.pidfd.take() {
            let fd = fd.into_inner();
            // Dead within moments; its zombie is not left behind.
            let _ = std::thread::Builder::new()
                .name("kantai-reap".into())
                .spawn(move || reap(fd.as_raw_fd(), 0));
        }
    }
}

impl Child {
    /// Runs in the child between the clone and the exec: async-signal-safe calls only.
    fn set_up(&self) -> std::io::Result<()> {
        if !self.mounts.is_empty() {
            self.mount_volumes()?;
        }
        if let Some(dir) = &self.cwd {
            // SAFETY: a NUL-terminated path made before the clone.
            #[allow(unsafe_code)]
            check(unsafe { libc::chdir(dir.as_ptr()) })?;
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
        // SAFETY: unshare(2) and mount(2) with NUL-terminated paths made before the clone
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

    /// Its output and error output, read to their ends, and how it ended.
    async fn run(launch: Launch) -> (ExitStatus, String, String) {
        use tokio::io::AsyncReadExt;
        let mut p = launch.spawn().expect("spawn");
        let (mut out, mut err) = (String::new(), String::new());
        let mut o = p.stdout.take().expect("stdout");
        let mut e = p.stderr.take().expect("stderr");
        let (r1, r2) = tokio::join!(o.read_to_string(&mut out), e.read_to_string(&mut err));
        r1.expect("read stdout");
        r2.expect("read stderr");
        (p.wait().await.expect("wait"), out, err)
    }

    async fn output(launch: Launch) -> String {
        let (status, out, err) = run(launch).await;
        assert!(status.success(), "{status:?}: {err}");
        out
    }

    fn plain(a: &[&str]) -> Launch {
        let mut l = command(&argv(a), &path(), Plan::default()).expect("command");
        l.env([("PATH".into(), path())]).expect("env");
        l
    }

    #[tokio::test]
    async fn the_program_gets_its_arguments_and_exactly_the_given_environment() {
        let mut l = command(&argv(&["env"]), &path(), Plan::default()).expect("command");
        l.env([("ONE".into(), "1".into()), ("TWO".into(), "a b".into())])
            .expect("env");
        assert_eq!(output(l).await, "ONE=1\nTWO=a b\n");
        let echo = plain(&["echo", "-n", "x y", "z"]);
        assert_eq!(output(echo).await, "x y z");
    }

    #[tokio::test]
    async fn an_exit_code_and_a_killing_signal_are_the_processs() {
        let (status, _, _) = run(plain(&["sh", "-c", "exit 3"])).await;
        assert_eq!(status.code(), Some(3));
        let (status, _, _) = run(plain(&["sh", "-c", "kill -9 $$"])).await;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[tokio::test]
    async fn a_program_that_cannot_be_executed_fails_the_spawn_with_the_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("not-executable");
        std::fs::write(&file, "data").expect("file");
        let l = command(
            &argv(&[file.to_str().expect("utf-8")]),
            &path(),
            Plan::default(),
        )
        .expect("command");
        let err = l.spawn().err().expect("not executable");
        assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    }

    #[tokio::test]
    async fn a_working_directory_that_is_not_there_fails_the_spawn() {
        let plan = Plan {
            cwd: Some("/no/such/directory".into()),
            ..Plan::default()
        };
        let l = command(&argv(&["true"]), &path(), plan).expect("command");
        let err = l.spawn().err().expect("no directory");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }

    #[tokio::test]
    async fn the_program_runs_in_its_working_directory_and_process_group() {
        let dir = tempfile::tempdir().expect("tmp");
        let plan = Plan {
            cwd: Some(dir.path().to_owned()),
            ..Plan::default()
        };
        let mut l = command(
            &argv(&["sh", "-c", "pwd; ps -o pgid= -p $$; echo $$"]),
            &path(),
            plan,
        )
        .expect("command");
        l.env([("PATH".into(), path())]).expect("env");
        let out = output(l).await;
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(Path::new(lines[0]), dir.path().canonicalize().expect("dir"));
        assert_eq!(lines[1], lines[2], "its own process group: {out}");
    }

    #[tokio::test]
    async fn the_program_ignores_and_blocks_no_signal_the_agent_does() {
        // The test's process ignores SIGPIPE (as kantai does) and blocks SIGUSR1 here.
        // SAFETY: a test thread's own signal mask.
        #[allow(unsafe_code)]
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let out = output(plain(&["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])).await;
        assert_eq!(
            out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_process_dropped_before_it_ended_is_killed_and_reaped() {
        let mut l = command(&argv(&["sleep", "600"]), &path(), Plan::default()).expect("command");
        l.env([]).expect("env");
        let p = l.spawn().expect("spawn");
        let pid = p.id().expect("pid") as i32;
        drop(p);
        // Reaped: no process of that pid (not even a zombie) within moments.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < deadline, "process {pid} still there");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn kill_ends_the_process_and_wait_then_has_its_status() {
        let mut p = plain(&["sleep", "600"]).spawn().expect("spawn");
        p.kill().await.expect("kill");
        let status = p.wait().await.expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(p.id(), None, "no pid once reaped");
    }

    #[tokio::test]
    async fn a_missing_program_is_named_with_where_it_was_looked_for_before_any_clone() {
        let started = Instant::now();
        let err = command(
            &argv(&["no-such-program-here"]),
            "/usr/bin:/bin".as_ref(),
            Plan::default(),
        )
        .err()
        .expect("missing");
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
        let child = plain(&["sleep", "600"]).spawn().expect("spawn");
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
