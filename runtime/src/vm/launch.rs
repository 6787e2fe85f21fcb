//! Starting hull-vmm as PID 1 of a new PID namespace (its jail needs one, and a process
//! cannot move itself into a new one), held by a pidfd.
//!
//! The child side runs between clone3 and execve and does only async-signal-safe system
//! calls on memory prepared before the clone (no allocation, no locks): join the VM's
//! cgroups (so its limits hold from the first instruction), a session of its own, the
//! parent-death signal (and a check that the parent did not die before it was set), the
//! default signal mask and SIGPIPE disposition, umask 077, stdio, the working directory
//! (the jail directory), every other descriptor closed at exec. A failure there is sent
//! to the parent through a close-on-exec pipe, with the step that failed.

use std::ffi::{CString, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hull_executor::fork::Forked;

use crate::isolation::ExitStatus;
use crate::process::syscalls::{pidfd_open, pidfd_signal, poll_exit, wait_pidfd};

use super::machine::process_start_time;

/// What the child needs, all opened by the caller.
pub struct Launch<'a> {
    /// The hull-vmm binary.
    pub program: &'a Path,
    /// Its arguments (without argv\[0\]).
    pub args: Vec<OsString>,
    /// Working directory (the jail directory).
    pub cwd: BorrowedFd<'a>,
    /// stdout (the guest's console log with `--serial stdout`).
    pub stdout: BorrowedFd<'a>,
    /// stderr (the VMM's log).
    pub stderr: BorrowedFd<'a>,
    /// `cgroup.procs` of every cgroup the VMM joins.
    pub cgroups: &'a [OwnedFd],
    /// A descriptor the VMM inherits, `(ours, the number it gets)` (its TAP); the number
    /// must be 3, the first after stdio.
    pub inherit: Option<(RawFd, RawFd)>,
}

/// A started hull-vmm: host pid, start time (against pid reuse) and a pidfd.
#[derive(Debug)]
pub struct VmmProcess {
    /// Host pid.
    pub pid: u32,
    /// Start time (field 22 of /proc/PID/stat).
    pub start_time: u64,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
}

/// The steps of the child, as reported through the error pipe.
const STEPS: &[&str] = &[
    "join the VM's cgroup",
    "set the parent-death signal",
    "the launching hull exited",
    "redirect stdio",
    "enter the jail directory",
    "execute",
    "pass on the network device",
];

fn cstring(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// Starts `launch.program` in a new PID namespace.
pub fn spawn(launch: &Launch<'_>) -> io::Result<VmmProcess> {
    // Everything the child touches is made here, before the clone.
    let program = cstring(launch.program.as_os_str().as_bytes(), "the VMM path")?;
    let mut argv = vec![program.clone()];
    for a in &launch.args {
        argv.push(cstring(a.as_bytes(), "a VMM argument")?);
    }
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs: Vec<*const libc::c_char> = envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let dev_null = std::fs::File::open("/dev/null")?;
    let parent = pidfd_open(std::process::id() as i32)?;
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let cgroup_fds: Vec<RawFd> = launch.cgroups.iter().map(|f| f.as_raw_fd()).collect();
    let child = ChildFds {
        stdin: dev_null.as_raw_fd(),
        stdout: launch.stdout.as_raw_fd(),
        stderr: launch.stderr.as_raw_fd(),
        cwd: launch.cwd.as_raw_fd(),
        parent: parent.as_raw_fd(),
        report: err_write.as_raw_fd(),
        inherit: launch.inherit,
    };
    if launch.inherit.is_some_and(|(_, to)| to != 3) {
        return Err(io::Error::other("an inherited descriptor must become fd 3"));
    }

    // SAFETY: the child calls only `child_main`, which makes async-signal-safe system calls
    // on the memory prepared above and never returns, so no lock held by another thread at
    // the clone can be needed in it.
    let forked = unsafe { hull_executor::fork::fork_with_pidfd(libc::CLONE_NEWPID as u64) };
    let (pid, pidfd) = match forked {
        // SAFETY: in the child, see above; the pointers stay valid (our copy of memory).
        Ok(Forked::Child) => unsafe {
            child_main(&child, &cgroup_fds, &program, &argv_ptrs, &envp_ptrs)
        },
        Ok(Forked::Parent { pid, pidfd }) => (pid as u32, pidfd),
        Err(e) => {
            return Err(io::Error::other(format!(
                "clone3 into a new PID namespace: {e}"
            )))
        }
    };
    drop(err_write);
    // End of file: the exec happened. Otherwise the child said which step failed.
    let mut report = Vec::new();
    let _ = std::fs::File::from(err_read).read_to_end(&mut report);
    if report.len() >= 5 {
        let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
        let step = STEPS.get(report[0] as usize).copied().unwrap_or("start");
        let _ = wait_pidfd(pidfd.as_fd());
        return Err(io::Error::other(format!(
            "starting the VMM {}: {step}: {}",
            launch.program.display(),
            io::Error::from_raw_os_error(errno)
        )));
    }
    let start_time = process_start_time(pid).unwrap_or(0);
    Ok(VmmProcess {
        pid,
        start_time,
        pidfd,
        status: None,
    })
}

/// Raw descriptors the child uses.
struct ChildFds {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    cwd: RawFd,
    parent: RawFd,
    report: RawFd,
    inherit: Option<(RawFd, RawFd)>,
}

/// Reports the failed step and errno to the parent, then exits.
///
/// # Safety
/// Only in the child after clone3.
unsafe fn child_fail(report: RawFd, step: u8) -> ! {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let mut msg = [0u8; 5];
    msg[0] = step;
    msg[1..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write(2) of a stack buffer and _exit(2): async-signal-safe.
    unsafe {
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The child between clone3 and execve.
///
/// # Safety
/// Only in the child after clone3; every pointer refers to memory prepared before it.
unsafe fn child_main(
    fds: &ChildFds,
    cgroups: &[RawFd],
    program: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: async-signal-safe system calls on descriptors and buffers that stay valid;
    // every failure ends the child through child_fail.
    unsafe {
        for &fd in cgroups {
            // "0": the writing process.
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                child_fail(fds.report, 0);
            }
        }
        libc::setsid();
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            child_fail(fds.report, 1);
        }
        // The death signal only comes for a parent alive when it was set: check it still is
        // (its pidfd turns readable when it exits; getppid says 0 across a PID namespace).
        let mut pfd = libc::pollfd {
            fd: fds.parent,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            child_fail(fds.report, 2);
        }
        // The launching hull blocks the signals it forwards and ignores SIGPIPE (Rust's
        // runtime does): the VMM starts with neither.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // What the VMM creates (its vsock socket) is root's alone.
        libc::umask(0o077);
        for (from, to) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
            if libc::dup2(from, to) < 0 {
                child_fail(fds.report, 3);
            }
        }
        if libc::fchdir(fds.cwd) != 0 {
            child_fail(fds.report, 4);
        }
        let mut report = fds.report;
        let mut first_closed: libc::c_uint = 3;
        if let Some((from, to)) = fds.inherit {
            // The report pipe must survive until the exec: move it out of the way first.
            if report == to {
                report = libc::fcntl(report, libc::F_DUPFD_CLOEXEC, to + 1);
                if report < 0 {
                    child_fail(fds.report, 6);
                }
            }
            // dup2 clears close-on-exec; a descriptor that already is `to` needs it cleared.
            let ok = if from == to {
                libc::fcntl(from, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(from, to) == to
            };
            if !ok {
                child_fail(report, 6);
            }
            first_closed = to as libc::c_uint + 1;
        }
        // Nothing but stdio (and the inherited descriptor) crosses the exec; the report pipe
        // is close-on-exec already.
        libc::syscall(
            libc::SYS_close_range,
            first_closed,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        child_fail(report, 5)
    }
}

impl VmmProcess {
    /// The pidfd.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// How it ended, if it did (never blocks).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() && poll_exit(self.pidfd.as_fd(), 0).unwrap_or(false) {
            self.status = wait_pidfd(self.pidfd.as_fd()).ok();
        }
        self.status
    }

    /// Waits up to `timeout` for it to end, then kills it; returns how it ended.
    pub fn wait_or_kill(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            match poll_exit(self.pidfd.as_fd(), ms) {
                Ok(true) => break,
                Ok(false) if Instant::now() < deadline => continue,
                _ => {
                    let _ = pidfd_signal(self.pidfd.as_fd(), libc::SIGKILL);
                    break;
                }
            }
        }
        self.status = wait_pidfd(self.pidfd.as_fd()).ok();
        self.status
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            let _ = pidfd_signal(self.pidfd.as_fd(), libc::SIGKILL);
            self.status = wait_pidfd(self.pidfd.as_fd()).ok();
        }
        self.status
    }
}

impl Drop for VmmProcess {
    fn drop(&mut self) {
        // Never leave a VMM behind, nor a zombie.
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_child_is_pid_1_of_a_new_pid_namespace_with_our_stdio_and_cwd() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: a new PID namespace needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("out")).unwrap();
        let err = std::fs::File::create(dir.path().join("err")).unwrap();
        let cwd = std::fs::File::open(dir.path()).unwrap();
        let script = "echo pid=$$; pwd; echo oops >&2; \
                      grep -E '^(SigBlk|SigIgn):' /proc/self/status; exit 7";
        let mut p = spawn(&Launch {
            program: Path::new("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            cwd: cwd.as_fd(),
            stdout: out.as_fd(),
            stderr: err.as_fd(),
            cgroups: &[],
            inherit: None,
        })
        .unwrap();
        assert_eq!(
            p.wait_or_kill(Duration::from_secs(20)),
            Some(ExitStatus::Code(7))
        );
        let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("pid=1"), "{out}");
        let cwd_seen = lines.next().unwrap_or("");
        assert_eq!(
            std::fs::metadata(cwd_seen).unwrap().ino(),
            std::fs::metadata(dir.path()).unwrap().ino(),
            "{out}"
        );
        assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("err")).unwrap(),
            "oops\n"
        );
    }

    #[test]
    fn the_inherited_descriptor_arrives_as_fd_3_and_nothing_else_does() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: a new PID namespace needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("out")).unwrap();
        let cwd = std::fs::File::open(dir.path()).unwrap();
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        // Another descriptor of ours that must not cross the exec.
        let stray = std::fs::File::open("/dev/null").unwrap();
        let script = format!(
            "echo through-3 >&3; [ -e /proc/self/fd/{} ] && echo leaked; exit 0",
            stray.as_raw_fd()
        );
        let mut p = spawn(&Launch {
            program: Path::new("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            cwd: cwd.as_fd(),
            stdout: out.as_fd(),
            stderr: out.as_fd(),
            cgroups: &[],
            inherit: Some((write.as_raw_fd(), 3)),
        })
        .unwrap();
        drop(write);
        assert_eq!(
            p.wait_or_kill(Duration::from_secs(20)),
            Some(ExitStatus::Code(0))
        );
        let mut got = String::new();
        std::fs::File::from(read).read_to_string(&mut got).unwrap();
        assert_eq!(got, "through-3\n");
        let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
        assert!(!out.contains("leaked"), "{out}");
    }

    #[test]
    fn a_failed_exec_names_the_step() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: a new PID namespace needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("log")).unwrap();
        let cwd = std::fs::File::open(dir.path()).unwrap();
        let err = spawn(&Launch {
            program: Path::new("/no/such/hull-vmm"),
            args: vec![],
            cwd: cwd.as_fd(),
            stdout: f.as_fd(),
            stderr: f.as_fd(),
            cgroups: &[],
            inherit: None,
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/no/such/hull-vmm") && msg.contains("execute"),
            "{msg}"
        );
    }
}
