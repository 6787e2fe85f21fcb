//! Tier 4: VM mode without the nested harness, as it runs on a host whose KVM is hardware
//! virtualisation (tests/vm_direct). On such a host these checks run right here. On a PVM
//! host (these build machines) this very test is run inside the harness's test host, whose
//! KVM is hardware-style: there it finds hardware KVM and runs the checks directly, which
//! is how the hardware-host paths of the tests are exercised on machines without one.

mod vm_common;
mod vm_direct;

use vm_common::process_common;

use std::time::Duration;

use hull_tests::HostKvm;

const TEST_NAME: &str = "vm_mode_runs_directly_where_kvm_is_hardware";

#[test]
fn vm_mode_runs_directly_where_kvm_is_hardware() {
    if hull_tests::host_kvm() == HostKvm::Hardware {
        vm_direct::vm_mode_works_here();
        return;
    }
    // This host's KVM cannot boot the guest: run this same test binary, and only this
    // test, on the harness's test host, as root, with hull and its parts installed there.
    let exe = std::env::current_exe().expect("this test binary");
    let rootfs = vm_common::busybox_rootfs();
    let harness =
        vm_common::vm_harness(rootfs.path()).binary(&exe, "/usr/local/bin/hull-direct-test");
    // The harness machine's set-up (cgroup2, modules, the /newroot of bind mounts): the
    // test runs chrooted into /newroot, as hull runs on a real host from a real root file
    // system (the VMM's jail cannot pivot_root out of the initramfs).
    let script = format!(
        "{setup}\n\
         export HULL_BIN_DIR=/usr/local/bin HULL_VM_BOOT_TIMEOUT=180\n\
         chroot /newroot /usr/local/bin/hull-direct-test --exact {TEST_NAME} \
         --test-threads=1 --nocapture\n",
        setup = vm_common::HARNESS_SETUP
    );
    let run = harness.run(&script, Duration::from_secs(1800));
    assert!(run.success(), "{run}");
    assert!(
        run.output.contains(&format!("test {TEST_NAME} ... ok"))
            && run.output.contains("test result: ok. 1 passed"),
        "the test did not pass on the hardware-KVM test host:\n{run}"
    );
}
