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
