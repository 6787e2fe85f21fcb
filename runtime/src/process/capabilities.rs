//! Capabilities: docker's default set, nothing more.
//!
//! The bounding set is cut down to the default set (so nothing, not even a setuid binary,
//! can gain more), inheritable and ambient sets are emptied (CVE-2022-24769), and a root
//! process keeps exactly the default set as permitted and effective. A non-root user ends
//! up with no effective capabilities, because the kernel clears them on setuid.

use caps::{CapSet, Capability, CapsHashSet};

/// Docker's default capabilities.
pub const DEFAULT: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// The capability set a container process keeps.
pub fn container_set() -> CapsHashSet {
    DEFAULT.iter().copied().collect()
}

/// Drops every capability outside `keep` from the bounding set and empties the
/// inheritable and ambient sets. Call while still privileged (needs CAP_SETPCAP), before
/// switching user.
pub fn limit_bounding(keep: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
    for cap in caps::all() {
        if keep.contains(&cap) {
            continue;
        }
        if let Err(e) = caps::drop(None, CapSet::Bounding, cap) {
            // Capabilities newer than the running kernel do not exist: nothing to drop.
            if cap.index() <= last_cap() {
                return Err(e);
            }
        }
    }
    caps::clear(None, CapSet::Inheritable)?;
    caps::clear(None, CapSet::Ambient)?;
    Ok(())
}

/// Sets effective and permitted to `keep` (for a process that stays uid 0).
pub fn keep_only(keep: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
    caps::set(None, CapSet::Effective, keep)?;
    caps::set(None, CapSet::Permitted, keep)?;
    Ok(())
}

fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}
