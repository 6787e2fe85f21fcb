//! Tier 4: hull-vmm boots our guest kernel (kernel-config/) on real KVM inside the nested
//! harness. One harness boot per test; inside it the guest reaches its /init, reads an ext4
//! disk over virtio-blk, talks to the host side over vsock in both directions, and powers
//! off, and the VMM exits 0. The same guest under QEMU's `-M microvm` is the reference: when
//! hull-vmm fails and QEMU passes, the VMM is at fault, not the kernel or the harness.

use std::time::Duration;

use hull_tests::guest::{self, GUEST_CMDLINE, INIT_MARKER};
use hull_tests::harness::{Harness, HarnessRun};

/// Content the test writes to the guest's disk and expects the guest to read back.
const DISK_TEXT: &str = "virtio-blk says hello";
/// Generous: everything inside runs under TCG, and a loaded CI machine is slower.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The guest's part: report CPUs, mount and read the disk, answer one host→guest vsock
/// connection on port 5000, then call the host on port 6000.
const GUEST_BODY: &str = r#"
echo "guest-cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "guest-kernel=$(uname -r)"
if mount -t ext4 -o ro /dev/vda /mnt; then
    echo "guest-disk=$(cat /mnt/hello.txt)"
    umount /mnt
else
    echo "guest-disk=mount failed"
fi
# No vsock loopback in the guest kernel: nothing in the guest reaches a guest port (the
# agent's) through CID 1 or its own CID, even with a listener there.
hull-probe vsock-serve 7000 > /tmp/loop.out 2>&1 &
loop=$!
for i in 1 2 3 4 5 6 7 8 9 10; do
    r=$(hull-probe vsock-attack 1:7000 3:7000 | grep ^vsock_connect | tr '\n' ' ')
    case "$r" in *ECONNRESET*) sleep 0.2;; *) break;; esac
done
echo "guest-loopback=$r"
kill $loop 2>/dev/null
hull-probe vsock-serve 5000 > /tmp/serve.out 2>&1 &
serve=$!
echo "guest-call=$(hull-probe vsock-call 2 6000 hello-from-guest 2>&1)"
wait $serve
echo "guest-serve-status=$?"
"#;

/// Files every run carries: the guest kernel, the guest initramfs, the disk, hull-probe.
struct GuestFiles {
    _dir: tempfile::TempDir,
    harness: Harness,
}

fn guest_files() -> GuestFiles {
    Harness::require();
    let dir = tempfile::tempdir().expect("temp dir");
    let probe = hull_tests::binary("hull-probe");
    let initramfs = dir.path().join("guest-initramfs.cpio");
    guest::write_initramfs(&initramfs, &probe, GUEST_BODY);
    let disk = dir.path().join("disk.img");
    guest::write_ext4_disk(&disk, 8, &[("hello.txt", DISK_TEXT)]);
    let harness = Harness::new()
        .binary(&probe, "/usr/bin/hull-probe")
        .file(&Harness::guest_kernel(), "/guest/vmlinux")
        .file(&initramfs, "/guest/initramfs.cpio")
        .file(&disk, "/guest/disk.img");
    GuestFiles { _dir: dir, harness }
}

/// Outer-machine script: the host side of both vsock exchanges around one VMM run, then
/// everything the test checks as KEY=VALUE lines. `vmm_command` runs the VMM with the
/// guest's serial console on stdout; `host_serve`/`host_call` are the host side of the
/// guest→host (port 6000) and host→guest (port 5000) connections.
fn outer_script(vmm_command: &str, host_serve: &str, host_call: &str) -> String {
    format!(
        r#"
{host_serve} > /tmp/host-serve.out 2>&1 &
serve=$!
( {host_call} > /tmp/host-call.out 2>&1; echo "exit $?" >> /tmp/host-call.out ) &
call=$!
timeout -s KILL 240 {vmm_command} > /tmp/serial.log 2> /tmp/vmm.err
echo "vmm-exit=$?"
wait $serve
echo "host-serve-status=$?"
wait $call
echo "host-call=$(head -n 1 /tmp/host-call.out)"
echo "host-call-status=$(tail -n 1 /tmp/host-call.out)"
echo "--- guest serial"
cat /tmp/serial.log
echo "--- vmm stderr"
tail -n 40 /tmp/vmm.err
echo "--- host serve"
cat /tmp/host-serve.out
"#
    )
}

/// Asserts what a user would see of a good boot: init reached, disk read, vsock both ways,
/// clean power-off with VMM status 0.
fn assert_guest_ran(run: &HarnessRun, vcpus: u32) {
    // Shown with --nocapture: the whole run, serial log included, for diagnosis.
    eprintln!("{run}");
    assert!(run.success(), "{run}");
    assert!(
        run.output.contains(INIT_MARKER),
        "guest never reached /init\n{run}"
    );
    assert_eq!(
        run.value("guest-cpus"),
        Some(vcpus.to_string().as_str()),
        "{run}"
    );
    assert!(
        run.value("guest-kernel")
            .is_some_and(|k| k.starts_with("6.12")),
        "{run}"
    );
    assert_eq!(run.value("guest-disk"), Some(DISK_TEXT), "{run}");
    let loopback = run.value("guest-loopback").unwrap_or("");
    assert!(
        loopback.contains("vsock_connect_1_7000=") && !loopback.contains("=ok"),
        "the guest reached its own vsock port (CONFIG_VSOCKETS_LOOPBACK?): {loopback:?}\n{run}"
    );
    assert_eq!(
        run.value("guest-call"),
        Some("host got: hello-from-guest"),
        "guest→host vsock\n{run}"
    );
    assert_eq!(
        run.value("host-call"),
        Some("guest got: hello-from-host"),
        "host→guest vsock\n{run}"
    );
    assert_eq!(run.value("host-call-status"), Some("exit 0"), "{run}");
    assert_eq!(run.value("guest-serve-status"), Some("0"), "{run}");
    assert_eq!(run.value("host-serve-status"), Some("0"), "{run}");
    assert_eq!(run.value("guest-status"), Some("0"), "{run}");
    assert_eq!(run.value("vmm-exit"), Some("0"), "{run}");
}

fn hull_vmm_command(vcpus: u32) -> String {
    format!(
        "hull-vmm --kernel /guest/vmlinux --initramfs /guest/initramfs.cpio \
         --cmdline '{GUEST_CMDLINE} reboot=k' --memory 128 --vcpus {vcpus} \
         --disk /guest/disk.img,ro --vsock /tmp/vsock.sock --vsock-cid 3 --serial stdout"
    )
}

fn run_hull_vmm(vcpus: u32) -> HarnessRun {
    let files = guest_files();
    let vmm = hull_tests::binary("hull-vmm");
    let script = outer_script(
        &hull_vmm_command(vcpus),
        "hull-probe uds-serve /tmp/vsock.sock_6000",
        "hull-probe uds-call /tmp/vsock.sock 5000 hello-from-host",
    );
    files
        .harness
        .clone()
        .binary(&vmm, "/usr/bin/hull-vmm")
        .run(&script, RUN_TIMEOUT)
}

#[test]
fn hull_vmm_boots_the_guest_kernel_reads_disk_talks_vsock_and_powers_off() {
    let run = run_hull_vmm(1);
    assert_guest_ran(&run, 1);
}

#[test]
fn hull_vmm_boots_the_guest_with_two_vcpus() {
    let run = run_hull_vmm(2);
    assert_guest_ran(&run, 2);
}

/// The reference: the same kernel, initramfs and disk under QEMU's microvm with KVM. Its
/// vsock is vhost-vsock, so the host side is AF_VSOCK in the outer machine (CID 2).
#[test]
fn qemu_microvm_reference_boots_the_same_guest() {
    let files = guest_files();
    let qemu = format!(
        "qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp 2 -m 128 \
         -nodefaults -no-user-config -display none -no-reboot -serial stdio \
         -kernel /guest/vmlinux -initrd /guest/initramfs.cpio -append '{GUEST_CMDLINE} reboot=t' \
         -drive id=d0,file=/guest/disk.img,format=raw,if=none,readonly=on \
         -device virtio-blk-device,drive=d0 -device vhost-vsock-device,guest-cid=3"
    );
    let script = outer_script(
        &qemu,
        "hull-probe vsock-serve 6000 host",
        "hull-probe vsock-call 3 5000 hello-from-host",
    );
    let run = files
        .harness
        .clone()
        .qemu()
        .vhost_vsock()
        .run(&script, RUN_TIMEOUT);
    assert_guest_ran(&run, 2);
}
