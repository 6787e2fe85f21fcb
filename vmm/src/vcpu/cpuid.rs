//! Per-vCPU CPUID: KVM_GET_SUPPORTED_CPUID with the topology and identity leaves patched.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_AMD_SIZE: u32 = 0x8000_0008;
const LEAF_AMD_TOPOLOGY: u32 = 0x8000_001e;

const ECX_HYPERVISOR: u32 = 1 << 31;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const EDX_HTT: u32 = 1 << 28;

/// Bits needed to number `n` items (ceil(log2(n))).
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn patch_topology_leaf(entry: &mut kvm_cpuid_entry2, apic_id: u32, cpus: u32) {
    // One thread per core, `cpus` cores in one package.
    match entry.index {
        0 => {
            entry.eax = 0;
            entry.ebx = 1;
            entry.ecx = (1 << 8) | entry.index; // level type 1: SMT
        }
        1 => {
            entry.eax = bits_for(cpus);
            entry.ebx = cpus;
            entry.ecx = (2 << 8) | entry.index; // level type 2: core
        }
        _ => {
            entry.eax = 0;
            entry.ebx = 0;
            entry.ecx = entry.index; // level type 0: invalid, ends enumeration
        }
    }
    entry.edx = apic_id;
}

/// Patches `cpuid` (a copy of the supported list) for vCPU `index` of `cpus`.
/// `tsc_deadline`: KVM emulates the LAPIC TSC-deadline timer (KVM_CAP_TSC_DEADLINE_TIMER);
/// KVM_GET_SUPPORTED_CPUID leaves that bit to the VMM. With it Linux skips the LAPIC timer
/// calibration (slow, and unreliable under nested emulation).
pub fn patch_cpuid(cpuid: &mut CpuId, index: u8, cpus: u8, tsc_deadline: bool) {
    let apic_id = u32::from(index);
    let cpus = u32::from(cpus);
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                entry.ebx = (apic_id << 24) | (cpus << 16) | (8 << 8) | (entry.ebx & 0xff);
                entry.ecx |= ECX_HYPERVISOR;
                if tsc_deadline {
                    entry.ecx |= ECX_TSC_DEADLINE;
                }
                if cpus > 1 {
                    entry.edx |= EDX_HTT;
                } else {
                    entry.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE => {
                let level = (entry.eax >> 5) & 0x7;
                let sharing = if level >= 3 { cpus - 1 } else { 0 };
                entry.eax = (entry.eax & 0x3fff) | (sharing << 14) | ((cpus - 1) << 26);
            }
            LEAF_PMU => {
                // No virtual PMU: hides perf counters the hypervisor may not virtualise.
                entry.eax = 0;
                entry.ebx = 0;
                entry.ecx = 0;
                entry.edx = 0;
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => patch_topology_leaf(entry, apic_id, cpus),
            LEAF_AMD_SIZE => {
                entry.ecx = (entry.ecx & !0xf0ff) | (bits_for(cpus) << 12) | (cpus - 1);
            }
            LEAF_AMD_TOPOLOGY => {
                entry.eax = apic_id;
                entry.ebx = apic_id & 0xff; // compute unit id, one thread per unit
                entry.ecx = 0; // node 0, one node
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    #[test]
    fn apic_id_and_topology_are_per_vcpu() {
        let base = CpuId::from_entries(&[
            entry(1, 0),
            entry(0xb, 0),
            entry(0xb, 1),
            entry(0xb, 2),
            entry(0x8000_0008, 0),
        ])
        .unwrap();
        let mut c = base.clone();
        patch_cpuid(&mut c, 1, 2, true);
        let e = c.as_slice();
        assert_eq!(e[0].ebx >> 24, 1, "initial APIC id");
        assert_eq!((e[0].ebx >> 16) & 0xff, 2, "logical processors");
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].ecx & ECX_TSC_DEADLINE, 0);
        assert_ne!(e[0].edx & EDX_HTT, 0);
        assert_eq!(e[1].edx, 1);
        assert_eq!((e[2].eax, e[2].ebx), (1, 2));
        assert_eq!((e[3].ecx >> 8) & 0xff, 0, "enumeration ends");
        assert_eq!(e[4].ecx & 0xff, 1, "AMD NC = cores - 1");
        let mut single = base;
        patch_cpuid(&mut single, 0, 1, false);
        assert_eq!(single.as_slice()[0].edx & EDX_HTT, 0);
        assert_eq!(single.as_slice()[0].ecx & ECX_TSC_DEADLINE, 0);
    }

    #[test]
    fn bits_for_counts() {
        assert_eq!([1, 2, 3, 4, 5, 32].map(bits_for), [0, 1, 2, 2, 3, 5]);
    }
}
