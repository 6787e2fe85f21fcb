//! The parent's side of starting a container process: create its cgroups, open everything the
//! child needs (namespace files, bind sources, a /dev/null to mask with, the start gate),
//! clone3 into the new namespaces, write a new user namespace's maps, then wait on the sync
//! socket until the child has exec'd (EOF: the socket is close-on-exec), is waiting at the
//! start gate, or failed (a [`ChildReport`], turned into an [`Error`] described from the
//! plan). On failure the child is killed and reaped and the cgroups removed.
//!
//! The caller must not hold locks another thread could need in the child (the child only
//! runs `init`, which takes none).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cgroups::{driver, Layout};
use crate::error::{ChildReport, Error, ErrorKind, Stage};
use crate::init::{self, tag, Child, ChildStdio, Role};
use crate::plan::mounts::MountKind;
use crate::plan::{describe, ContainerPlan, Plan, ProcessPlan};
use crate::sys::linux::Linux;

/// How the process's standard streams are connected.
#[derive(Debug, Clone, Copy)]
pub enum Stdio<'a> {
    /// These descriptors become 0, 1, 2; `None` stdin is /dev/null inside the container.
    Pipes {
        /// stdin.
        stdin: Option<BorrowedFd<'a>>,
        /// stdout.
        stdout: BorrowedFd<'a>,
        /// stderr.
        stderr: BorrowedFd<'a>,
    },
    /// A terminal made inside the container; its master is [`Spawned::terminal`].
    Terminal,
    /// A terminal whose master goes to this connected OCI console socket.
    ConsoleSocket(BorrowedFd<'a>),
}

/// How to start it.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// Standard streams.
    pub stdio: Stdio<'a>,
    /// The process dies when the thread that created it ends (PR_SET_PDEATHSIG): right for
    /// a supervisor that owns it, wrong for `create` that exits.
    pub die_with_parent: bool,
    /// A FIFO the child opens for writing right before its last privilege changes; it
    /// waits there until someone opens it for reading (`start`), like runc's exec.fifo.
    pub start_gate: Option<&'a Path>,
    /// How long the child may take to get there.
    pub timeout: Duration,
}

/// A started (or created and waiting) process.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid in the caller's PID namespace.
    pub pid: i32,
    /// A pidfd for it.
    pub pidfd: OwnedFd,
    /// The terminal's master end, with [`Stdio::Terminal`].
    pub terminal: Option<OwnedFd>,
}

/// What an `exec` joins: the container's first process.
#[derive(Debug, Clone, Copy)]
pub struct ExecTarget<'a> {
    /// pidfd of the container's first process.
    pub init: BorrowedFd<'a>,
    /// CLONE_NEW* flags of the namespaces to join (PID included).
    pub namespaces: u64,
    /// The container's cgroup (relative to the hierarchy root), if it has one.
    pub cgroup_path: Option<&'a Path>,
}

fn sys_err(stage: Stage, what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |e| Error::system(stage, what, &e)
}

/// Starts the first process of the container described by `plan`.
pub fn create(plan: &Plan, layout: &Layout, opts: &Options<'_>) -> Result<Spawned, Error> {
    let c = &plan.container;
    let cgroup_fds = driver::create(layout, &c.cgroup)?;
    let result = create_with(plan, &cgroup_fds, opts);
    if result.is_err() {
        let _ = driver::remove(layout, &c.cgroup.path);
    }
    result
}

fn open_path(path: &Path, what: &str) -> Result<OwnedFd, Error> {
    File::open(path).map(OwnedFd::from).map_err(|e| Error {
        kind: if e.kind() == io::ErrorKind::NotFound {
            ErrorKind::InvalidSpec
        } else {
            ErrorKind::System
        },
        stage: Stage::Prepare,
        errno: e.raw_os_error(),
        detail: format!("{what} {}", path.display()),
    })
}

/// `NS_GET_NSTYPE` from linux/nsfs.h: the CLONE_NEW* type of a namespace file.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Opens a namespace to join and checks it is one of type `flag`, so a wrong path (a plain
/// file, another kind of namespace) is refused here, naming it, rather than as a bare
/// EINVAL from setns in the child.
fn open_namespace(path: &Path, flag: u64) -> Result<OwnedFd, Error> {
    let fd = open_path(path, "namespace")?;
    // SAFETY: an nsfs ioctl without an argument on a descriptor we own.
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    let err = io::Error::last_os_error();
    // ENOTTY: not an nsfs file (or a kernel before 4.11, where setns will tell).
    if kind < 0 && err.raw_os_error() != Some(libc::ENOTTY) {
        return Err(Error::new(
            ErrorKind::System,
            Stage::Prepare,
            format!("namespace {}: {err}", path.display()),
        ));
    }
    if kind as u64 != flag {
        return Err(Error::invalid(format!(
            "linux.namespaces: {} is not a {} namespace",
            path.display(),
            crate::plan::namespaces::flag_name(flag)
        )));
    }
    Ok(fd)
}

/// The start gate FIFO, for the child to reopen for writing through /proc/self/fd. O_PATH:
/// opening a FIFO for reading or writing blocks until the other side comes (`start`), and a
/// reader held here would also let the child's write-open return at once.
fn open_gate(path: &Path) -> Result<OwnedFd, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error {
            kind: if e.kind() == io::ErrorKind::NotFound {
                ErrorKind::InvalidSpec
            } else {
                ErrorKind::System
            },
            stage: Stage::Prepare,
            errno: e.raw_os_error(),
            detail: format!("start gate {}", path.display()),
        })
}

/// A detached copy of the mount tree at `path` (open_tree OPEN_TREE_CLONE).
fn clone_mount(path: &std::ffi::CStr, recursive: bool) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: NUL-terminated path, integer flags; returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn create_with(plan: &Plan, cgroup_fds: &[OwnedFd], opts: &Options<'_>) -> Result<Spawned, Error> {
    let c: &ContainerPlan = &plan.container;
    let ns = &c.namespaces;
    let join: Vec<(OwnedFd, u64)> = ns
        .join
        .iter()
        .map(|j| Ok((open_namespace(&j.path, j.flag)?, j.flag)))
        .collect::<Result<_, Error>>()?;
    let join_pid = ns
        .join_pid
        .as_deref()
        .map(|p| open_namespace(p, libc::CLONE_NEWPID as u64))
        .transpose()?;
    let binds: Vec<Option<OwnedFd>> = c
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| match &m.kind {
            MountKind::Bind { source, recursive } => clone_mount(source, *recursive)
                .map(Some)
                .map_err(|e| Error {
                    kind: if e.kind() == io::ErrorKind::NotFound {
                        ErrorKind::InvalidSpec
                    } else {
                        ErrorKind::System
                    },
                    stage: Stage::Mount,
                    errno: e.raw_os_error(),
                    detail: format!(
                        "bind source of {}",
                        describe(Some(c), &plan.process, Stage::Mount, i as u32)
                    ),
                }),
            _ => Ok(None),
        })
        .collect::<Result<_, Error>>()?;
    // In a new user namespace device nodes cannot be made: bind them from outside.
    let userns = ns.user.is_some();
    let device_sources: Vec<Option<OwnedFd>> = if userns {
        c.devices
            .iter()
            .map(|d| {
                clone_mount(&d.path, false).map(Some).map_err(|e| Error {
                    kind: ErrorKind::InvalidSpec,
                    stage: Stage::Device,
                    errno: e.raw_os_error(),
                    detail: format!(
                        "{} (in a user namespace devices are bound from the same path outside)",
                        d.describe()
                    ),
                })
            })
            .collect::<Result<_, Error>>()?
    } else {
        Vec::new()
    };
    let bind_raw: Vec<Option<RawFd>> = binds
        .iter()
        .map(|b| b.as_ref().map(|f| f.as_raw_fd()))
        .collect();
    let dev_raw: Vec<Option<RawFd>> = device_sources
        .iter()
        .map(|b| b.as_ref().map(|f| f.as_raw_fd()))
        .collect();
    let join_raw: Vec<(RawFd, u64)> = join
        .iter()
        .map(|(f, flag)| (f.as_raw_fd(), *flag))
        .collect();
    let role = Role::Init {
        plan: c,
        binds: &bind_raw,
        device_sources: &dev_raw,
    };
    let maps = ns
        .user
        .as_ref()
        .map(|m| (m.uid_map.as_str(), m.gid_map.as_str()));
    launch(
        role,
        &plan.process,
        ns.clone_flags,
        join_pid.as_ref().map(|f| f.as_raw_fd()),
        &join_raw,
        cgroup_fds,
        maps,
        opts,
        &|stage, index| describe(Some(c), &plan.process, stage, index),
    )
}

/// Starts another process in a running container.
pub fn exec(
    process: &ProcessPlan,
    target: &ExecTarget<'_>,
    layout: &Layout,
    opts: &Options<'_>,
) -> Result<Spawned, Error> {
    let cgroup_fds = match target.cgroup_path {
        Some(p) => driver::open_existing(layout, p)?,
        None => Vec::new(),
    };
    let pid_flag = libc::CLONE_NEWPID as u64;
    let join_pid = (target.namespaces & pid_flag != 0).then(|| target.init.as_raw_fd());
    let others = target.namespaces & !pid_flag;
    let join: Vec<(RawFd, u64)> = if others != 0 {
        vec![(target.init.as_raw_fd(), others)]
    } else {
        Vec::new()
    };
    launch(
        Role::Exec,
        process,
        0,
        join_pid,
        &join,
        &cgroup_fds,
        None,
        opts,
        &|stage, index| describe(None, process, stage, index),
    )
}

fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two new fds into our array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel gave us two new fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Enters the PID namespace `fd` for the calling thread's future children; the returned
/// guard puts the thread back into its own when dropped.
struct PidNsGuard(OwnedFd);

impl PidNsGuard {
    fn enter(fd: RawFd) -> Result<PidNsGuard, Error> {
        let own = File::open("/proc/thread-self/ns/pid")
            .map_err(sys_err(Stage::Namespaces, "open own PID namespace"))?;
        // SAFETY: setns with a namespace descriptor; affects only future children.
        if unsafe { libc::setns(fd, libc::CLONE_NEWPID) } < 0 {
            return Err(Error::system(
                Stage::Namespaces,
                "enter the container's PID namespace",
                &io::Error::last_os_error(),
            ));
        }
        Ok(PidNsGuard(own.into()))
    }
}

impl Drop for PidNsGuard {
    fn drop(&mut self) {
        // SAFETY: setns back into the thread's own PID namespace (a thread whose children's
        // namespace differs from its own cannot create threads).
        unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWPID) };
    }
}

#[allow(clippy::too_many_arguments)]
fn launch(
    role: Role<'_>,
    process: &ProcessPlan,
    clone_flags: u64,
    join_pid: Option<RawFd>,
    join: &[(RawFd, u64)],
    cgroup_fds: &[OwnedFd],
    maps: Option<(&str, &str)>,
    opts: &Options<'_>,
    describe: &dyn Fn(Stage, u32) -> String,
) -> Result<Spawned, Error> {
    let (parent_sock, child_sock) =
        socketpair().map_err(sys_err(Stage::Prepare, "create the sync socket"))?;
    let gate = opts.start_gate.map(open_gate).transpose()?;
    let gate_path = gate
        .as_ref()
        .map(|g| CString::new(format!("/proc/self/fd/{}", g.as_raw_fd())).unwrap_or_default());
    let stdio = match opts.stdio {
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => ChildStdio::Pipes {
            stdin: stdin.map(|f| f.as_raw_fd()),
            stdout: stdout.as_raw_fd(),
            stderr: stderr.as_raw_fd(),
        },
        Stdio::Terminal => ChildStdio::Terminal {
            console: child_sock.as_raw_fd(),
        },
        Stdio::ConsoleSocket(s) => ChildStdio::Terminal {
            console: s.as_raw_fd(),
        },
    };
    let mut argv: Vec<*const libc::c_char> = process.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = process.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cgroup_raw: Vec<RawFd> = cgroup_fds.iter().map(|f| f.as_raw_fd()).collect();
    let child = Child {
        role,
        process,
        sync: child_sock.as_raw_fd(),
        parent_end: parent_sock.as_raw_fd(),
        wait_for_maps: maps.is_some(),
        join,
        cgroups: &cgroup_raw,
        stdio,
        gate: gate
            .as_ref()
            .zip(gate_path.as_deref())
            .map(|(g, p)| (g.as_raw_fd(), p)),
        argv: &argv,
        envp: &envp,
    };
    let sys = Linux {
        die_with_parent: opts.die_with_parent,
    };

    let pid_ns = join_pid.map(PidNsGuard::enter).transpose()?;
    // SAFETY: the child only runs `init::run`, which makes raw system calls on data
    // prepared above, takes no locks and never returns.
    let forked = unsafe { crate::fork::fork_with_pidfd(clone_flags) };
    if let Ok(crate::fork::Forked::Child) = forked {
        let failed = match init::run(&sys, &child) {
            Ok(never) => match never {},
            Err(f) => f,
        };
        init::report_and_exit(&sys, child.sync, failed);
    }
    drop(pid_ns);
    let (pid, pidfd) = match forked {
        Ok(crate::fork::Forked::Parent { pid, pidfd }) => (pid, pidfd),
        Ok(crate::fork::Forked::Child) => unreachable!("the child never gets here"),
        Err(e) => return Err(Error::system(Stage::Clone, "clone3", &e)),
    };
    drop(child_sock);
    drop(gate);

    let outcome = (|| {
        if let Some((uid_map, gid_map)) = maps {
            write_maps(pid, uid_map, gid_map)?;
            // SAFETY: one byte from a static buffer to our end of the socket.
            if unsafe { libc::write(parent_sock.as_raw_fd(), [tag::GO].as_ptr().cast(), 1) } != 1 {
                return Err(Error::system(
                    Stage::UserNamespace,
                    "tell the child to go on",
                    &io::Error::last_os_error(),
                ));
            }
        }
        wait_child(&parent_sock, opts.timeout, describe)
    })();
    match outcome {
        Ok(terminal) => Ok(Spawned {
            pid,
            pidfd,
            terminal,
        }),
        Err(e) => {
            kill_and_reap(&pidfd);
            Err(e)
        }
    }
}

fn write_maps(pid: i32, uid_map: &str, gid_map: &str) -> Result<(), Error> {
    for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, map)
            .map_err(sys_err(Stage::UserNamespace, format!("write {path}")))?;
    }
    Ok(())
}

fn kill_and_reap(pidfd: &OwnedFd) {
    // SAFETY: signalling and reaping exactly the process behind our pidfd.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED,
        );
    }
}

/// Receives one message and any descriptor sent with it.
fn recv_with_fd(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space);
    let n = loop {
        // SAFETY: a complete msghdr whose buffers live on this stack frame.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fd = None;
    // SAFETY: walking the control messages the kernel wrote into `space`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(data.add(i));
                    // The kernel installed it in our table for us: own (and maybe drop) it.
                    let owned = OwnedFd::from_raw_fd(raw);
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, fd))
}

/// Waits for the child's verdict: EOF = it exec'd; READY = it waits at the start gate;
/// TERMINAL + fd = the terminal; ERROR + report = failure.
fn wait_child(
    sock: &OwnedFd,
    timeout: Duration,
    describe: &dyn Fn(Stage, u32) -> String,
) -> Result<Option<OwnedFd>, Error> {
    let deadline = Instant::now() + timeout;
    let mut terminal = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready =
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::system(
                Stage::Channel,
                "wait for the container process",
                &e,
            ));
        }
        if ready == 0 {
            return Err(Error::new(
                ErrorKind::Timeout,
                Stage::Channel,
                format!(
                    "the container process did not start within {} s",
                    timeout.as_secs()
                ),
            ));
        }
        let mut buf = [0u8; 64];
        let (n, fd) = recv_with_fd(sock, &mut buf)
            .map_err(|e| Error::system(Stage::Channel, "read from the container process", &e))?;
        match (n, buf[0]) {
            (0, _) => return Ok(terminal),
            (1, tag::READY) => return Ok(terminal),
            (1, tag::TERMINAL) if fd.is_some() => terminal = fd,
            (n, tag::ERROR) => {
                let r = ChildReport::decode(&buf[1..n]).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Protocol,
                        Stage::Channel,
                        "malformed failure report",
                    )
                })?;
                return Err(Error {
                    kind: r.kind,
                    stage: r.stage,
                    errno: (r.errno != 0).then_some(r.errno),
                    detail: describe(r.stage, r.index),
                });
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    Stage::Channel,
                    "unexpected message from the container process",
                ))
            }
        }
    }
}

/// The CLONE_NEW* flags of every namespace a container spec lists (what `exec` joins).
pub fn namespace_flags(spec: &oci_spec::runtime::Spec) -> u64 {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|list| {
            list.iter()
                .map(|n| crate::plan::namespaces::flag(n.typ()))
                .fold(0, |a, b| a | b)
        })
        .unwrap_or(0)
}

/// A path as a C string (for `Path`s from specs).
pub fn c_path(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// `create` with a start gate must return while nobody has opened the FIFO yet (runc's
    /// exec.fifo: `start` opens it later, from another process).
    #[test]
    fn the_start_gate_is_opened_without_waiting_for_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("exec.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = mpsc::channel();
        let path = fifo.clone();
        let opener = std::thread::spawn(move || tx.send(open_gate(&path).map(|_| ())));
        let outcome = rx.recv_timeout(Duration::from_secs(5));
        if outcome.is_err() {
            // Unblock the stuck open so the thread ends, then fail.
            let _writer = std::fs::OpenOptions::new().write(true).open(&fifo);
            let _ = opener.join();
            panic!("opening the start gate blocked until a writer came");
        }
        outcome.unwrap().unwrap();
        // Nothing was read or written: the FIFO still waits for the child and `start`.
        let _ = opener.join();
    }
}
