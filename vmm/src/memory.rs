//! Guest physical memory: the layout constants of docs/vmm.md and the vm-memory mapping.

use std::fs::File;
use std::os::fd::FromRawFd;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

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

/// Maps `mib` MiB of guest RAM that another process can map too: one sealed `memfd`
/// mapped `MAP_SHARED`, each RAM range at its own offset. Used when a vhost-user device
/// (virtio-fs) is attached, whose backend gets the memfd and reads and writes guest memory
/// directly. The memfd is sealed against growing and shrinking, so the backend cannot
/// truncate it under the VMM's mapping (which would turn guest accesses into SIGBUS).
pub fn create_shared_guest_memory(mib: u64) -> Result<GuestMemoryMmap> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(Error::Config(format!(
            "memory: {mib} MiB is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB"
        )));
    }
    let size = mib << 20;
    let file = sealed_memfd(size)
        .map_err(|e| Error::Memory(format!("cannot create {mib} MiB of shared guest RAM: {e}")))?;
    let mut offset = 0u64;
    let ranges: Vec<_> = ram_ranges(size)
        .into_iter()
        .map(|(addr, len)| {
            let range = (addr, len, Some(FileOffset::new(file.try_clone()?, offset)));
            offset += len as u64;
            Ok(range)
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::Memory(format!("guest RAM memfd: {e}")))?;
    GuestMemoryMmap::from_ranges_with_files(ranges)
        .map_err(|e| Error::Memory(format!("cannot map {mib} MiB of shared guest RAM: {e}")))
}

/// A memfd of `size` bytes whose size can no longer change.
fn sealed_memfd(size: u64) -> std::io::Result<File> {
    // SAFETY: the name is a NUL-terminated literal; the flags are valid memfd_create flags.
    let fd = unsafe {
        libc::memfd_create(
            c"hull-guest-ram".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    let seals = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS on a memfd we own, with valid seal bits; no memory is passed.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
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
        assert!(matches!(
            create_shared_guest_memory(1),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn shared_memory_is_one_sealed_memfd_seen_by_another_mapping() {
        use std::os::fd::AsRawFd;
        use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};
        let mem = create_shared_guest_memory(16).unwrap();
        let region = mem.iter().next().unwrap();
        let file = region.file_offset().expect("backed by the memfd").file();
        assert_eq!(file.metadata().unwrap().len(), 16 << 20);
        // A write through the guest mapping is visible through the file (another process
        // mapping the fd sees the same pages).
        mem.write_obj(0x1234_5678_u32, GuestAddress(0x2000))
            .unwrap();
        let mut word = [0u8; 4];
        std::os::unix::fs::FileExt::read_exact_at(file, &mut word, 0x2000).unwrap();
        assert_eq!(u32::from_le_bytes(word), 0x1234_5678);
        // The backend cannot resize it.
        assert!(file.set_len(4096).is_err());
        assert!(file.set_len(32 << 20).is_err());
        // SAFETY: F_GET_SEALS on a valid fd.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        assert_ne!(seals & libc::F_SEAL_SEAL, 0);
    }
}
