//! What runs in the forked child, from fork to execve, top to bottom.
//!
//! The child is a copy of `hull` (no re-exec of /proc/self/exe, so there is no hull binary
//! path for the container to reach, CVE-2019-5736) and is non-dumpable while it holds host
//! resources, so container processes cannot ptrace it or open its /proc entries. Right
//! before execve every descriptor except stdio is closed, and the working directory is
//! checked to be inside the container root (CVE-2024-21626). The last steps drop
//! privileges in the order the kernel requires: bounding set, groups/gid/uid, remaining
//! capabilities, no_new_privs, seccomp, execve.
//!
//! Failures are reported to the parent over the sync socket as `E<code> <message>` and the
//! child exits with that code (125 setup, 126 not executable, 127 not found). A successful
//! execve closes the socket (it is O_CLOEXEC), which the parent reads as "running".

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use caps::CapsHashSet;

use crate::isolation::{ProcessSpec, WinSize};

use super::rootfs::{self, RootfsPlan};
use super::{capabilities, cgroups, namespaces, seccomp, syscalls, tty};
use hull_executor::user::{self, ResolvedUser};

/// Default PATH when the image sets none (docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Message tag: the pty master follows as SCM_RIGHTS.
pub const TAG_TERMINAL: u8 = b'T';
/// Message tag: a failure `E<code> <message>`.
pub const TAG_ERROR: u8 = b'E';
/// Byte on the go pipe (parent to child): the container's record is written, exec may
/// follow.
pub const TAG_GO: u8 = b'G';

/// Standard streams as the child should set them up.
pub enum ChildStdio {
    /// Raw descriptors inherited through the fork; `None` stdin = /dev/null inside.
    Pipes {
        /// fd for 0.
        stdin: Option<RawFd>,
        /// fd for 1.
        stdout: RawFd,
        /// fd for 2.
        stderr: RawFd,
    },
    /// A pty created inside the container.
    Terminal(WinSize),
}

/// Why the child could not exec.
pub struct Failure {
    /// Exit code: 125 setup error, 126 not executable, 127 not found.
    pub code: i32,
    /// Human-readable reason.
    pub message: String,
}

fn setup_err(msg: impl Into<String>) -> Failure {
    Failure {
        code: 125,
        message: msg.into(),
    }
}

/// What differs between a container's init process and an `exec`.
pub enum Role<'a> {
    /// The first process: new namespaces, build the root filesystem.
    Init {
        /// `cgroup.procs` files, open for writing.
        cgroups: Vec<OwnedFd>,
        /// The root filesystem to build.
        rootfs: RootfsPlan<'a>,
        /// Hostname to set.
        hostname: &'a str,
        /// Network namespace to join (made by `crate::network`); `None` with
        /// `new_network` false means the host's.
        netns: Option<BorrowedFd<'a>>,
        /// Whether the fork made a new, empty network namespace (its loopback is brought up).
        new_network: bool,
    },
    /// Another process in a running container.
    Exec {
        /// `cgroup.procs` files, open for writing.
        cgroups: Vec<OwnedFd>,
        /// pidfd of the container's init process, whose namespaces we join.
        init: BorrowedFd<'a>,
    },
}

/// Everything the child needs; prepared by the parent before the fork.
pub struct Launch<'a> {
    /// The process to run.
    pub process: &'a ProcessSpec,
    /// Its stdio.
    pub stdio: ChildStdio,
    /// Child end of the sync socket.
    pub sync: BorrowedFd<'a>,
    /// Read end of the go pipe: [`TAG_GO`] from the parent, or end-of-file when it died.
    /// (A pipe of its own, not `sync`: a `G` left unread in a socket would turn the
    /// child's failure report into ECONNRESET when it exits.)
    pub go: BorrowedFd<'a>,
    /// The go pipe's write end, inherited through the fork: closed first thing, so only
    /// the parent holds it.
    pub go_writer: RawFd,
    /// Capabilities to keep.
    pub caps: CapsHashSet,
    /// Hostname (exported as HOSTNAME).
    pub hostname: &'a str,
}

/// The child's entry point after the fork. Never returns.
pub fn child_main(role: Role<'_>, launch: Launch<'_>) -> ! {
    let failure = match run(role, &launch) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let mut msg = vec![TAG_ERROR];
    msg.extend_from_slice(format!("{} {}", failure.code, failure.message).as_bytes());
    msg.truncate(4096);
    let _ = nix::unistd::write(launch.sync, &msg);
    // SAFETY: _exit ends the child immediately, without running the parent's atexit
    // handlers or destructors of the copied address space.
    unsafe { libc::_exit(failure.code) }
}

fn run(role: Role<'_>, launch: &Launch<'_>) -> Result<std::convert::Infallible, Failure> {
    // SAFETY: closing the inherited copy of the parent's end, which this process never uses.
    unsafe { libc::close(launch.go_writer) };
    // Die with the parent while still setting up; and if it died before this was set,
    // the signal will never come: check.
    set_parent_death_signal()?;
    exit_if_orphaned(launch.go);
    reset_signals();
    // Device nodes and directories get exactly the modes we ask for.
    // SAFETY: umask has no failure mode.
    unsafe { libc::umask(0) };

    match role {
        Role::Init {
            cgroups,
            rootfs,
            hostname,
            netns,
            new_network,
        } => {
            // Before /sys is mounted: sysfs shows the interfaces of the mounter's namespace.
            if let Some(ns) = netns {
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| setup_err(format!("join network namespace: {e}")))?;
            }
            cgroups::join(&cgroups).map_err(|e| setup_err(format!("join cgroups: {e}")))?;
            drop(cgroups);
            namespaces::unshare_cgroup()
                .map_err(|e| setup_err(format!("new cgroup namespace: {e}")))?;
            rootfs::enter(&rootfs).map_err(setup_err)?;
            nix::unistd::sethostname(hostname)
                .map_err(|e| setup_err(format!("set hostname: {e}")))?;
            if new_network {
                namespaces::loopback_up()
                    .map_err(|e| setup_err(format!("bring up loopback: {e}")))?;
            }
        }
        Role::Exec { cgroups, init } => {
            cgroups::join(&cgroups).map_err(|e| setup_err(format!("join cgroups: {e}")))?;
            drop(cgroups);
            namespaces::join_all_but_pid(init)
                .map_err(|e| setup_err(format!("join container namespaces: {e}")))?;
        }
    }
    setup_stdio(&launch.stdio, launch.sync)?;
    finish_and_exec(launch)
}

/// Undoes what the supervisor set up for itself: blocked signals (for its signalfd) and
/// ignored ones (Rust ignores SIGPIPE); both would otherwise survive execve.
fn reset_signals() {
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    for sig in nix::sys::signal::Signal::iterator() {
        if matches!(
            sig,
            nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGSTOP
        ) {
            continue;
        }
        // SAFETY: restoring the default disposition installs no handler code.
        let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    }
}

fn set_parent_death_signal() -> Result<(), Failure> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } < 0 {
        return Err(setup_err(format!(
            "set parent death signal: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Leaves at once, silently, if the parent is gone (the go pipe's only writer closed):
/// nobody would know about this process.
fn exit_if_orphaned(go: BorrowedFd<'_>) {
    let mut pfd = libc::pollfd {
        fd: go.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n > 0 && pfd.revents & libc::POLLHUP != 0 {
        // SAFETY: leaving without running anything of the parent's address space.
        unsafe { libc::_exit(125) }
    }
}

/// Blocks until the parent says go; leaves silently on end-of-file (the parent died).
fn await_go(go: BorrowedFd<'_>) {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(go, &mut byte) {
            Ok(1) if byte[0] == TAG_GO => return,
            Err(nix::errno::Errno::EINTR) => continue,
            // SAFETY: leaving without running anything of the parent's address space.
            _ => unsafe { libc::_exit(125) },
        }
    }
}

fn setup_stdio(stdio: &ChildStdio, sync: BorrowedFd<'_>) -> Result<(), Failure> {
    match *stdio {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            // A session of its own, without a controlling terminal: /dev/tty opens
            // nothing, and no terminal of the host is reachable (the pipes are hull's).
            nix::unistd::setsid().map_err(|e| setup_err(format!("new session: {e}")))?;
            // Inside the container now: its own /dev/null.
            let null = match stdin {
                Some(_) => None,
                None => Some(
                    nix::fcntl::open(
                        "/dev/null",
                        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .map_err(|e| setup_err(format!("open /dev/null: {e}")))?,
                ),
            };
            let stdin = stdin.unwrap_or_else(|| null.as_ref().map_or(-1, |n| n.as_raw_fd()));
            // Move the sources out of the way first: one of them may already be 0-2.
            let mut high = [0; 3];
            for (slot, fd) in high.iter_mut().zip([stdin, stdout, stderr]) {
                // SAFETY: duplicating an inherited fd to a new number >= 10.
                *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
                if *slot < 0 {
                    return Err(setup_err(format!(
                        "dup stdio: {}",
                        std::io::Error::last_os_error()
                    )));
                }
            }
            for (target, fd) in high.into_iter().enumerate() {
                // SAFETY: dup2 onto stdio numbers we own; the CLOEXEC copy closes at exec.
                if unsafe { libc::dup2(fd, target as RawFd) } < 0 {
                    return Err(setup_err(format!(
                        "dup2 stdio: {}",
                        std::io::Error::last_os_error()
                    )));
                }
            }
        }
        ChildStdio::Terminal(size) => {
            let master = tty::open_in_container(size)
                .map_err(|e| setup_err(format!("create terminal: {e}")))?;
            tty::send_fd(sync, TAG_TERMINAL, master.as_fd())
                .map_err(|e| setup_err(format!("send terminal: {e}")))?;
        }
    }
    Ok(())
}

fn finish_and_exec(launch: &Launch<'_>) -> Result<std::convert::Infallible, Failure> {
    let process = launch.process;
    // After pivot_root: the files read are the container's own.
    let identity = user::resolve_in_root(&process.user, std::path::Path::new("/"))
        .map_err(|e| setup_err(e.to_string()))?;
    let env = build_env(process, &identity, launch.hostname);

    let cwd = if process.cwd.is_empty() {
        "/"
    } else {
        process.cwd.as_str()
    };
    if !cwd.starts_with('/') {
        return Err(setup_err(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }
    // Created by root like docker does; path lookups cannot leave the container root now.
    std::fs::create_dir_all(cwd)
        .map_err(|e| setup_err(format!("create working directory {cwd}: {e}")))?;
    let filters = seccomp::build().map_err(|e| setup_err(e.to_string()))?;

    // No host descriptor survives into the container: only stdio, the sync socket and the
    // go pipe (both O_CLOEXEC: closed by execve) remain.
    syscalls::close_fds_from(3, &[launch.sync.as_raw_fd(), launch.go.as_raw_fd()]);
    nix::unistd::chdir(cwd).map_err(|e| setup_err(format!("chdir {cwd}: {e}")))?;
    check_cwd_inside_root()?;

    capabilities::limit_bounding(&launch.caps)
        .map_err(|e| setup_err(format!("limit capabilities: {e}")))?;
    switch_user(&identity)?;
    if identity.uid == 0 {
        capabilities::keep_only(&launch.caps)
            .map_err(|e| setup_err(format!("set capabilities: {e}")))?;
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(setup_err(format!(
            "set no_new_privs: {}",
            std::io::Error::last_os_error()
        )));
    }
    // Changing credentials cleared the parent-death signal: set it again, then wait for
    // the parent's go (it has written the container's record) and check once more that it
    // is still there, now that its death would kill us.
    set_parent_death_signal()?;
    await_go(launch.go);
    exit_if_orphaned(launch.go);
    // SAFETY: umask has no failure mode.
    unsafe { libc::umask(0o022) };
    seccomp::install(&filters).map_err(|e| setup_err(e.to_string()))?;
    exec(process, &env)
}

/// Refuses a working directory outside the container root (e.g. reached through a
/// leaked descriptor): getcwd then reports "(unreachable)" or fails.
fn check_cwd_inside_root() -> Result<(), Failure> {
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(setup_err("working directory is outside the container")),
    }
}

fn switch_user(id: &ResolvedUser) -> Result<(), Failure> {
    let groups: Vec<nix::unistd::Gid> = id
        .setgroups_list()
        .into_iter()
        .map(nix::unistd::Gid::from_raw)
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| setup_err(format!("setgroups: {e}")))?;
    nix::unistd::setresgid(
        nix::unistd::Gid::from_raw(id.gid),
        nix::unistd::Gid::from_raw(id.gid),
        nix::unistd::Gid::from_raw(id.gid),
    )
    .map_err(|e| setup_err(format!("setgid {}: {e}", id.gid)))?;
    nix::unistd::setresuid(
        nix::unistd::Uid::from_raw(id.uid),
        nix::unistd::Uid::from_raw(id.uid),
        nix::unistd::Uid::from_raw(id.uid),
    )
    .map_err(|e| setup_err(format!("setuid {}: {e}", id.uid)))?;
    Ok(())
}

/// The process environment: the spec's, plus PATH, HOSTNAME, HOME and TERM defaults.
fn build_env(process: &ProcessSpec, id: &ResolvedUser, hostname: &str) -> Vec<CString> {
    let mut env: Vec<String> = Vec::with_capacity(process.env.len() + 4);
    let has = |env: &[String], key: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    };
    if !has(&process.env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    env.push(format!("HOSTNAME={hostname}"));
    env.extend(process.env.iter().cloned());
    if process.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", id.home_or_root()));
    }
    env.into_iter()
        .filter_map(|e| CString::new(e).ok())
        .collect()
}

/// Executes `args[0]`, searched in the container's PATH when it has no `/`.
fn exec(process: &ProcessSpec, env: &[CString]) -> Result<std::convert::Infallible, Failure> {
    let Some(cmd) = process.args.first() else {
        return Err(setup_err("no command given and the image has none"));
    };
    let argv: Vec<CString> = process
        .args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| setup_err("argument contains a NUL byte"))?;
    let candidates: Vec<String> = if cmd.contains('/') {
        vec![cmd.clone()]
    } else {
        let path = env
            .iter()
            .filter_map(|e| e.to_str().ok())
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|dir| if dir.is_empty() { "." } else { dir })
            .map(|dir| format!("{dir}/{cmd}"))
            .collect()
    };
    let mut denied = None;
    for candidate in &candidates {
        let Ok(path) = CString::new(candidate.as_str()) else {
            continue;
        };
        let err = nix::unistd::execve(&path, &argv, env).unwrap_err();
        match err {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => continue,
            nix::errno::Errno::EACCES | nix::errno::Errno::ENOEXEC | nix::errno::Errno::EISDIR => {
                denied.get_or_insert((candidate.clone(), err));
            }
            other => {
                return Err(Failure {
                    code: 126,
                    message: format!("exec {candidate}: {other}"),
                })
            }
        }
    }
    Err(match denied {
        Some((path, e)) => Failure {
            code: 126,
            message: format!("exec {path}: {}", e.desc()),
        },
        None if cmd.contains('/') => Failure {
            code: 127,
            message: format!("exec {cmd}: no such file or directory"),
        },
        None => Failure {
            code: 127,
            message: format!("exec {cmd}: executable file not found in $PATH"),
        },
    })
}
