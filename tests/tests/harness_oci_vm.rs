//! Tier 4: hull-oci's vm model inside the nested harness (the only place these machines
//! boot a Linux guest on KVM): runc's lifecycle commands on a VM-backed container, chosen
//! by the `io.hull.isolation=vm` annotation and by the `hull-oci-vm` name. What a caller
//! (conmon, containerd's shim) relies on: `run` gives the container's output and exit
//! status; the pid-file process lives while the container does and the state JSON follows
//! created/running/paused/stopped; exec runs in the same guest; pause stops the VM;
//! kill and delete leave no VMM, no state; a bound file reaches the guest; a bound host
//! directory is refused naming the mount, leaving nothing.

mod vm_common;

use serde_json::{json, Value};
use vm_common::{vm_harness, Results, GUEST_KERNEL_PREFIX};

use hull_tests::oci::default_config;

/// A config.json for the busybox root at /images/busybox (absolute root path, as podman
/// gives one), running `args` in the vm model.
fn config(args: &[&str], annotate: bool, extra_mounts: &[Value]) -> String {
    let mut c = default_config(args);
    c["root"] = json!({"path": "/images/busybox", "readonly": false});
    if annotate {
        c["annotations"] = json!({"io.hull.isolation": "vm"});
    }
    let mounts = c["mounts"].as_array_mut().unwrap();
    mounts.extend(extra_mounts.iter().cloned());
    serde_json::to_string_pretty(&c).unwrap()
}

#[test]
fn hull_oci_runs_vm_containers_through_runcs_lifecycle() {
    let rootfs = vm_common::busybox_rootfs();
    let greeting = json!({"destination": "/etc/greeting", "type": "bind",
        "source": "/tmp/greeting", "options": ["rbind", "ro"]});
    let dir_bind = json!({"destination": "/data", "type": "bind",
        "source": "/tmp", "options": ["rbind"]});
    let harness = vm_harness(rootfs.path())
        .binary(
            &hull_tests::bin_dir().join("hull-oci"),
            "/usr/local/bin/hull-oci",
        )
        .text(
            "/b/run/config.json",
            &config(
                &[
                    "sh",
                    "-c",
                    "echo out; echo err >&2; uname -r; cat /etc/greeting; exit 3",
                ],
                true,
                &[greeting],
            ),
            false,
        )
        .text(
            "/b/sleep/config.json",
            &config(&["sleep", "1000"], false, &[]),
            false,
        )
        .text(
            "/b/dir/config.json",
            &config(&["true"], true, &[dir_bind]),
            false,
        );
    let body = r#"
# hull-vmm's jail pivot_roots into its directory, which the kernel refuses while the root
# is the initramfs: hull-oci runs chrooted into /newroot, as `hull` does (vm_common).
# (hull-oci-vm keeps its name: the name is what asks for the vm model.)
mkdir -p /usr/local/libexec
mv /usr/local/bin/hull-oci /usr/local/libexec/hull-oci
ln -s hull-oci /usr/local/libexec/hull-oci-vm
ln -s /usr/local/bin/hull-vmm /usr/local/libexec/hull-vmm
for n in hull-oci hull-oci-vm; do
    printf '#!/bin/sh\nexec chroot /newroot /usr/local/libexec/%s "$@"\n' $n > /usr/local/bin/$n
    chmod 755 /usr/local/bin/$n
done
leases() { ls /run/hull-vm-ids 2>/dev/null | grep -c '^[0-9]'; }
cgroups() { ls -d /sys/fs/cgroup/hull-oci/*/ 2>/dev/null | wc -l; }
# No hull-vmm runs (a zombie, whose parent was killed, does not count).
no_live_vmms() {
    for p in /proc/[0-9]*; do
        [ "$(cat $p/comm 2>/dev/null)" = hull-vmm ] && ! grep -q '^State:.Z' $p/status && return 1
    done
    return 0
}
echo "hello from the host" > /tmp/greeting
OCI="hull-oci --root /run/hoci"
V="hull-oci-vm --root /run/hoci"
st() { $OCI state "$1" | tr -d ' \n'; }
stopped() { st "$1" | grep -q '"status":"stopped"'; }
t run $OCI run --bundle /b/run r1
record run_left "$(ls /run/hoci | wc -l)"
# The lifecycle, by the hull-oci-vm name (no annotation in this bundle).
t create $V create --bundle /b/sleep --pid-file /tmp/c1.pid c1
record state_created "$(st c1)"
pid=$(cat /tmp/c1.pid)
record pid_alive "$(kill -0 $pid && echo alive)"
t start $OCI start c1
t start_again $OCI start c1
record state_running "$(st c1)"
# c1's VMM is jailed as hull's are.
record_jailed_vmm hull-oci/c1
t exec $OCI exec c1 sh -c 'echo exec-ok; uname -r'
t exec_code $OCI exec c1 sh -c 'exit 7'
t ps $OCI ps c1
t pause $OCI pause c1
record state_paused "$(st c1)"
record vmm_stopped "$(for p in $(ps -o pid,comm | awk '$2=="hull-vmm"{print $1}'); do grep -h "^State:" /proc/$p/status; done)"
t resume $OCI resume c1
record state_resumed "$(st c1)"
record c1_logs "$(cat /run/hoci/c1/keeper.log /run/hoci/c1/vmm.log; tail -n 5 /run/hoci/c1/console.log)"
t delete_running $OCI delete c1
t kill $OCI kill c1 KILL
wait_for wait_c1 120 stopped c1
record state_stopped "$(st c1)"
record pid_gone "$(kill -0 $pid 2>/dev/null && echo alive || echo gone)"
t delete $OCI delete c1
t state_deleted $OCI state c1
record c1_left "leases $(leases) cgroups $(cgroups) jails $(find /run/hoci -name jail | wc -l)"
# The keeper killed (-9): its VMM goes with it; delete releases the lease and the cgroup.
t create_k $V create --bundle /b/sleep --pid-file /tmp/k1.pid k1
record k1_jailed "leases $(leases) cgroups $(cgroups)"
kill -9 $(cat /tmp/k1.pid)
wait_for wait_k1 120 stopped k1
wait_for wait_k1_vmm 120 no_live_vmms
t delete_k $OCI delete k1
record k1_left "leases $(leases) cgroups $(cgroups)"
# A VM that cannot boot (not a kernel): create fails saying so, and leaves nothing.
echo garbage > /tmp/not-a-kernel
t create_bad env HULL_KERNEL=/tmp/not-a-kernel $V create --bundle /b/sleep bad1
record bad_left "state $(ls /run/hoci | wc -l) leases $(leases) cgroups $(cgroups) vmms $(ps -o comm | grep -c '^hull-vmm')"
# A host directory cannot reach the guest: refused by name, nothing left.
t dir $OCI create --bundle /b/dir d1
record left_state "$(ls /run/hoci | wc -l)"
record left_vmms "$(ps -o comm | grep -c '^hull-vmm')"
"#;
    // In the harness: the script checks machine-wide state (VMMs, /run/hoci).
    let host = vm_common::VmTestHost::Harness(harness);
    let mut r = Results::collect(&host, body);

    r.expect_code("run", 3);
    let out = r.out("run").to_string();
    let lines: Vec<&str> = out.lines().collect();
    r.check(
        lines.first() == Some(&"out")
            && lines
                .get(1)
                .is_some_and(|k| k.starts_with(GUEST_KERNEL_PREFIX))
            && lines.get(2) == Some(&"hello from the host"),
        format!("run: the guest's output, its kernel and the bound file: {out:?}"),
    );
    r.expect_err_contains("run", "err");
    r.expect_out("run_left", "0\n");

    eprintln!("c1's keeper.log, vmm.log, console:\n{}", r.out("c1_logs"));
    r.expect_code("create", 0);
    r.expect_out_contains("state_created", r#""status":"created""#);
    r.expect_out("pid_alive", "alive\n");
    r.expect_code("start", 0);
    r.expect_code("start_again", 1);
    r.expect_out_contains("state_running", r#""status":"running""#);
    r.expect_code("exec", 0);
    r.expect_out_contains("exec", "exec-ok\n6.12.");
    r.expect_code("exec_code", 7);
    r.expect_code("ps", 0);
    r.expect_code("pause", 0);
    r.expect_out_contains("state_paused", r#""status":"paused""#);
    r.expect_out_contains("vmm_stopped", "T (stopped)");
    r.expect_code("resume", 0);
    r.expect_out_contains("state_resumed", r#""status":"running""#);
    r.expect_code("delete_running", 1);
    r.expect_code("kill", 0);
    r.expect_out_contains("state_stopped", r#""status":"stopped""#);
    r.expect_out("pid_gone", "gone\n");
    r.expect_code("delete", 0);
    r.expect_code("state_deleted", 1);
    r.expect_err_contains("state_deleted", "does not exist");

    // Jailed as hull's VMMs are (the same launch code), and nothing of the jail outlives
    // delete, a killed keeper or a failed create.
    vm_common::check_jailed_vmm(&mut r, "hull-oci/c1");
    r.expect_out("c1_left", "leases 0 cgroups 0 jails 0\n");
    r.expect_code("create_k", 0);
    r.expect_out("k1_jailed", "leases 1 cgroups 1\n");
    r.check(
        r.out("wait_k1").trim() != "timeout",
        "k1 stopped after its keeper was killed",
    );
    r.check(
        r.out("wait_k1_vmm").trim() != "timeout",
        "k1's VMM died with its keeper",
    );
    r.expect_code("delete_k", 0);
    r.expect_out("k1_left", "leases 0 cgroups 0\n");
    r.expect_code("create_bad", 1);
    r.expect_err_contains("create_bad", "hull-vmm exited");
    r.expect_out("bad_left", "state 0 leases 0 cgroups 0 vmms 0\n");

    r.expect_code("dir", 1);
    r.expect_err_contains("dir", "/data");
    r.expect_err_contains("dir", "virtio-fs");
    r.expect_out("left_state", "0\n");
    r.expect_out("left_vmms", "0\n");
    r.finish();
}
