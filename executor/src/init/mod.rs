//! The child's sequence, from the clone to execve, top to bottom. It only makes system calls
//! through [`Sys`] on data prepared by the parent ([`Child`]): no allocation, no locks, so it
//! is safe in a copy of a multithreaded process (the guest agent).
//!
//! Order, for a container's first process: namespaces (user maps first), cgroups, the cgroup
//! namespace, sysctls and oom_score_adj, root propagation, the root filesystem, pivot_root,
//! `mounts` in order, devices, /dev symlinks, masked then read-only paths, read-only root,
//! hostname, loopback; then for every process: stdio (or a terminal made inside), working
//! directory, closing inherited descriptors, rlimits, the start gate, the bounding set,
//! groups/gid/uid with capabilities kept across, capability sets, ambient set, umask,
//! no_new_privs, seccomp, execve along the PATH.
//!
//! A failure is reported to the parent as a [`ChildReport`] (kind, stage, errno, index) and
//! the child exits with docker's code for it (125, 126, 127).

use std::convert::Infallible;
use std::ffi::CStr;
use std::io;

mod mounts;
mod paths;

use mounts::{dev_symlinks, make_device, mask, mount_step, read_only};
use paths::ensure_dir;

use crate::error::{ChildReport, ErrorKind, Stage};
use crate::plan::{ContainerPlan, ProcessPlan};
use crate::sys::{Fd, Sys};

/// Sync message tags (first byte of a message on the sync socket).
pub mod tag {
    /// Child to parent: a failure report follows.
    pub const ERROR: u8 = b'E';
    /// Child to parent: the terminal's master end is attached (SCM_RIGHTS).
    pub const TERMINAL: u8 = b'T';
    /// Child to parent: set up, waiting at the start gate.
    pub const READY: u8 = b'R';
    /// Parent to child: go on (the user namespace's maps are written).
    pub const GO: u8 = b'G';
}

/// How the child's standard streams are connected.
#[derive(Debug, Clone, Copy)]
pub enum ChildStdio {
    /// Inherited descriptors for 0, 1, 2; `None` stdin is /dev/null inside the container.
    Pipes {
        /// stdin.
        stdin: Option<Fd>,
        /// stdout.
        stdout: Fd,
        /// stderr.
        stderr: Fd,
    },
    /// A terminal created inside the container; its master goes over `console` (the sync
    /// socket, or an OCI console socket).
    Terminal {
        /// Where to send the master.
        console: Fd,
    },
}

/// What differs between a container's first process and a later one.
pub enum Role<'a> {
    /// The first process: namespaces, root filesystem, everything in the plan.
    Init {
        /// The container part of the plan.
        plan: &'a ContainerPlan,
        /// Per mount step, the descriptor of a bind's source (opened by the parent).
        binds: &'a [Option<Fd>],
        /// Per device, a detached mount of its node to attach instead of mknod (in a new
        /// user namespace, where mknod is not allowed).
        device_sources: &'a [Option<Fd>],
    },
    /// A later process (`exec`): join the container's namespaces.
    Exec,
}

/// Everything the child needs, prepared before the clone.
pub struct Child<'a> {
    /// First or later process.
    pub role: Role<'a>,
    /// The process part of the plan.
    pub process: &'a ProcessPlan,
    /// The sync socket to the parent.
    pub sync: Fd,
    /// The parent's end of that socket, inherited through the clone: closed first thing,
    /// so that the parent's death shows on `sync`.
    pub parent_end: Fd,
    /// Wait for the parent's go-ahead first (it writes the user namespace's maps).
    pub wait_for_maps: bool,
    /// Namespaces to join: (descriptor, CLONE_NEW* flags).
    pub join: &'a [(Fd, u64)],
    /// `cgroup.procs` descriptors to write "0" to.
    pub cgroups: &'a [Fd],
    /// Standard streams.
    pub stdio: ChildStdio,
    /// Start gate: a FIFO's descriptor (O_PATH) and its path through /proc
    /// (`/proc/self/fd/N`), opened for writing right before the last privilege changes; it
    /// blocks until `start` opens the other end.
    pub gate: Option<(Fd, &'a CStr)>,
    /// argv for execve (null-terminated).
    pub argv: &'a [*const libc::c_char],
    /// envp for execve (null-terminated).
    pub envp: &'a [*const libc::c_char],
}

/// A failure inside the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// The report for the parent.
    pub report: ChildReport,
}

fn fail(stage: Stage, index: usize, e: io::Error) -> Failed {
    Failed {
        report: ChildReport {
            kind: ErrorKind::System,
            stage,
            errno: e.raw_os_error().unwrap_or(0),
            index: index as u32,
        },
    }
}

fn at(stage: Stage, index: usize) -> impl Fn(io::Error) -> Failed {
    move |e| fail(stage, index, e)
}

/// Runs the child's sequence; returns only on failure (after execve nothing returns).
pub fn run(sys: &dyn Sys, c: &Child<'_>) -> Result<Infallible, Failed> {
    sys.prepare_child().map_err(at(Stage::Prepare, 0))?;
    sys.close(c.parent_end);
    // The parent may have died before the death signal was set.
    sys.exit_if_orphaned(c.sync);
    // Cgroups first, while still the runtime's own user (cgroup v1 checks the writer).
    for (i, fd) in c.cgroups.iter().enumerate() {
        sys.write_fd(*fd, b"0").map_err(at(Stage::Cgroups, i))?;
    }
    if c.wait_for_maps {
        sys.read_byte(c.sync).map_err(at(Stage::UserNamespace, 0))?;
        sys.become_ns_root().map_err(at(Stage::UserNamespace, 1))?;
    }
    for (i, (fd, flags)) in c.join.iter().enumerate() {
        sys.setns(*fd, *flags).map_err(at(Stage::Namespaces, i))?;
    }
    if let Role::Init {
        plan,
        binds,
        device_sources,
    } = &c.role
    {
        build_container(sys, plan, binds, device_sources, c.process)?;
    } else if let Some(adj) = &c.process.oom_score_adj {
        write_oom(sys, *adj)?;
    }
    setup_stdio(sys, c)?;
    finish(sys, c)
}

fn write_oom(sys: &dyn Sys, adj: i32) -> Result<(), Failed> {
    let mut buf = [0u8; 12];
    let text = format_i32(adj, &mut buf);
    sys.write_file(c"/proc/self/oom_score_adj", text)
        .map_err(at(Stage::OomScoreAdj, 0))
}

/// Decimal text of `v` in `buf`, without allocating.
fn format_i32(v: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

fn build_container(
    sys: &dyn Sys,
    plan: &ContainerPlan,
    binds: &[Option<Fd>],
    device_sources: &[Option<Fd>],
    process: &ProcessPlan,
) -> Result<(), Failed> {
    if plan.namespaces.new_cgroup {
        sys.unshare(libc::CLONE_NEWCGROUP as u64)
            .map_err(at(Stage::Namespaces, usize::MAX))?;
    }
    // Through the runtime's own /proc: these act on the namespaces just entered.
    for (i, s) in plan.sysctls.iter().enumerate() {
        sys.write_file(&s.path, s.value.as_bytes())
            .map_err(at(Stage::Sysctl, i))?;
    }
    if let Some(adj) = process.oom_score_adj {
        write_oom(sys, adj)?;
    }
    sys.mount(None, c"/", None, plan.root.propagation, None)
        .map_err(at(Stage::Rootfs, 0))?;
    match &plan.root.overlay {
        Some(overlay) => {
            sys.mount(
                Some(c"overlay"),
                &plan.root.path,
                Some(c"overlay"),
                libc::MS_NODEV,
                Some(&overlay.data),
            )
            .map_err(at(Stage::Rootfs, 4))?;
        }
        None => {
            // pivot_root needs the new root to be a mount point.
            sys.mount(
                Some(&plan.root.path),
                &plan.root.path,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(at(Stage::Rootfs, 5))?;
        }
    }
    sys.pivot_root(&plan.root.path)
        .map_err(at(Stage::PivotRoot, 0))?;

    for (i, step) in plan.mounts.iter().enumerate() {
        mount_step(sys, step, binds.get(i).copied().flatten(), &plan.cgroup_v1)
            .map_err(at(Stage::Mount, i))?;
    }
    for (i, dev) in plan.devices.iter().enumerate() {
        make_device(sys, dev, device_sources.get(i).copied().flatten())
            .map_err(at(Stage::Device, i))?;
    }
    if plan.dev_symlinks {
        dev_symlinks(sys, plan.ptmx_symlink).map_err(at(Stage::Device, usize::MAX))?;
    }
    for (i, path) in plan.masked.iter().enumerate() {
        mask(sys, path).map_err(at(Stage::MaskedPath, i))?;
    }
    for (i, path) in plan.readonly_paths.iter().enumerate() {
        read_only(sys, path).map_err(at(Stage::ReadonlyPath, i))?;
    }
    if plan.root.readonly {
        mounts::root_read_only(sys).map_err(at(Stage::Rootfs, 6))?;
    }
    if let Some(h) = &plan.hostname {
        sys.set_hostname(h).map_err(at(Stage::Hostname, 0))?;
    }
    if let Some(d) = &plan.domainname {
        sys.set_domainname(d).map_err(at(Stage::Hostname, 1))?;
    }
    if plan.loopback {
        sys.loopback_up().map_err(at(Stage::Network, 0))?;
    }
    Ok(())
}

fn setup_stdio(sys: &dyn Sys, c: &Child<'_>) -> Result<(), Failed> {
    sys.setsid().map_err(at(Stage::Stdio, 0))?;
    match c.stdio {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let stdin = match stdin {
                Some(fd) => fd,
                None => sys.open_read(c"/dev/null").map_err(at(Stage::Stdio, 1))?,
            };
            sys.install_stdio([stdin, stdout, stderr])
                .map_err(at(Stage::Stdio, 2))?;
        }
        ChildStdio::Terminal { console } => {
            let (rows, cols) = c.process.console_size.unwrap_or((0, 0));
            let (master, slave) = sys.open_pty(rows, cols).map_err(at(Stage::Terminal, 0))?;
            sys.set_controlling_tty(slave)
                .map_err(at(Stage::Terminal, 1))?;
            sys.install_stdio([slave, slave, slave])
                .map_err(at(Stage::Terminal, 2))?;
            sys.send_fd(console, tag::TERMINAL, master)
                .map_err(at(Stage::Terminal, 3))?;
            sys.close(master);
            sys.close(slave);
        }
    }
    Ok(())
}

fn finish(sys: &dyn Sys, c: &Child<'_>) -> Result<Infallible, Failed> {
    let p = c.process;
    // After the switch: the path resolves inside the container root.
    let cwd = ensure_dir(sys, &p.cwd).map_err(at(Stage::Cwd, 0))?;
    sys.close(cwd);
    sys.chdir(&p.cwd).map_err(at(Stage::Cwd, 1))?;
    if !sys.cwd_inside_root() {
        return Err(fail(
            Stage::Cwd,
            2,
            io::Error::from_raw_os_error(libc::EPERM),
        ));
    }
    // No inherited descriptor survives into the container (CVE-2024-21626): only stdio and
    // the sync socket (close-on-exec) stay.
    let gate_fd = c.gate.map_or(c.sync, |(fd, _)| fd);
    sys.close_from_3(&[c.sync, gate_fd]);
    for (i, r) in p.rlimits.iter().enumerate() {
        sys.set_rlimit(r.resource, r.soft, r.hard)
            .map_err(at(Stage::Rlimit, i))?;
    }
    if let Some((_, gate)) = c.gate {
        sys.write_fd(c.sync, &[tag::READY])
            .map_err(at(Stage::StartGate, 0))?;
        // Blocks until `start` opens the FIFO for reading.
        sys.write_file(gate, b"0")
            .map_err(at(Stage::StartGate, 1))?;
    }
    for cap in 0..=p.last_cap.min(63) {
        if p.caps.bounding & (1 << cap) == 0 {
            sys.drop_bounding(cap).map_err(at(Stage::Capabilities, 0))?;
        }
    }
    // Without no_new_privs a filter can only be loaded while CAP_SYS_ADMIN is held.
    if !p.no_new_privileges {
        if let Some(f) = &p.seccomp {
            sys.load_seccomp(f).map_err(at(Stage::Seccomp, 0))?;
        }
    }
    sys.set_keep_caps(true).map_err(at(Stage::User, 0))?;
    sys.set_groups(&p.identity.groups)
        .map_err(at(Stage::User, 1))?;
    sys.set_gid(p.identity.gid).map_err(at(Stage::User, 2))?;
    sys.set_uid(p.identity.uid).map_err(at(Stage::User, 3))?;
    sys.set_caps(&p.caps).map_err(at(Stage::Capabilities, 1))?;
    for cap in 0..=p.last_cap.min(63) {
        if p.caps.ambient & (1 << cap) != 0 {
            sys.raise_ambient(cap).map_err(at(Stage::Capabilities, 2))?;
        }
    }
    sys.set_keep_caps(false).map_err(at(Stage::User, 4))?;
    sys.set_parent_death_signal()
        .map_err(at(Stage::Prepare, 1))?;
    sys.exit_if_orphaned(c.sync);
    sys.set_umask(p.identity.umask.unwrap_or(0o022));
    if p.no_new_privileges {
        sys.set_no_new_privs()
            .map_err(at(Stage::NoNewPrivileges, 0))?;
        if let Some(f) = &p.seccomp {
            sys.load_seccomp(f).map_err(at(Stage::Seccomp, 0))?;
        }
    }
    exec(sys, c)
}

fn exec(sys: &dyn Sys, c: &Child<'_>) -> Result<Infallible, Failed> {
    let mut denied: Option<(usize, i32)> = None;
    let mut last = 0;
    for (i, path) in c.process.candidates.iter().enumerate() {
        let e = sys.execve(path, c.argv, c.envp);
        let errno = e.raw_os_error().unwrap_or(0);
        last = errno;
        match errno {
            libc::ENOENT | libc::ENOTDIR => continue,
            libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::EPERM => {
                denied.get_or_insert((i, errno));
            }
            _ => {
                return Err(Failed {
                    report: ChildReport {
                        kind: ErrorKind::NotExecutable,
                        stage: Stage::Exec,
                        errno,
                        index: i as u32,
                    },
                })
            }
        }
    }
    Err(Failed {
        report: match denied {
            Some((i, errno)) => ChildReport {
                kind: ErrorKind::NotExecutable,
                stage: Stage::Exec,
                errno,
                index: i as u32,
            },
            None => ChildReport {
                kind: ErrorKind::CommandNotFound,
                stage: Stage::Exec,
                errno: last,
                index: u32::MAX,
            },
        },
    })
}

/// Reports `failed` to the parent and exits with docker's code for it. Never returns.
pub fn report_and_exit(sys: &dyn Sys, sync: Fd, failed: Failed) -> ! {
    let mut msg = [0u8; 1 + ChildReport::LEN];
    msg[0] = tag::ERROR;
    msg[1..].copy_from_slice(&failed.report.encode());
    let _ = sys.write_fd(sync, &msg);
    // SAFETY: _exit ends the child at once, without the parent's atexit handlers or the
    // destructors of the copied address space.
    unsafe { libc::_exit(failed.report.kind.exit_code()) }
}

#[cfg(test)]
mod tests;
