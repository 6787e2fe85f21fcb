//! What confines a container process besides the VM: the capability set, no_new_privs and
//! a seccomp filter. Everything here is computed in the agent before the child is created;
//! the child only applies it with raw syscalls.

use std::str::FromStr;

use anyhow::{anyhow, Context, Result};
use hull_executor::seccomp::Filter;

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

/// Compiles the default seccomp profile for a process with these capabilities: the same
/// policy the process backend installs on the host, so a container is confined alike in
/// both models.
pub fn default_seccomp(caps: &[String]) -> Result<Filter> {
    use hull_executor::seccomp::profile::{resolve, Profile, Target};
    let caps: std::collections::BTreeSet<String> = caps.iter().cloned().collect();
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut v = kernel
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok());
    let target = Target {
        capabilities: &caps,
        kernel: (v.next().unwrap_or(0), v.next().unwrap_or(0)),
    };
    let oci = resolve(&Profile::default_profile(), &target).context("seccomp profile")?;
    hull_executor::seccomp::compile(&oci).context("build seccomp filter")
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
        let filter = default_seccomp(&["CAP_CHOWN".into()]).unwrap();
        assert!(filter.program.len() > 100);
    }
}
