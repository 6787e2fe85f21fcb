//! 64-bit entry state for the boot vCPU: GDT, IDT, identity-mapped page tables, special and
//! general registers, as the Linux x86 64-bit boot protocol asks for.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::{Error, Result};
use crate::memory::{
    BOOT_STACK_POINTER, GDT_ADDR, IDT_ADDR, PDPT_ADDR, PD_ADDR, PD_COUNT, PML4_ADDR,
};

/// Boot-protocol code selector (__BOOT_CS).
pub const BOOT_CS: u16 = 0x10;
/// Boot-protocol data selector (__BOOT_DS).
pub const BOOT_DS: u16 = 0x18;
/// Selector of the TSS descriptor (KVM wants a valid TR in long mode).
pub const BOOT_TSS: u16 = 0x20;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Encodes a GDT descriptor from flags (G/DB/L/AVL + access byte), base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The boot GDT: null, null, 64-bit code (0x10), data (0x18), TSS (0x20).
pub const GDT: [u64; 5] = [
    0,
    0,
    gdt_entry(0xa09b, 0, 0xfffff), // code: G, L, present, DPL0, exec/read, accessed
    gdt_entry(0xc093, 0, 0xfffff), // data: G, DB, present, DPL0, read/write, accessed
    gdt_entry(0x808b, 0, 0xfffff), // TSS: present, busy 64-bit TSS
];

/// Decodes a GDT entry into a kvm_segment with the given selector.
pub fn segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
    let limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    kvm_segment {
        base,
        // KVM wants the byte-granular limit.
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

fn write<T: vm_memory::ByteValued>(
    mem: &GuestMemoryMmap,
    val: T,
    addr: u64,
    what: &str,
) -> Result<()> {
    mem.write_obj(val, GuestAddress(addr))
        .map_err(|e| Error::Memory(format!("writing {what} at {addr:#x}: {e}")))
}

/// Writes GDT, IDT and the page tables identity-mapping the first 4 GiB with 2 MiB pages.
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<()> {
    for (i, entry) in GDT.iter().enumerate() {
        write(mem, *entry, GDT_ADDR + (i as u64) * 8, "GDT")?;
    }
    write(mem, 0u64, IDT_ADDR, "IDT")?;
    write(mem, PDPT_ADDR | 0x03, PML4_ADDR, "PML4")?; // present | writable
    for pd in 0..PD_COUNT {
        let pd_addr = PD_ADDR + pd * 0x1000;
        write(mem, pd_addr | 0x03, PDPT_ADDR + pd * 8, "PDPT")?;
        for i in 0..512u64 {
            let page = (pd << 30) | (i << 21);
            write(mem, page | 0x83, pd_addr + i * 8, "PD")?; // present | writable | 2 MiB
        }
    }
    Ok(())
}

/// Turns `sregs` into 64-bit long mode with paging and the boot segments.
pub fn configure_sregs(sregs: &mut kvm_sregs) {
    let code = segment_from_gdt(GDT[2], BOOT_CS);
    let data = segment_from_gdt(GDT[3], BOOT_DS);
    let tss = segment_from_gdt(GDT[4], BOOT_TSS);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
}

/// General registers for the 64-bit entry: RIP = entry, RSI = boot_params.
pub fn boot_regs(entry: u64, zero_page: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: zero_page,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_flat_long_mode_segments() {
        let cs = segment_from_gdt(GDT[2], BOOT_CS);
        assert_eq!(
            (cs.l, cs.db, cs.present, cs.s, cs.type_, cs.dpl),
            (1, 0, 1, 1, 0xb, 0)
        );
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = segment_from_gdt(GDT[3], BOOT_DS);
        assert_eq!((ds.l, ds.db, ds.type_), (0, 1, 0x3));
        let tr = segment_from_gdt(GDT[4], BOOT_TSS);
        assert_eq!((tr.s, tr.type_, tr.present), (0, 0xb, 1));
    }

    #[test]
    fn page_tables_identity_map_first_4_gib() {
        let mem = crate::memory::create_guest_memory(16).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4 & !0xfff, PDPT_ADDR);
        let pd5: u64 = mem.read_obj(GuestAddress(PD_ADDR + 5 * 8)).unwrap();
        assert_eq!(pd5, (5 << 21) | 0x83);
        let pdpt3: u64 = mem.read_obj(GuestAddress(PDPT_ADDR + 3 * 8)).unwrap();
        assert_eq!(pdpt3 & !0xfff, PD_ADDR + 0x3000);
        let mmio: u64 = mem
            .read_obj(GuestAddress(PD_ADDR + 0x3000 + 128 * 8))
            .unwrap();
        assert_eq!(mmio & !0xfff, 0xd000_0000, "MMIO gap mapped");
    }
}
