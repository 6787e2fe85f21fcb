//! What confines a container process besides the VM: the capability set, no_new_privs and
//! a seccomp filter. Everything here is computed in the agent before the child is created;
//! the child only applies it with raw syscalls.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{anyhow, Context, Result};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Bit mask of capabilities to keep, from names like `CAP_CHOWN` (or `chown`).
pub fn capability_mask(names: &[String]) -> Result<u64> {
    let mut mask = 0u64;
    for name in names {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let cap = caps::Capability::from_str(&full)
            .map_err(|_| anyhow!("unknown capability {name:?}"))?;
        mask |= 1u64 << cap.index();
    }
    Ok(mask)
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// Syscalls a container never needs and that widen the guest kernel's attack surface; they
/// fail with EPERM (the same policy idea as Docker's default profile, as a deny list).
const DENIED_SYSCALLS: &[i64] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_init_module,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mount,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_ptrace,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_uselib,
    libc::SYS_vhangup,
];

/// Compiles the default seccomp filter.
pub fn default_seccomp() -> Result<BpfProgram> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        DENIED_SYSCALLS.iter().map(|nr| (*nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )
    .context("build seccomp filter")?;
    BpfProgram::try_from(filter).context("compile seccomp filter")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_map_to_bits() {
        let m = capability_mask(&["CAP_CHOWN".into(), "net_bind_service".into()]).unwrap();
        assert_eq!(m, (1 << 0) | (1 << 10));
        assert!(capability_mask(&["CAP_NOPE".into()]).is_err());
    }

    #[test]
    fn seccomp_filter_compiles() {
        assert!(!default_seccomp().unwrap().is_empty());
    }
}
