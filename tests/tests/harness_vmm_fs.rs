//! Tier 4: hull-vmm's virtio-fs device (a vhost-user-fs frontend) with Debian's virtiofsd
//! (QEMU 7.2, `/usr/lib/qemu/virtiofsd`) as the backend, on real KVM inside the nested
//! harness, with the VMM's seccomp filters on. One harness boot: the guest kernel
//! (FUSE_FS + VIRTIO_FS) mounts the tag, reads what the host put in the shared directory,
//! writes a small file and an 8 MiB file the host then finds byte for byte, and a symlink
//! to `/etc` inside the share never reaches the host's `/etc`. (hull's own use of it,
//! `-v` in vm mode, is not wired yet: docs/storage.md.)

use std::time::Duration;

use hull_tests::guest::{self, GUEST_CMDLINE, INIT_MARKER};
use hull_tests::harness::Harness;

const RUN_TIMEOUT: Duration = Duration::from_secs(300);
const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";

const GUEST_BODY: &str = r#"
mkdir -p /vol
if mount -t virtiofs vol0 /vol; then echo "guest-mount=ok"; else echo "guest-mount=failed"; fi
echo "guest-fstype=$(grep ' /vol ' /proc/mounts | cut -d' ' -f3)"
echo "guest-read=$(cat /vol/from-host.txt)"
echo from-guest > /vol/from-guest.txt
echo "guest-write=$?"
dd if=/dev/urandom of=/tmp/big bs=1M count=8 2>/dev/null
cp /tmp/big /vol/big
echo "guest-big-sha=$(sha256sum /tmp/big | cut -d' ' -f1)"
echo "guest-big-back=$(sha256sum /vol/big | cut -d' ' -f1)"
# /vol/etc is a symlink to /etc made on the host: the guest resolves it in its own tree,
# so neither reading nor writing through it touches the host's /etc.
echo "guest-escape-read=$(cat /vol/etc/hull-host-secret 2>&1 | head -n 1)"
echo pwned > /vol/etc/hull-pwned 2>/dev/null
echo "guest-dotdot=$(ls /vol/../ 2>&1 | grep -c hull-host-secret)"
sync
umount /vol
echo "guest-umount=$?"
"#;

/// The outer machine: virtiofsd runs chrooted into a tmpfs (its namespace sandbox
/// pivot_roots, which the kernel refuses from the harness's initramfs root), serving
/// /tmp/share; hull-vmm connects to its socket.
const OUTER: &str = r#"
mkdir -p /newroot /tmp/share /etc
# The host's secret, in the tree virtiofsd's chroot sees (made before the binds below).
echo TOPSECRET-42 > /etc/hull-host-secret
mount -t tmpfs tmpfs /newroot
for d in /*; do
    case "$d" in /newroot|/proc|/sys|/dev|/init) continue;; esac
    [ -d "$d" ] || continue
    mkdir -p "/newroot$d"; mount --rbind "$d" "/newroot$d"
done
for d in /proc /sys /dev; do mkdir -p "/newroot$d"; mount --rbind "$d" "/newroot$d"; done
echo from-host > /tmp/share/from-host.txt
ln -s /etc /tmp/share/etc
chroot /newroot /usr/lib/qemu/virtiofsd --socket-path=/tmp/fs.sock -o source=/tmp/share \
    -o sandbox=namespace > /tmp/virtiofsd.log 2>&1 &
vfs=$!
i=0
until [ -S /tmp/fs.sock ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
timeout -s KILL 240 hull-vmm --kernel /guest/vmlinux --initramfs /guest/initramfs.cpio \
    --cmdline "$CMDLINE reboot=k" --memory 128 --fs socket=/tmp/fs.sock,tag=vol0 \
    --serial stdout > /tmp/serial.log 2> /tmp/vmm.err
echo "vmm-exit=$?"
# virtiofsd ends when its vhost-user connection closes.
timeout -s KILL 30 sh -c "while kill -0 $vfs 2>/dev/null; do sleep 0.1; done"
echo "virtiofsd-gone=$?"
echo "host-sees=$(cat /tmp/share/from-guest.txt 2>&1)"
echo "host-big-sha=$(sha256sum /tmp/share/big 2>&1 | cut -d' ' -f1)"
echo "host-etc-pwned=$(test -e /etc/hull-pwned && echo yes || echo no)"
echo "--- guest serial"
cat /tmp/serial.log
echo "--- vmm stderr"
tail -n 40 /tmp/vmm.err
echo "--- virtiofsd"
tail -n 20 /tmp/virtiofsd.log
"#;

#[test]
fn virtio_fs_volume_is_shared_both_ways_and_a_symlink_cannot_reach_the_host() {
    Harness::require();
    let dir = tempfile::tempdir().expect("temp dir");
    let probe = hull_tests::binary("hull-probe");
    let initramfs = dir.path().join("guest-initramfs.cpio");
    guest::write_initramfs(&initramfs, &probe, GUEST_BODY);
    let script = OUTER.replace("$CMDLINE", GUEST_CMDLINE);
    let run = Harness::new()
        .binary(&hull_tests::binary("hull-vmm"), "/usr/bin/hull-vmm")
        .binary(std::path::Path::new(VIRTIOFSD), VIRTIOFSD)
        .file(&Harness::guest_kernel(), "/guest/vmlinux")
        .file(&initramfs, "/guest/initramfs.cpio")
        .run(&script, RUN_TIMEOUT);
    eprintln!("{run}");
    assert!(run.success(), "{run}");
    assert!(
        run.output.contains(INIT_MARKER),
        "guest never reached /init\n{run}"
    );
    assert_eq!(run.value("guest-mount"), Some("ok"), "{run}");
    assert_eq!(run.value("guest-fstype"), Some("virtiofs"), "{run}");
    // Host → guest.
    assert_eq!(run.value("guest-read"), Some("from-host"), "{run}");
    // Guest → host, small and 8 MiB (byte for byte).
    assert_eq!(run.value("guest-write"), Some("0"), "{run}");
    assert_eq!(run.value("host-sees"), Some("from-guest"), "{run}");
    let sha = run.value("guest-big-sha").unwrap_or("none");
    assert_eq!(sha.len(), 64, "{run}");
    assert_eq!(run.value("guest-big-back"), Some(sha), "{run}");
    assert_eq!(run.value("host-big-sha"), Some(sha), "{run}");
    // The symlink to /etc: the host's secret is not readable, the host's /etc not written.
    let escape = run.value("guest-escape-read").unwrap_or("");
    assert!(
        !escape.contains("TOPSECRET"),
        "the guest read the host's /etc through the volume: {escape:?}\n{run}"
    );
    assert_eq!(run.value("guest-dotdot"), Some("0"), "{run}");
    assert_eq!(run.value("host-etc-pwned"), Some("no"), "{run}");
    assert_eq!(run.value("guest-umount"), Some("0"), "{run}");
    assert_eq!(run.value("guest-status"), Some("0"), "{run}");
    assert_eq!(run.value("vmm-exit"), Some("0"), "{run}");
    assert_eq!(run.value("virtiofsd-gone"), Some("0"), "{run}");
}
