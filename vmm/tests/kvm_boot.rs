//! Tier 3: tiny guests on /dev/kvm entered in 64-bit mode by hull-vmm's boot code; serial
//! output and the ways a guest ends the VM.

mod support;

use std::time::Duration;

use hull_vmm::{ExitReason, MicroVm, SerialOutput, VmConfig};
use support::{require_kvm, write_guest, Asm};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(20));

fn config(dir: &tempfile::TempDir, asm: &Asm) -> (VmConfig, std::path::PathBuf) {
    let kernel = write_guest(dir.path(), "guest.elf", asm);
    let serial = dir.path().join("serial.log");
    let mut c = VmConfig::new(kernel);
    c.memory_mib = 32;
    c.serial = SerialOutput::File(serial.clone());
    (c, serial)
}

#[test]
fn serial_output_and_debug_exit_status() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.serial_print(b"hello from the tiny guest\n")
        .debug_exit(7)
        .hlt();
    let (c, serial) = config(&dir, &asm);
    let vm = MicroVm::new(&c).expect("build the VM");
    let reason = vm.run(TIMEOUT).expect("run the guest");
    assert_eq!(reason, ExitReason::DebugExit(7));
    assert_eq!(reason.exit_code(), 7);
    assert_eq!(
        std::fs::read_to_string(serial).unwrap(),
        "hello from the tiny guest\n"
    );
}

#[test]
fn i8042_reset_ends_the_vm_with_status_zero() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    // Linux's kb_wait: read the status port first, then send the reset command.
    asm.mov_dx(0x64).in_al_dx().i8042_reset().spin();
    let (c, _) = config(&dir, &asm);
    let reason = MicroVm::new(&c).unwrap().run(TIMEOUT).unwrap();
    assert_eq!(reason, ExitReason::I8042Reset);
    assert_eq!(reason.exit_code(), 0);
}

/// The guest reads boot_params through RSI, as Linux does: loader type, e820 entry count,
/// the first byte of the command line and of the initramfs.
fn boot_params_probe() -> Asm {
    let mut asm = Asm::new();
    asm.print_boot_param_byte(0x210) // hdr.type_of_loader
        .print_boot_param_byte(0x1e8) // e820_entries
        .print_byte_pointed_by_boot_param(0x228) // *hdr.cmd_line_ptr
        .print_byte_pointed_by_boot_param(0x218) // *hdr.ramdisk_image
        .debug_exit(9);
    asm
}

fn check_boot_params(kernel: std::path::PathBuf, dir: &tempfile::TempDir) {
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, b"INITRAMFS-CONTENT").unwrap();
    let serial = dir.path().join("serial");
    let mut c = VmConfig::new(kernel);
    c.memory_mib = 32;
    c.cmdline = "Xconsole=ttyS0".into();
    c.initramfs = Some(initrd);
    c.serial = SerialOutput::File(serial.clone());
    let reason = MicroVm::new(&c).unwrap().run(TIMEOUT).unwrap();
    assert_eq!(reason, ExitReason::DebugExit(9));
    assert_eq!(std::fs::read(serial).unwrap(), vec![0xff, 3, b'X', b'I']);
}

#[test]
fn vmlinux_guest_sees_boot_params_cmdline_and_initramfs() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), "vmlinux", &boot_params_probe());
    check_boot_params(kernel, &dir);
}

#[test]
fn bzimage_guest_sees_boot_params_cmdline_and_initramfs() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("bzImage");
    std::fs::write(&kernel, support::tiny_bzimage(&boot_params_probe().code)).unwrap();
    check_boot_params(kernel, &dir);
}

#[test]
fn memory_beyond_the_mmio_gap_is_mapped_above_4_gib() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.print_boot_param_byte(0x1e8) // e820_entries
        // e820[3].addr (entries are 20 bytes at 0x2d0): byte 7 is 0 and byte 4 is 1,
        // i.e. the RAM past the MMIO gap starts at 0x1_0000_0000.
        .print_boot_param_byte(0x2d0 + 3 * 20 + 7)
        .print_boot_param_byte(0x2d0 + 3 * 20 + 4)
        .debug_exit(0);
    let (mut c, serial) = config(&dir, &asm);
    c.memory_mib = 4096 + 64;
    let reason = MicroVm::new(&c).unwrap().run(TIMEOUT).unwrap();
    assert_eq!(reason, ExitReason::DebugExit(0));
    assert_eq!(std::fs::read(serial).unwrap(), vec![4, 0, 1]);
}
