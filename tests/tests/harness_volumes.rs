//! Tier 4: host directories in vm containers (`-v HOST:CONTAINER[:ro]`), one harness boot.
//! Each volume is a virtio-fs device of hull-vmm served by its own virtiofsd (Debian's,
//! QEMU 7.2): the host sees the container's writes and the container the host's; `:ro`
//! gives EROFS inside and leaves the host directory untouched; a symlink to /etc inside a
//! volume neither reads nor writes the host's /etc; `rm` leaves no virtiofsd, socket or
//! mount; a single file is refused with the reason. (The process model's volumes:
//! host_process.rs.)
//!
//! Always in the harness (never directly on a host with hardware KVM): the test puts a
//! secret in the host's /etc. hull runs chrooted into `/newroot` there (vm_common's
//! HARNESS_SETUP): virtiofsd's sandbox pivot_roots into the shared directory, which the
//! kernel refuses from the harness's initramfs root (as on no real host).

mod vm_common;

use std::path::Path;

use vm_common::{vm_harness, Results, VmTestHost};

#[test]
fn vm_volumes_are_shared_both_ways_ro_is_erofs_symlinks_stay_inside_and_rm_cleans_up() {
    let rootfs = vm_common::busybox_rootfs();
    let body = r#"
mkdir -p /tmp/vol /tmp/rovol
echo from-host > /tmp/vol/host.txt
echo ro-content > /tmp/rovol/r.txt
ln -s /etc /tmp/vol/etc
# The host's /etc as hull and virtiofsd (chrooted into /newroot) see it.
mkdir -p /newroot/etc
echo TOPSECRET-42 > /newroot/etc/hull-host-secret
t rw hull run --rm --isolation=vm -v /tmp/vol:/data $I sh -c 'cat /data/host.txt; echo from-guest > /data/guest.txt; echo w=$?; grep " /data " /proc/mounts | cut -d" " -f3 >&2; grep " /data " /proc/mounts | cut -d" " -f4 | tr , "\n" | grep -E "^(nodev|rw|ro)$" | sort >&2'
record host_sees "$(cat /tmp/vol/guest.txt 2>&1)"
t ro hull run --rm --isolation=vm -v /tmp/rovol:/data:ro $I sh -c 'cat /data/r.txt; echo x > /data/new; echo w=$?; rm -f /data/r.txt; echo rm=$?'
record ro_host "$(ls /tmp/rovol | tr '\n' ' ')$(cat /tmp/rovol/r.txt)"
t link hull run --rm --isolation=vm -v /tmp/vol:/data $I sh -c 'cat /data/etc/hull-host-secret; echo pwned > /data/etc/hull-pwned; echo done'
record host_pwned "$(test -e /newroot/etc/hull-pwned && echo yes || echo no)"
t detached hull run -d --isolation=vm --name vk -v /tmp/vol:/data $I sh -c 'echo live > /data/live.txt; sleep 1000'
wait_for wait_live 60 test -f /tmp/vol/live.txt
record live "$(cat /tmp/vol/live.txt)"
record running_fsd "$(ps -o comm | grep -c '^virtiofsd')"
t rm hull rm -f vk
record left_fsd "$(ps -o comm | grep -c '^virtiofsd')"
record left_sockets "$(find $HULL_ROOT -name 'fs*.sock' | wc -l)"
record left_mounts "$(grep -c /tmp/vol /proc/mounts)"
record left_vmms "$(vmms)"
t file hull run --rm --isolation=vm -v /tmp/vol/host.txt:/x $I true
# A container that fails to start (no such command) leaves no virtiofsd, socket or VMM.
t failed hull run --rm --isolation=vm -v /tmp/vol:/data $I no-such-command
record failed_left "$(ps -o comm | grep -c '^virtiofsd') $(find $HULL_ROOT -name 'fs*.sock' | wc -l) $(vmms)"
"#;
    let harness = vm_harness(rootfs.path()).binary(
        Path::new("/usr/lib/qemu/virtiofsd"),
        "/usr/lib/qemu/virtiofsd",
    );
    let mut r = Results::collect(&VmTestHost::Harness(harness), body);

    // rw: host -> container and container -> host.
    r.expect_code("rw", 0);
    r.expect_out("rw", "from-host\nw=0\n");
    // The executor mounted the device's tag: virtiofs, with nodev (no device cgroup in
    // the guest).
    r.expect_err_contains("rw", "virtiofs\nnodev\nrw\n");
    r.expect_out("host_sees", "from-guest\n");

    // ro: EROFS inside, the host directory unchanged.
    r.expect_code("ro", 0);
    r.expect_out("ro", "ro-content\nw=1\nrm=1\n");
    r.expect_err_contains("ro", "Read-only file system");
    r.expect_out("ro_host", "r.txt ro-content\n");

    // A symlink to /etc inside the volume resolves in the container, not on the host.
    r.expect_code("link", 0);
    let link = format!("{}{}", r.out("link"), r.err("link"));
    r.check(
        !link.contains("TOPSECRET"),
        format!("the container read the host's /etc through the volume: {link:?}"),
    );
    r.expect_out("host_pwned", "no\n");

    // A running container has its virtiofsd (and the sandboxed child); rm removes all.
    r.expect_code("detached", 0);
    r.expect_waited("wait_live");
    r.expect_out("live", "live\n");
    let running = r.out("running_fsd").trim() != "0";
    r.check(
        running,
        "a running vm container with a volume has a virtiofsd",
    );
    r.expect_code("rm", 0);
    r.expect_out("left_fsd", "0\n");
    r.expect_out("left_sockets", "0\n");
    r.expect_out("left_mounts", "0\n");
    r.expect_out("left_vmms", "0\n");

    // A file cannot be shared through virtio-fs: refused with the reason.
    r.expect_code("file", 125);
    r.expect_err_contains("file", "only directories");
    r.expect_code("failed", 127);
    r.expect_out("failed_left", "0 0 0\n");
    r.finish();
}
