//! Tier 4: the vm model's writable layer inside the nested harness. A vm container's layer
//! is an ext4 disk under the state root (`containers/<id>/upper.ext4`, the guest's
//! `/dev/vdb`): what a container writes (and deletes) survives `stop`/`start`, other
//! containers of the image do not see it, `--storage-opt size=` is the disk's size and a
//! full layer is ENOSPC inside the guest with hull still working, `--read-only` gets no
//! disk, and `rm` leaves no disk, directory or VMM behind. (The process model's
//! counterparts: host_storage.rs.)

mod vm_common;

use vm_common::{vm_harness, Results};

#[test]
fn vm_writable_layer_is_a_disk_kept_across_stop_start_and_removed_by_rm() {
    let rootfs = vm_common::busybox_rootfs();
    let body = r#"
C=/var/lib/hull/containers
# Polls (bounded by the step's timeout) until container $1 has exited.
cat > /tmp/wait_exited <<'SCRIPT'
until hull inspect "$1" | grep -q '"status": *"exited"'; do sleep 0.2; done
SCRIPT
cat > /tmp/keep.sh <<'SCRIPT'
if [ -f /data/kept ]; then cat /data/kept; test -e /etc/group || echo group-deleted
else mkdir -p /data; echo first-run > /data/kept; rm /etc/group; echo wrote; fi
SCRIPT
t first hull run --isolation=vm --name keep $I sh -c "$(cat /tmp/keep.sh)"
record disk_first "$(ls $C/*/ 2>&1)"
record disk_size "$(stat -c %s $C/*/upper.ext4)"
record disk_alloc_kib "$(du -k $C/*/upper.ext4 | cut -f1)"
t start hull start keep
t start_wait sh /tmp/wait_exited keep
t logs hull logs keep
t peek hull run --rm --isolation=vm $I sh -c 'test -f /etc/group && echo image-intact; test -e /data/kept || echo no-data'
t small hull run --isolation=vm --name small --storage-opt size=32m $I sh -c 'df -k / | tail -n 1 | tr -s " " | cut -d" " -f2; dd if=/dev/zero of=/fill bs=1M count=64 2>&1; echo dd=$?; rm /fill; echo after > /after && cat /after'
record small_size "$(stat -c %s $C/$(hull inspect small | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' | head -n 1)/upper.ext4)"
t still hull run --rm --isolation=vm $I echo still-fine
t ro hull run --isolation=vm --name ro --read-only $I true
record ro_storage "$(ls $C 2>/dev/null | wc -l)"
t bad_size hull run --rm --isolation=vm --storage-opt size=1m $I true
t rm hull rm keep small ro
record left_storage "$(ls -A $C 2>/dev/null | wc -l)"
record left_containers "$(ls /var/lib/hull/run/containers | grep -v '^\.' | wc -l)"
record left_vmms "$(ps -o comm | grep -c '^hull-vmm')"
"#;
    // In the harness: the script checks machine-wide state (disks, mounts, VMMs).
    let host = vm_common::VmTestHost::Harness(vm_harness(rootfs.path()));
    let mut r = Results::collect(&host, body);

    // First run writes; the layer is a disk under the persistent root, sparse.
    r.expect_code("first", 0);
    r.expect_out("first", "wrote\n");
    r.expect_out_contains("disk_first", "upper.ext4");
    r.expect_out("disk_size", &format!("{}\n", 10u64 << 30));
    let alloc: u64 = r.out("disk_alloc_kib").trim().parse().unwrap_or(u64::MAX);
    r.check(
        alloc < 256 << 10,
        format!("the 10 GiB layer disk is sparse: {alloc} KiB allocated"),
    );

    // A restart finds the file written and the image file deleted.
    r.expect_code("start", 0);
    r.expect_code("start_wait", 0);
    r.expect_out("logs", "wrote\nfirst-run\ngroup-deleted\n");
    r.expect_out("peek", "image-intact\nno-data\n");

    // size=32m is the disk: the guest sees ~32 MiB, a 64 MiB write fails with ENOSPC
    // inside, the container goes on (the space is freed and usable again).
    r.expect_code("small", 0);
    let small = r.out("small").to_string();
    let total_kib: u64 = small
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    r.check(
        (24 << 10..=32 << 10).contains(&total_kib),
        format!("size=32m: df / reports {total_kib} KiB: {small:?}"),
    );
    r.check(
        small.contains("No space left on device") && small.contains("dd=1"),
        format!("the full layer gives ENOSPC in the container: {small:?}"),
    );
    r.check(
        small.ends_with("after\n"),
        format!("after ENOSPC the layer works again: {small:?}"),
    );
    r.expect_out("small_size", &format!("{}\n", 32u64 << 20));
    r.expect_out("still", "still-fine\n");

    // --read-only: no writable layer, no disk.
    r.expect_code("ro", 0);
    r.expect_out("ro_storage", "2\n");
    r.expect_code("bad_size", 125);
    r.expect_err_contains("bad_size", "16m");

    // rm leaves nothing.
    r.expect_code("rm", 0);
    r.expect_out("left_storage", "0\n");
    r.expect_out("left_containers", "0\n");
    r.expect_out("left_vmms", "0\n");
    r.finish();
}
