//! Creating a container process.
//!
//! Everything the child needs is prepared first (C strings, pointer arrays, descriptors, the
//! compiled seccomp filter). The child is then created with a raw `clone` (new PID, mount,
//! UTS, IPC, network and cgroup namespaces for the first process; the first process's
//! namespaces for later ones) and runs only async-signal-safe system calls until `execve`, because the agent is
//! multithreaded and a cloned child must not touch locks another thread may hold.

use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
use hull_executor::user;
use hull_protocol::ProcessSpec;
use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use super::confine;
use super::reaper;

/// Default PATH when the image and the run flags set none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How the new process relates to the container's namespaces.
pub enum Namespaces {
    /// The container's first process: fresh namespaces, the root moved into place.
    Create {
        /// Container root as the agent sees it.
        root: String,
        /// Hostname for the new UTS namespace.
        hostname: String,
        /// A new network namespace with loopback up; false: share the guest's (where the
        /// agent configured eth0 for `--network bridge`).
        new_network: bool,
    },
    /// A later process (`exec`): join the first process's namespaces and root.
    Join {
        /// PID of the container's first process (in the agent's PID namespace).
        main_pid: i32,
    },
}

/// The agent's ends of a process's stdio.
pub struct ParentStdio {
    /// Write end of stdin (pipe, or the pty master); `None` when stdin is /dev/null.
    pub stdin: Option<File>,
    /// stdout (pipe) or the pty master.
    pub stdout: File,
    /// stderr pipe (`None` with a tty: it shares the pty).
    pub stderr: Option<File>,
    /// Whether `stdout` is a pty master.
    pub tty: bool,
}

/// A started process.
pub struct Child {
    /// PID in the agent's PID namespace.
    pub pid: i32,
    /// The agent's ends of the child's stdio.
    pub stdio: ParentStdio,
    /// Becomes readable (4 bytes, the exit code) when the process ends.
    pub exit: File,
}

/// Steps of the child's setup, reported back when one fails.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Stage {
    Stdio = 1,
    Session,
    Cgroup,
    Namespaces,
    Root,
    Hostname,
    Cwd,
    Capabilities,
    Seccomp,
    User,
    NoNewPrivs,
    Network,
    Exec,
}

fn stage_name(b: u8) -> &'static str {
    match b {
        1 => "set up stdio",
        2 => "create session/controlling terminal",
        3 => "join the container cgroup",
        4 => "enter namespaces",
        5 => "switch to the container root",
        6 => "set hostname",
        7 => "change to the working directory",
        8 => "drop capabilities",
        9 => "load the seccomp filter",
        10 => "switch user",
        11 => "set no_new_privs",
        12 => "bring up the loopback interface",
        _ => "exec",
    }
}

/// Paths hidden from the container (kernel internals), as process mode and docker do.
const MASKED: &[&CStr] = &[
    c"/proc/asound",
    c"/proc/acpi",
    c"/proc/interrupts",
    c"/proc/kcore",
    c"/proc/kpagecgroup",
    c"/proc/kpagecount",
    c"/proc/kpageflags",
    c"/proc/keys",
    c"/proc/latency_stats",
    c"/proc/timer_list",
    c"/proc/timer_stats",
    c"/proc/sched_debug",
    c"/proc/scsi",
    c"/sys/firmware",
    c"/sys/devices/virtual/powercap",
];

/// Kernel tunables made read-only.
const READ_ONLY: &[&CStr] = &[
    c"/proc/bus",
    c"/proc/fs",
    c"/proc/irq",
    c"/proc/sys",
    c"/proc/sysrq-trigger",
];

/// Everything the child uses, ready-made.
struct Prepared {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    keep_caps: u64,
    last_cap: u32,
    seccomp: Vec<hull_executor::seccomp::Filter>,
    no_new_privs: bool,
    child_stdio: [OwnedFd; 3],
    tty: bool,
    cgroup_procs: RawFd,
    err_pipe: RawFd,
    ns: ChildNs,
}

enum ChildNs {
    Create {
        root: CString,
        proc_dir: CString,
        cgroup_dir: CString,
        hostname: CString,
        new_network: bool,
    },
    Join {
        mnt: OwnedFd,
        uts: OwnedFd,
        ipc: OwnedFd,
        cgroup: OwnedFd,
        net: OwnedFd,
        root: OwnedFd,
    },
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("{s:?} contains a NUL byte"))
}

fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Finds `name` on PATH inside the container root; returns the path as the container sees
/// it. Symlinks are accepted as-is (their targets are relative to the container's root,
/// which the agent does not share), so execve has the final word.
fn resolve_executable(root: &Path, name: &str, path_var: &str) -> Result<String> {
    if name.contains('/') {
        return Ok(name.to_string());
    }
    for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
        let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
        let on_agent = root.join(candidate.trim_start_matches('/'));
        if let Ok(meta) = fs::symlink_metadata(&on_agent) {
            let ft = meta.file_type();
            if ft.is_symlink() || (ft.is_file() && meta.permissions().mode() & 0o111 != 0) {
                return Ok(candidate);
            }
        }
    }
    bail!("exec: {name:?}: executable file not found in $PATH")
}

fn no_parent_components(p: &str) -> bool {
    Path::new(p)
        .components()
        .all(|c| !matches!(c, Component::ParentDir))
}

fn open_ns(main_pid: i32, what: &str) -> Result<OwnedFd> {
    let f = File::open(format!("/proc/{main_pid}/{what}"))
        .with_context(|| format!("open /proc/{main_pid}/{what}: is the container running?"))?;
    Ok(f.into())
}

/// Creates the process. With `Namespaces::Join` the calling thread enters the container's
/// PID namespace for the clone and returns to its own afterwards.
pub fn spawn(
    spec: &ProcessSpec,
    ns: Namespaces,
    container_root: &Path,
    cgroup_procs: &OwnedFd,
) -> Result<Child> {
    spec.validate()?;
    let who = user::resolve_in_root(&spec.user.user, container_root)?;

    let mut env = spec.env.clone();
    if env_value(&env, "PATH").is_none() {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if env_value(&env, "HOME").is_none() {
        env.push(format!("HOME={}", who.home_or_root()));
    }
    if spec.tty && env_value(&env, "TERM").is_none() {
        env.push("TERM=xterm".into());
    }
    if let Namespaces::Create { hostname, .. } = &ns {
        if env_value(&env, "HOSTNAME").is_none() && !hostname.is_empty() {
            env.push(format!("HOSTNAME={hostname}"));
        }
    }
    let path_var = env_value(&env, "PATH").unwrap_or(DEFAULT_PATH).to_string();
    let exe = resolve_executable(container_root, &spec.args[0], &path_var)?;

    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    if !no_parent_components(cwd) {
        bail!("working directory {cwd:?} must not contain '..'");
    }
    // Like process mode, a missing working directory is created (in the writable layer).
    let _ = fs::create_dir_all(container_root.join(cwd.trim_start_matches('/')));

    let argv: Vec<CString> = spec
        .args
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|e| cstring(e)).collect::<Result<_>>()?;
    let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<_> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());

    let (child_stdio, parent_stdio) = make_stdio(spec)?;
    let (err_read, err_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (exit_read, exit_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;

    let mut own_pid_ns: Option<File> = None;
    let (child_ns, clone_flags) = match &ns {
        Namespaces::Create {
            root,
            hostname,
            new_network,
        } => (
            ChildNs::Create {
                root: cstring(root)?,
                proc_dir: cstring(&format!("{root}/proc"))?,
                cgroup_dir: cstring(&format!("{root}/sys/fs/cgroup"))?,
                hostname: cstring(hostname)?,
                new_network: *new_network,
            },
            libc::CLONE_NEWPID
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC
                | if *new_network { libc::CLONE_NEWNET } else { 0 },
        ),
        Namespaces::Join { main_pid } => {
            let pid_ns = open_ns(*main_pid, "ns/pid")?;
            // Kept to switch back after clone: a thread whose children's PID namespace
            // differs from its own cannot create threads (EINVAL).
            own_pid_ns = Some(File::open("/proc/thread-self/ns/pid").context("open own pid ns")?);
            // This thread's future children land in the container's PID namespace.
            nix::sched::setns(&pid_ns, nix::sched::CloneFlags::CLONE_NEWPID)
                .context("enter the container's PID namespace")?;
            (
                ChildNs::Join {
                    mnt: open_ns(*main_pid, "ns/mnt")?,
                    uts: open_ns(*main_pid, "ns/uts")?,
                    ipc: open_ns(*main_pid, "ns/ipc")?,
                    cgroup: open_ns(*main_pid, "ns/cgroup")?,
                    net: open_ns(*main_pid, "ns/net")?,
                    root: open_ns(*main_pid, "root")?,
                },
                0,
            )
        }
    };

    let prepared = Prepared {
        path: cstring(&exe)?,
        _argv: argv,
        argv_ptrs,
        _envp: envp,
        envp_ptrs,
        cwd: cstring(cwd)?,
        uid: who.uid,
        gid: who.gid,
        groups: who.setgroups_list(),
        keep_caps: confine::capability_mask(&spec.capabilities)?,
        last_cap: confine::last_cap(),
        seccomp: if spec.seccomp {
            vec![confine::default_seccomp(&spec.capabilities)?]
        } else {
            Vec::new()
        },
        no_new_privs: spec.no_new_privs,
        child_stdio,
        tty: spec.tty,
        cgroup_procs: cgroup_procs.as_raw_fd(),
        err_pipe: err_write.as_raw_fd(),
        ns: child_ns,
    };

    let pid = {
        let mut watches = reaper::lock();
        // SAFETY: a raw clone without CLONE_VM behaves like fork: the child gets a copy of
        // the address space and continues here with a return value of 0. The child then runs
        // only `child_main`, which makes raw system calls on data prepared above and never
        // returns. SIGCHLD as the exit signal lets the reaper collect it.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (clone_flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid == 0 {
            child_main(&prepared);
        }
        if pid < 0 {
            bail!("clone: {}", std::io::Error::last_os_error());
        }
        let pid = pid as i32;
        watches.watch(pid, File::from(exit_write));
        pid
    };
    if let Some(own) = own_pid_ns {
        nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWPID)
            .context("return to the agent's PID namespace")?;
    }
    drop(prepared);
    drop(err_write);

    // The child closes its end on exec (CLOEXEC); a failure report arrives first.
    let mut report = Vec::new();
    File::from(err_read)
        .take(5)
        .read_to_end(&mut report)
        .context("read child status")?;
    if report.len() == 5 {
        let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
        let err = std::io::Error::from_raw_os_error(errno);
        bail!("{}: {}: {err}", spec.args[0], stage_name(report[0]));
    }
    Ok(Child {
        pid,
        stdio: parent_stdio,
        exit: File::from(exit_read),
    })
}

fn make_stdio(spec: &ProcessSpec) -> Result<([OwnedFd; 3], ParentStdio)> {
    if spec.tty {
        let size = spec.tty_size.map(|(rows, cols)| nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(size.as_ref(), None).context("openpty")?;
        let master = File::from(pty.master);
        nix::fcntl::fcntl(
            &master,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        let slave = pty.slave;
        let child = [slave.try_clone()?, slave.try_clone()?, slave];
        let parent = ParentStdio {
            stdin: if spec.stdin {
                Some(master.try_clone()?)
            } else {
                None
            },
            stdout: master,
            stderr: None,
            tty: true,
        };
        return Ok((child, parent));
    }
    let (stdin_child, stdin_parent) = if spec.stdin {
        let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
        (r, Some(File::from(w)))
    } else {
        (File::open("/dev/null")?.into(), None)
    };
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC)?;
    Ok((
        [stdin_child, out_w, err_w],
        ParentStdio {
            stdin: stdin_parent,
            stdout: File::from(out_r),
            stderr: Some(File::from(err_r)),
            tty: false,
        },
    ))
}

/// Reports the failed stage and errno to the agent, then exits.
fn fail(p: &Prepared, stage: Stage) -> ! {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let mut msg = [0u8; 5];
    msg[0] = stage as u8;
    msg[1..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: writing a stack buffer to a pipe we own, then exiting without running any
    // of the parent's atexit handlers or destructors.
    unsafe {
        libc::write(p.err_pipe, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn load_seccomp(p: &Prepared, filter: &hull_executor::seccomp::Filter) {
    let filter = &filter.program;
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        // The compiler's instructions have the kernel's sock_filter layout.
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the kernel copies the program; `prog` and `filter` outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        fail(p, Stage::Seccomp);
    }
}

/// Hides [`MASKED`] (an empty read-only tmpfs over directories, /dev/null over files) and
/// makes [`READ_ONLY`] read-only, inside the container root (after chroot).
fn mask_and_protect(p: &Prepared) {
    // SAFETY: stat into a zeroed stack struct and mounts on static NUL-terminated paths.
    unsafe {
        for path in MASKED {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::stat(path.as_ptr(), &mut st) != 0 {
                continue;
            }
            let rc = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    path.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY,
                    c"size=0".as_ptr().cast(),
                )
            } else {
                libc::mount(
                    c"/dev/null".as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if rc < 0 {
                fail(p, Stage::Root);
            }
        }
        for path in READ_ONLY {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::stat(path.as_ptr(), &mut st) != 0 {
                continue;
            }
            if libc::mount(
                path.as_ptr(),
                path.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) < 0
                || libc::mount(
                    std::ptr::null(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                ) < 0
            {
                fail(p, Stage::Root);
            }
        }
    }
}

/// Brings up `lo` in the container's new network namespace (its only interface, as in
/// process mode).
fn loopback_up(p: &Prepared) {
    // SAFETY: a socket, two ioctls on a stack copy of a plain-data ifreq, and close.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            fail(p, Stage::Network);
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            fail(p, Stage::Network);
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
            fail(p, Stage::Network);
        }
        libc::close(sock);
    }
}

/// The child side: raw system calls only, then execve.
fn child_main(p: &Prepared) -> ! {
    // SAFETY: plain system calls on descriptors and NUL-terminated strings prepared before
    // clone and alive for the whole function; failures are reported through `fail`, which
    // exits, and success ends in execve.
    unsafe {
        for (i, fd) in p.child_stdio.iter().enumerate() {
            if libc::dup2(fd.as_raw_fd(), i as i32) < 0 {
                fail(p, Stage::Stdio);
            }
        }
        if libc::setsid() < 0 {
            fail(p, Stage::Session);
        }
        if p.tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            fail(p, Stage::Session);
        }
        if libc::write(p.cgroup_procs, b"0".as_ptr().cast(), 1) < 0 {
            fail(p, Stage::Cgroup);
        }
        match &p.ns {
            ChildNs::Create {
                root,
                proc_dir,
                cgroup_dir,
                hostname,
                new_network,
            } => {
                // A cgroup namespace rooted at the container's cgroup (joined above), so
                // the container sees its own cgroup as /sys/fs/cgroup, as in process mode.
                if libc::unshare(libc::CLONE_NEWCGROUP) < 0 {
                    fail(p, Stage::Namespaces);
                }
                let slash = c"/".as_ptr();
                if libc::mount(
                    std::ptr::null(),
                    slash,
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) < 0
                {
                    fail(p, Stage::Namespaces);
                }
                if libc::mount(
                    c"proc".as_ptr(),
                    proc_dir.as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ) < 0
                {
                    fail(p, Stage::Root);
                }
                if libc::mount(
                    c"cgroup2".as_ptr(),
                    cgroup_dir.as_ptr(),
                    c"cgroup2".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
                    std::ptr::null(),
                ) < 0
                {
                    fail(p, Stage::Root);
                }
                // The initramfs root cannot be pivoted away from: move the container root
                // over it instead (what switch_root does), in this private namespace.
                if libc::chdir(root.as_ptr()) < 0
                    || libc::mount(
                        root.as_ptr(),
                        slash,
                        std::ptr::null(),
                        libc::MS_MOVE,
                        std::ptr::null(),
                    ) < 0
                    || libc::chroot(c".".as_ptr()) < 0
                    || libc::chdir(slash) < 0
                {
                    fail(p, Stage::Root);
                }
                if !hostname.as_bytes().is_empty()
                    && libc::sethostname(hostname.as_ptr(), hostname.as_bytes().len()) < 0
                {
                    fail(p, Stage::Hostname);
                }
                mask_and_protect(p);
                if *new_network {
                    loopback_up(p);
                }
            }
            ChildNs::Join {
                mnt,
                uts,
                ipc,
                cgroup,
                net,
                root,
            } => {
                if libc::setns(uts.as_raw_fd(), libc::CLONE_NEWUTS) < 0
                    || libc::setns(cgroup.as_raw_fd(), libc::CLONE_NEWCGROUP) < 0
                    || libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) < 0
                    || libc::setns(ipc.as_raw_fd(), libc::CLONE_NEWIPC) < 0
                    || libc::setns(mnt.as_raw_fd(), libc::CLONE_NEWNS) < 0
                {
                    fail(p, Stage::Namespaces);
                }
                if libc::fchdir(root.as_raw_fd()) < 0
                    || libc::chroot(c".".as_ptr()) < 0
                    || libc::chdir(c"/".as_ptr()) < 0
                {
                    fail(p, Stage::Root);
                }
            }
        }
        if libc::chdir(p.cwd.as_ptr()) < 0 {
            fail(p, Stage::Cwd);
        }
        for cap in 0..=p.last_cap {
            if p.keep_caps & (1u64 << cap) == 0
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) < 0
            {
                fail(p, Stage::Capabilities);
            }
        }
        // Without no_new_privs a filter can only be loaded while we still hold
        // CAP_SYS_ADMIN; a deny list does not affect the steps that follow.
        if !p.no_new_privs {
            for filter in &p.seccomp {
                load_seccomp(p, filter);
            }
        }
        if libc::setgroups(p.groups.len(), p.groups.as_ptr()) < 0
            || libc::setgid(p.gid) < 0
            || libc::setuid(p.uid) < 0
        {
            fail(p, Stage::User);
        }
        let keep = if p.uid == 0 { p.keep_caps } else { 0 };
        let header = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let data = [
            CapData {
                effective: keep as u32,
                permitted: keep as u32,
                inheritable: 0,
            },
            CapData {
                effective: (keep >> 32) as u32,
                permitted: (keep >> 32) as u32,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) < 0 {
            fail(p, Stage::Capabilities);
        }
        // Ambient capabilities may be absent on an old kernel; nothing to clear then.
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if p.no_new_privs {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                fail(p, Stage::NoNewPrivs);
            }
            for filter in &p.seccomp {
                load_seccomp(p, filter);
            }
        }
        libc::execve(p.path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
        fail(p, Stage::Exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_resolve_on_path_inside_the_root() {
        let root = tempfile_dir();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/tool"), "").unwrap();
        fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("bin/data"), "").unwrap();
        std::os::unix::fs::symlink("/bin/busybox", root.join("bin/sh")).unwrap();
        assert_eq!(
            resolve_executable(&root, "tool", "/usr/bin:/bin").unwrap(),
            "/bin/tool"
        );
        assert_eq!(resolve_executable(&root, "sh", "/bin").unwrap(), "/bin/sh");
        assert!(resolve_executable(&root, "data", "/bin").is_err());
        assert!(resolve_executable(&root, "nope", "/bin").is_err());
        assert_eq!(resolve_executable(&root, "./x", "/bin").unwrap(), "./x");
        fs::remove_dir_all(&root).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("hull-agent-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }
}
