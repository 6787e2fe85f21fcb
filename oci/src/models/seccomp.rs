//! The bundle's seccomp profile as hull's executor takes it, in both models (on the host,
//! and in the guest, where the agent runs the same executor).

/// The seccomp profile without system call names this architecture's table lacks, as runc
/// (libseccomp) ignores them: podman's default profile names e.g. `pciconfig_iobase`,
/// which x86_64 does not have. A rule left without names is dropped.
pub fn known_syscalls_only(
    mut seccomp: oci_spec::runtime::LinuxSeccomp,
) -> oci_spec::runtime::LinuxSeccomp {
    use hull_executor::seccomp::{is_foreign, number};
    if let Some(rules) = seccomp.syscalls().clone() {
        let kept = rules
            .into_iter()
            .filter_map(|mut rule| {
                let (known, unknown): (Vec<String>, Vec<String>) = rule
                    .names()
                    .iter()
                    .cloned()
                    .partition(|n| number(n).is_some() || is_foreign(n));
                if !unknown.is_empty() {
                    tracing::debug!(?unknown, "seccomp: system calls unknown here ignored");
                }
                if known.is_empty() {
                    return None;
                }
                rule.set_names(known);
                Some(rule)
            })
            .collect();
        seccomp.set_syscalls(Some(kept));
    }
    seccomp
}
