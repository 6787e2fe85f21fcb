//! The namespaces a container gets, and joining them for `exec`.
//!
//! The init process is forked straight into new mount, PID, UTS, IPC and network
//! namespaces; it joins its cgroups and only then unshares the cgroup namespace, so that
//! its own cgroup becomes the root of the cgroup tree it sees.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sched::CloneFlags;

/// Namespaces created by the fork of the init process.
pub const AT_FORK: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET;

/// Unshares the cgroup namespace (after joining the container's cgroups).
pub fn unshare_cgroup() -> io::Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(io::Error::from)
}

/// Makes the calling process's future children start in the PID namespace of the process
/// behind `pidfd` (setns with CLONE_NEWPID changes only the namespace for children).
pub fn enter_pid_namespace_for_children(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    nix::sched::setns(pidfd, CloneFlags::CLONE_NEWPID).map_err(io::Error::from)
}

/// Joins the mount, UTS, IPC, network and cgroup namespaces of the process behind `pidfd`
/// in one atomic step. Root and working directory become the container's root.
pub fn join_all_but_pid(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP;
    nix::sched::setns(pidfd, flags).map_err(io::Error::from)
}

/// `struct ifreq` restricted to the flags member (the kernel reads 40 bytes).
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Brings the loopback interface of the current network namespace up; a new network
/// namespace has `lo` down and nothing else.
pub fn loopback_up() -> io::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of our ifreq-sized buffer.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads our ifreq-sized buffer.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
