//! boot_params ("zero page") and the e820 memory map.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::InitrdPlacement;
use crate::error::{Error, Result};
use crate::memory::{EBDA_START, HIMEM_START, MMIO_GAP_START};

/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved.
pub const E820_RESERVED: u32 = 2;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// Boot protocol version the VMM speaks when the image has no header (vmlinux).
const BOOT_PROTOCOL_VERSION: u16 = 0x020f;

/// One e820 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820_RAM or E820_RESERVED.
    pub kind: u32,
}

/// The e820 map of docs/vmm.md: low RAM, the reserved EBDA/BIOS hole, RAM from 1 MiB to
/// the MMIO gap, and RAM above 4 GiB.
pub fn e820_map(mem: &GuestMemoryMmap) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: HIMEM_START - EBDA_START,
            kind: E820_RESERVED,
        },
    ];
    for region in mem.iter() {
        let start = region.start_addr().0.max(HIMEM_START);
        let end = region.start_addr().0 + region.len();
        if end > start {
            debug_assert!(end <= MMIO_GAP_START || start >= MMIO_GAP_START);
            map.push(E820Entry {
                addr: start,
                size: end - start,
                kind: E820_RAM,
            });
        }
    }
    map
}

/// Fills boot_params: the image's setup header (or a synthesised one for vmlinux), loader
/// type, command line, initrd and the e820 table.
pub fn build_boot_params(
    image_header: Option<setup_header>,
    cmdline_addr: u64,
    cmdline_len: usize,
    initrd: Option<InitrdPlacement>,
    e820: &[E820Entry],
) -> Result<boot_params> {
    let mut params = boot_params::default();
    match image_header {
        Some(hdr) => params.hdr = hdr,
        None => {
            params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
            params.hdr.header = KERNEL_HDR_MAGIC;
            params.hdr.version = BOOT_PROTOCOL_VERSION;
            params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
        }
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.cmd_line_ptr = u32::try_from(cmdline_addr)
        .map_err(|_| Error::Cmdline("command line above 4 GiB".into()))?;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some(initrd) = initrd {
        params.hdr.ramdisk_image = initrd.addr as u32;
        params.ext_ramdisk_image = (initrd.addr >> 32) as u32;
        params.hdr.ramdisk_size = initrd.size as u32;
        params.ext_ramdisk_size = (initrd.size >> 32) as u32;
    }
    if e820.len() > params.e820_table.len() {
        return Err(Error::Memory(format!(
            "{} e820 entries do not fit in boot_params",
            e820.len()
        )));
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(e820) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind,
        };
    }
    params.e820_entries = e820.len() as u8;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_has_reserved_ebda_and_skips_the_gap() {
        let mem = crate::memory::create_guest_memory(64).unwrap();
        let map = e820_map(&mem);
        assert_eq!(
            map,
            vec![
                E820Entry {
                    addr: 0,
                    size: EBDA_START,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: EBDA_START,
                    size: HIMEM_START - EBDA_START,
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: HIMEM_START,
                    size: (64 << 20) - HIMEM_START,
                    kind: E820_RAM
                },
            ]
        );
    }

    #[test]
    fn boot_params_for_vmlinux_have_magic_cmdline_and_initrd() {
        let initrd = InitrdPlacement {
            addr: 0x7f0_0000,
            size: 12345,
        };
        let e820 = [E820Entry {
            addr: 0,
            size: 4096,
            kind: E820_RAM,
        }];
        let p = build_boot_params(None, 0x20000, 42, Some(initrd), &e820).unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, 0x5372_6448);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.cmd_line_ptr }, 0x20000);
        assert_eq!({ hdr.ramdisk_image }, 0x7f0_0000);
        assert_eq!({ hdr.ramdisk_size }, 12345);
        assert_eq!(p.e820_entries, 1);
    }
}
