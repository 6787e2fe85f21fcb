//! The syscall seam: every system call the container's child process makes goes through
//! [`Sys`], so the child's sequence (`init`) is tested without root against a recorder
//! ([`fake`]), and the real implementation ([`linux::Linux`]) stays a thin, flat list of
//! calls.
//!
//! Rules for implementations used in the child: no allocation, no locks (the guest agent is
//! multithreaded and its child is a copy made by a raw clone), and no panics. Everything
//! they need arrives as C strings and descriptors prepared before the clone.

pub mod linux;

#[cfg(test)]
pub mod fake;

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

use crate::plan::caps::CapSets;
use crate::plan::mounts::Param;
use crate::seccomp::Filter;

/// A descriptor opened by [`Sys`] (the child closes it with [`Sys::close`]).
pub type Fd = RawFd;

/// Result of one call: the error is errno.
pub type Res<T = ()> = Result<T, io::Error>;

/// The system calls of the child, one method per operation.
pub trait Sys {
    /// Parent-death signal, default signal dispositions and mask, umask 0.
    fn prepare_child(&self) -> Res;
    /// Blocks until one byte arrives on `fd` (the parent's go-ahead); EOF is an error.
    fn read_byte(&self, fd: Fd) -> Res<u8>;
    /// Writes all of `data` in one call (a report or a cgroup join).
    fn write_fd(&self, fd: Fd, data: &[u8]) -> Res;
    /// Closes a descriptor.
    fn close(&self, fd: Fd);

    /// setns(2).
    fn setns(&self, fd: Fd, flag: u64) -> Res;
    /// unshare(2).
    fn unshare(&self, flags: u64) -> Res;
    /// Becomes root (uid and gid 0) of a new user namespace whose maps are written.
    fn become_ns_root(&self) -> Res;

    /// mount(2) for the root filesystem's own steps (propagation, tmpfs, overlay, self-bind).
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Res;
    /// mkdir(2) with an absolute path (outside the container root, before the switch).
    fn mkdir(&self, path: &CStr, mode: u32) -> Res;
    /// chdir into `root`, pivot_root(".", "."), detach the old root, chdir "/".
    fn pivot_root(&self, root: &CStr) -> Res;

    /// openat2 of an absolute path inside the current root (RESOLVE_IN_ROOT,
    /// RESOLVE_NO_MAGICLINKS): symlinks and `..` stay inside.
    fn open_in_root(&self, path: &CStr, flags: i32) -> Res<Fd>;
    /// openat(2) of one name in `dir`, never following a symlink (O_NOFOLLOW).
    fn open_at(&self, dir: Fd, name: &CStr, flags: i32) -> Res<Fd>;
    /// mkdirat(2).
    fn mkdir_at(&self, dir: Fd, name: &CStr, mode: u32) -> Res;
    /// Creates an empty regular file (O_CREAT|O_EXCL|O_NOFOLLOW) in `dir`.
    fn create_file_at(&self, dir: Fd, name: &CStr, mode: u32) -> Res;
    /// mknodat(2).
    fn mknod_at(&self, dir: Fd, name: &CStr, mode: u32, dev: u64) -> Res;
    /// fchownat(2) without following a symlink.
    fn chown_at(&self, dir: Fd, name: &CStr, uid: u32, gid: u32) -> Res;
    /// symlinkat(2).
    fn symlink_at(&self, target: &CStr, dir: Fd, name: &CStr) -> Res;
    /// unlinkat(2) of a non-directory.
    fn unlink_at(&self, dir: Fd, name: &CStr) -> Res;
    /// readlinkat(2) into `buf`; EINVAL when `name` is not a symlink.
    fn readlink_at(&self, dir: Fd, name: &CStr, buf: &mut [u8]) -> Res<usize>;
    /// Whether `fd` (O_PATH) is a directory.
    fn is_dir(&self, fd: Fd) -> Res<bool>;
    /// Whether `fd` (O_PATH) is the null device (character device 1:3).
    fn is_dev_null(&self, fd: Fd) -> Res<bool>;

    /// A new, detached filesystem mount: fsopen, fsconfig per parameter, fsmount.
    fn fs_mount(
        &self,
        fstype: &CStr,
        source: Option<&CStr>,
        params: &[Param],
        attrs: u64,
    ) -> Res<Fd>;
    /// open_tree(OPEN_TREE_CLONE) of the mount at `fd`: a detached copy.
    fn clone_tree(&self, fd: Fd, recursive: bool) -> Res<Fd>;
    /// The same of an absolute path in the current root.
    fn clone_path(&self, path: &CStr, recursive: bool) -> Res<Fd>;
    /// mount_setattr(2) on a mount (and with `recursive`, the tree below it).
    fn set_mount_attrs(
        &self,
        mount: Fd,
        set: u64,
        clear: u64,
        propagation: u64,
        recursive: bool,
    ) -> Res;
    /// move_mount(2) of a detached mount onto the file or directory `target`.
    fn move_mount(&self, mount: Fd, target: Fd) -> Res;

    /// sethostname(2).
    fn set_hostname(&self, name: &CStr) -> Res;
    /// setdomainname(2).
    fn set_domainname(&self, name: &CStr) -> Res;
    /// Brings `lo` up in the current network namespace.
    fn loopback_up(&self) -> Res;
    /// Writes `data` to an existing file (a sysctl, oom_score_adj).
    fn write_file(&self, path: &CStr, data: &[u8]) -> Res;

    /// setsid(2).
    fn setsid(&self) -> Res;
    /// Creates a pty from /dev/ptmx of the current root; returns (master, slave).
    fn open_pty(&self, rows: u16, cols: u16) -> Res<(Fd, Fd)>;
    /// Makes `fd` the controlling terminal.
    fn set_controlling_tty(&self, fd: Fd) -> Res;
    /// Sends `fd` over the unix socket `sock` with a one-byte tag.
    fn send_fd(&self, sock: Fd, tag: u8, fd: Fd) -> Res;
    /// Opens a file (e.g. /dev/null) read-only.
    fn open_read(&self, path: &CStr) -> Res<Fd>;
    /// Moves `fds` onto 0, 1, 2 (safe when they overlap).
    fn install_stdio(&self, fds: [Fd; 3]) -> Res;

    /// chdir(2).
    fn chdir(&self, path: &CStr) -> Res;
    /// Whether the working directory is inside the current root (getcwd gives a path).
    fn cwd_inside_root(&self) -> bool;
    /// Closes every descriptor from 3 up except `keep`.
    fn close_from_3(&self, keep: &[Fd]);

    /// setrlimit(2).
    fn set_rlimit(&self, resource: u32, soft: u64, hard: u64) -> Res;
    /// Drops one capability from the bounding set.
    fn drop_bounding(&self, cap: u32) -> Res;
    /// PR_SET_KEEPCAPS.
    fn set_keep_caps(&self, keep: bool) -> Res;
    /// setgroups(2).
    fn set_groups(&self, groups: &[u32]) -> Res;
    /// setresgid(2) to one id.
    fn set_gid(&self, gid: u32) -> Res;
    /// setresuid(2) to one id.
    fn set_uid(&self, uid: u32) -> Res;
    /// capset(2) of effective, permitted and inheritable.
    fn set_caps(&self, caps: &CapSets) -> Res;
    /// Raises one ambient capability.
    fn raise_ambient(&self, cap: u32) -> Res;
    /// umask(2).
    fn set_umask(&self, mask: u32);
    /// PR_SET_NO_NEW_PRIVS.
    fn set_no_new_privs(&self) -> Res;
    /// PR_SET_PDEATHSIG again (a credential change clears it).
    fn set_parent_death_signal(&self) -> Res;
    /// When the process dies with its parent: leaves at once, silently, if the parent is
    /// already gone (its end of `sync` closed), since the death signal just set would then
    /// never come and nobody would know about this process.
    fn exit_if_orphaned(&self, sync: Fd);
    /// seccomp(SECCOMP_SET_MODE_FILTER).
    fn load_seccomp(&self, filter: &Filter) -> Res;

    /// execve(2); returns only on failure.
    fn execve(
        &self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> io::Error;
}
