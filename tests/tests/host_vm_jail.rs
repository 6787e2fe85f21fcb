//! The jail of `--isolation=vm` on this host, driven through `hull run` as a user would.
//! This host's PVM cannot boot the Linux guest (tests/harness_vm.rs does that), but it runs
//! tiny hand-made guests (tests/support/tiny_guest.rs), given with `--kernel`: they never
//! start an agent, so hull waits for its hello, long enough to look at the VMM it started.
//!
//! What a user (or an attacker who took over the VMM) would check: the VMM runs as an
//! unprivileged per-VM uid with no capabilities, no_new_privs and seccomp on every thread,
//! as PID 1 of its own PID namespace, in its own mount/net/IPC/UTS namespaces, with the jail
//! directory (holding only its sockets) as its root and no host mount; in its own cgroup
//! capped at guest memory plus a bounded overhead; a guest that abuses the virtio devices
//! hurts neither the host nor a neighbouring VM; a forbidden system call ends the VMM and
//! hull says which; and nothing stays behind, not even after `kill -9` of hull. A VM with a
//! network: its VMM is jailed in the container's network namespace, where its TAP is.

mod network_common;
mod process_common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hull_tests::tiny_guest;
use network_common::{Env, NetEnv, IMAGE};

/// Where hull keeps the VM id leases (runtime/src/vm/ids.rs).
const LEASES: &str = "/run/hull-vm-ids";
/// The default VM id range's first id.
const FIRST_VM_ID: u32 = 0xc000_0000;
/// Upper bound for steps that are quick unless something hangs.
const NO_HANG: Duration = Duration::from_secs(60);

/// `hull run --rm --isolation=vm --kernel KERNEL IMAGE true` on this PVM host, waiting up
/// to `boot_timeout` s for an agent that never comes.
fn run_tiny(env: &Env, kernel: &Path, boot_timeout: u32, extra: &[&str]) -> std::process::Command {
    let mut c = env.hull(["run", "--rm", "--isolation", "vm", "--kernel"]);
    c.arg(kernel)
        .args(extra)
        .args([IMAGE, "true"])
        .env("HULL_VM_SKIP_HOST_CHECK", "1")
        .env("HULL_VM_BOOT_TIMEOUT", boot_timeout.to_string())
        .env_remove("HULL_VMM_SECCOMP_TEST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn write_kernel(env: &Env, name: &str, image: &[u8]) -> PathBuf {
    let path = env.root.path().join(name);
    fs::write(&path, image).unwrap();
    path
}

/// Host pids of the hull-vmm processes started for this test root.
fn vmms_of(env: &Env) -> Vec<u32> {
    let root = env.root.path().display().to_string();
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
        if comm.trim() == "hull-vmm" && String::from_utf8_lossy(&cmd).contains(&root) {
            pids.push(pid);
        }
    }
    pids
}

/// Polls `what` until it returns Some, failing after `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_field(pid: u32, task: &str, name: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/task/{task}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The container state directory of the VMM `pid` (from its `--jail DIR` argument).
fn jail_dir_of(pid: u32) -> PathBuf {
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmd
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let at = args
        .iter()
        .position(|a| a == "--jail")
        .expect("hull starts the VMM with --jail");
    PathBuf::from(&args[at + 1])
}

/// Kills a foreground `hull` that a test no longer needs, and reaps it.
struct Hull(Child);

impl Drop for Hull {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_vm_containers_monitor_is_jailed_survives_a_hostile_neighbour_and_leaves_nothing() {
    let env = Env::new();
    let ticking = write_kernel(&env, "ticking.elf", &tiny_guest::ticking_kernel());
    let hostile = write_kernel(&env, "hostile.elf", &tiny_guest::hostile_kernel());

    // A well-behaved VM, waiting (long) for an agent that never comes.
    let mut hull = Hull(
        run_tiny(&env, &ticking, 300, &["--memory", "64m", "--cpus", "1"])
            .spawn()
            .unwrap(),
    );
    let vmm = wait_for(NO_HANG, "the jailed VMM", || vmms_of(&env).pop());
    let jail = jail_dir_of(vmm);
    let state = jail.parent().unwrap().to_path_buf();
    let id = state.file_name().unwrap().to_string_lossy().into_owned();
    let console = state.join("console.log");
    wait_for(NO_HANG, "the guest's console output", || {
        fs::read(&console).ok().filter(|c| c.contains(&b't'))
    });

    // Every thread of it: an unprivileged per-VM uid, no capabilities, seccomp.
    let uid: u32 = status_field(vmm, &vmm.to_string(), "Uid:")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(uid >= FIRST_VM_ID, "uid {uid} is from the VM id range");
    let tasks: Vec<String> = fs::read_dir(format!("/proc/{vmm}/task"))
        .unwrap()
        .map(|t| t.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut checked = 0;
    for task in &tasks {
        let name = status_field(vmm, task, "Name:");
        // KVM lists a kernel worker of its own with the process (kvm-nx-lpage-recovery).
        if *task != vmm.to_string() && !name.starts_with("vcpu") {
            continue;
        }
        checked += 1;
        let ids = format!("{uid} {uid} {uid} {uid}");
        assert_eq!(status_field(vmm, task, "Uid:"), ids, "{name}");
        assert_eq!(status_field(vmm, task, "Gid:"), ids, "{name}");
        assert_eq!(status_field(vmm, task, "Groups:"), "", "{name}");
        for caps in ["CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
            assert_eq!(status_field(vmm, task, caps), "0000000000000000", "{name}");
        }
        assert_eq!(status_field(vmm, task, "NoNewPrivs:"), "1", "{name}");
        assert_eq!(status_field(vmm, task, "Seccomp:"), "2", "{name}");
    }
    assert_eq!(checked, 2, "main thread and one vCPU");
    // PID 1 of its own PID namespace, and namespaces of its own.
    assert_eq!(
        status_field(vmm, &vmm.to_string(), "NSpid:"),
        format!("{vmm} 1")
    );
    for ns in ["mnt", "net", "ipc", "uts", "pid"] {
        let ours = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let its = fs::read_link(format!("/proc/{vmm}/ns/{ns}")).unwrap();
        assert_ne!(ours, its, "the VMM has a {ns} namespace of its own");
    }
    // Its root is the jail directory, no host file system is mounted in its view, and the
    // directory holds its sockets only.
    let root = fs::metadata(format!("/proc/{vmm}/root/")).unwrap();
    let jail_meta = fs::metadata(&jail).unwrap();
    assert_eq!((root.dev(), root.ino()), (jail_meta.dev(), jail_meta.ino()));
    let mounts = fs::read_to_string(format!("/proc/{vmm}/mountinfo")).unwrap();
    assert_eq!(mounts.lines().count(), 1, "only the jail: {mounts}");
    assert_eq!((jail_meta.uid(), jail_meta.mode() & 0o777), (uid, 0o700));
    let names: HashSet<String> = fs::read_dir(&jail)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        HashSet::from(["vsock.sock".to_string(), "vsock.sock_1024".to_string()])
    );
    // Its lease, and its cgroup: guest memory (64 MiB asked + 64 for the guest kernel)
    // plus 64 MiB for the VMM, one vCPU plus 4 tasks, one CPU.
    let lease = fs::read_to_string(Path::new(LEASES).join(uid.to_string())).unwrap();
    assert!(lease.starts_with(&format!("{vmm} ")), "lease {lease:?}");
    let cgroups = fs::read_to_string(format!("/proc/{vmm}/cgroup")).unwrap();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let cg = |controller: &str, file: &str| {
        let dir = if v2 {
            format!("/sys/fs/cgroup/hull/{id}")
        } else {
            format!("/sys/fs/cgroup/{controller}/hull/{id}")
        };
        fs::read_to_string(format!("{dir}/{file}"))
            .unwrap_or_else(|e| panic!("{dir}/{file}: {e}; the VMM's cgroups: {cgroups}"))
            .trim()
            .to_string()
    };
    let memory = ((64 + 64 + 64u64) << 20).to_string();
    if v2 {
        assert_eq!(cg("", "memory.max"), memory);
        assert_eq!(cg("", "pids.max"), "5");
        assert_eq!(cg("", "cpu.max"), "100000 100000");
    } else {
        assert_eq!(cg("memory", "memory.limit_in_bytes"), memory);
        assert_eq!(cg("pids", "pids.max"), "5");
        assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "100000");
    }
    assert!(
        cg("pids", "cgroup.procs")
            .lines()
            .any(|p| p == vmm.to_string()),
        "the VMM is in its cgroup"
    );

    // A hostile guest next to it: malformed descriptor chains, bogus notifications and a
    // flood of vsock connections. hull gives up on it after its boot timeout and says so;
    // its VMM survives the abuse (the console shows the guest got through all of it).
    let before = fs::read(&console).unwrap().len();
    let started = Instant::now();
    let out = env
        .hull(["run", "--isolation", "vm", "--name", "hostile", "--kernel"])
        .arg(&hostile)
        .args([IMAGE, "true"])
        .env("HULL_VM_SKIP_HOST_CHECK", "1")
        .env("HULL_VM_BOOT_TIMEOUT", "5")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(started.elapsed() < NO_HANG, "hull gave up in time");
    // It connects to the hello port among its 200 connection requests and says nothing.
    assert!(
        err.contains("did not report within 5s")
            || err.contains("timed out waiting for the guest agent (hello)"),
        "{err}"
    );
    assert!(!err.contains("hull-vmm exited"), "its VMM survived: {err}");
    let hostile_id = env.inspect("hostile")["id"].as_str().unwrap().to_string();
    let hostile_console = env
        .root
        .path()
        .join("run/containers")
        .join(&hostile_id)
        .join("console.log");
    let printed = fs::read_to_string(&hostile_console).unwrap_or_default();
    assert!(
        printed.contains("HBV"),
        "the hostile guest went through all its abuse: {printed:?}"
    );
    env.ok(["rm", "hostile"]);
    // hull answers meanwhile, and the neighbour kept running.
    let ps = env.ps();
    assert_eq!(ps.len(), 1, "only the neighbour is left: {ps:?}");
    wait_for(NO_HANG, "the neighbour's console to grow", || {
        (fs::read(&console).unwrap().len() > before).then_some(())
    });
    assert!(
        hull.0.try_wait().unwrap().is_none(),
        "the neighbour's hull still waits"
    );

    // kill -9 of hull: the VMM dies with it; the next hull cleans up what is left.
    hull.0.kill().unwrap();
    hull.0.wait().unwrap();
    wait_for(NO_HANG, "the VMM to die with its hull", || {
        vmms_of(&env).is_empty().then_some(())
    });
    let ps = env.ps();
    for name in ps.keys() {
        env.ok(["rm", "-f", name]);
    }
    assert!(!state.exists(), "{} is gone", state.display());
    assert!(
        !Path::new(LEASES).join(uid.to_string()).exists(),
        "the VM id lease is released"
    );
    env.assert_clean(std::slice::from_ref(&id));
}

#[test]
fn a_forbidden_system_call_ends_the_vmm_and_hull_says_which() {
    let env = Env::new();
    let ticking = write_kernel(&env, "ticking.elf", &tiny_guest::ticking_kernel());
    for (thread, name) in [("vcpu", "thread vcpu 0"), ("main", "thread main")] {
        let out = run_tiny(&env, &ticking, 60, &[])
            .env("HULL_VMM_SECCOMP_TEST", thread)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{thread}: {err}");
        assert!(
            err.contains("seccomp filter") && err.contains(name) && err.contains("socket"),
            "{thread}: hull names the thread and the call: {err}"
        );
    }
    assert!(vmms_of(&env).is_empty());
    env.assert_clean(&[]);
}

/// A VM container with a network (bridge): the TAP is made in the container's network
/// namespace and the VMM, jailed, joins that namespace (as Firecracker's jailer joins
/// `--netns`) rather than making an empty one: not the host's, and the one holding the
/// container's eth0 and the VM's TAP. Nothing of the network is left afterwards.
#[test]
fn a_networked_vms_monitor_is_jailed_in_its_containers_network_namespace() {
    let net = NetEnv::new();
    let env = &net.env;
    let ticking = write_kernel(env, "ticking.elf", &tiny_guest::ticking_kernel());
    let hull = Hull(
        run_tiny(env, &ticking, 300, &["--name", "netvm"])
            .spawn()
            .unwrap(),
    );
    let vmm = wait_for(NO_HANG, "the jailed VMM", || vmms_of(env).pop());
    // no_new_privs is the jail's last step: the namespaces are entered by then.
    wait_for(NO_HANG, "the VMM to enter its jail", || {
        (status_field(vmm, &vmm.to_string(), "NoNewPrivs:") == "1").then_some(())
    });
    let id = env.inspect("netvm")["id"].as_str().unwrap().to_string();
    let ours = fs::read_link("/proc/self/ns/net").unwrap();
    let its = fs::read_link(format!("/proc/{vmm}/ns/net")).unwrap();
    assert_ne!(ours, its, "the VMM is not in the host's network namespace");
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{vmm}/ns/net"))
        .args(["ip", "-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&out.stdout);
    assert!(
        links.contains(": tap0") && links.contains(": eth0@"),
        "the VMM's network namespace holds the container's eth0 and the VM's TAP: {links}"
    );
    // The host's end of eth0 (`eth0@ifN`: N is its index here), to check it goes.
    let peer = links
        .split(": eth0@if")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default()
        .to_string();
    let veth = fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| fs::read_to_string(e.path().join("ifindex")).is_ok_and(|i| i.trim() == peer))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("no host interface with index {peer:?}"));

    drop(hull);
    wait_for(NO_HANG, "the VMM to die with its hull", || {
        vmms_of(env).is_empty().then_some(())
    });
    for name in env.ps().keys() {
        env.ok(["rm", "-f", name]);
    }
    net.assert_clean(std::slice::from_ref(&id), std::slice::from_ref(&veth));
}
