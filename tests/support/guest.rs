//! Small Linux guests for microVMs booted inside the nested harness: an initramfs made of
//! busybox, `hull-probe` and an init script, and ext4 disks with known content. Used by the
//! tier-4 VMM tests and the boot benchmark, so both boot exactly the same guest.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::initramfs::Initramfs;

/// What the guest /init prints first: the moment the guest reached userspace.
pub const INIT_MARKER: &str = "HULL-GUEST-INIT";
/// Kernel command line for the guest, without the power-off method (the VMM adds its
/// virtio_mmio.device= entries). hull-vmm: add `reboot=k` (the i8042 reset ends it with
/// status 0). QEMU's microvm has no i8042 (Linux would fall through to a BIOS reboot that
/// KVM cannot emulate there): add `reboot=t`, a triple fault, which `-no-reboot` turns
/// into QEMU's exit.
pub const GUEST_CMDLINE: &str = "console=ttyS0 quiet rdinit=/init panic=-1";

/// Writes a guest initramfs to `out`: busybox, hull-probe (from `probe`) with its libraries,
/// and an /init that mounts the basics, prints [`INIT_MARKER`], runs `body` (sh), prints
/// `guest-status=N` and powers the guest off whatever happened.
pub fn write_initramfs(out: &Path, probe: &Path, body: &str) {
    let init = format!(
        r#"#!/bin/busybox sh
/bin/busybox echo {INIT_MARKER}
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /usr/bin /usr/sbin /sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
cd /tmp
( {body}
)
echo "guest-status=$?"
reboot -f
"#
    );
    let mut initramfs = Initramfs::new();
    initramfs
        .busybox()
        .binary(probe, "/usr/bin/hull-probe")
        .bytes("/init", init, 0o755);
    initramfs
        .write_to(out)
        .unwrap_or_else(|e| panic!("write guest initramfs {}: {e}", out.display()));
}

/// Makes an ext4 image of `size_mib` MiB at `out` holding `files` (relative path, content),
/// with `mkfs.ext4 -d` (e2fsprogs).
pub fn write_ext4_disk(out: &Path, size_mib: u32, files: &[(&str, &str)]) {
    let src = tempfile::tempdir().expect("temp dir for disk content");
    for (path, content) in files {
        let host = src.path().join(path);
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent).expect("create disk content dir");
        }
        fs::write(&host, content).expect("write disk content");
    }
    let out_mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(src.path())
        .arg(out)
        .arg(format!("{size_mib}M"))
        .output()
        .unwrap_or_else(|e| panic!("run mkfs.ext4 (apt-get install e2fsprogs): {e}"));
    assert!(
        out_mkfs.status.success(),
        "mkfs.ext4 {} failed: {}\n{}",
        out.display(),
        out_mkfs.status,
        String::from_utf8_lossy(&out_mkfs.stderr)
    );
}
