//! A docker-like default seccomp filter, as a deny list: system calls that manage the
//! host (mounts, modules, reboot, clock, swap, keyrings, kexec...), that escape or create
//! namespaces, or that are common kernel attack surface (bpf, perf_event_open,
//! userfaultfd, io_uring) fail with EPERM; `clone3` fails with ENOSYS so that libc falls
//! back to `clone`, whose namespace flags the filter can inspect.
//!
//! Argument rules close what the namespaces do not:
//! - `ioctl(TIOCSTI)` (push bytes into a terminal's input: keystrokes typed into whatever
//!   shell reads that terminal next) and `ioctl(TIOCLINUX)` (the Linux console's selection
//!   and paste, the same injection on a VT) fail with EPERM, as in docker's profile;
//! - `socket(AF_VSOCK)` and `socketpair(AF_VSOCK)` fail with EPERM: vsock has no network
//!   namespace, so in process mode it reaches the host's (or its hypervisor's) vsock
//!   ports, and in a microVM it is the channel to the guest agent.
//!
//! The compared arguments (`int` domain, `unsigned int` ioctl request) are matched on their
//! low 32 bits, which is all the kernel reads: setting the upper half of the register does
//! not slip past the rule. Other system call ABIs cannot route around the list either:
//! seccompiler kills a process that makes a call of another architecture (i386 `int 0x80`,
//! whose `socketcall` would otherwise reach `socket`), and x32 calls (numbers with bit 30
//! set, same architecture) fail with EPERM in a filter of their own.
//!
//! Built with `seccompiler` (the BPF compiler of Firecracker). This one policy serves both
//! isolation models: the process backend installs it on the host, the guest agent inside
//! the microVM, so the same flags confine a container alike in either.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Errors building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The filter could not be compiled.
    #[error("building the seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("installing the seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
}

/// System calls refused with EPERM whatever their arguments.
const DENIED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_uselib,
    libc::SYS_userfaultfd,
    libc::SYS_ustat,
    libc::SYS_vhangup,
];

/// clone(2) flags that create namespaces: refused in `clone` calls.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// `ioctl` requests refused (arg 1).
const DENIED_IOCTLS: &[u64] = &[libc::TIOCSTI, libc::TIOCLINUX];

/// Address families refused to `socket` and `socketpair` (arg 0).
const DENIED_FAMILIES: &[libc::c_int] = &[libc::AF_VSOCK];

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// A rule matching calls whose argument `arg` has `value` in its low 32 bits.
fn low32_is(arg: u8, value: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        value,
    )?])
}

/// Compiles the filters: the EPERM deny list, ENOSYS for clone3, EPERM for x32 calls.
pub fn build() -> Result<Vec<BpfProgram>, SeccompError> {
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    let ioctls = DENIED_IOCTLS
        .iter()
        .map(|&request| low32_is(1, request))
        .collect::<Result<Vec<_>, _>>()?;
    eperm.insert(libc::SYS_ioctl, ioctls);
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        let families = DENIED_FAMILIES
            .iter()
            .map(|&family| low32_is(0, family as u64))
            .collect::<Result<Vec<_>, _>>()?;
        eperm.insert(nr, families);
    }
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag as u64),
                flag as u64,
            )?;
            SeccompRule::new(vec![cond])
        })
        .collect::<Result<Vec<_>, _>>()?;
    eperm.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        eperm,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )?;
    let no_clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )?;
    let mut filters = vec![deny.try_into()?, no_clone3.try_into()?];
    filters.extend(no_x32());
    Ok(filters)
}

/// x32 system calls (x86_64 architecture, number | 0x4000_0000) fail with EPERM: on a
/// kernel built with the x32 ABI they would otherwise reach every call of the deny list
/// under another number. seccompiler matches exact numbers only, so this is six
/// instructions written out.
#[cfg(target_arch = "x86_64")]
fn no_x32() -> Option<BpfProgram> {
    use seccompiler::sock_filter;
    // Classic BPF opcodes (linux/bpf_common.h).
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // struct seccomp_data { int nr; __u32 arch; ... }
    const OFFSET_NR: u32 = 0;
    const OFFSET_ARCH: u32 = 4;
    let op = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    Some(vec![
        op(LD_W_ABS, OFFSET_ARCH, 0, 0),
        // Another architecture: not this filter's business (the others kill it).
        op(JEQ_K, AUDIT_ARCH_X86_64, 0, 3),
        op(LD_W_ABS, OFFSET_NR, 0, 0),
        op(JGE_K, X32_SYSCALL_BIT, 0, 1),
        op(RET_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32, 0, 0),
        op(RET_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ])
}

#[cfg(not(target_arch = "x86_64"))]
fn no_x32() -> Option<BpfProgram> {
    None
}

/// Installs the filters on the calling thread. Requires no_new_privs (or CAP_SYS_ADMIN).
pub fn install(filters: &[BpfProgram]) -> Result<(), SeccompError> {
    for f in filters {
        seccompiler::apply_filter(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
