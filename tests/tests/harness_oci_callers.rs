//! Tier 4: hull-oci's vm model driven as its users drive it, inside the nested harness (the
//! only place these machines boot a Linux guest on KVM), in one boot: podman 4.3 with
//! `--runtime hull-oci --annotation io.hull.isolation=vm` (`run --rm` and its exit code,
//! `run -d` + `exec` + `logs` + `stop` + `rm`) and containerd 1.6's `ctr run
//! --runc-binary hull-oci-vm` (the runc shim running hull-oci; `--rm` with its exit code,
//! `-d` + `tasks kill` + `rm`). What a user checks: the command's output comes from the
//! guest's kernel, exit codes are the container's, and nothing (VMM, lease, cgroup,
//! state) is left once the callers removed their containers.
//!
//! podman, conmon, containerd, its shim and ctr run chrooted into the harness's /newroot
//! (`P`, vm_common), as hull does there: hull-vmm's jail pivot_roots, which the kernel
//! refuses on the initramfs root, and the mounts the callers make (podman's shm, the shim's
//! rootfs) are seen by hull-oci only in the same root. podman uses the vfs storage driver
//! and no network (the network of OCI containers is the `net` engineer's issue 14).

mod vm_common;

use std::path::Path;

use vm_common::{vm_harness, Results, GUEST_KERNEL_PREFIX};

/// The image both callers run: busybox with `env` as entrypoint (podman keeps an image's
/// entrypoint; ctr replaces it), saved by the host's podman as a docker-archive.
const IMAGE: &str = "localhost/hull-oci-vm/busybox:1";

#[test]
fn podman_and_ctr_run_vm_containers_through_hull_oci() {
    let rootfs = vm_common::busybox_rootfs();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("busybox.tar");
    let host_podman = hull_tests::oci::Podman::new();
    hull_tests::oci::busybox_archive(&host_podman, IMAGE, &["env"], &archive);
    drop(host_podman);

    let mut harness = vm_harness(rootfs.path())
        .memory_mib(3072)
        .binary(
            &hull_tests::bin_dir().join("hull-oci"),
            "/usr/local/libexec/hull-oci",
        )
        .file(&archive, "/images/busybox.tar");
    for bin in [
        "podman",
        "conmon",
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
    ] {
        let host = Path::new("/usr/bin").join(bin);
        harness = harness.binary(&host, &format!("/usr/bin/{bin}"));
    }
    for f in [
        "/etc/containers/policy.json",
        "/usr/share/containers/containers.conf",
        "/usr/share/containers/seccomp.json",
    ] {
        harness = harness.file(Path::new(f), f);
    }
    let body = format!(
        r#"
IMG={IMAGE}
B=/usr/local/libexec
ln -s hull-oci $B/hull-oci-vm
ln -s /usr/local/bin/hull-vmm $B/hull-vmm
[ -f /etc/passwd ] || echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd
[ -f /etc/group ] || echo 'root:x:0:' > /etc/group
mkdir -p /var/lib/pm /run/pm /var/tmp/pm /var/lib/ctd /run/ctd
leases() {{ ls /run/hull-vm-ids 2>/dev/null | grep -c '^[0-9]'; }}
live_vmms() {{
    for p in /proc/[0-9]*; do
        [ "$(cat $p/comm 2>/dev/null)" = hull-vmm ] && ! grep -q '^State:.Z' $p/status && echo $p
    done | wc -l
}}
no_vmm() {{ [ "$(live_vmms)" = 0 ]; }}
# The containers' cgroups: podman's (cgroupfs: libpod_parent/libpod-ID), ctr's (default/ID),
# hull-oci's own default.
cgroups() {{ ls -d /sys/fs/cgroup/libpod_parent/libpod-*/ /sys/fs/cgroup/default/*/ /sys/fs/cgroup/hull-oci/*/ 2>/dev/null | wc -l; }}
left() {{ echo "vmms $(live_vmms) leases $(leases) cgroups $(cgroups)"; }}

# podman, its state and storage of its own, the vm model by annotation.
PM="P env TMPDIR=/var/tmp/pm podman --runtime $B/hull-oci --root /var/lib/pm/storage --runroot /run/pm --tmpdir /var/tmp/pm --cgroup-manager cgroupfs --events-backend file --storage-driver vfs"
RUN="--network none --annotation io.hull.isolation=vm"
t pm_load $PM load -i /images/busybox.tar
t pm_run $PM run --rm $RUN $IMG sh -c 'echo hello-podman; uname -r; exit 5'
t pm_run_d $PM run -d --name web $RUN $IMG sh -c 'echo started; trap "exit 0" TERM; while :; do sleep 1; done'
pm_started() {{ $PM logs web 2>/dev/null | grep -q started; }}
wait_for wait_pm_started 180 pm_started
t pm_exec $PM exec web sh -c 'echo exec-ok; uname -r'
t pm_exec_code $PM exec web sh -c 'exit 4'
t pm_ps $PM ps --format '{{{{.Names}}}} {{{{.Status}}}}'
t pm_logs $PM logs web
t pm_stop $PM stop -t 20 web
t pm_inspect $PM inspect --format '{{{{.State.ExitCode}}}}' web
t pm_rm $PM rm web
wait_for wait_pm_vmms 120 no_vmm
record pm_left "$(left)"

# containerd with its own root, state and socket; the runc shim runs hull-oci-vm.
cat > /run/ctd/config.toml <<EOF
version = 2
root = "/var/lib/ctd/root"
state = "/run/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "/run/ctd/ctd.sock"
[ttrpc]
  address = "/run/ctd/ctd.sock.ttrpc"
EOF
P containerd --config /run/ctd/config.toml > /tmp/ctd.log 2>&1 &
ctd=$!
CTR="P ctr --address /run/ctd/ctd.sock"
ctd_up() {{ $CTR version; }}
wait_for wait_ctd 120 ctd_up
OPTS="--snapshotter native --runc-binary $B/hull-oci-vm --runc-root /run/ctd/hull-oci"
t ctr_import $CTR images import --snapshotter native /images/busybox.tar
t ctr_run $CTR run --rm $OPTS $IMG c1 sh -c 'echo hello-ctr; uname -r; exit 6'
t ctr_run_d $CTR run -d $OPTS $IMG c2 sleep 1000
t ctr_tasks $CTR tasks ls
t ctr_kill $CTR tasks kill -s SIGKILL c2
c2_stopped() {{ $CTR tasks ls | grep c2 | grep -q STOPPED; }}
wait_for wait_ctr_stopped 120 c2_stopped
t ctr_task_rm $CTR tasks rm c2
t ctr_rm $CTR containers rm c2
wait_for wait_ctr_vmms 120 no_vmm
record ctr_left "$(left) state $(ls /run/ctd/hull-oci/default 2>/dev/null | wc -l)"
kill $ctd
record ctd_log "$(tail -n 20 /tmp/ctd.log)"
"#
    );
    let host = vm_common::VmTestHost::Harness(harness);
    let mut r = Results::collect(&host, &body);
    eprintln!("containerd's log (tail):\n{}", r.out("ctd_log"));

    // podman
    r.expect_code("pm_load", 0);
    r.expect_code("pm_run", 5);
    let out = r.out("pm_run").to_string();
    r.check(
        out.starts_with("hello-podman\n") && out.contains(&format!("\n{GUEST_KERNEL_PREFIX}")),
        format!("podman run: the container's output and the guest's kernel: {out:?}"),
    );
    r.expect_code("pm_run_d", 0);
    r.expect_waited("wait_pm_started");
    r.expect_code("pm_exec", 0);
    r.expect_out_contains("pm_exec", &format!("exec-ok\n{GUEST_KERNEL_PREFIX}"));
    r.expect_code("pm_exec_code", 4);
    r.expect_out_contains("pm_ps", "web Up");
    r.expect_out_contains("pm_logs", "started");
    r.expect_code("pm_stop", 0);
    r.expect_out("pm_inspect", "0\n");
    r.expect_code("pm_rm", 0);
    r.expect_waited("wait_pm_vmms");
    r.expect_out("pm_left", "vmms 0 leases 0 cgroups 0\n");

    // ctr
    r.expect_waited("wait_ctd");
    r.expect_code("ctr_import", 0);
    r.expect_code("ctr_run", 6);
    let out = r.out("ctr_run").to_string();
    r.check(
        out.starts_with("hello-ctr\n") && out.contains(&format!("\n{GUEST_KERNEL_PREFIX}")),
        format!("ctr run: the container's output and the guest's kernel: {out:?}"),
    );
    r.expect_code("ctr_run_d", 0);
    r.expect_out_contains("ctr_tasks", "RUNNING");
    r.expect_code("ctr_kill", 0);
    r.expect_waited("wait_ctr_stopped");
    r.expect_code("ctr_task_rm", 0);
    r.expect_code("ctr_rm", 0);
    r.expect_waited("wait_ctr_vmms");
    r.expect_out("ctr_left", "vmms 0 leases 0 cgroups 0 state 0\n");
    r.finish();
}
