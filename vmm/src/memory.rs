//! Guest physical memory: the layout constants of docs/vmm.md and the vm-memory mapping.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::error::{Error, Result};

/// GDT location.
pub const GDT_ADDR: u64 = 0x500;
/// IDT location (one zeroed entry).
pub const IDT_ADDR: u64 = 0x520;
/// boot_params ("zero page").
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 table.
pub const PML4_ADDR: u64 = 0x9000;
/// Page directory pointer table.
pub const PDPT_ADDR: u64 = 0xa000;
/// First of four page directories (4 x 512 x 2 MiB = identity map of the first 4 GiB,
/// MMIO gap included, at 0xb000..0xf000).
pub const PD_ADDR: u64 = 0xb000;
/// Number of page directories (GiB identity-mapped at boot).
pub const PD_COUNT: u64 = 4;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Largest command line the VMM writes (the kernel's own limit may be lower).
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Start of the EBDA, where the MP table goes; reserved in e820 up to 1 MiB.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of high memory: the kernel is loaded at or above this address.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the MMIO gap below 4 GiB.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
/// End of the MMIO gap (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// First virtio-mmio device window.
pub const VIRTIO_MMIO_BASE: u64 = MMIO_GAP_START;
/// Size of each virtio-mmio device window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// KVM's TSS (three pages) for KVM_SET_TSS_ADDR.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// KVM's identity-map page for KVM_SET_IDENTITY_MAP_ADDR.
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;
/// Local APIC base.
pub const APIC_BASE: u64 = 0xfee0_0000;
/// IOAPIC base.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;

/// Smallest guest RAM accepted (MiB).
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest guest RAM accepted (MiB).
pub const MAX_MEMORY_MIB: u64 = 65536;

/// The guest RAM ranges for `size` bytes: below the MMIO gap, then above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    let low = size.min(MMIO_GAP_START);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    if size > low {
        ranges.push((GuestAddress(MMIO_GAP_END), (size - low) as usize));
    }
    ranges
}

/// Maps `mib` MiB of anonymous guest RAM (pages are touched lazily by the guest).
pub fn create_guest_memory(mib: u64) -> Result<GuestMemoryMmap> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(Error::Config(format!(
            "memory: {mib} MiB is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB"
        )));
    }
    GuestMemoryMmap::from_ranges(&ram_ranges(mib << 20))
        .map_err(|e| Error::Memory(format!("cannot map {mib} MiB of guest RAM: {e}")))
}

/// End (exclusive) of the RAM below the MMIO gap.
pub fn low_ram_end(mem: &GuestMemoryMmap) -> u64 {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    mem.iter()
        .map(|r| r.start_addr().0 + r.len())
        .filter(|end| *end <= MMIO_GAP_START)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_is_one_range_below_the_gap() {
        assert_eq!(ram_ranges(128 << 20), vec![(GuestAddress(0), 128 << 20)]);
    }

    #[test]
    fn large_memory_skips_the_mmio_gap() {
        let r = ram_ranges(4 << 30);
        assert_eq!(r[0], (GuestAddress(0), MMIO_GAP_START as usize));
        assert_eq!(r[1].0, GuestAddress(MMIO_GAP_END));
        assert_eq!(r[1].1 as u64, (4u64 << 30) - MMIO_GAP_START);
    }

    #[test]
    fn memory_size_is_bounded() {
        assert!(matches!(create_guest_memory(1), Err(Error::Config(_))));
        assert!(matches!(
            create_guest_memory(1 << 20),
            Err(Error::Config(_))
        ));
        let mem = create_guest_memory(32).unwrap();
        assert_eq!(low_ram_end(&mem), 32 << 20);
    }
}
