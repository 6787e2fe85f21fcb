//! clone3(2) used as fork(2) that also returns a pidfd: how the executor starts a
//! container's init and how hull starts a jailed VMM. The pidfd, kept by the parent, is what
//! makes waiting and killing safe against PID reuse.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `struct clone_args` of clone3(2) (first version).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Where [`fork_with_pidfd`] returned.
pub enum Forked {
    /// In the child.
    Child,
    /// In the parent: the child's pid (in the caller's PID namespace) and its pidfd.
    Parent { pid: i32, pidfd: OwnedFd },
}

/// clone3 with `flags | CLONE_PIDFD`, SIGCHLD at exit, no new stack: the child continues
/// from here on a copy of the caller's memory, as after fork(2).
///
/// # Safety
/// As for fork(2) in a threaded process: in the child, use only async-signal-safe calls on
/// memory prepared before the call, take no lock, and end with exec or `_exit`.
pub unsafe fn fork_with_pidfd(flags: u64) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: a valid clone_args of the size passed, without CLONE_VM or a stack: fork-like;
    // the caller keeps the child to what the function's contract allows.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        0 => Ok(Forked::Child),
        r if r < 0 => Err(io::Error::last_os_error()),
        pid => Ok(Forked::Parent {
            pid: pid as i32,
            // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd nothing else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}
