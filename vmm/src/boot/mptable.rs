//! Intel MultiProcessor Specification 1.4 table, so Linux finds the vCPUs, the IOAPIC and
//! the ISA interrupt routing without ACPI. Written at the EBDA (0x9fc00), which Linux scans.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::{Error, Result};
use crate::memory::{APIC_BASE, EBDA_START, IOAPIC_BASE};

/// Most vCPUs the table (and the VMM) supports.
pub const MAX_CPUS: u8 = 32;
/// IOAPIC pins of KVM's in-kernel IOAPIC.
pub const IOAPIC_PINS: u8 = 24;

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const ENTRY_CPU: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IOINT: u8 = 3;
const ENTRY_LINT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds the floating pointer and configuration table for `cpus` vCPUs, as bytes to be
/// written at `base`.
pub fn build_mptable(base: u64, cpus: u8) -> Result<Vec<u8>> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::Config(format!(
            "vcpus: {cpus} is outside 1..={MAX_CPUS}"
        )));
    }
    let ioapic_id = cpus + 1;
    let table_addr = base + 16;
    // Entries of the configuration table.
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..cpus {
        entries.extend_from_slice(&[
            ENTRY_CPU,
            cpu,
            APIC_VERSION,
            CPU_ENABLED | if cpu == 0 { CPU_BSP } else { 0 },
        ]);
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // family 6 signature
        entries.extend_from_slice(&((1u32 << 0) | (1 << 9)).to_le_bytes()); // FPU | APIC
        entries.extend_from_slice(&[0u8; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_BASE as u32).to_le_bytes());
    count += 1;
    for pin in 0..IOAPIC_PINS {
        // type, irq type, flags (conforming), source bus, source irq, dest ioapic, dest pin
        entries.extend_from_slice(&[ENTRY_IOINT, INT_TYPE_INT, 0, 0, 0, pin, ioapic_id, pin]);
        count += 1;
    }
    // LINT0 = ExtINT on the BSP, LINT1 = NMI on all local APICs.
    entries.extend_from_slice(&[ENTRY_LINT, INT_TYPE_EXTINT, 0, 0, 0, 0, 0, 0]);
    entries.extend_from_slice(&[ENTRY_LINT, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"HULL    "); // OEM id
    table.extend_from_slice(b"HULL-VMM    "); // product id
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(APIC_BASE as u32).to_le_bytes());
    table.extend_from_slice(&[0u8; 4]); // extended table length/checksum
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(16);
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&(table_addr as u32).to_le_bytes());
    floating.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // length 1 (16 B), rev 1.4, csum, features
    floating[10] = checksum(&floating);

    let mut out = floating;
    out.extend_from_slice(&table);
    if base + out.len() as u64 > 0xa0000 {
        return Err(Error::Memory("MP table does not fit in the EBDA".into()));
    }
    Ok(out)
}

/// Writes the MP table for `cpus` vCPUs at the EBDA.
pub fn write_mptable(mem: &GuestMemoryMmap, cpus: u8) -> Result<()> {
    let bytes = build_mptable(EBDA_START, cpus)?;
    mem.write_slice(&bytes, GuestAddress(EBDA_START))
        .map_err(|e| Error::Memory(format!("writing the MP table: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn tables_have_valid_checksums_and_counts() {
        for cpus in [1u8, 2, 32] {
            let t = build_mptable(EBDA_START, cpus).unwrap();
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0, "floating pointer checksum");
            let ptr = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
            assert_eq!(ptr, EBDA_START + 16);
            let table = &t[16..];
            assert_eq!(&table[..4], b"PCMP");
            let len = u16::from_le_bytes(table[4..6].try_into().unwrap()) as usize;
            assert_eq!(len, table.len());
            assert_eq!(sum(table), 0, "config table checksum");
            let count = u16::from_le_bytes(table[34..36].try_into().unwrap());
            assert_eq!(count, u16::from(cpus) + 2 + 24 + 2);
            // exactly one BSP
            let bsps = (0..cpus as usize)
                .filter(|i| table[44 + i * 20 + 3] & CPU_BSP != 0)
                .count();
            assert_eq!(bsps, 1);
        }
    }

    #[test]
    fn cpu_count_is_bounded() {
        assert!(build_mptable(EBDA_START, 0).is_err());
        assert!(build_mptable(EBDA_START, 33).is_err());
    }
}
