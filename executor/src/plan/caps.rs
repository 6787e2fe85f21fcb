//! Capability names to the kernel's bit numbers, and the five sets of a process.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::Error;

/// The kernel's number for a capability (linux/capability.h).
pub fn number(c: Capability) -> u32 {
    use Capability::*;
    match c {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// The five capability sets as bit masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    /// Bounding set: what the process and its children can ever hold.
    pub bounding: u64,
    /// Effective.
    pub effective: u64,
    /// Permitted.
    pub permitted: u64,
    /// Inheritable.
    pub inheritable: u64,
    /// Ambient.
    pub ambient: u64,
}

fn mask(set: &Option<Capabilities>, last_cap: u32, which: &str) -> Result<u64, Error> {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        let n = number(*c);
        if n > last_cap {
            return Err(Error::unsupported(format!(
                "capability CAP_{c} ({which} set) is not known to this kernel (last capability {last_cap})"
            )));
        }
        m |= 1 << n;
    }
    Ok(m)
}

impl CapSets {
    /// The sets of `caps` (absent: all empty, as the OCI spec reads it).
    pub fn new(caps: Option<&LinuxCapabilities>, last_cap: u32) -> Result<CapSets, Error> {
        let Some(c) = caps else {
            return Ok(CapSets::default());
        };
        let sets = CapSets {
            bounding: mask(c.bounding(), last_cap, "bounding")?,
            effective: mask(c.effective(), last_cap, "effective")?,
            permitted: mask(c.permitted(), last_cap, "permitted")?,
            inheritable: mask(c.inheritable(), last_cap, "inheritable")?,
            ambient: mask(c.ambient(), last_cap, "ambient")?,
        };
        // What the kernel would refuse, said plainly instead of as EPERM from capset.
        if sets.effective & !sets.permitted != 0 {
            return Err(Error::invalid(
                "capabilities: the effective set must be a subset of the permitted set",
            ));
        }
        if sets.ambient & !(sets.permitted & sets.inheritable) != 0 {
            return Err(Error::invalid(
                "capabilities: ambient capabilities must be both permitted and inheritable",
            ));
        }
        Ok(sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[Capability]) -> Option<Capabilities> {
        Some(names.iter().copied().collect())
    }

    #[test]
    fn sets_become_masks() {
        let mut c = LinuxCapabilities::default();
        c.set_bounding(set(&[Capability::Chown, Capability::Mknod]))
            .set_effective(set(&[Capability::Chown]))
            .set_permitted(set(&[Capability::Chown]))
            .set_inheritable(None)
            .set_ambient(None);
        let s = CapSets::new(Some(&c), 40).unwrap();
        assert_eq!(s.bounding, 1 | 1 << 27);
        assert_eq!(
            (s.effective, s.permitted, s.inheritable, s.ambient),
            (1, 1, 0, 0)
        );
        assert_eq!(CapSets::new(None, 40).unwrap(), CapSets::default());
    }

    #[test]
    fn impossible_sets_are_refused_with_reasons() {
        let mut c = LinuxCapabilities::default();
        c.set_bounding(None)
            .set_effective(set(&[Capability::SysAdmin]))
            .set_permitted(None)
            .set_inheritable(None)
            .set_ambient(None);
        assert!(CapSets::new(Some(&c), 40).is_err());
        c.set_effective(None).set_ambient(set(&[Capability::Kill]));
        assert!(CapSets::new(Some(&c), 40).is_err());
        c.set_ambient(None)
            .set_bounding(set(&[Capability::CheckpointRestore]));
        let e = CapSets::new(Some(&c), 39).unwrap_err();
        assert!(e.to_string().contains("CHECKPOINT_RESTORE"), "{e}");
    }
}
