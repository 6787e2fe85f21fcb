//! Tiny guests for the direct-KVM tests: a few hand-assembled x86-64 instructions wrapped in
//! a minimal ELF64 "vmlinux" that hull-vmm loads like a kernel and enters in 64-bit mode.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Where the tiny guest's code is loaded and entered.
pub const LOAD_ADDR: u64 = 0x20_0000;

/// Fails the test with a clear message when /dev/kvm is missing (tier 3 needs it).
pub fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: the tier-3 direct KVM tests need KVM (load kvm, or run on a host with /dev/kvm)"
    );
}

/// A tiny x86-64 assembler for the handful of instructions the tests use.
#[derive(Default, Clone)]
pub struct Asm {
    pub code: Vec<u8>,
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }
    /// mov dx, imm16
    pub fn mov_dx(&mut self, v: u16) -> &mut Self {
        self.code.extend_from_slice(&[0x66, 0xba]);
        self.code.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// mov al, imm8
    pub fn mov_al(&mut self, v: u8) -> &mut Self {
        self.code.extend_from_slice(&[0xb0, v]);
        self
    }
    /// out dx, al
    pub fn out_dx_al(&mut self) -> &mut Self {
        self.code.push(0xee);
        self
    }
    /// in al, dx
    pub fn in_al_dx(&mut self) -> &mut Self {
        self.code.push(0xec);
        self
    }
    /// Writes `byte` to port `port`.
    pub fn outb(&mut self, port: u16, byte: u8) -> &mut Self {
        self.mov_dx(port).mov_al(byte).out_dx_al()
    }
    /// Writes every byte of `s` to the serial data port.
    pub fn serial_print(&mut self, s: &[u8]) -> &mut Self {
        self.mov_dx(0x3f8);
        for b in s {
            self.mov_al(*b).out_dx_al();
        }
        self
    }
    /// mov eax, imm32
    pub fn mov_eax(&mut self, v: u32) -> &mut Self {
        self.code.push(0xb8);
        self.code.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// mov rbx, imm64
    pub fn mov_rbx(&mut self, v: u64) -> &mut Self {
        self.code.extend_from_slice(&[0x48, 0xbb]);
        self.code.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// mov dword [rbx], eax
    pub fn store_eax_at_rbx(&mut self) -> &mut Self {
        self.code.extend_from_slice(&[0x89, 0x03]);
        self
    }
    /// mov eax, dword [rbx]
    pub fn load_eax_from_rbx(&mut self) -> &mut Self {
        self.code.extend_from_slice(&[0x8b, 0x03]);
        self
    }
    /// Writes the 32-bit `value` to the guest-physical/MMIO `addr`.
    pub fn write32(&mut self, addr: u64, value: u32) -> &mut Self {
        self.mov_rbx(addr).mov_eax(value).store_eax_at_rbx()
    }
    /// cmp eax, imm32
    pub fn cmp_eax(&mut self, v: u32) -> &mut Self {
        self.code.push(0x3d);
        self.code.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// add eax, imm32
    pub fn add_eax(&mut self, v: u32) -> &mut Self {
        self.code.push(0x05);
        self.code.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// out dx, al with al = the low byte of eax is implicit; jne over `skip` bytes.
    pub fn jne(&mut self, skip: u8) -> &mut Self {
        self.code.extend_from_slice(&[0x75, skip]);
        self
    }
    /// je back to the code offset `target` (a label taken with `len()` earlier).
    pub fn je_back(&mut self, target: usize) -> &mut Self {
        let rel = target as isize - (self.code.len() as isize + 2);
        assert!((-128..0).contains(&rel), "jump too far");
        self.code.extend_from_slice(&[0x74, rel as i8 as u8]);
        self
    }
    /// Spins until the 32-bit value at `addr` (memory or an MMIO register) is not zero.
    pub fn wait_nonzero(&mut self, addr: u64) -> &mut Self {
        let top = self.len();
        self.mov_rbx(addr)
            .load_eax_from_rbx()
            .cmp_eax(0)
            .je_back(top)
    }
    /// shr eax, imm8
    pub fn shr_eax(&mut self, n: u8) -> &mut Self {
        self.code.extend_from_slice(&[0xc1, 0xe8, n]);
        self
    }
    /// Reads the 32-bit value at `addr` and writes its low byte to the serial port.
    pub fn print_byte_at(&mut self, addr: u64) -> &mut Self {
        self.mov_rbx(addr)
            .load_eax_from_rbx()
            .mov_dx(0x3f8)
            .out_dx_al()
    }
    /// Writes the byte at [rsi + off] (a boot_params field) to the serial port.
    pub fn print_boot_param_byte(&mut self, off: u32) -> &mut Self {
        self.code.extend_from_slice(&[0x8a, 0x86]); // mov al, [rsi + disp32]
        self.code.extend_from_slice(&off.to_le_bytes());
        self.mov_dx(0x3f8).out_dx_al()
    }
    /// Writes the first byte at the 32-bit guest address stored at [rsi + off] to serial.
    pub fn print_byte_pointed_by_boot_param(&mut self, off: u32) -> &mut Self {
        self.code.extend_from_slice(&[0x8b, 0x9e]); // mov ebx, [rsi + disp32]
        self.code.extend_from_slice(&off.to_le_bytes());
        self.code.extend_from_slice(&[0x8a, 0x03]); // mov al, [rbx]
        self.mov_dx(0x3f8).out_dx_al()
    }
    /// ud2 (invalid opcode)
    pub fn ud2(&mut self) -> &mut Self {
        self.code.extend_from_slice(&[0x0f, 0x0b]);
        self
    }
    /// jmp to itself (spin forever).
    pub fn spin(&mut self) -> &mut Self {
        self.code.extend_from_slice(&[0xeb, 0xfe]);
        self
    }
    /// hlt
    pub fn hlt(&mut self) -> &mut Self {
        self.code.push(0xf4);
        self
    }
    /// Ends the VM through the debug-exit port with `status`.
    pub fn debug_exit(&mut self, status: u8) -> &mut Self {
        self.outb(0x501, status)
    }
    /// Ends the VM through the i8042 reset command.
    pub fn i8042_reset(&mut self) -> &mut Self {
        self.outb(0x64, 0xfe)
    }
    pub fn len(&self) -> usize {
        self.code.len()
    }
}

/// Wraps `code` in an ELF64 executable with one PT_LOAD segment at [`LOAD_ADDR`].
pub fn tiny_elf(code: &[u8]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let offset = 0x1000u64; // code file offset
    let mut f = Vec::new();
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, SysV
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // e_entry
    f.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&(EHDR as u16).to_le_bytes());
    f.extend_from_slice(&(PHDR as u16).to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes()); // phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
    assert_eq!(f.len(), EHDR);
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // R+X
    f.extend_from_slice(&offset.to_le_bytes());
    f.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // vaddr
    f.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // paddr
    f.extend_from_slice(&(code.len() as u64).to_le_bytes()); // filesz
    f.extend_from_slice(&(code.len() as u64).to_le_bytes()); // memsz
    f.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    f.resize(offset as usize, 0);
    f.extend_from_slice(code);
    f
}

/// Wraps `code` in a minimal bzImage (boot protocol 2.15, 64-bit capable): one setup sector,
/// then the protected-mode part loaded at 1 MiB whose 64-bit entry (offset 0x200) is `code`.
pub fn tiny_bzimage(code: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 1024]; // boot sector + 1 setup sector
    f[0x1f1] = 1; // setup_sects
    f[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    f[0x211] = 1; // loadflags: LOADED_HIGH
    f[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
    f[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    f[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // xloadflags: XLF_KERNEL_64
    f[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
    f.resize(1024 + 0x200, 0x90);
    f.extend_from_slice(code);
    f
}

/// Writes the tiny guest to a file in `dir` and returns its path.
pub fn write_guest(dir: &Path, name: &str, asm: &Asm) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, tiny_elf(&asm.code)).expect("write tiny guest");
    path
}
