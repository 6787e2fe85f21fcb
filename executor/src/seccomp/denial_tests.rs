//! The calls the filter must deny (namespaces, mount, keys, perf, other processes' memory)
//! and what it must keep allowing (fork, clone without namespace flags), each probed in a
//! forked child with and without the filter, so an EPERM is the filter's doing. Where
//! `tests` asks the BPF interpreter, these ask the kernel.

use super::tests::{default_filter, docker_caps};
use super::Filter;

const EPERM: i64 = -(libc::EPERM as i64);
const ENOSYS: i64 = -(libc::ENOSYS as i64);

/// 0 for a system call that succeeded, `-errno` for one that failed.
fn errno_result(ret: libc::c_long) -> i64 {
    if ret < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        0
    }
}

/// Runs `probe` in a forked child, with the filter installed when one is given,
/// and returns its result (0 or `-errno`). In a child, so the test process itself is
/// never confined.
fn in_child(filter: Option<&Filter>, probe: impl Fn() -> i64) -> i64 {
    // SAFETY: between fork and _exit the child only makes system calls (prctl, seccomp,
    // the probe's) on memory that was valid before the fork; it never returns.
    unsafe {
        match libc::fork() {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                if let Some(filter) = filter {
                    if install(filter).is_err() {
                        libc::_exit(255);
                    }
                }
                libc::_exit((-probe()).clamp(0, 254) as i32)
            }
            pid => {
                let mut status = 0;
                assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
                assert!(libc::WIFEXITED(status), "probe child died: {status:#x}");
                let code = libc::WEXITSTATUS(status);
                assert_ne!(code, 255, "the filter could not be installed");
                -(code as i64)
            }
        }
    }
}

/// no_new_privs and the filter, as the executor installs them.
fn install(filter: &Filter) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.program.len() as u16,
        // The instructions have the kernel's sock_filter layout (repr(C), same fields).
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with scalar arguments; seccomp copies the program, which `prog` and
    // `filter` keep alive for the call.
    let ret = unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            -1
        } else {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                filter.flags,
                &prog as *const libc::sock_fprog,
            )
        }
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A raw system call with up to five arguments, as 0 or `-errno`.
fn call(nr: libc::c_long, args: [libc::c_long; 5]) -> i64 {
    // SAFETY: the probes pass scalars or deliberately invalid pointers (1), which the
    // kernel validates; none of them makes the kernel write to our memory.
    errno_result(unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]) })
}

/// clone(2) with `flags` and SIGCHLD, fork-style; the new child exits at once.
fn clone_with(flags: libc::c_int) -> i64 {
    let flags = (flags | libc::SIGCHLD) as libc::c_long;
    // SAFETY: a fork-style clone (no new stack, no shared memory); the new child only
    // calls _exit, and the caller reaps it.
    unsafe {
        let ret = libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0);
        if ret == 0 {
            libc::_exit(0);
        }
        if ret > 0 {
            libc::waitpid(ret as libc::pid_t, std::ptr::null_mut(), 0);
        }
        errno_result(ret)
    }
}

#[test]
fn the_filter_denies_what_it_must_and_nothing_else() {
    // The default profile for a container with docker's default capabilities.
    let filter = default_filter(&docker_caps());
    // Calls whose result without the filter does not depend on privileges and is never
    // EPERM (bad pointers make mount, add_key and perf_event_open fail with EFAULT
    // before any permission check), so an EPERM under the filter is the filter's doing.
    let bad = 1;
    let denied: [(&str, libc::c_long, [libc::c_long; 5]); 6] = [
        (
            "unshare(CLONE_NEWUSER)",
            libc::SYS_unshare,
            [libc::CLONE_NEWUSER as _, 0, 0, 0, 0],
        ),
        ("mount", libc::SYS_mount, [bad, bad, bad, 0, 0]),
        ("add_key", libc::SYS_add_key, [bad, bad, 0, 0, 0]),
        (
            "perf_event_open",
            libc::SYS_perf_event_open,
            [bad, 0, -1, -1, 0],
        ),
        ("setns", libc::SYS_setns, [-1, 0, 0, 0, 0]),
        // KEYCTL_GET_KEYRING_ID of the thread keyring, without creating it.
        ("keyctl", libc::SYS_keyctl, [0, -1, 0, 0, 0]),
    ];
    for (name, nr, args) in denied {
        let without = in_child(None, || call(nr, args));
        assert_ne!(
            without, EPERM,
            "{name}: EPERM even unfiltered, the probe proves nothing"
        );
        assert_eq!(in_child(Some(&filter), || call(nr, args)), EPERM, "{name}");
    }
    // Creating a user namespace works unfiltered, so the clone probe is meaningful too;
    // under the filter every namespace flag is refused, however it is combined.
    assert_eq!(in_child(None, || clone_with(libc::CLONE_NEWUSER)), 0);
    for flag in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
    ] {
        let result = in_child(Some(&filter), || clone_with(flag | libc::CLONE_FILES));
        assert_eq!(result, EPERM, "clone with namespace flag {flag:#x}");
    }
    // clone3, whose flags a filter cannot read, fails with ENOSYS so that libc falls
    // back to clone; unfiltered, the same call fails on its bad size instead.
    assert_ne!(in_child(None, || call(libc::SYS_clone3, [0; 5])), ENOSYS);
    assert_eq!(
        in_child(Some(&filter), || call(libc::SYS_clone3, [0; 5])),
        ENOSYS
    );
    // What a container needs keeps working: fork, clone without namespace flags,
    // ordinary calls.
    assert_eq!(in_child(Some(&filter), || clone_with(0)), 0, "fork");
    let threads_like = libc::CLONE_FILES | libc::CLONE_FS;
    assert_eq!(in_child(Some(&filter), || clone_with(threads_like)), 0);
    assert_eq!(
        in_child(Some(&filter), || call(libc::SYS_getppid, [0; 5])),
        0
    );
}
