//! Tier 4: the holes of issue 10 attacked from inside `--isolation=vm` containers, in the
//! nested harness (the only place these machines boot a Linux guest on KVM). One boot,
//! many containers; see docs/security.md for what each check covers.

mod security_common;
mod vm_common;

use security_common::{add_probe, reports};
use vm_common::{vm_harness, Results, VmTestHost};

/// Every vsock target a container might try: the guest itself (CID 1 = VMADDR_CID_LOCAL,
/// 3 = the guest's own CID), the agent's port (1025), the host (CID 2) on the hello port
/// the host listens on and on another, and VMADDR_CID_ANY.
const VSOCK_TARGETS: &str = "1:1025 3:1025 2:1024 2:1025 2:5000 4294967295:1025";

/// Raw devices a container might reach in the guest: the image disk and the writable
/// layer disk (their numbers from the guest's sysfs), the serial console, /dev/kmsg, and
/// the nodes the test image ships.
const KERNEL_TARGETS: &str = "blk:vda blk:vdb chr:4:64 chr:1:11 node:/evil-vdb node:/evil-ttyS0";

/// The same attacks as the process-mode tests, from inside the guest: vsock (to the agent
/// and to the host, as root and as a user, in the first process and in exec'd ones),
/// terminal injection, uid 4294967295. hull exec keeps working throughout.
#[test]
fn vm_containers_cannot_reach_the_agent_the_host_or_a_terminal() {
    let rootfs = vm_common::busybox_rootfs();
    add_probe(rootfs.path());
    std::fs::write(
        rootfs.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n\
         ghost:x:4294967295:0::/:/bin/sh\n",
    )
    .unwrap();
    let body = format!(
        r#"
V="--isolation=vm"
t vs_root hull run --rm $V $I hull-probe vsock-attack {VSOCK_TARGETS}
t vs_user hull run --rm $V -u 1000:1000 $I hull-probe vsock-attack {VSOCK_TARGETS}
t victim hull run -d $V --name victim $I sleep 1000
t vs_exec hull exec victim hull-probe vsock-attack {VSOCK_TARGETS}
t vs_exec_user hull exec -u 1000 victim hull-probe vsock-attack {VSOCK_TARGETS}
t exec_ok hull exec victim sh -c 'echo exec-works'
t tty hull run --rm $V $I hull-probe tty-attack 'touch /tmp/pwned-vm' 200
t tty_exec hull exec victim hull-probe tty-attack 'touch /tmp/pwned-vm-exec' 200
t tty_t script -qec "hull run --rm -t $V $I hull-probe tty-attack 'touch /tmp/pwned-vm-t' 200" /dev/null
record pwned "$(ls /tmp/pwned-* 2>/dev/null | wc -l)"
t uid hull run --rm $V -u 4294967295 $I id
t uid_group hull run --rm $V -u 0:4294967295 $I id
t uid_ghost hull run --rm $V -u ghost $I id
t uid_exec hull exec -u 4294967295 victim id
t exec_still_ok hull exec victim sh -c 'echo exec-works'
# An image shipping device nodes open to everyone: the guest's writable layer disk
# (virtio-blk's first dynamic major, 254:16 = vdb) and its serial console (4:64). Made here:
# the harness's initramfs carries no device nodes from the host.
mkdir -p /images/evil && cp -a /images/busybox/. /images/evil/
mknod -m 666 /images/evil/evil-vdb b 254 16
mknod -m 666 /images/evil/evil-ttyS0 c 4 64
t import_evil hull image import --rootfs /images/evil -t hull/evil --cmd '["sh"]' -q
E=hull/evil
t kern_root hull run --rm $V $E hull-probe kernel-attack 300 {KERNEL_TARGETS}
t kern_user hull run --rm $V -u 1000:1000 $E hull-probe kernel-attack 300 {KERNEL_TARGETS}
t kern_exec hull exec victim hull-probe kernel-attack 300 blk:vda blk:vdb chr:4:64 chr:1:11
# --read-only makes the root read-only again at the end: it must stay nodev.
t kern_ro hull run --rm $V --read-only $E hull-probe kernel-attack 300 {KERNEL_TARGETS}
# CAP_MKNOD given back (--cap-add MKNOD): the nodes are made, and the guest's device
# cgroup (the executor's eBPF program) refuses to open them; an exec'd process joins it.
t kern_mknod hull run --rm $V --cap-add MKNOD $E hull-probe kernel-attack 300 {KERNEL_TARGETS}
t mk_victim hull run -d $V --cap-add MKNOD --name mkv $I sleep 1000
t kern_mknod_exec hull exec mkv hull-probe kernel-attack 300 blk:vda blk:vdb chr:4:64 chr:1:11
t mk_rm hull rm -f mkv
# --device still works: /dev/kmsg (1:11, refused above) is made and opens for writing.
t device hull run --rm $V --device /dev/kmsg $I hull-probe kernel-attack 0 node:/dev/kmsg
t rm hull rm -f victim
t race_run hull run -d $V --name racer $I true
t race_rm hull rm -f racer
record left_vmms "$(ps -o comm | grep -c '^hull-vmm')"
record left_containers "$(ls /var/lib/hull/run/containers | grep -v '^\.' | wc -l)"
"#
    );
    // Always in the harness: the script checks machine-wide state (/var/lib/hull, every
    // hull-vmm, /tmp) that only a harness machine of its own has to itself.
    let host = VmTestHost::Harness(vm_harness(rootfs.path()));
    let mut r = Results::collect(&host, &body);

    for step in ["vs_root", "vs_user", "vs_exec", "vs_exec_user"] {
        r.expect_code(step, 0);
        let got = reports(r.out(step));
        let what = format!("{step}: {:?}", r.out(step));
        r.check(
            got.get("vsock_socket").map(String::as_str) == Some("EPERM"),
            what.clone(),
        );
        r.check(
            got.get("vsock_socketpair").map(String::as_str) == Some("EPERM"),
            what.clone(),
        );
        for target in VSOCK_TARGETS.split(' ') {
            let key = format!("vsock_connect_{}", target.replace(':', "_"));
            r.check(
                got.get(&key).map(String::as_str) == Some("socket:EPERM"),
                format!("{key}: {what}"),
            );
        }
    }
    r.expect_out("exec_ok", "exec-works\n");
    r.expect_out("exec_still_ok", "exec-works\n");

    for step in ["tty", "tty_exec", "tty_t"] {
        let got = reports(r.out(step));
        let what = format!("{step}: {:?}", r.out(step));
        r.check(
            got.get("tty_attack").map(String::as_str) == Some("done"),
            what.clone(),
        );
        for fd in 0..3 {
            for key in [format!("tiocsti_{fd}"), format!("tioclinux_{fd}")] {
                r.check(
                    got.get(&key).map(String::as_str) == Some("EPERM"),
                    format!("{key}: {what}"),
                );
            }
        }
        r.check(
            got.get("open_dev_console").map(String::as_str) == Some("ENOENT"),
            what.clone(),
        );
        if step == "tty_t" {
            r.check(
                got.get("tiocsti_dev_tty").map(String::as_str) == Some("EPERM"),
                what.clone(),
            );
        } else {
            r.check(
                got.get("ctty").map(String::as_str) == Some("0"),
                what.clone(),
            );
            r.check(
                got.get("open_dev_tty").map(String::as_str) == Some("ENXIO"),
                what.clone(),
            );
        }
    }
    r.expect_out("pwned", "0\n");

    for step in ["uid", "uid_group", "uid_ghost", "uid_exec"] {
        r.expect_code(step, 125);
        r.expect_err_contains(step, "4294967295");
        r.expect_out(step, "");
    }
    r.expect_code("import_evil", 0);
    for (step, image_nodes) in [
        ("kern_root", true),
        ("kern_user", true),
        ("kern_exec", false),
        ("kern_ro", true),
        ("kern_mknod", true),
        ("kern_mknod_exec", false),
    ] {
        kernel_attack_held(&mut r, step, image_nodes);
    }
    r.expect_code("mk_victim", 0);
    r.expect_code("mk_rm", 0);
    r.expect_code("device", 0);
    let got = reports(r.out("device"));
    r.check(
        got.get("node_dev_kmsg_write").map(String::as_str) == Some("open:ok"),
        format!(
            "--device /dev/kmsg: {:?} (stderr {:?})",
            r.out("device"),
            r.err("device")
        ),
    );
    // A container that exits at once, removed while hull may still be starting or
    // reaping it: nothing is left (checked below with the rest).
    r.expect_code("race_run", 0);
    r.expect_code("race_rm", 0);
    r.expect_code("rm", 0);
    r.expect_out("left_vmms", "0\n");
    r.expect_out("left_containers", "0\n");
    r.finish();
}

/// What `hull-probe kernel-attack` must report from a vm container: no kernel memory or
/// page-frame table, no uevent socket, no device node made (a vm container has no
/// CAP_MKNOD by default) or, with `--cap-add MKNOD` (`kern_mknod*`), nodes made that do not
/// open (in /dev: the guest's device cgroup, EPERM; in /tmp: the nodev root, EACCES), and
/// none of the image's nodes opened (the container's root is mounted nodev).
fn kernel_attack_held(r: &mut Results, step: &str, image_nodes: bool) {
    let mknod = step.starts_with("kern_mknod");
    let got = reports(r.out(step));
    let what = format!("{step}: {:?} (stderr {:?})", r.out(step), r.err(step));
    r.expect_code(step, 0);
    r.check(
        got.get("kernel_attack").map(String::as_str) == Some("done"),
        what.clone(),
    );
    for file in ["kpageflags", "kpagecount", "kpagecgroup", "kcore"] {
        let v = got.get(&format!("read_{file}")).map(String::as_str);
        r.check(
            v.is_some_and(|v| v == "ok:0" || v.starts_with("open:")),
            format!("/proc/{file}: {what}"),
        );
    }
    r.check(
        got.get("write_sysrq_trigger")
            .is_some_and(|v| v.starts_with("open:")),
        format!("sysrq: {what}"),
    );
    r.check(
        got.get("uevent_socket").map(String::as_str) == Some("EPERM"),
        format!("uevent: {what}"),
    );
    for key in ["blk_vda", "blk_vdb", "chr_4_64", "chr_1_11"] {
        for dir in ["dev", "tmp"] {
            let made = got.get(&format!("mknod_{dir}_{key}")).map(String::as_str);
            // Root: EPERM (no CAP_MKNOD); uid 1000 may already fail on the directory, and
            // a read-only root on the file system (/tmp is on the root).
            // A read-only container has no writable layer disk: no vdb to make a node for.
            let absent = made.is_none()
                && got.get(&format!("{key}_sysfs")).map(String::as_str) == Some("ENOENT");
            if mknod {
                r.check(made == Some("ok"), format!("mknod {dir} {key}: {what}"));
                let refused = if dir == "dev" {
                    "open:EPERM"
                } else {
                    "open:EACCES"
                };
                for access in ["read", "write"] {
                    let v = got
                        .get(&format!("{dir}_{key}_{access}"))
                        .map(String::as_str);
                    r.check(
                        v == Some(refused),
                        format!("{dir} {key} {access} (want {refused}): {what}"),
                    );
                }
                continue;
            }
            r.check(
                made == Some("EPERM")
                    || (step == "kern_user" && made == Some("EACCES"))
                    || (step == "kern_ro" && dir == "tmp" && made == Some("EROFS"))
                    || (step == "kern_ro" && absent),
                format!("mknod {dir} {key}: {what}"),
            );
        }
    }
    let nodes: &[&str] = if image_nodes {
        &["evil-vdb", "evil-ttyS0"]
    } else {
        &[]
    };
    for node in nodes {
        for access in ["read", "write"] {
            let v = got
                .get(&format!("node_{node}_{access}"))
                .map(String::as_str);
            r.check(v == Some("open:EACCES"), format!("{node} {access}: {what}"));
        }
    }
}
