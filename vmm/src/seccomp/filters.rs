//! The allow-lists, one per thread kind. What each entry is for is said beside it; a call
//! missing here kills the VMM with a report naming it (docs/vmm.md, "Seccomp").

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr};

use crate::error::{Error, Result};

const KVMIO: u32 = 0xAE;
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);

/// The kinds of VMM thread, each with its own filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread once the VM is built: the device event loop.
    Main,
    /// A vCPU thread.
    Vcpu,
}

/// What every thread needs: memory management of the allocator, locks, the signal paths
/// (the vCPU kick and the stop signals return through rt_sigreturn; the SIGSYS report
/// writes and exits), and its own end (a vCPU closes its fd and unmaps its run area).
const COMMON: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_write,
    libc::SYS_close,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The event loop: epoll, eventfds and the vsock timerfd (read/write), block I/O
/// (preadv/pwritev/fdatasync), vsock sockets (accept, recv, non-blocking connect to
/// AF_UNIX only, shutdown, close, FIONBIO), virtio-net's TAP (readv/writev, and
/// TUNSETOFFLOAD once the driver's features are known), the socket file's removal at exit,
/// virtio-fs's vhost-user socket (sendmsg with the ring eventfds and the memory fd when
/// the driver starts the device; nothing is read from it on the loop),
/// and the vCPU kick at the end (tgkill with the pid).
const MAIN: &[i64] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_timerfd_settime,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_connect,
    libc::SYS_shutdown,
    libc::SYS_unlink,
    libc::SYS_getrandom,
    libc::SYS_getpid,
    libc::SYS_tgkill,
];

/// A vCPU: KVM_RUN (and KVM_GET_REGS to report an internal error) plus the write(2)s of
/// the devices it drives (serial output, irqfds, the exit eventfd) from COMMON.
const VCPU: &[i64] = &[];

fn arg_eq(index: u8, value: u64) -> Result<SeccompRule> {
    let cond = SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(build_error)?;
    SeccompRule::new(vec![cond]).map_err(build_error)
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::Device(format!("seccomp filter: {e}"))
}

/// The compiled filter for `kind`: the allowed calls pass, everything else traps (SIGSYS).
pub fn filter_for(kind: ThreadKind) -> Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let extra = match kind {
        ThreadKind::Main => MAIN,
        ThreadKind::Vcpu => VCPU,
    };
    for nr in COMMON.iter().chain(extra) {
        rules.insert(*nr, Vec::new());
    }
    match kind {
        ThreadKind::Main => {
            rules.insert(libc::SYS_socket, vec![arg_eq(0, libc::AF_UNIX as u64)?]);
            rules.insert(
                libc::SYS_ioctl,
                vec![
                    arg_eq(1, libc::FIONBIO)?,
                    arg_eq(1, crate::devices::virtio::net::tap::TUNSETOFFLOAD)?,
                ],
            );
        }
        ThreadKind::Vcpu => {
            rules.insert(
                libc::SYS_ioctl,
                vec![arg_eq(1, KVM_RUN())?, arg_eq(1, KVM_GET_REGS())?],
            );
        }
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(build_error)?;
    filter.try_into().map_err(build_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_ioctl_numbers_are_the_kernel_abi() {
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
    }
}
