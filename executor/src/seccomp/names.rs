//! System call names: x86_64 numbers, and the names that exist only on other architectures
//! (profiles such as docker's list them for every architecture they cover).

use super::x86_64::SYSCALLS;

/// The x86_64 number of `name`.
pub fn number(name: &str) -> Option<u32> {
    SYSCALLS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| SYSCALLS[i].1)
}

/// Names of 32-bit, compat and other architectures' system calls, which an x86_64 filter
/// skips. Anything neither here nor in the x86_64 table is a typo or an invention.
const FOREIGN: &[&str] = &[
    "_llseek",
    "_newselect",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "bdflush",
    "breakpoint",
    "cacheflush",
    "chown32",
    "clock_adjtime64",
    "clock_getres_time64",
    "clock_gettime64",
    "clock_nanosleep_time64",
    "clock_settime64",
    "fadvise64_64",
    "fchown32",
    "fcntl64",
    "fstat64",
    "fstatat64",
    "fstatfs64",
    "ftruncate64",
    "futex_time64",
    "getegid32",
    "geteuid32",
    "getgid32",
    "getgroups32",
    "getresgid32",
    "getresuid32",
    "getuid32",
    "io_pgetevents_time64",
    "ipc",
    "lchown32",
    "lstat64",
    "mmap2",
    "mq_timedreceive_time64",
    "mq_timedsend_time64",
    "multiplexer",
    "nice",
    "oldfstat",
    "oldlstat",
    "oldolduname",
    "oldstat",
    "olduname",
    "ppoll_time64",
    "pselect6_time64",
    "readdir",
    "recv",
    "recvmmsg_time64",
    "riscv_flush_icache",
    "riscv_hwprobe",
    "rt_sigtimedwait_time64",
    "rtas",
    "s390_guarded_storage",
    "s390_pci_mmio_read",
    "s390_pci_mmio_write",
    "s390_runtime_instr",
    "s390_sthyi",
    "sched_rr_get_interval_time64",
    "semtimedop_time64",
    "send",
    "sendfile64",
    "set_tls",
    "setfsgid32",
    "setfsuid32",
    "setgid32",
    "setgroups32",
    "setregid32",
    "setresgid32",
    "setresuid32",
    "setreuid32",
    "setuid32",
    "sgetmask",
    "sigaction",
    "signal",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "socketcall",
    "spu_create",
    "spu_run",
    "ssetmask",
    "stat64",
    "statfs64",
    "stime",
    "subpage_prot",
    "swapcontext",
    "switch_endian",
    "sync_file_range2",
    "sys_debug_setcontext",
    "timer_gettime64",
    "timer_settime64",
    "timerfd_gettime64",
    "timerfd_settime64",
    "truncate64",
    "ugetrlimit",
    "umount",
    "usr26",
    "usr32",
    "utimensat_time64",
    "vm86",
    "vm86old",
    "waitpid",
];

/// Whether `name` is a system call of another architecture only.
pub fn is_foreign(name: &str) -> bool {
    FOREIGN.binary_search(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_disjoint() {
        assert!(SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(FOREIGN.windows(2).all(|w| w[0] < w[1]));
        for f in FOREIGN {
            assert_eq!(number(f), None, "{f} is an x86_64 system call");
        }
    }

    #[test]
    fn numbers_match_the_kernel_abi() {
        assert_eq!(number("read"), Some(0));
        assert_eq!(number("clone3"), Some(libc::SYS_clone3 as u32));
        assert_eq!(number("mount"), Some(libc::SYS_mount as u32));
        assert_eq!(number("futex_wake"), Some(454));
        assert_eq!(number("no_such_call"), None);
        assert!(is_foreign("socketcall"));
    }
}
