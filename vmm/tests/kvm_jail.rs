//! Tier 3: `hull-vmm --jail` on this machine's /dev/kvm. Started as PID 1 of a new PID
//! namespace (`unshare --pid --fork`, what hull's launcher does with clone3), the VMM builds
//! the VM as root, then runs the guest as the per-VM uid/gid with no capabilities,
//! no_new_privs, seccomp on every thread, its own mount/network/IPC/UTS namespaces, and the
//! jail directory as its root with no host mount left; it still serves its vsock socket and
//! stops cleanly.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{require_kvm, write_guest, Asm};

/// The jailed VMM's ids in this test (far outside any subuid range here).
const UID: u32 = 3_999_000_001;
const GID: u32 = 3_999_000_002;

struct Launched(Option<Child>);

impl Drop for Launched {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The host pid of the VMM: the only child of the `unshare` process.
fn vmm_pid(launcher: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children"))
                .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            return pid.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "the VMM never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn status_field(pid: u32, task: &str, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{task}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn jailed_vmm_runs_unprivileged_in_its_own_namespaces_and_root() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.serial_print(b"up").spin();
    let kernel = write_guest(dir.path(), "g.elf", &asm);
    let jail = dir.path().join("jail");
    std::fs::create_dir(&jail).unwrap();
    std::os::unix::fs::chown(&jail, Some(UID), Some(GID)).unwrap();
    std::fs::set_permissions(&jail, std::fs::Permissions::from_mode(0o700)).unwrap();

    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_hull-vmm"))
        .args(["--kernel", kernel.to_str().unwrap(), "--memory", "32"])
        .args([
            "--vcpus",
            "2",
            "--vsock",
            "vsock.sock",
            "--serial",
            "stdout",
        ])
        .args(["--jail", jail.to_str().unwrap()])
        .args([
            "--jail-uid",
            &UID.to_string(),
            "--jail-gid",
            &GID.to_string(),
        ])
        .current_dir(&jail)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) starts hull-vmm");
    let mut out = child.stdout.take().unwrap();
    let launched = Launched(Some(child));
    let mut up = [0u8; 2];
    out.read_exact(&mut up).expect("the guest printed");
    assert_eq!(&up, b"up");
    let pid = vmm_pid(launched.0.as_ref().unwrap().id());

    // The guest printed from vCPU 0; vCPU 1's thread exists (the vCPUs pass the gate only
    // after every one was spawned) but may not have been scheduled yet to take its name.
    let task_names = || -> Vec<(String, String)> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|t| t.unwrap().file_name().to_string_lossy().into_owned())
            .map(|t| (status_field(pid, &t, "Name:"), t))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while task_names()
        .iter()
        .filter(|(n, _)| n.starts_with("vcpu"))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "vCPU threads: {:?}",
            task_names()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let tasks: Vec<String> = task_names().into_iter().map(|(_, t)| t).collect();
    let ids = format!("{UID} {UID} {UID} {UID}");
    let mut checked = 0;
    for task in &tasks {
        let name = status_field(pid, task, "Name:");
        // The main thread (tid = pid) and the vCPUs. KVM lists a kernel worker of its own
        // with the process (kvm-nx-lpage-recovery), named like the process for an instant.
        if *task != pid.to_string() && !name.starts_with("vcpu") {
            continue;
        }
        checked += 1;
        assert_eq!(status_field(pid, task, "Uid:"), ids, "{name}");
        assert_eq!(
            status_field(pid, task, "Gid:"),
            format!("{GID} {GID} {GID} {GID}"),
            "{name}"
        );
        assert_eq!(status_field(pid, task, "Groups:"), "", "{name}");
        for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
            assert_eq!(
                status_field(pid, task, caps),
                "0000000000000000",
                "{name} {caps}"
            );
        }
        assert_eq!(status_field(pid, task, "NoNewPrivs:"), "1", "{name}");
        assert_eq!(status_field(pid, task, "Seccomp:"), "2", "{name}");
    }
    assert_eq!(checked, 3, "main + 2 vCPUs");
    // Root is the jail directory; no host mount is left in its mount namespace.
    // (Its root mount is not in our namespace, so readlink shows "/": compare the inode.)
    let root = std::fs::metadata(format!("/proc/{pid}/root")).unwrap();
    let jail_meta = std::fs::metadata(&jail).unwrap();
    assert_eq!(
        (root.dev(), root.ino()),
        (jail_meta.dev(), jail_meta.ino()),
        "the VMM's / is the jail directory"
    );
    let visible: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(visible, ["vsock.sock"], "only the VM's socket in its root");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert_eq!(mounts.lines().count(), 1, "only the jail itself:\n{mounts}");
    let fields: Vec<&str> = mounts.split_whitespace().collect();
    assert_eq!(fields[4], "/", "{mounts}");
    assert!(
        fields[5].contains("nosuid") && fields[5].contains("noexec"),
        "{mounts}"
    );
    for ns in ["mnt", "net", "ipc", "uts", "pid"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "{ns} namespace shared with the host");
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains("2048")),
        "{limits}"
    );
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max processes") && l.split_whitespace().nth(2) == Some("4")),
        "{limits}"
    );

    // The socket, made inside the jail, still serves the host.
    let sock = jail.join("vsock.sock");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().uid(),
        0,
        "bound before the drop"
    );
    let mut bad = UnixStream::connect(&sock).unwrap();
    bad.write_all(b"HELLO\n").unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = bad.read_to_end(&mut buf);
    assert!(buf.is_empty());

    // SAFETY: kill(2) on the VMM's host pid, which is alive (checked above).
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let mut launched = launched;
    let mut child = launched.0.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the jailed VMM did not stop");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{err}");
    assert!(!sock.exists(), "the jailed VMM removed its socket");
}

#[test]
fn jail_needs_a_new_pid_namespace() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.debug_exit(0);
    let kernel = write_guest(dir.path(), "g.elf", &asm);
    let out = Command::new(env!("CARGO_BIN_EXE_hull-vmm"))
        .args(["--kernel", kernel.to_str().unwrap(), "--memory", "32"])
        .args(["--jail", dir.path().to_str().unwrap()])
        .args([
            "--jail-uid",
            &UID.to_string(),
            "--jail-gid",
            &GID.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PID 1 of a new PID namespace"), "{err}");
}
