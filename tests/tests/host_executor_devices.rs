//! Tier 2: the executor's cgroup v2 device controller on this host's real kernel. The
//! generated eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) must pass the kernel's verifier,
//! attach to a container cgroup, and decide every open and mknod of a process in that
//! cgroup the way the rules say — the same code the guest agent runs in every microVM (the
//! guest's cgroups are v2). The build hosts are cgroup v1 with a v2 hierarchy mounted at
//! /sys/fs/cgroup/unified (hybrid): a device program attached there is enforced for the
//! processes in that v2 cgroup, so the v2 path is tested here too; on a pure v2 host the
//! root is /sys/fs/cgroup.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hull_executor::cgroups::{driver, CgroupPlan, Layout, Version};
use hull_executor::defaults::rule;
use hull_tests::oci::unique;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

const PARENT: &str = "hull-executor-devices-test";

/// The v2 hierarchy of this host, if it has one.
fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
}

/// Removes the test's cgroups, also on failure.
struct Cleanup {
    layout: Layout,
    path: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = driver::remove(&self.layout, &self.path);
        let _ = std::fs::remove_dir(self.layout.root.join(PARENT));
    }
}

fn mknod(path: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mknod of a NUL-terminated path in the test's own directory.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o666, libc::makedev(major, minor)) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Runs `script` with sh, in the cgroup whose `cgroup.procs` are `procs` (None: where the
/// test runs); returns its stdout.
fn sh(procs: Option<&[std::os::fd::OwnedFd]>, script: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    if let Some(fds) = procs {
        let raw: Vec<i32> = fds.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        // SAFETY: the closure only calls write(2) on descriptors the parent keeps open.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &raw {
                    if libc::write(*fd, b"0".as_ptr().cast(), 1) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().expect("run sh");
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Per node, `NAME:r=RESULT,w=RESULT` where RESULT is `ok` or `no` (the open failed).
const PROBE: &str = r#"for n in null kmsg loop0 loop1; do
  r=no; w=no; (: < "$D/$n") 2>/dev/null && r=ok; (: >> "$D/$n") 2>/dev/null && w=ok
  echo "$n:r=$r,w=$w"
done
mknod "$D/made" b 7 0 2>/dev/null && echo mknod=ok || echo mknod=no"#;

#[test]
fn the_v2_device_program_decides_every_open_and_mknod() {
    let Some(root) = v2_root() else {
        panic!("this host has no cgroup v2 hierarchy (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified)");
    };
    let layout = Layout {
        root,
        version: Version::V2,
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // /dev/null (allowed by docker's rules), /dev/kmsg (1:11, not), loop0 and loop1 (b 7:0
    // and 7:1: a minor wildcard must cover both). Opening a loop device without its file
    // attached succeeds; nothing is read or written.
    mknod(&d.join("null"), libc::S_IFCHR, 1, 3);
    mknod(&d.join("kmsg"), libc::S_IFCHR, 1, 11);
    mknod(&d.join("loop0"), libc::S_IFBLK, 7, 0);
    mknod(&d.join("loop1"), libc::S_IFBLK, 7, 1);
    let script = format!("D={}\n{PROBE}", d.display());

    // Outside any device program every open works: a "no" below is the program's.
    let free = sh(None, &script);
    assert!(free.contains("null:r=ok,w=ok"), "{free}");
    assert!(free.contains("kmsg:r=ok,w=ok"), "{free}");
    assert!(free.contains("loop0:r=ok,w=ok"), "{free}");
    assert!(free.contains("loop1:r=ok,w=ok"), "{free}");
    std::fs::remove_file(d.join("made")).unwrap();

    let cases: Vec<(&str, Vec<LinuxDeviceCgroup>, &[&str])> = vec![
        (
            // docker's rules: deny all, then the default devices and mknod of anything.
            "docker",
            hull_executor::defaults::device_rules(),
            &[
                "null:r=ok,w=ok",
                "kmsg:r=no,w=no",
                "loop0:r=no,w=no",
                "loop1:r=no,w=no",
                "mknod=ok",
            ],
        ),
        (
            // a --device style grant: /dev/kmsg write only; block 7:* read (minor wildcard).
            "grants",
            {
                let mut r = hull_executor::defaults::device_rules();
                r.push(rule(true, LinuxDeviceType::C, Some(1), Some(11), "w"));
                r.push(rule(true, LinuxDeviceType::B, Some(7), None, "r"));
                r
            },
            &[
                "null:r=ok,w=ok",
                "kmsg:r=no,w=ok",
                "loop0:r=ok,w=no",
                "loop1:r=ok,w=no",
                "mknod=ok",
            ],
        ),
        (
            // a later deny wins over an earlier allow; mknod of block nodes denied.
            "later-deny",
            vec![
                rule(true, LinuxDeviceType::A, None, None, "rwm"),
                rule(false, LinuxDeviceType::B, None, None, "rwm"),
            ],
            // The always-allowed list (runc's) comes after the spec: mknod stays allowed.
            &[
                "null:r=ok,w=ok",
                "kmsg:r=ok,w=ok",
                "loop0:r=no,w=no",
                "loop1:r=no,w=no",
                "mknod=ok",
            ],
        ),
    ];
    for (name, rules, expected) in cases {
        let path = Path::new(PARENT).join(unique(name));
        let cleanup = Cleanup {
            layout: layout.clone(),
            path: path.clone(),
        };
        let mut resources = LinuxResources::default();
        resources.set_devices(Some(rules));
        let plan = CgroupPlan::new(Some(&path), Some(&resources), Version::V2).expect("plan");
        let procs =
            driver::create(&layout, &plan).expect("create the cgroup and attach the program");
        let got = sh(Some(&procs), &script);
        for e in expected {
            assert!(
                got.lines().any(|l| l == *e),
                "{name}: expected {e} in\n{got}"
            );
        }
        let _ = std::fs::remove_file(d.join("made"));
        drop(procs);
        drop(cleanup);
        assert!(
            !layout.root.join(&path).exists(),
            "{name}: cgroup left behind"
        );
    }
}
