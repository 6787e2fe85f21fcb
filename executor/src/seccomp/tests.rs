//! The filter is checked by running it: a forked child installs it and makes the calls an
//! attacker would, reporting each errno (or the signal that killed it) to the test.

use std::os::fd::{AsRawFd, OwnedFd};

use super::*;

/// One probe: the value returned by the call (`errno` negated on failure).
type Probe = fn(&Pty) -> i64;

/// A pseudo-terminal opened before the fork; the child makes it its controlling terminal.
struct Pty {
    _master: OwnedFd,
    slave: OwnedFd,
}

fn open_pty() -> Pty {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    Pty {
        _master: pty.master,
        slave: pty.slave,
    }
}

/// `raw` as the call's result: the return value, or `-errno`.
fn result(raw: libc::c_long) -> i64 {
    if raw < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        raw
    }
}

/// How the confined child ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Every probe ran; their results, in order.
    Results(Vec<i64>),
    /// Killed by this signal.
    Killed(i32),
}

/// Forks a child that becomes a session leader with `pty` as its controlling terminal,
/// installs `filters` (none: the unconfined baseline) and runs `probes`.
fn run_confined(filters: Option<&[BpfProgram]>, probes: &[Probe]) -> Outcome {
    let pty = open_pty();
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    // SAFETY: fork has no preconditions; see the child's block for what it may do.
    match unsafe { libc::fork() } {
        // SAFETY: the child makes raw system calls only (the filters were compiled before
        // the fork) and leaves with _exit; the test threads' locks are never touched.
        0 => unsafe {
            libc::setsid();
            libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCSCTTY, 0);
            if let Some(filters) = filters {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                for f in filters {
                    if seccompiler::apply_filter(f).is_err() {
                        libc::_exit(99);
                    }
                }
            }
            for probe in probes {
                let value = probe(&pty);
                libc::write(write_end.as_raw_fd(), (&value as *const i64).cast(), 8);
            }
            libc::_exit(0)
        },
        pid if pid > 0 => {
            drop(write_end);
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(read_end), &mut bytes)
                .expect("read results");
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFSIGNALED(status) {
                return Outcome::Killed(libc::WTERMSIG(status));
            }
            assert_eq!(libc::WEXITSTATUS(status), 0, "confined child failed");
            Outcome::Results(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_ne_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            )
        }
        _ => panic!("fork: {}", std::io::Error::last_os_error()),
    }
}

const EPERM: i64 = -(libc::EPERM as i64);

fn tiocsti(pty: &Pty) -> i64 {
    let byte = b'x';
    // SAFETY: TIOCSTI reads one byte from a live stack variable.
    result(unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCSTI, &byte) } as libc::c_long)
}

fn tiocsti_high_bits(pty: &Pty) -> i64 {
    let byte = b'x';
    // The kernel reads the request as an unsigned int: these upper bits are ignored by it
    // and must be ignored by the filter too.
    let request = (0xdead_beef_u64 << 32) | libc::TIOCSTI;
    // SAFETY: as above, through the raw system call.
    result(unsafe { libc::syscall(libc::SYS_ioctl, pty.slave.as_raw_fd(), request, &byte) })
}

fn tioclinux(pty: &Pty) -> i64 {
    let mut subcode = 0u8;
    // SAFETY: TIOCLINUX reads (and may write) one byte of a live stack variable.
    result(
        unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCLINUX, &mut subcode) }
            as libc::c_long,
    )
}

fn window_size(pty: &Pty) -> i64 {
    // SAFETY: winsize is plain data; TIOCGWINSZ writes it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    result(unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } as libc::c_long)
}

fn vsock_socket(_: &Pty) -> i64 {
    // SAFETY: socket(2) with integer arguments.
    result(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) } as libc::c_long)
}

fn vsock_socket_high_bits(_: &Pty) -> i64 {
    let domain = (1u64 << 32) | libc::AF_VSOCK as u64;
    // SAFETY: socket(2) through the raw system call, integer arguments.
    result(unsafe { libc::syscall(libc::SYS_socket, domain, libc::SOCK_STREAM, 0) })
}

fn vsock_socketpair(_: &Pty) -> i64 {
    let mut fds = [0; 2];
    // SAFETY: socketpair(2) writes two descriptors into a live array.
    result(
        unsafe { libc::socketpair(libc::AF_VSOCK, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) }
            as libc::c_long,
    )
}

fn unix_socket(_: &Pty) -> i64 {
    // SAFETY: socket(2) with integer arguments.
    result(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) } as libc::c_long)
}

#[cfg(target_arch = "x86_64")]
fn x32_getpid(_: &Pty) -> i64 {
    // SAFETY: getpid under its x32 number has no arguments and no effects.
    result(unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) })
}

/// socket(AF_VSOCK) through the i386 system call gate (`int 0x80`, call 359).
#[cfg(target_arch = "x86_64")]
fn i386_socket(_: &Pty) -> i64 {
    let ret: i32;
    // SAFETY: the i386 socket call takes three integer arguments in ebx, ecx, edx and
    // returns in eax; it touches no memory of ours. rbx belongs to LLVM: swapped in and
    // back out around the call.
    unsafe {
        std::arch::asm!(
            "xchg {family:r}, rbx",
            "int 0x80",
            "xchg {family:r}, rbx",
            family = inout(reg) libc::AF_VSOCK as u64 => _,
            inlateout("eax") 359 => ret,
            in("ecx") libc::SOCK_STREAM,
            in("edx") 0,
        );
    }
    ret as i64
}

#[test]
fn filter_compiles() {
    let filters = build().expect("build");
    assert_eq!(
        filters.len(),
        if cfg!(target_arch = "x86_64") { 3 } else { 2 }
    );
    assert!(filters.iter().all(|f| !f.is_empty()));
}

/// TIOCSTI on the process's own controlling terminal works without the filter (or, on a
/// kernel with `dev.tty.legacy_tiocsti = 0` and no CAP_SYS_ADMIN, fails with EIO), never
/// with EPERM; with the filter it fails with EPERM, however the request is spelled.
#[test]
fn terminal_injection_is_refused() {
    let probes: &[Probe] = &[tiocsti, tiocsti_high_bits, tioclinux, window_size];
    let Outcome::Results(open) = run_confined(None, probes) else {
        panic!("the unconfined child was killed");
    };
    assert_ne!(
        open[0], EPERM,
        "baseline TIOCSTI on our own terminal: {open:?}"
    );
    let filters = build().unwrap();
    assert_eq!(
        run_confined(Some(&filters), probes),
        Outcome::Results(vec![EPERM, EPERM, EPERM, 0]),
        "TIOCSTI, TIOCSTI with high bits, TIOCLINUX refused; TIOCGWINSZ allowed"
    );
}

#[test]
fn vsock_sockets_are_refused() {
    let probes: &[Probe] = &[
        vsock_socket,
        vsock_socket_high_bits,
        vsock_socketpair,
        unix_socket,
    ];
    let Outcome::Results(open) = run_confined(None, probes) else {
        panic!("the unconfined child was killed");
    };
    assert!(open.iter().all(|&r| r != EPERM), "baseline: {open:?}");
    let filters = build().unwrap();
    let Outcome::Results(confined) = run_confined(Some(&filters), probes) else {
        panic!("the confined child was killed");
    };
    assert_eq!(&confined[..3], &[EPERM, EPERM, EPERM], "{confined:?}");
    assert!(confined[3] >= 0, "AF_UNIX stays allowed: {confined:?}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn other_system_call_abis_do_not_get_around_the_filter() {
    // Without the filter: x32 is not built into most kernels (ENOSYS), and the i386 gate
    // reaches socket() (created, or EAFNOSUPPORT without vsock).
    let Outcome::Results(open) = run_confined(None, &[x32_getpid]) else {
        panic!("the unconfined child was killed");
    };
    assert_ne!(open[0], EPERM, "{open:?}");
    let filters = build().unwrap();
    assert_eq!(
        run_confined(Some(&filters), &[x32_getpid]),
        Outcome::Results(vec![EPERM])
    );
    assert_eq!(
        run_confined(Some(&filters), &[i386_socket]),
        Outcome::Killed(libc::SIGSYS),
        "an i386 system call kills the process"
    );
}
