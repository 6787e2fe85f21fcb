//! Seccomp filters per thread kind (seccompiler), installed by each thread on itself before
//! the guest runs: the main thread (the event loop, once setup is over) and each vCPU
//! thread. A thread allows only the system calls (and, for `ioctl` and `socket`, the
//! argument values) its work needs; anything else raises SIGSYS (`SECCOMP_RET_TRAP`), whose
//! handler writes one line naming the thread and the call to stderr and ends the VMM with
//! exit code 108 (as Firecracker does). hull reads that line from the VMM's log.

mod filters;
mod names;

use std::cell::Cell;
use std::fmt::Write as _;

pub use filters::{filter_for, ThreadKind};
pub use names::syscall_name;

use crate::error::{Error, Result};

/// Exit code of a VMM killed by its seccomp filter.
pub const EXIT_SECCOMP: i32 = 108;

thread_local! {
    /// This thread's kind and index, for the violation report. `const`: the SIGSYS handler
    /// reads it, and a const thread-local needs no lazy initialisation.
    static THREAD: Cell<(ThreadKind, u8)> = const { Cell::new((ThreadKind::Main, 0)) };
}

/// Installs the filter for `kind` on the calling thread (and sets no_new_privs, which the
/// filter needs). `index` numbers vCPUs in the report.
pub fn confine_current_thread(kind: ThreadKind, index: u8) -> Result<()> {
    THREAD.with(|t| t.set((kind, index)));
    let program = filter_for(kind)?;
    seccompiler::apply_filter(&program).map_err(|e| Error::Os {
        what: "installing the seccomp filter",
        source: std::io::Error::other(e.to_string()),
    })
}

/// Installs the SIGSYS handler that reports a violation and ends the process.
pub fn install_violation_handler() -> Result<()> {
    vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, sigsys_handler).map_err(|e| {
        Error::Os {
            what: "installing the SIGSYS handler",
            source: std::io::Error::from_raw_os_error(e.errno()),
        }
    })
}

/// A fixed buffer `core::fmt` can write into without allocating (signal-handler safe).
struct StackLine {
    buf: [u8; 256],
    len: usize,
}

impl std::fmt::Write for StackLine {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The violation report (also used by the tests): thread, call name and number, and the
/// request number of an ioctl or the domain of a socket.
fn report_line(kind: ThreadKind, index: u8, nr: i64, arg0: u64, arg1: u64) -> StackLine {
    let mut line = StackLine {
        buf: [0; 256],
        len: 0,
    };
    let thread = match kind {
        ThreadKind::Main => "main (event loop)",
        ThreadKind::Vcpu => "vcpu",
    };
    let _ = write!(line, "hull-vmm: seccomp violation: thread {thread}");
    if kind == ThreadKind::Vcpu {
        let _ = write!(line, " {index}");
    }
    let _ = write!(
        line,
        " made the forbidden system call {} ({nr})",
        syscall_name(nr)
    );
    if nr == libc::SYS_ioctl {
        let _ = write!(line, " with request {arg1:#x}");
    } else if nr == libc::SYS_socket {
        let _ = write!(line, " with domain {arg0}");
    }
    let _ = writeln!(line, "; the VMM is stopped (exit {EXIT_SECCOMP})");
    line
}

extern "C" fn sigsys_handler(_: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SIGSYS: its _sigsys member holds the
    // system call number at offset 24 on x86_64 (after si_signo, si_errno, si_code, padding
    // and _call_addr).
    let nr = unsafe { info.cast::<u8>().add(24).cast::<i32>().read_unaligned() };
    // SAFETY: with SA_SIGINFO the third argument is the interrupted thread's ucontext; its
    // RDI and RSI hold the system call's first two arguments.
    let (arg0, arg1) = unsafe {
        let uc = &*ctx.cast::<libc::ucontext_t>();
        (
            uc.uc_mcontext.gregs[libc::REG_RDI as usize] as u64,
            uc.uc_mcontext.gregs[libc::REG_RSI as usize] as u64,
        )
    };
    let (kind, index) = THREAD.with(|t| t.get());
    let line = report_line(kind, index, i64::from(nr), arg0, arg1);
    // SAFETY: write(2) and _exit(2) are async-signal-safe and allowed by every filter.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
        libc::_exit(EXIT_SECCOMP);
    }
}

/// What `HULL_VMM_SECCOMP_TEST` asks for: a thread kind that, right after confining itself,
/// makes a forbidden call (`socket(AF_INET, ...)`), so tests can watch a violation end the
/// VMM. Test-only; a forbidden call is what an exploited device would make.
pub fn test_trigger() -> Option<ThreadKind> {
    match std::env::var("HULL_VMM_SECCOMP_TEST").ok()?.as_str() {
        "main" => Some(ThreadKind::Main),
        "vcpu" => Some(ThreadKind::Vcpu),
        _ => None,
    }
}

/// Makes the forbidden call of [`test_trigger`] if it names `kind`.
pub fn maybe_trigger(trigger: Option<ThreadKind>, kind: ThreadKind) {
    if trigger == Some(kind) {
        // SAFETY: a plain socket(2) call; if it were allowed, the fd is closed at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        if fd >= 0 {
            // SAFETY: closing the fd just created.
            unsafe { libc::close(fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(l: StackLine) -> String {
        String::from_utf8(l.buf[..l.len].to_vec()).unwrap()
    }

    #[test]
    fn report_names_thread_call_and_ioctl() {
        let l = text(report_line(ThreadKind::Vcpu, 1, libc::SYS_ioctl, 9, 0xae41));
        assert_eq!(
            l,
            "hull-vmm: seccomp violation: thread vcpu 1 made the forbidden system call ioctl \
             (16) with request 0xae41; the VMM is stopped (exit 108)\n"
        );
        let l = text(report_line(ThreadKind::Main, 0, libc::SYS_socket, 2, 1));
        assert!(
            l.contains(
                "thread main (event loop) made the forbidden system call socket (41) with domain 2"
            ),
            "{l}"
        );
    }

    /// virtio-net sets the TAP's offloads from the event loop: the filter lets that ioctl
    /// through (it fails here with ENOTTY, /dev/null being no TAP) instead of trapping.
    #[test]
    fn the_event_loop_may_set_tap_offloads() {
        let not_a_tap = std::fs::File::open("/dev/null").unwrap();
        let errno = std::thread::spawn(move || {
            confine_current_thread(ThreadKind::Main, 0).unwrap();
            // SAFETY: an ioctl with an integer argument on an fd we own.
            let rc = unsafe {
                libc::ioctl(
                    std::os::fd::AsRawFd::as_raw_fd(&not_a_tap),
                    crate::devices::virtio::net::tap::TUNSETOFFLOAD,
                    0,
                )
            };
            (rc, std::io::Error::last_os_error().raw_os_error())
        })
        .join()
        .unwrap();
        assert_eq!(errno, (-1, Some(libc::ENOTTY)));
    }

    #[test]
    fn every_filter_compiles() {
        for kind in [ThreadKind::Main, ThreadKind::Vcpu] {
            assert!(!filter_for(kind).unwrap().is_empty());
        }
    }
}
