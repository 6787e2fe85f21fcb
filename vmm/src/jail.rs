//! The jail (Firecracker's jailer as the model), entered by `hull-vmm --jail DIR ...` after
//! the VM is built and before the first guest instruction:
//!
//! - root is used only for what comes before: opening /dev/kvm, the kernel, initramfs and
//!   disks (all chosen by the caller, never by the guest), creating the VM and loading the
//!   kernel, binding the vsock socket inside DIR;
//! - then the process leaves the host's mount, network (or joins the given one), IPC and UTS
//!   namespaces (the PID namespace comes from the launcher: the VMM must be its PID 1,
//!   because a process cannot move itself into a new one), makes DIR its root with
//!   `pivot_root` and detaches the host's tree, so only DIR's own entries (its sockets) are
//!   reachable by path;
//! - sets rlimits (open files, file size, processes), drops every capability (bounding and
//!   ambient sets included), becomes the per-VM uid/gid with no supplementary groups, and
//!   sets no_new_privs. The seccomp filters follow when the threads start.
//!
//! The cgroup (memory, pids, cpu) is the launcher's job: it creates it and starts the VMM in
//! it, so the limits hold from the first instruction.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where and as whom the VMM runs once jailed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailConfig {
    /// The per-VM directory that becomes `/` (its sockets live there).
    pub dir: PathBuf,
    /// The unprivileged uid (not 0, not 4294967295).
    pub uid: u32,
    /// The unprivileged gid (not 0, not 4294967295).
    pub gid: u32,
    /// Join this network namespace (e.g. a container's, to open a TAP made there) instead
    /// of a new, empty one.
    #[serde(default)]
    pub netns: Option<PathBuf>,
}

/// Open files allowed (guest connections to host sockets are bounded at 1024, plus the
/// VMM's own fds).
pub const MAX_OPEN_FILES: u64 = 2048;
/// Largest file the VMM may write (console output on its stdout, writable disks).
pub const MAX_FILE_BYTES: u64 = 1 << 40;

impl JailConfig {
    /// Checks the ids and the directory path.
    pub fn validate(&self) -> Result<()> {
        for (what, id) in [("jail-uid", self.uid), ("jail-gid", self.gid)] {
            if id == 0 || id == u32::MAX {
                return Err(Error::Config(format!(
                    "{what}: {id} is not an unprivileged id (use 1 ..= 4294967294)"
                )));
            }
        }
        if !self.dir.is_absolute() {
            return Err(Error::Config(format!(
                "jail: {} is not an absolute path",
                self.dir.display()
            )));
        }
        Ok(())
    }
}

fn check(rc: libc::c_int, what: &'static str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Os {
            what,
            source: std::io::Error::last_os_error(),
        })
    }
}

fn cstr(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Config(format!("jail: {} contains a NUL byte", path.display())))
}

/// Enters the jail described by `jail`; `threads` is how many threads the VMM will run
/// (the process limit of the per-VM uid). Must run single-threaded (before `run`).
/// Returns how long each step took.
pub fn enter(jail: &JailConfig, threads: u64) -> Result<Steps> {
    jail.validate()?;
    // SAFETY: getpid/geteuid have no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Config(
            "--jail needs root (to set up the jail)".into(),
        ));
    }
    // SAFETY: as above.
    if unsafe { libc::getpid() } != 1 {
        return Err(Error::Config(
            "--jail: hull-vmm must be PID 1 of a new PID namespace (start it with \
             clone(CLONE_NEWPID), e.g. `unshare --pid --fork`)"
                .into(),
        ));
    }
    let mut steps = Steps::start();
    enter_network_namespace(jail)?;
    steps.mark("netns");
    enter_namespaces()?;
    steps.mark("mnt_ipc_uts");
    pivot_into(&jail.dir, &mut steps)?;
    set_limits(threads)?;
    steps.mark("rlimits");
    drop_privileges(jail.uid, jail.gid)?;
    steps.mark("credentials");
    Ok(steps)
}

/// How long each step of [`enter`] took, for the start-up cost (logged at debug level by
/// hull-vmm, read by `cargo bench -p hull-vmm --bench startup`, docs/vmm.md "Benchmarks").
#[derive(Debug, Clone)]
pub struct Steps {
    last: std::time::Instant,
    /// Step name and duration, in order.
    pub taken: Vec<(&'static str, std::time::Duration)>,
}

impl Steps {
    fn start() -> Steps {
        Steps {
            last: std::time::Instant::now(),
            taken: Vec::with_capacity(10),
        }
    }

    fn mark(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.taken.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Steps {
    /// `netns=412us mnt_ipc_uts=80us ...`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, took)) in self.taken.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{step}={}us", took.as_micros())?;
        }
        Ok(())
    }
}

fn enter_network_namespace(jail: &JailConfig) -> Result<()> {
    match &jail.netns {
        Some(path) => {
            let ns = std::fs::File::open(path)
                .map_err(|e| Error::Config(format!("jail-netns {}: {e}", path.display())))?;
            // SAFETY: setns on an fd we just opened; the result is checked.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            check(rc, "joining the network namespace")?;
        }
        None => {
            // SAFETY: unshare(2) with a flag; the result is checked.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            check(rc, "unshare(CLONE_NEWNET)")?;
        }
    }
    Ok(())
}

fn enter_namespaces() -> Result<()> {
    // SAFETY: unshare(2) with flags; the process is single-threaded (CLONE_NEWNS needs it).
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) };
    check(rc, "unshare(mount, IPC, UTS)")?;
    let name = b"hull-vmm";
    // SAFETY: a valid buffer and its length.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    check(rc, "sethostname")
}

fn pivot_into(dir: &Path, steps: &mut Steps) -> Result<()> {
    let dir_c = cstr(dir)?;
    let root = c"/";
    let dot = c".";
    // SAFETY: mount/chdir/pivot_root/umount2 with valid C strings, or null pointers where
    // the kernel allows them; every result is checked.
    unsafe {
        // Nothing done from here on propagates back to the host.
        check(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ),
            "making / a slave mount",
        )?;
        steps.mark("slave");
        // pivot_root needs the new root to be a mount point.
        check(
            libc::mount(
                dir_c.as_ptr(),
                dir_c.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ),
            "bind-mounting the jail directory",
        )?;
        check(libc::chdir(dir_c.as_ptr()), "entering the jail directory")?;
        steps.mark("bind");
        // Stacks the old root under the new one at "."; detaching it leaves only the jail.
        check(
            libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int,
            "pivot_root",
        )
        .map_err(|e| match e {
            // The kernel refuses to pivot away from the initramfs (rootfs) itself.
            Error::Os { source, .. } if source.raw_os_error() == Some(libc::EINVAL) => Error::Os {
                what: "pivot_root (is / the initramfs? the jail needs the host to run \
                           from a real root file system, or chrooted into one)",
                source,
            },
            other => other,
        })?;
        steps.mark("pivot_root");
        check(
            libc::umount2(dot.as_ptr(), libc::MNT_DETACH),
            "detaching the host's root",
        )?;
        steps.mark("detach");
        check(libc::chdir(root.as_ptr()), "chdir /")?;
        check(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                std::ptr::null(),
            ),
            "remounting the jail nosuid,nodev,noexec",
        )?;
        steps.mark("remount");
    }
    Ok(())
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64, what: &'static str) -> Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: a valid rlimit struct; the result is checked.
    let rc = unsafe { libc::setrlimit(resource, &limit) };
    check(rc, what)
}

fn set_limits(threads: u64) -> Result<()> {
    set_limit(libc::RLIMIT_NOFILE, MAX_OPEN_FILES, "RLIMIT_NOFILE")?;
    set_limit(libc::RLIMIT_FSIZE, MAX_FILE_BYTES, "RLIMIT_FSIZE")?;
    // Counted per uid, and the uid is this VM's alone: no thread or process beyond these.
    set_limit(libc::RLIMIT_NPROC, threads, "RLIMIT_NPROC")?;
    set_limit(libc::RLIMIT_CORE, 0, "RLIMIT_CORE")
}

fn drop_privileges(uid: u32, gid: u32) -> Result<()> {
    // SAFETY: prctl/setgroups/setresgid/setresuid with plain integer arguments (setgroups
    // with an empty list); every result is checked.
    unsafe {
        for cap in 0..=63 {
            // Capabilities this kernel does not know fail with EINVAL: that ends the list.
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                    break;
                }
                return Err(Error::Os {
                    what: "dropping the capability bounding set",
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        check(
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            ),
            "clearing ambient capabilities",
        )?;
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0),
            "PR_SET_KEEPCAPS",
        )?;
        check(libc::setgroups(0, std::ptr::null()), "setgroups")?;
        check(libc::setresgid(gid, gid, gid), "setresgid")?;
        // From uid 0 to a non-zero uid without keepcaps: permitted and effective sets clear.
        check(libc::setresuid(uid, uid, uid), "setresuid")?;
        check(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            "PR_SET_NO_NEW_PRIVS",
        )?;
        // A credential change clears the parent-death signal: set it again, so the VMM still
        // dies with the process that started it.
        check(
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0),
            "PR_SET_PDEATHSIG",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_path_are_checked() {
        let ok = JailConfig {
            dir: "/run/hull/jail/x".into(),
            uid: 3_000_000_000,
            gid: 3_000_000_000,
            netns: None,
        };
        ok.validate().unwrap();
        for (uid, gid) in [(0, 5), (5, 0), (u32::MAX, 5), (5, u32::MAX)] {
            let bad = JailConfig {
                uid,
                gid,
                ..ok.clone()
            };
            assert!(bad.validate().is_err(), "{uid}:{gid}");
        }
        let relative = JailConfig {
            dir: "jail".into(),
            ..ok
        };
        assert!(relative
            .validate()
            .unwrap_err()
            .to_string()
            .contains("absolute"));
    }
}
